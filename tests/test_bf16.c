/* Tests for --precision bf16 and --gemm onednn: the conversion (round to nearest even, the
 * specials), the GEMM layer's bf16 products against a double reference of the
 * same bf16-rounded operands (every transpose, alpha, beta, strided operands,
 * operands read from the kept copy or converted), and every layer kind's
 * gradients in bf16 against the same model in fp32 (within a bf16-sized
 * tolerance, and provably not fp32); fp32 products on oneDNN against the
 * same reference. Skipped (77) where the build or the CPU
 * cannot run bf16 natively. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/bf16.h"
#include "../src/gemm.h"
#include "ffn/model.h"
#include "ffn/rng.h"
#include "check.h"

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- conversion */

static void test_rounding(void)
{
    CHECK(ffn_bf16_from_float(1.0f) == 0x3f80);
    CHECK(ffn_bf16_from_float(-2.0f) == 0xc000);
    /* 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: to even (1). */
    CHECK(ffn_bf16_from_float(1.0f + 0x1p-8f) == 0x3f80);
    /* 1 + 3·2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: to even (1 + 2^-6). */
    CHECK(ffn_bf16_from_float(1.0f + 3 * 0x1p-8f) == 0x3f82);
    /* Just above halfway rounds up. */
    CHECK(ffn_bf16_from_float(from_bits(0x3f808001u)) == 0x3f81);
    CHECK(ffn_bf16_from_float(INFINITY) == 0x7f80);
    CHECK(ffn_bf16_from_float(-INFINITY) == 0xff80);
    CHECK(ffn_bf16_from_float(3.4028235e38f) == 0x7f80); /* FLT_MAX rounds to infinity, as the CPU does */
    uint16_t nan = ffn_bf16_from_float(NAN);
    CHECK((nan & 0x7f80) == 0x7f80 && (nan & 0x7f) != 0);
    /* A NaN whose payload is all in the low half stays NaN (not infinity). */
    uint16_t low_nan = ffn_bf16_from_float(from_bits(0x7f800001u));
    CHECK((low_nan & 0x7f80) == 0x7f80 && (low_nan & 0x7f) != 0);
    CHECK(ffn_float_from_bf16(0x3f82) == 1.0f + 0x1p-6f);

    /* The vector loop agrees with the scalar rule everywhere (specials too). */
    enum { N = 4099 };
    float *x = malloc(N * sizeof *x);
    ffn_bf16 *h = malloc(N * sizeof *h);
    ffn_rng rng = ffn_rng_make(1, 2);
    for (size_t i = 0; i < N; i++) x[i] = from_bits((uint32_t)ffn_rng_u64(&rng));
    x[0] = NAN, x[1] = INFINITY, x[2] = -0.0f, x[3] = 1e-45f;
    ffn_bf16_from_floats(h, x, N);
    int same = 1;
    for (size_t i = 0; i < N; i++) same &= h[i] == ffn_bf16_from_float(x[i]);
    CHECK_MSG(same, "ffn_bf16_from_floats differs from ffn_bf16_from_float");
    free(x);
    free(h);
}

/* ---- the GEMM layer */

/* C = alpha·op(A)·op(B) + beta·C in double, on the operands rounded to bf16
 * (round 1) or as they are (round 0). */
static int ref_round = 1;
static double operand(float v) { return ref_round ? (double)ffn_float_from_bf16(ffn_bf16_from_float(v)) : (double)v; }

static void ref_gemm(int ta, int tb, size_t m, size_t n, size_t k, double alpha, const float *A, size_t lda,
                     const float *B, size_t ldb, double beta, double *C, size_t ldc)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t p = 0; p < k; p++) {
                float a = ta ? A[p * lda + i] : A[i * lda + p], b = tb ? B[j * ldb + p] : B[p * ldb + j];
                s += operand(a) * operand(b);
            }
            C[i * ldc + j] = alpha * s + beta * C[i * ldc + j];
        }
}

/* One product of every kind on engine g, with operands converted (kept 0) or
 * read from the kept bf16 copy (kept 1); leading dimensions pad each row. */
