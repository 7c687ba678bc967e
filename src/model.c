/* ffn — the model: spec parsing, the tensor layout over flat parameter and
 * gradient buffers, forward and backward over the layer kinds (src/layer_*.c). */
#include "ffn/model.h"

#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/mem.h"
#include "ffn/rng.h"
#include "layer.h"

struct ffn_model {
    size_t input_dim;
    size_t layer_count;
    ffn_layer *layers;
    size_t tensor_count;
    ffn_tensor *tensors;  /* every layer's, in buffer order; layers point into it */
    size_t param_count;
    float *params, *grads;
    int grads_borrowed;   /* grads is the caller's (ffn_model_use_grad_buffer) */
    size_t max_batch;
    float *activations;   /* every layer's y, z and cache, one arena */
    float *work;          /* backward's per-layer temporaries, [max_batch, widest need] */
    float *scratch[2];    /* backward ping-pong, [max_batch, widest layer] */
    ffn_forward_ctx ctx;  /* of the last forward */
};

const ffn_layer_ops *ffn_layer_ops_of(ffn_layer_kind kind)
{
    switch (kind) {
    case FFN_LAYER_DENSE: return &ffn_layer_dense_ops;
    case FFN_LAYER_DROPOUT: return &ffn_layer_dropout_ops;
    case FFN_LAYER_LAYERNORM: return &ffn_layer_layernorm_ops;
    case FFN_LAYER_FFN: return &ffn_layer_ffn_ops;
    case FFN_LAYER_SWIGLU: return &ffn_layer_swiglu_ops;
    case FFN_LAYER_KIND_COUNT: break;
    }
    return NULL;
}

const char *ffn_layer_kind_name(ffn_layer_kind kind)
{
    const ffn_layer_ops *ops = ffn_layer_ops_of(kind);
    return ops ? ops->name : "unknown";
}

ffn_tensor *ffn_layer_tensor(ffn_layer *l, const char *name)
{
    for (size_t k = 0; k < l->tensor_count; k++)
        if (strcmp(l->tensors[k].name, name) == 0) return &l->tensors[k];
    return NULL;
}

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

static ffn_layer_spec spec_defaults(ffn_layer_kind kind)
{
    return (ffn_layer_spec){.kind = kind, .act = kind == FFN_LAYER_FFN ? FFN_ACT_GELU : FFN_ACT_IDENTITY,
                            .act_param = FFN_LEAKY_RELU_DEFAULT_SLOPE, .init = -1,
                            .init_param = FFN_INIT_DEFAULT_PARAM};
}

#define ITEM_FAIL(...) ffn_fail(FFN_ERR_ARG, __VA_ARGS__)

