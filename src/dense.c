/* ffn — dense layer forward and backward on the GEMM layer (gemm.h). */
#include "ffn/dense.h"

#include <string.h>

#include "act_internal.h"
#include "layer.h"

void ffn_dense_forward_on(ffn_gemm_engine *g, float *z, float *y, const float *x, const float *W, const float *b,
                       size_t batch, size_t in, size_t out, ffn_act act, float act_param)
{
    if (batch == 0) return;
    /* z = x·Wᵀ: W is stored [out, in], so sgemm reads it transposed in place. */
    ffn_gemm(g, 0, 1, batch, out, in, 1.0f, x, in, W, in, 0.0f, z, out);
    ffn_bias_act_forward(act, act_param, b, z, y, batch, out);
}

void ffn_dense_backward_on(ffn_gemm_engine *g, float *dx, float *dW, float *db, float *dy,
                        const float *x, const float *W, const float *z, const float *y,
                        size_t batch, size_t in, size_t out, ffn_act act, float act_param,
                        int accumulate)
{
    float *dz = dy; /* in place: dy is not needed after dz */
    if (batch > 0) ffn_act_backward(act, act_param, z, y, dy, dz, batch, out);
    if (dW) {
        if (batch == 0) {
            if (!accumulate) memset(dW, 0, out * in * sizeof *dW);
        } else {
            /* dW [out, in] = dzᵀ [out, batch] · x [batch, in] */
            ffn_gemm(g, 1, 0, out, in, batch, 1.0f, dz, out, x, in, accumulate ? 1.0f : 0.0f, dW, in);
        }
    }
    if (db) ffn_column_sums(db, dz, batch, out, accumulate); /* db = column sums of dz */
    if (dx && batch > 0) {
        /* dx [batch, in] = dz [batch, out] · W [out, in] */
        ffn_gemm(g, 0, 0, batch, in, out, 1.0f, dz, out, W, in, 0.0f, dx, in);
    }
}

void ffn_dense_forward(float *z, float *y, const float *x, const float *W, const float *b, size_t batch, size_t in,
                       size_t out, ffn_act act, float act_param)
{
    ffn_dense_forward_on(NULL, z, y, x, W, b, batch, in, out, act, act_param);
}

void ffn_dense_backward(float *dx, float *dW, float *db, float *dy, const float *x, const float *W, const float *z,
                        const float *y, size_t batch, size_t in, size_t out, ffn_act act, float act_param,
                        int accumulate)
{
    ffn_dense_backward_on(NULL, dx, dW, db, dy, x, W, z, y, batch, in, out, act, act_param, accumulate);
}