static void check_product(ffn_gemm_engine *g, int ta, int tb, size_t m, size_t n, size_t k, float alpha, float beta,
                          int kept)
{
    const size_t pad = 3;
    size_t arows = ta ? k : m, acols = ta ? m : k, brows = tb ? n : k, bcols = tb ? k : n;
    size_t lda = acols + pad, ldb = bcols + pad, ldc = n + pad;
    size_t na = arows * lda, nb = brows * ldb;
    float *ops = malloc((na + nb) * sizeof *ops), *C = malloc(m * ldc * sizeof *C);
    double *R = malloc(m * ldc * sizeof *R);
    ffn_bf16 *copy = malloc((na + nb) * sizeof *copy);
    ffn_rng rng = ffn_rng_make(3, m * 131 + n * 7 + k);
    ffn_rng_fill_uniform(&rng, ops, na + nb, -1, 1);
    ffn_rng_fill_uniform(&rng, C, m * ldc, -1, 1);
    for (size_t i = 0; i < m * ldc; i++) R[i] = C[i];
    float *A = ops, *B = ops + na;
    if (kept) {
        ffn_bf16_from_floats(copy, ops, na + nb);
        ffn_gemm_set_bf16_copy(g, ops, copy, na + nb);
    } else {
        ffn_gemm_set_bf16_copy(g, NULL, NULL, 0);
    }
    ffn_gemm(g, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    ref_gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, R, ldc);
    /* Exact products of bf16 values summed in fp32: error ~ k·2^-24·|terms|. */
    double worst = 0, tol = 1e-6 * (double)k + 1e-6;
    int pad_kept = 1;
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < n; j++) worst = fmax(worst, fabs(C[i * ldc + j] - R[i * ldc + j]));
        for (size_t j = n; j < ldc; j++) pad_kept &= C[i * ldc + j] == (float)R[i * ldc + j];
    }
    CHECK_MSG(worst <= tol, "bf16 gemm ta%d tb%d %zux%zux%zu alpha %g beta %g kept %d: error %g > %g", ta, tb, m, n,
              k, (double)alpha, (double)beta, kept, worst, tol);
    CHECK_MSG(pad_kept, "bf16 gemm wrote outside C's rows (ldc padding changed)");
    ffn_gemm_set_bf16_copy(g, NULL, NULL, 0);
    free(ops);
    free(C);
    free(R);
    free(copy);
}

/* ffn_gemm_typed: A and/or B given already in bf16 (read as they are), C
 * written in bf16 (rounded once from the fp32 sum), against the reference on
 * the bf16 operands; on engine g, or on OpenBLAS's fallback (g NULL, which
 * widens bf16 operands exactly). Padding between rows is left alone. */