/* The options a kind accepts after its positional fields. */
static ffn_status parse_option(ffn_layer_spec *spec, size_t index, char *field, int *alpha_given)
{
    const char *kind = ffn_layer_ops_of(spec->kind)->name;
    int dense = spec->kind == FFN_LAYER_DENSE, with_act = dense || spec->kind == FFN_LAYER_FFN;
    char *eq = strchr(field, '=');
    if (!eq) {
        int act = with_act ? ffn_act_from_name(field) : -1;
        if (act < 0 && with_act)
            return ITEM_FAIL("model spec item %zu: unknown activation '%s' (expected identity, relu, "
                             "leaky_relu, sigmoid, tanh, gelu%s)",
                             index + 1, field, dense ? " or softmax" : "");
        if (act < 0) return ITEM_FAIL("model spec item %zu: %s takes no field '%s'", index + 1, kind, field);
        if (act == FFN_ACT_SOFTMAX && !dense)
            return ITEM_FAIL("model spec item %zu: softmax cannot be an ffn block's hidden activation", index + 1);
        spec->act = (ffn_act)act;
        return FFN_OK;
    }
    *eq = '\0';
    const char *key = field, *value = eq + 1;
    int has_init = dense || spec->kind == FFN_LAYER_FFN || spec->kind == FFN_LAYER_SWIGLU;
    if (has_init && strcmp(key, "init") == 0) {
        spec->init = ffn_init_from_name(value);
        if (spec->init < 0) return ITEM_FAIL("model spec item %zu: unknown init '%s'", index + 1, value);
    } else if (has_init && strcmp(key, "init_param") == 0) {
        if (parse_float(value, &spec->init_param) != 0 || !(spec->init_param > 0))
            return ITEM_FAIL("model spec item %zu: init_param must be a positive number, got '%s'", index + 1,
                             value);
    } else if (with_act && strcmp(key, "slope") == 0) {
        if (parse_float(value, &spec->act_param) != 0)
            return ITEM_FAIL("model spec item %zu: slope must be a number, got '%s'", index + 1, value);
    } else if (dense && strcmp(key, "lora") == 0) {
        if (parse_size(value, &spec->lora_rank) != 0)
            return ITEM_FAIL("model spec item %zu: lora must be a rank in [1, 2^31], got '%s'", index + 1, value);
    } else if (dense && strcmp(key, "lora_alpha") == 0) {
        if (parse_float(value, &spec->lora_alpha) != 0 || !(spec->lora_alpha > 0) || spec->lora_alpha > 1e30f)
            return ITEM_FAIL("model spec item %zu: lora_alpha must be a positive number, got '%s'", index + 1,
                             value);
        *alpha_given = 1;
    } else {
        return ITEM_FAIL("model spec item %zu: unknown option '%s' for %s (expected %s)", index + 1, key, kind,
                         dense ? "init, init_param, slope, lora or lora_alpha"
                         : spec->kind == FFN_LAYER_FFN ? "init, init_param or slope"
                         : has_init ? "init or init_param" : "none");
    }
    return FFN_OK;
}

