/* ffn — the dense layer kind, with an optional LoRA adapter.
 *
 * Plain: z = x·Wᵀ + b, y = act(z) (ffn_dense_forward/backward).
 * With lora=R: z = x·Wᵀ + s·u·Bᵀ + b, u = x·Aᵀ [batch, R], s = alpha / R;
 * A = lora_A [R, in], B = lora_B [out, R]. W and b are fixed; backward gives
 *   dB = s·dzᵀ·u,  du = s·dz·B,  dA = duᵀ·x,  dx = dz·W + du·A.
 * Cache: u [batch, R]; work: du [batch, R]. */
#include <math.h>
#include <string.h>

#include "ffn/dense.h"
#include "ffn/init.h"
#include "layer.h"

/* Xavier (Glorot) uniform whatever the activation: Keras' default, and the
 * weight scale of scikit-learn's MLP. He uniform, the default for ReLU and GELU
 * before issue 19, is sqrt(1 + fan_out / fan_in) times wider; on small tabular
 * sets it learned slower and ended worse than the peers (README, "Defaults";
 * launch/defaults-study.sh; guarded by tests/e2e_defaults.sh). */
ffn_init ffn_layer_default_init(ffn_act act)
{
    (void)act;
    return FFN_INIT_XAVIER_UNIFORM;
}

static int dense_setup(const ffn_layer_spec *s, size_t in, size_t *out, ffn_tensor_decl *d)
{
    *out = s->units;
    d[0] = (ffn_tensor_decl){"W", 2, {s->units, in}, 1};
    d[1] = (ffn_tensor_decl){"b", 1, {s->units, 0}, 0};
    if (!s->lora_rank) return 2;
    d[2] = (ffn_tensor_decl){"lora_A", 2, {s->lora_rank, in}, 1};
    d[3] = (ffn_tensor_decl){"lora_B", 2, {s->units, s->lora_rank}, 1};
    return 4;
}

static int dense_default_trainable(const ffn_layer_spec *s, const char *tensor)
{
    return s->lora_rank == 0 || strncmp(tensor, "lora_", 5) == 0;
}

static size_t dense_cache_per_row(const ffn_layer *l) { return l->spec.lora_rank; }
static size_t dense_work_per_row(const ffn_layer *l) { return l->spec.lora_rank; }
static int dense_needs_z(const ffn_layer *l) { return ffn_act_backward_needs_z(l->spec.act, l->spec.act_param); }

/* W as the spec says; lora_A uniform in ±1/sqrt(in) (PyTorch's kaiming_uniform
 * with a = sqrt(5), as LoRA's reference code), drawn after W from the same
 * stream; lora_B zeros, so a fresh adapter leaves the layer unchanged. */
static void dense_init(ffn_layer *l, ffn_rng *rng)
{
    const ffn_layer_spec *s = &l->spec;
    ffn_init kind = s->init >= 0 ? (ffn_init)s->init : ffn_layer_default_init(s->act);
    ffn_init_fill(kind, s->init_param, l->W, l->out, l->in, rng);
    memset(l->b, 0, l->bias_count * sizeof *l->b);
    if (!s->lora_rank) return;
    ffn_tensor *A = &l->tensors[2], *B = &l->tensors[3];
    float bound = 1.0f / sqrtf((float)l->in);
    ffn_rng_fill_uniform(rng, A->data, A->count, -bound, bound);
    memset(B->data, 0, B->count * sizeof *B->data);
}

static float lora_scale(const ffn_layer_spec *s) { return s->lora_alpha / (float)s->lora_rank; }

static void dense_forward(ffn_layer *l, const float *x, size_t batch, const ffn_forward_ctx *ctx)
{
    const ffn_layer_spec *s = &l->spec;
    if (!s->lora_rank) {
        ffn_dense_forward_on(ctx->gemm, l->z, l->y, x, l->W, l->b, batch, l->in, l->out, s->act, s->act_param);
        return;
    }
    if (batch == 0) return;
    int b = (int)batch, in = (int)l->in, out = (int)l->out, R = (int)s->lora_rank;
    const float *A = l->tensors[2].data, *B = l->tensors[3].data;
    float *u = l->cache;
    ffn_gemm(ctx->gemm, 0, 1, b, out, in, 1.0f, x, in, l->W, in, 0.0f, l->z, out);
    ffn_gemm(ctx->gemm, 0, 1, b, R, in, 1.0f, x, in, A, in, 0.0f, u, R);
    ffn_gemm(ctx->gemm, 0, 1, b, out, R, lora_scale(s), u, R, B, R, 1.0f, l->z, out);
    ffn_bias_act_forward(s->act, s->act_param, l->b, l->z, l->y, batch, out);
}

/* Backward may compute dW [out, in] = dzᵀ·x in pieces of this many rows (0:
 * in one product): ctx->grad_piece floats or so, rounded up to whole blocks
 * of the GEMM kernels' rows, where the exchange sends gradients while
 * backward computes, for a weight of two pieces or more (not under LoRA,
 * whose W is frozen). */
enum { PIECE_ALIGN = 64 };

static size_t weight_grad_piece_rows(const ffn_layer *l, size_t batch, const ffn_forward_ctx *ctx)
{
    if (!ctx->grad_piece || !ctx->grads_from || !l->tensors[0].trainable || batch == 0 || l->spec.lora_rank) return 0;
    size_t rows = (ctx->grad_piece + l->in - 1) / l->in;
    rows = (rows + PIECE_ALIGN - 1) / PIECE_ALIGN * PIECE_ALIGN;
    return 2 * rows <= l->out ? rows : 0;
}

