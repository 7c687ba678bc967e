/* Tests for the layer kinds beyond plain dense: dropout, layernorm, the ffn
 * and swiglu blocks and LoRA adapters. Finite-difference gradient checks of
 * every parameter and of the input against double-precision references
 * written here from the formulas; spec parse/format; dropout's masks (eval
 * identity, keep fraction and scale, reproducibility from (seed, step, row));
 * LoRA's trainable set, exchanged ranges, initial equivalence and merging. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/model.h"
#include "ffn/rng.h"
#include "check.h"
#include "fixtures.h"

/* ---- spec text */

static void test_spec(void)
{
    ffn_layer_spec *s = NULL;
    size_t n = 0;
    CHECK(ffn_spec_parse("dense:16:relu:lora=4,dropout:0.25,layernorm,ffn:64,ffn:32:relu,swiglu:24,"
                         "dense:3:lora=2:lora_alpha=8",
                         &s, &n) == FFN_OK);
    CHECK(n == 7);
    if (n == 7) {
        CHECK(s[0].kind == FFN_LAYER_DENSE && s[0].lora_rank == 4 && s[0].lora_alpha == 4.0f);
        CHECK(s[1].kind == FFN_LAYER_DROPOUT && s[1].rate == 0.25f);
        CHECK(s[2].kind == FFN_LAYER_LAYERNORM);
        CHECK(s[3].kind == FFN_LAYER_FFN && s[3].units == 64 && s[3].act == FFN_ACT_GELU);
        CHECK(s[4].kind == FFN_LAYER_FFN && s[4].units == 32 && s[4].act == FFN_ACT_RELU);
        CHECK(s[5].kind == FFN_LAYER_SWIGLU && s[5].units == 24);
        CHECK(s[6].lora_rank == 2 && s[6].lora_alpha == 8.0f);
    }
    free(s);

    static const char *const round[][2] = {
        {"dense:16:relu:lora=4", "dense:16:relu:lora=4"},
        {"dense:16:lora=4:lora_alpha=4", "dense:16:lora=4"},
        {"dense:16:lora_alpha=0.5:lora=2:tanh", "dense:16:tanh:lora=2:lora_alpha=0.5"},
        {"dropout:0.1", "dropout:0.1"},
        {"dropout:0", "dropout:0"},
        {"layernorm", "layernorm"},
        {"ffn:64:gelu", "ffn:64"},
        {"ffn:64:leaky_relu:slope=0.2:init=he_normal", "ffn:64:leaky_relu:slope=0.2:init=he_normal"},
        {"swiglu:32:init=glorot_normal:init_param=0.5", "swiglu:32:init=xavier_normal:init_param=0.5"},
        {"dense:8:relu,dropout:0.123456789,layernorm,ffn:16:tanh,swiglu:8,dense:2:lora=1:lora_alpha=1e-07",
         NULL},
    };
    for (size_t i = 0; i < sizeof round / sizeof round[0]; i++) {
        ffn_layer_spec *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        CHECK_MSG(ffn_spec_parse(round[i][0], &a, &na) == FFN_OK, "'%s': %s", round[i][0], ffn_last_error());
        char *text = a ? ffn_spec_format(a, na) : NULL;
        CHECK(text != NULL);
        if (text && round[i][1]) CHECK_MSG(strcmp(text, round[i][1]) == 0, "'%s' -> '%s'", round[i][0], text);
        CHECK_MSG(text && ffn_spec_parse(text, &b, &nb) == FFN_OK, "'%s' does not parse back", text ? text : "");
        int same = na == nb;
        for (size_t k = 0; same && k < na; k++)
            same = a[k].kind == b[k].kind && a[k].units == b[k].units && a[k].act == b[k].act &&
                   a[k].act_param == b[k].act_param && a[k].init == b[k].init &&
                   a[k].init_param == b[k].init_param && a[k].rate == b[k].rate &&
                   a[k].lora_rank == b[k].lora_rank && a[k].lora_alpha == b[k].lora_alpha;
        CHECK_MSG(same, "'%s' -> '%s' is not the same spec", round[i][0], text ? text : "");
        free(text);
        free(a);
        free(b);
    }

    static const char *const bad[] = {
        "dropout", "dropout:1", "dropout:-0.1", "dropout:x", "dropout:0.5:relu", "layernorm:3",
        "layernorm:eps=1", "ffn", "ffn:0", "ffn:8:softmax", "ffn:8:lora=2", "swiglu", "swiglu:8:relu",
        "swiglu:8:slope=0.1", "dense:4:lora=0", "dense:4:lora=x", "dense:4:lora_alpha=2",
        "dense:4:lora=2:lora_alpha=0", "dense:4:lora=2:lora_alpha=-1", "conv:3",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ffn_clear_error();
        ffn_layer_spec *t = NULL;
        size_t nt = 7;
        ffn_status st = ffn_spec_parse(bad[i], &t, &nt);
        CHECK_MSG(st == FFN_ERR_ARG && t == NULL && nt == 0, "'%s' parsed (status %d)", bad[i], (int)st);
        CHECK_MSG(ffn_last_error()[0] != '\0', "'%s': no message", bad[i]);
        if (st == FFN_OK) free(t);
    }
}

