/* ffn — activations: forward and backward side by side, row-major [rows, cols].
 *
 * Aliasing: y may be z, dz may be dy, and z may be y when the activation's
 * backward needs only y (ffn_act_backward_needs_z). Every loop reads an index
 * before it writes that same index, so no pointer here is restrict. */
#include "ffn/act.h"
#include "ffn/dense.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "act_internal.h"

/* ---- the vectorised kernels (act_kernels.inc), portable and AVX2 + FMA */

/* -fno-trapping-math for these loops only: with it GCC turns the
 * polynomial-piece selects into vector blends instead of branches (ffn never
 * reads floating-point exception flags). */
#if defined(__GNUC__) && !defined(__clang__)
#define FFN_KERNEL_OPT __attribute__((optimize("no-trapping-math")))
#else
#define FFN_KERNEL_OPT
#endif

#define KSUF _base
#define KATTR FFN_KERNEL_OPT
#define KMADD(a, b, c) ((a) * (b) + (c))
#include "act_kernels.inc"
#undef KSUF
#undef KATTR
#undef KMADD

#if defined(__x86_64__) && defined(__GNUC__)
#define FFN_HAVE_AVX2_KERNELS 1
#define KSUF _avx2
#define KATTR FFN_KERNEL_OPT __attribute__((target("avx2,fma")))
#define KMADD(a, b, c) __builtin_fmaf((a), (b), (c))
#include "act_kernels.inc"
#undef KSUF
#undef KATTR
#undef KMADD
/* The same loops on 16 lanes: GELU's polynomials are compute-bound, and a CPU
 * with full-width AVX-512 runs them about twice as fast. Same FMAs in the same
 * order: bit for bit the AVX2 set's results. */
#define FFN_HAVE_AVX512_KERNELS 1
#define KSUF _avx512
#ifdef __clang__ /* clang names the width apart from the target */
#define KATTR FFN_KERNEL_OPT __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"), min_vector_width(512)))
#else
#define KATTR FFN_KERNEL_OPT __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,prefer-vector-width=512")))
#endif
#define KMADD(a, b, c) __builtin_fmaf((a), (b), (c))
#include "act_kernels.inc"
#undef KSUF
#undef KATTR
#undef KMADD
#endif

typedef struct {
    const char *name;
    void (*gelu_forward)(const float *b, float *z, float *y, size_t n);
    void (*gelu_backward)(const float *z, const float *dy, float *dz, size_t n);
    void (*relu_forward)(const float *z, float *y, size_t n);
    void (*relu_backward)(const float *y, const float *dy, float *dz, size_t n);
    void (*bias_add)(const float *b, float *z, size_t n);
    void (*column_sums)(float *db, const float *dz, size_t rows, size_t cols, int accumulate);
} kernel_set;

static const kernel_set kernels_base = {"portable", gelu_forward_base, gelu_backward_base,
                                        relu_forward_base, relu_backward_base, bias_add_base,
                                        column_sums_base};
#ifdef FFN_HAVE_AVX2_KERNELS
static const kernel_set kernels_avx2 = {"avx2+fma", gelu_forward_avx2, gelu_backward_avx2,
                                        relu_forward_avx2, relu_backward_avx2, bias_add_avx2,
                                        column_sums_avx2};
static const kernel_set kernels_avx512 = {"avx512+fma", gelu_forward_avx512, gelu_backward_avx512,
                                          relu_forward_avx512, relu_backward_avx512, bias_add_avx512,
                                          column_sums_avx512};
#endif

