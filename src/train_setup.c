/* ffn — a run's setup: datasets, the model (fresh, resumed or fine-tuned
 * from a checkpoint, with a replaced head, frozen layers or LoRA adapters),
 * the teacher, pruning masks, threads, the step and the loader. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "files.h"
#include "ffn/memplan.h"
#include "gemm.h"
#include "ffn/sampler.h"
#include "train_run.h"

/* Opens an optional dataset on every rank; all ranks agree on the outcome. */
static ffn_status open_dataset(ffn_run *r, const char *path, ffn_dataset **out)
{
    *out = NULL;
    if (!path) return FFN_OK;
    ffn_status st = ffn_dataset_open(out, path);
    return ffn_comm_agree(r->comm, st);
}

/* Why other's statistics (of `what`) are not train's (of `ref`), as one
 * sentence into buf ("" when they are the same). */
static void stats_difference(const ffn_data_meta *train, const char *ref, const ffn_data_meta *other,
                             const char *what, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (ffn_data_meta_same_stats(train, other)) return;
    if (!other->features) {
        snprintf(buf, cap, "%s is raw (no /feature_mean, /feature_std), but %s is standardized", what, ref);
    } else if (!train->features) {
        snprintf(buf, cap, "%s is standardized (/feature_mean, /feature_std), but %s is raw", what, ref);
    } else {
        size_t j = 0;
        size_t n = train->features < other->features ? train->features : other->features;
        while (j < n && train->mean[j] == other->mean[j] && train->std[j] == other->std[j]) j++;
        if (j < n)
            snprintf(buf, cap, "%s is standardized with other statistics than %s (feature %zu: mean %.9g, std %.9g; "
                     "expected mean %.9g, std %.9g)", what, ref, j, other->mean[j], other->std[j], train->mean[j],
                     train->std[j]);
        else
            snprintf(buf, cap, "%s has statistics for %zu features, %s for %zu", what, other->features, ref,
                     train->features);
    }
}

/* --train's metadata into r->train_meta; --val and --test must carry the same
 * statistics (standardized alike, or both raw) and class names; --resume
 * continues on data standardized as the checkpoint's was. */
static ffn_status check_metadata(ffn_run *r)
{
    const ffn_train_config *cfg = r->cfg;
    ffn_status st = ffn_data_meta_read(cfg->train_path, &r->train_meta);
    if (st == FFN_OK && r->train_meta.features && r->train_meta.features != ffn_dataset_get_info(r->train)->features)
        st = ffn_fail(FFN_ERR_FORMAT, "--train %s: /feature_mean has %zu values, expected one for each of the %zu "
                      "features", cfg->train_path, r->train_meta.features, ffn_dataset_get_info(r->train)->features);
    const struct {
        const char *flag, *path;
    } others[] = {{"--val", cfg->val_path}, {"--test", cfg->test_path}};
    char why[9200], what[4200], ref[4200];
    snprintf(ref, sizeof ref, "--train %s", cfg->train_path);
    for (size_t i = 0; i < 2 && st == FFN_OK; i++) {
        if (!others[i].path) continue;
        ffn_data_meta m;
        if ((st = ffn_data_meta_read(others[i].path, &m)) != FFN_OK) break;
        snprintf(what, sizeof what, "%s %s", others[i].flag, others[i].path);
        stats_difference(&r->train_meta, ref, &m, what, why, sizeof why);
        if (why[0] && r->train_meta.features)
            st = ffn_fail(FFN_ERR_ARG, "%s; evaluating it would feed the model inputs on another scale: convert it "
                          "like the training data (ffn-data CONVERTER ... --standardize-like %s, or ffn-data "
                          "standardize RAW.h5 --out NEW.h5 --like %s)", why, cfg->train_path, cfg->train_path);
        else if (why[0])
            st = ffn_fail(FFN_ERR_ARG, "%s; evaluating it would feed the model inputs on another scale: give its raw "
                          "data, or standardize --train too and convert this file with --standardize-like", why);
        else if (!ffn_data_meta_same_names(&r->train_meta, &m))
            st = ffn_fail(FFN_ERR_ARG, "%s %s has other class_names than --train %s (%zu and %zu names); its labels "
                          "would mean other classes", others[i].flag, others[i].path, cfg->train_path, m.class_count,
                          r->train_meta.class_count);
        ffn_data_meta_free(&m);
    }
    if (st == FFN_OK && r->have_ckpt && (cfg->resume || cfg->init_from)) {
        snprintf(what, sizeof what, "%s %s's training data", cfg->resume ? "--resume" : "--init-from",
                 r->start_path ? r->start_path : "");
        stats_difference(&r->ckpt.meta, what, &r->train_meta, ref, why, sizeof why);
        if (why[0] && cfg->resume)
            st = ffn_fail(FFN_ERR_ARG, "--resume: %s; resume on data converted the same way", why);
        else if (why[0] && r->rank == 0 && r->ckpt.data_rows) /* a weights file records no data */
            fprintf(stderr, "ffn-train: warning: --init-from: %s; this run's checkpoints record --train's "
                    "statistics\n", why);
    }
    return ffn_comm_agree(r->comm, st);
}

ffn_shard ffn_run_shard(const ffn_run *r)
{
    return (ffn_shard)r->cfg->shard; /* --shard-optimizer folded in by the configuration */
}

void ffn_run_kept_params(const ffn_run *r, size_t *lo, size_t *hi)
{
    const size_t n = ffn_model_param_count(r->model);
    *lo = 0;
    *hi = n;
    if (ffn_run_shard(r) >= FFN_SHARD_PARAMS) ffn_comm_slice(r->comm, n, r->rank, lo, hi);
}

/* BLAS threads per rank: --threads, or by default the node's cores shared among
 * the ranks on it (ffn_comm_default_threads). */