/* ---- double references of every kind, from the formulas */

static const double *P(const ffn_model *m, const double *p, size_t layer, const char *name)
{
    const ffn_tensor *t = ffn_model_find_tensor(m, layer, name);
    return t ? p + t->offset : NULL;
}

static void ref_layernorm(const double *x, const double *g, const double *b, double *y, size_t n)
{
    double mean = 0, var = 0;
    for (size_t c = 0; c < n; c++) mean += x[c];
    mean /= (double)n;
    for (size_t c = 0; c < n; c++) var += (x[c] - mean) * (x[c] - mean);
    var /= (double)n;
    double rs = 1 / sqrt(var + 1e-5);
    for (size_t c = 0; c < n; c++) y[c] = g[c] * (x[c] - mean) * rs + b[c];
}

enum { MAXW = 16 };

/* One row through layer i. mask: dropout's fixed mask for the row. */
static void ref_layer(const ffn_model *m, const double *p, size_t i, const double *x, double *y,
                      const float *mask)
{
    const ffn_layer *l = ffn_model_layer_const(m, i);
    const ffn_layer_spec *s = &l->spec;
    size_t in = l->in, out = l->out, H = s->units;
    double n[MAXW], h[MAXW], g[MAXW];
    switch (s->kind) {
    case FFN_LAYER_DENSE: {
        const double *W = P(m, p, i, "W"), *b = P(m, p, i, "b");
        const double *A = P(m, p, i, "lora_A"), *B = P(m, p, i, "lora_B");
        size_t R = s->lora_rank;
        double u[MAXW];
        for (size_t r = 0; r < R; r++) {
            u[r] = 0;
            for (size_t c = 0; c < in; c++) u[r] += A[r * in + c] * x[c];
        }
        for (size_t o = 0; o < out; o++) {
            double z = b[o];
            for (size_t c = 0; c < in; c++) z += W[o * in + c] * x[c];
            for (size_t r = 0; r < R; r++) z += s->lora_alpha / (double)R * B[o * R + r] * u[r];
            y[o] = ref_act(s->act, s->act_param, z);
        }
        break;
    }
    case FFN_LAYER_DROPOUT:
        for (size_t c = 0; c < in; c++) y[c] = x[c] * mask[c];
        break;
    case FFN_LAYER_LAYERNORM: ref_layernorm(x, P(m, p, i, "gamma"), P(m, p, i, "beta"), y, in); break;
    case FFN_LAYER_FFN: {
        const double *W1 = P(m, p, i, "W1"), *b1 = P(m, p, i, "b1"), *W2 = P(m, p, i, "W2"),
                     *b2 = P(m, p, i, "b2");
        ref_layernorm(x, P(m, p, i, "ln_gamma"), P(m, p, i, "ln_beta"), n, in);
        for (size_t k = 0; k < H; k++) {
            double z = b1[k];
            for (size_t c = 0; c < in; c++) z += W1[k * in + c] * n[c];
            h[k] = ref_act(s->act, s->act_param, z);
        }
        for (size_t c = 0; c < in; c++) {
            double v = x[c] + b2[c];
            for (size_t k = 0; k < H; k++) v += W2[c * H + k] * h[k];
            y[c] = v;
        }
        break;
    }
    case FFN_LAYER_SWIGLU: {
        const double *W1 = P(m, p, i, "W1"), *W3 = P(m, p, i, "W3"), *W2 = P(m, p, i, "W2");
        ref_layernorm(x, P(m, p, i, "ln_gamma"), P(m, p, i, "ln_beta"), n, in);
        for (size_t k = 0; k < H; k++) {
            double a = 0, gg = 0;
            for (size_t c = 0; c < in; c++) {
                a += W1[k * in + c] * n[c];
                gg += W3[k * in + c] * n[c];
            }
            g[k] = a / (1 + exp(-a)) * gg;
        }
        for (size_t c = 0; c < in; c++) {
            double v = x[c];
            for (size_t k = 0; k < H; k++) v += W2[c * H + k] * g[k];
            y[c] = v;
        }
        break;
    }
    default: break;
    }
}

