/* ffn — the layer kinds behind the model (internal to libffn).
 *
 * Each kind lives in its own src/layer_*.c with its forward beside its
 * backward. The model owns the buffers: a layer's parameters are tensors in
 * the flat buffers (declared by setup), its output y (and z) and its cache are
 * carved from one activation arena by ffn_model_reserve, and backward borrows
 * a shared work area. Forward and backward never allocate. */
#ifndef FFN_LAYER_INTERNAL_H
#define FFN_LAYER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/init.h"
#include "ffn/model.h"
#include "ffn/rng.h"

/* What a forward pass knows beyond its input. */
typedef struct {
    int train;            /* 0: evaluation (dropout is the identity) */
    uint64_t seed, step;  /* training: the run's seed and the optimizer step */
    const uint64_t *rows; /* training: global row ids of the batch, or NULL (0, 1, ...) */
    size_t layer;         /* index of the layer being run */
} ffn_forward_ctx;

/* A tensor a layer declares in setup (offsets are assigned by the model). */
typedef struct {
    const char *name;
    int ndim;
    size_t shape[2];
    int decay;
} ffn_tensor_decl;

#define FFN_LAYER_MAX_TENSORS 8

typedef struct {
    const char *name; /* spec keyword */
    /* Output width and tensors for spec s on input width in. Returns the
     * number of tensors written to decl (or -1 with ffn_fail set). */
    int (*setup)(const ffn_layer_spec *s, size_t in, size_t *out, ffn_tensor_decl *decl);
    /* Whether the tensor trains by default (a dense layer with an adapter: only the adapter). */
    int (*default_trainable)(const ffn_layer_spec *s, const char *tensor);
    /* Floats per batch row of the layer's cache (kept from forward to backward)
     * and of backward's work area; both times max_batch are reserved. */
    size_t (*cache_per_row)(const ffn_layer *l);
    size_t (*work_per_row)(const ffn_layer *l);
    /* Whether y needs a separate z buffer. */
    int (*needs_z)(const ffn_layer *l);
    void (*init)(ffn_layer *l, ffn_rng *rng);
    /* Writes l->y (and l->z, l->cache) from x [batch, in]. */
    void (*forward)(ffn_layer *l, const float *x, size_t batch, const ffn_forward_ctx *ctx);
    /* dy [batch, out] (may be overwritten); dx [batch, in] written unless
     * NULL; the gradient of every trainable tensor written or added; work
     * holds work_per_row * batch floats. x, ctx and the forward state are
     * those of the last forward. */
    void (*backward)(ffn_layer *l, float *dx, float *dy, const float *x, size_t batch,
                     int accumulate, float *work, const ffn_forward_ctx *ctx);
} ffn_layer_ops;

extern const ffn_layer_ops ffn_layer_dense_ops, ffn_layer_dropout_ops, ffn_layer_layernorm_ops,
    ffn_layer_ffn_ops, ffn_layer_swiglu_ops;

/* The ops of a kind. */
const ffn_layer_ops *ffn_layer_ops_of(ffn_layer_kind kind);

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

/* The initialiser a weight feeding activation act gets by default: He uniform
 * for the ReLU family and GELU, Xavier uniform otherwise. */
ffn_init ffn_layer_default_init(ffn_act act);

#endif
