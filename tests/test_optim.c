/* Tests for the optimizers against PyTorch's update rules, written out here in
 * double (torch.optim.SGD / Adam / AdamW / RMSprop, dampening 0, not centered,
 * no amsgrad), plus lr schedules, clipping and state/resume. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/config.h"
#include "ffn/optim.h"
#include "check.h"
#include "../src/gemm.h" /* ffn_gemm_set_threads: the rank's threads */

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* Five parameters: a "weight" segment [0, 3) with weight decay and a "bias"
 * segment [3, 5) without, three steps with these gradients and rates. */
enum { NP = 5, NW = 3, STEPS = 3 };
static const double w_init[NP] = { 0.5, -1.0, 2.0, 0.25, -0.125 };
static const double grads[STEPS][NP] = {
    { 0.1, -0.2, 0.3, 0.05, -0.4 },
    { -0.05, 0.4, 0.1, 0.2, 0.0 },
    { 0.2, 0.0, -0.3, -0.1, 0.3 },
};
static const double rates[STEPS] = { 0.1, 0.05, 0.02 };

/* ---- the reference: PyTorch's step for one parameter, in double */

typedef struct {
    double buf, m, v, sq; /* momentum_buffer / exp_avg / exp_avg_sq / square_avg */
} ref_state;

/* One step t (from 1) for parameter w with gradient g; decay: whether weight
 * decay applies to this parameter (PyTorch: a param group with wd = 0). */
static double ref_step(const ffn_optim_config *c, double w, double g, double lr, int t,
                       int decay, ref_state *s)
{
    const double wd = decay ? c->weight_decay : 0.0;
    switch (c->kind) {
    case FFN_OPT_SGD: {
        /* d_p = g + wd w; buf = d_p (t == 1) else mu buf + d_p;
         * d_p = d_p + mu buf (nesterov) else buf; w -= lr d_p */
        double d = g + wd * w;
        if (c->momentum != 0) {
            s->buf = t == 1 ? d : c->momentum * s->buf + d;
            d = c->nesterov ? d + c->momentum * s->buf : s->buf;
        }
        return w - lr * d;
    }
    case FFN_OPT_ADAM:
    case FFN_OPT_ADAMW: {
        if (c->kind == FFN_OPT_ADAMW)
            w *= 1 - lr * wd; /* decoupled: param.mul_(1 - lr * wd) */
        else
            g += wd * w; /* L2: grad.add(param, alpha=wd) */
        const double b1 = c->beta1, b2 = c->beta2;
        s->m = b1 * s->m + (1 - b1) * g;
        s->v = b2 * s->v + (1 - b2) * g * g;
        const double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
        const double denom = sqrt(s->v) / sqrt(bc2) + c->eps;
        return w - (lr / bc1) * s->m / denom;
    }
    case FFN_OPT_RMSPROP: {
        g += wd * w;
        s->sq = c->alpha * s->sq + (1 - c->alpha) * g * g;
        return w - lr * g / (sqrt(s->sq) + c->eps);
    }
    default: return NAN;
    }
}

/* Runs STEPS steps of cfg on the library and on the reference; every
 * parameter after every step must agree within 2e-6 absolute (the float
 * update of O(1) values over three steps rounds at ~1e-7; any departure from
 * the rule -- a missing bias correction, decay on the bias, wrong Nesterov
 * term -- moves some parameter by > 1e-4 here). Returns the library's final
 * parameters in out. */
static void run_against_reference(const ffn_optim_config *cfg, const char *what, float *out)
{
    ffn_optim *opt = ffn_optim_create(cfg, NP);
    CHECK_MSG(opt != NULL, "%s: create failed", what);
    if (!opt) return;
    float w[NP], g[NP];
    double ref[NP];
    ref_state st[NP];
    memset(st, 0, sizeof st);
    for (int i = 0; i < NP; i++) w[i] = (float)w_init[i], ref[i] = (float)w_init[i];
    for (int t = 1; t <= STEPS; t++) {
        const float lr = (float)rates[t - 1];
        for (int i = 0; i < NP; i++) g[i] = (float)grads[t - 1][i];
        ffn_optim_begin_step(opt);
        CHECK(ffn_optim_step_count(opt) == (uint64_t)t);
        ffn_optim_update(opt, lr, w, g, 0, NW, 1);       /* weights: decay */
        ffn_optim_update(opt, lr, w, g, NW, NP - NW, 0); /* bias: no decay */
        for (int i = 0; i < NP; i++) {
            ref[i] = ref_step(cfg, ref[i], g[i], lr, t, i < NW, &st[i]);
            CHECK_MSG(fabs(w[i] - ref[i]) <= 2e-6, "%s step %d param %d: %.9g, reference %.9g",
                      what, t, i, (double)w[i], ref[i]);
        }
    }
    memcpy(out, w, sizeof w);
    ffn_optim_free(opt);
}

