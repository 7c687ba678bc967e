/* ffn — optimizers (sgd, adam, adamw, rmsprop), lr schedules and gradient clipping.
 *
 * Each optimizer kind is one entry of a table (its name, state buffers,
 * default weight decay, config checks and update rule); the code around it
 * is the same for every kind. */
#include "ffn/optim.h"

#include <math.h>
#include <string.h>

#include "act_internal.h"
#include "bf16.h"
#include "gemm.h" /* the rank's thread count (ffn_gemm_threads) */
#include "ffn/mem.h"
#include "ffn/status.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* One optimizer kind: everything the generic code below needs to know of it. */
typedef struct optim_kind optim_kind;

struct ffn_optim {
    ffn_optim_config cfg;
    const optim_kind *kind;
    size_t n;               /* length of params, grads and every state buffer */
    uint64_t t;             /* steps begun so far; the current step is t (from 1) */
    size_t nstate;          /* buffers held: 0 .. FFN_OPTIM_MAX_STATE */
    float *state[FFN_OPTIM_MAX_STATE]; /* [n] each, named kind->state_names[i] */
    /* Adam bias corrections for step t, computed in double once per step:
     * inv_bc1 = 1/(1-b1^t), inv_sqrt_bc2 = 1/sqrt(1-b2^t). */
    double inv_bc1, inv_sqrt_bc2;
};

struct optim_kind {
    const char *name;
    /* The state buffers it may hold, in order (each [n], parallel to the params). */
    const char *state_names[FFN_OPTIM_MAX_STATE];
    /* How many of them (from the first) a config needs; NULL: all named. */
    size_t (*state_used)(const ffn_optim_config *c);
    float default_weight_decay;
    /* Rejects settings that would make a step meaningless (PyTorch raises on the same). */
    ffn_status (*check)(const ffn_optim_config *c);
    /* One segment: w, g [count] and state[i] [count] at the same offset; wd is
     * 0 where decay does not apply. */
    void (*update)(const ffn_optim *opt, float lr, float wd, float *w, const float *g, float *const *state,
                   size_t count);
    /* Optional: the same update from the gradient ga + gb, summed as it is
     * read; kinds without it get the two summed into a chunk first. */
    void (*update_sum)(const ffn_optim *opt, float lr, float wd, float *w, const float *ga, const float *gb,
                       float *const *state, size_t count);
};

/* Bias corrections for step t; t == 0 (no begin_step yet) is treated as t == 1
 * so that a stray update never divides by zero. */
static void compute_bias_corrections(ffn_optim *opt)
{
    double t = opt->t ? (double)opt->t : 1.0;
    double bc1 = 1.0 - pow((double)opt->cfg.beta1, t);
    double bc2 = 1.0 - pow((double)opt->cfg.beta2, t);
    opt->inv_bc1 = 1.0 / bc1;
    opt->inv_sqrt_bc2 = 1.0 / sqrt(bc2);
}

/* ---- the inner loops (optim_loops.inc): one per rule, branch-free ---- */

typedef void (*adam_loop_fn)(float *restrict w, const float *restrict ga, const float *restrict gb,
                             float *restrict m, float *restrict v, size_t count, float b1, float b2, float eps,
                             float l2, float shrink, float step_size, float inv_sqrt_bc2);
typedef struct {
    void (*sgd_plain)(float *restrict w, const float *restrict g, size_t count, float lr, float wd);
    void (*sgd_momentum)(float *restrict w, const float *restrict g, float *restrict buf, size_t count, float lr,
                         float wd, float mu);
    void (*sgd_nesterov)(float *restrict w, const float *restrict g, float *restrict buf, size_t count, float lr,
                         float wd, float mu);
    adam_loop_fn adam, adam_sum;
    void (*rmsprop)(float *restrict w, const float *restrict g, float *restrict sq, size_t count, float lr,
                    float wd, float alpha, float eps);
} optim_loops;

/* Contraction off in every set: a fused multiply-add would round otherwise. */
#if defined(__GNUC__) && !defined(__clang__)
#define OPTIM_NO_FMA __attribute__((optimize("fp-contract=off")))
#else
#pragma clang fp contract(off)
#define OPTIM_NO_FMA
#endif

