/* Tests for the weight initialisers: sample statistics against the target
 * std (both ffn_init_std and the textbook formula written out here), bounds of
 * the uniform kinds, the shape of the normal kinds, determinism, and names. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/init.h"
#include "ffn/model.h"
#include "ffn/rng.h"
#include "check.h"

/* The textbook std of each initialiser, written out independently of
 * src/init.c: U(-a, a) has std a / sqrt(3). param is the explicit
 * range / std of uniform and normal. */
static double formula_std(ffn_init kind, double param, double fan_in, double fan_out)
{
    switch (kind) {
    case FFN_INIT_ZEROS: return 0.0;
    case FFN_INIT_UNIFORM: return param / sqrt(3.0);
    case FFN_INIT_NORMAL: return param;
    case FFN_INIT_XAVIER_UNIFORM: return sqrt(6.0 / (fan_in + fan_out)) / sqrt(3.0);
    case FFN_INIT_XAVIER_NORMAL: return sqrt(2.0 / (fan_in + fan_out));
    case FFN_INIT_HE_UNIFORM: return sqrt(6.0 / fan_in) / sqrt(3.0);
    case FFN_INIT_HE_NORMAL: return sqrt(2.0 / fan_in);
    case FFN_INIT_LECUN_UNIFORM: return sqrt(3.0 / fan_in) / sqrt(3.0);
    case FFN_INIT_LECUN_NORMAL: return sqrt(1.0 / fan_in);
    default: return NAN;
    }
}

/* Half-width of the uniform kinds (0 for the others). */
static double formula_bound(ffn_init kind, double param, double fan_in, double fan_out)
{
    switch (kind) {
    case FFN_INIT_UNIFORM: return param;
    case FFN_INIT_XAVIER_UNIFORM: return sqrt(6.0 / (fan_in + fan_out));
    case FFN_INIT_HE_UNIFORM: return sqrt(6.0 / fan_in);
    case FFN_INIT_LECUN_UNIFORM: return sqrt(3.0 / fan_in);
    default: return 0.0;
    }
}

static int is_uniform(ffn_init kind)
{
    return kind == FFN_INIT_UNIFORM || kind == FFN_INIT_XAVIER_UNIFORM ||
           kind == FFN_INIT_HE_UNIFORM || kind == FFN_INIT_LECUN_UNIFORM;
}

