/* Tests for the model: spec parsing and formatting, the flat parameter
 * layout, a whole-model finite-difference gradient check through the loss,
 * the grad-ready callback, frozen layers and accumulation. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/dense.h"
#include "ffn/loss.h"
#include "ffn/model.h"
#include "ffn/rng.h"
#include "check.h"
#include "fixtures.h"

/* ---- spec text */

static void test_spec_good(void)
{
    ffn_layer_spec *s = NULL;
    size_t n = 0;
    CHECK(ffn_spec_parse("dense:128:relu,dense:10", &s, &n) == FFN_OK);
    CHECK(n == 2);
    if (n == 2) {
        CHECK(s[0].kind == FFN_LAYER_DENSE && s[0].units == 128 && s[0].act == FFN_ACT_RELU);
        CHECK(s[0].init == -1 && s[0].init_param == FFN_INIT_DEFAULT_PARAM);
        CHECK(s[1].units == 10 && s[1].act == FFN_ACT_IDENTITY && s[1].init == -1);
    }
    free(s);

    CHECK(ffn_spec_parse("dense:64:leaky_relu:slope=0.2:init=he_normal:init_param=0.1,"
                         "dense:3:init=glorot_uniform,dense:1:sigmoid",
                         &s, &n) == FFN_OK);
    CHECK(n == 3);
    if (n == 3) {
        CHECK(s[0].units == 64 && s[0].act == FFN_ACT_LEAKY_RELU && s[0].act_param == 0.2f);
        CHECK(s[0].init == FFN_INIT_HE_NORMAL && s[0].init_param == 0.1f);
        CHECK(s[1].units == 3 && s[1].init == FFN_INIT_XAVIER_UNIFORM);
        CHECK(s[2].act == FFN_ACT_SIGMOID);
    }
    free(s);

    /* Options may come before the activation; "linear" is identity. */
    CHECK(ffn_spec_parse("dense:7:init=zeros:linear", &s, &n) == FFN_OK);
    CHECK(n == 1 && s[0].act == FFN_ACT_IDENTITY && s[0].init == FFN_INIT_ZEROS);
    free(s);
    CHECK(ffn_spec_parse("dense:2147483648", &s, &n) == FFN_OK); /* 2^31: the limit */
    free(s);
}

static void test_spec_bad(void)
{
    static const char *const bad[] = {
        "",                        /* empty */
        "conv:3",                  /* unknown kind */
        "dense:3:swish",           /* unknown activation */
        "dense:3:init=orthogonal", /* unknown init */
        "dense:0",                 /* zero units */
        "dense",                   /* missing units */
        "dense:",                  /* missing units */
        "dense:relu",              /* units missing, activation in their place */
        "dense:-3",                /* negative units */
        "dense:3x",                /* trailing junk in units */
        "dense:3:relu junk",       /* trailing junk in an activation */
        "dense:3,",                /* trailing comma: an empty item */
        ",dense:3",                /* leading comma */
        "dense:3,,dense:2",        /* empty item in the middle */
        "dense:3:bogus=1",         /* unknown option */
        "dense:3:slope=abc",       /* bad number */
        "dense:3:slope=0.1x",      /* trailing junk in a number */
        "dense:3:init_param=-1",   /* init_param must be positive */
        "dense:2147483649",        /* over 2^31 */
        "dense:99999999999999999999999", /* overflows */
        "dense:3:relu,dense:4:tanhh",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ffn_layer_spec *s = (ffn_layer_spec *)&s; /* must be reset to NULL */
        size_t n = 99;
        ffn_clear_error();
        ffn_status st = ffn_spec_parse(bad[i], &s, &n);
        CHECK_MSG(st == FFN_ERR_ARG, "'%s' parsed (status %d)", bad[i], (int)st);
        CHECK_MSG(s == NULL && n == 0, "'%s': outputs not reset", bad[i]);
        CHECK_MSG(ffn_last_error()[0] != '\0', "'%s': no message", bad[i]);
        if (st == FFN_OK) free(s);
    }
    /* The message names the offending item. */
    ffn_layer_spec *s;
    size_t n;
    ffn_spec_parse("dense:3:relu,dense:4:tanhh", &s, &n);
    CHECK_MSG(strstr(ffn_last_error(), "item 2") && strstr(ffn_last_error(), "tanhh"),
              "message: %s", ffn_last_error());
    CHECK(ffn_spec_parse(NULL, &s, &n) == FFN_ERR_ARG);
}

