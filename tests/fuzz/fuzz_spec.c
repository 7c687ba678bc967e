/* libFuzzer target: the model-spec parser and its canonical formatter.
 *
 * The input is spec text. Properties checked on every input:
 *  - ffn_spec_parse never crashes: it returns a layer list or a clean error
 *    with a message;
 *  - a parsed spec formats, and the canonical text parses back to the same
 *    model: parse(format(parse(x))) == parse(x), field by field where the
 *    field means something for the layer's kind (a slope only matters to
 *    leaky_relu, so "dense:4:relu:slope=2" and "dense:4:relu" are the same model);
 *  - the canonical text is a fixed point: format(parse(format(p))) == format(p);
 *  - a small parsed model builds, runs forward and backward on a small batch
 *    under the sanitizers (layer shapes, caches and scratch sizes). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/model.h"
#include "ffn/status.h"

#define MAX_TEXT 4096

static void die(const char *what, const char *input, const char *canon)
{
    fprintf(stderr, "fuzz_spec: %s\n  input: '%s'\n  canonical: '%s'\n  last error: %s\n", what, input,
            canon ? canon : "(null)", ffn_last_error());
    abort();
}

static int same_float(float a, float b) { return a == b || (isnan(a) && isnan(b)); }

/* Whether two parsed layers describe the same layer. */
static int same_layer(const ffn_layer_spec *a, const ffn_layer_spec *b)
{
    if (a->kind != b->kind || a->units != b->units) return 0;
    switch (a->kind) {
    case FFN_LAYER_DROPOUT: return same_float(a->rate, b->rate);
    case FFN_LAYER_LAYERNORM: return 1;
    default: break;
    }
    if (a->init != b->init || !same_float(a->init_param, b->init_param)) return 0;
    if (a->kind != FFN_LAYER_SWIGLU) {
        if (a->act != b->act) return 0;
        if (a->act == FFN_ACT_LEAKY_RELU && !same_float(a->act_param, b->act_param)) return 0;
    }
    if (a->kind == FFN_LAYER_DENSE) {
        if (a->lora_rank != b->lora_rank) return 0;
        if (a->lora_rank && !same_float(a->lora_alpha, b->lora_alpha)) return 0;
    }
    return 1;
}

static void ready(void *user, size_t offset, size_t count)
{
    (void)user;
    (void)offset;
    (void)count;
}

/* Builds and runs the model when it is small enough to be quick. */
static void run_model(const ffn_layer_spec *layers, size_t count, size_t input_dim)
{
    if (count > 8) return;
    for (size_t i = 0; i < count; i++)
        if (layers[i].units > 24 || layers[i].lora_rank > 8) return;
    ffn_model *m = NULL;
    if (ffn_model_create(&m, layers, count, input_dim) != FFN_OK) {
        if (!*ffn_last_error()) die("ffn_model_create failed without a message", "", NULL);
        return;
    }
    enum { BATCH = 3 };
    if (ffn_model_reserve(m, BATCH) == FFN_OK) {
        ffn_model_init_params(m, 7);
        size_t out = ffn_model_output_dim(m);
        float x[BATCH * 32], dx[BATCH * 32], dout[BATCH * 64];
        if (input_dim <= 32 && out <= 64) {
            for (size_t i = 0; i < BATCH * input_dim; i++) x[i] = (float)((int)(i % 7) - 3) * 0.25f;
            ffn_model_forward(m, x, BATCH);
            ffn_model_forward_train(m, x, BATCH, 1, 2, NULL);
            for (size_t i = 0; i < BATCH * out; i++) dout[i] = 0.5f;
            ffn_model_backward_dx(m, x, BATCH, dout, 0, ready, NULL, dx);
        }
    }
    ffn_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_TEXT) return 0;
    char text[MAX_TEXT + 1];
    memcpy(text, data, size);
    text[size] = '\0';

    ffn_clear_error();
    ffn_layer_spec *a = NULL;
    size_t na = 0;
    if (ffn_spec_parse(text, &a, &na) != FFN_OK) {
        if (a || na) die("failed parse returned layers", text, NULL);
        if (!*ffn_last_error()) die("failed parse left no message", text, NULL);
        return 0;
    }
    if (!a || na == 0) die("parse succeeded with no layers", text, NULL);

    char *canon = ffn_spec_format(a, na);
    if (!canon) die("ffn_spec_format returned NULL", text, NULL);
    ffn_layer_spec *b = NULL;
    size_t nb = 0;
    if (ffn_spec_parse(canon, &b, &nb) != FFN_OK) die("the canonical text does not parse", text, canon);
    if (na != nb) die("the canonical text has another layer count", text, canon);
    for (size_t i = 0; i < na; i++)
        if (!same_layer(&a[i], &b[i])) die("the canonical text parses to another layer", text, canon);
    char *again = ffn_spec_format(b, nb);
    if (!again || strcmp(again, canon) != 0) die("formatting is not idempotent", text, canon);

    run_model(a, na, 1 + size % 5);

    free(again);
    free(b);
    free(canon);
    free(a);
    return 0;
}