static void test_rules(void)
{
    float w[NP];
    ffn_optim_config c = ffn_optim_defaults(FFN_OPT_SGD);
    run_against_reference(&c, "sgd", w);
    /* By hand: w0 = 0.5 - 0.1*0.1 - 0.05*(-0.05) - 0.02*0.2 = 0.4885 */
    CHECK_NEAR(w[0], 0.4885, 1e-7);

    c.weight_decay = 0.1f;
    run_against_reference(&c, "sgd+wd", w);
    /* Bias segment: no decay, so the same as plain sgd:
     * b1 = -0.125 + 0.1*0.4 - 0 - 0.02*0.3 = -0.091 */
    CHECK_NEAR(w[4], -0.091, 1e-7);

    c = ffn_optim_defaults(FFN_OPT_SGD);
    c.momentum = 0.9f;
    run_against_reference(&c, "sgd+momentum", w);
    /* By hand, param 0: b = 0.1, w = 0.49; b = 0.09 - 0.05 = 0.04, w = 0.488;
     * b = 0.036 + 0.2 = 0.236, w = 0.488 - 0.00472 = 0.48328 */
    CHECK_NEAR(w[0], 0.48328, 1e-6);
    c.weight_decay = 0.1f;
    run_against_reference(&c, "sgd+momentum+wd", w);
    c.nesterov = 1;
    run_against_reference(&c, "sgd+nesterov+wd", w);
    c.weight_decay = 0.0f;
    run_against_reference(&c, "sgd+nesterov", w);
    /* By hand, param 0: b = 0.1, d = 0.1 + 0.09 = 0.19, w = 0.481;
     * b = 0.04, d = -0.05 + 0.036 = -0.014, w = 0.4817;
     * b = 0.236, d = 0.2 + 0.2124 = 0.4124, w = 0.4817 - 0.008248 = 0.473452 */
    CHECK_NEAR(w[0], 0.473452, 1e-6);

    c = ffn_optim_defaults(FFN_OPT_ADAM);
    run_against_reference(&c, "adam", w);
    /* Step 1 of Adam moves every parameter by lr * g / (|g| + eps) ~ lr sign(g). */
    {
        ffn_optim *o = ffn_optim_create(&c, NP);
        float w1[NP], g1[NP];
        for (int i = 0; i < NP; i++) w1[i] = (float)w_init[i], g1[i] = (float)grads[0][i];
        ffn_optim_begin_step(o);
        ffn_optim_update(o, 0.1f, w1, g1, 0, NP, 1);
        for (int i = 0; i < NP; i++)
            CHECK_NEAR(w1[i], (float)w_init[i] - 0.1 * (grads[0][i] > 0 ? 1 : -1), 1e-6);
        ffn_optim_free(o);
    }
    c.beta1 = 0.8f;
    c.beta2 = 0.95f;
    c.eps = 1e-3f; /* large enough that its place in the denominator shows */
    run_against_reference(&c, "adam(0.8,0.95,1e-3)", w);
    c.weight_decay = 0.1f;
    run_against_reference(&c, "adam+l2", w);

    c = ffn_optim_defaults(FFN_OPT_ADAMW);
    CHECK(c.weight_decay == 0.01f);
    run_against_reference(&c, "adamw", w);
    c.weight_decay = 0.5f;
    c.beta1 = 0.8f;
    c.beta2 = 0.95f;
    c.eps = 1e-3f;
    run_against_reference(&c, "adamw(wd 0.5)", w);

    c = ffn_optim_defaults(FFN_OPT_RMSPROP);
    run_against_reference(&c, "rmsprop", w);
    /* Step 1 by hand: sq = 0.01 g^2, w -= lr g / (0.1 |g|) = lr * 10 sign(g):
     * the first param after step 1 is 0.5 - 1 = -0.5 (checked in the loop). */
    c.alpha = 0.9f;
    c.eps = 1e-2f;
    c.weight_decay = 0.1f;
    run_against_reference(&c, "rmsprop(0.9,1e-2)+wd", w);
}