enum { IN = 5, BATCH = 3, MAXL = 8 };

typedef struct {
    const ffn_model *m;
    const float *masks[MAXL]; /* per dropout layer: [BATCH, width] */
    const float *r;           /* objective weights [BATCH, out] */
} ref_problem;

/* L = Σ r ⊙ model(x) in double. */
static double ref_objective(const ref_problem *pb, const double *p, const double *x)
{
    const ffn_model *m = pb->m;
    size_t out = ffn_model_output_dim(m);
    double total = 0;
    for (size_t row = 0; row < BATCH; row++) {
        double a[MAXW], b[MAXW];
        memcpy(a, x + row * IN, IN * sizeof *a);
        for (size_t i = 0; i < ffn_model_layer_count(m); i++) {
            const ffn_layer *l = ffn_model_layer_const(m, i);
            ref_layer(m, p, i, a, b, pb->masks[i] ? pb->masks[i] + row * l->in : NULL);
            memcpy(a, b, l->out * sizeof *a);
        }
        for (size_t c = 0; c < out; c++) total += pb->r[row * out + c] * a[c];
    }
    return total;
}

/* The ranges backward must report: each run of adjacent trainable tensors,
 * highest first. */
static void expected_ranges(const ffn_model *m, ready_log *want)
{
    memset(want, 0, sizeof *want);
    for (size_t k = ffn_model_tensor_count(m); k-- > 0;) {
        const ffn_tensor *t = ffn_model_tensor(m, k);
        if (!t->trainable) continue;
        size_t hi = t->offset + t->count, lo = t->offset;
        while (k > 0 && ffn_model_tensor(m, k - 1)->trainable &&
               ffn_model_tensor(m, k - 1)->layer == t->layer)
            lo = ffn_model_tensor(m, --k)->offset;
        ready_log_add(want, lo, hi - lo);
    }
}

/* Whole-model check of spec on IN inputs: every trainable parameter's
 * gradient and dx against central differences (h = 1e-3) of the double
 * reference, relative error below tol with a floor of 1e-2 on |numeric|.
 * Float rounding through LN and two projections is ~1e-5 relative, the
 * O(h^2) truncation ~1e-6; a missing term, wrong transpose or offset gives
 * O(1). Untrainable tensors' gradients are never written; the reported ranges
 * are exactly the trainable runs; accumulate adds. */
