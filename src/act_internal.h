/* ffn — act.c's vectorised helpers for the other maths files (not public). */
#ifndef FFN_ACT_INTERNAL_H
#define FFN_ACT_INTERNAL_H

#include <stddef.h>

/* db[c] = (accumulate ? db[c] : 0) + sum over rows r of dz[r, c], rows in
 * order (so every kernel set gives the same bits): a dense layer's bias
 * gradient and layernorm's dbeta, on the same kernels as the activations. */
void ffn_column_sums(float *db, const float *dz, size_t rows, size_t cols, int accumulate);

#endif
