/* ffn — the layer kinds behind the model (internal to libffn).
 *
 * Each kind lives in its own src/layer_*.c with its forward beside its
 * backward. The model owns the buffers: a layer's parameters are tensors in
 * the flat buffers (declared by setup), its output y (and z) and its cache are
 * carved from one activation arena by ffn_model_reserve, and backward borrows
 * a shared work area. Forward and backward never allocate.
 *
 * A kind also describes its spec item (kind[:field][:option...]): src/spec.c
 * parses and formats every kind from that description alone. Adding a kind
 * is its file, its value in ffn_layer_kind (model.h) and one line in the
 * registry (src/layer_kinds.c). */
#ifndef FFN_LAYER_INTERNAL_H
#define FFN_LAYER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/init.h"
#include "ffn/model.h"
#include "ffn/rng.h"
#include "bf16.h"
#include "gemm.h"

/* What a forward pass knows beyond its input. */
typedef struct {
    int train;            /* 0: evaluation (dropout is the identity) */
    uint64_t seed, step;  /* training: the run's seed and the optimizer step */
    const uint64_t *rows; /* training: global row ids of the batch [batch], or NULL (0, 1, ...) */
    size_t layer;         /* index of the layer being run */
    ffn_gemm_engine *gemm;       /* the model's GEMM engine: every product goes through ffn_gemm(gemm, ...) */
    /* Backward's work area (work_per_row floats a row), free while a forward
     * runs: a block that keeps its cache in bf16 computes its fp32 hidden
     * values there before rounding them. NULL outside a model. */
    float *work;
    /* Backward: a layer whose parameter gradients are final before it has
     * computed dx (a dense layer: dW, db, then dx = dz·W) calls
     * ffn_layer_grads_final(ctx) then, so the exchange can send them while dx
     * computes; otherwise the model reports them after the layer's backward.
     * grads_from(user, layer, offset): those at flat offsets >= offset are
     * final, the rest of the layer's not yet (reported from the top down). */
    void (*grads_from)(void *user, size_t layer, size_t offset);
    void *grads_from_user;
    /* Backward, when the exchange sends gradients while backward computes
     * (across nodes): a large weight's gradient may be computed and reported
     * in pieces of about this many floats, top rows first, so the network
     * starts on it before the whole product is done. 0: in one piece. */
    size_t grad_piece;
} ffn_forward_ctx;

static inline void ffn_layer_grads_from(const ffn_forward_ctx *ctx, size_t offset)
{
    if (ctx->grads_from) ctx->grads_from(ctx->grads_from_user, ctx->layer, offset);
}

static inline void ffn_layer_grads_final(const ffn_forward_ctx *ctx) { ffn_layer_grads_from(ctx, 0); }

/* A tensor a layer declares in setup (offsets are assigned by the model). */
typedef struct {
    const char *name;
    int ndim;
    size_t shape[2];
    int decay;
} ffn_tensor_decl;

#define FFN_LAYER_MAX_TENSORS 8

/* The positional field of a spec item, right after the keyword. */
typedef enum {
    FFN_SPEC_NO_FIELD = 0,
    FFN_SPEC_UNITS, /* an integer in [1, 2^31] (spec.units) */
    FFN_SPEC_RATE,  /* a probability in [0, 1) (spec.rate) */
} ffn_spec_field;

/* The option groups an item may carry after its field (bits of ffn_layer_ops.options). */
enum {
    FFN_SPEC_INIT = 1u << 0,  /* init=NAME, init_param=X */
    FFN_SPEC_SLOPE = 1u << 1, /* slope=X, leaky_relu's (formatted with the activation) */
    FFN_SPEC_LORA = 1u << 2,  /* lora=R, lora_alpha=A */
};

/* Bits of ffn_layer_ops.activations. */
#define FFN_ACT_BIT(a) (1u << (a))
#define FFN_ACT_ALL (FFN_ACT_BIT(FFN_ACT_COUNT) - 1u)

typedef struct {
    const char *name; /* spec keyword */
    /* ---- the spec item */
    ffn_spec_field field;
    const char *field_name;      /* FFN_SPEC_UNITS, in messages: "units", "the hidden width" */
    unsigned activations;        /* the ffn_act an item may name (FFN_ACT_BIT); 0: none */
    const char *activation_role; /* in messages: "softmax cannot be <role>" */
    ffn_act default_act;         /* spec.act when the item names none (never printed) */
    unsigned options;            /* FFN_SPEC_INIT | FFN_SPEC_SLOPE | FFN_SPEC_LORA */
    /* ---- the layer */
    /* Output width and tensors for spec s on input width in. Returns the
     * number of tensors written to decl (or -1 with ffn_fail set). */
    int (*setup)(const ffn_layer_spec *s, size_t in, size_t *out, ffn_tensor_decl *decl);
    /* The hooks below marked optional may be NULL: the default they name. */
    /* Whether the tensor trains by default (a dense layer with an adapter:
     * only the adapter). Optional: every tensor trains. */
    int (*default_trainable)(const ffn_layer_spec *s, const char *tensor);
    /* Floats per batch row of the layer's cache (kept from forward to backward)
     * and of backward's work area; both times max_batch are reserved. A cache
     * with l->cache_bf16 counts two bf16 values a float. Optional: 0. */
    size_t (*cache_per_row)(const ffn_layer *l);
    size_t (*work_per_row)(const ffn_layer *l);
    /* Whether y needs a separate z buffer. Optional: no. */
    int (*needs_z)(const ffn_layer *l);
    /* Draws or sets the parameters. Optional: the kind has none. */
    void (*init)(ffn_layer *l, ffn_rng *rng);
    /* Points the layer's own views (a dense layer's W, b, dW, db) into the
     * tensors, once they have buffers and whenever the buffers move. Optional. */
    void (*bind)(ffn_layer *l);
    /* Writes l->y (and l->z, l->cache) from x [batch, in]. */
    void (*forward)(ffn_layer *l, const float *x, size_t batch, const ffn_forward_ctx *ctx);
    /* dy [batch, out] (may be overwritten); dx [batch, in] written unless
     * NULL; the gradient of every trainable tensor written or added; work
     * holds work_per_row * batch floats. x, ctx and the forward state are
     * those of the last forward. */
    void (*backward)(ffn_layer *l, float *dx, float *dy, const float *x, size_t batch,
                     int accumulate, float *work, const ffn_forward_ctx *ctx);
} ffn_layer_ops;