static ffn_status parse_item(char *item, size_t index, ffn_layer_spec *spec)
{
    char *save = NULL;
    char *kind = strtok_r(item, ":", &save);
    if (!kind)
        return ITEM_FAIL("model spec item %zu is empty (expected e.g. dense:128:relu)", index + 1);
    int k = 0;
    while (k < FFN_LAYER_KIND_COUNT && strcmp(kind, ffn_layer_ops_of((ffn_layer_kind)k)->name) != 0) k++;
    if (k == FFN_LAYER_KIND_COUNT)
        return ITEM_FAIL("model spec item %zu: unknown layer kind '%s' (expected dense, dropout, layernorm, ffn "
                         "or swiglu)",
                         index + 1, kind);
    *spec = spec_defaults((ffn_layer_kind)k);
    if (k == FFN_LAYER_DENSE || k == FFN_LAYER_FFN || k == FFN_LAYER_SWIGLU) {
        char *units = strtok_r(NULL, ":", &save);
        if (parse_size(units, &spec->units) != 0)
            return ITEM_FAIL("model spec item %zu: %s must be an integer in [1, 2^31], got '%s'", index + 1,
                             k == FFN_LAYER_DENSE ? "units" : "the hidden width", units ? units : "");
    } else if (k == FFN_LAYER_DROPOUT) {
        char *rate = strtok_r(NULL, ":", &save);
        if (parse_float(rate, &spec->rate) != 0 || !(spec->rate >= 0.0f && spec->rate < 1.0f))
            return ITEM_FAIL("model spec item %zu: dropout needs a probability in [0, 1), got '%s'", index + 1,
                             rate ? rate : "");
    }
    int alpha_given = 0;
    for (char *field; (field = strtok_r(NULL, ":", &save));) {
        ffn_status st = parse_option(spec, index, field, &alpha_given);
        if (st != FFN_OK) return st;
    }
    if (alpha_given && !spec->lora_rank)
        return ITEM_FAIL("model spec item %zu: lora_alpha needs lora=R", index + 1);
    if (spec->lora_rank && !alpha_given) spec->lora_alpha = (float)spec->lora_rank;
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

/* Longest item: "dense:" + 10 digits + ":leaky_relu" + ":slope=" + 15 +
 * ":init=" + 14 + ":init_param=" + 15 + ":lora=" + 10 + ":lora_alpha=" + 15
 * = 150 characters, plus the comma. */
enum { SPEC_ITEM_MAX = 200 };

static size_t format_item(char *buf, const ffn_layer_spec *s)
{
    char num[32];
    size_t cap = SPEC_ITEM_MAX;
    int len = snprintf(buf, cap, "%s", ffn_layer_ops_of(s->kind)->name);
#define APPEND(...) (len += snprintf(buf + len, cap - (size_t)len, __VA_ARGS__))
    switch (s->kind) {
    case FFN_LAYER_DROPOUT:
        format_float(num, sizeof num, s->rate);
        APPEND(":%s", num);
        return (size_t)len;
    case FFN_LAYER_LAYERNORM: return (size_t)len;
    default: APPEND(":%zu", s->units); break;
    }
    ffn_act default_act = s->kind == FFN_LAYER_FFN ? FFN_ACT_GELU : FFN_ACT_IDENTITY;
    if (s->kind != FFN_LAYER_SWIGLU && s->act != default_act) APPEND(":%s", ffn_act_name(s->act));
    if (s->kind != FFN_LAYER_SWIGLU && s->act == FFN_ACT_LEAKY_RELU && s->act_param != FFN_LEAKY_RELU_DEFAULT_SLOPE) {
        format_float(num, sizeof num, s->act_param);
        APPEND(":slope=%s", num);
    }
    if (s->init >= 0) APPEND(":init=%s", ffn_init_name((ffn_init)s->init));
    if (s->init_param != FFN_INIT_DEFAULT_PARAM) {
        format_float(num, sizeof num, s->init_param);
        APPEND(":init_param=%s", num);
    }
    if (s->kind == FFN_LAYER_DENSE && s->lora_rank) {
        APPEND(":lora=%zu", s->lora_rank);
        if (s->lora_alpha != (float)s->lora_rank) {
            format_float(num, sizeof num, s->lora_alpha);
            APPEND(":lora_alpha=%s", num);
        }
    }
#undef APPEND
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

static void set_layer_trainable(ffn_layer *l)
{
    const ffn_layer_ops *ops = ffn_layer_ops_of(l->spec.kind);
    for (size_t k = 0; k < l->tensor_count; k++)
        l->tensors[k].trainable = !l->frozen && ops->default_trainable(&l->spec, l->tensors[k].name);
}

ffn_status ffn_model_create(ffn_model **out, const ffn_layer_spec *layers, size_t count,
                            size_t input_dim)
{
    *out = NULL;
    if (count == 0) return ffn_fail(FFN_ERR_ARG, "model has no layers");
    if (input_dim == 0) return ffn_fail(FFN_ERR_ARG, "model input width must be positive");
    ffn_model *m = calloc(1, sizeof *m);
    ffn_tensor_decl (*decl)[FFN_LAYER_MAX_TENSORS] = calloc(count, sizeof *decl);
    int *ndecl = calloc(count, sizeof *ndecl);
    if (!m || !decl || !ndecl || !(m->layers = calloc(count, sizeof *m->layers))) {
        free(m);
        free(decl);
        free(ndecl);
        return ffn_fail(FFN_ERR_NOMEM, "out of memory creating the model");
    }
    m->input_dim = input_dim;
    m->layer_count = count;
    ffn_status st = FFN_OK;
    size_t in = input_dim, tensors = 0;
    for (size_t i = 0; i < count && st == FFN_OK; i++) {
        ffn_layer *l = &m->layers[i];
        const ffn_layer_ops *ops = ffn_layer_ops_of(layers[i].kind);
        if (!ops) {
            st = ffn_fail(FFN_ERR_ARG, "model spec item %zu: unknown layer kind %d", i + 1, (int)layers[i].kind);
            break;
        }
        l->spec = layers[i];
        l->in = in;
        ndecl[i] = ops->setup(&l->spec, in, &l->out, decl[i]);
        tensors += (size_t)ndecl[i];
        in = l->out;
    }
    if (st == FFN_OK && !(m->tensors = calloc(tensors ? tensors : 1, sizeof *m->tensors)))
        st = ffn_fail(FFN_ERR_NOMEM, "out of memory creating the model");
    size_t offset = 0, k = 0;
    for (size_t i = 0; i < count && st == FFN_OK; i++) {
        ffn_layer *l = &m->layers[i];
        l->tensors = m->tensors + k;
        l->tensor_count = (size_t)ndecl[i];
        l->param_offset = offset;
        for (int j = 0; j < ndecl[i] && st == FFN_OK; j++, k++) {
            const ffn_tensor_decl *d = &decl[i][j];
            ffn_tensor *t = &m->tensors[k];
            snprintf(t->name, sizeof t->name, "%s", d->name);
            t->layer = i;
            t->ndim = d->ndim;
            t->shape[0] = d->shape[0];
            t->shape[1] = d->ndim == 2 ? d->shape[1] : 0;
            t->decay = d->decay;
            t->offset = offset;
            if ((d->ndim == 2 ? ffn_size_mul(d->shape[0], d->shape[1], &t->count) : (t->count = d->shape[0], 0)) != 0 ||
                ffn_size_add(offset, t->count, &offset) != 0)
                st = ffn_fail(FFN_ERR_NOMEM, "model spec item %zu: parameter count overflows", i + 1);
        }
        l->param_count = offset - l->param_offset;
    }
    m->tensor_count = k;
    m->param_count = offset;
    free(decl);
    free(ndecl);
    if (st == FFN_OK) {
        m->params = ffn_alloc_floats(offset);
        m->grads = ffn_alloc_floats(offset);
        if (!m->params || !m->grads) st = ffn_fail(FFN_ERR_NOMEM, "out of memory for %zu parameters", offset);
    }
    if (st != FFN_OK) {
        ffn_model_free(m);
        return st;
    }
    for (size_t t = 0; t < m->tensor_count; t++) {
        m->tensors[t].data = m->params + m->tensors[t].offset;
        m->tensors[t].grad = m->grads + m->tensors[t].offset;
    }
    for (size_t i = 0; i < count; i++) {
        ffn_layer *l = &m->layers[i];
        if (l->spec.kind == FFN_LAYER_DENSE) {
            l->weight_count = l->tensors[0].count;
            l->bias_count = l->tensors[1].count;
            l->W = l->tensors[0].data;
            l->b = l->tensors[1].data;
            l->dW = l->tensors[0].grad;
            l->db = l->tensors[1].grad;
        }
        set_layer_trainable(l);
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
    if (!m->grads_borrowed) ffn_free(m->grads);
    ffn_free(m->activations);
    ffn_free(m->work);
    ffn_free(m->scratch[0]);
    ffn_free(m->scratch[1]);
    free(m->tensors);
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

void ffn_model_use_grad_buffer(ffn_model *m, float *grads)
{
    memcpy(grads, m->grads, m->param_count * sizeof *grads);
    if (!m->grads_borrowed) ffn_free(m->grads);
    m->grads = grads;
    m->grads_borrowed = 1;
    for (size_t t = 0; t < m->tensor_count; t++) m->tensors[t].grad = m->grads + m->tensors[t].offset;
    for (size_t i = 0; i < m->layer_count; i++) {
        ffn_layer *l = &m->layers[i];
        if (l->spec.kind == FFN_LAYER_DENSE) {
            l->dW = l->tensors[0].grad;
            l->db = l->tensors[1].grad;
        }
    }
}
size_t ffn_model_max_batch(const ffn_model *m) { return m->max_batch; }
size_t ffn_model_tensor_count(const ffn_model *m) { return m->tensor_count; }
const ffn_tensor *ffn_model_tensor(const ffn_model *m, size_t k) { return &m->tensors[k]; }

const ffn_tensor *ffn_model_find_tensor(const ffn_model *m, size_t layer, const char *name)
{
    return layer < m->layer_count ? ffn_layer_tensor(&m->layers[layer], name) : NULL;
}

size_t ffn_model_trainable_count(const ffn_model *m)
{
    size_t n = 0;
    for (size_t k = 0; k < m->tensor_count; k++)
        if (m->tensors[k].trainable) n += m->tensors[k].count;
    return n;
}

void ffn_model_set_frozen(ffn_model *m, size_t layer, int frozen)
{
    m->layers[layer].frozen = frozen;
    set_layer_trainable(&m->layers[layer]);
}

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
    ffn_rng rng = ffn_rng_make(seed, FFN_STREAM_INIT + ((uint64_t)i << 8));
    ffn_layer_ops_of(l->spec.kind)->init(l, &rng);
}

void ffn_model_init_params(ffn_model *m, uint64_t seed)
{
    for (size_t i = 0; i < m->layer_count; i++) ffn_model_init_layer(m, i, seed);
}

ffn_status ffn_model_reserve(ffn_model *m, size_t max_batch)
{
    if (max_batch <= m->max_batch) return FFN_OK;
    ffn_free(m->activations);
    ffn_free(m->work);
    ffn_free(m->scratch[0]);
    ffn_free(m->scratch[1]);
    m->activations = m->work = m->scratch[0] = m->scratch[1] = NULL;
    m->max_batch = 0;
    size_t total = 0, widest = m->input_dim, work = 1;
    for (size_t i = 0; i < m->layer_count; i++) {
        const ffn_layer *l = &m->layers[i];
        const ffn_layer_ops *ops = ffn_layer_ops_of(l->spec.kind);
        size_t per_row = l->out, wk = ops->work_per_row(l);
        if ((ops->needs_z(l) && ffn_size_add(per_row, l->out, &per_row) != 0) ||
            ffn_size_add(per_row, ops->cache_per_row(l), &per_row) != 0 ||
            ffn_size_mul(per_row, max_batch, &per_row) != 0 || ffn_size_add(total, per_row, &total) != 0 ||
            ffn_size_mul(wk, max_batch, &wk) != 0)
            return ffn_fail(FFN_ERR_NOMEM, "activation size overflows for batch %zu", max_batch);
        if (l->out > widest) widest = l->out;
        if (wk > work) work = wk;
    }
    size_t scratch;
    if (ffn_size_mul(max_batch, widest, &scratch) != 0)
        return ffn_fail(FFN_ERR_NOMEM, "activation size overflows for batch %zu", max_batch);
    m->activations = ffn_alloc_floats(total);
    m->work = ffn_alloc_floats(work);
    m->scratch[0] = ffn_alloc_floats(scratch);
    m->scratch[1] = ffn_alloc_floats(scratch);
    if (!m->activations || !m->work || !m->scratch[0] || !m->scratch[1])
        return ffn_fail(FFN_ERR_NOMEM, "out of memory for activations of batch %zu", max_batch);
    float *p = m->activations;
    for (size_t i = 0; i < m->layer_count; i++) {
        ffn_layer *l = &m->layers[i];
        const ffn_layer_ops *ops = ffn_layer_ops_of(l->spec.kind);
        l->y = p;
        p += max_batch * l->out;
        if (ops->needs_z(l)) {
            l->z = p;
            p += max_batch * l->out;
        } else {
            l->z = l->y;
        }
        size_t cache = ops->cache_per_row(l);
        l->cache = cache ? p : NULL;
        p += max_batch * cache;
    }
    m->max_batch = max_batch;
    return FFN_OK;
}

/* ---- forward and backward ----------------------------------------------- */

static const float *forward(ffn_model *m, const float *x, size_t batch)
{
    const float *in = x;
    for (size_t i = 0; i < m->layer_count; i++) {
        ffn_layer *l = &m->layers[i];
        m->ctx.layer = i;
        ffn_layer_ops_of(l->spec.kind)->forward(l, in, batch, &m->ctx);
        in = l->y;
    }
    return in;
}

const float *ffn_model_forward(ffn_model *m, const float *x, size_t batch)
{
    m->ctx = (ffn_forward_ctx){0};
    return forward(m, x, batch);
}

const float *ffn_model_forward_train(ffn_model *m, const float *x, size_t batch, uint64_t seed,
                                     uint64_t step, const uint64_t *rows)
{
    m->ctx = (ffn_forward_ctx){.train = 1, .seed = seed, .step = step, .rows = rows};
    return forward(m, x, batch);
}

static int layer_trains(const ffn_layer *l)
{
    for (size_t k = 0; k < l->tensor_count; k++)
        if (l->tensors[k].trainable) return 1;
    return 0;
}

/* Each run of adjacent trainable tensors of l, highest first. */
static void report_ready(const ffn_layer *l, ffn_grad_ready_fn ready, void *user)
{
    for (size_t j = l->tensor_count; j-- > 0;) {
        if (!l->tensors[j].trainable) continue;
        size_t hi = l->tensors[j].offset + l->tensors[j].count;
        while (j > 0 && l->tensors[j - 1].trainable) j--;
        ready(user, l->tensors[j].offset, hi - l->tensors[j].offset);
    }
}

void ffn_model_backward_dx(ffn_model *m, const float *x, size_t batch, float *dout, int accumulate,
                           ffn_grad_ready_fn ready, void *user, float *dx_out)
{
    size_t lowest = dx_out ? 0 : m->layer_count;
    for (size_t i = 0; i < m->layer_count && !dx_out; i++)
        if (layer_trains(&m->layers[i])) {
            lowest = i;
            break;
        }
    float *dy = dout;
    for (size_t i = m->layer_count; i-- > 0 && i >= lowest;) {
        ffn_layer *l = &m->layers[i];
        const float *in = i == 0 ? x : m->layers[i - 1].y;
        /* dx of layer i is dy of layer i-1: alternate two buffers so they never alias. */
        float *dx = i > lowest ? m->scratch[(i - 1) & 1] : i == 0 ? dx_out : NULL;
        m->ctx.layer = i;
        ffn_layer_ops_of(l->spec.kind)->backward(l, dx, dy, in, batch, accumulate, m->work, &m->ctx);
        if (ready) report_ready(l, ready, user);
        dy = dx;
    }
}

void ffn_model_backward(ffn_model *m, const float *x, size_t batch, float *dout,
                        int accumulate, ffn_grad_ready_fn ready, void *user)
{
    ffn_model_backward_dx(m, x, batch, dout, accumulate, ready, user, NULL);
}

void ffn_model_report_grads(const ffn_model *m, ffn_grad_ready_fn ready, void *user)
{
    for (size_t i = m->layer_count; i-- > 0;) report_ready(&m->layers[i], ready, user);
}

void ffn_model_zero_grads(ffn_model *m, ffn_grad_ready_fn ready, void *user)
{
    for (size_t i = m->layer_count; i-- > 0;) {
        ffn_layer *l = &m->layers[i];
        for (size_t k = 0; k < l->tensor_count; k++)
            if (l->tensors[k].trainable) memset(l->tensors[k].grad, 0, l->tensors[k].count * sizeof(float));
        if (ready) report_ready(l, ready, user);
    }
}

/* ---- adapters ------------------------------------------------------------ */

ffn_status ffn_model_merge_lora(ffn_model **out, const ffn_model *m)
{
    *out = NULL;
    ffn_layer_spec *specs = malloc(m->layer_count * sizeof *specs);
    if (!specs) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < m->layer_count; i++) {
        specs[i] = m->layers[i].spec;
        specs[i].lora_rank = 0;
        specs[i].lora_alpha = 0;
    }
    ffn_model *merged;
    ffn_status st = ffn_model_create(&merged, specs, m->layer_count, m->input_dim);
    free(specs);
    if (st != FFN_OK) return st;
    for (size_t k = 0; k < merged->tensor_count; k++) {
        ffn_tensor *t = &merged->tensors[k];
        const ffn_tensor *src = ffn_layer_tensor(&m->layers[t->layer], t->name);
        memcpy(t->data, src->data, t->count * sizeof(float));
    }
    for (size_t i = 0; i < m->layer_count; i++) {
        const ffn_layer *l = &m->layers[i];
        size_t R = l->spec.lora_rank;
        if (l->spec.kind != FFN_LAYER_DENSE || !R) continue;
        /* W [out, in] += s · B [out, R] · A [R, in] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)l->out, (int)l->in, (int)R,
                    l->spec.lora_alpha / (float)R, l->tensors[3].data, (int)R, l->tensors[2].data, (int)l->in,
                    1.0f, merged->layers[i].W, (int)l->in);
    }
    *out = merged;
    return FFN_OK;
}
