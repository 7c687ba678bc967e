/* ffn — global batch order from (seed, epoch) and each rank's share of it. */
#include "ffn/sampler.h"

#include <stdlib.h>

#include "ffn/mem.h"
#include "ffn/partition.h"
#include "ffn/rng.h"

ffn_status ffn_sampler_init(ffn_sampler *s, size_t rows, size_t batch, uint64_t seed, int shuffle)
{
    if (rows == 0) return ffn_fail(FFN_ERR_ARG, "sampler: dataset has no rows");
    if (batch == 0) return ffn_fail(FFN_ERR_ARG, "sampler: batch size must be positive");
    s->rows = rows;
    s->batch = batch;
    s->seed = seed;
    s->shuffle = shuffle;
    s->order = ffn_alloc(rows, sizeof *s->order);
    if (!s->order) return FFN_ERR_NOMEM;
    s->epoch = UINT64_MAX;
    ffn_sampler_set_epoch(s, 0);
    return FFN_OK;
}

void ffn_sampler_free(ffn_sampler *s)
{
    ffn_free(s->order);
    s->order = NULL;
}

size_t ffn_sampler_steps_per_epoch(const ffn_sampler *s)
{
    return (s->rows + s->batch - 1) / s->batch;
}

void ffn_sampler_set_epoch(ffn_sampler *s, uint64_t epoch)
{
    if (s->epoch == epoch) return;
    s->epoch = epoch;
    if (s->shuffle) {
        ffn_rng rng = ffn_rng_make(s->seed, FFN_STREAM_SHUFFLE + (epoch << 8));
        ffn_rng_permutation(&rng, s->order, s->rows);
    } else {
        for (size_t i = 0; i < s->rows; i++) s->order[i] = i;
    }
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

size_t ffn_sampler_local(const ffn_sampler *s, size_t step, int rank, int nranks,
                         uint64_t *idx, size_t *global_count)
{
    size_t begin = step * s->batch;
    size_t end = begin + s->batch < s->rows ? begin + s->batch : s->rows;
    size_t len = begin < end ? end - begin : 0;
    size_t lo, hi;
    ffn_partition(len, (size_t)rank, (size_t)nranks, &lo, &hi);
    for (size_t i = lo; i < hi; i++) idx[i - lo] = s->order[begin + i];
    const size_t n = hi - lo;
    if (n <= 64) { /* a rank's usual share: insertion sort, several times qsort's speed at this size */
        for (size_t i = 1; i < n; i++) {
            const uint64_t v = idx[i];
            size_t j = i;
            for (; j > 0 && idx[j - 1] > v; j--) idx[j] = idx[j - 1];
            idx[j] = v;
        }
    } else {
        qsort(idx, n, sizeof *idx, compare_u64);
    }
    if (global_count) *global_count = len;
    return hi - lo;
}

size_t ffn_sampler_max_local(size_t batch, int nranks)
{
    return (batch + (size_t)nranks - 1) / (size_t)nranks;
}
