/* ffn — the model: an ordered stack of layers over three flat buffers.
 *
 * Parameters, gradients (and, in the optimizer, its state) each live in one
 * contiguous float buffer; a layer's W and b are views into it, laid out in
 * layer order (W then b). One buffer makes the gradient allreduce a few
 * contiguous calls, the optimizer one loop and the checkpoint a few datasets.
 *
 * Spec text: comma-separated items, each kind:field[:field...]
 *   dense:UNITS[:ACT][:init=NAME][:init_param=X][:slope=X]
 * e.g. "dense:128:relu,dense:10". The input width comes from the data. */
#ifndef FFN_MODEL_H
#define FFN_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/act.h"
#include "ffn/init.h"
#include "ffn/status.h"

typedef enum { FFN_LAYER_DENSE = 0, FFN_LAYER_KIND_COUNT } ffn_layer_kind;

typedef struct {
    ffn_layer_kind kind;
    size_t units;
    ffn_act act;
    float act_param;  /* leaky_relu slope */
    int init;         /* ffn_init, or -1 for the default for act */
    float init_param; /* uniform range / normal std */
} ffn_layer_spec;

typedef struct {
    ffn_layer_spec spec;
    size_t in, out;
    int frozen;                 /* no gradient computed, sent or applied */
    size_t param_offset;        /* W at params + param_offset, b right after */
    size_t weight_count, bias_count;
    float *W, *b, *dW, *db;     /* views into the flat buffers */
    float *z, *y;               /* activations [max_batch, out]; z == y unless needed */
} ffn_layer;

typedef struct ffn_model ffn_model;

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
float *ffn_model_params(ffn_model *m);
float *ffn_model_grads(ffn_model *m);
char *ffn_model_spec_text(const ffn_model *m); /* malloc'd canonical spec */

/* Draws every layer's weights from (seed, FFN_STREAM_INIT + layer << 8); biases 0. */
void ffn_model_init_params(ffn_model *m, uint64_t seed);
/* Re-draws one layer only (a replaced head). */
void ffn_model_init_layer(ffn_model *m, size_t layer, uint64_t seed);

/* Allocates activations and backward scratch for batches up to max_batch
 * (done once, before the first step). */
ffn_status ffn_model_reserve(ffn_model *m, size_t max_batch);
size_t ffn_model_max_batch(const ffn_model *m);

/* Returns the output [batch, out] (owned by the model, valid until the next forward). */
const float *ffn_model_forward(ffn_model *m, const float *x, size_t batch);

/* Called during backward each time a layer's gradients are final, from the last
 * layer to the first: [offset, offset + count) of the gradient buffer is ready. */
typedef void (*ffn_grad_ready_fn)(void *user, size_t offset, size_t count);

/* dout [batch, out]: gradient of the loss w.r.t. the output (overwritten).
 * Gradients are written (accumulate 0) or added (accumulate 1). Frozen layers
 * get no gradient; no dx is computed below the lowest trainable layer. */
void ffn_model_backward(ffn_model *m, const float *x, size_t batch, float *dout,
                        int accumulate, ffn_grad_ready_fn ready, void *user);

/* Sets/clears the frozen flag of a layer. */
void ffn_model_set_frozen(ffn_model *m, size_t layer, int frozen);

#endif
