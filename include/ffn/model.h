/* ffn — the model: an ordered stack of layers over three flat buffers.
 *
 * Parameters, gradients (and, in the optimizer, its state) each live in one
 * contiguous float buffer. Every layer owns a list of named parameter tensors
 * (a dense layer: W then b), laid out in layer order and, within a layer, in
 * tensor order; each tensor is a view into the buffers with its shape, whether
 * weight decay applies and whether it trains. One buffer makes the gradient
 * allreduce a few contiguous calls, the optimizer one loop over the tensors and
 * the checkpoint one dataset per tensor (/model/<layer>/<tensor name>).
 *
 * Spec text: comma-separated items, each kind[:field...]
 *   dense:UNITS[:ACT][:init=NAME][:init_param=X][:slope=X][:lora=R][:lora_alpha=A]
 *       z = x·Wᵀ + b, y = act(z). With lora=R (R > 0) a low-rank adapter is
 *       added: z = x·Wᵀ + (A/R)·(x·lora_Aᵀ)·lora_Bᵀ + b, lora_A [R, in] random,
 *       lora_B [out, R] zeros (so it starts as the plain layer); W and b are
 *       then fixed and only lora_A, lora_B train. lora_alpha defaults to R.
 *   dropout:P       inverted dropout with drop probability P in [0, 1);
 *                   identity in evaluation
 *   layernorm       y = gamma ⊙ (x - mean) / sqrt(var + 1e-5) + beta per row
 *   ffn:HIDDEN[:ACT][:init=NAME][:init_param=X]
 *                   transformer feed-forward block, output width = input width:
 *                   y = x + W2·act(W1·LN(x) + b1) + b2, ACT default gelu
 *   swiglu:HIDDEN[:init=NAME][:init_param=X]
 *                   y = x + W2·(silu(W1·LN(x)) ⊙ (W3·LN(x)))
 * e.g. "dense:128:relu,dropout:0.1,ffn:512,layernorm,dense:10". The input
 * width comes from the data. */
#ifndef FFN_MODEL_H
#define FFN_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/act.h"
#include "ffn/init.h"
#include "ffn/names.h"
#include "ffn/status.h"

/* The layer kinds; each is a src/layer_<kind>.c registered in src/layer_kinds.c. */
typedef enum {
    FFN_LAYER_DENSE = 0,
    FFN_LAYER_DROPOUT,
    FFN_LAYER_LAYERNORM,
    FFN_LAYER_FFN,
    FFN_LAYER_SWIGLU,
    FFN_LAYER_KIND_COUNT
} ffn_layer_kind;

#define FFN_LAYERNORM_EPS 1e-5f

typedef struct {
    ffn_layer_kind kind;
    size_t units;      /* dense: outputs; ffn, swiglu: hidden width; else 0 */
    ffn_act act;       /* dense: output activation; ffn: hidden activation */
    float act_param;   /* leaky_relu slope */
    int init;          /* ffn_init, or -1 for the default for act */
    float init_param;  /* uniform range / normal std */
    float rate;        /* dropout: drop probability */
    size_t lora_rank;  /* dense: 0 = no adapter */
    float lora_alpha;  /* dense with lora: the adapter's output is scaled by alpha / rank */
} ffn_layer_spec;

/* A named parameter tensor of a layer: a view into the flat buffers. */
#define FFN_TENSOR_NAME_MAX 16
typedef struct {
    char name[FFN_TENSOR_NAME_MAX]; /* "W", "b", "gamma", "W1", "lora_A", ... */
    size_t layer;        /* index of the layer that owns it */
    int ndim;            /* 1 or 2 */
    size_t shape[2];     /* [rows, cols] (ndim 2) or [n] (ndim 1) */
    size_t offset, count;/* [offset, offset + count) of the flat buffers */
    int decay;           /* weight decay applies (weights yes; biases, norms no) */
    int trainable;       /* gradient computed, reported, sent and applied */
    float *data, *grad;  /* views [count]: params + offset, grads + offset */
} ffn_tensor;

