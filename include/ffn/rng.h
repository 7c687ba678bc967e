/* ffn — counter-based random numbers (Philox4x32-10).
 *
 * The whole state is (seed, stream, counter): every rank that builds the same
 * generator draws the same numbers, and a checkpoint restores a stream exactly
 * by saving three integers. Streams separate independent uses (initialisation,
 * data order of each epoch, dropout) so adding one never shifts another. */
#ifndef FFN_RNG_H
#define FFN_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t seed;
    uint64_t stream;
    uint64_t counter; /* number of 128-bit blocks consumed */
} ffn_rng;

/* Well-known stream ids; further ones may be formed by the caller. */
enum {
    FFN_STREAM_INIT = 1,      /* + layer index << 8 */
    FFN_STREAM_SHUFFLE = 2,   /* + epoch << 8 */
    FFN_STREAM_DROPOUT = 3,
    FFN_STREAM_DATA = 4       /* synthetic data generation */
};

ffn_rng ffn_rng_make(uint64_t seed, uint64_t stream);

/* One Philox block: four 32-bit words for (key, counter). Pure function. */
void ffn_philox4x32(uint64_t key, uint64_t ctr_hi, uint64_t ctr_lo, uint32_t out[4]);

uint64_t ffn_rng_u64(ffn_rng *r);
/* Uniform in [0, 1) with 24 random bits (every value exactly representable). */
float ffn_rng_uniform(ffn_rng *r);
/* Uniform integer in [0, n), unbiased. n > 0. */
uint64_t ffn_rng_below(ffn_rng *r, uint64_t n);
/* Standard normal (Box-Muller in double). */
double ffn_rng_normal(ffn_rng *r);

void ffn_rng_fill_uniform(ffn_rng *r, float *out, size_t n, float lo, float hi);
void ffn_rng_fill_normal(ffn_rng *r, float *out, size_t n, float mean, float std);
/* out[i] = i, then a Fisher-Yates shuffle. */
void ffn_rng_permutation(ffn_rng *r, uint64_t *out, size_t n);

#endif
