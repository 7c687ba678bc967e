/* ffn — activations, forward and backward side by side.
 *
 * All work on a [rows, cols] row-major block; only softmax couples the columns
 * of a row. Backward takes the pre-activation z and the output y (each
 * activation uses whichever is cheaper) and maps dy to dz; dz may alias dy. */
#ifndef FFN_ACT_H
#define FFN_ACT_H

#include <stddef.h>
#include "ffn/names.h"

typedef enum {
    FFN_ACT_IDENTITY = 0,
    FFN_ACT_RELU,
    FFN_ACT_LEAKY_RELU, /* slope for x < 0 is the param (default 0.01) */
    FFN_ACT_SIGMOID,
    FFN_ACT_TANH,
    FFN_ACT_GELU,       /* exact: x * Phi(x), as PyTorch's default */
    FFN_ACT_SOFTMAX,    /* row-wise */
    FFN_ACT_COUNT
} ffn_act;

#define FFN_LEAKY_RELU_DEFAULT_SLOPE 0.01f

/* "relu" -> FFN_ACT_RELU; returns -1 for an unknown name. "linear" and
 * "none" are accepted for identity. */
int ffn_act_from_name(const char *name);
const char *ffn_act_name(ffn_act a);
extern const ffn_names ffn_act_names; /* every activation, by ffn_act */

/* y = act(z). y may alias z. */
void ffn_act_forward(ffn_act a, float param, const float *z, float *y,
                     size_t rows, size_t cols);
/* dz = dy * act'(z). dz may alias dy. */
void ffn_act_backward(ffn_act a, float param, const float *z, const float *y,
                      const float *dy, float *dz, size_t rows, size_t cols);

/* Fused bias + activation over a dense layer's output: z[r,:] += b, then
 * y = act(z). When y == z the activation is applied in place (only valid for
 * identity, whose backward needs neither). */
void ffn_bias_act_forward(ffn_act a, float param, const float *b, float *z, float *y,
                          size_t rows, size_t cols);

/* Which element-wise kernels run: "avx512+fma" where the CPU has AVX-512,
 * "avx2+fma" where it has AVX2 and FMA (the two compute the same bits), else
 * "portable" (the x86-64-v2 build); FFN_KERNELS=avx2 or portable in the
 * environment holds the choice there. GELU's erf and exp are vectorisable polynomials
 * accurate to about 2 ulp, not libm's scalar erff/expf. */
const char *ffn_act_kernels(void);

#endif
