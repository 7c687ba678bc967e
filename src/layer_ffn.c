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
 * h [batch, hidden] (z and h share when act's backward needs only h). In a
 * bf16 model (l->cache_bf16) all but rstd are kept in bf16: h and n only feed
 * products (bf16 operands anyway), z only act' and xhat only the norm's
 * backward, whose inputs bf16 rounds by 2^-9 at most (measured: layer.h).
 * Work: dh [batch, hidden], dn [batch, in]; with the bf16 cache and xhat's
 * widened copy [batch, in] after them. Forward computes the fp32 values in the
 * work area (ctx->work) before rounding them into the cache; backward widens z
 * (or h) for act' a piece at a time on the stack. */
#include <string.h>

#include "act_internal.h"
#include "bf16.h"
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
    return ffn_block_cache_per_row(l, l->spec.units * (hidden_needs_z(l) ? 2 : 1)); /* z (and h) */
}

static size_t block_work_per_row(const ffn_layer *l)
{
    return l->spec.units + l->in * (l->cache_bf16 ? 2 : 1);
}

/* dh = act'(v) ⊙ dh over n values, v (z or h, as act' needs) kept in bf16:
 * widened exactly a piece at a time (act' is elementwise: the hidden
 * activation is never softmax). */
static void act_backward_from_bf16(ffn_act act, float param, const ffn_bf16 *v, float *dh, size_t n)
{
    enum { PIECE = 2048 };
    float wide[PIECE];
    for (size_t i = 0; i < n; i += PIECE) {
        size_t len = n - i < PIECE ? n - i : PIECE;
        ffn_floats_from_bf16(wide, v + i, len);
        ffn_act_backward(act, param, wide, wide, dh + i, dh + i, 1, len);
    }
}

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
    float *xhat, *n;     /* [batch, in] (fp32 cache) */
    float *rstd;         /* [batch] */
    float *z, *h;        /* [batch, H]; h == z when act's backward needs only h (fp32 cache) */
    ffn_bf16 *xhat16, *n16, *z16, *h16; /* the same in bf16 (bf16 cache) */
} block_parts;

static block_parts parts_of(const ffn_layer *l, size_t batch)
{
    const ffn_block_norm_cache c = ffn_block_norm_cache_of(l, batch);
    block_parts p = {.xhat = c.xhat, .n = c.n, .rstd = c.rstd, .xhat16 = c.xhat16, .n16 = c.n16};
    const size_t z_count = hidden_needs_z(l) ? batch * l->spec.units : 0;
    if (l->cache_bf16) {
        p.z16 = c.rest;
        p.h16 = p.z16 + z_count;
    } else {
        p.z = c.rest;
        p.h = p.z + z_count;
    }
    return p;
}

/* Forward with the cache in bf16: the norm's values, then z = n·W1ᵀ + b1 and
 * h = act(z), in fp32 in the work area, each rounded once into the cache; the
 * products read n and h as they are kept. */
static void block_forward_bf16(ffn_layer *l, const float *x, size_t batch, const ffn_forward_ctx *ctx,
                               const block_parts *p)
{
    const ffn_layer_spec *s = &l->spec;
    const ffn_tensor *t = l->tensors;
    size_t total = batch * s->units;
    float *hidden = ctx->work;
    ffn_layernorm_rows_forward_bf16(p->n16, p->xhat16, p->rstd, x, t[T_GAMMA].data, t[T_BETA].data, batch, l->in,
                                    ctx->work);
    if (batch == 0) return;
    ffn_gemm_typed(ctx->gemm, 0, 1, batch, s->units, l->in, 1.0f, p->n16, 1, l->in, t[T_W1].data, 0, l->in, 0.0f,
                   hidden, 0, s->units);
    ffn_bias_act_forward(FFN_ACT_IDENTITY, 0, t[T_B1].data, hidden, hidden, batch, s->units);
    if (hidden_needs_z(l)) ffn_bf16_from_floats(p->z16, hidden, total);
    ffn_act_forward(s->act, s->act_param, hidden, hidden, batch, s->units);
    ffn_bf16_from_floats(p->h16, hidden, total);
    ffn_gemm_typed(ctx->gemm, 0, 1, batch, l->in, s->units, 1.0f, p->h16, 1, s->units, t[T_W2].data, 0, s->units,
                   0.0f, l->y, 0, l->in);
    ffn_bias_act_forward(FFN_ACT_IDENTITY, 0, t[T_B2].data, l->y, l->y, batch, l->in);
}