/* Chosen once; two threads racing here store the same value. */
ffn_simd ffn_simd_level(void)
{
    static int chosen = -1;
    int level = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (level >= 0) return (ffn_simd)level;
    level = FFN_SIMD_PORTABLE;
#if defined(__x86_64__) && defined(__GNUC__)
    const char *env = getenv("FFN_KERNELS");
    __builtin_cpu_init();
    if (!(env && strcmp(env, "portable") == 0) && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
        level = FFN_SIMD_AVX2;
    if (level == FFN_SIMD_AVX2 && !(env && strcmp(env, "avx2") == 0) && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        level = FFN_SIMD_AVX512;
#endif
    __atomic_store_n(&chosen, level, __ATOMIC_RELEASE);
    return (ffn_simd)level;
}

static const kernel_set *kernels(void)
{
#ifdef FFN_HAVE_AVX2_KERNELS
    switch (ffn_simd_level()) {
    case FFN_SIMD_AVX512: return &kernels_avx512;
    case FFN_SIMD_AVX2: return &kernels_avx2;
    default: break;
    }
#endif
    return &kernels_base;
}

const char *ffn_act_kernels(void) { return kernels()->name; }

void ffn_column_sums(float *db, const float *dz, size_t rows, size_t cols, int accumulate)
{
    kernels()->column_sums(db, dz, rows, cols, accumulate);
}


static const char *const act_names[FFN_ACT_COUNT] = {
    [FFN_ACT_IDENTITY] = "identity", [FFN_ACT_RELU] = "relu",
    [FFN_ACT_LEAKY_RELU] = "leaky_relu", [FFN_ACT_SIGMOID] = "sigmoid",
    [FFN_ACT_TANH] = "tanh", [FFN_ACT_GELU] = "gelu", [FFN_ACT_SOFTMAX] = "softmax",
};

static const ffn_name_alias act_aliases[] = {
    {"linear", FFN_ACT_IDENTITY},
    {"none", FFN_ACT_IDENTITY},
};

const ffn_names ffn_act_names = FFN_NAMES_OF_ARRAY_WITH_ALIASES(act_names, act_aliases);

int ffn_act_from_name(const char *name) { return ffn_names_find(&ffn_act_names, name); }

const char *ffn_act_name(ffn_act a) { return ffn_names_name(&ffn_act_names, (int)a); }

int ffn_act_backward_needs_z(ffn_act a, float param)
{
    /* With a positive slope, y > 0 exactly when z > 0; otherwise only z tells. */
    if (a == FFN_ACT_LEAKY_RELU) return !(param > 0.0f);
    return a == FFN_ACT_GELU;
}

/* ---- element-wise forward over n values */

static void leaky_relu_forward(float slope, const float *z, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = z[i] > 0.0f ? z[i] : slope * z[i];
}

/* exp of -|z| never overflows: 1/(1+e) for z >= 0, e/(1+e) below. */
static void sigmoid_forward(const float *z, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float e = expf(-fabsf(z[i]));
        float s = 1.0f / (1.0f + e);
        y[i] = z[i] >= 0.0f ? s : e * s;
    }
}

static void tanh_forward(const float *z, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = tanhf(z[i]);
}

/* One row: subtract the max so exp never overflows and the largest term is 1. */
static void softmax_row_forward(const float *z, float *y, size_t cols)
{
    float max = z[0];
    for (size_t c = 1; c < cols; c++) max = z[c] > max ? z[c] : max;
    float sum = 0.0f;
    for (size_t c = 0; c < cols; c++) {
        y[c] = expf(z[c] - max);
        sum += y[c];
    }
    float inv = 1.0f / sum;
    for (size_t c = 0; c < cols; c++) y[c] *= inv;
}

void ffn_act_forward(ffn_act a, float param, const float *z, float *y,
                     size_t rows, size_t cols)
{
    size_t n = rows * cols;
    switch (a) {
    case FFN_ACT_IDENTITY:
        if (y != z) memcpy(y, z, n * sizeof *y);
        break;
    case FFN_ACT_RELU: kernels()->relu_forward(z, y, n); break;
    case FFN_ACT_LEAKY_RELU: leaky_relu_forward(param, z, y, n); break;
    case FFN_ACT_SIGMOID: sigmoid_forward(z, y, n); break;
    case FFN_ACT_TANH: tanh_forward(z, y, n); break;
    /* No bias: z is only read (it may be y). */
    case FFN_ACT_GELU: kernels()->gelu_forward(NULL, (float *)z, y, n); break;
    case FFN_ACT_SOFTMAX:
        if (cols == 0) break;
        for (size_t r = 0; r < rows; r++) softmax_row_forward(z + r * cols, y + r * cols, cols);
        break;
    case FFN_ACT_COUNT: break;
    }
}

/* ---- element-wise backward over n values: dz = dy * act'(.) */

static void leaky_relu_backward(float slope, const float *z, const float *dy, float *dz,
                                size_t n)
{
    for (size_t i = 0; i < n; i++) dz[i] = z[i] > 0.0f ? dy[i] : slope * dy[i];
}

static void sigmoid_backward(const float *y, const float *dy, float *dz, size_t n)
{
    for (size_t i = 0; i < n; i++) dz[i] = dy[i] * y[i] * (1.0f - y[i]);
}

static void tanh_backward(const float *y, const float *dy, float *dz, size_t n)
{
    for (size_t i = 0; i < n; i++) dz[i] = dy[i] * (1.0f - y[i] * y[i]);
}

/* Softmax Jacobian-vector product: dz = y * (dy - <dy, y>). */
static void softmax_row_backward(const float *y, const float *dy, float *dz, size_t cols)
{
    float dot = 0.0f;
    for (size_t c = 0; c < cols; c++) dot += dy[c] * y[c];
    for (size_t c = 0; c < cols; c++) dz[c] = y[c] * (dy[c] - dot);
}

void ffn_act_backward(ffn_act a, float param, const float *z, const float *y,
                      const float *dy, float *dz, size_t rows, size_t cols)
{
    size_t n = rows * cols;
    switch (a) {
    case FFN_ACT_IDENTITY:
        if (dz != dy) memcpy(dz, dy, n * sizeof *dz);
        break;
    case FFN_ACT_RELU: kernels()->relu_backward(y, dy, dz, n); break;
    /* z here is the real z, or y when the slope is positive (same sign). */
    case FFN_ACT_LEAKY_RELU: leaky_relu_backward(param, z, dy, dz, n); break;
    case FFN_ACT_SIGMOID: sigmoid_backward(y, dy, dz, n); break;
    case FFN_ACT_TANH: tanh_backward(y, dy, dz, n); break;
    /* d/dz [z Phi(z)] = Phi(z) + z phi(z) */
    case FFN_ACT_GELU: kernels()->gelu_backward(z, dy, dz, n); break;
    case FFN_ACT_SOFTMAX:
        for (size_t r = 0; r < rows; r++)
            softmax_row_backward(y + r * cols, dy + r * cols, dz + r * cols, cols);
        break;
    case FFN_ACT_COUNT: break;
    }
}

/* Row by row, so the bias add and the activation share the row in cache. */
void ffn_bias_act_forward(ffn_act a, float param, const float *b, float *z, float *y,
                          size_t rows, size_t cols)
{
    const kernel_set *k = kernels();
    for (size_t r = 0; r < rows; r++) {
        float *zr = z + r * cols;
        if (a == FFN_ACT_GELU) {
            k->gelu_forward(b, zr, y + r * cols, cols);
            continue;
        }
        if (b) k->bias_add(b, zr, cols);
        ffn_act_forward(a, param, zr, y + r * cols, 1, cols);
    }
}
