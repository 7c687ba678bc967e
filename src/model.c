/* ffn — the model: the tensor layout over flat parameter and gradient
 * buffers, forward and backward over the layer kinds (src/layer_*.c; the
 * spec text is src/spec.c). */
#include "ffn/model.h"

#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/mem.h"
#include "ffn/rng.h"
#include "layer.h"

struct ffn_model {
    size_t input_dim;
    size_t layer_count;
    ffn_layer *layers;    /* [layer_count] */
    size_t tensor_count;
    ffn_tensor *tensors;  /* [tensor_count]: every layer's, in buffer order; layers point into it */
    size_t param_count;
    float *params, *grads; /* [param_count] each */
    int grads_borrowed;   /* grads is the caller's (ffn_model_use_grad_buffer) */
    int params_borrowed;  /* params is the caller's (ffn_model_use_param_buffer) */
    size_t max_batch;
    float *activations;   /* every layer's y, z and cache, one arena */
    float *work;          /* backward's per-layer temporaries, [max_batch, widest need] */
    float *scratch[2];    /* backward ping-pong, [max_batch, widest layer] */
    ffn_forward_ctx ctx;  /* of the last forward */
    ffn_gemm_engine *gemm;       /* the matrix products' engine (NULL: OpenBLAS fp32) */
    ffn_bf16 *params_bf16;/* --precision bf16: the weights (2-D tensors) in bf16, [param_count] */
    int bf16_stale;       /* params changed since params_bf16 was converted */
    int bf16_fixed_final; /* the fixed weights' part of params_bf16 never changes (ffn_model_bf16_fix) */
    int recompute;        /* blocks keep no cache: backward recomputes it (ffn_model_set_recompute) */
    int fp32_caches;      /* bf16 precision, but the caches all fp32 (ffn_model_set_bf16_caches off) */
    float *block_cache;   /* recompute: the one cache every block shares, [max_batch, largest block cache] */
    size_t cache_owner;   /* recompute: the layer whose cache block_cache holds (layer_count: none) */
    ffn_layer_hooks hooks;/* around each layer's passes (--shard grads/params); zero: none */
    int bf16_by_layer;    /* the bf16 copy is converted layer by layer by the hooks (ffn_model_set_bf16_by_layer) */
    int bf16_borrowed;    /* params_bf16 is the caller's (ffn_model_use_bf16_buffer) */
    /* backward under way: where a layer's final parameter gradients are reported */
    ffn_grad_ready_fn ready;
    void *ready_user;
    size_t reported_lo;   /* the current layer's gradients from this flat offset up are reported */
    size_t grad_piece;    /* ffn_model_set_grad_piece */
};

ffn_tensor *ffn_layer_tensor(ffn_layer *l, const char *name)
{
    for (size_t k = 0; k < l->tensor_count; k++)
        if (strcmp(l->tensors[k].name, name) == 0) return &l->tensors[k];
    return NULL;
}

/* ---- construction ------------------------------------------------------- */

static void bind_layer(ffn_layer *l)
{
    const ffn_layer_ops *ops = ffn_layer_ops_of(l->spec.kind);
    if (ops->bind) ops->bind(l);
}