#define KSUF _base
#define KATTR OPTIM_NO_FMA
#include "optim_loops.inc"
#undef KSUF
#undef KATTR
#if defined(__x86_64__) && defined(__GNUC__)
#define FFN_HAVE_SIMD_LOOPS 1
#define KSUF _avx2
#define KATTR OPTIM_NO_FMA __attribute__((target("avx2")))
#include "optim_loops.inc"
#undef KSUF
#undef KATTR
/* 16 lanes: twice AVX2's square roots and divisions a cycle on a CPU with
 * full-width AVX-512 (Adam on 100 k parameters: 0.025 -> 0.016 ms here). */
#define KSUF _avx512
#ifdef __clang__ /* clang names the width apart from the target */
#define KATTR OPTIM_NO_FMA __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl"), min_vector_width(512)))
#else
#define KATTR OPTIM_NO_FMA __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,prefer-vector-width=512")))
#endif
#include "optim_loops.inc"
#undef KSUF
#undef KATTR
#endif

static const optim_loops *loops(void)
{
#ifdef FFN_HAVE_SIMD_LOOPS
    switch (ffn_simd_level()) {
    case FFN_SIMD_AVX512: return &optim_loops_avx512;
    case FFN_SIMD_AVX2: return &optim_loops_avx2;
    default: break;
    }
#endif
    return &optim_loops_base;
}

/* ---- the kinds: state, checks and the step of each ---- */

/* Plain SGD keeps no state; momentum keeps one buffer. */
static size_t sgd_state_used(const ffn_optim_config *c) { return c->momentum > 0.0f ? 1 : 0; }

static ffn_status sgd_check(const ffn_optim_config *c)
{
    if (!(c->momentum >= 0.0f))
        return ffn_fail(FFN_ERR_ARG, "sgd: momentum must be >= 0, got %g", (double)c->momentum);
    if (c->nesterov && !(c->momentum > 0.0f)) return ffn_fail(FFN_ERR_ARG, "sgd: nesterov needs momentum > 0");
    return FFN_OK;
}

static void sgd_update(const ffn_optim *opt, float lr, float wd, float *w, const float *g, float *const *state,
                       size_t count)
{
    const ffn_optim_config *c = &opt->cfg;
    if (opt->nstate == 0)
        loops()->sgd_plain(w, g, count, lr, wd);
    else if (c->nesterov)
        loops()->sgd_nesterov(w, g, state[0], count, lr, wd, c->momentum);
    else
        loops()->sgd_momentum(w, g, state[0], count, lr, wd, c->momentum);
}

static ffn_status adam_check(const ffn_optim_config *c)
{
    const char *name = ffn_opt_name(c->kind);
    if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f) || !(c->beta2 >= 0.0f && c->beta2 < 1.0f))
        return ffn_fail(FFN_ERR_ARG, "%s: betas must be in [0, 1), got %g, %g", name, (double)c->beta1,
                        (double)c->beta2);
    if (!(c->eps >= 0.0f)) return ffn_fail(FFN_ERR_ARG, "%s: eps must be >= 0, got %g", name, (double)c->eps);
    return FFN_OK;
}

/* decoupled: adamw's w -= lr * wd * w, applied apart from the moments.
 * The gradient is ga, or ga + gb. */
static void adam_step(const ffn_optim *opt, float lr, float wd, float *w, const float *ga, const float *gb,
                      float *const *state, size_t count, int decoupled)
{
    const ffn_optim_config *c = &opt->cfg;
    const float l2 = decoupled ? 0.0f : wd;
    const float shrink = decoupled ? (float)(1.0 - (double)lr * wd) : 1.0f;
    const float step_size = (float)((double)lr * opt->inv_bc1);
    const adam_loop_fn loop = gb ? loops()->adam_sum : loops()->adam;
    loop(w, ga, gb, state[0], state[1], count, c->beta1, c->beta2, c->eps, l2, shrink, step_size,
         (float)opt->inv_sqrt_bc2);
}

static void adam_update_sum(const ffn_optim *opt, float lr, float wd, float *w, const float *ga, const float *gb,
                            float *const *state, size_t count)
{
    adam_step(opt, lr, wd, w, ga, gb, state, count, 0);
}

static void adamw_update_sum(const ffn_optim *opt, float lr, float wd, float *w, const float *ga, const float *gb,
                             float *const *state, size_t count)
{
    adam_step(opt, lr, wd, w, ga, gb, state, count, 1);
}

