/* ffn — the dense (fully connected) layer on cblas_sgemm.
 *
 * Row-major, PyTorch's layout: x [batch, in], W [out, in], b [out],
 * z = x·Wᵀ + b and y = act(z), both [batch, out]. Where the activation's
 * backward needs only y (see ffn_act_backward_needs_z) z may be the same buffer
 * as y, saving one activation copy. Forward and backward take their arguments
 * in the same order: outputs first, then inputs, then sizes. */
#ifndef FFN_DENSE_H
#define FFN_DENSE_H

#include <stddef.h>
#include "ffn/act.h"

/* Whether backward needs the pre-activation z kept apart from y. */
int ffn_act_backward_needs_z(ffn_act a, float param);

void ffn_dense_forward(float *z, float *y, const float *x, const float *W, const float *b,
                       size_t batch, size_t in, size_t out, ffn_act act, float act_param);

/* dy: gradient w.r.t. y [batch, out]; overwritten with dz.
 * dW, db: written (accumulate = 0) or added to (accumulate = 1); either may be
 * NULL to skip it (frozen layer). dx [batch, in]: written, or NULL when the
 * input needs no gradient (first layer). */
void ffn_dense_backward(float *dx, float *dW, float *db, float *dy,
                        const float *x, const float *W, const float *z, const float *y,
                        size_t batch, size_t in, size_t out, ffn_act act, float act_param,
                        int accumulate);

#endif