static void block_forward(ffn_layer *l, const float *x, size_t batch, const ffn_forward_ctx *ctx)
{
    const ffn_layer_spec *s = &l->spec;
    const ffn_tensor *t = l->tensors;
    block_parts p = parts_of(l, batch);
    if (l->cache_bf16) {
        block_forward_bf16(l, x, batch, ctx, &p);
    } else {
        ffn_layernorm_rows_forward(p.n, p.xhat, p.rstd, x, t[T_GAMMA].data, t[T_BETA].data, batch, l->in);
        ffn_dense_forward_on(ctx->gemm, p.z, p.h, p.n, t[T_W1].data, t[T_B1].data, batch, l->in, s->units, s->act,
                             s->act_param);
        ffn_dense_forward_on(ctx->gemm, l->y, l->y, p.h, t[T_W2].data, t[T_B2].data, batch, s->units, l->in,
                             FFN_ACT_IDENTITY, 0);
    }
    size_t total = batch * l->in;
    for (size_t i = 0; i < total; i++) l->y[i] += x[i];
}

#define GRAD(k) (t[k].trainable ? t[k].grad : NULL)

/* dW [rows, cols] = dzᵀ·v (written, or added when accumulate) with v kept in
 * bf16: ffn_dense_backward_on's dW with its operand read as it is kept. */
static void weight_grad_bf16(ffn_gemm_engine *g, float *dW, const float *dz, const ffn_bf16 *v, size_t batch,
                             size_t rows, size_t cols, int accumulate)
{
    if (!dW) return;
    if (batch > 0)
        ffn_gemm_typed(g, 1, 0, rows, cols, batch, 1.0f, dz, 0, rows, v, 1, cols, accumulate ? 1.0f : 0.0f, dW, 0,
                       cols);
    else if (!accumulate)
        memset(dW, 0, rows * cols * sizeof *dW);
}

/* Backward from the bf16 cache: the products of the fp32 one, with h and n
 * read as they are kept, act' and the norm's backward on widened z and xhat. */
static void block_backward_bf16(ffn_layer *l, float *dx, float *dy, size_t batch, int accumulate, float *work,
                                const ffn_forward_ctx *ctx, int need_dn, int need_dh)
{
    const ffn_layer_spec *s = &l->spec;
    ffn_tensor *t = l->tensors;
    block_parts p = parts_of(l, batch);
    const size_t H = s->units, in = l->in;
    float *dh = work, *dn = work + batch * H, *xhat = dn + batch * in;
    /* Output projection (identity: dz = dy). */
    weight_grad_bf16(ctx->gemm, GRAD(T_W2), dy, p.h16, batch, in, H, accumulate);
    if (GRAD(T_B2)) ffn_column_sums(t[T_B2].grad, dy, batch, in, accumulate);
    if (need_dh) {
        if (batch > 0) ffn_gemm(ctx->gemm, 0, 0, batch, H, in, 1.0f, dy, in, t[T_W2].data, H, 0.0f, dh, H);
        act_backward_from_bf16(s->act, s->act_param, hidden_needs_z(l) ? p.z16 : p.h16, dh, batch * H); /* dz */
        weight_grad_bf16(ctx->gemm, GRAD(T_W1), dh, p.n16, batch, H, in, accumulate);
        if (GRAD(T_B1)) ffn_column_sums(t[T_B1].grad, dh, batch, H, accumulate);
        if (need_dn && batch > 0) ffn_gemm(ctx->gemm, 0, 0, batch, in, H, 1.0f, dh, H, t[T_W1].data, in, 0.0f, dn, in);
    }
    if (dx) memcpy(dx, dy, batch * in * sizeof *dx); /* the residual path */
    if (need_dn)
        ffn_layernorm_rows_backward_bf16(dx, GRAD(T_GAMMA), GRAD(T_BETA), dn, p.xhat16, p.rstd, t[T_GAMMA].data,
                                         batch, in, accumulate, 1, xhat);
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
    if (l->cache_bf16) {
        block_backward_bf16(l, dx, dy, batch, accumulate, work, ctx, need_dn, need_dh);
        return;
    }
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
}
#undef GRAD

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
