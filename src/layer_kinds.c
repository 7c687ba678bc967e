/* ffn — the registry of layer kinds, indexed by ffn_layer_kind.
 *
 * A new kind is its src/layer_<kind>.c (ops, spec description included), its
 * value in ffn_layer_kind (model.h) and its two lines here. */
#include "layer.h"

extern const ffn_layer_ops ffn_layer_dense_ops, ffn_layer_dropout_ops, ffn_layer_layernorm_ops,
    ffn_layer_ffn_ops, ffn_layer_swiglu_ops;

static const ffn_layer_ops *const kinds[FFN_LAYER_KIND_COUNT] = {
    [FFN_LAYER_DENSE] = &ffn_layer_dense_ops,
    [FFN_LAYER_DROPOUT] = &ffn_layer_dropout_ops,
    [FFN_LAYER_LAYERNORM] = &ffn_layer_layernorm_ops,
    [FFN_LAYER_FFN] = &ffn_layer_ffn_ops,
    [FFN_LAYER_SWIGLU] = &ffn_layer_swiglu_ops,
};

const ffn_layer_ops *ffn_layer_ops_of(ffn_layer_kind kind)
{
    return (unsigned)kind < FFN_LAYER_KIND_COUNT ? kinds[kind] : NULL;
}

const char *ffn_layer_kind_name(ffn_layer_kind kind)
{
    const ffn_layer_ops *ops = ffn_layer_ops_of(kind);
    return ops ? ops->name : "unknown";
}

/* The keywords by kind, as a name table over names[FFN_LAYER_KIND_COUNT]. */
static ffn_names kind_names(const char **names)
{
    for (int k = 0; k < FFN_LAYER_KIND_COUNT; k++) names[k] = kinds[k]->name;
    return (ffn_names){names, sizeof *names, FFN_LAYER_KIND_COUNT, NULL, 0};
}

int ffn_layer_kind_from_name(const char *name)
{
    const char *names[FFN_LAYER_KIND_COUNT];
    ffn_names table = kind_names(names);
    return ffn_names_find(&table, name);
}

const char *ffn_layer_kind_list(char *buf, size_t cap)
{
    const char *names[FFN_LAYER_KIND_COUNT];
    ffn_names table = kind_names(names);
    return ffn_names_list(&table, buf, cap);
}
