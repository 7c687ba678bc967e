/* ffn — model spec text: parsing and the canonical format, for every layer
 * kind from the description its ops give (layer.h): its positional field,
 * the activations it may name and the option groups it accepts. The
 * canonical text is stored in checkpoints, so it must never change for a
 * spec that parses today. */
#include "ffn/model.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"

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
    /* A value beyond float's range would turn into inf (or 0) unnoticed. */
    if (errno || *end || !isfinite(v) || fabs(v) > 3.4e38 || (v != 0 && fabs(v) < 1e-37)) return -1;
    *out = (float)v;
    return 0;
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

#define ITEM_FAIL(...) ffn_fail(FFN_ERR_ARG, __VA_ARGS__)

/* Text being appended to (cap never reached: see SPEC_ITEM_MAX). */
typedef struct {
    char *buf;
    size_t cap, len;
} spec_text;

__attribute__((format(printf, 2, 3))) static void append(spec_text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n > 0) t->len += (size_t)n < t->cap - t->len ? (size_t)n : t->cap - t->len - 1;
}

static void append_float(spec_text *t, const char *prefix, float v)
{
    char num[32];
    format_float(num, sizeof num, v);
    append(t, "%s%s", prefix, num);
}

/* ---- the options: key=value fields after the positional one --------------- */

typedef struct {
    const char *key;
    unsigned group; /* the FFN_SPEC_* bit of the kinds that accept it */
    /* Sets the field from value; item is the item's number (from 1) for messages. */
    ffn_status (*parse)(ffn_layer_spec *s, const char *value, size_t item);
    /* Appends ":key=value" unless the field holds its default; NULL: printed elsewhere. */
    void (*format)(const ffn_layer_spec *s, spec_text *t);
} spec_option;

static ffn_status parse_init(ffn_layer_spec *s, const char *value, size_t item)
{
    char list[FFN_NAMES_LIST_MAX];
    s->init = ffn_init_from_name(value);
    if (s->init < 0)
        return ITEM_FAIL("model spec item %zu: unknown init '%s' (expected %s)", item, value,
                         ffn_names_list(&ffn_init_names, list, sizeof list));
    return FFN_OK;
}

static void format_init(const ffn_layer_spec *s, spec_text *t)
{
    if (s->init >= 0) append(t, ":init=%s", ffn_init_name((ffn_init)s->init));
}

static ffn_status parse_init_param(ffn_layer_spec *s, const char *value, size_t item)
{
    if (parse_float(value, &s->init_param) != 0 || !(s->init_param > 0))
        return ITEM_FAIL("model spec item %zu: init_param must be a positive number, got '%s'", item, value);
    return FFN_OK;
}

static void format_init_param(const ffn_layer_spec *s, spec_text *t)
{
    if (s->init_param != FFN_INIT_DEFAULT_PARAM) append_float(t, ":init_param=", s->init_param);
}

static ffn_status parse_slope(ffn_layer_spec *s, const char *value, size_t item)
{
    if (parse_float(value, &s->act_param) != 0)
        return ITEM_FAIL("model spec item %zu: slope must be a number, got '%s'", item, value);
    return FFN_OK;
}

static ffn_status parse_lora(ffn_layer_spec *s, const char *value, size_t item)
{
    if (parse_size(value, &s->lora_rank) != 0)
        return ITEM_FAIL("model spec item %zu: lora must be a rank in [1, 2^31], got '%s'", item, value);
    return FFN_OK;
}

static void format_lora(const ffn_layer_spec *s, spec_text *t)
{
    if (s->lora_rank) append(t, ":lora=%zu", s->lora_rank);
}

static ffn_status parse_lora_alpha(ffn_layer_spec *s, const char *value, size_t item)
{
    if (parse_float(value, &s->lora_alpha) != 0 || !(s->lora_alpha > 0) || s->lora_alpha > 1e30f)
        return ITEM_FAIL("model spec item %zu: lora_alpha must be a positive number, got '%s'", item, value);
    return FFN_OK;
}

