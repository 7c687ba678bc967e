/* ffn — optimizers, learning-rate schedules and gradient clipping.
 *
 * The optimizer owns its state as flat buffers parallel to the parameter
 * buffer. A step is taken segment by segment (a layer's weights, its bias) so
 * that frozen segments are skipped and weight decay applies to weights only;
 * every rank applies the same step to the same summed gradients. */
#ifndef FFN_OPTIM_H
#define FFN_OPTIM_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/names.h"

typedef enum {
    FFN_OPT_SGD = 0, /* with optional momentum and Nesterov */
    FFN_OPT_ADAM,    /* weight_decay is L2 (added to the gradient) */
    FFN_OPT_ADAMW,   /* weight_decay is decoupled: w -= lr * wd * w */
    FFN_OPT_RMSPROP,
    FFN_OPT_COUNT
} ffn_opt_kind;

typedef struct {
    ffn_opt_kind kind;
    float momentum;     /* sgd; default 0 */
    int nesterov;       /* sgd; needs momentum > 0 */
    float beta1, beta2; /* adam/adamw; defaults 0.9, 0.999 */
    float eps;          /* adam/adamw 1e-8; rmsprop 1e-8 */
    float alpha;        /* rmsprop smoothing; default 0.99 */
    float weight_decay; /* L2 for sgd/adam/rmsprop, decoupled for adamw */
} ffn_optim_config;

/* The most state buffers any kind holds (adam, adamw: m and v). */
#define FFN_OPTIM_MAX_STATE 2

/* Defaults for kind (adamw: weight_decay 0.01, others 0). */
ffn_optim_config ffn_optim_defaults(ffn_opt_kind kind);
int ffn_opt_from_name(const char *name); /* -1 for unknown */
const char *ffn_opt_name(ffn_opt_kind kind);
extern const ffn_names ffn_opt_names; /* "sgd", "adam", "adamw", "rmsprop" by ffn_opt_kind */

/* The state buffers an optimizer made from cfg holds, each as long as the
 * parameters (sgd: 1 with momentum > 0, else 0; adam, adamw: 2; rmsprop: 1),
 * for memory accounting without creating one; 0 for an unknown kind. */
size_t ffn_optim_state_buffers(const ffn_optim_config *cfg);
/* Name of the i-th state buffer kind may hold ("momentum"; "m", "v";
 * "square_avg"), NULL past its last or for an unknown kind. */
const char *ffn_optim_kind_state_name(ffn_opt_kind kind, size_t i);

typedef struct ffn_optim ffn_optim;

/* n: length of the parameter buffer. NULL on allocation failure. */
ffn_optim *ffn_optim_create(const ffn_optim_config *cfg, size_t n);
void ffn_optim_free(ffn_optim *opt);

/* Call once per step before the segment updates: advances the step count t
 * used by Adam's bias correction. */
void ffn_optim_begin_step(ffn_optim *opt);

/* Update params[offset .. offset+count) from grads at the same offsets.
 * decay: whether weight decay applies to this segment (weights yes, biases no). */
void ffn_optim_update(ffn_optim *opt, float lr, float *params, const float *grads,
                      size_t offset, size_t count, int decay);
/* The same, also writing each updated parameter rounded to bf16 (round to
 * nearest even; the bits, uint16_t) into params_bf16 at the same offsets:
 * Adam and AdamW in the same pass over memory, other kinds right after. */
void ffn_optim_update_bf16(ffn_optim *opt, float lr, float *params, const float *grads, size_t offset,
                           size_t count, int decay, uint16_t *params_bf16);
/* The same with the segment's gradients given apart, as the sum of two
 * parts: grads_a[i] + grads_b[i] (grads_b NULL: grads_a alone), each [count],
 * for params[offset .. offset+count); e.g. two ranks' gradients in node-shared
 * memory, summed as the update reads them. params_bf16 may be NULL. */
void ffn_optim_update_summed(ffn_optim *opt, float lr, float *params, size_t offset, size_t count, int decay,
                             const float *grads_a, const float *grads_b, uint16_t *params_bf16);

/* State access for checkpoints: the number of state buffers (0 ..
 * FFN_OPTIM_MAX_STATE, as ffn_optim_state_buffers), each [n], and the step counter. */
size_t ffn_optim_state_count(const ffn_optim *opt);
float *ffn_optim_state(ffn_optim *opt, size_t i);
const char *ffn_optim_state_name(const ffn_optim *opt, size_t i); /* "m", "v", "momentum", "square_avg" */
uint64_t ffn_optim_step_count(const ffn_optim *opt);
void ffn_optim_set_step_count(ffn_optim *opt, uint64_t t);
const ffn_optim_config *ffn_optim_get_config(const ffn_optim *opt);

/* Learning-rate schedules. The rate at a step is base * warmup(step) * decay(step). */
typedef enum {
    FFN_LR_CONSTANT = 0,
    FFN_LR_STEP,   /* times gamma every step_size steps */
    FFN_LR_COSINE, /* from base to min_lr over total_steps (after warmup) */
    FFN_LR_COUNT
} ffn_lr_kind;

typedef struct {
    ffn_lr_kind kind;
    float base_lr;
    uint64_t warmup_steps; /* linear warmup from base/warmup to base; 0 = none */
    uint64_t step_size;    /* FFN_LR_STEP */
    float gamma;           /* FFN_LR_STEP; default 0.1 */
    uint64_t total_steps;  /* FFN_LR_COSINE */
    float min_lr;          /* FFN_LR_COSINE; default 0 */
} ffn_lr_schedule;

int ffn_lr_from_name(const char *name); /* -1 for unknown */
const char *ffn_lr_name(ffn_lr_kind kind);
extern const ffn_names ffn_lr_names;
/* step counts from 0 (the first update uses step 0). */
float ffn_lr_at(const ffn_lr_schedule *s, uint64_t step);

/* Euclidean norm of g[0..n) (accumulated in double). */
double ffn_grad_norm(const float *g, size_t n);
/* If norm > max_norm > 0, scale g by max_norm / norm. Returns the scale used (1 if none). */
float ffn_clip_scale(double norm, float max_norm);
void ffn_scale(float *g, size_t n, float s);

#endif
