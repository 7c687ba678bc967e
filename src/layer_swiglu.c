/* ffn — the SwiGLU feed-forward block (pre-norm, residual, no biases):
 *
 *   n = LN(x), a = n·W1ᵀ, g = n·W3ᵀ, p = silu(a) ⊙ g, y = x + p·W2ᵀ
 *
 * silu(a) = a·σ(a). W1, W3 [hidden, in], W2 [in, hidden]; ln_gamma, ln_beta
 * [in]. Backward, with σ = σ(a):
 *   dW2 = dyᵀ·p, dp = dy·W2, dg = dp ⊙ silu(a),
 *   da = dp ⊙ g ⊙ σ·(1 + a·(1 - σ)), dW1 = daᵀ·n, dW3 = dgᵀ·n,
 *   dn = da·W1 + dg·W3, dx = dy + LN'(dn).
 * Cache: xhat, n [batch, in], rstd [batch], a, g, p [batch, hidden]; in a
 * bf16 model (l->cache_bf16) all but rstd are kept in bf16: p and n only feed
 * products (bf16 operands anyway), a and g only the elementwise derivative and
 * xhat only the norm's backward, whose inputs bf16 rounds by 2^-9 at most
 * (measured: layer.h).
 * Work: da, dg [batch, hidden], dn [batch, in]; with the bf16 cache and xhat's
 * widened copy [batch, in] after them (forward's fp32 norm values before that). */
#include <math.h>
#include <string.h>

#include "bf16.h"
#include "layer.h"

enum { T_GAMMA, T_BETA, T_W1, T_W3, T_W2 };

static int swiglu_setup(const ffn_layer_spec *s, size_t in, size_t *out, ffn_tensor_decl *d)
{
    size_t h = s->units;
    *out = in;
    d[T_GAMMA] = (ffn_tensor_decl){"ln_gamma", 1, {in, 0}, 0};
    d[T_BETA] = (ffn_tensor_decl){"ln_beta", 1, {in, 0}, 0};
    d[T_W1] = (ffn_tensor_decl){"W1", 2, {h, in}, 1};
    d[T_W3] = (ffn_tensor_decl){"W3", 2, {h, in}, 1};
    d[T_W2] = (ffn_tensor_decl){"W2", 2, {in, h}, 1};
    return 5;
}

static size_t swiglu_cache_per_row(const ffn_layer *l) { return ffn_block_cache_per_row(l, 3 * l->spec.units); /* a, g, p */ }
static size_t swiglu_work_per_row(const ffn_layer *l) { return 2 * l->spec.units + l->in * (l->cache_bf16 ? 2 : 1); }

static void swiglu_init(ffn_layer *l, ffn_rng *rng)
{
    const ffn_layer_spec *s = &l->spec;
    ffn_tensor *t = l->tensors;
    for (size_t c = 0; c < l->in; c++) t[T_GAMMA].data[c] = 1.0f;
    memset(t[T_BETA].data, 0, l->in * sizeof(float));
    ffn_init k = s->init >= 0 ? (ffn_init)s->init : FFN_INIT_XAVIER_UNIFORM;
    ffn_init_fill(k, s->init_param, t[T_W1].data, s->units, l->in, rng);
    ffn_init_fill(k, s->init_param, t[T_W3].data, s->units, l->in, rng);
    ffn_init_fill(k, s->init_param, t[T_W2].data, l->in, s->units, rng);
}

/* The cache's parts for a batch of `batch` rows (H = spec.units). */
typedef struct {
    float *xhat, *n;  /* [batch, in] (fp32 cache) */
    float *rstd;      /* [batch] */
    float *a, *g, *p; /* [batch, H] (fp32 cache) */
    ffn_bf16 *xhat16, *n16, *a16, *g16, *p16; /* the same in bf16 (bf16 cache) */
} swiglu_parts;

static swiglu_parts parts_of(const ffn_layer *l, size_t batch)
{
    const ffn_block_norm_cache c = ffn_block_norm_cache_of(l, batch);
    swiglu_parts p = {.xhat = c.xhat, .n = c.n, .rstd = c.rstd, .xhat16 = c.xhat16, .n16 = c.n16};
    const size_t h = batch * l->spec.units;
    if (l->cache_bf16) {
        p.a16 = c.rest;
        p.g16 = p.a16 + h;
        p.p16 = p.g16 + h;
    } else {
        p.a = c.rest;
        p.g = p.a + h;
        p.p = p.g + h;
    }
    return p;
}

/* σ(a) without overflow for any a. */
static inline float sigmoidf(float a)
{
    float e = expf(-fabsf(a));
    float s = 1.0f / (1.0f + e);
    return a >= 0.0f ? s : e * s;
}

