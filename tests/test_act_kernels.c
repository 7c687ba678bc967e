/* The vectorised element-wise kernels (src/act_kernels.inc) against double
 * precision, on every kernel set: this process checks the set the CPU gets
 * (AVX-512 here), then runs itself again with FFN_KERNELS=avx2 (whose GELU
 * must give the same bits) and FFN_KERNELS=portable.
 *  - GELU forward on a fine grid over [-12, 12] and at the extremes:
 *    |error| <= 1e-6 (libm's erff-based form was 4.5e-7; ours is 4.7e-7);
 *  - GELU backward (Phi + z phi) within 2e-6 absolute + 1e-6 relative;
 *  - the fused bias + GELU equals bias-then-GELU, and writes z + b;
 *  - relu forward/backward and the bias gradient (column sums) exactly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/act.h"
#include "ffn/dense.h"
#include "ffn/mem.h"
#include "ffn/rng.h"
#include "check.h"

static double gelu_ref(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }
static double gelu_grad_ref(double x)
{
    return 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) * 0.39894228040143267794;
}

static void test_gelu(void)
{
    enum { N = 24001 };
    float *z = ffn_alloc_floats(N), *y = ffn_alloc_floats(N), *dy = ffn_alloc_floats(N), *dz = ffn_alloc_floats(N);
    for (int i = 0; i < N; i++) {
        z[i] = -12.0f + 24.0f * (float)i / (float)(N - 1);
        dy[i] = 1.0f;
    }
    ffn_act_forward(FFN_ACT_GELU, 0, z, y, 1, N);
    ffn_act_backward(FFN_ACT_GELU, 0, z, y, dy, dz, 1, N);
    double fwd = 0, bwd = 0;
    for (int i = 0; i < N; i++) {
        fwd = fmax(fwd, fabs(y[i] - gelu_ref(z[i])));
        double g = gelu_grad_ref(z[i]);
        bwd = fmax(bwd, fabs(dz[i] - g) / (2e-6 + 1e-6 * fabs(g)));
    }
    CHECK_MSG(fwd <= 1e-6, "GELU forward max error %g (%s)", fwd, ffn_act_kernels());
    CHECK_MSG(bwd <= 1.0, "GELU backward error %g of its tolerance (%s)", bwd, ffn_act_kernels());

    /* Extremes: exact identity far right, exact zero far left, finite gradients. */
    float ext[6] = {1e4f, -1e4f, 30.0f, -30.0f, 0.0f, -0.0f}, ye[6], de[6], one[6] = {1, 1, 1, 1, 1, 1};
    ffn_act_forward(FFN_ACT_GELU, 0, ext, ye, 1, 6);
    ffn_act_backward(FFN_ACT_GELU, 0, ext, ye, one, de, 1, 6);
    CHECK(ye[0] == 1e4f && ye[2] == 30.0f);
    CHECK(fabsf(ye[1]) < 1e-30f && fabsf(ye[3]) < 1e-30f);
    CHECK(ye[4] == 0.0f && ye[5] == 0.0f);
    CHECK(de[0] == 1.0f && de[2] == 1.0f);
    CHECK(fabsf(de[1]) < 1e-30f && fabsf(de[3]) < 1e-30f);
    CHECK(de[4] == 0.5f);
    float nan_in = NAN, nan_out;
    ffn_act_forward(FFN_ACT_GELU, 0, &nan_in, &nan_out, 1, 1);
    CHECK(isnan(nan_out));
    /* NaN and infinities through the vector loops (16 lanes' worth), both
     * ways: NaN stays NaN, and no float-to-int conversion sees a NaN (the
     * fuzzer's UBSan report on exp_neg). */
    float zs[16], ys[16], dys[16], dzs[16];
    for (int i = 0; i < 16; i++) zs[i] = i % 3 == 0 ? NAN : i % 3 == 1 ? INFINITY : -INFINITY;
    ffn_act_forward(FFN_ACT_GELU, 0, zs, ys, 1, 16);
    for (int i = 0; i < 16; i++) dys[i] = 1.0f;
    ffn_act_backward(FFN_ACT_GELU, 0, zs, ys, dys, dzs, 1, 16);
    int nan_ok = 1;
    for (int i = 0; i < 16; i += 3) nan_ok &= isnan(ys[i]) && isnan(dzs[i]);
    CHECK(nan_ok);

    /* Aliased forward (y == z) gives the same values. */
    memcpy(dz, z, N * sizeof *z);
    ffn_act_forward(FFN_ACT_GELU, 0, dz, dz, 1, N);
    CHECK(memcmp(dz, y, N * sizeof *y) == 0);
    ffn_free(z);
    ffn_free(y);
    ffn_free(dy);
    ffn_free(dz);
}

