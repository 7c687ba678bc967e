/* ffn — dense layer forward and backward on cblas_sgemm. */
#include "ffn/dense.h"

#include <cblas.h>
#include <string.h>

#include "act_internal.h"

void ffn_dense_forward(float *z, float *y, const float *x, const float *W, const float *b,
                       size_t batch, size_t in, size_t out, ffn_act act, float act_param)
{
    if (batch == 0) return;
    /* z = x·Wᵀ: W is stored [out, in], so sgemm reads it transposed in place. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)batch, (int)out, (int)in,
                1.0f, x, (int)in, W, (int)in, 0.0f, z, (int)out);
    ffn_bias_act_forward(act, act_param, b, z, y, batch, out);
}

void ffn_dense_backward(float *dx, float *dW, float *db, float *dy,
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
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)in, (int)batch,
                        1.0f, dz, (int)out, x, (int)in, accumulate ? 1.0f : 0.0f, dW, (int)in);
        }
    }
    if (db) ffn_column_sums(db, dz, batch, out, accumulate); /* db = column sums of dz */
    if (dx && batch > 0) {
        /* dx [batch, in] = dz [batch, out] · W [out, in] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)batch, (int)in, (int)out,
                    1.0f, dz, (int)out, W, (int)in, 0.0f, dx, (int)in);
    }
}