/* lora_alpha defaults to the rank, so it is printed only when it differs. */
static void format_lora_alpha(const ffn_layer_spec *s, spec_text *t)
{
    if (s->lora_rank && s->lora_alpha != (float)s->lora_rank) append_float(t, ":lora_alpha=", s->lora_alpha);
}

enum { OPT_INIT, OPT_INIT_PARAM, OPT_SLOPE, OPT_LORA, OPT_LORA_ALPHA, OPTION_COUNT };

/* In the order messages list them and the canonical text prints them. */
static const spec_option options[OPTION_COUNT] = {
    [OPT_INIT] = {"init", FFN_SPEC_INIT, parse_init, format_init},
    [OPT_INIT_PARAM] = {"init_param", FFN_SPEC_INIT, parse_init_param, format_init_param},
    [OPT_SLOPE] = {"slope", FFN_SPEC_SLOPE, parse_slope, NULL},
    [OPT_LORA] = {"lora", FFN_SPEC_LORA, parse_lora, format_lora},
    [OPT_LORA_ALPHA] = {"lora_alpha", FFN_SPEC_LORA, parse_lora_alpha, format_lora_alpha},
};

/* The keys ops accepts, as "a, b or c" ("none" when it takes no option). */
static const char *option_list(const ffn_layer_ops *ops, char *buf, size_t cap)
{
    const char *keys[OPTION_COUNT];
    for (int o = 0; o < OPTION_COUNT; o++) keys[o] = options[o].group & ops->options ? options[o].key : NULL;
    ffn_names table = FFN_NAMES_OF_ARRAY(keys);
    ffn_names_list(&table, buf, cap);
    if (!buf[0]) snprintf(buf, cap, "none");
    return buf;
}

/* The activations ops accepts, as "a, b or c". */
static const char *activation_list(const ffn_layer_ops *ops, char *buf, size_t cap)
{
    const char *names[FFN_ACT_COUNT];
    for (int a = 0; a < FFN_ACT_COUNT; a++)
        names[a] = ops->activations & FFN_ACT_BIT(a) ? ffn_act_name((ffn_act)a) : NULL;
    ffn_names table = FFN_NAMES_OF_ARRAY(names);
    return ffn_names_list(&table, buf, cap);
}

/* ---- parsing -------------------------------------------------------------- */

/* A field without '=': the item's activation. */
static ffn_status parse_activation(ffn_layer_spec *spec, const ffn_layer_ops *ops, size_t item, const char *field)
{
    char list[FFN_NAMES_LIST_MAX];
    if (!ops->activations) return ITEM_FAIL("model spec item %zu: %s takes no field '%s'", item, ops->name, field);
    int act = ffn_act_from_name(field);
    if (act < 0)
        return ITEM_FAIL("model spec item %zu: unknown activation '%s' (expected %s)", item, field,
                         activation_list(ops, list, sizeof list));
    if (!(ops->activations & FFN_ACT_BIT(act)))
        return ITEM_FAIL("model spec item %zu: %s cannot be %s", item, field, ops->activation_role);
    spec->act = (ffn_act)act;
    return FFN_OK;
}

/* A key=value field; given collects the options seen (bits by OPT_*). */
static ffn_status parse_option(ffn_layer_spec *spec, const ffn_layer_ops *ops, size_t item, char *field,
                               unsigned *given)
{
    char *eq = strchr(field, '=');
    if (!eq) return parse_activation(spec, ops, item, field);
    *eq = '\0';
    const char *key = field, *value = eq + 1;
    for (int o = 0; o < OPTION_COUNT; o++)
        if ((options[o].group & ops->options) && strcmp(key, options[o].key) == 0) {
            *given |= 1u << o;
            return options[o].parse(spec, value, item);
        }
    char list[FFN_NAMES_LIST_MAX];
    return ITEM_FAIL("model spec item %zu: unknown option '%s' for %s (expected %s)", item, key, ops->name,
                     option_list(ops, list, sizeof list));
}