static void test_defaults_and_config(void)
{
    ffn_optim_config c = ffn_optim_defaults(FFN_OPT_ADAM);
    CHECK(c.kind == FFN_OPT_ADAM);
    CHECK(c.beta1 == 0.9f && c.beta2 == 0.999f && c.eps == 1e-8f);
    CHECK(c.weight_decay == 0.0f);
    c = ffn_optim_defaults(FFN_OPT_RMSPROP);
    CHECK(c.alpha == 0.99f && c.eps == 1e-8f);
    c = ffn_optim_defaults(FFN_OPT_SGD);
    CHECK(c.momentum == 0.0f && c.nesterov == 0 && c.weight_decay == 0.0f);

    /* Settings PyTorch rejects are rejected. */
    c.nesterov = 1;
    CHECK(ffn_optim_create(&c, 4) == NULL);
    c = ffn_optim_defaults(FFN_OPT_ADAMW);
    c.weight_decay = -0.1f;
    CHECK(ffn_optim_create(&c, 4) == NULL);
    c = ffn_optim_defaults(FFN_OPT_ADAM);
    c.beta2 = 1.0f;
    CHECK(ffn_optim_create(&c, 4) == NULL);
    CHECK(ffn_optim_create(NULL, 4) == NULL);

    static const char *const names[FFN_OPT_COUNT] = { "sgd", "adam", "adamw", "rmsprop" };
    for (int k = 0; k < FFN_OPT_COUNT; k++) {
        CHECK(strcmp(ffn_opt_name((ffn_opt_kind)k), names[k]) == 0);
        CHECK(ffn_opt_from_name(names[k]) == k);
    }
    CHECK(ffn_opt_from_name("lbfgs") == -1);
    CHECK(ffn_opt_from_name(NULL) == -1);
    static const char *const lr_names[FFN_LR_COUNT] = { "constant", "step", "cosine" };
    for (int k = 0; k < FFN_LR_COUNT; k++) {
        CHECK(strcmp(ffn_lr_name((ffn_lr_kind)k), lr_names[k]) == 0);
        CHECK(ffn_lr_from_name(lr_names[k]) == k);
    }
    CHECK(ffn_lr_from_name("exponential") == -1);
}

/* State buffers: names, contents after a step, and resume from them. */
static void test_state_and_resume(void)
{
    const struct {
        ffn_opt_kind kind;
        float momentum;
        size_t count;
        const char *names[2];
    } cases[] = {
        { FFN_OPT_SGD, 0.0f, 0, { NULL, NULL } },
        { FFN_OPT_SGD, 0.9f, 1, { "momentum", NULL } },
        { FFN_OPT_ADAM, 0.0f, 2, { "m", "v" } },
        { FFN_OPT_ADAMW, 0.0f, 2, { "m", "v" } },
        { FFN_OPT_RMSPROP, 0.0f, 1, { "square_avg", NULL } },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ffn_optim_config c = ffn_optim_defaults(cases[k].kind);
        c.momentum = cases[k].momentum;
        ffn_optim *a = ffn_optim_create(&c, NP);
        CHECK(a != NULL);
        if (!a) continue;
        CHECK(ffn_optim_state_count(a) == cases[k].count);
        for (size_t i = 0; i < cases[k].count; i++) {
            CHECK(strcmp(ffn_optim_state_name(a, i), cases[k].names[i]) == 0);
            for (size_t j = 0; j < NP; j++) CHECK(ffn_optim_state(a, i)[j] == 0.0f);
        }
        CHECK(ffn_optim_state(a, cases[k].count) == NULL);
        CHECK(ffn_optim_get_config(a)->kind == cases[k].kind);

        /* Uninterrupted: three steps on a. Interrupted: one step on a copy,
         * then its state and step count moved into a fresh optimizer, two
         * more steps. Both must give the same bits. */
        float wa[NP], wb[NP], g[NP];
        for (int i = 0; i < NP; i++) wa[i] = wb[i] = (float)w_init[i];
        ffn_optim *b = ffn_optim_create(&c, NP);
        for (int t = 0; t < STEPS; t++) {
            for (int i = 0; i < NP; i++) g[i] = (float)grads[t][i];
            ffn_optim_begin_step(a);
            ffn_optim_update(a, (float)rates[t], wa, g, 0, NP, 1);
            if (t == 1) { /* resume b into a fresh optimizer before step 2 */
                ffn_optim *fresh = ffn_optim_create(&c, NP);
                for (size_t i = 0; i < ffn_optim_state_count(b); i++)
                    memcpy(ffn_optim_state(fresh, i), ffn_optim_state(b, i), NP * sizeof(float));
                ffn_optim_set_step_count(fresh, ffn_optim_step_count(b));
                ffn_optim_free(b);
                b = fresh;
            }
            ffn_optim_begin_step(b);
            ffn_optim_update(b, (float)rates[t], wb, g, 0, NP, 1);
        }
        CHECK_MSG(memcmp(wa, wb, sizeof wa) == 0, "%s: resumed run differs",
                  ffn_opt_name(cases[k].kind));
        CHECK(ffn_optim_step_count(b) == STEPS);
        /* After step 1 the sgd momentum buffer is the gradient itself. */
        if (cases[k].kind == FFN_OPT_SGD && cases[k].count == 1) {
            ffn_optim *o = ffn_optim_create(&c, NP);
            float w[NP];
            for (int i = 0; i < NP; i++) w[i] = (float)w_init[i], g[i] = (float)grads[0][i];
            ffn_optim_begin_step(o);
            ffn_optim_update(o, 0.1f, w, g, 0, NP, 1);
            CHECK(memcmp(ffn_optim_state(o, 0), g, sizeof g) == 0);
            ffn_optim_free(o);
        }
        ffn_optim_free(a);
        ffn_optim_free(b);
    }

    /* Segments update only their own range; a segment outside the buffer is
     * refused without touching anything. */
    ffn_optim_config c = ffn_optim_defaults(FFN_OPT_ADAM);
    ffn_optim *o = ffn_optim_create(&c, NP);
    float w[NP], g[NP] = { 1, 1, 1, 1, 1 };
    for (int i = 0; i < NP; i++) w[i] = (float)w_init[i];
    ffn_optim_begin_step(o);
    ffn_optim_update(o, 0.1f, w, g, 1, 2, 1);
    CHECK(w[0] == (float)w_init[0] && w[3] == (float)w_init[3] && w[4] == (float)w_init[4]);
    CHECK(w[1] != (float)w_init[1] && w[2] != (float)w_init[2]);
    CHECK(ffn_optim_state(o, 0)[0] == 0.0f && ffn_optim_state(o, 0)[3] == 0.0f);
    float before[NP];
    memcpy(before, w, sizeof w);
    ffn_optim_update(o, 0.1f, w, g, 4, 2, 1);
    CHECK(memcmp(before, w, sizeof w) == 0);
    ffn_optim_free(o);
}