static void swiglu_forward(ffn_layer *l, const float *x, size_t batch, const ffn_forward_ctx *ctx)
{
    const ffn_tensor *t = l->tensors;
    swiglu_parts p = parts_of(l, batch);
    if (l->cache_bf16)
        ffn_layernorm_rows_forward_bf16(p.n16, p.xhat16, p.rstd, x, t[T_GAMMA].data, t[T_BETA].data, batch, l->in,
                                        ctx->work);
    else
        ffn_layernorm_rows_forward(p.n, p.xhat, p.rstd, x, t[T_GAMMA].data, t[T_BETA].data, batch, l->in);
    if (batch == 0) return;
    int b = (int)batch, in = (int)l->in, h = (int)l->spec.units;
    size_t total = batch * l->spec.units;
    memcpy(l->y, x, batch * l->in * sizeof *x);
    if (l->cache_bf16) {
        /* a and g rounded once from the products' fp32 sums, p from fp32 arithmetic
         * on them; n and p go to the products as they are kept. */
        ffn_gemm_typed(ctx->gemm, 0, 1, b, h, in, 1.0f, p.n16, 1, in, t[T_W1].data, 0, in, 0.0f, p.a16, 1, h);
        ffn_gemm_typed(ctx->gemm, 0, 1, b, h, in, 1.0f, p.n16, 1, in, t[T_W3].data, 0, in, 0.0f, p.g16, 1, h);
        for (size_t i = 0; i < total; i++) {
            float a = ffn_float_from_bf16(p.a16[i]);
            p.p16[i] = ffn_bf16_from_float(a * sigmoidf(a) * ffn_float_from_bf16(p.g16[i]));
        }
        ffn_gemm_typed(ctx->gemm, 0, 1, b, in, h, 1.0f, p.p16, 1, h, t[T_W2].data, 0, h, 1.0f, l->y, 0, in);
        return;
    }
    ffn_gemm(ctx->gemm, 0, 1, b, h, in, 1.0f, p.n, in, t[T_W1].data, in, 0.0f, p.a, h);
    ffn_gemm(ctx->gemm, 0, 1, b, h, in, 1.0f, p.n, in, t[T_W3].data, in, 0.0f, p.g, h);
    for (size_t i = 0; i < total; i++) p.p[i] = p.a[i] * sigmoidf(p.a[i]) * p.g[i];
    ffn_gemm(ctx->gemm, 0, 1, b, in, h, 1.0f, p.p, h, t[T_W2].data, h, 1.0f, l->y, in);
}

static void swiglu_backward(ffn_layer *l, float *dx, float *dy, const float *x, size_t batch,
                            int accumulate, float *work, const ffn_forward_ctx *ctx)
{
    (void)x;
    ffn_tensor *t = l->tensors;
    swiglu_parts p = parts_of(l, batch);
    float *da = work, *dg = work + batch * l->spec.units, *dn = dg + batch * l->spec.units;
    int need_dn = dx || t[T_GAMMA].trainable || t[T_BETA].trainable;
    int need_dp = need_dn || t[T_W1].trainable || t[T_W3].trainable;
    if (batch == 0) {
        for (int k = T_GAMMA; k <= T_W2 && !accumulate; k++)
            if (t[k].trainable) memset(t[k].grad, 0, t[k].count * sizeof(float));
        return;
    }
    int b = (int)batch, in = (int)l->in, h = (int)l->spec.units;
    float beta = accumulate ? 1.0f : 0.0f;
    const int bf16 = l->cache_bf16;
    if (t[T_W2].trainable) /* dW2 [in, h] = dyᵀ·p */
        ffn_gemm_typed(ctx->gemm, 1, 0, in, h, b, 1.0f, dy, 0, in, bf16 ? (const void *)p.p16 : p.p, bf16, h, beta,
                       t[T_W2].grad, 0, h);
    if (need_dp) {
        /* dp [b, h] = dy·W2, into da; then split into da and dg in place. */
        ffn_gemm(ctx->gemm, 0, 0, b, h, in, 1.0f, dy, in, t[T_W2].data, h, 0.0f, da, h);
        size_t total = batch * l->spec.units;
        for (size_t i = 0; i < total; i++) {
            float a = bf16 ? ffn_float_from_bf16(p.a16[i]) : p.a[i];
            float g = bf16 ? ffn_float_from_bf16(p.g16[i]) : p.g[i];
            float s = sigmoidf(a), dp = da[i];
            dg[i] = dp * a * s;
            da[i] = dp * g * s * (1.0f + a * (1.0f - s));
        }
        const void *n = bf16 ? (const void *)p.n16 : p.n;
        if (t[T_W1].trainable)
            ffn_gemm_typed(ctx->gemm, 1, 0, h, in, b, 1.0f, da, 0, h, n, bf16, in, beta, t[T_W1].grad, 0, in);
        if (t[T_W3].trainable)
            ffn_gemm_typed(ctx->gemm, 1, 0, h, in, b, 1.0f, dg, 0, h, n, bf16, in, beta, t[T_W3].grad, 0, in);
    }
    if (dx) memcpy(dx, dy, batch * l->in * sizeof *dx); /* the residual path */
    if (need_dn) {
        ffn_gemm(ctx->gemm, 0, 0, b, in, h, 1.0f, da, h, t[T_W1].data, in, 0.0f, dn, in);
        ffn_gemm(ctx->gemm, 0, 0, b, in, h, 1.0f, dg, h, t[T_W3].data, in, 1.0f, dn, in);
        float *dgamma = t[T_GAMMA].trainable ? t[T_GAMMA].grad : NULL, *dbeta = t[T_BETA].trainable ? t[T_BETA].grad : NULL;
        if (bf16)
            ffn_layernorm_rows_backward_bf16(dx, dgamma, dbeta, dn, p.xhat16, p.rstd, t[T_GAMMA].data, batch, l->in,
                                             accumulate, 1, dn + batch * l->in);
        else
            ffn_layernorm_rows_backward(dx, dgamma, dbeta, dn, p.xhat, p.rstd, t[T_GAMMA].data, batch, l->in,
                                        accumulate, 1);
    }
}

/* swiglu:HIDDEN[:init=NAME][:init_param=X] (its gate is always silu) */
const ffn_layer_ops ffn_layer_swiglu_ops = {
    .name = "swiglu",
    .field = FFN_SPEC_UNITS,
    .field_name = "the hidden width",
    .options = FFN_SPEC_INIT,
    .setup = swiglu_setup,
    .cache_per_row = swiglu_cache_per_row,
    .work_per_row = swiglu_work_per_row,
    .init = swiglu_init,
    .forward = swiglu_forward,
    .backward = swiglu_backward,
};