static int same_spec(const ffn_layer_spec *a, const ffn_layer_spec *b)
{
    return a->kind == b->kind && a->units == b->units && a->act == b->act &&
           (a->act != FFN_ACT_LEAKY_RELU || a->act_param == b->act_param) &&
           a->init == b->init && a->init_param == b->init_param;
}

static void round_trip(const char *text, const char *canonical)
{
    ffn_layer_spec *s = NULL, *s2 = NULL;
    size_t n = 0, n2 = 0;
    CHECK_MSG(ffn_spec_parse(text, &s, &n) == FFN_OK, "'%s': %s", text, ffn_last_error());
    char *out = ffn_spec_format(s, n);
    CHECK(out != NULL);
    if (!out) {
        free(s);
        return;
    }
    if (canonical) CHECK_MSG(strcmp(out, canonical) == 0, "'%s' formats as '%s'", text, out);
    CHECK_MSG(ffn_spec_parse(out, &s2, &n2) == FFN_OK, "'%s': %s", out, ffn_last_error());
    int same = n == n2;
    for (size_t i = 0; same && i < n; i++) same = same_spec(&s[i], &s2[i]);
    CHECK_MSG(same, "'%s' -> '%s' does not parse back to the same spec", text, out);
    free(out);
    free(s);
    free(s2);
}

static void test_spec_format(void)
{
    round_trip("dense:128:relu,dense:10", "dense:128:relu,dense:10");
    round_trip("dense:7:linear", "dense:7");
    round_trip("dense:64:leaky_relu:slope=0.2:init=he_normal:init_param=0.1,dense:3:softmax",
               "dense:64:leaky_relu:slope=0.2:init=he_normal:init_param=0.1,dense:3:softmax");
    round_trip("dense:5:init=glorot_normal", "dense:5:init=xavier_normal");
    round_trip("dense:5:tanh,dense:6:gelu,dense:4:sigmoid", "dense:5:tanh,dense:6:gelu,dense:4:sigmoid");
    /* Numbers that need all nine digits of a float still round trip exactly
     * (a checkpoint's spec text rebuilds the very same model). */
    round_trip("dense:3:leaky_relu:slope=0.123456789:init=uniform:init_param=0.0123456789", NULL);
    round_trip("dense:3:leaky_relu:slope=-1.2345678e-05", NULL);
    /* The longest items: every field at its widest. */
    round_trip("dense:2147483648:leaky_relu:slope=-1.23456789e-05:init=xavier_uniform:"
               "init_param=1.23456789e-05,"
               "dense:2147483648:leaky_relu:slope=-1.23456789e-05:init=xavier_uniform:"
               "init_param=1.23456789e-05",
               NULL);
}

/* Every kind's items, with every option it takes: the canonical text is a
 * fixed point of parse -> format, and names only what differs from the
 * defaults. */
