/* ffn — a model to and from .npz / .safetensors weights (see ffn/weights.h);
 * the containers themselves are weights_npz.c and weights_safetensors.c. */
#include "ffn/weights.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ffn/loss.h"
#include "ffn/version.h"
#include "weights_format.h"

#define WEIGHTS_FORMAT_VERSION 1

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n > t && strcmp(s + n - t, tail) == 0;
}

ffn_weights_format ffn_weights_format_of(const char *path)
{
    if (!path) return FFN_WEIGHTS_NONE;
    if (ends_with(path, ".npz")) return FFN_WEIGHTS_NPZ;
    if (ends_with(path, ".safetensors")) return FFN_WEIGHTS_SAFETENSORS;
    return FFN_WEIGHTS_NONE;
}

/* ---- the PyTorch names: the one mapping ------------------------------------ */

/* The PyTorch name of ffn tensor `tensor` of a layer (NULL: no counterpart). */
static const char *torch_param_name(ffn_layer_kind kind, const char *tensor)
{
    if (kind == FFN_LAYER_DENSE) return strcmp(tensor, "W") == 0 ? "weight" : strcmp(tensor, "b") == 0 ? "bias" : NULL;
    if (kind == FFN_LAYER_LAYERNORM)
        return strcmp(tensor, "gamma") == 0 ? "weight" : strcmp(tensor, "beta") == 0 ? "bias" : NULL;
    return NULL;
}

void ffn_weights_names_free(char **names, size_t count)
{
    if (!names) return;
    for (size_t i = 0; i < count; i++) free(names[i]);
    free(names);
}

ffn_status ffn_weights_torch_names(const ffn_model *m, char ***out, size_t *count)
{
    *out = NULL;
    *count = 0;
    size_t n = ffn_model_tensor_count(m), module = 0, k = 0;
    char **names = calloc(n ? n : 1, sizeof *names);
    if (!names) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ffn_model_layer_count(m); i++) {
        const ffn_layer *l = ffn_model_layer_const(m, i);
        const char *kind = ffn_layer_kind_name(l->spec.kind);
        if (l->spec.kind == FFN_LAYER_DENSE && l->spec.lora_rank) {
            ffn_weights_names_free(names, n);
            return ffn_fail(FFN_ERR_ARG, "layer %zu (dense with lora=%zu) has no PyTorch nn.Linear counterpart: merge "
                            "the adapters first (ffn-eval --merge-lora)", i, l->spec.lora_rank);
        }
        if (l->spec.kind != FFN_LAYER_DENSE && l->spec.kind != FFN_LAYER_LAYERNORM && l->spec.kind != FFN_LAYER_DROPOUT) {
            ffn_weights_names_free(names, n);
            return ffn_fail(FFN_ERR_ARG, "layer %zu (%s) has no PyTorch nn.Sequential module; only dense, dropout "
                            "and layernorm layers map to one (nn.Linear, nn.Dropout, nn.LayerNorm)", i, kind);
        }
        for (size_t t = 0; t < l->tensor_count; t++, k++) {
            const char *p = torch_param_name(l->spec.kind, l->tensors[t].name);
            size_t cap = 32 + (p ? strlen(p) : 0);
            if (!p || !(names[k] = malloc(cap))) {
                ffn_weights_names_free(names, n);
                return p ? ffn_fail(FFN_ERR_NOMEM, "out of memory")
                         : ffn_fail(FFN_ERR_ARG, "layer %zu (%s): tensor %s has no PyTorch name", i, kind,
                                    l->tensors[t].name);
            }
            snprintf(names[k], cap, "%zu.%s", module, p);
        }
        module++; /* nn.Linear, nn.Dropout or nn.LayerNorm */
        if (l->spec.kind == FFN_LAYER_DENSE && l->spec.act != FFN_ACT_IDENTITY) module++; /* its activation module */
    }
    *out = names;
    *count = n;
    return FFN_OK;
}

/* ---- files ------------------------------------------------------------------ */