static void grad_check(const char *spec, double tol)
{
    ffn_model *m = NULL;
    CHECK_MSG(ffn_model_create_from_text(&m, spec, IN) == FFN_OK, "%s: %s", spec, ffn_last_error());
    if (!m) return;
    CHECK(ffn_model_reserve(m, BATCH) == FFN_OK);
    ffn_model_init_params(m, 77);
    /* Random values everywhere (adapters' B, norms' gains and shifts, biases
     * included) so every path carries gradient. */
    ffn_rng rng = ffn_rng_make(5, 6);
    size_t np = ffn_model_param_count(m), out = ffn_model_output_dim(m);
    float *params = ffn_model_params(m), *grads = ffn_model_grads(m);
    for (size_t k = 0; k < ffn_model_tensor_count(m); k++) {
        const ffn_tensor *t = ffn_model_tensor(m, k);
        int gain = strstr(t->name, "gamma") != NULL;
        ffn_rng_fill_uniform(&rng, t->data, t->count, gain ? 0.5f : -0.6f, gain ? 1.5f : 0.6f);
    }
    float x[BATCH * IN], r[BATCH * MAXW], dout[BATCH * MAXW], dx[BATCH * IN];
    ffn_rng_fill_uniform(&rng, x, BATCH * IN, -2, 2);
    ffn_rng_fill_uniform(&rng, r, BATCH * out, -1, 1);
    const uint64_t rows[BATCH] = {11, 4, 907};
    for (size_t i = 0; i < np; i++) grads[i] = -7.0f;
    const float *y = ffn_model_forward_train(m, x, BATCH, 99, 3, rows);
    double loss = 0;
    for (size_t i = 0; i < BATCH * out; i++) loss += (double)r[i] * y[i];
    memcpy(dout, r, BATCH * out * sizeof *dout);
    ready_log log = {0}, want;
    ffn_model_backward_dx(m, x, BATCH, dout, 0, ready_log_add, &log, dx);

    /* Dropout masks, read back from each dropout layer's input and output. */
    ref_problem pb = {.m = m, .r = r};
    float *masks[MAXL] = {0};
    for (size_t i = 0; i < ffn_model_layer_count(m) && i < MAXL; i++) {
        const ffn_layer *l = ffn_model_layer_const(m, i);
        if (l->spec.kind != FFN_LAYER_DROPOUT) continue;
        const float *lin = i == 0 ? x : ffn_model_layer_const(m, i - 1)->y;
        masks[i] = malloc(BATCH * l->in * sizeof(float));
        for (size_t j = 0; j < BATCH * l->in; j++) masks[i][j] = l->y[j] == 0.0f ? 0.0f : l->y[j] / lin[j];
        pb.masks[i] = masks[i];
    }
    double *pd = malloc(np * sizeof *pd), xd[BATCH * IN];
    for (size_t i = 0; i < np; i++) pd[i] = params[i];
    for (size_t i = 0; i < BATCH * IN; i++) xd[i] = x[i];
    double ref = ref_objective(&pb, pd, xd);
    CHECK_MSG(fabs(loss - ref) <= 1e-4 * fmax(1, fabs(ref)), "%s: objective %.9g, reference %.9g", spec, loss, ref);

    const double h = 1e-3;
    double worst = 0;
    const char *worst_what = "";
    size_t worst_i = 0;
    int untouched = 1;
    for (size_t k = 0; k < ffn_model_tensor_count(m); k++) {
        const ffn_tensor *t = ffn_model_tensor(m, k);
        for (size_t j = 0; j < t->count; j++) {
            size_t i = t->offset + j;
            if (!t->trainable) {
                untouched &= grads[i] == -7.0f;
                continue;
            }
            double saved = pd[i];
            pd[i] = saved + h;
            double up = ref_objective(&pb, pd, xd);
            pd[i] = saved - h;
            double down = ref_objective(&pb, pd, xd);
            pd[i] = saved;
            double numeric = (up - down) / (2 * h), err = fabs(grads[i] - numeric) / fmax(fabs(numeric), 1e-2);
            if (!(err <= worst)) worst = err, worst_what = t->name, worst_i = j;
        }
    }
    for (size_t i = 0; i < BATCH * IN; i++) {
        double saved = xd[i];
        xd[i] = saved + h;
        double up = ref_objective(&pb, pd, xd);
        xd[i] = saved - h;
        double down = ref_objective(&pb, pd, xd);
        xd[i] = saved;
        double numeric = (up - down) / (2 * h), err = fabs(dx[i] - numeric) / fmax(fabs(numeric), 1e-2);
        if (!(err <= worst)) worst = err, worst_what = "dx", worst_i = i;
    }
    CHECK_MSG(worst < tol, "%s: gradient rel err %g at %s[%zu]", spec, worst, worst_what, worst_i);
    CHECK_MSG(untouched, "%s: a fixed tensor's gradient was written", spec);

    expected_ranges(m, &want);
    int same = log.n == want.n;
    for (size_t i = 0; same && i < log.n && i < 32; i++)
        same = log.offset[i] == want.offset[i] && log.count[i] == want.count[i];
    CHECK_MSG(same, "%s: reported %zu ranges, expected %zu (the trainable runs, highest first)", spec, log.n, want.n);

    /* accumulate = 1 adds the same gradients again. */
    float *g1 = malloc(np * sizeof *g1);
    memcpy(g1, grads, np * sizeof *g1);
    ffn_model_forward_train(m, x, BATCH, 99, 3, rows);
    memcpy(dout, r, BATCH * out * sizeof *dout);
    ffn_model_backward(m, x, BATCH, dout, 1, NULL, NULL);
    double acc = 0;
    for (size_t k = 0; k < ffn_model_tensor_count(m); k++) {
        const ffn_tensor *t = ffn_model_tensor(m, k);
        for (size_t j = 0; t->trainable && j < t->count; j++) {
            size_t i = t->offset + j;
            acc = fmax(acc, fabs(grads[i] - 2 * g1[i]) / fmax(fabs(2 * g1[i]), 1e-3));
        }
    }
    CHECK_MSG(acc < 1e-4, "%s: accumulate rel err %g", spec, acc);

    /* An empty batch writes zero gradients (a rank without rows this step). */
    for (size_t i = 0; i < np; i++) grads[i] = -7.0f;
    ffn_model_forward_train(m, x, 0, 99, 3, rows);
    ffn_model_backward(m, x, 0, dout, 0, NULL, NULL);
    int zero = 1;
    for (size_t k = 0; k < ffn_model_tensor_count(m); k++) {
        const ffn_tensor *t = ffn_model_tensor(m, k);
        for (size_t j = 0; j < t->count; j++) zero &= grads[t->offset + j] == (t->trainable ? 0.0f : -7.0f);
    }
    CHECK_MSG(zero, "%s: empty batch did not give zero gradients", spec);

    free(g1);
    for (size_t i = 0; i < MAXL; i++) free(masks[i]);
    free(pd);
    ffn_model_free(m);
}