static void adam_update(const ffn_optim *opt, float lr, float wd, float *w, const float *g, float *const *state,
                        size_t count)
{
    adam_step(opt, lr, wd, w, g, NULL, state, count, 0);
}

static void adamw_update(const ffn_optim *opt, float lr, float wd, float *w, const float *g, float *const *state,
                         size_t count)
{
    adam_step(opt, lr, wd, w, g, NULL, state, count, 1);
}

static ffn_status rmsprop_check(const ffn_optim_config *c)
{
    if (!(c->alpha >= 0.0f && c->alpha <= 1.0f))
        return ffn_fail(FFN_ERR_ARG, "rmsprop: alpha must be in [0, 1], got %g", (double)c->alpha);
    if (!(c->eps >= 0.0f)) return ffn_fail(FFN_ERR_ARG, "rmsprop: eps must be >= 0, got %g", (double)c->eps);
    return FFN_OK;
}

static void rmsprop_update(const ffn_optim *opt, float lr, float wd, float *w, const float *g,
                           float *const *state, size_t count)
{
    const ffn_optim_config *c = &opt->cfg;
    loops()->rmsprop(w, g, state[0], count, lr, wd, c->alpha, c->eps);
}

/* The registry: a new optimizer is its functions above plus one line here
 * (and its value in ffn_opt_kind). */
static const optim_kind kinds[FFN_OPT_COUNT] = {
    [FFN_OPT_SGD] = {"sgd", {"momentum"}, sgd_state_used, 0.0f, sgd_check, sgd_update, NULL},
    [FFN_OPT_ADAM] = {"adam", {"m", "v"}, NULL, 0.0f, adam_check, adam_update, adam_update_sum},
    [FFN_OPT_ADAMW] = {"adamw", {"m", "v"}, NULL, 0.01f, adam_check, adamw_update, adamw_update_sum},
    [FFN_OPT_RMSPROP] = {"rmsprop", {"square_avg"}, NULL, 0.0f, rmsprop_check, rmsprop_update, NULL},
};

const ffn_names ffn_opt_names = FFN_NAMES_OF_FIELD(kinds, name);

static const optim_kind *kind_of(ffn_opt_kind kind)
{
    return (unsigned)kind < FFN_OPT_COUNT ? &kinds[kind] : NULL;
}

ffn_optim_config ffn_optim_defaults(ffn_opt_kind kind)
{
    ffn_optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    /* Every field gets its documented default whatever the kind, so switching
     * kind on a config later still leaves sane values behind. */
    c.momentum = 0.0f;
    c.nesterov = 0;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.alpha = 0.99f;
    c.weight_decay = kind_of(kind) ? kind_of(kind)->default_weight_decay : 0.0f;
    return c;
}

int ffn_opt_from_name(const char *name) { return ffn_names_find(&ffn_opt_names, name); }

const char *ffn_opt_name(ffn_opt_kind kind) { return ffn_names_name(&ffn_opt_names, (int)kind); }

const char *ffn_optim_kind_state_name(ffn_opt_kind kind, size_t i)
{
    const optim_kind *k = kind_of(kind);
    return k && i < FFN_OPTIM_MAX_STATE ? k->state_names[i] : NULL;
}

size_t ffn_optim_state_buffers(const ffn_optim_config *cfg)
{
    const optim_kind *k = cfg ? kind_of(cfg->kind) : NULL;
    if (!k) return 0;
    if (k->state_used) return k->state_used(cfg);
    size_t n = 0;
    while (n < FFN_OPTIM_MAX_STATE && k->state_names[n]) n++;
    return n;
}

static ffn_status check_config(const ffn_optim_config *c)
{
    const optim_kind *k = kind_of(c->kind);
    if (!k) return ffn_fail(FFN_ERR_ARG, "optimizer: unknown kind %d", (int)c->kind);
    if (!(c->weight_decay >= 0.0f))
        return ffn_fail(FFN_ERR_ARG, "optimizer: weight_decay must be >= 0, got %g", (double)c->weight_decay);
    return k->check ? k->check(c) : FFN_OK;
}