static void check_typed(ffn_gemm_engine *g, int ta, int tb, size_t m, size_t n, size_t k, float alpha, float beta,
                        int a16, int b16, int c16)
{
    const size_t pad = 2;
    size_t arows = ta ? k : m, acols = ta ? m : k, brows = tb ? n : k, bcols = tb ? k : n;
    size_t lda = acols + pad, ldb = bcols + pad, ldc = n + pad;
    size_t na = arows * lda, nb = brows * ldb;
    float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *C = malloc(m * ldc * sizeof *C);
    ffn_bf16 *A16 = malloc(na * sizeof *A16), *B16 = malloc(nb * sizeof *B16), *C16 = malloc(m * ldc * sizeof *C16);
    double *R = malloc(m * ldc * sizeof *R);
    ffn_rng rng = ffn_rng_make(4, m * 131 + n * 7 + k);
    ffn_rng_fill_uniform(&rng, A, na, -1, 1);
    ffn_rng_fill_uniform(&rng, B, nb, -1, 1);
    ffn_rng_fill_uniform(&rng, C, m * ldc, -1, 1);
    /* Without a bf16 engine the fp32 operands are not rounded: make them bf16 values. */
    ffn_bf16_round_floats(A, na);
    ffn_bf16_round_floats(B, nb);
    ffn_bf16_from_floats(A16, A, na);
    ffn_bf16_from_floats(B16, B, nb);
    for (size_t i = 0; i < m * ldc; i++) C16[i] = 0x7fc1; /* a NaN marker: written or padding */
    for (size_t i = 0; i < m * ldc; i++) R[i] = c16 ? 0.0 : C[i];
    float eff_beta = c16 ? 0.0f : beta;
    ffn_gemm_typed(g, ta, tb, m, n, k, alpha, a16 ? (const void *)A16 : A, a16, lda, b16 ? (const void *)B16 : B, b16,
                   ldb, beta, c16 ? (void *)C16 : C, c16, ldc);
    ref_gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, eff_beta, R, ldc);
    double worst = 0, tol = 1e-6 * (double)k + 1e-6;
    int pad_kept = 1;
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < n; j++) {
            double got = c16 ? ffn_float_from_bf16(C16[i * ldc + j]) : C[i * ldc + j];
            double allowed = tol + (c16 ? fabs(R[i * ldc + j]) * 0x1p-8 : 0);
            worst = fmax(worst, fabs(got - R[i * ldc + j]) / allowed);
        }
        for (size_t j = n; j < ldc; j++)
            pad_kept &= c16 ? C16[i * ldc + j] == 0x7fc1 : C[i * ldc + j] == (float)R[i * ldc + j];
    }
    CHECK_MSG(worst <= 1, "typed gemm %s ta%d tb%d %zux%zux%zu A%s B%s C%s: error %g of its bound", g ? "bf16" : "fallback",
              ta, tb, m, n, k, a16 ? "16" : "32", b16 ? "16" : "32", c16 ? "16" : "32", worst);
    CHECK_MSG(pad_kept, "typed gemm wrote outside C's rows");
    free(A), free(B), free(C), free(A16), free(B16), free(C16), free(R);
}

static void test_gemm_typed(void)
{
    ffn_gemm_engine *g = NULL;
    CHECK(ffn_gemm_create(&g, FFN_PRECISION_BF16, FFN_GEMM_AUTO) == FFN_OK);
    if (!g) return;
    static const size_t shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 65}};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                for (int types = 1; types < 8; types++) {
                    int a16 = types & 1, b16 = (types >> 1) & 1, c16 = (types >> 2) & 1;
                    float beta = (types + s) & 1 ? 1.0f : 0.0f;
                    check_typed(g, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 0.5f, beta, a16, b16, c16);
                    check_typed(NULL, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 0.5f, beta, a16, b16, c16);
                }
    ffn_gemm_free(g);
}

static void test_gemm(void)
{
    ffn_gemm_engine *g = NULL;
    CHECK(ffn_gemm_create(&g, FFN_PRECISION_BF16, FFN_GEMM_AUTO) == FFN_OK);
    if (!g) return;
    char name[160];
    ffn_gemm_describe(g, name, sizeof name);
    CHECK_MSG(strstr(name, "bf16") != NULL, "engine: %s", name);
    static const size_t shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {64, 130, 200}};
    static const float alphas[] = {1.0f, 0.5f}, betas[] = {0.0f, 1.0f, 0.25f};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                for (size_t a = 0; a < 2; a++)
                    for (size_t b = 0; b < 3; b++)
                        check_product(g, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], alphas[a], betas[b],
                                      (int)((s + a + b) & 1));
    /* A shape seen again reuses its primitive and gives the same bits. */
    check_product(g, 0, 1, 33, 17, 65, 1.0f, 0.0f, 0);
    ffn_gemm_free(g);

    /* bf16 on OpenBLAS is refused (it has no bf16 GEMM), never emulated. */
    g = NULL;
    CHECK(ffn_gemm_create(&g, FFN_PRECISION_BF16, FFN_GEMM_OPENBLAS) != FFN_OK && g == NULL);
    CHECK_MSG(strstr(ffn_last_error(), "oneDNN only") != NULL, "%s", ffn_last_error());

    /* fp32 on oneDNN: the operands as they are, the same reference. */
    CHECK(ffn_gemm_create(&g, FFN_PRECISION_FP32, FFN_GEMM_ONEDNN) == FFN_OK);
    if (!g) return;
    ffn_gemm_describe(g, name, sizeof name);
    CHECK_MSG(strncmp(name, "fp32: oneDNN", 12) == 0, "engine: %s", name);
    ref_round = 0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                check_product(g, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], alphas[s & 1], betas[s % 3], 0);
    ref_round = 1;
    ffn_gemm_free(g);
}