static int choose_threads(ffn_run *r)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int local = ffn_comm_local_size(r->comm);
    int threads = r->cfg->threads;
    if (threads == 0) {
        threads = ffn_comm_default_threads(r->comm);
    } else if ((long)threads * local > cores && r->print) {
        fprintf(stderr,
                "ffn-train: warning: --threads %d x %d ranks on this node exceeds its %ld cores "
                "(oversubscribed; expect a slowdown)\n",
                threads, local, cores);
    }
    ffn_gemm_set_threads(threads);
    return threads;
}

/* --lora: which layers get adapters (dense ones only; never a replaced head). */
static ffn_status choose_lora_layers(const ffn_train_config *cfg, const ffn_layer_spec *layers, size_t count,
                                     int *chosen)
{
    int head = cfg->replace_head != 0;
    if (!cfg->lora_layers) {
        for (size_t i = 0; i < count; i++)
            chosen[i] = layers[i].kind == FFN_LAYER_DENSE && !(head && i + 1 == count);
    } else {
        ffn_status st = ffn_config_parse_layer_list("--lora-layers", cfg->lora_layers, count, chosen);
        if (st != FFN_OK) return st;
        for (size_t i = 0; i < count; i++) {
            if (!chosen[i]) continue;
            if (layers[i].kind != FFN_LAYER_DENSE)
                return ffn_fail(FFN_ERR_ARG, "--lora-layers %s: layer %zu is %s; adapters go on dense layers",
                                cfg->lora_layers, i, ffn_layer_kind_name(layers[i].kind));
            if (head && i + 1 == count)
                return ffn_fail(FFN_ERR_ARG, "--lora-layers %s: layer %zu is the replaced head, which trains in "
                                "full (its weights are new)", cfg->lora_layers, i);
        }
    }
    size_t any = 0;
    for (size_t i = 0; i < count; i++) any += chosen[i] != 0;
    if (!any) return ffn_fail(FFN_ERR_ARG, "--lora: the model has no dense layer to adapt");
    return FFN_OK;
}

static void format_shape(char *out, size_t cap, const ffn_tensor *t)
{
    if (t->ndim == 2) snprintf(out, cap, "[%zu, %zu]", t->shape[0], t->shape[1]);
    else snprintf(out, cap, "[%zu]", t->shape[0]);
}

/* --init-from: tensor t of the model from the checkpoint's ct: from memory
 * (a weights file), or read from the file, only the part this rank keeps. */
static ffn_status copy_init_tensor(const ffn_run *r, const ffn_checkpoint *ck, const ffn_tensor *t,
                                   const ffn_tensor *ct)
{
    if (ck->params) {
        memcpy(t->data, ck->params + ct->offset, t->count * sizeof(float));
        return FFN_OK;
    }
    size_t lo, hi;
    ffn_run_kept_params(r, &lo, &hi);
    size_t from = t->offset > lo ? t->offset : lo, to = t->offset + t->count < hi ? t->offset + t->count : hi;
    if (from >= to) return FFN_OK;
    return ffn_checkpoint_read_params(ck, r->start_path, ct->offset + (from - t->offset),
                                      ct->offset + (to - t->offset), t->data + (from - t->offset));
}

/* --init-from: every tensor of the model from the checkpoint's tensor of the
 * same layer and name. A replaced head keeps its fresh values, and so do
 * adapters the checkpoint lacks; anything else missing or shaped otherwise is
 * an error naming the layer, the tensor and both shapes. */
static ffn_status copy_init_tensors(ffn_run *r, const ffn_checkpoint *ck)
{
    const ffn_train_config *cfg = r->cfg;
    const ffn_model *cm = ck->model;
    size_t n = ffn_model_layer_count(r->model), cn = ffn_model_layer_count(cm);
    for (size_t i = 0; i < n; i++) {
        const ffn_layer *l = ffn_model_layer_const(r->model, i);
        if (cfg->replace_head && i + 1 == n) break;
        if (i >= cn)
            return ffn_fail(FFN_ERR_ARG, "--init-from %s: layer %zu (%s) has no counterpart in the checkpoint, "
                            "which has %zu layers", cfg->init_from, i, ffn_layer_kind_name(l->spec.kind), cn);
        const ffn_layer *cl = ffn_model_layer_const(cm, i);
        if (cl->spec.kind != l->spec.kind)
            return ffn_fail(FFN_ERR_ARG, "--init-from %s: layer %zu is %s in the model but %s in the checkpoint",
                            cfg->init_from, i, ffn_layer_kind_name(l->spec.kind), ffn_layer_kind_name(cl->spec.kind));
        for (size_t k = 0; k < cl->tensor_count; k++)
            if (!ffn_model_find_tensor(r->model, i, cl->tensors[k].name))
                return ffn_fail(FFN_ERR_ARG, "--init-from %s: the checkpoint's layer %zu has %s, which the model "
                                "lacks%s", cfg->init_from, i, cl->tensors[k].name,
                                strncmp(cl->tensors[k].name, "lora_", 5) == 0
                                    ? " (merge the adapters first: ffn-eval --merge-lora)" : "");
        for (size_t k = 0; k < l->tensor_count; k++) {
            const ffn_tensor *t = &l->tensors[k], *ct = ffn_model_find_tensor(cm, i, t->name);
            if (!ct) {
                if (strncmp(t->name, "lora_", 5) == 0) continue; /* a new adapter */
                return ffn_fail(FFN_ERR_ARG, "--init-from %s: layer %zu's %s is missing in the checkpoint",
                                cfg->init_from, i, t->name);
            }
            if (ct->ndim != t->ndim || ct->shape[0] != t->shape[0] || ct->shape[1] != t->shape[1]) {
                char a[64], b[64];
                format_shape(a, sizeof a, t);
                format_shape(b, sizeof b, ct);
                return ffn_fail(FFN_ERR_ARG, "--init-from %s: layer %zu's %s is %s in the model but %s in the "
                                "checkpoint%s", cfg->init_from, i, t->name, a, b,
                                i + 1 == n ? " (use --replace-head K for a new output layer)" : "");
            }
            ffn_status st = copy_init_tensor(r, ck, t, ct);
            if (st != FFN_OK) return st;
        }
    }
    ffn_model_params_changed(r->model);
    if (n < cn && r->rank == 0 && !cfg->quiet)
        printf("init-from: the checkpoint's last %zu layer(s) are not used by this model\n", cn - n);
    return FFN_OK;
}