typedef struct {
    ffn_layer_spec spec;
    size_t in, out;
    int frozen;                 /* no tensor of the layer trains (ffn_model_set_frozen) */
    size_t param_offset;        /* first tensor's offset */
    size_t param_count;         /* all tensors of the layer, contiguous */
    ffn_tensor *tensors;        /* [tensor_count], in buffer order */
    size_t tensor_count;
    /* Dense layers: views of W [out, in] and b [out] (NULL, 0 for other kinds). */
    size_t weight_count, bias_count;
    float *W, *b, *dW, *db;
    /* Internal to the layer implementations (src/layer_*.c), visible for the
     * tests: may change in any release. Read a layer's output through
     * ffn_model_forward's result instead. */
    float *z, *y;               /* activations [max_batch, out]; z == y unless needed */
    float *cache;               /* kind-specific values kept from forward for backward,
                                   [max_batch, the kind's cache_per_row] (NULL when that is 0) */
    int cache_bf16;             /* the model computes in bf16: the kind keeps the parts of its cache
                                   that only feed products or safe derivatives in bf16 (the blocks'
                                   hidden activations and norm values); set before cache_per_row */
} ffn_layer;

typedef struct ffn_model ffn_model;

/* The arithmetic of the model's matrix products (every GEMM of every layer):
 * fp32 on OpenBLAS, or bf16 operands with fp32 accumulation on oneDNN. The
 * parameters stay fp32 either way (master weights); norms, activations,
 * softmax, losses and the optimizer always run in fp32. */
typedef enum { FFN_PRECISION_FP32 = 0, FFN_PRECISION_BF16 } ffn_precision;

/* Which library runs the products. bf16 runs on oneDNN only. fp32: OpenBLAS
 * sgemm, or oneDNN's f32 matmul; AUTO takes oneDNN when this CPU has AVX-512
 * but OpenBLAS runs a kernel without it (an old OpenBLAS, or one held back by
 * OPENBLAS_CORETYPE: oneDNN was about 2x faster there on every benchmark
 * shape), else OpenBLAS (within 10% of oneDNN at large shapes, faster at
 * narrow ones). The choice never depends on timing, so runs stay reproducible. */
typedef enum { FFN_GEMM_AUTO = 0, FFN_GEMM_OPENBLAS, FFN_GEMM_ONEDNN } ffn_gemm_backend;
/* "fp32", "bf16" and "auto", "openblas", "onednn": the flags' names of both. */
extern const ffn_names ffn_precision_names, ffn_gemm_backend_names;

/* "dense", "dropout", "layernorm", "ffn", "swiglu" (the spec keywords). */
const char *ffn_layer_kind_name(ffn_layer_kind kind);

/* Parses SPEC into a malloc'd array (free with free()). Errors name the item. */
ffn_status ffn_spec_parse(const char *text, ffn_layer_spec **layers, size_t *count);
/* Canonical text of one layer / a whole spec (malloc'd). */
char *ffn_spec_format(const ffn_layer_spec *layers, size_t count);

ffn_status ffn_model_create(ffn_model **out, const ffn_layer_spec *layers, size_t count,
                            size_t input_dim);
ffn_status ffn_model_create_from_text(ffn_model **out, const char *spec, size_t input_dim);
void ffn_model_free(ffn_model *m);

size_t ffn_model_layer_count(const ffn_model *m);
ffn_layer *ffn_model_layer(ffn_model *m, size_t i);
const ffn_layer *ffn_model_layer_const(const ffn_model *m, size_t i);
size_t ffn_model_input_dim(const ffn_model *m);
size_t ffn_model_output_dim(const ffn_model *m);
size_t ffn_model_param_count(const ffn_model *m);
/* The parameters, writable: taking them marks the bf16 copy of the weights
 * (--precision bf16) stale, so the next forward converts them again. */
float *ffn_model_params(ffn_model *m);
/* The same, to read only (the bf16 copy stays current). */
const float *ffn_model_params_const(const ffn_model *m);
/* The same mark, for writes through a tensor's data or a layer's W. */
void ffn_model_params_changed(ffn_model *m);
float *ffn_model_grads(ffn_model *m);
/* Moves the gradients into grads (param_count floats, owned by the caller and
 * outliving the model, e.g. node-shared memory from ffn_comm_alloc_shared_floats):
 * the current values are copied, the model's own buffer freed, every view re-pointed. */
void ffn_model_use_grad_buffer(ffn_model *m, float *grads);
/* Moves the parameters into params (param_count floats, the caller's and
 * outliving the model: --shard params on one node, a node-shared buffer each
 * rank holds a slice of): only [lo, hi) is copied over (the caller's slice;
 * the other ranks write theirs), every view re-pointed. */