/* ---- every layer kind: bf16 gradients against fp32 */

enum { IN = 24, BATCH = 16 };

/* The relative L2 error of b against a over n values. */
static double rel_err(const float *a, const float *b, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)a[i] * a[i];
    }
    return sqrt(d / fmax(s, 1e-30));
}

/* Runs forward and backward of spec in fp32 and in bf16 on the same values:
 * every gradient, dx and the output within tol (relative L2) of fp32, and
 * at least one of them different (bf16 really ran). */
static void layer_check(const char *spec, double tol)
{
    ffn_model *m[2] = {NULL, NULL};
    float *grads[2], *outs[2], *dxs[2];
    size_t np = 0, out = 0;
    double worst = 0, largest = 0;
    for (int p = 0; p < 2; p++) {
        CHECK_MSG(ffn_model_create_from_text(&m[p], spec, IN) == FFN_OK, "%s: %s", spec, ffn_last_error());
        if (!m[p]) return;
        CHECK(ffn_model_reserve(m[p], BATCH) == FFN_OK);
        CHECK_MSG(ffn_model_set_precision(m[p], p ? FFN_PRECISION_BF16 : FFN_PRECISION_FP32) == FFN_OK, "%s: %s",
                  spec, ffn_last_error());
        ffn_model_init_params(m[p], 5);
        np = ffn_model_param_count(m[p]);
        out = ffn_model_output_dim(m[p]);
        /* Random adapters, gains and biases: every path carries gradient. */
        ffn_rng rng = ffn_rng_make(9, 10);
        for (size_t k = 0; k < ffn_model_tensor_count(m[p]); k++) {
            const ffn_tensor *t = ffn_model_tensor(m[p], k);
            int gain = strstr(t->name, "gamma") != NULL;
            ffn_rng_fill_uniform(&rng, t->data, t->count, gain ? 0.5f : -0.5f, gain ? 1.5f : 0.5f);
        }
        ffn_model_params_changed(m[p]);
        float x[BATCH * IN], dout[BATCH * 64];
        ffn_rng_fill_uniform(&rng, x, BATCH * IN, -2, 2);
        ffn_rng_fill_uniform(&rng, dout, BATCH * out, -1, 1);
        const float *y = ffn_model_forward_train(m[p], x, BATCH, 3, 1, NULL);
        outs[p] = malloc(BATCH * out * sizeof(float));
        memcpy(outs[p], y, BATCH * out * sizeof(float));
        dxs[p] = malloc(BATCH * IN * sizeof(float));
        ffn_model_backward_dx(m[p], x, BATCH, dout, 0, NULL, NULL, dxs[p]);
        grads[p] = ffn_model_grads(m[p]);
    }
    const char *what = "output";
    worst = rel_err(outs[0], outs[1], BATCH * out);
    largest = worst;
    double e = rel_err(dxs[0], dxs[1], BATCH * IN);
    if (e > worst) worst = e, what = "dx";
    largest = fmax(largest, e);
    for (size_t k = 0; k < ffn_model_tensor_count(m[0]); k++) {
        const ffn_tensor *t = ffn_model_tensor(m[0], k);
        if (!t->trainable) continue;
        e = rel_err(grads[0] + t->offset, grads[1] + t->offset, t->count);
        if (e > worst) worst = e, what = t->name;
        largest = fmax(largest, e);
    }
    (void)np;
    CHECK_MSG(worst < tol, "%s: bf16 %s differs from fp32 by %g (relative L2) > %g", spec, what, worst, tol);
    CHECK_MSG(largest > 1e-5, "%s: bf16 gave fp32's results exactly (%g): did it run in bf16?", spec, largest);
    for (int p = 0; p < 2; p++) {
        free(outs[p]);
        free(dxs[p]);
        ffn_model_free(m[p]);
    }
}

