/* ffn — a watchdog for calls that must not hang: see watchdog.h. */
#include "watchdog.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SECONDS 600.0
#define MAX_SECONDS 604800ULL /* a week: more is a typo, not a limit */

struct ffn_watchdog {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t done_changed;
    int done;
    double seconds;
    char message[1024];
};

/* The limit in *seconds (0: off) from FFN_OPEN_TIMEOUT, unset or empty meaning
 * the default; junk is an error, never silently the default. */
static ffn_status timeout_seconds(double *seconds)
{
    *seconds = DEFAULT_SECONDS;
    const char *env = getenv("FFN_OPEN_TIMEOUT");
    if (!env || !*env) return FFN_OK;
    char *end;
    errno = 0;
    unsigned long long s = strtoull(env, &end, 10);
    if (env[0] < '0' || env[0] > '9' || *end || errno || s > MAX_SECONDS)
        return ffn_fail(FFN_ERR_ARG,
                        "FFN_OPEN_TIMEOUT is '%s', expected a whole number of seconds from 0 to %llu (0 turns "
                        "the watchdog on file opens off)",
                        env, MAX_SECONDS);
    *seconds = (double)s;
    return FFN_OK;
}

static void *watch(void *arg)
{
    ffn_watchdog *w = arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    double whole = (double)(time_t)w->seconds;
    until.tv_sec += (time_t)whole;
    until.tv_nsec += (long)((w->seconds - whole) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->lock);
    int rc = 0;
    while (!w->done && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&w->done_changed, &w->lock, &until);
    int fire = !w->done;
    pthread_mutex_unlock(&w->lock);
    if (fire) {
        /* The guarded thread is stuck inside HDF5: nothing can be unwound. */
        ssize_t n = write(STDERR_FILENO, w->message, strlen(w->message));
        (void)n;
        _exit(1);
    }
    return NULL;
}

ffn_status ffn_watchdog_start(ffn_watchdog **out, const char *path, const char *what)
{
    *out = NULL;
    double seconds;
    ffn_status st = timeout_seconds(&seconds);
    if (st != FFN_OK || seconds <= 0) return st;
    ffn_watchdog *w = calloc(1, sizeof *w);
    if (!w) return FFN_OK; /* unguarded, as when the thread cannot start */
    w->seconds = seconds;
    snprintf(w->message, sizeof w->message,
             "ffn: error: %s: %s did not finish in %g s; the file's metadata is likely corrupt (HDF5 "
             "loops on some damaged files; FFN_OPEN_TIMEOUT=SECONDS sets this limit)\n",
             path, what, seconds);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->done_changed, NULL);
    if (pthread_create(&w->thread, NULL, watch, w) != 0) {
        pthread_cond_destroy(&w->done_changed);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return FFN_OK;
    }
    *out = w;
    return FFN_OK;
}

void ffn_watchdog_stop(ffn_watchdog *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    w->done = 1;
    pthread_cond_signal(&w->done_changed);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->done_changed);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
