/* ffn — the model: spec parsing, flat parameter/gradient buffers, forward and backward. */
#include "ffn/model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/dense.h"
#include "ffn/mem.h"
#include "ffn/rng.h"

struct ffn_model {
    size_t input_dim;
    size_t layer_count;
    ffn_layer *layers;
    size_t param_count;
    float *params, *grads;
    size_t max_batch;
    float *activations; /* every layer's z and y, one arena */
    float *scratch[2];  /* backward ping-pong, [max_batch, widest layer] */
};

/* ---- spec text ---------------------------------------------------------- */

static int parse_size(const char *s, size_t *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || s[0] == '-' || v == 0 || v > (1ull << 31)) return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_float(const char *s, float *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || v != v) return -1;
    *out = (float)v;
    return 0;
}

static ffn_status parse_item(char *item, size_t index, ffn_layer_spec *spec)
{
    char *save = NULL;
    char *kind = strtok_r(item, ":", &save);
    if (!kind)
        return ffn_fail(FFN_ERR_ARG, "model spec item %zu is empty (expected e.g. dense:128:relu)",
                        index + 1);
    if (strcmp(kind, "dense") != 0)
        return ffn_fail(FFN_ERR_ARG, "model spec item %zu: unknown layer kind '%s' (expected dense)",
                        index + 1, kind);
    *spec = (ffn_layer_spec){.kind = FFN_LAYER_DENSE, .act = FFN_ACT_IDENTITY,
                             .act_param = FFN_LEAKY_RELU_DEFAULT_SLOPE, .init = -1,
                             .init_param = FFN_INIT_DEFAULT_PARAM};
    char *units = strtok_r(NULL, ":", &save);
    if (parse_size(units, &spec->units) != 0)
        return ffn_fail(FFN_ERR_ARG,
                        "model spec item %zu: units must be an integer in [1, 2^31], got '%s'",
                        index + 1, units ? units : "");
    for (char *field; (field = strtok_r(NULL, ":", &save));) {
        char *eq = strchr(field, '=');
        if (!eq) {
            int act = ffn_act_from_name(field);
            if (act < 0)
                return ffn_fail(FFN_ERR_ARG,
                                "model spec item %zu: unknown activation '%s' (expected identity, "
                                "relu, leaky_relu, sigmoid, tanh, gelu or softmax)",
                                index + 1, field);
            spec->act = (ffn_act)act;
            continue;
        }
        *eq = '\0';
        const char *key = field, *value = eq + 1;
        if (strcmp(key, "init") == 0) {
            spec->init = ffn_init_from_name(value);
            if (spec->init < 0)
                return ffn_fail(FFN_ERR_ARG, "model spec item %zu: unknown init '%s'", index + 1,
                                value);
        } else if (strcmp(key, "init_param") == 0) {
            if (parse_float(value, &spec->init_param) != 0 || !(spec->init_param > 0))
                return ffn_fail(FFN_ERR_ARG,
                                "model spec item %zu: init_param must be a positive number, got '%s'",
                                index + 1, value);
        } else if (strcmp(key, "slope") == 0) {
            if (parse_float(value, &spec->act_param) != 0)
                return ffn_fail(FFN_ERR_ARG,
                                "model spec item %zu: slope must be a number, got '%s'", index + 1,
                                value);
        } else {
            return ffn_fail(FFN_ERR_ARG,
                            "model spec item %zu: unknown option '%s' (expected init, init_param "
                            "or slope)",
                            index + 1, key);
        }
    }
    return FFN_OK;
}