static void test_layers(void)
{
    /* bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.002 per
     * operand); through two or three products errors of ~0.5-1% are bf16's
     * own. A wrong transpose, a stale weight or a lost term gives O(1). */
    layer_check("dense:16:relu,dense:8", 0.02);
    layer_check("dense:20:gelu,dense:12:tanh,dense:6", 0.02);
    layer_check("dense:16:tanh:lora=4:lora_alpha=8,dense:5:lora=2", 0.02);
    layer_check("ffn:32", 0.02);
    layer_check("ffn:32:sigmoid", 0.02);
    layer_check("swiglu:40", 0.03);
    layer_check("layernorm,dropout:0.3,ffn:20,swiglu:16,dense:7", 0.03);
}

/* One bf16 forward and backward of spec with the blocks' caches in bf16 or
 * fp32 (bf16_caches) and with or without --recompute: output, dx and
 * gradients concatenated into a malloc'd array of *n floats. */
static float *bf16_run(const char *spec, int bf16_caches, int recompute, size_t *n)
{
    ffn_model *m = NULL;
    *n = 0;
    CHECK_MSG(ffn_model_create_from_text(&m, spec, IN) == FFN_OK, "%s: %s", spec, ffn_last_error());
    if (!m) return NULL;
    CHECK(ffn_model_set_recompute(m, recompute) == FFN_OK);
    CHECK(ffn_model_set_bf16_caches(m, bf16_caches) == FFN_OK);
    CHECK(ffn_model_set_precision(m, FFN_PRECISION_BF16) == FFN_OK);
    CHECK(ffn_model_reserve(m, BATCH) == FFN_OK);
    CHECK(ffn_model_bf16_caches(m) == bf16_caches);
    ffn_model_init_params(m, 5);
    ffn_rng rng = ffn_rng_make(9, 10);
    for (size_t k = 0; k < ffn_model_tensor_count(m); k++) {
        const ffn_tensor *t = ffn_model_tensor(m, k);
        int gain = strstr(t->name, "gamma") != NULL;
        ffn_rng_fill_uniform(&rng, t->data, t->count, gain ? 0.5f : -0.5f, gain ? 1.5f : 0.5f);
    }
    ffn_model_params_changed(m);
    size_t out = ffn_model_output_dim(m), np = ffn_model_param_count(m);
    float x[BATCH * IN], dout[BATCH * 64];
    ffn_rng_fill_uniform(&rng, x, BATCH * IN, -2, 2);
    ffn_rng_fill_uniform(&rng, dout, BATCH * out, -1, 1);
    *n = BATCH * out + BATCH * IN + np;
    float *r = malloc(*n * sizeof *r);
    memcpy(r, ffn_model_forward_train(m, x, BATCH, 3, 1, NULL), BATCH * out * sizeof *r);
    ffn_model_backward_dx(m, x, BATCH, dout, 0, NULL, NULL, r + BATCH * out);
    memcpy(r + BATCH * out + BATCH * IN, ffn_model_grads(m), np * sizeof *r);
    ffn_model_free(m);
    return r;
}

/* The blocks' caches in bf16: their activation memory halves (the plan says
 * so, value for value), results stay within bf16's tolerance of fp32 caches
 * (and differ: the rounding happened), and --recompute refills the bf16
 * cache with the same bits. */
