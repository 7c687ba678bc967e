/* ffn — bfloat16 conversions. The loops are plain C over integers that the
 * compiler vectorises; target_clones gives an AVX-512 copy where the CPU has
 * it (the weights of a large model are converted once per step). */
#include "bf16.h"

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define FFN_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), optimize("tree-vectorize")))
#else
#define FFN_CLONES
#endif

FFN_CLONES void ffn_bf16_from_floats(ffn_bf16 *restrict dst, const float *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = ffn_bf16_from_float(src[i]);
}

void ffn_floats_from_bf16(float *restrict dst, const ffn_bf16 *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = ffn_float_from_bf16(src[i]);
}

void ffn_bf16_from_float_rows(ffn_bf16 *dst, const float *src, size_t rows, size_t cols, size_t ld)
{
    if (ld == cols) {
        ffn_bf16_from_floats(dst, src, rows * cols);
        return;
    }
    for (size_t r = 0; r < rows; r++) ffn_bf16_from_floats(dst + r * cols, src + r * ld, cols);
}

void ffn_bf16_round_floats(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = ffn_float_from_bf16(ffn_bf16_from_float(x[i]));
}
