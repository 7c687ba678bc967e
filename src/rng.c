/* ffn — Philox4x32-10 counter-based random numbers (Salmon et al., SC'11; Random123).
 *
 * Layout of one block, as Random123 numbers its words:
 *   key     k0 = low 32 bits of seed,   k1 = high 32 bits of seed
 *   counter c0 = low 32 bits of counter, c1 = high 32 bits of counter,
 *           c2 = low 32 bits of stream,  c3 = high 32 bits of stream
 * so (seed, stream, counter) names a 128-bit block and every call below
 * consumes whole blocks, advancing r->counter by the number used:
 *   ffn_rng_u64 / uniform / below (per try)   1 block, words 0 and 1
 *   ffn_rng_normal                            1 block, all four words
 *   ffn_rng_fill_uniform(n)                   ceil(n / 4) blocks
 *   ffn_rng_fill_normal(n)                    ceil(n / 2) blocks
 * The future of a generator depends only on its three integers. */
#include "ffn/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u
#define PHILOX_ROUNDS 10

static const double two_pi = 6.283185307179586476925286766559;

ffn_rng ffn_rng_make(uint64_t seed, uint64_t stream)
{
    ffn_rng r = { .seed = seed, .stream = stream, .counter = 0 };
    return r;
}

static inline void philox_round(uint32_t c[4], uint32_t k0, uint32_t k1)
{
    uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c[1] ^ k0;
    uint32_t n2 = hi0 ^ c[3] ^ k1;
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
}

void ffn_philox4x32(uint64_t key, uint64_t ctr_hi, uint64_t ctr_lo, uint32_t out[4])
{
    uint32_t c[4] = { (uint32_t)ctr_lo, (uint32_t)(ctr_lo >> 32),
                      (uint32_t)ctr_hi, (uint32_t)(ctr_hi >> 32) };
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int i = 0; i < PHILOX_ROUNDS; i++) {
        if (i > 0) { /* the key is bumped before every round but the first */
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        philox_round(c, k0, k1);
    }
    for (int i = 0; i < 4; i++) out[i] = c[i];
}

/* The generator's next block; the only place that advances the counter. */
static inline void next_block(ffn_rng *r, uint32_t out[4])
{
    ffn_philox4x32(r->seed, r->stream, r->counter, out);
    r->counter++;
}

uint64_t ffn_rng_u64(ffn_rng *r)
{
    uint32_t w[4];
    next_block(r, w);
    return ((uint64_t)w[0] << 32) | w[1];
}

/* Top 24 bits of a word scaled by 2^-24: exact in float, never 1. */
static inline float word_to_unit_float(uint32_t w)
{
    return (float)(w >> 8) * (1.0f / 16777216.0f);
}

float ffn_rng_uniform(ffn_rng *r)
{
    return word_to_unit_float((uint32_t)(ffn_rng_u64(r) >> 32));
}

uint64_t ffn_rng_below(ffn_rng *r, uint64_t n)
{
    /* Reject the lowest (2^64 mod n) values so that every residue is equally
     * likely; at most half the range is rejected, usually almost none. */
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t x = ffn_rng_u64(r);
        if (x >= threshold) return x % n;
    }
}

/* 53 random bits from two words as a double in (0, 1]: safe for log(). */
static inline double words_to_open_unit(uint32_t hi, uint32_t lo)
{
    uint64_t bits = (((uint64_t)hi << 32) | lo) >> 11;
    return ((double)bits + 1.0) * (1.0 / 9007199254740992.0);
}

/* Box-Muller on one block: two independent standard normals. */
static inline void normal_pair(const uint32_t w[4], double *a, double *b)
{
    double u1 = words_to_open_unit(w[0], w[1]);
    double u2 = words_to_open_unit(w[2], w[3]);
    double radius = sqrt(-2.0 * log(u1));
    double angle = two_pi * u2;
    *a = radius * cos(angle);
    *b = radius * sin(angle);
}

double ffn_rng_normal(ffn_rng *r)
{
    uint32_t w[4];
    double a, b;
    next_block(r, w);
    normal_pair(w, &a, &b);
    return a; /* the partner is dropped so one call is always one block */
}

void ffn_rng_fill_uniform(ffn_rng *r, float *out, size_t n, float lo, float hi)
{
    float width = hi - lo;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t w[4];
        next_block(r, w);
        size_t m = n - i < 4 ? n - i : 4;
        for (size_t j = 0; j < m; j++) out[i + j] = lo + width * word_to_unit_float(w[j]);
    }
}

void ffn_rng_fill_normal(ffn_rng *r, float *out, size_t n, float mean, float std)
{
    for (size_t i = 0; i < n; i += 2) {
        uint32_t w[4];
        double a, b;
        next_block(r, w);
        normal_pair(w, &a, &b);
        out[i] = (float)(mean + std * a);
        if (i + 1 < n) out[i + 1] = (float)(mean + std * b);
    }
}

void ffn_rng_permutation(ffn_rng *r, uint64_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)ffn_rng_below(r, i);
        uint64_t tmp = out[i - 1];
        out[i - 1] = out[j];
        out[j] = tmp;
    }
}