void ffn_model_use_param_buffer(ffn_model *m, float *params, size_t lo, size_t hi);
char *ffn_model_spec_text(const ffn_model *m); /* malloc'd canonical spec */

/* Every tensor of every layer, in buffer order (k from 0). */
size_t ffn_model_tensor_count(const ffn_model *m);
const ffn_tensor *ffn_model_tensor(const ffn_model *m, size_t k);
/* The tensor of layer i named name, or NULL. */
const ffn_tensor *ffn_model_find_tensor(const ffn_model *m, size_t layer, const char *name);
/* Parameters that train (sum of the trainable tensors' counts). */
size_t ffn_model_trainable_count(const ffn_model *m);

/* Draws every layer's weights from (seed, FFN_STREAM_INIT + layer << 8), the
 * layer's tensors one after another from that stream (a dense layer's W first,
 * so adding an adapter never changes W); biases 0, norm gains 1. Weights use the
 * spec's init=, else Xavier uniform (He uniform for ReLU/GELU layers before
 * issue 19, so a seed draws other weights than it did then). */
void ffn_model_init_params(ffn_model *m, uint64_t seed);
/* The same values, layer by layer, keeping only [lo, hi) of the flat
 * parameters: the pages of each layer outside it are given back as soon as the
 * layer is drawn (--shard params: never the whole model in one rank). */
void ffn_model_init_params_slice(ffn_model *m, uint64_t seed, size_t lo, size_t hi);
/* Re-draws one layer only (a replaced head). */
void ffn_model_init_layer(ffn_model *m, size_t layer, uint64_t seed);

/* Allocates activations, per-layer caches and backward scratch for batches up
 * to max_batch (done once, before the first step). */
ffn_status ffn_model_reserve(ffn_model *m, size_t max_batch);
size_t ffn_model_max_batch(const ffn_model *m);
/* What ffn_model_create and ffn_model_reserve(max_batch) would allocate for
 * this spec on input_dim features (with --recompute when recompute; with the
 * blocks' caches at 2 bytes a value when bf16_caches), without
 * allocating it: *params floats of parameters (and as many of gradients),
 * *activation_floats for the activations, caches, backward's work area and
 * scratch, and, unless operand_floats is NULL, the widest operand of a
 * product (bf16: the size of each of the engine's two conversion buffers)
 * (the memory plan, ffn/memplan.h). */
ffn_status ffn_model_plan(const ffn_layer_spec *layers, size_t count, size_t input_dim, size_t max_batch,
                          int recompute, int bf16_caches, size_t *params, size_t *activation_floats,
                          size_t *operand_floats);
/* The parameter count of the model's largest layer (what --shard params
 * gathers at once). */
ffn_status ffn_model_plan_largest_layer(const ffn_layer_spec *layers, size_t count, size_t input_dim, size_t *largest);

/* Sets the precision of the matrix products (FFN_PRECISION_FP32 at creation).
 * bf16 keeps a bf16 copy of the weights (2 bytes per parameter) and fails,
 * saying why, where this build or CPU cannot run it natively. */
ffn_status ffn_model_set_precision(ffn_model *m, ffn_precision p);
/* The same with the backend chosen (ffn_model_set_precision: fp32 on
 * OpenBLAS, bf16 on oneDNN). */
ffn_status ffn_model_set_compute(ffn_model *m, ffn_precision p, ffn_gemm_backend b);
ffn_precision ffn_model_precision(const ffn_model *m);
/* bf16: whether the weights' bf16 copy matches the parameters now; and a
 * range [offset, offset + count) of it converted at once (the step converts
 * each chunk of weights right after the optimizer wrote it, while it is in
 * cache, then declares the copy current: saves a pass over the weights). */
int ffn_model_bf16_current(const ffn_model *m);
void ffn_model_bf16_refresh_range(ffn_model *m, size_t offset, size_t count);
void ffn_model_bf16_set_current(ffn_model *m);
/* The part [lo, hi) of the weights (2-D tensors) converted into the bf16 copy. */
void ffn_model_bf16_refresh_slice(ffn_model *m, size_t lo, size_t hi);
/* --precision bf16: the weights' bf16 copy moves into copy (param_count
 * 16-bit values, the caller's and outliving the model: a node-shared buffer
 * each rank writes a slice of, ffn_comm_alloc_node_slices_u16); nothing is
 * converted (the copy is stale until the caller fills it and calls
 * ffn_model_bf16_set_current). No-op in fp32. */
