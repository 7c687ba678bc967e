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

struct ffn_watchdog {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t done_changed;
    int done;
    double seconds;
    char message[1024];
};

static double timeout_seconds(void)
{
    const char *env = getenv("FFN_OPEN_TIMEOUT");
    if (!env || !*env) return DEFAULT_SECONDS;
    char *end;
    double s = strtod(env, &end);
    return *end == '\0' && s >= 0 ? s : DEFAULT_SECONDS;
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

ffn_watchdog *ffn_watchdog_start(const char *path, const char *what)
{
    double seconds = timeout_seconds();
    if (seconds <= 0) return NULL;
    ffn_watchdog *w = calloc(1, sizeof *w);
    if (!w) return NULL;
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
        return NULL;
    }
    return w;
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