ffn_status ffn_spec_parse(const char *text, ffn_layer_spec **layers, size_t *count)
{
    *layers = NULL;
    *count = 0;
    if (!text || !*text) return ffn_fail(FFN_ERR_ARG, "model spec is empty (expected e.g. dense:128:relu,dense:10)");
    size_t n = 1;
    for (const char *p = text; *p; p++) n += *p == ',';
    char *copy = strdup(text);
    ffn_layer_spec *out = calloc(n, sizeof *out);
    if (!copy || !out) {
        free(copy);
        free(out);
        return ffn_fail(FFN_ERR_NOMEM, "out of memory parsing the model spec");
    }
    ffn_status st = FFN_OK;
    char *item = copy;
    for (size_t i = 0; i < n && st == FFN_OK; i++) {
        char *comma = strchr(item, ',');
        if (comma) *comma = '\0';
        st = parse_item(item, i, &out[i]);
        item = comma ? comma + 1 : item + strlen(item);
    }
    free(copy);
    if (st != FFN_OK) {
        free(out);
        return st;
    }
    *layers = out;
    *count = n;
    return FFN_OK;
}

static ffn_init default_init(ffn_act act)
{
    switch (act) {
    case FFN_ACT_RELU:
    case FFN_ACT_LEAKY_RELU:
    case FFN_ACT_GELU: return FFN_INIT_HE_UNIFORM;
    default: return FFN_INIT_XAVIER_UNIFORM;
    }
}

/* Shortest "%.Ng" that parses back (as parse_float does) to the same float:
 * "0.2" rather than "0.200000003", and never fewer digits than exactness
 * needs, so a spec saved in a checkpoint rebuilds the very same model. */
static void format_float(char *buf, size_t size, float v)
{
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, size, "%.*g", digits, (double)v);
        if ((float)strtod(buf, NULL) == v) return;
    }
}

/* Longest item: "dense:" + 20 digits + ":leaky_relu" + ":slope=" + 15 +
 * ":init=" + 14 + ":init_param=" + 15 = 106 characters, plus the comma. */
enum { SPEC_ITEM_MAX = 160 };

static size_t format_item(char *buf, const ffn_layer_spec *s)
{
    char num[32];
    int len = snprintf(buf, SPEC_ITEM_MAX, "dense:%zu", s->units);
    if (s->act != FFN_ACT_IDENTITY)
        len += snprintf(buf + len, SPEC_ITEM_MAX - (size_t)len, ":%s", ffn_act_name(s->act));
    if (s->act == FFN_ACT_LEAKY_RELU && s->act_param != FFN_LEAKY_RELU_DEFAULT_SLOPE) {
        format_float(num, sizeof num, s->act_param);
        len += snprintf(buf + len, SPEC_ITEM_MAX - (size_t)len, ":slope=%s", num);
    }
    if (s->init >= 0)
        len += snprintf(buf + len, SPEC_ITEM_MAX - (size_t)len, ":init=%s",
                        ffn_init_name((ffn_init)s->init));
    if (s->init_param != FFN_INIT_DEFAULT_PARAM) {
        format_float(num, sizeof num, s->init_param);
        len += snprintf(buf + len, SPEC_ITEM_MAX - (size_t)len, ":init_param=%s", num);
    }
    return (size_t)len;
}

char *ffn_spec_format(const ffn_layer_spec *layers, size_t count)
{
    size_t cap;
    if (ffn_size_mul(count, SPEC_ITEM_MAX + 1, &cap) != 0 || ffn_size_add(cap, 1, &cap) != 0)
        return NULL;
    char *text = malloc(cap);
    if (!text) return NULL;
    size_t len = 0;
    for (size_t i = 0; i < count; i++) {
        char item[SPEC_ITEM_MAX];
        if (i) text[len++] = ',';
        size_t n = format_item(item, &layers[i]);
        memcpy(text + len, item, n);
        len += n;
    }
    text[len] = '\0';
    return text;
}

/* ---- construction ------------------------------------------------------- */