void ffn_model_use_bf16_buffer(ffn_model *m, uint16_t *copy);
/* Activation checkpointing per block: the residual blocks (ffn, swiglu) keep
 * only their input (the previous layer's output) and share one cache, which
 * backward refills by running the block's forward again just before its
 * backward: about one more forward of the blocks per step, the blocks'
 * caches (the bulk of the activations of a deep model) held once instead of
 * once per block. Gradients are bitwise those of a run without it. */
ffn_status ffn_model_set_recompute(ffn_model *m, int on);
/* Whether --recompute applies to layers of this kind (the residual blocks). */
int ffn_layer_kind_recomputes(ffn_layer_kind kind);
int ffn_model_recompute(const ffn_model *m);
/* At bf16 precision the blocks keep their caches for backward (hidden
 * activations, norm values) in bf16 (on, the default: half their memory);
 * off keeps them in fp32 (what
 * --fp32-caches asks, to measure what the rounding costs). Reserves again. */
ffn_status ffn_model_set_bf16_caches(ffn_model *m, int on);
/* Whether the model's caches hold bf16 parts now (bf16 precision and on). */
int ffn_model_bf16_caches(const ffn_model *m);
/* The GEMM backend and kernel that run, for the banner (into buf). */
const char *ffn_model_gemm_name(const ffn_model *m, char *buf, size_t cap);

/* Evaluation forward (dropout is the identity). Returns the output
 * [batch, out] (owned by the model, valid until the next forward). */
const float *ffn_model_forward(ffn_model *m, const float *x, size_t batch);

/* Training forward: dropout draws its masks. rows[r] is the global index of
 * row r of the batch in the dataset (NULL: 0, 1, ...), step the optimizer
 * step: layer i's mask of a row comes from the counter-based generator
 * (seed, stream FFN_STREAM_DROPOUT + (i << 8) + (step << 32), counter
 * row << 32 | column / 4) alone, so every rank count draws the same masks for
 * the same global batch. */
const float *ffn_model_forward_train(ffn_model *m, const float *x, size_t batch, uint64_t seed,
                                     uint64_t step, const uint64_t *rows);

/* Called during backward each time gradients are final, from the end of the
 * buffer towards the start: [offset, offset + count) of the gradient buffer
 * is ready. Only trainable tensors are reported (a layer reports each run of
 * adjacent trainable tensors once). */
typedef void (*ffn_grad_ready_fn)(void *user, size_t offset, size_t count);

/* dout [batch, out]: gradient of the loss w.r.t. the output of the last
 * forward (overwritten). Gradients of trainable tensors are written
 * (accumulate 0) or added (accumulate 1); other tensors get none; no dx is
 * computed below the lowest layer with a trainable tensor. */
void ffn_model_backward(ffn_model *m, const float *x, size_t batch, float *dout,
                        int accumulate, ffn_grad_ready_fn ready, void *user);
/* The same, and also the gradient w.r.t. the input, dx [batch, input_dim]
 * (written; NULL: as ffn_model_backward). */
void ffn_model_backward_dx(ffn_model *m, const float *x, size_t batch, float *dout, int accumulate,
                           ffn_grad_ready_fn ready, void *user, float *dx);

/* Backward computes a large weight's gradient in pieces of about `floats`
 * (its top rows first) and reports each as it is done, so that an exchange
 * that sends while backward computes (across nodes) starts on it sooner; the
 * same dot products either way (OpenBLAS may round a piece edge's rows in
 * another order). 0 (the default): each layer's in one product. */
void ffn_model_set_grad_piece(ffn_model *m, size_t floats);

/* Zeroes every trainable gradient and reports the ranges as backward would
 * (a rank with no rows still joins the exchange). */
void ffn_model_zero_grads(ffn_model *m, ffn_grad_ready_fn ready, void *user);
/* Reports the trainable ranges as backward would, without computing anything
 * (gradients accumulated earlier are ready to send). */
void ffn_model_report_grads(const ffn_model *m, ffn_grad_ready_fn ready, void *user);

/* Around each layer's forward and backward (also the forward a recomputed
 * block repeats inside its backward, which before(BACKWARD) covers): with
 * --shard params the step gathers the layer's parameters in before() and
 * gives their pages back in after(). NULL hooks (the default): none. */
