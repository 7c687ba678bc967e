/* ffn — layer normalisation over each row, and the row helpers the residual
 * blocks share.
 *
 *   mean = Σx/n, var = Σ(x - mean)²/n, rstd = 1/sqrt(var + eps),
 *   xhat = (x - mean)·rstd, y = gamma ⊙ xhat + beta
 * Backward with g = dy ⊙ gamma:
 *   dgamma = Σ_rows dy ⊙ xhat, dbeta = Σ_rows dy,
 *   dx = rstd·(g - mean(g) - xhat·mean(g ⊙ xhat)).
 * Tensors gamma [in] (initially 1), beta [in] (0), neither weight-decayed.
 * Cache: xhat [batch, in] then rstd [batch]. Statistics are accumulated in
 * double: a row of a few thousand floats keeps full float precision. */
#include <math.h>
#include <string.h>

#include "act_internal.h"
#include "bf16.h"
#include "layer.h"

void ffn_layernorm_rows_forward(float *y, float *xhat, float *rstd, const float *x,
                                const float *gamma, const float *beta, size_t rows, size_t n)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *hr = xhat + r * n, *yr = y + r * n;
        double sum = 0;
        for (size_t c = 0; c < n; c++) sum += xr[c];
        double mean = sum / (double)n, sq = 0;
        for (size_t c = 0; c < n; c++) {
            double d = xr[c] - mean;
            sq += d * d;
        }
        float rs = (float)(1.0 / sqrt(sq / (double)n + (double)FFN_LAYERNORM_EPS));
        float mu = (float)mean;
        rstd[r] = rs;
        for (size_t c = 0; c < n; c++) {
            hr[c] = (xr[c] - mu) * rs;
            yr[c] = gamma[c] * hr[c] + beta[c];
        }
    }
}

void ffn_layernorm_rows_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                                 const float *xhat, const float *rstd, const float *gamma,
                                 size_t rows, size_t n, int accumulate, int add_dx)
{
    if (dgamma && !accumulate) memset(dgamma, 0, n * sizeof *dgamma);
    if (dbeta) ffn_column_sums(dbeta, dy, rows, n, accumulate);
    for (size_t r = 0; r < rows; r++) {
        const float *dr = dy + r * n, *hr = xhat + r * n;
        if (dgamma)
            for (size_t c = 0; c < n; c++) dgamma[c] += dr[c] * hr[c];
        if (!dx) continue;
        double sum_g = 0, sum_gh = 0;
        for (size_t c = 0; c < n; c++) {
            float g = dr[c] * gamma[c];
            sum_g += g;
            sum_gh += (double)g * hr[c];
        }
        float mean_g = (float)(sum_g / (double)n), mean_gh = (float)(sum_gh / (double)n);
        float rs = rstd[r], *xr = dx + r * n;
        if (add_dx)
            for (size_t c = 0; c < n; c++) xr[c] += rs * (dr[c] * gamma[c] - mean_g - hr[c] * mean_gh);
        else
            for (size_t c = 0; c < n; c++) xr[c] = rs * (dr[c] * gamma[c] - mean_g - hr[c] * mean_gh);
    }
}

void ffn_layernorm_rows_forward_bf16(ffn_bf16 *y, ffn_bf16 *xhat, float *rstd, const float *x, const float *gamma,
                                     const float *beta, size_t rows, size_t n, float *temp)
{
    float *y32 = temp, *xhat32 = temp + rows * n;
    ffn_layernorm_rows_forward(y32, xhat32, rstd, x, gamma, beta, rows, n);
    ffn_bf16_from_floats(y, y32, rows * n);
    ffn_bf16_from_floats(xhat, xhat32, rows * n);
}

void ffn_layernorm_rows_backward_bf16(float *dx, float *dgamma, float *dbeta, const float *dy, const ffn_bf16 *xhat,
                                      const float *rstd, const float *gamma, size_t rows, size_t n, int accumulate,
                                      int add_dx, float *temp)
{
    ffn_floats_from_bf16(temp, xhat, rows * n);
    ffn_layernorm_rows_backward(dx, dgamma, dbeta, dy, temp, rstd, gamma, rows, n, accumulate, add_dx);
}

static int ln_setup(const ffn_layer_spec *s, size_t in, size_t *out, ffn_tensor_decl *d)
{
    (void)s;
    *out = in;
    d[0] = (ffn_tensor_decl){"gamma", 1, {in, 0}, 0};
    d[1] = (ffn_tensor_decl){"beta", 1, {in, 0}, 0};
    return 2;
}

static size_t ln_cache_per_row(const ffn_layer *l) { return l->in + 1; }

static void ln_init(ffn_layer *l, ffn_rng *rng)
{
    (void)rng;
    for (size_t c = 0; c < l->in; c++) l->tensors[0].data[c] = 1.0f;
    memset(l->tensors[1].data, 0, l->in * sizeof(float));
}

static void ln_forward(ffn_layer *l, const float *x, size_t batch, const ffn_forward_ctx *ctx)
{
    (void)ctx;
    float *xhat = l->cache, *rstd = l->cache + batch * l->in;
    ffn_layernorm_rows_forward(l->y, xhat, rstd, x, l->tensors[0].data, l->tensors[1].data, batch, l->in);
}

static void ln_backward(ffn_layer *l, float *dx, float *dy, const float *x, size_t batch,
                        int accumulate, float *work, const ffn_forward_ctx *ctx)
{
    (void)x;
    (void)work;
    (void)ctx;
    ffn_tensor *g = &l->tensors[0], *b = &l->tensors[1];
    const float *xhat = l->cache, *rstd = l->cache + batch * l->in;
    ffn_layernorm_rows_backward(dx, g->trainable ? g->grad : NULL, b->trainable ? b->grad : NULL, dy, xhat,
                                rstd, g->data, batch, l->in, accumulate, 0);
}

/* layernorm (no field, no option) */
const ffn_layer_ops ffn_layer_layernorm_ops = {
    .name = "layernorm",
    .setup = ln_setup,
    .cache_per_row = ln_cache_per_row,
    .init = ln_init,
    .forward = ln_forward,
    .backward = ln_backward,
};
