/* Tests for the Philox4x32-10 generator: known answers, determinism, resume, statistics. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/rng.h"
#include "check.h"

/* Random123's kat_vectors for philox4x32 10: counter words c0..c3 and key
 * words k0, k1 in, four words out. */
static void test_known_answers(void)
{
    static const struct {
        uint32_t ctr[4], key[2], want[4];
    } kat[] = {
        { { 0, 0, 0, 0 }, { 0, 0 }, { 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8 } },
        { { 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff }, { 0xffffffff, 0xffffffff },
          { 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd } },
        { { 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344 }, { 0xa4093822, 0x299f31d0 },
          { 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1 } },
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint64_t key = ((uint64_t)kat[i].key[1] << 32) | kat[i].key[0];
        uint64_t lo = ((uint64_t)kat[i].ctr[1] << 32) | kat[i].ctr[0];
        uint64_t hi = ((uint64_t)kat[i].ctr[3] << 32) | kat[i].ctr[2];
        uint32_t out[4];
        ffn_philox4x32(key, hi, lo, out);
        for (int j = 0; j < 4; j++)
            CHECK_MSG(out[j] == kat[i].want[j], "vector %zu word %d: %08x != %08x", i, j,
                      out[j], kat[i].want[j]);
    }
    /* The generator's block is (key = seed, counter = (stream, counter)). */
    ffn_rng r = ffn_rng_make(0x299f31d0a4093822ull, 0x0370734413198a2eull);
    r.counter = 0x85a308d3243f6a88ull;
    CHECK(ffn_rng_u64(&r) == 0xd16cfe0994fdccebull);
    CHECK(r.counter == 0x85a308d3243f6a89ull);
}

static void test_determinism_and_resume(void)
{
    ffn_rng a = ffn_rng_make(42, FFN_STREAM_INIT), b = ffn_rng_make(42, FFN_STREAM_INIT);
    int same = 1;
    for (int i = 0; i < 100; i++) same &= ffn_rng_u64(&a) == ffn_rng_u64(&b);
    CHECK(same);

    /* Different stream or seed: different numbers. */
    ffn_rng c = ffn_rng_make(42, FFN_STREAM_SHUFFLE), d = ffn_rng_make(43, FFN_STREAM_INIT);
    a = ffn_rng_make(42, FFN_STREAM_INIT);
    int differ_stream = 0, differ_seed = 0;
    for (int i = 0; i < 16; i++) {
        uint64_t x = ffn_rng_u64(&a);
        differ_stream += x != ffn_rng_u64(&c);
        differ_seed += x != ffn_rng_u64(&d);
    }
    CHECK(differ_stream == 16);
    CHECK(differ_seed == 16);

    /* Resume: a copy of the struct (what a checkpoint saves) continues the
     * same sequence through every kind of draw. */
    a = ffn_rng_make(7, 99);
    float buf[5];
    ffn_rng_fill_uniform(&a, buf, 5, 0, 1);
    (void)ffn_rng_normal(&a);
    ffn_rng copy = a;
    CHECK(a.counter == 2 + 1);
    ffn_rng rebuilt = ffn_rng_make(7, 99);
    rebuilt.counter = a.counter;
    float fa[7], fc[7], fr[7];
    ffn_rng_fill_normal(&a, fa, 7, 1, 2);
    ffn_rng_fill_normal(&copy, fc, 7, 1, 2);
    ffn_rng_fill_normal(&rebuilt, fr, 7, 1, 2);
    CHECK(memcmp(fa, fc, sizeof fa) == 0);
    CHECK(memcmp(fa, fr, sizeof fa) == 0);
    CHECK(a.counter == 3 + 4); /* ceil(7 / 2) blocks */
    CHECK(ffn_rng_u64(&a) == ffn_rng_u64(&copy));
    CHECK(ffn_rng_below(&a, 1000) == ffn_rng_below(&copy, 1000));
    CHECK(ffn_rng_uniform(&a) == ffn_rng_uniform(&copy));

    /* A fill draws the same values as a fresh fill of a longer buffer. */
    ffn_rng e = ffn_rng_make(5, 6), f = ffn_rng_make(5, 6);
    float short_buf[8], long_buf[11];
    ffn_rng_fill_uniform(&e, short_buf, 8, -1, 1);
    ffn_rng_fill_uniform(&f, long_buf, 11, -1, 1);
    CHECK(memcmp(short_buf, long_buf, sizeof short_buf) == 0);
}