static void test_schedules(void)
{
    /* Rates are floats: 1e-7 absolute on rates <= 1. */
    const double tol = 1e-7;
    ffn_lr_schedule s = { .kind = FFN_LR_CONSTANT, .base_lr = 0.1f };
    CHECK_NEAR(ffn_lr_at(&s, 0), 0.1, tol);
    CHECK_NEAR(ffn_lr_at(&s, 12345), 0.1, tol);

    /* step: times gamma every step_size steps. */
    s = (ffn_lr_schedule){ .kind = FFN_LR_STEP, .base_lr = 1.0f, .step_size = 10, .gamma = 0.5f };
    CHECK_NEAR(ffn_lr_at(&s, 0), 1.0, tol);
    CHECK_NEAR(ffn_lr_at(&s, 9), 1.0, tol);
    CHECK_NEAR(ffn_lr_at(&s, 10), 0.5, tol);
    CHECK_NEAR(ffn_lr_at(&s, 25), 0.25, tol);
    CHECK_NEAR(ffn_lr_at(&s, 30), 0.125, tol);

    /* cosine from base (step 0) to min_lr (step total) and flat after. */
    s = (ffn_lr_schedule){ .kind = FFN_LR_COSINE, .base_lr = 1.0f, .total_steps = 100,
                           .min_lr = 0.1f };
    CHECK_NEAR(ffn_lr_at(&s, 0), 1.0, tol);
    CHECK_NEAR(ffn_lr_at(&s, 25), 0.1 + 0.9 * 0.5 * (1 + cos(M_PI / 4)), tol);
    CHECK_NEAR(ffn_lr_at(&s, 50), 0.55, tol);
    CHECK_NEAR(ffn_lr_at(&s, 75), 0.1 + 0.9 * 0.5 * (1 + cos(3 * M_PI / 4)), tol);
    CHECK_NEAR(ffn_lr_at(&s, 100), 0.1, tol);
    CHECK_NEAR(ffn_lr_at(&s, 1000), 0.1, tol);
    s.min_lr = 0.0f;
    CHECK_NEAR(ffn_lr_at(&s, 50), 0.5, tol);
    CHECK_NEAR(ffn_lr_at(&s, 100), 0.0, tol);

    /* Linear warmup: (step + 1) / W of the rate, reaching base at step W-1. */
    s = (ffn_lr_schedule){ .kind = FFN_LR_CONSTANT, .base_lr = 1.0f, .warmup_steps = 4 };
    CHECK_NEAR(ffn_lr_at(&s, 0), 0.25, tol);
    CHECK_NEAR(ffn_lr_at(&s, 1), 0.5, tol);
    CHECK_NEAR(ffn_lr_at(&s, 3), 1.0, tol);
    CHECK_NEAR(ffn_lr_at(&s, 4), 1.0, tol);
    /* Warmup then cosine: the decay starts after warmup. */
    s = (ffn_lr_schedule){ .kind = FFN_LR_COSINE, .base_lr = 2.0f, .warmup_steps = 10,
                           .total_steps = 110, .min_lr = 0.0f };
    CHECK_NEAR(ffn_lr_at(&s, 0), 0.2, tol);
    CHECK_NEAR(ffn_lr_at(&s, 4), 1.0, tol);
    CHECK_NEAR(ffn_lr_at(&s, 9), 2.0, tol);
    CHECK_NEAR(ffn_lr_at(&s, 10), 2.0, tol);
    CHECK_NEAR(ffn_lr_at(&s, 60), 1.0, tol);
    CHECK_NEAR(ffn_lr_at(&s, 110), 0.0, tol);
    /* Warmup then step decay, counted from the end of warmup. */
    s = (ffn_lr_schedule){ .kind = FFN_LR_STEP, .base_lr = 1.0f, .warmup_steps = 5,
                           .step_size = 10, .gamma = 0.1f };
    CHECK_NEAR(ffn_lr_at(&s, 2), 0.6, tol);
    CHECK_NEAR(ffn_lr_at(&s, 14), 1.0, tol);
    CHECK_NEAR(ffn_lr_at(&s, 15), 0.1, tol);
    CHECK_NEAR(ffn_lr_at(&s, 25), 0.01, tol);
}