/* The layers of the model to build: --model (or the default), or the
 * checkpoint's being resumed or fine-tuned from, with a replaced head and
 * --lora adapters (lora[i]: layer i got one; NULL when not wanted). */
static ffn_status model_layers(const ffn_run *r, ffn_layer_spec **out, size_t *out_count, int **lora_out)
{
    const ffn_train_config *cfg = r->cfg;
    const ffn_checkpoint *ck = r->have_ckpt ? &r->ckpt : NULL;
    const char *spec = cfg->model_spec ? cfg->model_spec : ck ? ck->model_spec : FFN_DEFAULT_MODEL_SPEC;
    ffn_layer_spec *layers;
    size_t count;
    *out = NULL;
    if (lora_out) *lora_out = NULL;
    ffn_status st = ffn_spec_parse(spec, &layers, &count);
    if (st != FFN_OK) return ffn_fail(st, "--model: %s", ffn_last_error());
    int *lora = calloc(count, sizeof *lora);
    if (!lora) st = ffn_fail(FFN_ERR_NOMEM, "out of memory");
    if (st == FFN_OK && cfg->init_from && cfg->replace_head) {
        if (layers[count - 1].kind != FFN_LAYER_DENSE)
            st = ffn_fail(FFN_ERR_ARG, "--replace-head: the last layer is %s; only a dense head can be replaced",
                          ffn_layer_kind_name(layers[count - 1].kind));
        layers[count - 1].units = cfg->replace_head;
    }
    if (st == FFN_OK && cfg->lora && cfg->init_from && (st = choose_lora_layers(cfg, layers, count, lora)) == FFN_OK)
        for (size_t i = 0; i < count; i++)
            if (lora[i]) {
                layers[i].lora_rank = cfg->lora;
                layers[i].lora_alpha = cfg->lora_alpha > 0 ? cfg->lora_alpha : (float)cfg->lora;
            }
    if (st != FFN_OK || !lora_out) free(lora);
    if (st != FFN_OK) {
        free(layers);
        return st;
    }
    if (lora_out) *lora_out = lora;
    *out = layers;
    *out_count = count;
    return FFN_OK;
}

/* Which layers are frozen (frozen [count]): a resumed run's as in its
 * checkpoint (a --freeze or --lora run resumes as it ran), --lora's base
 * (every layer without an adapter, but a replaced head), and --freeze's list.
 * The model (build_model) and the memory plan (plan_memory) both follow it. */
static ffn_status choose_frozen(const ffn_run *r, size_t count, const int *lora, int *frozen)
{
    const ffn_train_config *cfg = r->cfg;
    const ffn_checkpoint *ck = r->have_ckpt ? &r->ckpt : NULL;
    for (size_t i = 0; i < count; i++) {
        frozen[i] = 0;
        if (ck && cfg->resume)
            frozen[i] = i < ffn_model_layer_count(ck->model) && ffn_model_layer_const(ck->model, i)->frozen;
        else if (ck && cfg->lora && lora)
            frozen[i] = !lora[i] && !(cfg->replace_head && i + 1 == count);
    }
    if (!cfg->freeze) return FFN_OK;
    int *listed = calloc(count, sizeof *listed);
    if (!listed) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    ffn_status st = ffn_config_parse_layers(cfg->freeze, count, listed);
    size_t count_listed = 0;
    for (size_t i = 0; st == FFN_OK && i < count; i++) {
        frozen[i] |= listed[i] != 0;
        count_listed += listed[i] != 0;
    }
    free(listed);
    if (st == FFN_OK && count_listed == count)
        st = ffn_fail(FFN_ERR_ARG, "--freeze %s: every layer is frozen; nothing would train", cfg->freeze);
    return st;
}