typedef enum { FFN_PASS_FORWARD, FFN_PASS_BACKWARD } ffn_pass;
typedef struct {
    void (*before)(void *user, size_t layer, ffn_pass pass);
    void (*after)(void *user, size_t layer, ffn_pass pass);
    void *user;
} ffn_layer_hooks;
void ffn_model_set_layer_hooks(ffn_model *m, const ffn_layer_hooks *hooks);
/* A forward and backward's hooks and gradient reports, in their order, with
 * nothing computed and no gradient written: a rank without rows still makes
 * the collectives the others make. */
void ffn_model_pass_without_rows(ffn_model *m, ffn_grad_ready_fn ready, void *user);
/* The lowest layer backward reaches (the lowest with a trainable tensor; the layer count: none). */
size_t ffn_model_lowest_trained(const ffn_model *m);
/* An evaluation forward's hooks alone (a rank with fewer evaluation batches). */
void ffn_model_forward_without_rows(ffn_model *m);
/* on: the forward no longer converts the whole bf16 copy when the parameters
 * changed; the caller converts each layer's (ffn_model_bf16_refresh_layer)
 * right after it gathered them (--shard params across nodes). */
void ffn_model_set_bf16_by_layer(ffn_model *m, int on);
/* The bf16 copy of layer i's weights converted from the parameters (the
 * sharded step, right after it gathered them). */
void ffn_model_bf16_refresh_layer(ffn_model *m, size_t i);
/* Gives back the pages of the parameters (and their bf16 copy) in [from, to):
 * the sharded step after a layer ran, outside the slice this rank keeps. */
void ffn_model_release_params(ffn_model *m, size_t from, size_t to);
/* The same for layer i's parameters outside [keep_lo, keep_hi) (the rank's slice). */
void ffn_model_release_layer(ffn_model *m, size_t i, size_t keep_lo, size_t keep_hi);
/* Layer i's gradient views into buf (its param_count floats: the sharded
 * step's one layer buffer, so the flat gradient buffer is never touched), or
 * back into the flat buffer (NULL). */
void ffn_model_set_layer_grads(ffn_model *m, size_t i, float *buf);

/* Freezes a layer (no tensor trains) or restores its kind's default (every
 * tensor trains, except W and b of a dense layer with an adapter). */
void ffn_model_set_frozen(ffn_model *m, size_t layer, int frozen);

/* ---- fixed tensors (those that do not train: --freeze, --lora's base) ----
 * They never change once training starts, so ffn/share.h can map their pages
 * read-only from one node-shared copy. */

/* Called with each run [offset, offset + count) of adjacent fixed tensors, in
 * buffer order (runs may span layers). */
typedef void (*ffn_range_fn)(void *user, size_t offset, size_t count);
void ffn_model_fixed_runs(const ffn_model *m, ffn_range_fn each, void *user);
/* The same runs for a model not built yet (the memory plan): layers [count]
 * on input_dim features with layer i frozen where frozen[i] (NULL: none), each
 * tensor otherwise training as its kind's default (ffn_model_set_frozen). */
ffn_status ffn_model_plan_fixed_runs(const ffn_layer_spec *layers, size_t count, size_t input_dim,
                                     const int *frozen, ffn_range_fn each, void *user);
/* The page-mapped buffers themselves, for ffn/share.h to remap pages in
 * place (the addresses stay): the parameters and, with --precision bf16, the
 * weights' bf16 copy (2 bytes per parameter; NULL without one). Nothing is
 * marked stale. */
void ffn_model_page_buffers(ffn_model *m, float **params, void **bf16);
/* --precision bf16: the fixed weights' bf16 copy is final from now on (convert:
 * made now from the parameters; 0: already in place, e.g. mapped from a copy
 * another rank made); later conversions cover the trainable weights only, so
 * the fixed ones' pages may be read-only. Undone by ffn_model_set_compute. */
void ffn_model_bf16_fix(ffn_model *m, int convert);

/* A new model in which every dense layer's adapter is merged into its
 * weights, W += (alpha / rank)·lora_B·lora_A, and removed from the spec; the
 * other tensors are copied. Frozen flags are not carried over. */
ffn_status ffn_model_merge_lora(ffn_model **out, const ffn_model *m);

#endif
