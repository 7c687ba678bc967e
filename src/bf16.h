/* ffn — bfloat16 conversions (internal to libffn).
 *
 * bf16 is the top half of an IEEE float: 8 exponent bits, 7 mantissa bits, the
 * range of fp32 at about 3 significant digits. ffn keeps fp32 master weights
 * and converts to bf16 only the operands of a GEMM (see gemm.h). */
#ifndef FFN_BF16_H
#define FFN_BF16_H

#include <stddef.h>
#include <stdint.h>

typedef uint16_t ffn_bf16;

/* Round to nearest even, as the CPU's VCVTNEPS2BF16 does; NaN stays NaN. */
static inline ffn_bf16 ffn_bf16_from_float(float f)
{
    union {
        float f;
        uint32_t u;
    } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (ffn_bf16)((v.u >> 16) | 0x40u); /* quiet NaN */
    return (ffn_bf16)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}

static inline float ffn_float_from_bf16(ffn_bf16 h)
{
    union {
        uint32_t u;
        float f;
    } v = {(uint32_t)h << 16};
    return v.f;
}

/* dst[i] = bf16(src[i]) for n values. */
void ffn_bf16_from_floats(ffn_bf16 *dst, const float *src, size_t n);
/* dst[i] = float(src[i]) for n values (exact). */
void ffn_floats_from_bf16(float *dst, const ffn_bf16 *src, size_t n);
/* The rows x cols block of src (row stride ld) into dst, packed (stride cols). */
void ffn_bf16_from_float_rows(ffn_bf16 *dst, const float *src, size_t rows, size_t cols, size_t ld);
/* Rounds x[i] to the nearest bf16 value, in place (a reference for tests). */
void ffn_bf16_round_floats(float *x, size_t n);

#endif
