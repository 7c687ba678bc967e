/* ffn — the transformer feed-forward block as one layer (pre-norm, residual):
 *
 *   n = LN(x), h = act(n·W1ᵀ + b1), y = x + h·W2ᵀ + b2
 *
 * W1 [hidden, in], b1 [hidden], W2 [in, hidden], b2 [in]; the norm's
 * ln_gamma, ln_beta [in]. Output width = input width. The two projections
 * are dense layers (ffn_dense_forward/backward); backward:
 *   dW2 = dyᵀ·h, db2 = Σdy, dh = dy·W2, dz = act'(dh), dW1 = dzᵀ·n, db1 = Σdz,
 *   dn = dz·W1, dx = dy + LN'(dn).
 * Cache: xhat [batch, in], n [batch, in], rstd [batch], z [batch, hidden] and
 * h [batch, hidden] (z and h share when act's backward needs only h).
 * Work: dh [batch, hidden], dn [batch, in]. */
#include <string.h>

#include "ffn/dense.h"
#include "layer.h"

enum { T_GAMMA, T_BETA, T_W1, T_B1, T_W2, T_B2 };

static int block_setup(const ffn_layer_spec *s, size_t in, size_t *out, ffn_tensor_decl *d)
{
    size_t h = s->units;
    *out = in;
    d[T_GAMMA] = (ffn_tensor_decl){"ln_gamma", 1, {in, 0}, 0};
    d[T_BETA] = (ffn_tensor_decl){"ln_beta", 1, {in, 0}, 0};
    d[T_W1] = (ffn_tensor_decl){"W1", 2, {h, in}, 1};
    d[T_B1] = (ffn_tensor_decl){"b1", 1, {h, 0}, 0};
    d[T_W2] = (ffn_tensor_decl){"W2", 2, {in, h}, 1};
    d[T_B2] = (ffn_tensor_decl){"b2", 1, {in, 0}, 0};
    return 6;
}

static int hidden_needs_z(const ffn_layer *l) { return ffn_act_backward_needs_z(l->spec.act, l->spec.act_param); }

static size_t block_cache_per_row(const ffn_layer *l)
{
    return 2 * l->in + 1 + l->spec.units * (hidden_needs_z(l) ? 2 : 1);
}

static size_t block_work_per_row(const ffn_layer *l) { return l->spec.units + l->in; }

static void block_init(ffn_layer *l, ffn_rng *rng)
{
    const ffn_layer_spec *s = &l->spec;
    ffn_tensor *t = l->tensors;
    for (size_t c = 0; c < l->in; c++) t[T_GAMMA].data[c] = 1.0f;
    memset(t[T_BETA].data, 0, l->in * sizeof(float));
    ffn_init k1 = s->init >= 0 ? (ffn_init)s->init : ffn_layer_default_init(s->act);
    ffn_init k2 = s->init >= 0 ? (ffn_init)s->init : FFN_INIT_XAVIER_UNIFORM;
    ffn_init_fill(k1, s->init_param, t[T_W1].data, s->units, l->in, rng);
    memset(t[T_B1].data, 0, s->units * sizeof(float));
    ffn_init_fill(k2, s->init_param, t[T_W2].data, l->in, s->units, rng);
    memset(t[T_B2].data, 0, l->in * sizeof(float));
}

/* The cache's parts for a batch of `batch` rows (H = spec.units). */
typedef struct {
    float *xhat, *n; /* [batch, in] */
    float *rstd;     /* [batch] */
    float *z, *h;    /* [batch, H]; h == z when act's backward needs only h */
} block_parts;

static block_parts parts_of(const ffn_layer *l, size_t batch)
{
    block_parts p;
    p.xhat = l->cache;
    p.n = p.xhat + batch * l->in;
    p.rstd = p.n + batch * l->in;
    p.z = p.rstd + batch;
    p.h = hidden_needs_z(l) ? p.z + batch * l->spec.units : p.z;
    return p;
}

static void block_forward(ffn_layer *l, const float *x, size_t batch, const ffn_forward_ctx *ctx)
{
    const ffn_layer_spec *s = &l->spec;
    const ffn_tensor *t = l->tensors;
    block_parts p = parts_of(l, batch);
    ffn_layernorm_rows_forward(p.n, p.xhat, p.rstd, x, t[T_GAMMA].data, t[T_BETA].data, batch, l->in);
    ffn_dense_forward_on(ctx->gemm, p.z, p.h, p.n, t[T_W1].data, t[T_B1].data, batch, l->in, s->units, s->act, s->act_param);
    ffn_dense_forward_on(ctx->gemm, l->y, l->y, p.h, t[T_W2].data, t[T_B2].data, batch, s->units, l->in, FFN_ACT_IDENTITY, 0);
    size_t total = batch * l->in;
    for (size_t i = 0; i < total; i++) l->y[i] += x[i];
}

static void block_backward(ffn_layer *l, float *dx, float *dy, const float *x, size_t batch,
                         int accumulate, float *work, const ffn_forward_ctx *ctx)
{
    (void)x;
    const ffn_layer_spec *s = &l->spec;
    ffn_tensor *t = l->tensors;
    block_parts p = parts_of(l, batch);
    float *dh = work, *dn = work + batch * s->units;
    int need_dn = dx || t[T_GAMMA].trainable || t[T_BETA].trainable;
    int need_dh = need_dn || t[T_W1].trainable || t[T_B1].trainable;
#define GRAD(k) (t[k].trainable ? t[k].grad : NULL)
    /* Identity output projection: dy is left as it is (dz = dy). */
    ffn_dense_backward_on(ctx->gemm, need_dh ? dh : NULL, GRAD(T_W2), GRAD(T_B2), dy, p.h, t[T_W2].data, l->y, l->y, batch,
                       s->units, l->in, FFN_ACT_IDENTITY, 0, accumulate);
    if (need_dh)
        ffn_dense_backward_on(ctx->gemm, need_dn ? dn : NULL, GRAD(T_W1), GRAD(T_B1), dh, p.n, t[T_W1].data, p.z, p.h, batch,
                           l->in, s->units, s->act, s->act_param, accumulate);
    if (dx) memcpy(dx, dy, batch * l->in * sizeof *dx); /* the residual path */
    if (need_dn)
        ffn_layernorm_rows_backward(dx, GRAD(T_GAMMA), GRAD(T_BETA), dn, p.xhat, p.rstd, t[T_GAMMA].data, batch,
                                    l->in, accumulate, 1);
#undef GRAD
}

/* ffn:HIDDEN[:ACT][:init=NAME][:init_param=X][:slope=X]; ACT is the hidden
 * one (gelu by default), so softmax, which couples a row, is refused. */
const ffn_layer_ops ffn_layer_ffn_ops = {
    .name = "ffn",
    .field = FFN_SPEC_UNITS,
    .field_name = "the hidden width",
    .activations = FFN_ACT_ALL & ~FFN_ACT_BIT(FFN_ACT_SOFTMAX),
    .activation_role = "an ffn block's hidden activation",
    .default_act = FFN_ACT_GELU,
    .options = FFN_SPEC_INIT | FFN_SPEC_SLOPE,
    .setup = block_setup,
    .cache_per_row = block_cache_per_row,
    .work_per_row = block_work_per_row,
    .init = block_init,
    .forward = block_forward,
    .backward = block_backward,
};