/* Builds the model of model_layers, fills it and marks what trains. */
static ffn_status build_model(ffn_run *r, size_t input_dim)
{
    const ffn_train_config *cfg = r->cfg;
    const ffn_checkpoint *ck = r->have_ckpt ? &r->ckpt : NULL;
    ffn_layer_spec *layers;
    size_t count;
    int *lora;
    ffn_status st = model_layers(r, &layers, &count, &lora);
    if (st != FFN_OK) return st;
    if ((st = ffn_model_create(&r->model, layers, count, input_dim)) != FFN_OK)
        st = ffn_fail(st, "--model: %s", ffn_last_error());
    free(layers);
    if (st != FFN_OK) {
        free(lora);
        return st;
    }
    /* Each rank draws the same values, but with --shard params keeps only its
     * slice (ffn_step_create's). A resumed model comes whole from its
     * checkpoint: nothing to draw, and the pages of other ranks' slices stay
     * untouched. */
    size_t kept_lo, kept_hi;
    ffn_run_kept_params(r, &kept_lo, &kept_hi);
    if (!(ck && cfg->resume)) {
        if (ffn_run_shard(r) >= FFN_SHARD_PARAMS) ffn_model_init_params_slice(r->model, r->seed, kept_lo, kept_hi);
        else ffn_model_init_params(r->model, r->seed);
    }
    int *frozen = calloc(count, sizeof *frozen);
    if (!frozen) st = ffn_fail(FFN_ERR_NOMEM, "out of memory");

    if (st == FFN_OK && ck && cfg->resume) {
        char *text = ffn_model_spec_text(r->model);
        int same = text && strcmp(text, ck->model_spec) == 0 && ck->input_dim == input_dim;
        if (!same)
            st = ffn_fail(FFN_ERR_ARG,
                          "--resume: the model %zu -> %s differs from the checkpoint's %zu -> %s (a resumed "
                          "run keeps its model; use --init-from to start a new run from its weights)",
                          input_dim, text ? text : "?", ck->input_dim, ck->model_spec);
        free(text);
        if (st == FFN_OK) {
            /* Only the parameters this rank keeps, straight into the model's buffer. */
            st = ffn_checkpoint_read_params(ck, r->start_path, kept_lo, kept_hi, ffn_model_params(r->model) + kept_lo);
            ffn_model_params_changed(r->model);
        }
    } else if (st == FFN_OK && ck) {
        st = copy_init_tensors(r, ck);
    }
    if (st == FFN_OK) st = choose_frozen(r, count, lora, frozen);
    for (size_t i = 0; st == FFN_OK && i < count; i++)
        if (frozen[i]) ffn_model_set_frozen(r->model, i, 1);
    free(frozen);
    free(lora);
    if (st == FFN_OK && ffn_model_trainable_count(r->model) == 0)
        st = ffn_fail(FFN_ERR_ARG, "--model: no parameter would train (every layer frozen or without parameters)");
    return st;
}

/* --teacher: the checkpoint's model, forward only, on every rank. */
static ffn_status load_teacher(ffn_run *r, size_t input_dim, size_t max_batch)
{
    const char *path = r->cfg->teacher;
    ffn_checkpoint ck = r->teacher_ckpt; /* loaded by plan_memory; freed here */
    memset(&r->teacher_ckpt, 0, sizeof r->teacher_ckpt);
    r->have_teacher_ckpt = 0;
    ffn_status st = FFN_OK;
    if (strcmp(ck.loss, "softmax_ce") != 0)
        st = ffn_fail(FFN_ERR_ARG, "--teacher %s: trained with loss %s; distillation needs a softmax_ce teacher",
                      path, ck.loss);
    else if (ck.input_dim != input_dim)
        st = ffn_fail(FFN_ERR_ARG, "--teacher %s: the teacher reads %zu features, the training set has %zu", path,
                      ck.input_dim, input_dim);
    else if ((st = ffn_model_create_from_text(&r->teacher, ck.model_spec, ck.input_dim)) != FFN_OK)
        st = ffn_fail(st, "--teacher %s: %s", path, ffn_last_error());
    else if (ffn_model_output_dim(r->teacher) != ffn_model_output_dim(r->model))
        st = ffn_fail(FFN_ERR_ARG, "--teacher %s: the teacher has %zu outputs, the model trained has %zu", path,
                      ffn_model_output_dim(r->teacher), ffn_model_output_dim(r->model));
    if (st == FFN_OK) {
        /* The teacher reads the student's inputs: they must be on the scale it was trained on. */
        char why[9200], what[4200], ref[4200];
        snprintf(what, sizeof what, "--train %s", r->cfg->train_path);
        snprintf(ref, sizeof ref, "--teacher %s's training data", path);
        stats_difference(&ck.meta, ref, &r->train_meta, what, why, sizeof why);
        if (why[0])
            st = ffn_fail(FFN_ERR_ARG, "%s; the teacher would see inputs on another scale than it was trained on", why);
    }
    if (st == FFN_OK) {
        memcpy(ffn_model_params(r->teacher), ck.params, ck.param_count * sizeof(float));
        /* The teacher computes as the student does: a student that is the
         * teacher sees exactly the teacher's outputs (KL 0). */
        st = ffn_model_set_compute(r->teacher, (ffn_precision)r->cfg->precision, (ffn_gemm_backend)r->cfg->gemm);
        if (st == FFN_OK) st = ffn_model_set_bf16_caches(r->teacher, !r->cfg->fp32_caches);
        if (st == FFN_OK) st = ffn_model_reserve(r->teacher, max_batch);
    }
    ffn_checkpoint_free(&ck);
    return st;
}

/* Pruning masks: one segment per layer's weights. Masks found in the
 * checkpoint are kept (resume: all of them; init-from: those of the layers
 * loaded), with or without --prune. */
static ffn_status setup_pruning(ffn_run *r)
{
    const ffn_train_config *cfg = r->cfg;
    const ffn_checkpoint *ck = r->have_ckpt ? &r->ckpt : NULL;
    int inherited = ck && ck->mask;
    if (!(cfg->prune > 0) && !inherited) return FFN_OK;
    size_t n = ffn_model_layer_count(r->model);
    ffn_prune_segment *segs = calloc(n, sizeof *segs);
    if (!segs) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const ffn_layer *l = ffn_model_layer_const(r->model, i);
        segs[i] = (ffn_prune_segment){l->param_offset, l->weight_count};
    }
    ffn_status st = ffn_pruner_create(&r->pruner, segs, n, ffn_model_param_count(r->model));
    free(segs);
    if (st != FFN_OK || !inherited) return st;
    uint8_t *mask = ffn_pruner_mask(r->pruner);
    if (cfg->resume) {
        memcpy(mask, ck->mask, ck->param_count);
        return FFN_OK;
    }
    for (size_t i = 0; i < n && i < ck->layer_count; i++) {
        const ffn_layer *l = ffn_model_layer_const(r->model, i);
        const ffn_tensor *cw = ffn_model_find_tensor(ck->model, i, "W");
        if (!(cfg->replace_head && i + 1 == n) && l->weight_count && cw && cw->count == l->weight_count)
            memcpy(mask + l->param_offset, ck->mask + cw->offset, l->weight_count);
    }
    return FFN_OK;
}