ffn_weights_array *ffn_weights_file_add(ffn_weights_file *w, const char *name)
{
    ffn_weights_array *grown = realloc(w->arrays, (w->count + 1) * sizeof *grown);
    if (!grown) return NULL;
    w->arrays = grown;
    ffn_weights_array *a = &grown[w->count];
    memset(a, 0, sizeof *a);
    if (!(a->name = strdup(name))) return NULL;
    w->count++;
    return a;
}

void ffn_weights_file_free(ffn_weights_file *w)
{
    for (size_t i = 0; i < w->count; i++) {
        free(w->arrays[i].name);
        free(w->arrays[i].owned);
    }
    free(w->arrays);
    free(w->spec_json);
    free(w->contents);
    memset(w, 0, sizeof *w);
}

ffn_status ffn_weights_read_contents(ffn_weights_file *w, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return ffn_fail(FFN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return ffn_fail(FFN_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > FFN_WEIGHTS_MAX_FILE) {
        fclose(f);
        return ffn_fail(FFN_ERR_FORMAT, "%s: %lld bytes, more than a weights file ffn reads", path, (long long)sb.st_size);
    }
    w->size = (size_t)sb.st_size;
    w->contents = malloc(w->size ? w->size : 1);
    int ok = w->contents && fread(w->contents, 1, w->size, f) == w->size;
    fclose(f);
    if (!ok) return ffn_fail(w->contents ? FFN_ERR_IO : FFN_ERR_NOMEM, "%s: cannot read its %zu bytes", path, w->size);
    return FFN_OK;
}

static int little_endian(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* Numbers as %.17g text: cJSON prints 15 significant digits when they compare
 * equal within its tolerance, which loses the last bits of a float64. */
static cJSON *exact_array(const double *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    char buf[40];
    for (size_t i = 0; a && i < n; i++) {
        snprintf(buf, sizeof buf, "%.17g", v[i]);
        cJSON *x = cJSON_CreateRaw(buf);
        if (!x || !cJSON_AddItemToArray(a, x)) {
            cJSON_Delete(x);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

/* The training data's metadata into the spec object: 0, or -1 when out of memory. */
static int add_meta(cJSON *o, const ffn_data_meta *meta)
{
    if (!meta) return 0;
    if (meta->features) {
        cJSON *mean = exact_array(meta->mean, meta->features);
        if (!mean || !cJSON_AddItemToObject(o, "feature_mean", mean)) {
            cJSON_Delete(mean);
            return -1;
        }
        cJSON *std = exact_array(meta->std, meta->features);
        if (!std || !cJSON_AddItemToObject(o, "feature_std", std)) {
            cJSON_Delete(std);
            return -1;
        }
    }
    if (meta->class_count) {
        cJSON *names = cJSON_AddArrayToObject(o, "class_names");
        for (size_t k = 0; names && k < meta->class_count; k++) {
            cJSON *s = cJSON_CreateString(meta->class_names[k]);
            if (!s || !cJSON_AddItemToArray(names, s)) {
                cJSON_Delete(s);
                return -1;
            }
        }
        if (!names) return -1;
    }
    return 0;
}

static char *spec_json_text(const ffn_model *m, const char *loss, const ffn_data_meta *meta)
{
    char *spec = ffn_model_spec_text(m), *text = NULL;
    cJSON *o = cJSON_CreateObject();
    if (spec && o && cJSON_AddStringToObject(o, "format", "ffn-weights") &&
        cJSON_AddNumberToObject(o, "format_version", WEIGHTS_FORMAT_VERSION) &&
        cJSON_AddStringToObject(o, "model_spec", spec) &&
        cJSON_AddNumberToObject(o, "input_dim", (double)ffn_model_input_dim(m)) &&
        (!loss || cJSON_AddStringToObject(o, "loss", loss)) &&
        cJSON_AddStringToObject(o, "ffn_version", ffn_version()) && add_meta(o, meta) == 0)
        text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    free(spec);
    return text;
}

ffn_status ffn_weights_save(const ffn_model *m, const char *loss, const char *path)
{
    return ffn_weights_save_meta(m, loss, NULL, path);
}

ffn_status ffn_weights_save_meta(const ffn_model *m, const char *loss, const ffn_data_meta *meta, const char *path)
{
    ffn_weights_format format = ffn_weights_format_of(path);
    if (format == FFN_WEIGHTS_NONE)
        return ffn_fail(FFN_ERR_ARG, "%s: expected a name ending in .npz or .safetensors", path);
    if (!little_endian()) return ffn_fail(FFN_ERR_ARG, "%s: weights files are little-endian; this host is not", path);
    char **names = NULL;
    size_t n = 0;
    ffn_status st = ffn_weights_torch_names(m, &names, &n);
    if (st != FFN_OK) return ffn_fail(st, "%s: %s", path, ffn_last_error());
    ffn_weights_array *arrays = calloc(n ? n : 1, sizeof *arrays);
    char *spec = spec_json_text(m, loss, meta);
    size_t cap = strlen(path) + 8;
    char *tmp = malloc(cap);
    if (!arrays || !spec || !tmp) {
        st = ffn_fail(FFN_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < n; k++) {
        const ffn_tensor *t = ffn_model_tensor(m, k);
        arrays[k] = (ffn_weights_array){.name = names[k], .ndim = t->ndim, .count = t->count, .data = t->data};
        arrays[k].shape[0] = t->shape[0];
        arrays[k].shape[1] = t->shape[1];
    }
    snprintf(tmp, cap, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        st = ffn_fail(FFN_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    st = format == FFN_WEIGHTS_NPZ ? ffn_npz_write(f, tmp, arrays, n, spec)
                                   : ffn_safetensors_write(f, tmp, arrays, n, spec);
    if (st == FFN_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        st = ffn_fail(FFN_ERR_IO, "%s: cannot flush: %s", tmp, strerror(errno));
    if (fclose(f) != 0 && st == FFN_OK) st = ffn_fail(FFN_ERR_IO, "%s: cannot close: %s", tmp, strerror(errno));
    if (st == FFN_OK && rename(tmp, path) != 0)
        st = ffn_fail(FFN_ERR_IO, "%s: cannot rename %s onto it: %s", path, tmp, strerror(errno));
    if (st != FFN_OK) unlink(tmp);
done:
    free(tmp);
    free(spec);
    free(arrays);
    ffn_weights_names_free(names, n);
    return st;
}

/* ---- loading ---------------------------------------------------------------- */

static const ffn_weights_array *find_array(const ffn_weights_file *w, const char *name)
{
    for (size_t i = 0; i < w->count; i++)
        if (strcmp(w->arrays[i].name, name) == 0) return &w->arrays[i];
    return NULL;
}

static void format_dims(char *out, size_t cap, const size_t *shape, int ndim)
{
    size_t used = (size_t)snprintf(out, cap, "[");
    for (int d = 0; d < ndim && used < cap; d++)
        used += (size_t)snprintf(out + used, cap - used, "%s%zu", d ? ", " : "", shape[d]);
    if (used < cap) snprintf(out + used, cap - used, "]");
}

/* The spec, input width and loss the file's metadata names (all NULL/0 when it has none). */
static ffn_status read_metadata(const ffn_weights_file *w, const char *path, char **spec, size_t *input_dim,
                                char **loss)
{
    *spec = *loss = NULL;
    *input_dim = 0;
    if (!w->spec_json) return FFN_OK;
    cJSON *o = cJSON_Parse(w->spec_json);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "model_spec");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "input_dim");
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(o, "loss");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "format_version");
    ffn_status st = FFN_OK;
    if (!cJSON_IsString(s) || !cJSON_IsNumber(d) || d->valuedouble < 1 || d->valuedouble > (double)(1u << 31) ||
        d->valuedouble != (double)(size_t)d->valuedouble || (l && !cJSON_IsString(l)))
        st = ffn_fail(FFN_ERR_FORMAT, "%s: the ffn spec metadata is not a JSON object with model_spec (a string), "
                      "input_dim (an integer from 1) and loss (a string)", path);
    else if (cJSON_IsNumber(v) && v->valuedouble > WEIGHTS_FORMAT_VERSION)
        st = ffn_fail(FFN_ERR_FORMAT, "%s: ffn spec format_version %g is newer than this ffn reads (%d)", path,
                      v->valuedouble, WEIGHTS_FORMAT_VERSION);
    else if (l && ffn_loss_from_name(l->valuestring) < 0) {
        char kinds[256];
        st = ffn_fail(FFN_ERR_FORMAT, "%s: the ffn spec names loss \"%s\", expected %s", path, l->valuestring,
                      ffn_names_list(&ffn_loss_names, kinds, sizeof kinds));
    }
    else if (!(*spec = strdup(s->valuestring)) || (l && !(*loss = strdup(l->valuestring))))
        st = ffn_fail(FFN_ERR_NOMEM, "out of memory");
    else
        *input_dim = (size_t)d->valuedouble;
    cJSON_Delete(o);
    return st;
}

/* Builds the model: the file's spec and width, or spec_hint with the width of
 * the first tensor's last dimension (nn.Linear's weight [out, in]). */
static ffn_status build_model(ffn_checkpoint *c, const ffn_weights_file *w, const char *path, const char *spec_hint)
{
    ffn_status st;
    if (c->model_spec) {
        if ((st = ffn_model_create_from_text(&c->model, c->model_spec, c->input_dim)) != FFN_OK)
            return ffn_fail(FFN_ERR_FORMAT, "%s: the ffn spec's model_spec: %s", path, ffn_last_error());
        return FFN_OK;
    }
    if (!spec_hint)
        return ffn_fail(FFN_ERR_ARG, "%s: the file carries no ffn spec (safetensors __metadata__ \"ffn_spec\", npz "
                        "entry __ffn_spec__): give the model with --model SPEC (e.g. dense:64:relu,dense:10)", path);
    ffn_model *probe = NULL;
    char **names = NULL;
    size_t n = 0;
    if ((st = ffn_model_create_from_text(&probe, spec_hint, 1)) != FFN_OK)
        return ffn_fail(st, "--model %s: %s", spec_hint, ffn_last_error());
    st = ffn_weights_torch_names(probe, &names, &n);
    const ffn_weights_array *first = st == FFN_OK && n ? find_array(w, names[0]) : NULL;
    if (st != FFN_OK) st = ffn_fail(st, "--model %s: %s", spec_hint, ffn_last_error());
    else if (!n) st = ffn_fail(FFN_ERR_ARG, "--model %s: the model has no parameters to load", spec_hint);
    else if (!first || first->ndim < 1 || first->shape[first->ndim - 1] == 0)
        st = ffn_fail(FFN_ERR_FORMAT, "%s: tensor \"%s\" is missing (the first tensor of --model %s, whose last "
                      "dimension gives the input width)", path, names[0], spec_hint);
    else c->input_dim = first->shape[first->ndim - 1];
    ffn_weights_names_free(names, n);
    ffn_model_free(probe);
    if (st != FFN_OK) return st;
    if ((st = ffn_model_create_from_text(&c->model, spec_hint, c->input_dim)) != FFN_OK)
        return ffn_fail(st, "--model %s: %s", spec_hint, ffn_last_error());
    if (!(c->model_spec = ffn_model_spec_text(c->model))) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    return FFN_OK;
}

/* Every tensor of the model from the file's array of the same PyTorch name and shape; no array left over. */
static ffn_status copy_tensors(ffn_checkpoint *c, const ffn_weights_file *w, const char *path)
{
    char **names = NULL;
    size_t n = 0;
    ffn_status st = ffn_weights_torch_names(c->model, &names, &n);
    if (st != FFN_OK) return ffn_fail(st, "%s: %s", path, ffn_last_error());
    for (size_t k = 0; k < n && st == FFN_OK; k++) {
        const ffn_tensor *t = ffn_model_tensor(c->model, k);
        const ffn_weights_array *a = find_array(w, names[k]);
        char want[64], got[128];
        format_dims(want, sizeof want, t->shape, t->ndim);
        int same = a && a->ndim == t->ndim && a->shape[0] == t->shape[0] && (t->ndim < 2 || a->shape[1] == t->shape[1]);
        if (!a)
            st = ffn_fail(FFN_ERR_FORMAT, "%s: tensor \"%s\" is missing (expected float32 %s: layer %zu's %s under "
                          "the model %s)", path, names[k], want, t->layer, t->name, c->model_spec);
        else if (!same) {
            format_dims(got, sizeof got, a->shape, a->ndim);
            st = ffn_fail(FFN_ERR_FORMAT, "%s: tensor \"%s\" has shape %s, expected %s (layer %zu's %s under the "
                          "model %s)", path, names[k], got, want, t->layer, t->name, c->model_spec);
        } else {
            memcpy(t->data, a->bytes, t->count * sizeof(float));
        }
    }
    for (size_t i = 0; i < w->count && st == FFN_OK; i++) {
        size_t k = 0;
        while (k < n && strcmp(names[k], w->arrays[i].name) != 0) k++;
        if (k == n)
            st = ffn_fail(FFN_ERR_FORMAT, "%s: tensor \"%s\" is not one of the model's (%s names %zu tensors: %s%s)",
                          path, w->arrays[i].name, c->model_spec, n, n ? names[0] : "none",
                          n > 1 ? ", ..." : "");
    }
    ffn_weights_names_free(names, n);
    return st;
}

ffn_status ffn_weights_load(ffn_checkpoint *c, const char *path, const char *spec_hint, const char *loss_hint)
{
    memset(c, 0, sizeof *c);
    ffn_weights_format format = ffn_weights_format_of(path);
    if (format == FFN_WEIGHTS_NONE)
        return ffn_fail(FFN_ERR_ARG, "%s: expected a name ending in .npz or .safetensors", path);
    if (!little_endian()) return ffn_fail(FFN_ERR_ARG, "%s: weights files are little-endian; this host is not", path);
    ffn_weights_file w = {0};
    ffn_status st = format == FFN_WEIGHTS_NPZ ? ffn_npz_read(path, &w) : ffn_safetensors_read(path, &w);
    if (st == FFN_OK) st = read_metadata(&w, path, &c->model_spec, &c->input_dim, &c->loss);
    if (st == FFN_OK) st = build_model(c, &w, path, spec_hint);
    if (st == FFN_OK && !c->loss) {
        const char *name = loss_hint ? loss_hint : ffn_loss_name(FFN_LOSS_SOFTMAX_CE);
        if (!(c->loss = strdup(name))) st = ffn_fail(FFN_ERR_NOMEM, "out of memory");
    }
    if (st == FFN_OK) {
        ffn_model *m = c->model;
        c->format_version = FFN_CKPT_FORMAT_VERSION;
        c->layer_count = ffn_model_layer_count(m);
        c->param_count = ffn_model_param_count(m);
        c->params = ffn_model_params(m);
        c->layer_in = calloc(c->layer_count ? c->layer_count : 1, sizeof *c->layer_in);
        c->layer_out = calloc(c->layer_count ? c->layer_count : 1, sizeof *c->layer_out);
        if (!c->layer_in || !c->layer_out) st = ffn_fail(FFN_ERR_NOMEM, "out of memory");
        for (size_t i = 0; st == FFN_OK && i < c->layer_count; i++) {
            c->layer_in[i] = ffn_model_layer_const(m, i)->in;
            c->layer_out[i] = ffn_model_layer_const(m, i)->out;
        }
    }
    if (st == FFN_OK) st = copy_tensors(c, &w, path);
    if (st == FFN_OK) st = ffn_checkpoint_check_finite(c, path);
    ffn_weights_file_free(&w);
    if (st != FFN_OK) ffn_checkpoint_free(c);
    return st;
}
