/* ffn — one worker thread running posted jobs in order (internal to libffn).
 *
 * The sharded step's communication thread (--shard params across nodes):
 * the next layer's parameters are gathered and the last layer's gradients
 * reduce-scattered on it while the main thread computes, every MPI call of
 * the step on that one thread in posting order (MPI_THREAD_SERIALIZED), the
 * same order on every rank. A job is a function and a small payload copied
 * at posting; a ticket names it for waiting. */
#ifndef FFN_WORKER_H
#define FFN_WORKER_H

#include <stddef.h>
#include <stdint.h>

#define FFN_WORKER_PAYLOAD 64

typedef struct ffn_worker ffn_worker;
typedef void (*ffn_work_fn)(void *payload);

/* NULL when the thread cannot start (the caller then runs jobs itself). */
ffn_worker *ffn_worker_start(void);
/* Queues fn(copy of payload[size <= FFN_WORKER_PAYLOAD]); waits while the queue is full. */
uint64_t ffn_worker_post(ffn_worker *w, ffn_work_fn fn, const void *payload, size_t size);
/* Returns once the job of ticket (and every one before it) is done. */
void ffn_worker_wait(ffn_worker *w, uint64_t ticket);
/* Returns once every job posted so far is done. */
void ffn_worker_drain(ffn_worker *w);
/* Seconds the posting thread spent in ffn_worker_wait and drain, over the worker's life. */
double ffn_worker_wait_seconds(const ffn_worker *w);
/* Drains and ends the thread. */
void ffn_worker_stop(ffn_worker *w);

#endif