static void check_block(ffn_init kind, float param, size_t fan_out, size_t fan_in,
                        uint64_t seed)
{
    const size_t n = fan_out * fan_in;
    float *w = malloc(n * sizeof *w);
    CHECK(w != NULL);
    if (!w) return;
    for (size_t i = 0; i < n; i++) w[i] = NAN; /* every element must be written */
    ffn_rng rng = ffn_rng_make(seed, FFN_STREAM_INIT);
    ffn_init_fill(kind, param, w, fan_out, fan_in, &rng);

    const char *name = ffn_init_name(kind);
    /* No param (<= 0) means the documented default 0.05. */
    const double explicit_param = param > 0 ? (double)param : (double)FFN_INIT_DEFAULT_PARAM;
    const double want = formula_std(kind, explicit_param, (double)fan_in, (double)fan_out);
    const double lib = ffn_init_std(kind, param, fan_in, fan_out);
    /* ffn_init_std against the formula: both in double, 1e-12 relative. */
    CHECK_MSG(fabs(lib - want) <= 1e-12 * want, "%s [%zu,%zu]: ffn_init_std %.12g, formula %.12g",
              name, fan_out, fan_in, lib, want);

    if (kind == FFN_INIT_ZEROS) {
        size_t nonzero = 0;
        for (size_t i = 0; i < n; i++) nonzero += w[i] != 0.0f || signbit(w[i]);
        CHECK_MSG(nonzero == 0, "zeros: %zu of %zu elements are not +0", nonzero, n);
        free(w);
        return;
    }

    double sum = 0, sumsq = 0, maxabs = 0;
    size_t finite = 0, within_1sd = 0;
    for (size_t i = 0; i < n; i++) {
        finite += isfinite(w[i]) != 0;
        sum += w[i];
        sumsq += (double)w[i] * w[i];
        maxabs = fmax(maxabs, fabs(w[i]));
        within_1sd += fabs(w[i]) < want;
    }
    CHECK_MSG(finite == n, "%s: %zu of %zu elements finite", name, finite, n);
    const double mean = sum / (double)n;
    const double var = sumsq / (double)n - mean * mean;

    /* Mean: its standard error is std / sqrt(n); 5 standard errors. */
    CHECK_MSG(fabs(mean) <= 5.0 * want / sqrt((double)n), "%s [%zu,%zu]: mean %g, std %g", name,
              fan_out, fan_in, mean, want);
    /* Variance: the sample variance has relative standard error sqrt(2/n)
     * for a normal and sqrt(0.8/n) for a uniform, at most 0.0055 for the
     * 65536-element block; 3% relative is > 5 standard errors, while every
     * wrong formula (swapped fans, uniform bound used as std, a missing
     * factor 2 or 3) is off by a factor >= 1.3 in variance. */
    CHECK_MSG(fabs(var / (want * want) - 1.0) < 0.03, "%s [%zu,%zu]: variance %g, formula %g",
              name, fan_out, fan_in, var, want * want);
    CHECK_MSG(fabs(var / (lib * lib) - 1.0) < 0.03, "%s [%zu,%zu]: variance %g, ffn_init_std^2 %g",
              name, fan_out, fan_in, var, lib * lib);

    const double frac_1sd = (double)within_1sd / (double)n;
    if (is_uniform(kind)) {
        const double a = formula_bound(kind, explicit_param, (double)fan_in, (double)fan_out);
        /* Bounded by the limit (float rounding of a: 1e-6 relative), and the
         * range is actually used: the largest |w| of 65536 draws lies within
         * 1e-3 * a of a with probability 1 - e^-65. */
        CHECK_MSG(maxabs <= a * (1 + 1e-6), "%s: max |w| %g exceeds the limit %g", name, maxabs, a);
        CHECK_MSG(maxabs >= a * 0.999, "%s: max |w| %g far below the limit %g", name, maxabs, a);
        /* Uniform: P(|w| < std) = 1/sqrt(3) = 0.577 (a normal gives 0.683);
         * standard error < 0.002, tolerance 0.01. */
        CHECK_MSG(fabs(frac_1sd - 1.0 / sqrt(3.0)) < 0.01, "%s: P(|w| < std) = %g", name, frac_1sd);
    } else {
        /* Normal: P(|w| < std) = erf(1/sqrt 2) = 0.6827, tolerance 0.01. */
        CHECK_MSG(fabs(frac_1sd - erf(1.0 / sqrt(2.0))) < 0.01, "%s: P(|w| < std) = %g", name,
                  frac_1sd);
        /* Unbounded tails: some draw beyond 3 std (expected 0.27% of n, so
         * hundreds of them). */
        CHECK_MSG(maxabs > 3.0 * want, "%s: max |w| %g has no tail beyond 3 std %g", name, maxabs,
                  want);
    }
    free(w);
}