static void test_spec_every_kind(void)
{
    static const struct {
        const char *text, *canonical;
    } cases[] = {
        {"dense:4", "dense:4"},
        {"dense:4:identity:slope=0.01:init_param=0.05", "dense:4"},
        {"dense:4:leaky_relu:slope=0.3:init=kaiming_uniform:init_param=0.2:lora=2:lora_alpha=3",
         "dense:4:leaky_relu:slope=0.3:init=he_uniform:init_param=0.2:lora=2:lora_alpha=3"},
        {"dense:4:lora=2:lora_alpha=2", "dense:4:lora=2"},
        {"dropout:0.25", "dropout:0.25"},
        {"dropout:0", "dropout:0"},
        {"layernorm", "layernorm"},
        {"ffn:8", "ffn:8"},
        {"ffn:8:gelu", "ffn:8"},
        {"ffn:8:identity:init=lecun", "ffn:8:identity:init=lecun_normal"},
        {"ffn:8:leaky_relu:slope=0.5:init_param=0.1", "ffn:8:leaky_relu:slope=0.5:init_param=0.1"},
        {"swiglu:6", "swiglu:6"},
        {"swiglu:6:init=normal:init_param=0.02", "swiglu:6:init=normal:init_param=0.02"},
    };
    int seen[FFN_LAYER_KIND_COUNT] = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        round_trip(cases[i].text, cases[i].canonical);
        round_trip(cases[i].canonical, cases[i].canonical);
        ffn_layer_spec *s = NULL;
        size_t n = 0;
        if (ffn_spec_parse(cases[i].text, &s, &n) == FFN_OK && n == 1) seen[s[0].kind] = 1;
        free(s);
    }
    for (int k = 0; k < FFN_LAYER_KIND_COUNT; k++)
        CHECK_MSG(seen[k], "kind %s has no round-trip case", ffn_layer_kind_name((ffn_layer_kind)k));
    /* A whole spec of every kind, and its defaults filled in. */
    ffn_layer_spec *s = NULL;
    size_t n = 0;
    CHECK(ffn_spec_parse("dense:3:lora=4,dropout:0.5,layernorm,ffn:5,swiglu:7", &s, &n) == FFN_OK && n == 5);
    if (n == 5) {
        CHECK(s[0].lora_rank == 4 && s[0].lora_alpha == 4.0f && s[0].act == FFN_ACT_IDENTITY);
        CHECK(s[1].kind == FFN_LAYER_DROPOUT && s[1].rate == 0.5f && s[1].units == 0);
        CHECK(s[2].kind == FFN_LAYER_LAYERNORM && s[2].units == 0);
        CHECK(s[3].kind == FFN_LAYER_FFN && s[3].units == 5 && s[3].act == FFN_ACT_GELU && s[3].init == -1);
        CHECK(s[4].kind == FFN_LAYER_SWIGLU && s[4].units == 7 && s[4].init_param == FFN_INIT_DEFAULT_PARAM);
        char *text = ffn_spec_format(s, n);
        CHECK(text && strcmp(text, "dense:3:lora=4,dropout:0.5,layernorm,ffn:5,swiglu:7") == 0);
        free(text);
    }
    free(s);
}

/* The message ffn_spec_parse leaves for text (which must fail). */
static const char *spec_error(const char *text)
{
    ffn_layer_spec *s = NULL;
    size_t n = 0;
    ffn_clear_error();
    CHECK_MSG(ffn_spec_parse(text, &s, &n) == FFN_ERR_ARG, "'%s' parsed", text);
    free(s);
    return ffn_last_error();
}