static void test_clipping(void)
{
    float g[2] = { 3, 4 };
    CHECK_NEAR(ffn_grad_norm(g, 2), 5.0, 1e-12);
    CHECK(ffn_grad_norm(g, 0) == 0.0);
    /* 1001 values (not a multiple of the 8-way unrolling): sqrt(1001 / 4). */
    enum { N = 1001 };
    float h[N];
    for (int i = 0; i < N; i++) h[i] = i % 2 ? 0.5f : -0.5f;
    CHECK_NEAR(ffn_grad_norm(h, N), sqrt(N / 4.0), 1e-12);
    /* Accumulated in double: 1e6 ones sum exactly (a float sum would drift). */
    static float ones[1000000];
    for (int i = 0; i < 1000000; i++) ones[i] = 1.0f + (i % 3 == 0 ? 1e-3f : 0.0f);
    double want = 0;
    for (int i = 0; i < 1000000; i++) want += (double)ones[i] * ones[i];
    CHECK_NEAR(ffn_grad_norm(ones, 1000000), sqrt(want), 1e-9 * sqrt(want));

    CHECK_NEAR(ffn_clip_scale(10.0, 5.0f), 0.5, 1e-7);
    CHECK(ffn_clip_scale(3.0, 5.0f) == 1.0f);
    CHECK(ffn_clip_scale(5.0, 5.0f) == 1.0f);
    CHECK(ffn_clip_scale(10.0, 0.0f) == 1.0f); /* max_norm 0: no clipping */
    CHECK(ffn_clip_scale(NAN, 5.0f) == 1.0f);

    float s[3] = { 1, -2, 4 };
    ffn_scale(s, 3, 0.5f);
    CHECK(s[0] == 0.5f && s[1] == -1.0f && s[2] == 2.0f);
    /* Clipping a vector with the returned scale gives norm max_norm (1e-6 rel). */
    float v[2] = { 30, 40 };
    ffn_scale(v, 2, ffn_clip_scale(ffn_grad_norm(v, 2), 1.0f));
    CHECK_NEAR(ffn_grad_norm(v, 2), 1.0, 1e-6);
}

/* The update loops run on AVX-512 or AVX2 where the CPU has them. Without FMA
 * every element must round exactly as the same float expression does here
 * (this file is built for plain x86-64): bitwise, over enough elements to
 * cover the vector body and its tail, for Adam (L2 and decoupled) and RMSprop.
 * main runs this file again on each lower set (FFN_KERNELS). */
