/* ffn — one worker thread running posted jobs in order (see worker.h). */
#include "worker.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

enum { QUEUE = 16 };

typedef struct {
    ffn_work_fn fn;
    unsigned char payload[FFN_WORKER_PAYLOAD];
} job;

struct ffn_worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t changed;
    job queue[QUEUE];
    uint64_t posted, done; /* jobs posted and finished so far; job t sits at queue[t % QUEUE] */
    int stop;
    double wait_seconds;
};

static void *worker_main(void *arg)
{
    ffn_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->done == w->posted && !w->stop) pthread_cond_wait(&w->changed, &w->mu);
        if (w->done == w->posted) break; /* stopping, nothing left */
        job j = w->queue[w->done % QUEUE];
        pthread_mutex_unlock(&w->mu);
        j.fn(j.payload);
        pthread_mutex_lock(&w->mu);
        w->done++;
        pthread_cond_broadcast(&w->changed);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

ffn_worker *ffn_worker_start(void)
{
    ffn_worker *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->changed, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->changed);
        free(w);
        return NULL;
    }
    return w;
}

uint64_t ffn_worker_post(ffn_worker *w, ffn_work_fn fn, const void *payload, size_t size)
{
    pthread_mutex_lock(&w->mu);
    while (w->posted - w->done >= QUEUE) pthread_cond_wait(&w->changed, &w->mu);
    job *j = &w->queue[w->posted % QUEUE];
    j->fn = fn;
    memcpy(j->payload, payload, size < FFN_WORKER_PAYLOAD ? size : FFN_WORKER_PAYLOAD);
    uint64_t ticket = w->posted++;
    pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->mu);
    return ticket;
}

void ffn_worker_wait(ffn_worker *w, uint64_t ticket)
{
    pthread_mutex_lock(&w->mu);
    if (w->done <= ticket) {
        const double t0 = ffn_clock_seconds();
        while (w->done <= ticket) pthread_cond_wait(&w->changed, &w->mu);
        w->wait_seconds += ffn_clock_seconds() - t0;
    }
    pthread_mutex_unlock(&w->mu);
}

void ffn_worker_drain(ffn_worker *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t last = w->posted;
    pthread_mutex_unlock(&w->mu);
    if (last) ffn_worker_wait(w, last - 1);
}

double ffn_worker_wait_seconds(const ffn_worker *w) { return w->wait_seconds; }

void ffn_worker_stop(ffn_worker *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->changed);
    free(w);
}
