/* ffn — the training-data pipeline: this rank's rows of each global batch,
 * read by a background thread one batch ahead of the step that uses it.
 *
 * The loader walks steps (epoch, step-in-epoch) from a start position and
 * hands out batches in order. Batches come from ffn_sampler, so the global
 * batch at a step depends on (seed, epoch) alone, never on the rank count. A
 * read error is carried by the batch it belongs to; the caller agrees on it
 * with the other ranks before acting. */
#ifndef FFN_LOADER_H
#define FFN_LOADER_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/data.h"
#include "ffn/status.h"

typedef struct {
    uint64_t epoch, step;    /* position: epoch from 0, step within the epoch from 0 */
    size_t local_count;      /* rows on this rank (may be 0 for a tiny last batch) */
    size_t global_count;     /* rows in the global batch */
    const uint64_t *indices; /* [local_count] row indices, ascending */
    float *x;                /* [local_count, features] */
    int32_t *labels;         /* [local_count] or NULL */
    float *values;           /* [local_count, target_cols] or NULL */
    ffn_status status;       /* read result; on error see message */
    const char *message;
} ffn_batch;

typedef struct {
    size_t batch_size;       /* global */
    uint64_t seed;
    int shuffle;
    int rank, nranks;
    uint64_t start_epoch, start_step;
    uint64_t total_steps;    /* batches to produce in all (across epochs) */
    int prefetch;            /* 0: read in next() on the caller's thread */
    int local_ranks;         /* ranks sharing this node's memory (0 counts as 1) */
} ffn_loader_config;

/* Memory. When the whole dataset fits in a budget (a quarter of the node's
 * physical memory shared among local_ranks, or FFN_DATA_CACHE_MB from the
 * environment; 0 there turns it off), the loader reads it once at creation
 * (ffn_dataset_cache) and serves every batch from memory on the caller's
 * thread: a copy costs microseconds, less than handing the batch over from a
 * thread. Otherwise a background thread reads from HDF5 one batch ahead. */

typedef struct ffn_loader ffn_loader;

/* The loader borrows ds (one thread uses it at a time: the loader's). */
ffn_status ffn_loader_create(ffn_loader **out, ffn_dataset *ds, const ffn_loader_config *cfg);
/* Stops the thread and frees. */
void ffn_loader_free(ffn_loader *l);
/* The next batch (valid until the following call); NULL after total_steps.
 * Blocks while the batch is still being read. */
const ffn_batch *ffn_loader_next(ffn_loader *l);
size_t ffn_loader_steps_per_epoch(const ffn_loader *l);
/* The most FFN_DATA_CACHE_MB may say: 16 TiB. */
#define FFN_DATA_CACHE_MB_MAX ((unsigned long long)1 << 24)
/* The bytes of dataset one rank may hold in memory under cfg (see above), in
 * *bytes. FFN_ERR_ARG, with a message naming the variable and what it takes,
 * when FFN_DATA_CACHE_MB is set to anything but a whole number from 0 to
 * FFN_DATA_CACHE_MB_MAX (set but empty counts as unset); ffn_loader_create
 * fails the same way. */
ffn_status ffn_loader_cache_budget(const ffn_loader_config *cfg, size_t *bytes);
/* Seconds the caller spent blocked in next(), since creation. */
double ffn_loader_wait_seconds(const ffn_loader *l);

#endif