static void test_gradients(void)
{
    grad_check("layernorm", 1e-3);
    grad_check("ffn:7", 1e-3);
    grad_check("ffn:6:tanh", 1e-3);
    grad_check("ffn:6:sigmoid", 1e-3);
    grad_check("swiglu:6", 1e-3);
    grad_check("dense:4:tanh:lora=2:lora_alpha=3", 1e-3);
    grad_check("dense:4:gelu:lora=3", 1e-3);
    grad_check("dropout:0.4", 1e-3);
    grad_check("dense:6:tanh:lora=3,layernorm,dropout:0.3,ffn:8,swiglu:5,dense:3:lora=2", 2e-3);
    grad_check("ffn:8:gelu,dropout:0.5,swiglu:7,layernorm,dense:4", 2e-3);
}

/* Frozen layers of the new kinds: nothing of theirs written or reported, and
 * the gradient still flows through them to the layers below. */
static void test_frozen(void)
{
    ffn_model *m = NULL;
    CHECK(ffn_model_create_from_text(&m, "dense:6:tanh,layernorm,ffn:8,swiglu:5,dense:3", IN) == FFN_OK);
    if (!m) return;
    CHECK(ffn_model_reserve(m, BATCH) == FFN_OK);
    ffn_model_init_params(m, 1);
    size_t np = ffn_model_param_count(m);
    float *grads = ffn_model_grads(m), x[BATCH * IN], dout[BATCH * 3], *g1 = malloc(np * sizeof *g1);
    ffn_rng rng = ffn_rng_make(3, 3);
    ffn_rng_fill_uniform(&rng, x, BATCH * IN, -1, 1);
    float r[BATCH * 3];
    ffn_rng_fill_uniform(&rng, r, BATCH * 3, -1, 1);
    ffn_model_forward(m, x, BATCH);
    memcpy(dout, r, sizeof dout);
    ffn_model_backward(m, x, BATCH, dout, 0, NULL, NULL);
    memcpy(g1, grads, np * sizeof *g1);
    CHECK(ffn_model_trainable_count(m) == np);
    for (size_t i = 1; i <= 3; i++) ffn_model_set_frozen(m, i, 1);
    const ffn_layer *l1 = ffn_model_layer_const(m, 1), *l4 = ffn_model_layer_const(m, 4);
    CHECK(ffn_model_trainable_count(m) == ffn_model_layer_const(m, 0)->param_count + l4->param_count);
    for (size_t i = 0; i < np; i++) grads[i] = -7.0f;
    ready_log log = {0};
    ffn_model_forward(m, x, BATCH);
    memcpy(dout, r, sizeof dout);
    ffn_model_backward(m, x, BATCH, dout, 0, ready_log_add, &log);
    CHECK(log.n == 2);
    if (log.n == 2) {
        CHECK(log.offset[0] == l4->param_offset && log.count[0] == l4->param_count);
        CHECK(log.offset[1] == 0 && log.count[1] == ffn_model_layer_const(m, 0)->param_count);
    }
    int untouched = 1;
    for (size_t i = l1->param_offset; i < l4->param_offset; i++) untouched &= grads[i] == -7.0f;
    CHECK(untouched);
    CHECK(memcmp(grads, g1, l1->param_offset * sizeof *g1) == 0);
    CHECK(memcmp(grads + l4->param_offset, g1 + l4->param_offset, l4->param_count * sizeof *g1) == 0);
    /* zero_grads: the same ranges, zeroed. */
    memset(&log, 0, sizeof log);
    ffn_model_zero_grads(m, ready_log_add, &log);
    CHECK(log.n == 2 && grads[0] == 0.0f && grads[l1->param_offset] == -7.0f);
    free(g1);
    ffn_model_free(m);
}

/* ---- dropout's masks */

