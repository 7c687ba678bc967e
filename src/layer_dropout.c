/* ffn — inverted dropout.
 *
 * Training: y = x ⊙ m with m = 1/(1-P) where kept and 0 where dropped, each
 * element kept with probability 1-P, so E[y] = x and evaluation is the
 * identity. The mask of batch row r, layer i, step t is a pure function of
 * (seed, t, i, global row id of r) through the Philox generator of rng.h:
 *   key = seed, stream = FFN_STREAM_DROPOUT + (i << 8) + (t << 32),
 *   counter = row << 32 | column / 4, word column % 4,
 * an element kept when the word's top 24 bits u satisfy u / 2^24 >= P. No
 * state is carried between steps, so any rank count, a resumed run and
 * gradient accumulation all draw the same masks for the same rows.
 * Cache: the mask values m [batch, in], which backward multiplies by. */
#include <math.h>
#include <string.h>

#include "layer.h"

static int dropout_setup(const ffn_layer_spec *s, size_t in, size_t *out, ffn_tensor_decl *d)
{
    (void)s;
    (void)d;
    *out = in;
    return 0;
}

static size_t dropout_cache_per_row(const ffn_layer *l) { return l->in; }

static void dropout_forward(ffn_layer *l, const float *x, size_t batch, const ffn_forward_ctx *ctx)
{
    size_t n = l->in;
    float p = l->spec.rate;
    if (!ctx->train || p <= 0.0f) {
        memcpy(l->y, x, batch * n * sizeof *x);
        return;
    }
    /* keep iff u >= p with u = k / 2^24, i.e. k >= ceil(p * 2^24) */
    uint32_t threshold = (uint32_t)ceil((double)p * 16777216.0);
    float keep_scale = 1.0f / (1.0f - p);
    uint64_t stream = (uint64_t)FFN_STREAM_DROPOUT + ((uint64_t)ctx->layer << 8) + (ctx->step << 32);
    for (size_t r = 0; r < batch; r++) {
        uint64_t row = ctx->rows ? ctx->rows[r] : r;
        float *mask = l->cache + r * n, *y = l->y + r * n;
        const float *xr = x + r * n;
        for (size_t c = 0; c < n; c += 4) {
            uint32_t w[4];
            ffn_philox4x32(ctx->seed, stream, (row << 32) | (uint64_t)(c / 4), w);
            size_t m = n - c < 4 ? n - c : 4;
            for (size_t k = 0; k < m; k++) mask[c + k] = (w[k] >> 8) >= threshold ? keep_scale : 0.0f;
        }
        for (size_t c = 0; c < n; c++) y[c] = xr[c] * mask[c];
    }
}

static void dropout_backward(ffn_layer *l, float *dx, float *dy, const float *x, size_t batch,
                             int accumulate, float *work, const ffn_forward_ctx *ctx)
{
    (void)x;
    (void)accumulate;
    (void)work;
    if (!dx) return;
    size_t total = batch * l->in;
    if (!ctx->train || l->spec.rate <= 0.0f) {
        memcpy(dx, dy, total * sizeof *dx);
        return;
    }
    const float *mask = l->cache;
    for (size_t i = 0; i < total; i++) dx[i] = dy[i] * mask[i];
}

/* dropout:P */
const ffn_layer_ops ffn_layer_dropout_ops = {
    .name = "dropout",
    .field = FFN_SPEC_RATE,
    .setup = dropout_setup,
    .cache_per_row = dropout_cache_per_row,
    .forward = dropout_forward,
    .backward = dropout_backward,
};