ffn_optim *ffn_optim_create(const ffn_optim_config *cfg, size_t n)
{
    if (!cfg) {
        ffn_fail(FFN_ERR_ARG, "optimizer: no config");
        return NULL;
    }
    if (check_config(cfg) != FFN_OK) return NULL;
    ffn_optim *opt = ffn_alloc(1, sizeof *opt);
    if (!opt) return NULL;
    opt->cfg = *cfg;
    opt->kind = kind_of(cfg->kind);
    opt->n = n;
    opt->nstate = ffn_optim_state_buffers(cfg);
    for (size_t i = 0; i < opt->nstate; i++) {
        /* Zeroed: a zero momentum buffer gives PyTorch's buf = g on the first step.
         * Page-mapped: the state of parameters that never train (a frozen base)
         * is never written, so it takes no memory. */
        opt->state[i] = ffn_alloc_pages(n * sizeof(float));
        if (!opt->state[i]) {
            ffn_optim_free(opt);
            return NULL;
        }
    }
    compute_bias_corrections(opt);
    return opt;
}

void ffn_optim_free(ffn_optim *opt)
{
    if (!opt) return;
    for (size_t i = 0; i < FFN_OPTIM_MAX_STATE; i++) ffn_free_pages(opt->state[i], opt->n * sizeof(float));
    ffn_free(opt);
}

void ffn_optim_begin_step(ffn_optim *opt)
{
    opt->t++;
    compute_bias_corrections(opt);
}

void ffn_optim_update_bf16(ffn_optim *opt, float lr, float *params, const float *grads, size_t offset,
                           size_t count, int decay, uint16_t *params_bf16)
{
    ffn_optim_update_summed(opt, lr, params, offset, count, decay, grads + offset, NULL, params_bf16);
}

void ffn_optim_update_summed(ffn_optim *opt, float lr, float *params, size_t offset, size_t count, int decay,
                             const float *grads_a, const float *grads_b, uint16_t *params_bf16)
{
    if (count == 0) return;
    if (offset > opt->n || count > opt->n - offset) {
        /* A caller bug; touching memory past the state buffers would be worse. */
        ffn_fail(FFN_ERR_ARG, "optimizer: segment [%zu, +%zu) outside buffer of %zu",
                 offset, count, opt->n);
        return;
    }
    float *state[FFN_OPTIM_MAX_STATE] = {NULL};
    for (size_t i = 0; i < opt->nstate; i++) state[i] = opt->state[i] + offset;
    const float wd = decay ? opt->cfg.weight_decay : 0.0f;
    float *w = params + offset;
    ffn_bf16 *w16 = params_bf16 ? (ffn_bf16 *)params_bf16 + offset : NULL;
    /* A chunk at a time (with a bf16 copy to write, or two parts to sum
     * without a loop that sums them): the chunk's update, then its copy
     * converted while it is in cache. Measured: an Adam loop that also rounds
     * to bf16 is compute-bound (0.060 against 0.043 ms for 100 k parameters in
     * L2) and gains nothing from memory (5.1 against 5.3 ms for 8.4 M). */
    enum { CHUNK = 2048 }; /* floats: a chunk's weights, gradients and state stay in L1/L2 */
    const int sum_fused = grads_b && opt->kind->update_sum;
    /* The rank's threads (ffn_gemm_set_threads) share a large update by
     * chunks: it is memory traffic the products' threads would otherwise
     * wait on, one thread moving it (the large FFN at 2 threads: 5.4 of a
     * 34 ms step). Each element's update reads and writes only its own
     * index, so any split gives the same bits. */
    const int threads = count >= 16 * CHUNK ? ffn_gemm_threads() : 1;
    const size_t chunk = w16 || (grads_b && !sum_fused) || threads > 1 ? CHUNK : count;
    const size_t chunks = (count + chunk - 1) / chunk;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
#endif
    for (size_t c = 0; c < chunks; c++) {
        const size_t at = c * chunk, n = count - at < chunk ? count - at : chunk;
        float sum[CHUNK];
        float *chunk_state[FFN_OPTIM_MAX_STATE] = {NULL};
        for (size_t i = 0; i < opt->nstate; i++) chunk_state[i] = state[i] + at;
        if (sum_fused) {
            opt->kind->update_sum(opt, lr, wd, w + at, grads_a + at, grads_b + at, chunk_state, n);
        } else if (grads_b) {
            for (size_t i = 0; i < n; i++) sum[i] = grads_a[at + i] + grads_b[at + i];
            opt->kind->update(opt, lr, wd, w + at, sum, chunk_state, n);
        } else {
            opt->kind->update(opt, lr, wd, w + at, grads_a + at, chunk_state, n);
        }
        if (w16) ffn_bf16_from_floats(w16 + at, w + at, n);
    }
}