static void set_layer_trainable(ffn_layer *l)
{
    const ffn_layer_ops *ops = ffn_layer_ops_of(l->spec.kind);
    for (size_t k = 0; k < l->tensor_count; k++)
        l->tensors[k].trainable =
            !l->frozen && (!ops->default_trainable || ops->default_trainable(&l->spec, l->tensors[k].name));
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
        m->params = ffn_alloc_pages(offset * sizeof(float));
        m->grads = ffn_alloc_pages(offset * sizeof(float));
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
        bind_layer(l);
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
    ffn_gemm_free(m->gemm);
    if (!m->bf16_borrowed) ffn_free_pages(m->params_bf16, m->param_count * sizeof *m->params_bf16);
    if (!m->params_borrowed) ffn_free_pages(m->params, m->param_count * sizeof(float));
    if (!m->grads_borrowed) ffn_free_pages(m->grads, m->param_count * sizeof(float));
    ffn_free(m->activations);
    ffn_free(m->work);
    ffn_free(m->scratch[0]);
    ffn_free(m->scratch[1]);
    ffn_free(m->block_cache);
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
float *ffn_model_params(ffn_model *m)
{
    m->bf16_stale = 1;
    return m->params;
}
const float *ffn_model_params_const(const ffn_model *m) { return m->params; }
void ffn_model_params_changed(ffn_model *m) { m->bf16_stale = 1; }
float *ffn_model_grads(ffn_model *m) { return m->grads; }

void ffn_model_use_grad_buffer(ffn_model *m, float *grads)
{
    memcpy(grads, m->grads, m->param_count * sizeof *grads);
    if (!m->grads_borrowed) ffn_free_pages(m->grads, m->param_count * sizeof(float));
    m->grads = grads;
    m->grads_borrowed = 1;
    for (size_t t = 0; t < m->tensor_count; t++) m->tensors[t].grad = m->grads + m->tensors[t].offset;
    for (size_t i = 0; i < m->layer_count; i++) bind_layer(&m->layers[i]);
}
void ffn_model_use_param_buffer(ffn_model *m, float *params, size_t lo, size_t hi)
{
    if (hi > lo) memcpy(params + lo, m->params + lo, (hi - lo) * sizeof *params);
    if (!m->params_borrowed) ffn_free_pages(m->params, m->param_count * sizeof(float));
    m->params = params;
    m->params_borrowed = 1;
    m->bf16_stale = 1;
    for (size_t t = 0; t < m->tensor_count; t++) m->tensors[t].data = m->params + m->tensors[t].offset;
    for (size_t i = 0; i < m->layer_count; i++) bind_layer(&m->layers[i]);
    if (m->params_bf16) ffn_gemm_set_bf16_copy(m->gemm, m->params, m->params_bf16, m->param_count);
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

/* Adjacent fixed tensors merged into runs, handed to each as they close. */
typedef struct {
    ffn_range_fn each;
    void *user;
    size_t lo, hi; /* the open run (empty: lo == hi) */
} fixed_run;

static void fixed_run_close(fixed_run *r)
{
    if (r->hi > r->lo) r->each(r->user, r->lo, r->hi - r->lo);
    r->lo = r->hi = 0;
}

static void fixed_run_add(fixed_run *r, size_t offset, size_t count)
{
    if (!count) return;
    if (r->hi > r->lo && r->hi != offset) fixed_run_close(r);
    if (r->hi == r->lo) r->lo = offset;
    r->hi = offset + count;
}

void ffn_model_fixed_runs(const ffn_model *m, ffn_range_fn each, void *user)
{
    fixed_run r = {.each = each, .user = user};
    for (size_t k = 0; k < m->tensor_count; k++) {
        const ffn_tensor *t = &m->tensors[k];
        if (t->trainable) fixed_run_close(&r);
        else fixed_run_add(&r, t->offset, t->count);
    }
    fixed_run_close(&r);
}

ffn_status ffn_model_plan_fixed_runs(const ffn_layer_spec *layers, size_t count, size_t input_dim,
                                     const int *frozen, ffn_range_fn each, void *user)
{
    fixed_run r = {.each = each, .user = user};
    size_t in = input_dim, offset = 0;
    for (size_t i = 0; i < count; i++) {
        const ffn_layer_ops *ops = ffn_layer_ops_of(layers[i].kind);
        if (!ops) return ffn_fail(FFN_ERR_ARG, "model spec item %zu: unknown layer kind %d", i + 1, (int)layers[i].kind);
        ffn_tensor_decl decl[FFN_LAYER_MAX_TENSORS];
        ffn_layer_spec spec = layers[i];
        size_t out;
        int n = ops->setup(&spec, in, &out, decl);
        if (n < 0) return FFN_ERR_ARG;
        for (int j = 0; j < n; j++) {
            size_t c = decl[j].shape[0];
            if (decl[j].ndim == 2 && ffn_size_mul(decl[j].shape[0], decl[j].shape[1], &c) != 0)
                return ffn_fail(FFN_ERR_NOMEM, "model spec item %zu: parameter count overflows", i + 1);
            /* The rule of set_layer_trainable. */
            int trains = !(frozen && frozen[i]) && (!ops->default_trainable || ops->default_trainable(&spec, decl[j].name));
            if (trains) fixed_run_close(&r);
            else fixed_run_add(&r, offset, c);
            if (ffn_size_add(offset, c, &offset) != 0)
                return ffn_fail(FFN_ERR_NOMEM, "model spec item %zu: parameter count overflows", i + 1);
        }
        in = out;
    }
    fixed_run_close(&r);
    return FFN_OK;
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
    const ffn_layer_ops *ops = ffn_layer_ops_of(l->spec.kind);
    if (ops->init) ops->init(l, &rng);
}

void ffn_model_init_params(ffn_model *m, uint64_t seed)
{
    for (size_t i = 0; i < m->layer_count; i++) ffn_model_init_layer(m, i, seed);
}

void ffn_model_init_params_slice(ffn_model *m, uint64_t seed, size_t lo, size_t hi)
{
    for (size_t i = 0; i < m->layer_count; i++) {
        ffn_model_init_layer(m, i, seed);
        ffn_model_release_layer(m, i, lo, hi);
    }
}

void ffn_model_release_layer(ffn_model *m, size_t i, size_t keep_lo, size_t keep_hi)
{
    const ffn_layer *l = &m->layers[i];
    const size_t a = l->param_offset, b = a + l->param_count;
    ffn_model_release_params(m, a, b < keep_lo ? b : keep_lo);
    ffn_model_release_params(m, a > keep_hi ? a : keep_hi, b);
}

void ffn_model_release_params(ffn_model *m, size_t from, size_t to)
{
    if (to <= from) return;
    ffn_pages_release(m->params + from, (to - from) * sizeof(float));
    if (m->params_bf16 && !m->bf16_borrowed)
        ffn_pages_release(m->params_bf16 + from, (to - from) * sizeof *m->params_bf16);
}

void ffn_model_set_layer_grads(ffn_model *m, size_t i, float *buf)
{
    ffn_layer *l = &m->layers[i];
    for (size_t k = 0; k < l->tensor_count; k++)
        l->tensors[k].grad = buf ? buf + (l->tensors[k].offset - l->param_offset) : m->grads + l->tensors[k].offset;
    bind_layer(l);
}

void ffn_model_set_bf16_by_layer(ffn_model *m, int on) { m->bf16_by_layer = on; }

void ffn_model_set_layer_hooks(ffn_model *m, const ffn_layer_hooks *hooks)
{
    m->hooks = hooks ? *hooks : (ffn_layer_hooks){0};
}

static void hook_before(ffn_model *m, size_t i, ffn_pass pass)
{
    if (m->hooks.before) m->hooks.before(m->hooks.user, i, pass);
}
static void hook_after(ffn_model *m, size_t i, ffn_pass pass)
{
    if (m->hooks.after) m->hooks.after(m->hooks.user, i, pass);
}

/* ---- precision ------------------------------------------------------------ */

ffn_status ffn_model_set_precision(ffn_model *m, ffn_precision p)
{
    return ffn_model_set_compute(m, p, p == FFN_PRECISION_FP32 ? FFN_GEMM_OPENBLAS : FFN_GEMM_ONEDNN);
}

ffn_status ffn_model_set_compute(ffn_model *m, ffn_precision p, ffn_gemm_backend b)
{
    ffn_gemm_engine *g = NULL;
    ffn_bf16 *copy = NULL;
    b = ffn_gemm_resolve(p, b);
    /* fp32 on OpenBLAS needs no engine: NULL is sgemm, as ever. */
    if (p != FFN_PRECISION_FP32 || b != FFN_GEMM_OPENBLAS) {
        ffn_status st = ffn_gemm_create(&g, p, b);
        if (st != FFN_OK) return st;
    }
    if (p == FFN_PRECISION_BF16) {
        if (!(copy = ffn_alloc_pages(m->param_count * sizeof *copy))) {
            ffn_gemm_free(g);
            return ffn_fail(FFN_ERR_NOMEM, "out of memory for the bf16 copy of %zu parameters", m->param_count);
        }
        ffn_gemm_set_bf16_copy(g, m->params, copy, m->param_count);
    }
    ffn_gemm_free(m->gemm);
    if (!m->bf16_borrowed) ffn_free_pages(m->params_bf16, m->param_count * sizeof *m->params_bf16);
    m->gemm = g;
    m->params_bf16 = copy;
    m->bf16_borrowed = 0;
    m->bf16_stale = 1;
    m->bf16_fixed_final = 0;
    size_t max_batch = m->max_batch;
    m->max_batch = 0; /* sizes the new engine's scratch */
    return max_batch ? ffn_model_reserve(m, max_batch) : FFN_OK;
}

ffn_precision ffn_model_precision(const ffn_model *m) { return ffn_gemm_precision(m->gemm); }

const char *ffn_model_gemm_name(const ffn_model *m, char *buf, size_t cap)
{
    return ffn_gemm_describe(m->gemm, buf, cap);
}

int ffn_model_bf16_current(const ffn_model *m) { return m->params_bf16 && !m->bf16_stale; }

void ffn_model_bf16_refresh_range(ffn_model *m, size_t offset, size_t count)
{
    if (m->params_bf16) ffn_bf16_from_floats(m->params_bf16 + offset, m->params + offset, count);
}

void ffn_model_bf16_set_current(ffn_model *m) { m->bf16_stale = 0; }

void ffn_model_bf16_refresh_slice(ffn_model *m, size_t lo, size_t hi)
{
    for (size_t k = 0; m->params_bf16 && k < m->tensor_count; k++) {
        const ffn_tensor *t = &m->tensors[k];
        const size_t a = t->offset > lo ? t->offset : lo;
        const size_t z = t->offset + t->count < hi ? t->offset + t->count : hi;
        if (t->ndim == 2 && a < z) ffn_bf16_from_floats(m->params_bf16 + a, m->params + a, z - a);
    }
}

void ffn_model_use_bf16_buffer(ffn_model *m, uint16_t *copy)
{
    if (!m->params_bf16 || !copy) return;
    if (!m->bf16_borrowed) ffn_free_pages(m->params_bf16, m->param_count * sizeof *m->params_bf16);
    m->params_bf16 = (ffn_bf16 *)copy;
    m->bf16_borrowed = 1;
    m->bf16_stale = 1;
    ffn_gemm_set_bf16_copy(m->gemm, m->params, m->params_bf16, m->param_count);
}

void ffn_model_bf16_refresh_layer(ffn_model *m, size_t i)
{
    if (!m->params_bf16) return;
    const ffn_layer *l = &m->layers[i];
    for (size_t k = 0; k < l->tensor_count; k++)
        if (l->tensors[k].ndim == 2)
            ffn_bf16_from_floats(m->params_bf16 + l->tensors[k].offset, l->tensors[k].data, l->tensors[k].count);
}

/* The weights' bf16 copy, converted when the parameters changed: once per
 * optimizer step in training (the products of forward and backward share it).
 * With layer hooks (--shard params) each layer's is converted as it is gathered. */
static void refresh_bf16_copy(ffn_model *m)
{
    if (!m->params_bf16 || !m->bf16_stale || m->bf16_by_layer) return;
    for (size_t k = 0; k < m->tensor_count; k++) {
        const ffn_tensor *t = &m->tensors[k];
        /* A fixed weight's copy may be a read-only node-shared page: it is final. */
        if (t->ndim == 2 && (t->trainable || !m->bf16_fixed_final))
            ffn_bf16_from_floats(m->params_bf16 + t->offset, t->data, t->count);
    }
    m->bf16_stale = 0;
}

void ffn_model_bf16_fix(ffn_model *m, int convert)
{
    if (!m->params_bf16) return;
    for (size_t k = 0; k < m->tensor_count && convert; k++) {
        const ffn_tensor *t = &m->tensors[k];
        if (t->ndim == 2 && !t->trainable) ffn_bf16_from_floats(m->params_bf16 + t->offset, t->data, t->count);
    }
    m->bf16_fixed_final = 1;
}

void ffn_model_page_buffers(ffn_model *m, float **params, void **bf16)
{
    *params = m->params;
    *bf16 = m->params_bf16;
}

int ffn_layer_kind_recomputes(ffn_layer_kind kind) { return kind == FFN_LAYER_FFN || kind == FFN_LAYER_SWIGLU; }

/* --recompute: the residual blocks (ffn, swiglu) give up their cache. */
static int recomputed(int recompute, const ffn_layer *l) { return recompute && ffn_layer_kind_recomputes(l->spec.kind); }

ffn_status ffn_model_set_recompute(ffn_model *m, int on)
{
    if (m->recompute == (on != 0)) return FFN_OK;
    m->recompute = on != 0;
    size_t max_batch = m->max_batch;
    m->max_batch = 0; /* the arena's layout changes */
    return max_batch ? ffn_model_reserve(m, max_batch) : FFN_OK;
}

int ffn_model_recompute(const ffn_model *m) { return m->recompute; }

ffn_status ffn_model_set_bf16_caches(ffn_model *m, int on)
{
    if (m->fp32_caches == !on) return FFN_OK;
    m->fp32_caches = !on;
    size_t max_batch = m->max_batch;
    m->max_batch = 0; /* the arena's layout changes */
    return max_batch ? ffn_model_reserve(m, max_batch) : FFN_OK;
}

int ffn_model_bf16_caches(const ffn_model *m)
{
    return ffn_model_precision(m) == FFN_PRECISION_BF16 && !m->fp32_caches;
}

/* The optional sizes of a kind (a missing hook: none). */
static size_t cache_per_row(const ffn_layer_ops *ops, const ffn_layer *l)
{
    return ops->cache_per_row ? ops->cache_per_row(l) : 0;
}
static size_t work_per_row(const ffn_layer_ops *ops, const ffn_layer *l)
{
    return ops->work_per_row ? ops->work_per_row(l) : 0;
}
static int needs_z(const ffn_layer_ops *ops, const ffn_layer *l) { return ops->needs_z && ops->needs_z(l); }

/* The floats ffn_model_reserve allocates for max_batch rows over layers
 * [count] (spec, in and out set): every layer's y, z and cache in one arena
 * (a recomputed block's cache in *shared instead, sized for the largest),
 * backward's work area, each of the two scratch buffers, and the widest
 * operand of a product (bf16: each of the engine's two conversion buffers). */
static ffn_status arena_sizes(const ffn_layer *layers, size_t count, size_t input_dim, size_t max_batch,
                              int recompute, size_t *arena, size_t *work_out, size_t *scratch, size_t *shared_out,
                              size_t *operand_out)
{
    size_t total = 0, widest = input_dim, work = 1, operand = 0, shared = 0;
    for (size_t i = 0; i < count; i++) {
        const ffn_layer *l = &layers[i];
        const ffn_layer_ops *ops = ffn_layer_ops_of(l->spec.kind);
        size_t per_row = l->out, wk = work_per_row(ops, l), own_cache = cache_per_row(ops, l);
        if (recomputed(recompute, l)) { /* its cache lives in the shared one */
            if (own_cache > shared) shared = own_cache;
            own_cache = 0;
        }
        if ((needs_z(ops, l) && ffn_size_add(per_row, l->out, &per_row) != 0) ||
            ffn_size_add(per_row, own_cache, &per_row) != 0 ||
            ffn_size_mul(per_row, max_batch, &per_row) != 0 || ffn_size_add(total, per_row, &total) != 0 ||
            ffn_size_mul(wk, max_batch, &wk) != 0)
            return ffn_fail(FFN_ERR_NOMEM, "activation size overflows for batch %zu", max_batch);
        if (l->out > widest) widest = l->out;
        if (l->spec.units > operand) operand = l->spec.units; /* a block's hidden width */
        if (wk > work) work = wk;
    }
    if (widest > operand) operand = widest;
    if (ffn_size_mul(max_batch, widest, scratch) != 0 || ffn_size_mul(max_batch, shared, shared_out) != 0 ||
        ffn_size_mul(max_batch, operand, operand_out) != 0)
        return ffn_fail(FFN_ERR_NOMEM, "activation size overflows for batch %zu", max_batch);
    *arena = total;
    *work_out = work;
    return FFN_OK;
}

/* Layer i of a plan: its spec, widths and parameter count (ls[i] set up). */
static ffn_status plan_layer(ffn_layer *ls, const ffn_layer_spec *layers, size_t i, size_t in, size_t *params)
{
    const ffn_layer_ops *ops = ffn_layer_ops_of(layers[i].kind);
    if (!ops) return ffn_fail(FFN_ERR_ARG, "model spec item %zu: unknown layer kind %d", i + 1, (int)layers[i].kind);
    ffn_tensor_decl decl[FFN_LAYER_MAX_TENSORS];
    ls[i].spec = layers[i];
    ls[i].in = in;
    int n = ops->setup(&ls[i].spec, in, &ls[i].out, decl);
    if (n < 0) return FFN_ERR_ARG;
    size_t total = 0;
    for (int j = 0; j < n; j++) {
        size_t c = decl[j].shape[0];
        if ((decl[j].ndim == 2 && ffn_size_mul(decl[j].shape[0], decl[j].shape[1], &c) != 0) ||
            ffn_size_add(total, c, &total) != 0)
            return ffn_fail(FFN_ERR_NOMEM, "model spec item %zu: parameter count overflows", i + 1);
    }
    *params = total;
    return FFN_OK;
}

ffn_status ffn_model_plan_largest_layer(const ffn_layer_spec *layers, size_t count, size_t input_dim, size_t *largest)
{
    *largest = 0;
    ffn_layer *ls = calloc(count ? count : 1, sizeof *ls);
    if (!ls) return ffn_fail(FFN_ERR_NOMEM, "out of memory planning the model");
    ffn_status st = FFN_OK;
    size_t in = input_dim;
    for (size_t i = 0; i < count && st == FFN_OK; i++) {
        size_t n = 0;
        if ((st = plan_layer(ls, layers, i, in, &n)) == FFN_OK && n > *largest) *largest = n;
        in = ls[i].out;
    }
    free(ls);
    return st;
}

ffn_status ffn_model_plan(const ffn_layer_spec *layers, size_t count, size_t input_dim, size_t max_batch,
                          int recompute, int bf16_caches, size_t *params, size_t *activation_floats,
                          size_t *operand_floats)
{
    *params = *activation_floats = 0;
    if (operand_floats) *operand_floats = 0;
    if (count == 0) return ffn_fail(FFN_ERR_ARG, "model has no layers");
    ffn_layer *ls = calloc(count, sizeof *ls);
    if (!ls) return ffn_fail(FFN_ERR_NOMEM, "out of memory planning the model");
    ffn_status st = FFN_OK;
    size_t in = input_dim, total = 0;
    for (size_t i = 0; i < count && st == FFN_OK; i++) {
        size_t n = 0;
        if ((st = plan_layer(ls, layers, i, in, &n)) == FFN_OK && ffn_size_add(total, n, &total) != 0)
            st = ffn_fail(FFN_ERR_NOMEM, "model spec item %zu: parameter count overflows", i + 1);
        in = ls[i].out;
    }
    for (size_t i = 0; i < count; i++) ls[i].cache_bf16 = bf16_caches != 0;
    size_t arena = 0, work = 0, scratch = 0, shared = 0, operand = 0, floats = 0;
    if (st == FFN_OK)
        st = arena_sizes(ls, count, input_dim, max_batch, recompute, &arena, &work, &scratch, &shared, &operand);
    if (st == FFN_OK && (ffn_size_add(arena, work, &floats) != 0 || ffn_size_add(floats, scratch, &floats) != 0 ||
                         ffn_size_add(floats, scratch, &floats) != 0 || ffn_size_add(floats, shared, &floats) != 0))
        st = ffn_fail(FFN_ERR_NOMEM, "activation size overflows for batch %zu", max_batch);
    free(ls);
    if (st != FFN_OK) return st;
    *params = total;
    *activation_floats = floats;
    if (operand_floats) *operand_floats = operand;
    return FFN_OK;
}

ffn_status ffn_model_reserve(ffn_model *m, size_t max_batch)
{
    if (max_batch <= m->max_batch) return FFN_OK;
    ffn_free(m->activations);
    ffn_free(m->work);
    ffn_free(m->scratch[0]);
    ffn_free(m->scratch[1]);
    ffn_free(m->block_cache);
    m->activations = m->work = m->scratch[0] = m->scratch[1] = m->block_cache = NULL;
    m->max_batch = 0;
    m->cache_owner = m->layer_count;
    /* The caches' layout follows the precision (ffn_model_set_compute reserves again). */
    for (size_t i = 0; i < m->layer_count; i++) m->layers[i].cache_bf16 = ffn_model_bf16_caches(m);
    size_t total, work, scratch, shared, operand;
    ffn_status st = arena_sizes(m->layers, m->layer_count, m->input_dim, max_batch, m->recompute, &total, &work,
                                &scratch, &shared, &operand);
    if (st != FFN_OK) return st;
    if (shared && !(m->block_cache = ffn_alloc_floats(shared)))
        return ffn_fail(FFN_ERR_NOMEM, "out of memory for the recomputed blocks' cache of batch %zu", max_batch);
    m->activations = ffn_alloc_floats(total);
    m->work = ffn_alloc_floats(work);
    m->scratch[0] = ffn_alloc_floats(scratch);
    m->scratch[1] = ffn_alloc_floats(scratch);
    if (!m->activations || !m->work || !m->scratch[0] || !m->scratch[1])
        return ffn_fail(FFN_ERR_NOMEM, "out of memory for activations of batch %zu", max_batch);
    /* bf16: every activation operand of a product is at most [max_batch, operand]. */
    if (ffn_gemm_reserve(m->gemm, operand) != FFN_OK)
        return ffn_fail(FFN_ERR_NOMEM, "out of memory for the bf16 operands of batch %zu", max_batch);
    float *p = m->activations;
    for (size_t i = 0; i < m->layer_count; i++) {
        ffn_layer *l = &m->layers[i];
        const ffn_layer_ops *ops = ffn_layer_ops_of(l->spec.kind);
        l->y = p;
        p += max_batch * l->out;
        if (needs_z(ops, l)) {
            l->z = p;
            p += max_batch * l->out;
        } else {
            l->z = l->y;
        }
        size_t cache = cache_per_row(ops, l);
        if (recomputed(m->recompute, l)) {
            l->cache = m->block_cache;
            continue;
        }
        l->cache = cache ? p : NULL;
        p += max_batch * cache;
    }
    m->max_batch = max_batch;
    return FFN_OK;
}

/* ---- forward and backward ----------------------------------------------- */

static const float *forward(ffn_model *m, const float *x, size_t batch)
{
    refresh_bf16_copy(m);
    const float *in = x;
    for (size_t i = 0; i < m->layer_count; i++) {
        ffn_layer *l = &m->layers[i];
        m->ctx.layer = i;
        hook_before(m, i, FFN_PASS_FORWARD);
        ffn_layer_ops_of(l->spec.kind)->forward(l, in, batch, &m->ctx);
        hook_after(m, i, FFN_PASS_FORWARD);
        if (recomputed(m->recompute, l)) m->cache_owner = i;
        in = l->y;
    }
    return in;
}

const float *ffn_model_forward(ffn_model *m, const float *x, size_t batch)
{
    m->ctx = (ffn_forward_ctx){.gemm = m->gemm, .work = m->work};
    return forward(m, x, batch);
}

const float *ffn_model_forward_train(ffn_model *m, const float *x, size_t batch, uint64_t seed,
                                     uint64_t step, const uint64_t *rows)
{
    m->ctx = (ffn_forward_ctx){.train = 1, .seed = seed, .step = step, .rows = rows, .gemm = m->gemm, .work = m->work};
    return forward(m, x, batch);
}

static int layer_trains(const ffn_layer *l)
{
    for (size_t k = 0; k < l->tensor_count; k++)
        if (l->tensors[k].trainable) return 1;
    return 0;
}

/* The lowest layer backward visits without dx: the lowest that trains. */
static size_t lowest_trained(const ffn_model *m)
{
    for (size_t i = 0; i < m->layer_count; i++)
        if (layer_trains(&m->layers[i])) return i;
    return m->layer_count;
}


/* Each run of adjacent trainable tensors of l within the flat range [lo, hi), highest first. */
static void report_ready_within(const ffn_layer *l, size_t lo, size_t hi, ffn_grad_ready_fn ready, void *user)
{
    for (size_t j = l->tensor_count; j-- > 0;) {
        if (!l->tensors[j].trainable) continue;
        size_t top = l->tensors[j].offset + l->tensors[j].count;
        while (j > 0 && l->tensors[j - 1].trainable) j--;
        size_t a = l->tensors[j].offset > lo ? l->tensors[j].offset : lo, z = top < hi ? top : hi;
        if (a < z) ready(user, a, z - a);
    }
}

static void report_ready(const ffn_layer *l, ffn_grad_ready_fn ready, void *user)
{
    report_ready_within(l, 0, SIZE_MAX, ready, user);
}

/* ffn_forward_ctx.grads_from: the layer's parameter gradients from offset up
 * are final (before its dx, or a weight's top rows before the rest): report
 * what is new now rather than after its backward. */
static void layer_grads_from(void *model, size_t layer, size_t offset)
{
    ffn_model *m = model;
    if (offset >= m->reported_lo) return;
    report_ready_within(&m->layers[layer], offset, m->reported_lo, m->ready, m->ready_user);
    m->reported_lo = offset;
}

void ffn_model_set_grad_piece(ffn_model *m, size_t floats) { m->grad_piece = floats; }

void ffn_model_backward_dx(ffn_model *m, const float *x, size_t batch, float *dout, int accumulate,
                           ffn_grad_ready_fn ready, void *user, float *dx_out)
{
    m->ready = ready;
    m->ready_user = user;
    m->ctx.grads_from = ready ? layer_grads_from : NULL;
    m->ctx.grads_from_user = m;
    m->ctx.grad_piece = ready ? m->grad_piece : 0;
    const size_t lowest = dx_out ? 0 : lowest_trained(m);
    float *dy = dout;
    for (size_t i = m->layer_count; i-- > 0 && i >= lowest;) {
        ffn_layer *l = &m->layers[i];
        const float *in = i == 0 ? x : m->layers[i - 1].y;
        /* dx of layer i is dy of layer i-1: alternate two buffers so they never alias. */
        float *dx = i > lowest ? m->scratch[(i - 1) & 1] : i == 0 ? dx_out : NULL;
        m->ctx.layer = i;
        const ffn_layer_ops *ops = ffn_layer_ops_of(l->spec.kind);
        hook_before(m, i, FFN_PASS_BACKWARD);
        if (recomputed(m->recompute, l) && m->cache_owner != i) {
            /* Its forward again, from its kept input: the same values into the
             * shared cache (and y, unchanged), so the gradients are bitwise
             * those of a run that kept every cache. */
            ops->forward(l, in, batch, &m->ctx);
            m->cache_owner = i;
        }
        m->reported_lo = SIZE_MAX;
        ops->backward(l, dx, dy, in, batch, accumulate, m->work, &m->ctx);
        if (ready) layer_grads_from(m, i, 0); /* what the layer did not report itself */
        hook_after(m, i, FFN_PASS_BACKWARD);
        dy = dx;
    }
}

size_t ffn_model_lowest_trained(const ffn_model *m) { return lowest_trained(m); }

void ffn_model_forward_without_rows(ffn_model *m)
{
    for (size_t i = 0; i < m->layer_count; i++) {
        hook_before(m, i, FFN_PASS_FORWARD);
        hook_after(m, i, FFN_PASS_FORWARD);
    }
}

void ffn_model_pass_without_rows(ffn_model *m, ffn_grad_ready_fn ready, void *user)
{
    ffn_model_forward_without_rows(m);
    const size_t lowest = lowest_trained(m);
    for (size_t i = m->layer_count; i-- > 0 && i >= lowest;) {
        hook_before(m, i, FFN_PASS_BACKWARD);
        if (ready) report_ready(&m->layers[i], ready, user);
        hook_after(m, i, FFN_PASS_BACKWARD);
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