static void test_spec_messages(void)
{
    static const struct {
        const char *text, *message;
    } cases[] = {
        {"dense:3,conv:3", "model spec item 2: unknown layer kind 'conv' (expected dense, dropout, layernorm, ffn or "
                           "swiglu)"},
        {"dense:3:bogus=1", "model spec item 1: unknown option 'bogus' for dense (expected init, init_param, slope, "
                            "lora or lora_alpha)"},
        {"ffn:3:lora=2", "model spec item 1: unknown option 'lora' for ffn (expected init, init_param or slope)"},
        {"swiglu:3:slope=2", "model spec item 1: unknown option 'slope' for swiglu (expected init or init_param)"},
        {"dropout:0.1:init=zeros", "model spec item 1: unknown option 'init' for dropout (expected none)"},
        {"layernorm:init=zeros", "model spec item 1: unknown option 'init' for layernorm (expected none)"},
        {"dense:3:swish", "model spec item 1: unknown activation 'swish' (expected identity, relu, leaky_relu, "
                          "sigmoid, tanh, gelu or softmax)"},
        {"ffn:3:swish", "model spec item 1: unknown activation 'swish' (expected identity, relu, leaky_relu, "
                        "sigmoid, tanh or gelu)"},
        {"ffn:3:softmax", "model spec item 1: softmax cannot be an ffn block's hidden activation"},
        {"swiglu:3:relu", "model spec item 1: swiglu takes no field 'relu'"},
        {"layernorm:3", "model spec item 1: layernorm takes no field '3'"},
        {"dropout:1", "model spec item 1: dropout needs a probability in [0, 1), got '1'"},
        {"dropout", "model spec item 1: dropout needs a probability in [0, 1), got ''"},
        {"dense:x", "model spec item 1: units must be an integer in [1, 2^31], got 'x'"},
        {"ffn:0", "model spec item 1: the hidden width must be an integer in [1, 2^31], got '0'"},
        {"swiglu", "model spec item 1: the hidden width must be an integer in [1, 2^31], got ''"},
        {"dense:3:init=orthogonal", "model spec item 1: unknown init 'orthogonal' (expected zeros, uniform, normal, "
                                    "xavier_uniform, xavier_normal, he_uniform, he_normal, lecun_uniform or "
                                    "lecun_normal)"},
        {"dense:3:lora_alpha=2", "model spec item 1: lora_alpha needs lora=R"},
        {"dense:3:lora=0", "model spec item 1: lora must be a rank in [1, 2^31], got '0'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = spec_error(cases[i].text);
        CHECK_MSG(strcmp(got, cases[i].message) == 0, "'%s': got '%s'", cases[i].text, got);
    }
    /* The kind list names every registered kind. */
    const char *msg = spec_error("conv");
    for (int k = 0; k < FFN_LAYER_KIND_COUNT; k++)
        CHECK_MSG(strstr(msg, ffn_layer_kind_name((ffn_layer_kind)k)) != NULL, "'%s' lacks kind %d", msg, k);
    /* The dense activation list names every activation. */
    msg = spec_error("dense:2:swish");
    for (int a = 0; a < FFN_ACT_COUNT; a++)
        CHECK_MSG(strstr(msg, ffn_act_name((ffn_act)a)) != NULL, "'%s' lacks activation %d", msg, a);
}

/* ---- layout */

enum { IN0 = 5, H1 = 7, H2 = 6, OUTD = 4, BATCH = 3 };
static const char *const SPEC = "dense:7:tanh,dense:6:gelu,dense:4";

static void test_layout(void)
{
    ffn_model *m = NULL;
    CHECK(ffn_model_create_from_text(&m, SPEC, IN0) == FFN_OK);
    if (!m) return;
    const size_t dims[4] = { IN0, H1, H2, OUTD };
    CHECK(ffn_model_layer_count(m) == 3);
    CHECK(ffn_model_input_dim(m) == IN0 && ffn_model_output_dim(m) == OUTD);
    size_t offset = 0;
    float *params = ffn_model_params(m), *grads = ffn_model_grads(m);
    for (size_t i = 0; i < 3; i++) {
        ffn_layer *l = ffn_model_layer(m, i);
        CHECK(l->in == dims[i] && l->out == dims[i + 1]);
        CHECK_MSG(l->param_offset == offset, "layer %zu offset %zu, want %zu", i, l->param_offset,
                  offset);
        CHECK(l->weight_count == dims[i] * dims[i + 1] && l->bias_count == dims[i + 1]);
        CHECK(l->W == params + offset && l->b == l->W + l->weight_count);
        CHECK(l->dW == grads + offset && l->db == l->dW + l->weight_count);
        CHECK(ffn_model_layer_const(m, i) == l);
        offset += l->weight_count + l->bias_count;
    }
    /* 5*7+7 + 7*6+6 + 6*4+4 = 42 + 48 + 28 */
    CHECK(offset == 118 && ffn_model_param_count(m) == 118);
    char *text = ffn_model_spec_text(m);
    CHECK(text && strcmp(text, SPEC) == 0);
    free(text);

    /* Initialisation: deterministic per seed; biases zero; weights not. */
    ffn_model_init_params(m, 17);
    float *copy = malloc(118 * sizeof *copy);
    memcpy(copy, params, 118 * sizeof *copy);
    ffn_model_init_params(m, 17);
    CHECK(memcmp(copy, params, 118 * sizeof *copy) == 0);
    ffn_model_init_params(m, 18);
    CHECK(memcmp(copy, params, 118 * sizeof *copy) != 0);
    for (size_t i = 0; i < 3; i++) {
        ffn_layer *l = ffn_model_layer(m, i);
        int bias_zero = 1, weight_nonzero = 0;
        for (size_t j = 0; j < l->bias_count; j++) bias_zero &= l->b[j] == 0.0f;
        for (size_t j = 0; j < l->weight_count; j++) weight_nonzero |= l->W[j] != 0.0f;
        CHECK(bias_zero && weight_nonzero);
    }
    free(copy);
    ffn_model_free(m);

    CHECK(ffn_model_create_from_text(&m, SPEC, 0) == FFN_ERR_ARG && m == NULL);
    CHECK(ffn_model_create_from_text(&m, "dense:3:nope", 4) == FFN_ERR_ARG && m == NULL);
    ffn_model_free(NULL);
}

/* ---- whole-model gradient: double reference of 5 -> 7 tanh -> 6 gelu -> 4
 * with softmax_ce over integer labels, scale 1 / batch. */

static double ref_model_loss(const double *p, const float *x, const int32_t *labels)
{
    const size_t dims[4] = { IN0, H1, H2, OUTD };
    double total = 0;
    for (size_t r = 0; r < BATCH; r++) {
        double a[8], next[8];
        for (size_t i = 0; i < IN0; i++) a[i] = x[r * IN0 + i];
        size_t off = 0;
        for (size_t l = 0; l < 3; l++) {
            const size_t in = dims[l], out = dims[l + 1];
            const double *W = p + off, *b = W + in * out;
            for (size_t o = 0; o < out; o++) {
                double z = b[o];
                for (size_t i = 0; i < in; i++) z += W[o * in + i] * a[i];
                next[o] = l == 0 ? tanh(z) : l == 1 ? 0.5 * z * (1 + erf(z / sqrt(2.0))) : z;
            }
            memcpy(a, next, out * sizeof *a);
            off += in * out + out;
        }
        double sum = 0;
        for (size_t c = 0; c < OUTD; c++) sum += exp(a[c]);
        total += log(sum) - a[labels[r]];
    }
    return total / BATCH;
}

/* Forward, loss backward, model backward; returns the loss. */
static double run_backward(ffn_model *m, const float *x, const int32_t *labels, int accumulate,
                           ready_log *log)
{
    float dout[BATCH * OUTD];
    const float *out = ffn_model_forward(m, x, BATCH);
    ffn_targets t = { .labels = labels, .values = NULL };
    double loss = ffn_loss_backward(FFN_LOSS_SOFTMAX_CE, out, t, BATCH, OUTD, 1.0f / BATCH, dout);
    ffn_model_backward(m, x, BATCH, dout, accumulate, log ? ready_log_add : NULL, log);
    return loss / BATCH;
}

static void test_model_gradient(void)
{
    ffn_model *m = NULL;
    CHECK(ffn_model_create_from_text(&m, SPEC, IN0) == FFN_OK);
    if (!m) return;
    CHECK(ffn_model_reserve(m, BATCH) == FFN_OK);
    CHECK(ffn_model_max_batch(m) == BATCH);
    ffn_model_init_params(m, 4242);
    const size_t np = ffn_model_param_count(m);
    float *params = ffn_model_params(m), *grads = ffn_model_grads(m);
    /* Non-zero biases, so their gradients flow through every path. */
    ffn_rng rng = ffn_rng_make(1, 2);
    for (size_t i = 0; i < 3; i++) {
        ffn_layer *l = ffn_model_layer(m, i);
        ffn_rng_fill_uniform(&rng, l->b, l->bias_count, -0.5f, 0.5f);
    }
    float x[BATCH * IN0];
    ffn_rng_fill_uniform(&rng, x, BATCH * IN0, -2, 2);
    const int32_t labels[BATCH] = { 3, 0, 2 };

    double *pd = malloc(np * sizeof *pd);
    float *g1 = malloc(np * sizeof *g1);
    for (size_t i = 0; i < np; i++) pd[i] = params[i];
    for (size_t i = 0; i < np; i++) grads[i] = NAN; /* every gradient must be written */

    ready_log log = { 0 };
    double loss = run_backward(m, x, labels, 0, &log);
    /* Loss: float forward against the double reference, 1e-5 relative. */
    double ref = ref_model_loss(pd, x, labels);
    CHECK_MSG(fabs(loss - ref) <= 1e-5 * fabs(ref), "loss %.9g, reference %.9g", loss, ref);

    /* Every parameter's gradient against a central difference (h = 1e-3) of
     * the double reference: relative error below 1e-3 with a floor of 1e-3
     * on |numeric| (1e-6 absolute). Float rounding through three layers is
     * ~1e-6 relative and the O(h^2) truncation ~1e-7, while a wrong layer
     * offset, a missing activation derivative or a swapped scratch buffer
     * gives O(1) errors. */
    double worst = 0;
    size_t worst_i = 0;
    for (size_t i = 0; i < np; i++) {
        const double h = 1e-3, saved = pd[i];
        pd[i] = saved + h;
        double up = ref_model_loss(pd, x, labels);
        pd[i] = saved - h;
        double down = ref_model_loss(pd, x, labels);
        pd[i] = saved;
        double numeric = (up - down) / (2 * h);
        double err = fabs(grads[i] - numeric) / fmax(fabs(numeric), 1e-3);
        if (!(err <= worst)) worst = err, worst_i = i;
    }
    CHECK_MSG(worst < 1e-3, "model gradient rel err %g at parameter %zu", worst, worst_i);

    /* Callback: every trainable layer once, last layer first, exactly its range. */
    CHECK(log.n == 3);
    if (log.n == 3) {
        CHECK(log.offset[0] == 90 && log.count[0] == 28);
        CHECK(log.offset[1] == 42 && log.count[1] == 48);
        CHECK(log.offset[2] == 0 && log.count[2] == 42);
    }
    memcpy(g1, grads, np * sizeof *g1);

    /* accumulate = 1 adds: a second identical pass doubles every gradient
     * (1e-6 relative: one float add of equal values, up to sgemm ordering). */
    run_backward(m, x, labels, 1, NULL);
    double acc = 0;
    for (size_t i = 0; i < np; i++)
        acc = fmax(acc, fabs(grads[i] - 2 * g1[i]) / fmax(fabs(2 * g1[i]), 1e-3));
    CHECK_MSG(acc < 1e-6, "accumulate rel err %g", acc);
    /* accumulate = 0 overwrites: back to the single gradient. */
    run_backward(m, x, labels, 0, NULL);
    CHECK(memcmp(grads, g1, np * sizeof *g1) == 0);

    /* Frozen middle layer: its gradient range is neither written nor
     * reported; the layers around it get the same gradients as before (the
     * gradient still flows through the frozen layer to layer 0). */
    ffn_model_set_frozen(m, 1, 1);
    CHECK(ffn_model_layer(m, 1)->frozen);
    for (size_t i = 0; i < np; i++) grads[i] = -7.0f;
    memset(&log, 0, sizeof log);
    run_backward(m, x, labels, 0, &log);
    CHECK(log.n == 2);
    if (log.n == 2) {
        CHECK(log.offset[0] == 90 && log.count[0] == 28);
        CHECK(log.offset[1] == 0 && log.count[1] == 42);
    }
    int untouched = 1;
    for (size_t i = 42; i < 90; i++) untouched &= grads[i] == -7.0f;
    CHECK_MSG(untouched, "frozen layer's gradients were written");
    CHECK(memcmp(grads, g1, 42 * sizeof *g1) == 0);
    CHECK(memcmp(grads + 90, g1 + 90, 28 * sizeof *g1) == 0);

    /* Frozen first layer: only the top two are computed and reported. */
    ffn_model_set_frozen(m, 1, 0);
    ffn_model_set_frozen(m, 0, 1);
    for (size_t i = 0; i < np; i++) grads[i] = -7.0f;
    memset(&log, 0, sizeof log);
    run_backward(m, x, labels, 0, &log);
    CHECK(log.n == 2);
    if (log.n == 2) {
        CHECK(log.offset[0] == 90 && log.count[0] == 28);
        CHECK(log.offset[1] == 42 && log.count[1] == 48);
    }
    untouched = 1;
    for (size_t i = 0; i < 42; i++) untouched &= grads[i] == -7.0f;
    CHECK_MSG(untouched, "frozen first layer's gradients were written");
    CHECK(memcmp(grads + 42, g1 + 42, 76 * sizeof *g1) == 0);

    /* Everything frozen: no callback, no gradient. */
    for (size_t i = 0; i < 3; i++) ffn_model_set_frozen(m, i, 1);
    for (size_t i = 0; i < np; i++) grads[i] = -7.0f;
    memset(&log, 0, sizeof log);
    run_backward(m, x, labels, 0, &log);
    CHECK(log.n == 0);
    untouched = 1;
    for (size_t i = 0; i < np; i++) untouched &= grads[i] == -7.0f;
    CHECK(untouched);
    /* Parameters are never changed by forward/backward. */
    int same = 1;
    for (size_t i = 0; i < np; i++) same &= params[i] == (float)pd[i];
    CHECK(same);

    free(pd);
    free(g1);
    ffn_model_free(m);
}

/* A model whose layers keep z apart from y (gelu, leaky_relu with slope <= 0)
 * next to ones that share it: the forward output matches a layer-by-layer
 * recomputation with ffn_dense_forward. */
static void test_forward_matches_layers(void)
{
    ffn_model *m = NULL;
    CHECK(ffn_model_create_from_text(&m, "dense:6:leaky_relu:slope=0,dense:5:relu,dense:3:softmax",
                                     4) == FFN_OK);
    if (!m) return;
    CHECK(ffn_model_reserve(m, 2) == FFN_OK);
    ffn_model_init_params(m, 3);
    float x[8] = { 1, -1, 0.5f, 2, -0.3f, 0.7f, 1.5f, -2 };
    const float *out = ffn_model_forward(m, x, 2);
    float a0[12], z0[12], a1[10], a2[6];
    ffn_layer *l0 = ffn_model_layer(m, 0), *l1 = ffn_model_layer(m, 1), *l2 = ffn_model_layer(m, 2);
    ffn_dense_forward(z0, a0, x, l0->W, l0->b, 2, 4, 6, FFN_ACT_LEAKY_RELU, 0.0f);
    ffn_dense_forward(a1, a1, a0, l1->W, l1->b, 2, 6, 5, FFN_ACT_RELU, 0);
    ffn_dense_forward(a2, a2, a1, l2->W, l2->b, 2, 5, 3, FFN_ACT_SOFTMAX, 0);
    CHECK(memcmp(out, a2, sizeof a2) == 0);
    CHECK(l0->z != l0->y && l1->z == l1->y);
    ffn_model_free(m);
}

/* Moving the gradients re-points every view, the dense W/b ones included. */
static void test_grad_buffer_moves_views(void)
{
    ffn_model *m = NULL;
    CHECK(ffn_model_create_from_text(&m, "dense:3:relu,layernorm,dense:2", 4) == FFN_OK);
    if (!m) return;
    size_t P = ffn_model_param_count(m);
    for (size_t i = 0; i < P; i++) ffn_model_grads(m)[i] = (float)i;
    float *mine = malloc(P * sizeof *mine);
    ffn_model_use_grad_buffer(m, mine);
    CHECK(ffn_model_grads(m) == mine && mine[P - 1] == (float)(P - 1));
    for (size_t i = 0; i < ffn_model_layer_count(m); i++) {
        const ffn_layer *l = ffn_model_layer(m, i);
        for (size_t k = 0; k < l->tensor_count; k++) CHECK(l->tensors[k].grad == mine + l->tensors[k].offset);
        if (l->spec.kind == FFN_LAYER_DENSE) {
            CHECK(l->dW == mine + l->param_offset && l->db == l->dW + l->weight_count);
            CHECK(l->W == ffn_model_params(m) + l->param_offset && l->weight_count == l->out * l->in);
        } else {
            CHECK(l->W == NULL && l->dW == NULL && l->weight_count == 0);
        }
    }
    ffn_model_free(m);
    free(mine);
}

/* ffn_model_set_grad_piece: a large weight's gradient in pieces, each reported
 * as computed. The ranges stay contiguous and descending, cover what one
 * piece a layer covers, and the gradients are the same dot products over the
 * batch (within rounding), in fp32 and, where the CPU has it, bf16. Layers 1536x512 and 512x1536 at batch 64: products large enough for
 * the GEMM libraries' own blocking. */
static void test_grad_pieces(void)
{
    enum { PIECE_IN = 512, PIECE_BATCH = 64 };
    for (int bf16 = 0; bf16 < 2; bf16++) {
        ffn_model *m = NULL;
        CHECK(ffn_model_create_from_text(&m, "dense:1536:gelu,dense:512", PIECE_IN) == FFN_OK);
        if (!m) return;
        if (bf16 && ffn_model_set_precision(m, FFN_PRECISION_BF16) != FFN_OK) { /* no bf16 on this CPU */
            ffn_model_free(m);
            break;
        }
        CHECK(ffn_model_reserve(m, PIECE_BATCH) == FFN_OK);
        ffn_model_init_params(m, 77);
        const size_t np = ffn_model_param_count(m);
        float *x = malloc(PIECE_BATCH * PIECE_IN * sizeof *x), *dout = malloc(PIECE_BATCH * 512 * sizeof *dout);
        float *whole = malloc(np * sizeof *whole);
        ffn_rng rng = ffn_rng_make(5, 6);
        ffn_rng_fill_uniform(&rng, x, PIECE_BATCH * PIECE_IN, -1, 1);
        ready_log logs[2];
        for (int pieces = 0; pieces < 2; pieces++) {
            ffn_model_set_grad_piece(m, pieces ? 100000 : 0);
            ffn_model_forward(m, x, PIECE_BATCH);
            ffn_rng r2 = ffn_rng_make(7, 8);
            ffn_rng_fill_uniform(&r2, dout, PIECE_BATCH * 512, -1, 1);
            memset(&logs[pieces], 0, sizeof logs[pieces]);
            ffn_model_backward(m, x, PIECE_BATCH, dout, 0, ready_log_add, &logs[pieces]);
            if (!pieces) memcpy(whole, ffn_model_grads(m), np * sizeof *whole);
        }
        /* Within float rounding: OpenBLAS may sum a piece's edge rows in another order. */
        double worst = 0, largest = 0;
        for (size_t i = 0; i < np; i++) {
            worst = fmax(worst, fabs((double)whole[i] - ffn_model_grads(m)[i]));
            largest = fmax(largest, fabs((double)whole[i]));
        }
        CHECK_MSG(largest > 0 && worst <= 1e-5 * largest, "%s: gradients in pieces differ by %g (largest %g)",
                  bf16 ? "bf16" : "fp32", worst, largest);
        /* One range a layer; in pieces of 100000 floats or so, rows rounded up to 64: 4 of 128
         * rows for layer 1 (1536 wide), 6 of 256 for layer 0 (512 wide). */
        CHECK(logs[0].n == 2);
        CHECK_MSG(logs[1].n == 10, "%zu ranges reported in pieces", logs[1].n);
        size_t top = np, contiguous = logs[1].n <= READY_LOG_MAX;
        for (size_t i = 0; i < logs[1].n && i < READY_LOG_MAX; i++) {
            contiguous &= logs[1].offset[i] + logs[1].count[i] == top && logs[1].count[i] > 0;
            top = logs[1].offset[i];
        }
        CHECK_MSG(contiguous && top == 0, "the pieces' ranges are not contiguous from the top down to 0");
        /* The first piece carries the last layer's bias too. */
        const ffn_layer *last = ffn_model_layer(m, 1);
        CHECK(logs[1].offset[0] + logs[1].count[0] == last->param_offset + last->param_count &&
              logs[1].count[0] == 128 * 1536 + 512);
        /* Accumulating (the last micro-batch of --accumulate K): every piece adds to what is
         * there, so the same batch again doubles each gradient. */
        ffn_model_forward(m, x, PIECE_BATCH);
        ffn_rng r3 = ffn_rng_make(7, 8);
        ffn_rng_fill_uniform(&r3, dout, PIECE_BATCH * 512, -1, 1);
        ready_log acc_log = { 0 };
        ffn_model_backward(m, x, PIECE_BATCH, dout, 1, ready_log_add, &acc_log);
        worst = 0;
        for (size_t i = 0; i < np; i++) worst = fmax(worst, fabs(2.0 * whole[i] - ffn_model_grads(m)[i]));
        CHECK_MSG(worst <= 2e-5 * largest && acc_log.n == 10, "%s: accumulated in pieces: off by %g, %zu ranges",
                  bf16 ? "bf16" : "fp32", worst, acc_log.n);
        ffn_model_free(m);
        free(x), free(dout), free(whole);
    }
}

int main(void)
{
    test_spec_good();
    test_spec_bad();
    test_spec_format();
    test_spec_every_kind();
    test_spec_messages();
    test_layout();
    test_grad_buffer_moves_views();
    test_model_gradient();
    test_forward_matches_layers();
    test_grad_pieces();
    return check_done("test_model");
}