static void test_statistics(void)
{
    const size_t shapes[][2] = { { 256, 512 }, { 512, 128 } }; /* [fan_out, fan_in] */
    for (int kind = 0; kind < FFN_INIT_COUNT; kind++)
        for (size_t s = 0; s < 2; s++) {
            /* An explicit param for uniform/normal, different from the default. */
            float param = (kind == FFN_INIT_UNIFORM || kind == FFN_INIT_NORMAL) ? 0.1f : 0.0f;
            check_block((ffn_init)kind, param, shapes[s][0], shapes[s][1], 1234 + s);
        }
    /* The default param (0.05) applies when none is given (param <= 0). */
    CHECK_NEAR(ffn_init_std(FFN_INIT_NORMAL, 0.0f, 10, 10), 0.05, 1e-9);
    CHECK_NEAR(ffn_init_std(FFN_INIT_UNIFORM, 0.0f, 10, 10), 0.05 / sqrt(3.0), 1e-9);
    CHECK_NEAR(ffn_init_std(FFN_INIT_NORMAL, 0.25f, 10, 10), 0.25, 1e-9);
    check_block(FFN_INIT_NORMAL, 0.0f, 256, 256, 7);
    /* Kinds with a formula ignore param. */
    CHECK_NEAR(ffn_init_std(FFN_INIT_HE_NORMAL, 0.7f, 50, 10), sqrt(2.0 / 50), 1e-12);
    CHECK_NEAR(ffn_init_std(FFN_INIT_XAVIER_UNIFORM, 0.7f, 50, 10), sqrt(2.0 / 60), 1e-12);
}

static void test_determinism(void)
{
    enum { FO = 33, FI = 17, N = FO * FI }; /* odd sizes: partial rng blocks */
    for (int kind = 1; kind < FFN_INIT_COUNT; kind++) {
        float a[N], b[N], c[N], d[N];
        ffn_rng ra = ffn_rng_make(42, FFN_STREAM_INIT), rb = ffn_rng_make(42, FFN_STREAM_INIT);
        ffn_rng rc = ffn_rng_make(43, FFN_STREAM_INIT);
        ffn_rng rd = ffn_rng_make(42, FFN_STREAM_INIT + (1u << 8));
        ffn_init_fill((ffn_init)kind, 0.1f, a, FO, FI, &ra);
        ffn_init_fill((ffn_init)kind, 0.1f, b, FO, FI, &rb);
        ffn_init_fill((ffn_init)kind, 0.1f, c, FO, FI, &rc);
        ffn_init_fill((ffn_init)kind, 0.1f, d, FO, FI, &rd);
        const char *name = ffn_init_name((ffn_init)kind);
        CHECK_MSG(memcmp(a, b, sizeof a) == 0, "%s: same seed, different weights", name);
        CHECK_MSG(ra.counter == rb.counter && ra.counter > 0, "%s: counters %llu, %llu", name,
                  (unsigned long long)ra.counter, (unsigned long long)rb.counter);
        size_t same_c = 0, same_d = 0;
        for (size_t i = 0; i < N; i++) {
            same_c += a[i] == c[i];
            same_d += a[i] == d[i];
        }
        /* Independent draws coincide in a float only by chance (< 1%). */
        CHECK_MSG(same_c < N / 100, "%s: other seed repeats %zu of %d", name, same_c, N);
        CHECK_MSG(same_d < N / 100, "%s: other stream repeats %zu of %d", name, same_d, N);

        /* A second fill continues the stream: new values. */
        ffn_init_fill((ffn_init)kind, 0.1f, b, FO, FI, &rb);
        CHECK_MSG(memcmp(a, b, sizeof a) != 0, "%s: the stream did not advance", name);
    }
    /* An empty block touches nothing. */
    float canary = 3.0f;
    ffn_rng r = ffn_rng_make(1, 1);
    ffn_init_fill(FFN_INIT_HE_NORMAL, 0, &canary, 0, 5, &r);
    ffn_init_fill(FFN_INIT_ZEROS, 0, &canary, 5, 0, &r);
    CHECK(canary == 3.0f);
}