static void test_bias_act(void)
{
    enum { R = 7, C = 131 }; /* odd sizes: vector remainders */
    float z[R * C], z2[R * C], y[R * C], y2[R * C], b[C];
    ffn_rng rng = ffn_rng_make(5, 6);
    ffn_rng_fill_normal(&rng, z, R * C, 0, 2);
    ffn_rng_fill_normal(&rng, b, C, 0, 1);
    for (int a = 0; a < FFN_ACT_COUNT; a++) {
        memcpy(z2, z, sizeof z);
        ffn_bias_act_forward((ffn_act)a, 0.01f, b, z2, y, R, C);
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                float want = z[r * C + c] + b[c];
                CHECK_MSG(z2[r * C + c] == want, "%s: z + b", ffn_act_name((ffn_act)a));
            }
        ffn_act_forward((ffn_act)a, 0.01f, z2, y2, R, C);
        CHECK_MSG(memcmp(y, y2, sizeof y) == 0, "%s: fused bias + act differs", ffn_act_name((ffn_act)a));
    }
    /* relu backward: dy where y > 0, else 0. */
    float dy[R * C], dz[R * C];
    ffn_rng_fill_normal(&rng, dy, R * C, 0, 1);
    ffn_act_forward(FFN_ACT_RELU, 0, z, y, R, C);
    ffn_act_backward(FFN_ACT_RELU, 0, z, y, dy, dz, R, C);
    for (int i = 0; i < R * C; i++) {
        CHECK(y[i] == (z[i] > 0 ? z[i] : 0.0f));
        CHECK(dz[i] == (y[i] > 0 ? dy[i] : 0.0f));
    }
}

/* The bias gradient: column sums of dz, written or accumulated. */
static void test_bias_grad(void)
{
    enum { B = 9, IN = 3, OUT = 37 };
    float x[B * IN], W[OUT * IN], dy[B * OUT], dW[OUT * IN], db[OUT];
    ffn_rng rng = ffn_rng_make(8, 9);
    ffn_rng_fill_normal(&rng, x, B * IN, 0, 1);
    ffn_rng_fill_normal(&rng, W, OUT * IN, 0, 1);
    ffn_rng_fill_normal(&rng, dy, B * OUT, 0, 1);
    double want[OUT];
    for (int c = 0; c < OUT; c++) {
        want[c] = 0;
        for (int r = 0; r < B; r++) want[c] += dy[r * OUT + c];
    }
    for (int c = 0; c < OUT; c++) db[c] = 100.0f;
    ffn_dense_backward(NULL, dW, db, dy, x, W, NULL, NULL, B, IN, OUT, FFN_ACT_IDENTITY, 0, 0);
    for (int c = 0; c < OUT; c++) CHECK_NEAR(db[c], want[c], 1e-5);
    for (int c = 0; c < OUT; c++) db[c] = 1.0f;
    ffn_dense_backward(NULL, dW, db, dy, x, W, NULL, NULL, B, IN, OUT, FFN_ACT_IDENTITY, 0, 1);
    for (int c = 0; c < OUT; c++) CHECK_NEAR(db[c], 1.0 + want[c], 1e-5);
}

/* FNV-1a over the bits of GELU forward and backward on a grid (with bias):
 * the AVX-512 and AVX2 sets must give the same bits (same FMAs, same order). */
static unsigned long long gelu_bits_hash(void)
{
    enum { ROWS = 7, COLS = 1031 };
    float *z = ffn_alloc_floats(ROWS * COLS), *y = ffn_alloc_floats(ROWS * COLS), *b = ffn_alloc_floats(COLS);
    float *dz = ffn_alloc_floats(ROWS * COLS);
    for (int i = 0; i < ROWS * COLS; i++) z[i] = -9.0f + 18.0f * (float)((i * 7919) % 10007) / 10007.0f;
    for (int c = 0; c < COLS; c++) b[c] = 0.01f * (float)(c % 13) - 0.06f;
    ffn_bias_act_forward(FFN_ACT_GELU, 0, b, z, y, ROWS, COLS);
    for (int i = 0; i < ROWS * COLS; i++) dz[i] = 0.5f + 0.001f * (float)(i % 17);
    ffn_act_backward(FFN_ACT_GELU, 0, z, y, dz, dz, ROWS, COLS);
    unsigned long long h = 1469598103934665603ull;
    const float *parts[] = {y, dz};
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < ROWS * COLS; i++) {
            unsigned int u;
            memcpy(&u, &parts[p][i], sizeof u);
            h = (h ^ u) * 1099511628211ull;
        }
    ffn_free(z);
    ffn_free(y);
    ffn_free(b);
    ffn_free(dz);
    return h;
}

int main(int argc, char **argv)
{
    (void)argc;
    const char *kernels = ffn_act_kernels();
    printf("kernels: %s\n", kernels);
    const unsigned long long hash = gelu_bits_hash();
    printf("gelu bits: %016llx\n", hash);
    test_gelu();
    test_bias_act();
    test_bias_grad();
    if (!getenv("FFN_KERNELS") && strcmp(kernels, "avx512+fma") == 0) {
        /* The AVX2 set in a fresh process: the same bits as this one's. */
        char cmd[4096], line[256];
        snprintf(cmd, sizeof cmd, "FFN_KERNELS=avx2 '%s'", argv[0]);
        FILE *child = popen(cmd, "r");
        CHECK(child != NULL);
        unsigned long long other = 0;
        int found = 0;
        while (child && fgets(line, sizeof line, child)) found |= sscanf(line, "gelu bits: %llx", &other) == 1;
        int rc = child ? pclose(child) : -1;
        CHECK_MSG(rc == 0, "the AVX2 kernels failed (exit %d)", rc);
        CHECK_MSG(found && other == hash, "GELU on AVX2 gives other bits than on AVX-512 (%016llx vs %016llx)", other,
                  hash);
    }
    if (!getenv("FFN_KERNELS") && strcmp(kernels, "portable") != 0) {
        /* The other set, in a fresh process (the choice is made once). */
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "FFN_KERNELS=portable '%s'", argv[0]);
        int rc = system(cmd);
        CHECK_MSG(rc == 0, "the portable kernels failed (exit %d)", rc);
    }
    return check_done("test_act_kernels");
}