/* --loss and the model's last layer: softmax_ce and bce apply their own output activation. */
static ffn_status check_head(const ffn_run *r)
{
    const ffn_train_config *cfg = r->cfg;
    const ffn_layer *last = ffn_model_layer_const(r->model, ffn_model_layer_count(r->model) - 1);
    if (last->spec.kind == FFN_LAYER_DENSE && last->spec.act != FFN_ACT_IDENTITY && cfg->loss != FFN_LOSS_MSE)
        return ffn_fail(FFN_ERR_ARG,
                        "--model: the last layer's activation must be identity for %s (the loss "
                        "applies %s itself); got %s",
                        ffn_loss_name((ffn_loss)cfg->loss),
                        ffn_act_name(ffn_loss_output_act((ffn_loss)cfg->loss, ffn_model_output_dim(r->model))),
                        ffn_act_name(last->spec.act));
    return FFN_OK;
}

static ffn_status check_fits(const ffn_run *r, const ffn_dataset *ds, const char *flag)
{
    if (!ds) return FFN_OK;
    char what[4200];
    snprintf(what, sizeof what, "%s %s", flag, ffn_dataset_path(ds));
    return ffn_check_dataset_fits(r->model, (ffn_loss)r->cfg->loss, ds, what);
}

/* Optimizer steps left in the epoch from loader batch `at` of it: a step takes
 * --accumulate batches, never across an epoch's end. */
static uint64_t steps_left_in_epoch(const ffn_run *r, uint64_t at)
{
    return (r->micro_per_epoch - at + r->cfg->accumulate - 1) / r->cfg->accumulate;
}

/* Loader batches that `steps` optimizer steps read from the start position. */
static uint64_t batches_for(const ffn_run *r, uint64_t steps)
{
    const uint64_t k = r->cfg->accumulate, m = r->micro_per_epoch, at = r->start_step_in_epoch;
    uint64_t first = steps_left_in_epoch(r, at);
    if (steps <= first) return steps * k < m - at ? steps * k : m - at;
    steps -= first;
    uint64_t rest = steps % r->steps_per_epoch;
    return (m - at) + steps / r->steps_per_epoch * m + (rest * k < m ? rest * k : m);
}

/* Steps per epoch, the run's last step, and where a resumed run starts. A
 * resumed run trains from its checkpoint's position to the end of epoch
 * --epochs (or to --max-steps steps in all). */
static ffn_status plan_steps(ffn_run *r, size_t rows)
{
    const ffn_train_config *cfg = r->cfg;
    r->micro_per_epoch = rows / cfg->batch_size + (rows % cfg->batch_size != 0);
    r->steps_per_epoch = (r->micro_per_epoch + cfg->accumulate - 1) / cfg->accumulate;
    if (r->start_step_in_epoch >= r->micro_per_epoch && r->start_step_in_epoch > 0) {
        /* The checkpoint's epoch was done (or, with --allow-data-change, the
         * new training set has fewer batches): the next epoch starts afresh. */
        r->start_epoch++;
        r->start_step_in_epoch = 0;
    }
    uint64_t total = 0;
    if (__builtin_mul_overflow(r->steps_per_epoch, cfg->epochs, &total))
        return ffn_fail(FFN_ERR_ARG, "--epochs %llu: %llu steps per epoch x %llu epochs overflows a 64-bit count",
                        (unsigned long long)cfg->epochs, (unsigned long long)r->steps_per_epoch,
                        (unsigned long long)cfg->epochs);
    if (r->start_epoch < cfg->epochs) /* from the resume position to the end of the last epoch */
        total = r->start_step + steps_left_in_epoch(r, r->start_step_in_epoch) +
                (cfg->epochs - r->start_epoch - 1) * r->steps_per_epoch;
    else
        total = r->start_step;
    if (cfg->max_steps && cfg->max_steps < total) total = cfg->max_steps;
    if (r->start_step > total || r->start_epoch > cfg->epochs ||
        (r->start_epoch == cfg->epochs && r->start_step_in_epoch > 0))
        return ffn_fail(FFN_ERR_ARG,
                        "--resume: the checkpoint is at step %llu (epoch %llu), past the end of this run (--epochs "
                        "%llu%s); raise --epochs or --max-steps to train further",
                        (unsigned long long)r->start_step, (unsigned long long)r->start_epoch,
                        (unsigned long long)cfg->epochs, cfg->max_steps ? ", --max-steps" : "");
    r->total_steps = total;
    r->schedule = (ffn_lr_schedule){
        .kind = (ffn_lr_kind)cfg->lr_schedule, .base_lr = cfg->lr, .warmup_steps = cfg->warmup_steps,
        .step_size = cfg->lr_step_size ? cfg->lr_step_size : r->steps_per_epoch,
        .gamma = cfg->lr_gamma, .total_steps = r->total_steps, .min_lr = cfg->min_lr};
    return FFN_OK;
}

/* What every checkpoint the run writes repeats. */
static ffn_status prepare_saving(ffn_run *r)
{
    if (!r->config_json) r->config_json = ffn_config_to_json(r->cfg);
    r->spec_text = ffn_model_spec_text(r->model);
    size_t nl = ffn_model_layer_count(r->model);
    r->layer_in = calloc(nl, sizeof *r->layer_in);
    r->layer_out = calloc(nl, sizeof *r->layer_out);
    if (!r->config_json || !r->spec_text || !r->layer_in || !r->layer_out)
        return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nl; i++) {
        r->layer_in[i] = ffn_model_layer(r->model, i)->in;
        r->layer_out[i] = ffn_model_layer(r->model, i)->out;
    }
    return FFN_OK;
}