/* dW in pieces of `rows` (cut from row 0 up, so the top piece may be short),
 * the top rows first, each reported as soon as it is computed: across nodes
 * the network starts on a large weight's gradients while the rest still
 * compute (a 4096x4096 layer's dW alone is 64 MB). Each element is the same
 * dot product over the batch as in one product; OpenBLAS may sum a few rows
 * at a piece's edge in another order (last-bit differences, the same on
 * every rank and every run). */
static void dense_weight_grad_in_pieces(ffn_layer *l, const float *dz, const float *x, size_t batch, int accumulate,
                                        size_t rows, const ffn_forward_ctx *ctx)
{
    const size_t in = l->in, out = l->out;
    /* x is every piece's B: in bf16, rounded once for all of them, not once a piece. */
    const ffn_bf16 *x16 = ffn_gemm_keep_bf16(ctx->gemm, x, batch, in, in);
    for (size_t hi = out; hi > 0;) {
        const size_t lo = (hi - 1) / rows * rows;
        ffn_gemm_typed(ctx->gemm, 1, 0, hi - lo, in, batch, 1.0f, dz + lo, 0, out, x16 ? (const void *)x16 : x,
                       x16 != NULL, in, accumulate ? 1.0f : 0.0f, l->dW + lo * in, 0, in);
        ffn_layer_grads_from(ctx, l->tensors[0].offset + lo * in); /* the first: with the bias's, above W */
        hi = lo;
    }
}

static void dense_backward(ffn_layer *l, float *dx, float *dy, const float *x, size_t batch,
                           int accumulate, float *work, const ffn_forward_ctx *ctx)
{
    const ffn_layer_spec *s = &l->spec;
    ffn_tensor *tW = &l->tensors[0], *tb = &l->tensors[1];
    /* Activation, dW and db first (dy holds dz afterwards); dx = dz·W once the
     * parameter gradients are handed over (ffn_layer_grads_final), so the
     * exchange sends them while dx computes. The same products either way.
     * dW in pieces: after the activation and db. */
    const size_t piece_rows = weight_grad_piece_rows(l, batch, ctx);
    ffn_dense_backward_on(ctx->gemm, NULL, tW->trainable && !piece_rows ? l->dW : NULL, tb->trainable ? l->db : NULL,
                          dy, x, l->W, l->z, l->y, batch, l->in, l->out, s->act, s->act_param, accumulate);
    if (piece_rows) dense_weight_grad_in_pieces(l, dy, x, batch, accumulate, piece_rows, ctx);
    int b = (int)batch, in = (int)l->in, out = (int)l->out, R = (int)s->lora_rank;
    const float *dz = dy;
    float *du = work; /* [batch, R] = s·dz·B (LoRA) */
    if (s->lora_rank) {
        ffn_tensor *tA = &l->tensors[2], *tB = &l->tensors[3];
        if (batch == 0) {
            if (!accumulate) {
                if (tA->trainable) memset(tA->grad, 0, tA->count * sizeof(float));
                if (tB->trainable) memset(tB->grad, 0, tB->count * sizeof(float));
            }
        } else {
            float scale = lora_scale(s), beta = accumulate ? 1.0f : 0.0f;
            const float *u = l->cache;
            if (tB->trainable) /* dB [out, R] = s·dzᵀ·u */
                ffn_gemm(ctx->gemm, 1, 0, out, R, b, scale, dz, out, u, R, beta, tB->grad, R);
            if (tA->trainable || dx) ffn_gemm(ctx->gemm, 0, 0, b, R, out, scale, dz, out, tB->data, R, 0.0f, du, R);
            if (tA->trainable) /* dA [R, in] = duᵀ·x */
                ffn_gemm(ctx->gemm, 1, 0, R, in, b, 1.0f, du, R, x, in, beta, tA->grad, in);
        }
    }
    ffn_layer_grads_final(ctx);
    if (!dx || batch == 0) return;
    ffn_gemm(ctx->gemm, 0, 0, b, in, out, 1.0f, dz, out, l->W, in, 0.0f, dx, in); /* dx = dz·W */
    if (s->lora_rank) ffn_gemm(ctx->gemm, 0, 0, b, in, R, 1.0f, du, R, l->tensors[2].data, in, 1.0f, dx, in); /* += du·A */
}

/* W [out, in], b [out] and their gradients: views of the first two tensors. */
static void dense_bind(ffn_layer *l)
{
    l->weight_count = l->tensors[0].count;
    l->bias_count = l->tensors[1].count;
    l->W = l->tensors[0].data;
    l->b = l->tensors[1].data;
    l->dW = l->tensors[0].grad;
    l->db = l->tensors[1].grad;
}

/* dense:UNITS[:ACT][:init=NAME][:init_param=X][:slope=X][:lora=R][:lora_alpha=A] */
const ffn_layer_ops ffn_layer_dense_ops = {
    .name = "dense",
    .field = FFN_SPEC_UNITS,
    .field_name = "units",
    .activations = FFN_ACT_ALL,
    .activation_role = "a dense layer's activation",
    .default_act = FFN_ACT_IDENTITY,
    .options = FFN_SPEC_INIT | FFN_SPEC_SLOPE | FFN_SPEC_LORA,
    .setup = dense_setup,
    .default_trainable = dense_default_trainable,
    .cache_per_row = dense_cache_per_row,
    .work_per_row = dense_work_per_row,
    .needs_z = dense_needs_z,
    .init = dense_init,
    .bind = dense_bind,
    .forward = dense_forward,
    .backward = dense_backward,
};