static ffn_status parse_field(ffn_layer_spec *spec, const ffn_layer_ops *ops, size_t item, const char *text)
{
    switch (ops->field) {
    case FFN_SPEC_UNITS:
        if (parse_size(text, &spec->units) != 0)
            return ITEM_FAIL("model spec item %zu: %s must be an integer in [1, 2^31], got '%s'", item,
                             ops->field_name, text ? text : "");
        break;
    case FFN_SPEC_RATE:
        if (parse_float(text, &spec->rate) != 0 || !(spec->rate >= 0.0f && spec->rate < 1.0f))
            return ITEM_FAIL("model spec item %zu: %s needs a probability in [0, 1), got '%s'", item, ops->name,
                             text ? text : "");
        break;
    case FFN_SPEC_NO_FIELD: break;
    }
    return FFN_OK;
}

static ffn_status parse_item(char *text, size_t index, ffn_layer_spec *spec)
{
    size_t item = index + 1;
    char *save = NULL;
    char *keyword = strtok_r(text, ":", &save);
    if (!keyword) return ITEM_FAIL("model spec item %zu is empty (expected e.g. dense:128:relu)", item);
    int kind = ffn_layer_kind_from_name(keyword);
    if (kind < 0) {
        char list[FFN_NAMES_LIST_MAX];
        return ITEM_FAIL("model spec item %zu: unknown layer kind '%s' (expected %s)", item, keyword,
                         ffn_layer_kind_list(list, sizeof list));
    }
    const ffn_layer_ops *ops = ffn_layer_ops_of((ffn_layer_kind)kind);
    *spec = (ffn_layer_spec){.kind = (ffn_layer_kind)kind, .act = ops->default_act,
                             .act_param = FFN_LEAKY_RELU_DEFAULT_SLOPE, .init = -1,
                             .init_param = FFN_INIT_DEFAULT_PARAM};
    ffn_status st = FFN_OK;
    if (ops->field != FFN_SPEC_NO_FIELD) st = parse_field(spec, ops, item, strtok_r(NULL, ":", &save));
    unsigned given = 0;
    for (char *field; st == FFN_OK && (field = strtok_r(NULL, ":", &save));)
        st = parse_option(spec, ops, item, field, &given);
    if (st != FFN_OK) return st;
    if ((given & 1u << OPT_LORA_ALPHA) && !spec->lora_rank)
        return ITEM_FAIL("model spec item %zu: lora_alpha needs lora=R", item);
    if (spec->lora_rank && !(given & 1u << OPT_LORA_ALPHA)) spec->lora_alpha = (float)spec->lora_rank;
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

/* ---- the canonical text ----------------------------------------------------- */

/* Longest item: "dense:" + 10 digits + ":leaky_relu" + ":slope=" + 15 +
 * ":init=" + 14 + ":init_param=" + 15 + ":lora=" + 10 + ":lora_alpha=" + 15
 * = 150 characters, plus the comma. */
enum { SPEC_ITEM_MAX = 200 };

/* keyword[:field][:act[:slope=X]][:option=value...], each part only where the
 * kind has it and it differs from the default. */
static size_t format_item(char *buf, const ffn_layer_spec *s)
{
    const ffn_layer_ops *ops = ffn_layer_ops_of(s->kind);
    spec_text t = {buf, SPEC_ITEM_MAX, 0};
    append(&t, "%s", ops->name);
    if (ops->field == FFN_SPEC_UNITS) append(&t, ":%zu", s->units);
    if (ops->field == FFN_SPEC_RATE) append_float(&t, ":", s->rate);
    if (ops->activations && s->act != ops->default_act) append(&t, ":%s", ffn_act_name(s->act));
    if ((ops->options & FFN_SPEC_SLOPE) && s->act == FFN_ACT_LEAKY_RELU &&
        s->act_param != FFN_LEAKY_RELU_DEFAULT_SLOPE)
        append_float(&t, ":slope=", s->act_param);
    for (int o = 0; o < OPTION_COUNT; o++)
        if ((options[o].group & ops->options) && options[o].format) options[o].format(s, &t);
    return t.len;
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