/* Whether path is named like one of dir's checkpoints and lies in dir. */
static int is_checkpoint_of(const char *path, const char *dir)
{
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    if (strlen(base) != 18 || strncmp(base, "ckpt-", 5) != 0 || strcmp(base + 15, ".h5") != 0) return 0;
    char parent[4096];
    int n = slash ? (int)(slash - path) : 1;
    snprintf(parent, sizeof parent, "%.*s", n ? n : 1, slash ? (n ? path : "/") : ".");
    return ffn_same_file(parent, dir);
}

/* No output of the run may be one of its inputs: --metrics would overwrite
 * it, and a checkpoint named like an input in --checkpoint-dir could be
 * written over or pruned. Files compared by identity, not spelling. */
static ffn_status check_outputs(const ffn_run *r)
{
    const ffn_train_config *cfg = r->cfg;
    const struct {
        const char *flag, *path;
    } inputs[] = {{"--train", cfg->train_path}, {"--val", cfg->val_path},       {"--test", cfg->test_path},
                  {"--teacher", cfg->teacher},   {"--init-from", cfg->init_from}, {"--resume", r->start_path}};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        const char *in = inputs[i].path;
        if (!in) continue;
        if (cfg->metrics_path && ffn_same_file(cfg->metrics_path, in))
            return ffn_fail(FFN_ERR_ARG, "--metrics %s is the same file as %s %s; it would be overwritten",
                            cfg->metrics_path, inputs[i].flag, in);
        if (cfg->checkpoint_dir && i + 1 < sizeof inputs / sizeof inputs[0] && is_checkpoint_of(in, cfg->checkpoint_dir))
            return ffn_fail(FFN_ERR_ARG, "%s %s is one of --checkpoint-dir %s's checkpoints, which this run may write "
                            "over or delete (--keep); copy it elsewhere first", inputs[i].flag, in, cfg->checkpoint_dir);
    }
    return FFN_OK;
}

/* A number for "the same cgroup on the same machine": the kernel's boot id and the limiting file. */
static uint64_t cgroup_key(const char *file)
{
    char boot[64] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(boot, sizeof boot, f)) boot[0] = '\0';
        fclose(f);
    }
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *parts[] = {boot, "\n", file}, **p = parts; p < parts + 3; p++)
        for (const unsigned char *c = (const unsigned char *)*p; *c; c++) h = (h ^ *c) * 1099511628211ull;
    return h | 1; /* never 0: 0 stands for "no cgroup limit" */
}

/* Why the fixed tensors are not to be held once per node (ffn/share.h), or
 * NULL: pruning's masks zero weights of every layer, fixed ones too; --shard
 * params gives each rank a slice of the parameters, whose other pages it
 * releases and re-gathers itself. */
static const char *share_frozen_refused(const ffn_run *r)
{
    const ffn_checkpoint *ck = r->have_ckpt ? &r->ckpt : NULL;
    if (r->cfg->prune > 0 || (ck && ck->mask)) return "pruning may zero fixed weights";
    if (r->cfg->shard >= FFN_SHARD_PARAMS) return "--shard params keeps a slice of every tensor per rank";
    if (ffn_shard_params_once_per_node((ffn_shard)r->cfg->shard, 0, r->size, ffn_comm_local_size(r->comm)))
        return "--shard optimizer on one node holds every parameter once per node already";
    return NULL;
}

/* The memory plan (ffn/memplan.h): the peak memory this rank will use,
 * predicted from the model's spec before the model exists, against what the
 * rank may have. A run that would not fit is refused here, with the flags that
 * would fit, before anything large is allocated or written. Collective (one
 * allgather of cgroup keys, then the agreement). */