static void test_uniform_stats(void)
{
    enum { N = 200000 };
    ffn_rng r = ffn_rng_make(1, 2);
    double sum = 0, sumsq = 0;
    int in_range = 1;
    for (int i = 0; i < N; i++) {
        float u = ffn_rng_uniform(&r);
        in_range &= u >= 0.0f && u < 1.0f;
        sum += u;
        sumsq += (double)u * u;
    }
    double mean = sum / N, var = sumsq / N - mean * mean;
    CHECK(in_range);
    /* Standard error of the mean is sqrt(1/12/N) = 6.5e-4; allow ~5 sigma. */
    CHECK_NEAR(mean, 0.5, 3e-3);
    CHECK_NEAR(var, 1.0 / 12, 2e-3);

    float *buf = malloc(N * sizeof *buf);
    ffn_rng_fill_uniform(&r, buf, N, -3, 5);
    sum = 0;
    in_range = 1;
    for (int i = 0; i < N; i++) {
        in_range &= buf[i] >= -3.0f && buf[i] <= 5.0f;
        sum += buf[i];
    }
    CHECK(in_range);
    CHECK_NEAR(sum / N, 1.0, 0.03);
    free(buf);
}

static void test_normal_stats(void)
{
    enum { N = 200000 };
    ffn_rng r = ffn_rng_make(3, 4);
    double sum = 0, sumsq = 0, sum4 = 0;
    for (int i = 0; i < N; i++) {
        double x = ffn_rng_normal(&r);
        sum += x;
        sumsq += x * x;
        sum4 += x * x * x * x;
    }
    CHECK_NEAR(sum / N, 0.0, 0.012);   /* se 2.2e-3 */
    CHECK_NEAR(sumsq / N, 1.0, 0.02);  /* se 3.2e-3 */
    CHECK_NEAR(sum4 / N, 3.0, 0.15);   /* kurtosis of a normal; se ~0.022 */

    float *buf = malloc(N * sizeof *buf);
    ffn_rng_fill_normal(&r, buf, N, 2.0f, 0.5f);
    sum = 0;
    sumsq = 0;
    int finite = 1;
    for (int i = 0; i < N; i++) {
        finite &= isfinite(buf[i]);
        sum += buf[i];
        sumsq += (double)buf[i] * buf[i];
    }
    double mean = sum / N;
    CHECK(finite);
    CHECK_NEAR(mean, 2.0, 0.006);
    CHECK_NEAR(sqrt(sumsq / N - mean * mean), 0.5, 0.005);
    free(buf);
}

static void test_below(void)
{
    ffn_rng r = ffn_rng_make(11, 12);
    enum { N = 70000, K = 7 };
    int counts[K] = { 0 };
    int in_range = 1;
    for (int i = 0; i < N; i++) {
        uint64_t x = ffn_rng_below(&r, K);
        in_range &= x < K;
        if (x < K) counts[x]++;
    }
    CHECK(in_range);
    /* Expected 10000 per bucket, sd ~93: allow 5 sigma. */
    for (int k = 0; k < K; k++) CHECK_MSG(abs(counts[k] - N / K) < 470, "bucket %d: %d", k, counts[k]);

    CHECK(ffn_rng_below(&r, 1) == 0);
    /* A bound just above 2^63 rejects nearly half the draws: still in range. */
    uint64_t big = (UINT64_C(1) << 63) + 12345;
    int big_ok = 1, high_half = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = ffn_rng_below(&r, big);
        big_ok &= x < big;
        high_half += x >= big / 2;
    }
    CHECK(big_ok);
    CHECK(high_half > 400 && high_half < 600);
}

static void test_permutation(void)
{
    enum { N = 1000 };
    uint64_t perm[N];
    int seen[N] = { 0 };
    ffn_rng r = ffn_rng_make(21, FFN_STREAM_SHUFFLE);
    ffn_rng_permutation(&r, perm, N);
    int valid = 1, fixed = 0;
    for (int i = 0; i < N; i++) {
        valid &= perm[i] < N;
        if (perm[i] < N) seen[perm[i]]++;
        fixed += perm[i] == (uint64_t)i;
    }
    for (int i = 0; i < N; i++) valid &= seen[i] == 1;
    CHECK(valid);
    CHECK(fixed < 10); /* expected 1 fixed point; P(>=10) is negligible */

    /* Same (seed, stream) gives the same order; position 0 is uniform. */
    uint64_t again[N];
    ffn_rng r2 = ffn_rng_make(21, FFN_STREAM_SHUFFLE);
    ffn_rng_permutation(&r2, again, N);
    CHECK(memcmp(perm, again, sizeof perm) == 0);

    int first_counts[4] = { 0 };
    for (int t = 0; t < 4000; t++) {
        uint64_t p[4];
        ffn_rng_permutation(&r, p, 4);
        first_counts[p[0]]++;
    }
    for (int k = 0; k < 4; k++) CHECK(abs(first_counts[k] - 1000) < 150);

    ffn_rng_permutation(&r, perm, 0); /* n = 0 is a no-op */
    ffn_rng_permutation(&r, perm, 1);
    CHECK(perm[0] == 0);
}

int main(void)
{
    test_known_answers();
    test_determinism_and_resume();
    test_uniform_stats();
    test_normal_stats();
    test_below();
    test_permutation();
    return check_done("test_rng");
}