static void test_vector_loops_bitwise(void)
{
    enum { N = 1000 + 7 };
    static float w[N], g[N], wref[N], m[N], v[N], sq[N];
    for (int kind = 0; kind < 3; kind++) {
        ffn_optim_config c = ffn_optim_defaults(kind == 2 ? FFN_OPT_RMSPROP : kind ? FFN_OPT_ADAMW : FFN_OPT_ADAM);
        c.weight_decay = 0.01f;
        ffn_optim *opt = ffn_optim_create(&c, N);
        CHECK(opt != NULL);
        memset(m, 0, sizeof m);
        memset(v, 0, sizeof v);
        memset(sq, 0, sizeof sq);
        for (int i = 0; i < N; i++) w[i] = wref[i] = 0.001f * (float)((i * 37) % 101 - 50);
        const float lr = 0.003f;
        int mismatches = 0;
        for (int t = 1; t <= 3; t++) {
            for (int i = 0; i < N; i++) g[i] = 0.01f * (float)((i * 13 + t * 7) % 29 - 14) + 1e-4f * (float)t;
            ffn_optim_begin_step(opt);
            ffn_optim_update(opt, lr, w, g, 0, N, 1);
            if (kind < 2) {
                const float b1 = c.beta1, b2 = c.beta2, eps = c.eps;
                const float l2 = kind ? 0.0f : c.weight_decay;
                const float shrink = kind ? (float)(1.0 - (double)lr * c.weight_decay) : 1.0f;
                const float step_size = (float)((double)lr * (1.0 / (1.0 - pow((double)b1, t))));
                const float inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow((double)b2, t)));
                for (int i = 0; i < N; i++) {
                    float gi = g[i] + l2 * wref[i];
                    m[i] = b1 * m[i] + (1.0f - b1) * gi;
                    v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
                    wref[i] = wref[i] * shrink - step_size * m[i] / (sqrtf(v[i]) * inv_sqrt_bc2 + eps);
                }
            } else {
                const float alpha = c.alpha, eps = c.eps, wd = c.weight_decay;
                for (int i = 0; i < N; i++) {
                    float gi = g[i] + wd * wref[i];
                    sq[i] = alpha * sq[i] + (1.0f - alpha) * gi * gi;
                    wref[i] -= lr * gi / (sqrtf(sq[i]) + eps);
                }
            }
            for (int i = 0; i < N; i++) mismatches += memcmp(&w[i], &wref[i], sizeof(float)) != 0;
        }
        CHECK_MSG(mismatches == 0, "%s: %d elements differ from the plain float loop",
                  ffn_opt_name(c.kind), mismatches);
        ffn_optim_free(opt);
    }
}

/* Every kind, with decay and momentum set, for the tests that run them all alike. */
static const ffn_opt_kind every_kind[] = {FFN_OPT_SGD, FFN_OPT_ADAM, FFN_OPT_ADAMW, FFN_OPT_RMSPROP};
enum { KIND_COUNT = sizeof every_kind / sizeof *every_kind };

static ffn_optim_config decaying_config(ffn_opt_kind kind)
{
    ffn_optim_config c = ffn_optim_defaults(kind);
    c.weight_decay = 0.01f;
    c.momentum = 0.9f;
    return c;
}

/* How many of the two optimizers' state buffers [n] differ in any bit. */
static int states_differ(ffn_optim *a, ffn_optim *b, size_t n)
{
    int differ = 0;
    for (size_t i = 0; i < ffn_optim_state_count(a); i++)
        differ += memcmp(ffn_optim_state(a, i), ffn_optim_state(b, i), n * sizeof(float)) != 0;
    return differ;
}

/* Step `variant` of test_update_threads on `threads` threads: the plain
 * update (0), with the bf16 copy (1), from a two-part gradient (2). */
static void update_variant(ffn_optim *opt, int threads, int variant, float *w, const float *ga, const float *gb,
                           uint16_t *copy, size_t n)
{
    ffn_gemm_set_threads(threads);
    if (variant == 0) ffn_optim_update(opt, 0.003f, w, ga, 0, n, 1);
    if (variant == 1) ffn_optim_update_bf16(opt, 0.003f, w, ga, 0, n, 1, copy);
    if (variant == 2) ffn_optim_update_summed(opt, 0.003f, w, 0, n, 1, ga, gb, copy);
}

/* A large update shared by the rank's threads (ffn_gemm_set_threads) gives
 * the bits of one thread, for every kind, with and without the bf16 copy and
 * the two-part gradient, over a length that is no multiple of the chunks. */
static void test_update_threads(void)
{
    enum { N = 100000 + 13 };
    static float w1[N], w4[N], ga[N], gb[N];
    static uint16_t c1[N], c4[N];
    for (size_t k = 0; k < KIND_COUNT; k++) {
        ffn_optim_config c = decaying_config(every_kind[k]);
        ffn_optim *one = ffn_optim_create(&c, N), *four = ffn_optim_create(&c, N);
        CHECK(one != NULL && four != NULL);
        for (int i = 0; i < N; i++) w1[i] = w4[i] = 0.0017f * (float)((i * 29) % 113 - 56);
        int differ = 0;
        for (int t = 0; t < 3; t++) {
            for (int i = 0; i < N; i++) {
                ga[i] = 0.01f * (float)((i * 7 + (t + 1) * 5) % 37 - 18);
                gb[i] = 0.003f * (float)((i * 3 + t + 1) % 19 - 9);
            }
            ffn_optim_begin_step(one);
            ffn_optim_begin_step(four);
            update_variant(one, 1, t, w1, ga, gb, c1, N);
            update_variant(four, 4, t, w4, ga, gb, c4, N);
            differ += memcmp(w1, w4, sizeof w1) != 0;
            differ += t > 0 && memcmp(c1, c4, sizeof c1) != 0;
        }
        differ += states_differ(one, four, N);
        CHECK_MSG(differ == 0, "%s: the update on 4 threads differs from 1 thread's (%d buffers)",
                  ffn_opt_name(c.kind), differ);
        ffn_optim_free(one);
        ffn_optim_free(four);
    }
    ffn_gemm_set_threads(1);
}

