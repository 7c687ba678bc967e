/* ffn — which rows make each global batch, and which of them each rank takes.
 *
 * The order of epoch e is a permutation drawn from (seed, FFN_STREAM_SHUFFLE
 * + e << 8) alone, so the global batch at step s is the same set of samples for
 * any number of ranks. Global batch s is order[s*B, min((s+1)*B, N)): the last
 * batch of an epoch is smaller when B does not divide N (every sample is used
 * exactly once per epoch; nothing is dropped or repeated). Rank r of R takes
 * the positions [len*r/R, len*(r+1)/R) of its global batch, sorted ascending so
 * that reads go through the file in order. */
#ifndef FFN_SAMPLER_H
#define FFN_SAMPLER_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/status.h"

typedef struct {
    size_t rows, batch;
    uint64_t seed;
    int shuffle;
    uint64_t epoch;   /* the epoch whose order is loaded */
    uint64_t *order;  /* [rows] */
} ffn_sampler;

ffn_status ffn_sampler_init(ffn_sampler *s, size_t rows, size_t batch, uint64_t seed, int shuffle);
void ffn_sampler_free(ffn_sampler *s);
size_t ffn_sampler_steps_per_epoch(const ffn_sampler *s);
void ffn_sampler_set_epoch(ffn_sampler *s, uint64_t epoch);
/* This rank's sorted row indices of global batch `step` of the loaded epoch.
 * Returns the local count; *global_count gets the global batch's size. */
size_t ffn_sampler_local(const ffn_sampler *s, size_t step, int rank, int nranks,
                         uint64_t *idx, size_t *global_count);
/* The largest local count any rank can get (for sizing buffers). */
size_t ffn_sampler_max_local(size_t batch, int nranks);

#endif