static void test_dropout(void)
{
    enum { ROWS = 200, W = 50 };
    const float p = 0.3f;
    ffn_model *m = NULL;
    CHECK(ffn_model_create_from_text(&m, "dense:50,dropout:0.3", 7) == FFN_OK);
    if (!m) return;
    CHECK(ffn_model_param_count(m) == 7 * 50 + 50 && ffn_model_tensor_count(m) == 2);
    CHECK(ffn_model_reserve(m, ROWS) == FFN_OK);
    ffn_model_init_params(m, 2);
    float *x = malloc(ROWS * 7 * sizeof *x), *before = malloc(ROWS * W * sizeof *before);
    float *full = malloc(ROWS * W * sizeof *full), *part = malloc(ROWS * W * sizeof *part);
    uint64_t *rows = malloc(ROWS * sizeof *rows);
    ffn_rng rng = ffn_rng_make(8, 8);
    ffn_rng_fill_uniform(&rng, x, ROWS * 7, 0.5f, 1.5f);
    for (size_t i = 0; i < ROWS; i++) rows[i] = 1000 + 3 * i;
    const ffn_layer *d = ffn_model_layer_const(m, 1), *dense = ffn_model_layer_const(m, 0);

    /* Evaluation: the identity, bit for bit. */
    const float *y = ffn_model_forward(m, x, ROWS);
    CHECK(memcmp(y, dense->y, ROWS * W * sizeof *y) == 0);
    memcpy(before, dense->y, ROWS * W * sizeof *before);

    /* Training: each element kept with probability 1-p, scaled by 1/(1-p). */
    y = ffn_model_forward_train(m, x, ROWS, 42, 7, rows);
    size_t kept = 0, exact = 1;
    for (size_t i = 0; i < ROWS * W; i++) {
        if (y[i] != 0.0f) {
            kept++;
            exact &= fabsf(y[i] - before[i] / (1 - p)) <= 1e-6f * fabsf(before[i] / (1 - p));
        }
    }
    double frac = (double)kept / (ROWS * W); /* sd sqrt(0.21 / 10000) = 0.0046 */
    CHECK_MSG(fabs(frac - 0.7) < 0.02, "keep fraction %g, expected 0.7", frac);
    CHECK(exact);
    memcpy(full, y, ROWS * W * sizeof *full);

    /* The masks follow the documented key: recompute one element by hand. */
    for (size_t probe = 0; probe < 5; probe++) {
        size_t r = 37 * probe + 3, c = 11 * probe + 2;
        uint32_t w[4];
        ffn_philox4x32(42, (uint64_t)FFN_STREAM_DROPOUT + (1u << 8) + (7ull << 32), (rows[r] << 32) | (c / 4), w);
        int keep = (double)(w[c % 4] >> 8) / 16777216.0 >= (double)p;
        CHECK_MSG(keep == (full[r * W + c] != 0.0f), "mask at row %zu col %zu", r, c);
    }

    /* Same (seed, step, rows): the same masks. Split into two "ranks" with
     * their own row ids: each half gets exactly its rows of the full batch. */
    y = ffn_model_forward_train(m, x, ROWS, 42, 7, rows);
    CHECK(memcmp(y, full, ROWS * W * sizeof *y) == 0);
    y = ffn_model_forward_train(m, x, ROWS / 2, 42, 7, rows);
    memcpy(part, y, ROWS / 2 * W * sizeof *part);
    y = ffn_model_forward_train(m, x + ROWS / 2 * 7, ROWS / 2, 42, 7, rows + ROWS / 2);
    memcpy(part + ROWS / 2 * W, y, ROWS / 2 * W * sizeof *part);
    CHECK(memcmp(part, full, ROWS * W * sizeof *part) == 0);
    /* Another step, seed or row id: other masks. */
    y = ffn_model_forward_train(m, x, ROWS, 42, 8, rows);
    CHECK(memcmp(y, full, ROWS * W * sizeof *y) != 0);
    y = ffn_model_forward_train(m, x, ROWS, 43, 7, rows);
    CHECK(memcmp(y, full, ROWS * W * sizeof *y) != 0);
    y = ffn_model_forward_train(m, x, ROWS, 42, 7, NULL);
    CHECK(memcmp(y, full, ROWS * W * sizeof *y) != 0);
    (void)d;
    ffn_model_free(m);

    /* dropout:0 trains as the identity. */
    CHECK(ffn_model_create_from_text(&m, "dropout:0", 7) == FFN_OK);
    if (m) {
        CHECK(ffn_model_reserve(m, ROWS) == FFN_OK);
        y = ffn_model_forward_train(m, x, ROWS, 1, 1, rows);
        CHECK(memcmp(y, x, ROWS * 7 * sizeof *y) == 0);
        ffn_model_free(m);
    }
    free(x);
    free(before);
    free(full);
    free(part);
    free(rows);
}

/* ---- LoRA */