static ffn_status plan_memory(ffn_run *r, const ffn_dataset_info *info)
{
    const ffn_train_config *cfg = r->cfg;
    ffn_layer_spec *layers;
    size_t count;
    int *lora;
    ffn_status st = model_layers(r, &layers, &count, &lora);
    if (st != FFN_OK) return st;
    int *frozen = calloc(count, sizeof *frozen);
    if (!frozen) st = ffn_fail(FFN_ERR_NOMEM, "out of memory");
    else if (choose_frozen(r, count, lora, frozen) != FFN_OK) /* build_model says why */
        memset(frozen, 0, count * sizeof *frozen);
    free(lora);
    /* --teacher: its checkpoint is read here (load_teacher builds the model from it), for its size. */
    ffn_layer_spec *teacher = NULL;
    size_t teacher_count = 0;
    if (cfg->teacher) {
        if ((st = ffn_checkpoint_load(&r->teacher_ckpt, cfg->teacher)) != FFN_OK) {
            st = ffn_fail(st, "--teacher: %s", ffn_last_error());
        } else {
            r->have_teacher_ckpt = 1;
            if ((st = ffn_spec_parse(r->teacher_ckpt.model_spec, &teacher, &teacher_count)) != FFN_OK)
                st = ffn_fail(st, "--teacher %s: %s", cfg->teacher, ffn_last_error());
        }
    }
    const int local = ffn_comm_local_size(r->comm);
    ffn_mem_limits *lim = &r->mem_limits;
    ffn_memplan_detect(lim);
    lim->threads = openblas_get_num_threads(); /* the pool OpenBLAS started with (choose_threads comes later) */
    lim->override_bytes = cfg->memory_limit_mib << 20;
    /* The job's ranks on this node under the same limiting cgroup share its limit. */
    uint64_t key = lim->cgroup_bytes ? cgroup_key(lim->cgroup_file) : 0;
    uint64_t *keys = calloc((size_t)r->size, sizeof *keys);
    if (!keys) st = ffn_fail(FFN_ERR_NOMEM, "out of memory");
    if ((st = ffn_comm_agree(r->comm, st)) == FFN_OK && (st = ffn_comm_allgather_u64(r->comm, key, keys)) == FFN_OK) {
        lim->cgroup_ranks = 0;
        for (int i = 0; i < r->size; i++) lim->cgroup_ranks += key && keys[i] == key;
        if (lim->cgroup_ranks < 1) lim->cgroup_ranks = 1;
    }
    free(keys);
    ffn_loader_config lc = {.local_ranks = local};
    size_t budget = 0;
    if (st == FFN_OK) st = ffn_loader_cache_budget(&lc, &budget);
    const ffn_optim_config oc = ffn_config_optim(cfg);
    const ffn_checkpoint *ck = r->have_ckpt ? &r->ckpt : NULL;
    ffn_mem_inputs in = {
        .layers = layers, .layer_count = count, .input_dim = info->features, .ranks = r->size,
        .local_ranks = local, .rank = r->rank, .batch_size = cfg->batch_size, .accumulate = cfg->accumulate,
        .eval_batch_size = cfg->eval_batch_size, .evaluates = r->val || r->test,
        .state_buffers = ffn_optim_state_buffers(&oc), .shard_optimizer = cfg->shard_optimizer,
        .shard = cfg->shard, .recompute = cfg->recompute, .bf16 = cfg->precision == FFN_PRECISION_BF16,
        .fp32_caches = cfg->fp32_caches,
        .writes_checkpoints = cfg->checkpoint_dir != NULL, .pruning = cfg->prune > 0 || (ck && ck->mask),
        .rows = info->rows, .x_row_bytes = info->features * (info->x_is_uint8 ? 1 : sizeof(float)),
        .features = info->features, .target_cols = info->has_labels ? 0 : info->target_cols, .cache_budget = budget,
        /* What stays loaded of the checkpoint started from: its masks, and a weights file's model
         * (parameters and gradients); a checkpoint's values are read straight into place. */
        .held_bytes = ck ? (uint64_t)ck->param_count * ((ck->params ? 2 * sizeof(float) : 0) + (ck->mask ? 1 : 0))
                         : 0,
        .frozen_layers = frozen, .share_frozen = !share_frozen_refused(r) && ffn_share_enabled(),
        .teacher_layers = teacher, .teacher_layer_count = teacher_count,
        .teacher_state_buffers = r->have_teacher_ckpt ? r->teacher_ckpt.state_count : 0};
    if (st == FFN_OK && (st = ffn_memplan_compute(&in, &r->mem_plan)) == FFN_ERR_NOMEM)
        st = ffn_fail(st, "memory: the run cannot fit in memory (out of memory: %s)", ffn_last_error());
    if (st == FFN_OK)
        r->mem_limit = ffn_memplan_rank_limit(lim, local, r->mem_plan.address_extra, r->mem_which, sizeof r->mem_which);
    if (st == FFN_OK && !cfg->memory_limit_off && r->mem_plan.total > r->mem_limit) {
        char want[32], have[32], fits[2048];
        ffn_memplan_format_bytes(want, sizeof want, (double)r->mem_plan.total);
        ffn_memplan_format_bytes(have, sizeof have, (double)r->mem_limit);
        ffn_memplan_suggest(&in, lim, fits, sizeof fits);
        st = ffn_fail(FFN_ERR_NOMEM,
                      "memory: the run needs %s per rank (predicted: %zu parameters, %s%s), more than the %s this "
                      "rank may have (%s); %s%s; --memory-limit MiB|off overrides the check",
                      want, r->mem_plan.params, cfg->shard >= FFN_SHARD_PARAMS ? "parameters, gradients and optimizer state sharded"
                                               : cfg->shard >= FFN_SHARD_GRADS ? "gradients and optimizer state sharded"
                                               : cfg->shard_optimizer ? "optimizer state sharded" : "replicated",
                      r->mem_plan.grads_shared ? ", gradients node-shared" : "", have, r->mem_which,
                      fits[0] ? "would fit: " : "no flag of today brings it under (parameters and gradients alone "
                                                "take 8 B per parameter on every rank)",
                      fits);
    }
    /* MemAvailable is only a warning: it moves with other processes and the page cache. */
    if (st == FFN_OK && r->print && !cfg->memory_limit_off && !lim->override_bytes && lim->available_bytes &&
        r->mem_plan.total > lim->available_bytes / (uint64_t)local) {
        char want[32], avail[32];
        ffn_memplan_format_bytes(want, sizeof want, (double)r->mem_plan.total);
        ffn_memplan_format_bytes(avail, sizeof avail, (double)lim->available_bytes);
        fprintf(stderr, "ffn-train: warning: memory: %s per rank predicted, more than this node's MemAvailable %s / "
                "%d rank%s; other processes hold the rest, so the run may swap or be killed\n", want, avail, local,
                local == 1 ? "" : "s");
    }
    free(layers);
    free(frozen);
    free(teacher);
    return ffn_comm_agree(r->comm, st);
}