/* The ops of a kind (NULL for a value that is none). */
const ffn_layer_ops *ffn_layer_ops_of(ffn_layer_kind kind);
/* The kind whose keyword is name, or -1. */
int ffn_layer_kind_from_name(const char *name);
/* "dense, dropout, ... or swiglu" into buf (cut at cap); returns buf. */
const char *ffn_layer_kind_list(char *buf, size_t cap);

/* The tensor of l named name (NULL if none). */
ffn_tensor *ffn_layer_tensor(ffn_layer *l, const char *name);

/* Layer normalisation of each row of x [rows, n] (shared by layernorm and
 * the residual blocks): xhat = (x - mean) * rstd, y = gamma ⊙ xhat + beta.
 * xhat [rows, n] and rstd [rows] are kept for backward. */
void ffn_layernorm_rows_forward(float *y, float *xhat, float *rstd, const float *x,
                                const float *gamma, const float *beta, size_t rows, size_t n);
/* From dy [rows, n]: dgamma, dbeta written/added unless NULL (accumulate);
 * dx = rstd ⊙ (g - mean(g) - xhat ⊙ mean(g ⊙ xhat)) with g = dy ⊙ gamma is
 * written (add_dx 0) or added (add_dx 1) unless dx is NULL. */
void ffn_layernorm_rows_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                                 const float *xhat, const float *rstd, const float *gamma,
                                 size_t rows, size_t n, int accumulate, int add_dx);

/* A residual block's (ffn, swiglu) cache begins with its norm's part, laid
 * out alike in both: with an fp32 cache xhat and n [rows, in], then rstd
 * [rows]; with a bf16 cache rstd [rows] (fp32) first, then xhat and n in
 * bf16. rest is where the block's own values begin: floats, or bf16 values
 * with l->cache_bf16. */
typedef struct {
    float *xhat, *n, *rstd;  /* fp32 cache (rstd always) */
    ffn_bf16 *xhat16, *n16;  /* bf16 cache */
    void *rest;
} ffn_block_norm_cache;

static inline ffn_block_norm_cache ffn_block_norm_cache_of(const ffn_layer *l, size_t rows)
{
    ffn_block_norm_cache c = {0};
    const size_t count = rows * l->in;
    if (l->cache_bf16) {
        c.rstd = l->cache;
        c.xhat16 = (ffn_bf16 *)(c.rstd + rows);
        c.n16 = c.xhat16 + count;
        c.rest = c.n16 + count;
    } else {
        c.xhat = l->cache;
        c.n = c.xhat + count;
        c.rstd = c.n + count;
        c.rest = c.rstd + rows;
    }
    return c;
}

/* Floats of a block's cache per row: its norm's part and `own` values of its own. */
static inline size_t ffn_block_cache_per_row(const ffn_layer *l, size_t own)
{
    const size_t kept = 2 * l->in + own; /* xhat, n and the block's */
    return 1 + (l->cache_bf16 ? (kept + 1) / 2 : kept); /* rstd; bf16: two values a float */
}

/* The same for a block keeping its norm's output y and xhat in bf16 (rstd
 * stays fp32): forward computes them in fp32 in temp (2·rows·n floats) and
 * rounds them once; backward widens xhat exactly into temp (rows·n floats).
 * y (a block's n) only feeds products, which round it to bf16 anyway: the
 * same bits. xhat, measured (tests/e2e_bf16.sh's block run, against fp32
 * caches): the median relative loss difference 2.5e-4 with xhat in fp32,
 * 2.9e-4 in bf16, while bf16 products against fp32 ones move it 5.8e-4; the
 * gradient checks of tests/test_bf16.c stay at 0.4-1.2%. */
void ffn_layernorm_rows_forward_bf16(ffn_bf16 *y, ffn_bf16 *xhat, float *rstd, const float *x, const float *gamma,
                                     const float *beta, size_t rows, size_t n, float *temp);
void ffn_layernorm_rows_backward_bf16(float *dx, float *dgamma, float *dbeta, const float *dy, const ffn_bf16 *xhat,
                                      const float *rstd, const float *gamma, size_t rows, size_t n, int accumulate,
                                      int add_dx, float *temp);

/* ffn_dense_forward / ffn_dense_backward (ffn/dense.h) on the engine g
 * (NULL: OpenBLAS fp32, as the public functions). */
void ffn_dense_forward_on(ffn_gemm_engine *g, float *z, float *y, const float *x, const float *W, const float *b,
                          size_t batch, size_t in, size_t out, ffn_act act, float act_param);
void ffn_dense_backward_on(ffn_gemm_engine *g, float *dx, float *dW, float *db, float *dy, const float *x,
                           const float *W, const float *z, const float *y, size_t batch, size_t in, size_t out,
                           ffn_act act, float act_param, int accumulate);

/* The initialiser a weight feeding activation act gets by default: Xavier
 * uniform for every activation (He uniform for the ReLU family and GELU before
 * issue 19; see README, "Defaults"). */
ffn_init ffn_layer_default_init(ffn_act act);

#endif