static void test_lora(void)
{
    const char *plain = "dense:8:relu,dense:6:tanh,dense:3";
    const char *lora = "dense:8:relu:lora=2,dense:6:tanh,dense:3:lora=4:lora_alpha=8";
    ffn_model *a = NULL, *b = NULL, *merged = NULL;
    CHECK(ffn_model_create_from_text(&a, plain, IN) == FFN_OK);
    CHECK(ffn_model_create_from_text(&b, lora, IN) == FFN_OK);
    if (!a || !b) return;
    CHECK(ffn_model_reserve(a, BATCH) == FFN_OK && ffn_model_reserve(b, BATCH) == FFN_OK);
    ffn_model_init_params(a, 5);
    ffn_model_init_params(b, 5);
    /* Tensors: W, b, lora_A [R, in], lora_B [out, R]; W and b fixed. */
    CHECK(ffn_model_tensor_count(b) == 10);
    const ffn_tensor *A0 = ffn_model_find_tensor(b, 0, "lora_A"), *B0 = ffn_model_find_tensor(b, 0, "lora_B");
    const ffn_tensor *A2 = ffn_model_find_tensor(b, 2, "lora_A"), *B2 = ffn_model_find_tensor(b, 2, "lora_B");
    CHECK(A0 && B0 && A2 && B2);
    if (!A0 || !B0 || !A2 || !B2) return;
    CHECK(A0->shape[0] == 2 && A0->shape[1] == IN && B0->shape[0] == 8 && B0->shape[1] == 2);
    CHECK(A2->shape[0] == 4 && A2->shape[1] == 6 && B2->shape[0] == 3 && B2->shape[1] == 4);
    CHECK(!ffn_model_find_tensor(b, 0, "W")->trainable && !ffn_model_find_tensor(b, 0, "b")->trainable);
    CHECK(A0->trainable && B0->trainable && ffn_model_find_tensor(b, 1, "W")->trainable);
    size_t layer1 = ffn_model_layer_const(b, 1)->param_count;
    CHECK(ffn_model_trainable_count(b) == 2 * IN + 8 * 2 + layer1 + 4 * 6 + 3 * 4);
    /* Freezing then unfreezing restores the kind's default (W still fixed). */
    ffn_model_set_frozen(b, 0, 1);
    CHECK(!A0->trainable && !B0->trainable);
    ffn_model_set_frozen(b, 0, 0);
    CHECK(A0->trainable && !ffn_model_find_tensor(b, 0, "W")->trainable);

    /* The same seed draws the same W with or without an adapter, and B = 0
     * makes the adapted model compute exactly the plain one. */
    for (size_t i = 0; i < 3; i++) {
        const ffn_layer *la = ffn_model_layer_const(a, i), *lb = ffn_model_layer_const(b, i);
        CHECK(memcmp(la->W, lb->W, la->weight_count * sizeof(float)) == 0);
    }
    int b_zero = 1, a_in_range = 1, a_nonzero = 0;
    for (size_t j = 0; j < B0->count; j++) b_zero &= B0->data[j] == 0.0f;
    for (size_t j = 0; j < A0->count; j++) {
        a_in_range &= fabsf(A0->data[j]) <= 1.0f / sqrtf((float)IN);
        a_nonzero |= A0->data[j] != 0.0f;
    }
    CHECK(b_zero && a_in_range && a_nonzero);
    float x[BATCH * IN];
    ffn_rng rng = ffn_rng_make(9, 9);
    ffn_rng_fill_uniform(&rng, x, BATCH * IN, -1, 1);
    float ya[BATCH * 3];
    memcpy(ya, ffn_model_forward(a, x, BATCH), sizeof ya);
    const float *yb = ffn_model_forward(b, x, BATCH);
    double diff = 0;
    for (size_t i = 0; i < BATCH * 3; i++) diff = fmax(diff, fabs(ya[i] - yb[i]));
    CHECK_MSG(diff < 1e-6, "fresh adapters change the output by %g", diff);

    /* Only the adapters' ranges and layer 1's are reported. */
    float dout[BATCH * 3];
    for (size_t i = 0; i < BATCH * 3; i++) dout[i] = 0.1f * (float)(i + 1);
    ready_log log = {0};
    ffn_model_backward(b, x, BATCH, dout, 0, ready_log_add, &log);
    CHECK(log.n == 3);
    if (log.n == 3) {
        CHECK(log.offset[0] == A2->offset && log.count[0] == A2->count + B2->count);
        CHECK(log.offset[1] == ffn_model_layer_const(b, 1)->param_offset && log.count[1] == layer1);
        CHECK(log.offset[2] == A0->offset && log.count[2] == A0->count + B0->count);
    }

    /* Merging: W + (alpha/R)·B·A computes what the adapted model computes. */
    ffn_rng_fill_uniform(&rng, B0->data, B0->count, -0.5f, 0.5f);
    ffn_rng_fill_uniform(&rng, B2->data, B2->count, -0.5f, 0.5f);
    float yl[BATCH * 3];
    memcpy(yl, ffn_model_forward(b, x, BATCH), sizeof yl);
    CHECK(ffn_model_merge_lora(&merged, b) == FFN_OK);
    if (merged) {
        char *text = ffn_model_spec_text(merged);
        CHECK(text && strcmp(text, plain) == 0);
        free(text);
        CHECK(ffn_model_param_count(merged) == ffn_model_param_count(a));
        CHECK(ffn_model_reserve(merged, BATCH) == FFN_OK);
        const float *ym = ffn_model_forward(merged, x, BATCH);
        double worst = 0, moved = 0;
        for (size_t i = 0; i < BATCH * 3; i++) {
            worst = fmax(worst, fabs(ym[i] - yl[i]) / fmax(fabs(yl[i]), 1e-2));
            moved = fmax(moved, fabs(yl[i] - ya[i]));
        }
        CHECK_MSG(worst < 1e-5, "merged model differs by %g (relative)", worst);
        CHECK_MSG(moved > 1e-3, "the adapters did not change the output (%g), so the merge test proves nothing", moved);
        /* Layer 1 has no adapter: copied as it is. */
        CHECK(memcmp(ffn_model_layer_const(merged, 1)->W, ffn_model_layer_const(b, 1)->W,
                     ffn_model_layer_const(b, 1)->weight_count * sizeof(float)) == 0);
        ffn_model_free(merged);
    }
    ffn_model_free(a);
    ffn_model_free(b);
}