ffn_status ffn_run_setup(ffn_run *r)
{
    const ffn_train_config *cfg = r->cfg;
    ffn_status st;
    if ((st = open_dataset(r, cfg->train_path, &r->train)) != FFN_OK) return st;
    if ((st = open_dataset(r, cfg->val_path, &r->val)) != FFN_OK) return st;
    if ((st = open_dataset(r, cfg->test_path, &r->test)) != FFN_OK) return st;
    const ffn_dataset_info *info = ffn_dataset_get_info(r->train);
    if (info->rows < (size_t)r->size)
        return ffn_fail(FFN_ERR_FORMAT, "--train %s: %zu row%s, fewer than the %d ranks (each rank needs data)",
                        cfg->train_path, info->rows, info->rows == 1 ? "" : "s", r->size);

    if ((st = ffn_run_load_start_checkpoint(r)) != FFN_OK) return st;
    if ((st = check_outputs(r)) != FFN_OK) return st;
    if ((st = plan_memory(r, info)) != FFN_OK) return st;
    if ((st = build_model(r, info->features)) != FFN_OK) return st;
    if ((st = check_head(r)) != FFN_OK) return st;
    if (cfg->resume && (st = ffn_run_check_resume(r)) != FFN_OK) return st;
    if ((st = check_metadata(r)) != FFN_OK) return st;
    if ((st = check_fits(r, r->train, "--train")) != FFN_OK) return st;
    if ((st = check_fits(r, r->val, "--val")) != FFN_OK) return st;
    if ((st = check_fits(r, r->test, "--test")) != FFN_OK) return st;

    r->max_local = ffn_sampler_max_local(cfg->batch_size, r->size);
    if (r->max_local > info->rows) r->max_local = info->rows;
    size_t eval_rows = cfg->eval_batch_size;
    if ((st = ffn_model_set_recompute(r->model, cfg->recompute)) != FFN_OK) return st;
    if ((st = ffn_model_set_bf16_caches(r->model, !cfg->fp32_caches)) != FFN_OK) return st;
    if ((st = ffn_model_set_compute(r->model, (ffn_precision)cfg->precision, (ffn_gemm_backend)cfg->gemm)) != FFN_OK) return st;
    if ((st = ffn_model_reserve(r->model, r->max_local > eval_rows ? r->max_local : eval_rows)) != FFN_OK) return st;
    if ((r->val || r->test) &&
        (st = ffn_evaluator_create(&r->eval, r->model, (ffn_loss)cfg->loss, eval_rows)) != FFN_OK)
        return st;
    if (cfg->teacher && (st = load_teacher(r, info->features, r->max_local)) != FFN_OK) return st;
    if ((st = setup_pruning(r)) != FFN_OK) return st;
    if ((st = plan_steps(r, info->rows)) != FFN_OK) return st;

    ffn_loader_config lc = {.batch_size = cfg->batch_size, .seed = r->seed, .shuffle = !cfg->no_shuffle,
                            .rank = r->rank, .nranks = r->size, .start_epoch = r->start_epoch,
                            .start_step = r->start_step_in_epoch,
                            .total_steps = batches_for(r, r->total_steps - r->start_step), .prefetch = 1,
                            .local_ranks = ffn_comm_local_size(r->comm)};
    if ((st = ffn_loader_create(&r->loader, r->train, &lc)) != FFN_OK) return st;
    if (cfg->checkpoint_dir && (st = ffn_run_prepare_checkpoint_dir(r)) != FFN_OK) return st;
    if ((st = prepare_saving(r)) != FFN_OK) return st;
    r->threads = choose_threads(r);
    return FFN_OK;
}

ffn_status ffn_run_start(ffn_run *r)
{
    const ffn_train_config *cfg = r->cfg;
    /* Same seed gives the same weights everywhere; the broadcast makes it
     * certain (not with --shard params: each rank keeps only its own). */
    ffn_status st = ffn_run_shard(r) >= FFN_SHARD_PARAMS
                        ? FFN_OK
                        : ffn_comm_bcast_floats(r->comm, ffn_model_params(r->model), ffn_model_param_count(r->model), 0);
    if (st != FFN_OK) return st;
    /* That was the last write to a fixed tensor: from here they may be read-only, once per node. */
    const char *refused = share_frozen_refused(r);
    if (refused) snprintf(r->share.why_not, sizeof r->share.why_not, "%s", refused);
    else if ((st = ffn_model_share_frozen(r->model, r->comm, &r->share)) != FFN_OK) return st;
    ffn_step_config sc = {
        .loss = (ffn_loss)cfg->loss, .optim = ffn_config_optim(cfg), .clip_norm = cfg->clip_norm,
        .shard_optimizer = cfg->shard_optimizer, .shard = ffn_run_shard(r), .grad_bf16 = cfg->grad_dtype == 1, .bucket_bytes = (size_t)(cfg->bucket_mb * 1048576.0),
        .max_rows = r->max_local, .seed = r->seed, .teacher = r->teacher,
        .distill_temperature = cfg->distill_temperature, .distill_alpha = cfg->distill_alpha, .pruner = r->pruner,
        .prune = {.sparsity = cfg->prune, .start = cfg->prune_start_step, .end = cfg->prune_end_step,
                  .every = cfg->prune_every, .scope = (ffn_prune_scope)cfg->prune_scope_kind}};
    if ((st = ffn_step_create(&r->step, r->model, r->comm, &sc)) != FFN_OK) return st;
    ffn_comm_set_stall_timeout(r->comm, cfg->stall_timeout);
    if ((st = ffn_comm_agree(r->comm, cfg->resume ? ffn_run_restore_optimizer(r) : FFN_OK)) != FFN_OK) return st;
    /* The start checkpoint's tensors served setup only: a private copy of the
     * base per rank otherwise, besides the node-shared one. */
    ffn_checkpoint_free_tensors(&r->ckpt);
    return FFN_OK;
}

void ffn_run_teardown(ffn_run *r)
{
    ffn_checkpoint_free(&r->ckpt);
    if (r->have_teacher_ckpt) ffn_checkpoint_free(&r->teacher_ckpt);
    ffn_data_meta_free(&r->train_meta);
    free(r->start_path);
    ffn_run_unlock_checkpoint_dir(r);
    free(r->config_json);
    free(r->spec_text);
    free(r->layer_in);
    free(r->layer_out);
    ffn_loader_free(r->loader);
    ffn_step_free(r->step);
    ffn_evaluator_free(r->eval);
    ffn_pruner_free(r->pruner);
    ffn_model_free(r->teacher);
    ffn_model_free(r->model);
    ffn_dataset_close(r->train);
    ffn_dataset_close(r->val);
    ffn_dataset_close(r->test);
    ffn_run_close_metrics(r);
}
