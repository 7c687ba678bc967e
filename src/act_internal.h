/* ffn — act.c's vectorised helpers for the other maths files (not public). */
#ifndef FFN_ACT_INTERNAL_H
#define FFN_ACT_INTERNAL_H

#include <stddef.h>

/* The vector instructions of the element-wise loops, chosen once for the CPU:
 * AVX-512 where it has it, else AVX2 + FMA, else the portable build;
 * FFN_KERNELS=avx2 or portable holds it lower. act.c's kernels and optim.c's
 * update loops follow the same choice. */
typedef enum { FFN_SIMD_PORTABLE, FFN_SIMD_AVX2, FFN_SIMD_AVX512 } ffn_simd;
ffn_simd ffn_simd_level(void);

/* db[c] = (accumulate ? db[c] : 0) + sum over rows r of dz[r, c], rows in
 * order (so every kernel set gives the same bits): a dense layer's bias
 * gradient and layernorm's dbeta, on the same kernels as the activations. */
void ffn_column_sums(float *db, const float *dz, size_t rows, size_t cols, int accumulate);

#endif