static void test_names(void)
{
    static const char *const canonical[FFN_INIT_COUNT] = {
        "zeros", "uniform", "normal", "xavier_uniform", "xavier_normal",
        "he_uniform", "he_normal", "lecun_uniform", "lecun_normal",
    };
    for (int k = 0; k < FFN_INIT_COUNT; k++) {
        CHECK_MSG(strcmp(ffn_init_name((ffn_init)k), canonical[k]) == 0, "name of %d is %s", k,
                  ffn_init_name((ffn_init)k));
        CHECK_MSG(ffn_init_from_name(canonical[k]) == k, "%s -> %d", canonical[k],
                  ffn_init_from_name(canonical[k]));
    }
    CHECK(ffn_init_from_name("glorot_uniform") == FFN_INIT_XAVIER_UNIFORM);
    CHECK(ffn_init_from_name("glorot_normal") == FFN_INIT_XAVIER_NORMAL);
    CHECK(ffn_init_from_name("kaiming_uniform") == FFN_INIT_HE_UNIFORM);
    CHECK(ffn_init_from_name("kaiming_normal") == FFN_INIT_HE_NORMAL);
    CHECK(ffn_init_from_name("xavier") == FFN_INIT_XAVIER_UNIFORM);
    CHECK(ffn_init_from_name("he") == FFN_INIT_HE_NORMAL);
    CHECK(ffn_init_from_name("kaiming") == FFN_INIT_HE_NORMAL);
    CHECK(ffn_init_from_name("lecun") == FFN_INIT_LECUN_NORMAL);
    CHECK(ffn_init_from_name("orthogonal") == -1);
    CHECK(ffn_init_from_name("Xavier_uniform") == -1); /* names are lower case */
    CHECK(ffn_init_from_name("he_normal ") == -1);
    CHECK(ffn_init_from_name("") == -1);
    CHECK(ffn_init_from_name(NULL) == -1);
    CHECK(strcmp(ffn_init_name(FFN_INIT_COUNT), "unknown") == 0);
}

/* The default initialiser (README, "Defaults"): Xavier uniform for every
 * activation, ReLU and GELU included (He uniform before issue 19), zero biases;
 * an explicit init= still wins. 10 inputs into 100 units: Xavier's bound
 * sqrt(6/110) = 0.234, He's sqrt(6/10) = 0.775. */
static void test_default_init(void)
{
    const char *specs[] = {"dense:100:relu", "dense:100:gelu", "dense:100:leaky_relu", "dense:100:tanh",
                           "dense:100", "ffn:100", "dense:100:relu:init=he_uniform"};
    for (size_t k = 0; k < sizeof specs / sizeof *specs; k++) {
        ffn_model *m = NULL;
        CHECK(ffn_model_create_from_text(&m, specs[k], 10) == FFN_OK);
        if (!m) continue;
        ffn_model_init_params(m, 1);
        const ffn_layer *l = ffn_model_layer_const(m, 0);
        const ffn_tensor *w = &l->tensors[0], *b = NULL;
        for (size_t t = 0; t < l->tensor_count; t++) {
            if (!strcmp(l->tensors[t].name, "W1")) w = &l->tensors[t];
            if (!strcmp(l->tensors[t].name, "b") || !strcmp(l->tensors[t].name, "b1")) b = &l->tensors[t];
        }
        const int he = strstr(specs[k], "he_uniform") != NULL;
        const double bound = he ? sqrt(6.0 / 10.0) : sqrt(6.0 / 110.0);
        double maxabs = 0;
        for (size_t i = 0; i < w->count; i++) maxabs = fmax(maxabs, fabs((double)w->data[i]));
        CHECK_MSG(maxabs <= bound && maxabs > 0.95 * bound, "%s: %s max |w| %.4f, expected just under %.4f (%s)",
                  specs[k], w->name, maxabs, bound, he ? "he_uniform" : "xavier_uniform");
        CHECK_MSG(b != NULL, "%s: no bias tensor", specs[k]);
        for (size_t i = 0; b && i < b->count; i++) CHECK_MSG(b->data[i] == 0.0f, "%s: bias %zu not zero", specs[k], i);
        ffn_model_free(m);
    }
}

int main(void)
{
    test_default_init();
    test_names();
    test_determinism();
    test_statistics();
    return check_done("test_init");
}