/* Round to nearest even, the rule of the bf16 copy (NaN stays NaN). */
static uint16_t bf16_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* ffn_optim_update_bf16 (the bf16 runs' fused update) and
 * ffn_optim_update_summed (the gradient as two parts, summed as read): the
 * parameters and the state bit for bit those of ffn_optim_update on the
 * summed gradient, and the copy each new parameter's bf16 rounding, for the
 * kinds with a fused loop (adam, adamw) and without (sgd with momentum,
 * rmsprop), over two segments at offsets. */
static void test_update_bf16(void)
{
    enum { N = 1000 + 9, CUT = 517 };
    static float w[N], wref[N], g[N], wsum[N], ga[N], gb[N];
    static uint16_t w16[N], w16sum[N];
    for (size_t k = 0; k < KIND_COUNT; k++) {
        ffn_optim_config c = decaying_config(every_kind[k]);
        ffn_optim *plain = ffn_optim_create(&c, N), *fused = ffn_optim_create(&c, N), *summed = ffn_optim_create(&c, N);
        CHECK(plain != NULL && fused != NULL && summed != NULL);
        for (int i = 0; i < N; i++) w[i] = wref[i] = wsum[i] = 0.0013f * (float)((i * 41) % 97 - 48);
        int differ = 0, copy_wrong = 0;
        for (int t = 1; t <= 3; t++) {
            /* two ranks' parts, and their float sum for the plain update */
            for (int i = 0; i < N; i++) {
                ga[i] = 0.01f * (float)((i * 11 + t * 5) % 31 - 15) + 3e-4f * (float)t;
                gb[i] = 0.007f * (float)((i * 5 + t * 3) % 23 - 11);
                g[i] = ga[i] + gb[i];
            }
            memset(w16, 0xff, sizeof w16);
            memset(w16sum, 0xff, sizeof w16sum);
            ffn_optim_begin_step(plain);
            ffn_optim_begin_step(fused);
            ffn_optim_begin_step(summed);
            ffn_optim_update(plain, 0.002f, wref, g, 0, N, 1);
            ffn_optim_update_bf16(fused, 0.002f, w, g, 0, CUT, 1, w16);
            ffn_optim_update_bf16(fused, 0.002f, w, g, CUT, N - CUT, 1, w16);
            ffn_optim_update_summed(summed, 0.002f, wsum, 0, CUT, 1, ga, gb, w16sum);
            ffn_optim_update_summed(summed, 0.002f, wsum, CUT, N - CUT, 1, ga + CUT, gb + CUT, w16sum);
            for (int i = 0; i < N; i++) {
                differ += memcmp(&w[i], &wref[i], sizeof(float)) != 0;
                differ += memcmp(&wsum[i], &wref[i], sizeof(float)) != 0;
                copy_wrong += w16[i] != bf16_bits(w[i]);
                copy_wrong += w16sum[i] != bf16_bits(wsum[i]);
            }
        }
        differ += states_differ(plain, fused, N) + states_differ(plain, summed, N);
        CHECK_MSG(differ == 0, "%s: the fused update differs from the plain one in %d places", ffn_opt_name(c.kind),
                  differ);
        CHECK_MSG(copy_wrong == 0, "%s: %d bf16 values are not the rounding of the new parameter",
                  ffn_opt_name(c.kind), copy_wrong);
        ffn_optim_free(plain);
        ffn_optim_free(fused);
        ffn_optim_free(summed);
    }
}

/* The state buffers each kind holds: counted from the config alone as the
 * optimizer made from it holds them, named as the kind names them. */
static void test_state_buffers(void)
{
    static const struct {
        ffn_opt_kind kind;
        float momentum;
        size_t buffers;
        const char *names[FFN_OPTIM_MAX_STATE];
    } cases[] = {
        {FFN_OPT_SGD, 0.0f, 0, {NULL}},
        {FFN_OPT_SGD, 0.9f, 1, {"momentum"}},
        {FFN_OPT_ADAM, 0.0f, 2, {"m", "v"}},
        {FFN_OPT_ADAMW, 0.9f, 2, {"m", "v"}},
        {FFN_OPT_RMSPROP, 0.0f, 1, {"square_avg"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ffn_optim_config c = ffn_optim_defaults(cases[i].kind);
        c.momentum = cases[i].momentum;
        CHECK_MSG(ffn_optim_state_buffers(&c) == cases[i].buffers, "case %zu: %zu buffers", i,
                  ffn_optim_state_buffers(&c));
        ffn_optim *o = ffn_optim_create(&c, 3);
        CHECK(o != NULL);
        if (!o) continue;
        CHECK(ffn_optim_state_count(o) == cases[i].buffers);
        for (size_t k = 0; k < cases[i].buffers; k++) {
            CHECK(strcmp(ffn_optim_state_name(o, k), cases[i].names[k]) == 0);
            CHECK(strcmp(ffn_optim_kind_state_name(cases[i].kind, k), cases[i].names[k]) == 0);
        }
        CHECK(ffn_optim_state_name(o, cases[i].buffers) == NULL && ffn_optim_state(o, cases[i].buffers) == NULL);
        ffn_optim_free(o);
    }
    /* sgd may hold momentum even when this config does not. */
    CHECK(strcmp(ffn_optim_kind_state_name(FFN_OPT_SGD, 0), "momentum") == 0);
    CHECK(ffn_optim_kind_state_name(FFN_OPT_ADAM, 2) == NULL);
    CHECK(ffn_optim_kind_state_name((ffn_opt_kind)FFN_OPT_COUNT, 0) == NULL);
    ffn_optim_config bad = ffn_optim_defaults(FFN_OPT_ADAM);
    bad.kind = (ffn_opt_kind)FFN_OPT_COUNT;
    CHECK(ffn_optim_state_buffers(&bad) == 0 && ffn_optim_state_buffers(NULL) == 0);
    CHECK(ffn_optim_defaults(FFN_OPT_ADAMW).weight_decay == 0.01f);
    CHECK(ffn_optim_defaults(FFN_OPT_RMSPROP).weight_decay == 0.0f);
}

/* The optimizer the flags describe: the kind's defaults, then the flags. */
static void test_config_optim(void)
{
    ffn_train_config cfg;
    ffn_config_defaults(&cfg);
    cfg.optimizer = FFN_OPT_ADAMW;
    ffn_optim_config c = ffn_config_optim(&cfg);
    CHECK(c.kind == FFN_OPT_ADAMW && c.weight_decay == 0.01f); /* --weight-decay < 0: the kind's default */
    CHECK(c.beta1 == 0.9f && c.beta2 == 0.999f && c.eps == 1e-8f && c.alpha == 0.99f && c.momentum == 0.0f);
    cfg.optimizer = FFN_OPT_SGD;
    cfg.momentum = 0.8f;
    cfg.nesterov = 1;
    cfg.beta1 = 0.5f;
    cfg.beta2 = 0.6f;
    cfg.eps = 1e-3f;
    cfg.rmsprop_alpha = 0.7f;
    cfg.weight_decay = 0.0f;
    c = ffn_config_optim(&cfg);
    CHECK(c.kind == FFN_OPT_SGD && c.momentum == 0.8f && c.nesterov == 1);
    CHECK(c.beta1 == 0.5f && c.beta2 == 0.6f && c.eps == 1e-3f && c.alpha == 0.7f && c.weight_decay == 0.0f);
    CHECK(ffn_optim_state_buffers(&c) == 1);
    cfg.optimizer = FFN_OPT_ADAMW;
    CHECK(ffn_config_optim(&cfg).weight_decay == 0.0f); /* an explicit 0 wins over adamw's 0.01 */
}

int main(int argc, char **argv)
{
    (void)argc;
    test_defaults_and_config();
    test_state_buffers();
    test_update_bf16();
    test_update_threads();
    test_config_optim();
    test_rules();
    test_state_and_resume();
    test_schedules();
    test_clipping();
    test_vector_loops_bitwise();
    if (!getenv("FFN_KERNELS")) {
        /* Each lower set in a fresh process (the choice is made once); a set
         * the CPU lacks falls back to the one below. */
        static const char *const sets[] = {"avx2", "portable"};
        for (int i = 0; i < 2; i++) {
            char cmd[4096];
            snprintf(cmd, sizeof cmd, "FFN_KERNELS=%s '%s' >/dev/null", sets[i], argv[0]);
            int rc = system(cmd);
            CHECK_MSG(rc == 0, "test_optim with FFN_KERNELS=%s failed (exit %d)", sets[i], rc);
        }
    }
    return check_done("test_optim");
}