/* --recompute: the blocks' caches refilled in backward give bitwise the
 * outputs, gradients and dx of a run that kept them, in less arena. */
static void recompute_check(const char *spec)
{
    enum { B = 5, DIN = 6 };
    ffn_model *m[2] = {NULL, NULL};
    float x[B * DIN], dout[2][B * 16], dx[2][B * DIN];
    ffn_rng rng = ffn_rng_make(12, 13);
    ffn_rng_fill_uniform(&rng, x, B * DIN, -2, 2);
    const uint64_t rows[B] = {3, 1, 4, 1, 5};
    for (int r = 0; r < 2; r++) {
        CHECK_MSG(ffn_model_create_from_text(&m[r], spec, DIN) == FFN_OK, "%s: %s", spec, ffn_last_error());
        if (!m[r]) return;
        CHECK(ffn_model_set_recompute(m[r], r) == FFN_OK);
        CHECK(ffn_model_reserve(m[r], B) == FFN_OK);
        ffn_model_init_params(m[r], 8);
        size_t out = ffn_model_output_dim(m[r]);
        ffn_rng dr = ffn_rng_make(14, 15);
        ffn_rng_fill_uniform(&dr, dout[r], B * out, -1, 1);
        /* Two steps (the second's forward overwrites the shared cache again). */
        for (int step = 0; step < 2; step++) {
            ffn_model_forward_train(m[r], x, B, 7, (uint64_t)step, rows);
            ffn_model_backward_dx(m[r], x, B, dout[r], step, NULL, NULL, dx[r]);
        }
    }
    size_t np = ffn_model_param_count(m[0]);
    CHECK_MSG(memcmp(ffn_model_grads(m[0]), ffn_model_grads(m[1]), np * sizeof(float)) == 0,
              "%s: gradients with --recompute differ", spec);
    CHECK_MSG(memcmp(dx[0], dx[1], B * DIN * sizeof(float)) == 0, "%s: dx with --recompute differs", spec);
    const float *y0 = ffn_model_forward(m[0], x, B), *y1 = ffn_model_forward(m[1], x, B);
    CHECK_MSG(memcmp(y0, y1, B * ffn_model_output_dim(m[0]) * sizeof(float)) == 0, "%s: outputs differ", spec);
    CHECK(ffn_model_recompute(m[1]) && !ffn_model_recompute(m[0]));
    for (int r = 0; r < 2; r++) ffn_model_free(m[r]);
}

static void test_recompute(void)
{
    recompute_check("ffn:12,swiglu:10,dense:3");
    recompute_check("dense:8:relu,dropout:0.3,ffn:16:tanh,layernorm,swiglu:9,ffn:7,dense:4:lora=2");
    recompute_check("swiglu:5");
}

int main(void)
{
    test_spec();
    test_recompute();
    test_gradients();
    test_frozen();
    test_dropout();
    test_lora();
    return check_done("test_layers");
}