static void test_bf16_caches(void)
{
    static const char *const specs[] = {"ffn:32", "ffn:32:sigmoid", "swiglu:40", "ffn:20,swiglu:16,dense:7",
                                        "dense:8:relu,ffn:16:tanh,swiglu:9,ffn:7,dense:4:lora=2"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        size_t n32, n16, nre;
        float *f32 = bf16_run(specs[i], 0, 0, &n32), *b16 = bf16_run(specs[i], 1, 0, &n16);
        float *re = bf16_run(specs[i], 1, 1, &nre);
        if (f32 && b16 && re && n32 == n16 && n16 == nre) {
            double e = rel_err(f32, b16, n32);
            CHECK_MSG(e < 0.02 && e > 0, "%s: bf16 caches vs fp32 caches: relative L2 %g", specs[i], e);
            CHECK_MSG(memcmp(b16, re, n16 * sizeof *re) == 0, "%s: --recompute with bf16 caches differs", specs[i]);
        }
        free(f32), free(b16), free(re);
    }
    /* A block keeps xhat, n [batch, D] and its hidden values [batch, H]
     * (swiglu a, g, p; ffn:gelu z, h; ffn:tanh h): 2D + kH floats a row in
     * fp32, half that in bf16 (rstd stays fp32). Backward's work area, one for
     * every layer, grows by D a row (xhat widened). */
    enum { H = 64, B = 10, D = 12 };
    static const struct {
        const char *spec;
        size_t saved;
    } plans[] = {{"swiglu:64", B * ((2 * D + 3 * H) / 2 - D)},
                 {"swiglu:64,swiglu:64", B * (2 * ((2 * D + 3 * H) / 2) - D)},
                 {"ffn:64", B * ((2 * D + 2 * H) / 2 - D)},
                 {"ffn:64,ffn:64", B * (2 * ((2 * D + 2 * H) / 2) - D)},
                 {"ffn:64:tanh", B * ((2 * D + H) / 2 - D)}};
    for (size_t i = 0; i < sizeof plans / sizeof plans[0]; i++) {
        ffn_layer_spec *ls = NULL;
        size_t count = 0, params, a32, a16;
        CHECK(ffn_spec_parse(plans[i].spec, &ls, &count) == FFN_OK);
        CHECK(ffn_model_plan(ls, count, D, B, 0, 0, &params, &a32, NULL) == FFN_OK);
        CHECK(ffn_model_plan(ls, count, D, B, 0, 1, &params, &a16, NULL) == FFN_OK);
        CHECK_MSG(a32 - a16 == plans[i].saved, "%s: bf16 caches save %zu floats, expected %zu", plans[i].spec,
                  a32 - a16, plans[i].saved);
        /* The model allocates what the plan says. */
        ffn_model *m = NULL;
        CHECK(ffn_model_create_from_text(&m, plans[i].spec, D) == FFN_OK);
        if (m) {
            CHECK(ffn_model_set_precision(m, FFN_PRECISION_BF16) == FFN_OK);
            CHECK(ffn_model_reserve(m, B) == FFN_OK);
            const ffn_layer *first = ffn_model_layer_const(m, 0);
            CHECK(first->cache_bf16 == 1);
            ffn_model_free(m);
        }
        free(ls);
    }
}

/* Writing parameters between forwards is seen by the next forward: the bf16
 * copy of the weights follows ffn_model_params. */
static void test_weights_follow(void)
{
    ffn_model *m = NULL;
    CHECK(ffn_model_create_from_text(&m, "dense:4", 3) == FFN_OK);
    if (!m) return;
    CHECK(ffn_model_reserve(m, 2) == FFN_OK);
    CHECK(ffn_model_set_precision(m, FFN_PRECISION_BF16) == FFN_OK);
    CHECK(ffn_model_precision(m) == FFN_PRECISION_BF16);
    float *w = ffn_model_params(m);
    memset(w, 0, ffn_model_param_count(m) * sizeof *w);
    const float x[6] = {1, 2, 3, 4, 5, 6};
    const float *y = ffn_model_forward(m, x, 2);
    CHECK(y[0] == 0.0f && y[7] == 0.0f);
    ffn_model_params(m)[0] = 2.0f; /* W[0][0] */
    y = ffn_model_forward(m, x, 2);
    CHECK_NEAR(y[0], 2.0f, 0);
    CHECK_NEAR(y[4], 8.0f, 0);
    /* Back to fp32: the same values, now from OpenBLAS. */
    CHECK(ffn_model_set_precision(m, FFN_PRECISION_FP32) == FFN_OK);
    y = ffn_model_forward(m, x, 2);
    CHECK_NEAR(y[4], 8.0f, 0);
    ffn_model_free(m);
}

int main(void)
{
    test_rounding();
    char why[256];
    if (!ffn_gemm_supports(FFN_PRECISION_BF16, why, sizeof why)) {
        printf("test_bf16: SKIP the bf16 products: %s\n", why);
        check_done("test_bf16");
        return check_failures ? 1 : 77;
    }
    test_gemm();
    test_gemm_typed();
    test_layers();
    test_bf16_caches();
    test_weights_follow();
    return check_done("test_bf16");
}