ffn_status ffn_model_create(ffn_model **out, const ffn_layer_spec *layers, size_t count,
                            size_t input_dim)
{
    *out = NULL;
    if (count == 0) return ffn_fail(FFN_ERR_ARG, "model has no layers");
    if (input_dim == 0) return ffn_fail(FFN_ERR_ARG, "model input width must be positive");
    ffn_model *m = calloc(1, sizeof *m);
    if (!m) return ffn_fail(FFN_ERR_NOMEM, "out of memory creating the model");
    m->layers = calloc(count, sizeof *m->layers);
    if (!m->layers) {
        free(m);
        return ffn_fail(FFN_ERR_NOMEM, "out of memory creating the model");
    }
    m->input_dim = input_dim;
    m->layer_count = count;
    size_t offset = 0, in = input_dim;
    for (size_t i = 0; i < count; i++) {
        ffn_layer *l = &m->layers[i];
        l->spec = layers[i];
        l->in = in;
        l->out = layers[i].units;
        l->param_offset = offset;
        l->bias_count = l->out;
        if (ffn_size_mul(l->in, l->out, &l->weight_count) != 0 ||
            ffn_size_add(offset, l->weight_count, &offset) != 0 ||
            ffn_size_add(offset, l->bias_count, &offset) != 0) {
            ffn_model_free(m);
            return ffn_fail(FFN_ERR_NOMEM, "model spec item %zu: parameter count overflows", i + 1);
        }
        in = l->out;
    }
    m->param_count = offset;
    m->params = ffn_alloc_floats(offset);
    m->grads = ffn_alloc_floats(offset);
    if (!m->params || !m->grads) {
        ffn_model_free(m);
        return ffn_fail(FFN_ERR_NOMEM, "out of memory for %zu parameters", offset);
    }
    for (size_t i = 0; i < count; i++) {
        ffn_layer *l = &m->layers[i];
        l->W = m->params + l->param_offset;
        l->b = l->W + l->weight_count;
        l->dW = m->grads + l->param_offset;
        l->db = l->dW + l->weight_count;
    }
    *out = m;
    return FFN_OK;
}

ffn_status ffn_model_create_from_text(ffn_model **out, const char *spec, size_t input_dim)
{
    ffn_layer_spec *layers;
    size_t count;
    ffn_status st = ffn_spec_parse(spec, &layers, &count);
    if (st != FFN_OK) return st;
    st = ffn_model_create(out, layers, count, input_dim);
    free(layers);
    return st;
}

void ffn_model_free(ffn_model *m)
{
    if (!m) return;
    ffn_free(m->params);
    ffn_free(m->grads);
    ffn_free(m->activations);
    ffn_free(m->scratch[0]);
    ffn_free(m->scratch[1]);
    free(m->layers);
    free(m);
}

size_t ffn_model_layer_count(const ffn_model *m) { return m->layer_count; }
ffn_layer *ffn_model_layer(ffn_model *m, size_t i) { return &m->layers[i]; }
const ffn_layer *ffn_model_layer_const(const ffn_model *m, size_t i) { return &m->layers[i]; }
size_t ffn_model_input_dim(const ffn_model *m) { return m->input_dim; }
size_t ffn_model_output_dim(const ffn_model *m) { return m->layers[m->layer_count - 1].out; }
size_t ffn_model_param_count(const ffn_model *m) { return m->param_count; }
float *ffn_model_params(ffn_model *m) { return m->params; }
float *ffn_model_grads(ffn_model *m) { return m->grads; }
size_t ffn_model_max_batch(const ffn_model *m) { return m->max_batch; }
void ffn_model_set_frozen(ffn_model *m, size_t layer, int frozen) { m->layers[layer].frozen = frozen; }

char *ffn_model_spec_text(const ffn_model *m)
{
    ffn_layer_spec *specs = malloc(m->layer_count * sizeof *specs);
    if (!specs) return NULL;
    for (size_t i = 0; i < m->layer_count; i++) specs[i] = m->layers[i].spec;
    char *text = ffn_spec_format(specs, m->layer_count);
    free(specs);
    return text;
}

void ffn_model_init_layer(ffn_model *m, size_t i, uint64_t seed)
{
    ffn_layer *l = &m->layers[i];
    ffn_init kind = l->spec.init >= 0 ? (ffn_init)l->spec.init : default_init(l->spec.act);
    ffn_rng rng = ffn_rng_make(seed, FFN_STREAM_INIT + ((uint64_t)i << 8));
    ffn_init_fill(kind, l->spec.init_param, l->W, l->out, l->in, &rng);
    memset(l->b, 0, l->bias_count * sizeof *l->b);
}