void ffn_optim_update(ffn_optim *opt, float lr, float *params, const float *grads,
                      size_t offset, size_t count, int decay)
{
    ffn_optim_update_summed(opt, lr, params, offset, count, decay, grads + offset, NULL, NULL);
}

size_t ffn_optim_state_count(const ffn_optim *opt) { return opt->nstate; }

float *ffn_optim_state(ffn_optim *opt, size_t i) { return i < opt->nstate ? opt->state[i] : NULL; }

const char *ffn_optim_state_name(const ffn_optim *opt, size_t i)
{
    return i < opt->nstate ? opt->kind->state_names[i] : NULL;
}

uint64_t ffn_optim_step_count(const ffn_optim *opt) { return opt->t; }

void ffn_optim_set_step_count(ffn_optim *opt, uint64_t t)
{
    opt->t = t;
    compute_bias_corrections(opt);
}

const ffn_optim_config *ffn_optim_get_config(const ffn_optim *opt) { return &opt->cfg; }

/* ---- learning-rate schedules ---- */

static const char *const lr_names[FFN_LR_COUNT] = {"constant", "step", "cosine"};

const ffn_names ffn_lr_names = FFN_NAMES_OF_ARRAY(lr_names);

int ffn_lr_from_name(const char *name) { return ffn_names_find(&ffn_lr_names, name); }

const char *ffn_lr_name(ffn_lr_kind kind) { return ffn_names_name(&ffn_lr_names, (int)kind); }

/* The rate at `step` (counting from 0), with W = warmup_steps:
 *
 *   warmup(step) = (step + 1) / W      for step < W   (so step W-1 reaches base)
 *                = 1                   otherwise, and always when W == 0
 *   s            = step - W            for step >= W, else 0 (decay holds during warmup)
 *   decayed(s)   = base                                            constant
 *                = base * gamma^floor(s / step_size)               step (step_size 0: no decay)
 *                = min_lr + (base - min_lr) * 0.5 * (1 + cos(pi * min(s, T) / T))
 *                                                                  cosine, T = total_steps - W
 *                  (T = 0, i.e. total_steps <= W: decay is already over, decayed = min_lr)
 *   lr(step)     = warmup(step) * decayed(s)
 *
 * So cosine runs from base at step W to min_lr at step total_steps and stays there. */
float ffn_lr_at(const ffn_lr_schedule *sc, uint64_t step)
{
    const uint64_t w = sc->warmup_steps;
    const double base = sc->base_lr;
    double warm = 1.0;
    uint64_t s = 0;
    if (step < w)
        warm = (double)(step + 1) / (double)w;
    else
        s = step - w;

    double lr = base;
    switch (sc->kind) {
    case FFN_LR_STEP:
        if (sc->step_size > 0) lr = base * pow((double)sc->gamma, (double)(s / sc->step_size));
        break;
    case FFN_LR_COSINE: {
        const uint64_t T = sc->total_steps > w ? sc->total_steps - w : 0;
        const double min_lr = sc->min_lr;
        const double frac = T == 0 ? 1.0 : (double)(s < T ? s : T) / (double)T;
        lr = min_lr + (base - min_lr) * 0.5 * (1.0 + cos(M_PI * frac));
        break;
    }
    case FFN_LR_CONSTANT:
    default:
        break;
    }
    return (float)(warm * lr);
}

/* ---- clipping ---- */

double ffn_grad_norm(const float *g, size_t n)
{
    /* Eight independent double accumulators: precise, deterministic (fixed
     * order), and free of the serial dependency that stalls a single sum. */
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t k = 0; k < 8; k++) acc[k] += (double)g[i + k] * (double)g[i + k];
    for (; i < n; i++) acc[0] += (double)g[i] * (double)g[i];
    double sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    return sqrt(sum);
}

float ffn_clip_scale(double norm, float max_norm)
{
    /* NaN norms compare false and give 1: clipping cannot repair a NaN, and the
     * caller's finiteness check is the place to catch it. */
    if (max_norm > 0.0f && norm > (double)max_norm) return (float)((double)max_norm / norm);
    return 1.0f;
}

void ffn_scale(float *g, size_t n, float s)
{
    for (size_t i = 0; i < n; i++) g[i] *= s;
}