void ffn_model_init_params(ffn_model *m, uint64_t seed)
{
    for (size_t i = 0; i < m->layer_count; i++) ffn_model_init_layer(m, i, seed);
}

ffn_status ffn_model_reserve(ffn_model *m, size_t max_batch)
{
    if (max_batch <= m->max_batch) return FFN_OK;
    ffn_free(m->activations);
    ffn_free(m->scratch[0]);
    ffn_free(m->scratch[1]);
    m->activations = m->scratch[0] = m->scratch[1] = NULL;
    m->max_batch = 0;
    size_t total = 0, widest = m->input_dim;
    for (size_t i = 0; i < m->layer_count; i++) {
        const ffn_layer *l = &m->layers[i];
        size_t per = 0, copies = ffn_act_backward_needs_z(l->spec.act, l->spec.act_param) ? 2 : 1;
        if (ffn_size_mul(max_batch, l->out, &per) != 0 || ffn_size_mul(per, copies, &per) != 0 ||
            ffn_size_add(total, per, &total) != 0)
            return ffn_fail(FFN_ERR_NOMEM, "activation size overflows for batch %zu", max_batch);
        if (l->out > widest) widest = l->out;
    }
    size_t scratch;
    if (ffn_size_mul(max_batch, widest, &scratch) != 0)
        return ffn_fail(FFN_ERR_NOMEM, "activation size overflows for batch %zu", max_batch);
    m->activations = ffn_alloc_floats(total);
    m->scratch[0] = ffn_alloc_floats(scratch);
    m->scratch[1] = ffn_alloc_floats(scratch);
    if (!m->activations || !m->scratch[0] || !m->scratch[1])
        return ffn_fail(FFN_ERR_NOMEM, "out of memory for activations of batch %zu", max_batch);
    float *p = m->activations;
    for (size_t i = 0; i < m->layer_count; i++) {
        ffn_layer *l = &m->layers[i];
        l->y = p;
        p += max_batch * l->out;
        if (ffn_act_backward_needs_z(l->spec.act, l->spec.act_param)) {
            l->z = p;
            p += max_batch * l->out;
        } else {
            l->z = l->y;
        }
    }
    m->max_batch = max_batch;
    return FFN_OK;
}

/* ---- forward and backward ----------------------------------------------- */

const float *ffn_model_forward(ffn_model *m, const float *x, size_t batch)
{
    const float *in = x;
    for (size_t i = 0; i < m->layer_count; i++) {
        ffn_layer *l = &m->layers[i];
        ffn_dense_forward(l->z, l->y, in, l->W, l->b, batch, l->in, l->out, l->spec.act,
                          l->spec.act_param);
        in = l->y;
    }
    return in;
}

void ffn_model_backward(ffn_model *m, const float *x, size_t batch, float *dout,
                        int accumulate, ffn_grad_ready_fn ready, void *user)
{
    size_t lowest_trainable = m->layer_count;
    for (size_t i = 0; i < m->layer_count; i++)
        if (!m->layers[i].frozen) {
            lowest_trainable = i;
            break;
        }
    float *dy = dout;
    for (size_t i = m->layer_count; i-- > 0 && i >= lowest_trainable;) {
        ffn_layer *l = &m->layers[i];
        const float *in = i == 0 ? x : m->layers[i - 1].y;
        /* dx of layer i is dy of layer i-1: alternate two buffers so they never alias. */
        float *dx = i > lowest_trainable ? m->scratch[(i - 1) & 1] : NULL;
        int trainable = !l->frozen;
        ffn_dense_backward(dx, trainable ? l->dW : NULL, trainable ? l->db : NULL, dy, in, l->W,
                           l->z, l->y, batch, l->in, l->out, l->spec.act, l->spec.act_param,
                           accumulate);
        if (trainable && ready) ready(user, l->param_offset, l->weight_count + l->bias_count);
        dy = dx;
    }
}
