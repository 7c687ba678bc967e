/* ffn — the training loop. */
#define _GNU_SOURCE /* sched_getaffinity */
#include "ffn/clock.h"
#include "ffn/train.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "ffn/ckpt.h"
#include "ffn/data.h"
#include "ffn/distill.h"
#include "ffn/loader.h"
#include "ffn/loss.h"
#include "ffn/mem.h"
#include "ffn/model.h"
#include "ffn/optim.h"
#include "ffn/partition.h"
#include "ffn/prune.h"
#include "ffn/sampler.h"

typedef struct {
    const ffn_train_config *cfg;
    ffn_comm *comm;
    int rank, size;
    int print;             /* this rank prints progress */
    ffn_dataset *train, *val, *test;
    ffn_model *model;
    ffn_optim *optim;
    ffn_grad_sync *sync;
    ffn_loader *loader;
    ffn_lr_schedule schedule;
    size_t out_dim, target_cols;
    float *dout;           /* [max local batch, out] */
    float *eval_x;         /* [eval batch, features] */
    int32_t *eval_labels;
    float *eval_values;
    size_t eval_rows;
    FILE *metrics;
    int metrics_csv;
    int progress;
    int threads;
    uint64_t steps_per_epoch, total_steps; /* optimizer steps */
    uint64_t micro_per_epoch;  /* loader batches per epoch (--accumulate of them make a step) */
    ffn_model *teacher;        /* --teacher: forward only */
    size_t own_lo, own_hi;     /* the parameters this rank updates: all, or its ZeRO slice */
    float *grad_slice;         /* --shard-optimizer: summed gradients of [own_lo, own_hi) */
    ffn_pruner *pruner;        /* --prune, or masks inherited from the checkpoint */
    ffn_status batch_status;   /* the first failed read among a step's micro-batches */
    char batch_message[512];
    uint64_t seed;         /* the run's seed (a resumed run keeps its checkpoint's) */
    uint64_t start_step, start_epoch, start_step_in_epoch;
    ffn_checkpoint ckpt;   /* the checkpoint resumed or fine-tuned from, during setup */
    int have_ckpt;
    char *config_json;
    char *spec_text;
    size_t *layer_in, *layer_out;
    uint64_t last_saved_step;
    int saved_any;
} run_state;

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) { stop_signal = sig; }

/* ---- setup -------------------------------------------------------------- */

/* Opens an optional dataset on every rank; all ranks agree on the outcome. */
static ffn_status open_dataset(run_state *r, const char *path, ffn_dataset **out)
{
    *out = NULL;
    if (!path) return FFN_OK;
    ffn_status st = ffn_dataset_open(out, path);
    return ffn_comm_agree(r->comm, st);
}

/* The targets a dataset holds must fit the loss and the model's output. */
static ffn_status check_targets(const run_state *r, const ffn_dataset *ds, const char *flag)
{
    const ffn_dataset_info *info = ffn_dataset_get_info(ds);
    const char *path = ffn_dataset_path(ds);
    ffn_loss loss = (ffn_loss)r->cfg->loss;
    size_t out = r->out_dim;
    if (info->features != ffn_model_input_dim(r->model))
        return ffn_fail(FFN_ERR_FORMAT, "%s %s: /x has %zu features, expected %zu (as the training set)",
                        flag, path, info->features, ffn_model_input_dim(r->model));
    if (!info->has_labels) {
        if (loss == FFN_LOSS_SOFTMAX_CE)
            return ffn_fail(FFN_ERR_FORMAT,
                            "%s %s: /y holds float targets, but softmax_ce expects int32 class labels",
                            flag, path);
        if (info->target_cols != out)
            return ffn_fail(FFN_ERR_FORMAT,
                            "%s %s: /y has %zu target columns, but the model outputs %zu", flag, path,
                            info->target_cols, out);
        return FFN_OK;
    }
    if (loss == FFN_LOSS_BCE && out == 1) {
        if (info->num_classes > 2)
            return ffn_fail(FFN_ERR_FORMAT,
                            "%s %s: bce with one output needs labels 0/1, but num_classes is %zu",
                            flag, path, info->num_classes);
        return FFN_OK;
    }
    if (info->num_classes > out)
        return ffn_fail(FFN_ERR_FORMAT,
                        "%s %s: labels go up to %zu classes, but the model outputs %zu (last layer "
                        "units must be the class count)",
                        flag, path, info->num_classes, out);
    return FFN_OK;
}

static int cpus_available(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* BLAS threads per rank: the node's cores shared among the ranks on it, and
 * never more than the CPUs this rank may run on. */
static int choose_threads(run_state *r)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    int local = ffn_comm_local_size(r->comm);
    int allowed = cpus_available();
    int threads = r->cfg->threads;
    if (threads == 0) {
        threads = (int)(cores / local);
        if (threads > allowed) threads = allowed;
        if (threads < 1) threads = 1;
    } else if ((long)threads * local > cores && r->print) {
        fprintf(stderr,
                "ffn-train: warning: --threads %d x %d ranks on this node exceeds its %ld cores "
                "(oversubscribed; expect a slowdown)\n",
                threads, local, cores);
    }
    openblas_set_num_threads(threads);
    return threads;
}

static ffn_status open_metrics(run_state *r)
{
    ffn_status st = FFN_OK;
    if (r->cfg->metrics_path && r->rank == 0) {
        const char *p = r->cfg->metrics_path;
        size_t n = strlen(p);
        r->metrics_csv = n >= 4 && strcmp(p + n - 4, ".csv") == 0;
        /* A resumed run continues the file it was writing. */
        FILE *existing = r->cfg->resume ? fopen(p, "r") : NULL;
        int append = existing && fgetc(existing) != EOF;
        if (existing) fclose(existing);
        r->metrics = fopen(p, append ? "a" : "w");
        if (!r->metrics)
            st = ffn_fail(FFN_ERR_IO, "--metrics %s: cannot open for writing", p);
        else if (r->metrics_csv && !append)
            fprintf(r->metrics, "kind,epoch,step,loss,accuracy,val_loss,val_accuracy,lr,"
                                "samples_per_s,elapsed_s\n");
    }
    return ffn_comm_agree(r->comm, st);
}

/* ---- checkpoints: the one resumed or fine-tuned from, and saving ---------- */

static ffn_status load_start_checkpoint(run_state *r)
{
    const ffn_train_config *cfg = r->cfg;
    r->seed = cfg->seed;
    const char *path = cfg->resume ? cfg->resume : cfg->init_from;
    if (!path) return FFN_OK;
    char *latest = NULL;
    if (cfg->resume && strcmp(cfg->resume, "latest") == 0) {
        latest = ffn_checkpoint_latest(cfg->checkpoint_dir);
        if (!latest) return FFN_ERR_IO;
        path = latest;
    }
    /* Every rank reads the file (checkpoints live on a filesystem all ranks see). */
    ffn_status st = ffn_checkpoint_load(&r->ckpt, path);
    if (st == FFN_OK) r->have_ckpt = 1;
    if (st == FFN_OK && r->rank == 0 && !cfg->quiet)
        printf("%s: %s (step %llu, epoch %llu)\n", cfg->resume ? "resuming from" : "initialising from", path,
               (unsigned long long)r->ckpt.step, (unsigned long long)r->ckpt.epoch);
    free(latest);
    if (st != FFN_OK || !cfg->resume) return st;
    if (strcmp(r->ckpt.loss, ffn_loss_name((ffn_loss)cfg->loss)) != 0)
        return ffn_fail(FFN_ERR_ARG, "--resume: the checkpoint was trained with loss %s, but --loss is %s",
                        r->ckpt.loss, ffn_loss_name((ffn_loss)cfg->loss));
    r->seed = r->ckpt.seed;
    r->start_step = r->ckpt.step;
    r->start_epoch = r->ckpt.epoch;
    r->start_step_in_epoch = r->ckpt.step_in_epoch;
    return FFN_OK;
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

/* --init-from: every tensor of the model from the checkpoint's tensor of the
 * same layer and name. A replaced head keeps its fresh values, and so do
 * adapters the checkpoint lacks; anything else missing or shaped otherwise is
 * an error naming the layer, the tensor and both shapes. */
static ffn_status copy_init_tensors(run_state *r, const ffn_checkpoint *ck)
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
            memcpy(t->data, ck->params + ct->offset, t->count * sizeof(float));
        }
    }
    if (n < cn && r->rank == 0 && !cfg->quiet)
        printf("init-from: the checkpoint's last %zu layer(s) are not used by this model\n", cn - n);
    return FFN_OK;
}

/* Builds the model from --model (or the default), or from the checkpoint
 * being resumed or fine-tuned from (with a replaced head and --lora
 * adapters), fills it and marks what trains. */
static ffn_status build_model(run_state *r, size_t input_dim)
{
    const ffn_train_config *cfg = r->cfg;
    const ffn_checkpoint *ck = r->have_ckpt ? &r->ckpt : NULL;
    const char *spec = cfg->model_spec ? cfg->model_spec : ck ? ck->model_spec : FFN_DEFAULT_MODEL_SPEC;
    ffn_layer_spec *layers;
    size_t count;
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
    if (st == FFN_OK && (st = ffn_model_create(&r->model, layers, count, input_dim)) != FFN_OK)
        st = ffn_fail(st, "--model: %s", ffn_last_error());
    free(layers);
    if (st != FFN_OK) {
        free(lora);
        return st;
    }
    ffn_model_init_params(r->model, r->seed);

    if (ck && cfg->resume) {
        char *text = ffn_model_spec_text(r->model);
        int same = text && strcmp(text, ck->model_spec) == 0 && ck->input_dim == input_dim;
        if (!same)
            st = ffn_fail(FFN_ERR_ARG,
                          "--resume: the model %zu -> %s differs from the checkpoint's %zu -> %s (a resumed "
                          "run keeps its model; use --init-from to start a new run from its weights)",
                          input_dim, text ? text : "?", ck->input_dim, ck->model_spec);
        free(text);
        if (st == FFN_OK) {
            memcpy(ffn_model_params(r->model), ck->params, ck->param_count * sizeof(float));
            /* What was frozen stays frozen (a --freeze or --lora run resumes as it ran). */
            for (size_t i = 0; i < count; i++)
                if (ffn_model_layer_const(ck->model, i)->frozen) ffn_model_set_frozen(r->model, i, 1);
        }
    } else if (ck) {
        st = copy_init_tensors(r, ck);
        /* --lora: every base tensor stays fixed but a replaced head. */
        for (size_t i = 0; st == FFN_OK && cfg->lora && i < count; i++)
            if (!lora[i] && !(cfg->replace_head && i + 1 == count)) ffn_model_set_frozen(r->model, i, 1);
    }
    free(lora);
    if (st == FFN_OK && cfg->freeze) {
        int *frozen = calloc(count, sizeof *frozen);
        if (!frozen) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
        st = ffn_config_parse_layers(cfg->freeze, count, frozen);
        size_t count_frozen = 0;
        for (size_t i = 0; st == FFN_OK && i < count; i++) {
            if (frozen[i]) ffn_model_set_frozen(r->model, i, 1);
            count_frozen += frozen[i] != 0;
        }
        free(frozen);
        if (st == FFN_OK && count_frozen == count)
            st = ffn_fail(FFN_ERR_ARG, "--freeze %s: every layer is frozen; nothing would train", cfg->freeze);
    }
    if (st == FFN_OK && ffn_model_trainable_count(r->model) == 0)
        st = ffn_fail(FFN_ERR_ARG, "--model: no parameter would train (every layer frozen or without parameters)");
    return st;
}

static ffn_status restore_optimizer(run_state *r)
{
    const ffn_checkpoint *ck = &r->ckpt;
    const char *kind = ffn_opt_name((ffn_opt_kind)r->cfg->optimizer);
    if (!ck->optimizer)
        return ffn_fail(FFN_ERR_FORMAT, "--resume %s: the checkpoint holds no optimizer state", r->cfg->resume);
    if (strcmp(ck->optimizer, kind) != 0)
        return ffn_fail(FFN_ERR_ARG, "--resume: the checkpoint's optimizer is %s, but --optimizer is %s",
                        ck->optimizer, kind);
    for (size_t i = 0; i < ffn_optim_state_count(r->optim); i++) {
        const char *name = ffn_optim_state_name(r->optim, i);
        size_t k = 0;
        while (k < ck->state_count && strcmp(ck->state_names[k], name) != 0) k++;
        if (k == ck->state_count)
            return ffn_fail(FFN_ERR_FORMAT, "--resume: the checkpoint lacks optimizer state /optimizer/%s", name);
        memcpy(ffn_optim_state(r->optim, i), ck->state[k] + r->own_lo, (r->own_hi - r->own_lo) * sizeof(float));
    }
    ffn_optim_set_step_count(r->optim, ck->optimizer_steps);
    /* The full state was only needed for this rank's slice (ZeRO keeps 1/N). */
    for (size_t k = 0; k < ck->state_count; k++) {
        ffn_free(ck->state[k]);
        r->ckpt.state[k] = NULL;
    }
    return FFN_OK;
}

/* Rank 0 creates the directory and proves it writable before any training. */
static ffn_status prepare_checkpoint_dir(run_state *r)
{
    if (r->rank != 0) return FFN_OK;
    const char *dir = r->cfg->checkpoint_dir;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return ffn_fail(FFN_ERR_IO, "--checkpoint-dir %s: cannot create: %s", dir, strerror(errno));
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/.ffn-write-test", dir);
    FILE *f = fopen(probe, "w");
    if (!f) return ffn_fail(FFN_ERR_IO, "--checkpoint-dir %s: not writable: %s", dir, strerror(errno));
    fclose(f);
    unlink(probe);
    return FFN_OK;
}

/* Collective: rank 0 writes; all ranks agree on the outcome. (epoch,
 * step_in_epoch) is the next batch to train on. */
static ffn_status save_checkpoint(run_state *r, uint64_t step, uint64_t epoch, uint64_t step_in_epoch)
{
    if (r->saved_any && r->last_saved_step == step) return FFN_OK;
    if (step_in_epoch == r->micro_per_epoch) {
        epoch++;
        step_in_epoch = 0;
    }
    ffn_status st = FFN_OK;
    /* ZeRO: rank 0 gathers the whole optimizer state, so that the file does not
     * depend on the rank count. */
    float *full_state[2] = {NULL, NULL};
    size_t nstate = ffn_optim_state_count(r->optim), nparams = ffn_model_param_count(r->model);
    if (r->grad_slice) {
        for (size_t i = 0; i < nstate && r->rank == 0 && st == FFN_OK; i++)
            if (!(full_state[i] = ffn_alloc_floats(nparams)))
                st = ffn_fail(FFN_ERR_NOMEM, "checkpoint: out of memory gathering the optimizer state");
        st = ffn_comm_agree(r->comm, st);
        for (size_t i = 0; i < nstate && st == FFN_OK; i++)
            st = ffn_comm_gather_slices(r->comm, ffn_optim_state(r->optim, i), full_state[i], nparams, 0,
                                        (size_t)(r->cfg->bucket_mb * 1048576.0));
        if (st != FFN_OK) {
            for (size_t i = 0; i < 2; i++) ffn_free(full_state[i]);
            return st;
        }
    }
    if (r->rank == 0) {
        char path[4096];
        ffn_checkpoint_name(path, sizeof path, r->cfg->checkpoint_dir, step);
        ffn_checkpoint c = {
            .format_version = FFN_CKPT_FORMAT_VERSION, .model_spec = r->spec_text,
            .input_dim = ffn_model_input_dim(r->model), .loss = (char *)ffn_loss_name((ffn_loss)r->cfg->loss),
            .config_json = r->config_json, .model = r->model, .layer_count = ffn_model_layer_count(r->model),
            .layer_in = r->layer_in, .layer_out = r->layer_out,
            .param_count = ffn_model_param_count(r->model), .params = ffn_model_params(r->model),
            .optimizer = (char *)ffn_opt_name((ffn_opt_kind)r->cfg->optimizer),
            .optimizer_steps = ffn_optim_step_count(r->optim), .state_count = ffn_optim_state_count(r->optim),
            .step = step, .epoch = epoch, .step_in_epoch = step_in_epoch, .seed = r->seed,
            .mask = r->pruner ? ffn_pruner_mask(r->pruner) : NULL};
        for (size_t i = 0; i < c.state_count; i++) {
            c.state_names[i] = (char *)ffn_optim_state_name(r->optim, i);
            c.state[i] = full_state[i] ? full_state[i] : ffn_optim_state(r->optim, i);
        }
        st = ffn_checkpoint_save(&c, path);
        if (st == FFN_OK) ffn_checkpoint_prune(r->cfg->checkpoint_dir, r->cfg->keep);
    }
    for (size_t i = 0; i < 2; i++) ffn_free(full_state[i]);
    st = ffn_comm_agree(r->comm, st);
    if (st == FFN_OK) {
        r->saved_any = 1;
        r->last_saved_step = step;
    }
    return st;
}

/* --teacher: the checkpoint's model, forward only, on every rank. */
static ffn_status load_teacher(run_state *r, size_t input_dim, size_t max_batch)
{
    const char *path = r->cfg->teacher;
    ffn_checkpoint ck;
    ffn_status st = ffn_checkpoint_load(&ck, path);
    if (st != FFN_OK) return ffn_fail(st, "--teacher: %s", ffn_last_error());
    if (strcmp(ck.loss, "softmax_ce") != 0)
        st = ffn_fail(FFN_ERR_ARG, "--teacher %s: trained with loss %s; distillation needs a softmax_ce teacher",
                      path, ck.loss);
    else if (ck.input_dim != input_dim)
        st = ffn_fail(FFN_ERR_ARG, "--teacher %s: the teacher reads %zu features, the training set has %zu", path,
                      ck.input_dim, input_dim);
    else if ((st = ffn_model_create_from_text(&r->teacher, ck.model_spec, ck.input_dim)) != FFN_OK)
        st = ffn_fail(st, "--teacher %s: %s", path, ffn_last_error());
    else if (ffn_model_output_dim(r->teacher) != r->out_dim)
        st = ffn_fail(FFN_ERR_ARG, "--teacher %s: the teacher has %zu outputs, the model trained has %zu", path,
                      ffn_model_output_dim(r->teacher), r->out_dim);
    if (st == FFN_OK) {
        memcpy(ffn_model_params(r->teacher), ck.params, ck.param_count * sizeof(float));
        st = ffn_model_reserve(r->teacher, max_batch);
    }
    ffn_checkpoint_free(&ck);
    return st;
}

/* Pruning masks: one segment per layer's weights. Masks found in the
 * checkpoint are kept (resume: all of them; init-from: those of the layers
 * loaded), with or without --prune. */
static ffn_status setup_pruning(run_state *r)
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

/* --accumulate of the run that wrote the checkpoint (1 when not recorded). */
static uint64_t checkpoint_accumulate(const ffn_checkpoint *ck)
{
    uint64_t k = 1;
    cJSON *o = ck->config_json ? cJSON_Parse(ck->config_json) : NULL;
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, "accumulate") : NULL;
    if (cJSON_IsNumber(v) && v->valuedouble >= 1) k = (uint64_t)v->valuedouble;
    cJSON_Delete(o);
    return k;
}

/* The loader position (batches from the start of training) after `step` optimizer steps. */
static uint64_t micro_index(const run_state *r, uint64_t step)
{
    uint64_t epoch = step / r->steps_per_epoch, in = (step % r->steps_per_epoch) * r->cfg->accumulate;
    return epoch * r->micro_per_epoch + (in < r->micro_per_epoch ? in : r->micro_per_epoch);
}

static ffn_status setup(run_state *r)
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

    if ((st = load_start_checkpoint(r)) != FFN_OK) return st;
    if ((st = build_model(r, info->features)) != FFN_OK) return st;
    size_t layers = ffn_model_layer_count(r->model);
    const ffn_layer *last = ffn_model_layer_const(r->model, layers - 1);
    if (last->spec.kind == FFN_LAYER_DENSE && last->spec.act != FFN_ACT_IDENTITY && cfg->loss != FFN_LOSS_MSE)
        return ffn_fail(FFN_ERR_ARG,
                        "--model: the last layer's activation must be identity for %s (the loss "
                        "applies %s itself); got %s",
                        ffn_loss_name((ffn_loss)cfg->loss),
                        cfg->loss == FFN_LOSS_BCE ? "sigmoid" : "softmax", ffn_act_name(last->spec.act));
    r->out_dim = ffn_model_output_dim(r->model);
    if ((st = check_targets(r, r->train, "--train")) != FFN_OK) return st;
    if (r->val && (st = check_targets(r, r->val, "--val")) != FFN_OK) return st;
    if (r->test && (st = check_targets(r, r->test, "--test")) != FFN_OK) return st;

    size_t max_local = ffn_sampler_max_local(cfg->batch_size, r->size);
    if (max_local > info->rows) max_local = info->rows;
    r->eval_rows = cfg->eval_batch_size;
    size_t reserve = max_local > r->eval_rows ? max_local : r->eval_rows;
    if ((st = ffn_model_reserve(r->model, reserve)) != FFN_OK) return st;
    r->target_cols = info->has_labels ? 1 : info->target_cols;
    r->dout = ffn_alloc(max_local, r->out_dim * sizeof(float));
    r->eval_x = ffn_alloc(r->eval_rows, info->features * sizeof(float));
    r->eval_labels = ffn_alloc(r->eval_rows, sizeof(int32_t));
    r->eval_values = ffn_alloc(r->eval_rows, r->out_dim * sizeof(float));
    if (!r->dout || !r->eval_x || !r->eval_labels || !r->eval_values)
        return ffn_fail(FFN_ERR_NOMEM, "out of memory for batch buffers");
    if (cfg->teacher && (st = load_teacher(r, info->features, max_local)) != FFN_OK) return st;
    if ((st = setup_pruning(r)) != FFN_OK) return st;

    /* The parameters this rank updates: all of them, or its ZeRO slice. */
    size_t nparams = ffn_model_param_count(r->model);
    r->own_lo = 0;
    r->own_hi = nparams;
    if (cfg->shard_optimizer) {
        ffn_comm_slice(r->comm, nparams, r->rank, &r->own_lo, &r->own_hi);
        r->grad_slice = ffn_alloc_floats(r->own_hi > r->own_lo ? r->own_hi - r->own_lo : 1);
        if (!r->grad_slice) return ffn_fail(FFN_ERR_NOMEM, "out of memory for the gradient slice");
    }

    ffn_optim_config oc = ffn_optim_defaults((ffn_opt_kind)cfg->optimizer);
    oc.momentum = cfg->momentum;
    oc.nesterov = cfg->nesterov;
    oc.beta1 = cfg->beta1;
    oc.beta2 = cfg->beta2;
    oc.eps = cfg->eps;
    oc.alpha = cfg->rmsprop_alpha;
    if (cfg->weight_decay >= 0) oc.weight_decay = cfg->weight_decay;
    r->optim = ffn_optim_create(&oc, r->own_hi - r->own_lo);
    if (!r->optim) return ffn_fail(FFN_ERR_ARG, "optimizer: %s", ffn_last_error());
    if (cfg->resume && (st = restore_optimizer(r)) != FFN_OK) return st;

    size_t bucket = (size_t)(cfg->bucket_mb * 1048576.0);
    if (r->grad_slice)
        st = ffn_grad_sync_create_sharded(&r->sync, r->comm, ffn_model_grads(r->model), nparams, bucket,
                                          r->grad_slice);
    else
        st = ffn_grad_sync_create(&r->sync, r->comm, ffn_model_grads(r->model), nparams, bucket);
    if (st != FFN_OK) return st;

    /* An optimizer step takes --accumulate loader batches, never across an epoch's end. */
    r->micro_per_epoch = (info->rows + cfg->batch_size - 1) / cfg->batch_size;
    r->steps_per_epoch = (r->micro_per_epoch + cfg->accumulate - 1) / cfg->accumulate;
    r->total_steps = r->steps_per_epoch * cfg->epochs;
    if (cfg->max_steps && cfg->max_steps < r->total_steps) r->total_steps = cfg->max_steps;
    if (r->start_step > r->total_steps) r->start_step = r->total_steps;
    if (r->start_step_in_epoch > r->micro_per_epoch)
        return ffn_fail(FFN_ERR_FORMAT,
                        "--resume: the checkpoint is at batch %llu of an epoch, but this training set has "
                        "%llu batches per epoch (a different dataset or batch size?)",
                        (unsigned long long)r->start_step_in_epoch, (unsigned long long)r->micro_per_epoch);
    if (cfg->resume && checkpoint_accumulate(&r->ckpt) != cfg->accumulate)
        return ffn_fail(FFN_ERR_ARG, "--resume: the checkpoint was trained with --accumulate %llu, but --accumulate is %llu",
                        (unsigned long long)checkpoint_accumulate(&r->ckpt), (unsigned long long)cfg->accumulate);
    uint64_t first_batch = r->start_epoch * r->micro_per_epoch + r->start_step_in_epoch;
    uint64_t last_batch = micro_index(r, r->total_steps);

    r->schedule = (ffn_lr_schedule){
        .kind = (ffn_lr_kind)cfg->lr_schedule, .base_lr = cfg->lr, .warmup_steps = cfg->warmup_steps,
        .step_size = cfg->lr_step_size ? cfg->lr_step_size : r->steps_per_epoch,
        .gamma = cfg->lr_gamma, .total_steps = r->total_steps, .min_lr = cfg->min_lr};

    ffn_loader_config lc = {.batch_size = cfg->batch_size, .seed = r->seed,
                            .shuffle = !cfg->no_shuffle, .rank = r->rank, .nranks = r->size,
                            .start_epoch = r->start_epoch, .start_step = r->start_step_in_epoch,
                            .total_steps = last_batch > first_batch ? last_batch - first_batch : 0, .prefetch = 1,
                            .local_ranks = ffn_comm_local_size(r->comm)};
    if ((st = ffn_loader_create(&r->loader, r->train, &lc)) != FFN_OK) return st;

    if (cfg->checkpoint_dir && (st = prepare_checkpoint_dir(r)) != FFN_OK) return st;
    r->config_json = ffn_config_to_json(cfg);
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
    r->threads = choose_threads(r);
    r->progress = r->print && (cfg->progress == 1 || (cfg->progress < 0 && isatty(2)));
    return FFN_OK;
}

static void teardown(run_state *r)
{
    ffn_checkpoint_free(&r->ckpt);
    free(r->config_json);
    free(r->spec_text);
    free(r->layer_in);
    free(r->layer_out);
    ffn_loader_free(r->loader);
    ffn_grad_sync_free(r->sync);
    ffn_free(r->grad_slice);
    ffn_pruner_free(r->pruner);
    ffn_model_free(r->teacher);
    ffn_optim_free(r->optim);
    ffn_model_free(r->model);
    ffn_free(r->dout);
    ffn_free(r->eval_x);
    ffn_free(r->eval_labels);
    ffn_free(r->eval_values);
    ffn_dataset_close(r->train);
    ffn_dataset_close(r->val);
    ffn_dataset_close(r->test);
    if (r->metrics) fclose(r->metrics);
}

/* ---- reporting ---------------------------------------------------------- */

static void format_bytes(char *out, size_t cap, double bytes)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) {
        bytes /= 1024;
        u++;
    }
    snprintf(out, cap, u ? "%.2f %s" : "%.0f %s", bytes, unit[u]);
}

static void print_banner(const run_state *r)
{
    const ffn_train_config *cfg = r->cfg;
    const ffn_dataset_info *info = ffn_dataset_get_info(r->train);
    char *spec = ffn_model_spec_text(r->model);
    size_t max_local = ffn_sampler_max_local(cfg->batch_size, r->size);
    printf("ffn-train: %d rank%s x %d BLAS thread%s (OpenBLAS %s)\n", r->size, r->size == 1 ? "" : "s",
           r->threads, r->threads == 1 ? "" : "s", openblas_get_corename());
    printf("model: %zu -> %s, %zu parameters, loss %s, optimizer %s lr %g\n",
           ffn_model_input_dim(r->model), spec ? spec : "?", ffn_model_param_count(r->model),
           ffn_loss_name((ffn_loss)cfg->loss), ffn_opt_name((ffn_opt_kind)cfg->optimizer), (double)cfg->lr);
    printf("train: %s, %zu rows; global batch %llu (up to %zu per rank), %llu steps/epoch, %llu steps\n",
           cfg->train_path, info->rows, (unsigned long long)cfg->batch_size, max_local,
           (unsigned long long)r->steps_per_epoch, (unsigned long long)r->total_steps);
    if (cfg->accumulate > 1)
        printf("accumulate: %llu batches of %llu per optimizer step (effective batch %llu), one gradient exchange "
               "per step\n",
               (unsigned long long)cfg->accumulate, (unsigned long long)cfg->batch_size,
               (unsigned long long)(cfg->accumulate * cfg->batch_size));
    size_t nstate = ffn_optim_state_count(r->optim), nparams = ffn_model_param_count(r->model);
    /* Only trainable tensors' gradients are computed and exchanged (--freeze, --lora). */
    size_t trainable = ffn_model_trainable_count(r->model);
    char sent[32];
    format_bytes(sent, sizeof sent, (double)trainable * sizeof(float));
    printf("trainable: %zu of %zu parameters (%.2f%%); gradient exchange %zu bytes (%s) per step%s\n", trainable,
           nparams, 100.0 * (double)trainable / (double)nparams, trainable * sizeof(float), sent,
           r->size == 1 ? " (none at 1 rank)" : "");
    char own[32], all[32];
    format_bytes(own, sizeof own, (double)nstate * (double)(r->own_hi - r->own_lo) * sizeof(float));
    format_bytes(all, sizeof all, (double)nstate * (double)nparams * sizeof(float));
    if (cfg->shard_optimizer)
        printf("optimizer state: %s per rank (rank 0: %zu of %zu parameters x %zu buffers; %s unsharded), "
               "--shard-optimizer over %d rank%s\n",
               own, r->own_hi - r->own_lo, nparams, nstate, all, r->size, r->size == 1 ? "" : "s");
    else
        printf("optimizer state: %s per rank (%zu parameters x %zu buffers)\n", all, nparams, nstate);
    if (r->teacher) {
        char *ts = ffn_model_spec_text(r->teacher);
        printf("distillation: teacher %s (%zu -> %s, %zu parameters), T %g, alpha %g\n", cfg->teacher,
               ffn_model_input_dim(r->teacher), ts ? ts : "?", ffn_model_param_count(r->teacher),
               (double)cfg->distill_temperature, (double)cfg->distill_alpha);
        free(ts);
    }
    if (r->pruner) {
        if (cfg->prune > 0 && cfg->prune_end_step > cfg->prune_start_step)
            printf("pruning: %zu weights to sparsity %g (%s), cubic from step %llu to %llu, masks every %llu steps\n",
                   ffn_pruner_prunable(r->pruner), (double)cfg->prune, cfg->prune_scope,
                   (unsigned long long)cfg->prune_start_step, (unsigned long long)cfg->prune_end_step,
                   (unsigned long long)cfg->prune_every);
        else if (cfg->prune > 0)
            printf("pruning: %zu weights to sparsity %g (%s) at step %llu\n", ffn_pruner_prunable(r->pruner),
                   (double)cfg->prune, cfg->prune_scope, (unsigned long long)cfg->prune_start_step);
        else
            printf("pruning: the checkpoint's masks are kept (%zu of %zu weights pruned)\n",
                   ffn_pruner_pruned_total(r->pruner), ffn_pruner_prunable(r->pruner));
    }
    fflush(stdout);
    free(spec);
}

static void write_record(run_state *r, const char *kind, uint64_t epoch, uint64_t step, double loss,
                         double acc, double val_loss, double val_acc, double lr, double sps,
                         double elapsed)
{
    if (!r->metrics) return;
    if (r->metrics_csv) {
        fprintf(r->metrics, "%s,%llu,%llu,%.9g,%.9g,%.9g,%.9g,%.9g,%.6g,%.6g\n", kind,
                (unsigned long long)epoch, (unsigned long long)step, loss, acc, val_loss, val_acc,
                lr, sps, elapsed);
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", kind);
        cJSON_AddNumberToObject(o, "epoch", (double)epoch);
        cJSON_AddNumberToObject(o, "step", (double)step);
        cJSON_AddNumberToObject(o, "loss", loss);
        if (!isnan(acc)) cJSON_AddNumberToObject(o, "accuracy", acc);
        if (!isnan(val_loss)) cJSON_AddNumberToObject(o, "val_loss", val_loss);
        if (!isnan(val_acc)) cJSON_AddNumberToObject(o, "val_accuracy", val_acc);
        cJSON_AddNumberToObject(o, "lr", lr);
        if (!isnan(sps)) cJSON_AddNumberToObject(o, "samples_per_s", sps);
        cJSON_AddNumberToObject(o, "elapsed_s", elapsed);
        char *text = cJSON_PrintUnformatted(o);
        if (text) fprintf(r->metrics, "%s\n", text);
        free(text);
        cJSON_Delete(o);
    }
    fflush(r->metrics);
}

static void print_progress(const run_state *r, uint64_t epoch, uint64_t step, double loss,
                           double epoch_start)
{
    double elapsed = ffn_clock_seconds() - epoch_start;
    double frac = (double)step / (double)r->micro_per_epoch;
    double eta = frac > 0 ? elapsed * (1 - frac) / frac : 0;
    enum { WIDTH = 30 };
    char bar[WIDTH + 1];
    int filled = (int)(frac * WIDTH);
    for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '=' : i == filled ? '>' : ' ';
    bar[WIDTH] = '\0';
    fprintf(stderr, "\repoch %llu/%llu [%s] %3.0f%% loss %.4f ETA %4.0fs ",
            (unsigned long long)epoch + 1, (unsigned long long)r->cfg->epochs, bar, 100 * frac, loss, eta);
    fflush(stderr);
}

/* ---- evaluation ---------------------------------------------------------- */

/* Loss and accuracy over a whole dataset: each rank takes a contiguous slice
 * and the sums are reduced. Collective. */
static ffn_status evaluate(run_state *r, ffn_dataset *ds, double *loss, double *accuracy)
{
    const ffn_dataset_info *info = ffn_dataset_get_info(ds);
    size_t lo, hi;
    ffn_partition(info->rows, (size_t)r->rank, (size_t)r->size, &lo, &hi);
    double sums[4] = {0, 0, 0, 0}; /* error, loss, correct, rows */
    ffn_status st = FFN_OK;
    for (size_t at = lo; at < hi && st == FFN_OK; at += r->eval_rows) {
        size_t n = hi - at < r->eval_rows ? hi - at : r->eval_rows;
        st = ffn_dataset_read_range(ds, at, n, r->eval_x, info->has_labels ? r->eval_labels : NULL,
                                    info->has_labels ? NULL : r->eval_values);
        if (st != FFN_OK) break;
        const float *out = ffn_model_forward(r->model, r->eval_x, n);
        ffn_targets t = {info->has_labels ? r->eval_labels : NULL, r->eval_values};
        sums[1] += ffn_loss_forward((ffn_loss)r->cfg->loss, out, t, n, r->out_dim);
        sums[2] += (double)ffn_count_correct((ffn_loss)r->cfg->loss, out, t, n, r->out_dim);
        sums[3] += (double)n;
    }
    sums[0] = st != FFN_OK;
    ffn_status cst = ffn_comm_sum_doubles(r->comm, sums, 4);
    if (cst != FFN_OK) return cst;
    if (sums[0] > 0) return ffn_comm_agree(r->comm, st);
    *loss = sums[1] / sums[3];
    *accuracy = sums[2] / sums[3];
    return FFN_OK;
}

/* ---- one step ------------------------------------------------------------ */

/* A rank with no rows this step still joins the exchange, with zero gradients
 * (of the trainable tensors: the only ones ever sent). */
static void zero_gradients(run_state *r) { ffn_model_zero_grads(r->model, ffn_grad_sync_ready, r->sync); }

/* The first tensor holding a non-finite parameter or gradient, for the error message. */
static void describe_nonfinite(run_state *r, char *out, size_t cap)
{
    for (size_t k = 0; k < ffn_model_tensor_count(r->model); k++) {
        const ffn_tensor *t = ffn_model_tensor(r->model, k);
        for (int grad = 0; grad < 2; grad++) {
            if (grad && !t->trainable) continue;
            const float *p = grad ? t->grad : t->data;
            for (size_t j = 0; j < t->count; j++)
                if (!isfinite(p[j])) {
                    snprintf(out, cap, "; first non-finite values in layer %zu's %s%s", t->layer, t->name,
                             grad ? " gradients" : "");
                    return;
                }
        }
    }
    snprintf(out, cap, "; parameters and gradients are still finite");
}

static uint64_t params_hash(run_state *r)
{
    const unsigned char *p = (const unsigned char *)ffn_model_params(r->model);
    size_t bytes = ffn_model_param_count(r->model) * sizeof(float);
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < (1u << 30) ? bytes - done : (1u << 30);
        crc = crc32(crc, p + done, (uInt)n);
        done += n;
    }
    return (uint64_t)crc ^ ((uint64_t)bytes << 32);
}

static ffn_status check_replicas(run_state *r, uint64_t step)
{
    uint64_t *all = malloc((size_t)r->size * sizeof *all);
    ffn_status st = all ? FFN_OK : ffn_fail(FFN_ERR_NOMEM, "out of memory");
    st = ffn_comm_agree(r->comm, st);
    if (st != FFN_OK) {
        free(all);
        return st;
    }
    st = ffn_comm_allgather_u64(r->comm, params_hash(r), all);
    for (int i = 1; st == FFN_OK && i < r->size; i++)
        if (all[i] != all[0])
            st = ffn_fail(FFN_ERR_NUMERIC,
                          "--check-replicas: parameters of rank %d differ from rank 0 after step %llu "
                          "(hash %016llx vs %016llx); replicas are no longer identical",
                          i, (unsigned long long)step, (unsigned long long)all[i],
                          (unsigned long long)all[0]);
    free(all);
    return st;
}

/* Test hook: FFN_DEBUG_PERTURB_RANK=R nudges rank R's parameters once, so that
 * the replica check can be shown to fire. */
static void maybe_perturb(run_state *r, uint64_t step)
{
    static int done;
    const char *env = getenv("FFN_DEBUG_PERTURB_RANK");
    if (done || !env || step != 1 || atoi(env) != r->rank) return;
    ffn_model_params(r->model)[0] += 1e-3f;
    done = 1;
}

/* Updates the part of the segment [offset, offset + count) that this rank
 * owns; w and g hold the owned range [own_lo, own_hi) from their index 0. */
static void update_owned(run_state *r, float lr, float *w, const float *g, size_t offset, size_t count,
                         int decay)
{
    size_t lo = offset > r->own_lo ? offset : r->own_lo;
    size_t hi = offset + count < r->own_hi ? offset + count : r->own_hi;
    if (lo < hi) ffn_optim_update(r->optim, lr, w, g, lo - r->own_lo, hi - lo, decay);
}

/* Every rank updates the parameters it owns (all of them, or its ZeRO slice,
 * whose summed gradients the reduce-scatter left in grad_slice); sharded
 * slices are then all-gathered. Collective when sharded. */
static ffn_status optimizer_step(run_state *r, float lr)
{
    float *params = ffn_model_params(r->model);
    const size_t own = r->own_hi - r->own_lo;
    float *w = params + r->own_lo;
    float *g = r->grad_slice ? r->grad_slice : ffn_model_grads(r->model);
    ffn_status st = FFN_OK;
    /* A pruned weight gets no gradient: it neither counts in the norm nor moves the optimizer state. */
    if (r->pruner) ffn_pruner_apply_range(r->pruner, g, r->own_lo, r->own_hi);
    if (r->cfg->clip_norm > 0) {
        double norm = ffn_grad_norm(g, own); /* frozen layers hold zeros */
        if (r->grad_slice) { /* the global norm from the slices' squared norms */
            double sq = norm * norm;
            if ((st = ffn_comm_sum_doubles(r->comm, &sq, 1)) != FFN_OK) return st;
            norm = sqrt(sq);
        }
        float s = ffn_clip_scale(norm, r->cfg->clip_norm);
        if (s != 1.0f) ffn_scale(g, own, s);
    }
    ffn_optim_begin_step(r->optim);
    /* Trainable tensors only; weight decay where the tensor says (weights, not biases or norms). */
    for (size_t k = 0; k < ffn_model_tensor_count(r->model); k++) {
        const ffn_tensor *t = ffn_model_tensor(r->model, k);
        if (t->trainable) update_owned(r, lr, w, g, t->offset, t->count, t->decay);
    }
    if (r->pruner) ffn_pruner_apply_range(r->pruner, w, r->own_lo, r->own_hi); /* pruned weights stay exactly 0 */
    /* Sharded: every rank gets every slice back, of the trainable tensors only
     * (each run of adjacent ones in one go; fixed tensors never changed). */
    const size_t nt = ffn_model_tensor_count(r->model), bucket = (size_t)(r->cfg->bucket_mb * 1048576.0);
    for (size_t k = 0; r->grad_slice && k < nt && st == FFN_OK;) {
        const ffn_tensor *t = ffn_model_tensor(r->model, k++);
        if (!t->trainable) continue;
        size_t lo = t->offset, hi = t->offset + t->count;
        for (; k < nt && ffn_model_tensor(r->model, k)->trainable && ffn_model_tensor(r->model, k)->offset == hi; k++)
            hi += ffn_model_tensor(r->model, k)->count;
        st = ffn_comm_allgather_slices(r->comm, params, ffn_model_param_count(r->model), lo, hi, bucket);
    }
    return st;
}

/* The pruning schedule after `step` optimizer steps: new masks when due, on
 * every rank alike (same parameters, same selection). */
static void prune_after(run_state *r, uint64_t step)
{
    const ffn_train_config *cfg = r->cfg;
    if (!r->pruner || !(cfg->prune > 0)) return;
    uint64_t end = cfg->prune_end_step > cfg->prune_start_step ? cfg->prune_end_step : cfg->prune_start_step;
    if (!ffn_prune_due(cfg->prune_start_step, end, cfg->prune_every, step)) return;
    double sparsity = ffn_prune_schedule(cfg->prune, cfg->prune_start_step, end, step);
    float *params = ffn_model_params(r->model);
    ffn_pruner_update(r->pruner, params, sparsity, (ffn_prune_scope)cfg->prune_scope_kind);
    ffn_pruner_apply(r->pruner, params);
}

/* Several ranks on one node: the gradients move into node-shared memory, where
 * the exchange sums them in place instead of copying them through MPI (see
 * ffn_comm_alloc_shared_floats). Collective: every rank calls it after setup
 * was agreed. Elsewhere nothing changes. */
static void share_gradients(run_state *r)
{
    float *g = ffn_comm_alloc_shared_floats(r->comm, ffn_model_param_count(r->model));
    if (!g) return;
    ffn_model_use_grad_buffer(r->model, g);
    ffn_grad_sync_use_buffer(r->sync, g);
}

/* ---- the loop ------------------------------------------------------------ */

static ffn_status train_loop(run_state *r, ffn_train_result *res)
{
    const ffn_train_config *cfg = r->cfg;
    ffn_loss loss_kind = (ffn_loss)cfg->loss;
    double start = ffn_clock_seconds(), epoch_start = start, other_seconds = 0, last_progress = 0;
    double epoch_loss = 0, epoch_correct = 0, epoch_rows = 0, epoch_kl = 0;
    ffn_status st = FFN_OK;
    uint64_t step = r->start_step;
    const uint64_t accumulate = cfg->accumulate;
    const size_t train_rows = ffn_dataset_get_info(r->train)->rows;
    /* Summed over the micro-batches of a step: error, loss sum, correct, rows,
     * stop signal seen, distillation KL sum. */
    double stats[6] = {0, 0, 0, 0, 0, 0};
    float scale = 1.0f;
    int have_grads = 0;
    const ffn_batch *b;
    /* A fresh run prunes before its first step when the schedule says so. */
    if (!cfg->resume) prune_after(r, step);
    if (r->pruner) ffn_pruner_apply(r->pruner, ffn_model_params(r->model));
    while ((b = ffn_loader_next(r->loader)) != NULL) {
        /* --accumulate K: K loader batches make one optimizer step, their
         * gradients summed locally and exchanged once, after the last. */
        const uint64_t in_step = b->step % accumulate;
        const int last = in_step + 1 == accumulate || b->step + 1 == r->micro_per_epoch;
        if (in_step == 0) {
            /* The step's rows: K global batches, or what is left of the epoch. */
            uint64_t first_row = b->step * cfg->batch_size, rows = accumulate * cfg->batch_size;
            if (rows > train_rows - first_row) rows = train_rows - first_row;
            scale = 1.0f / (float)rows;
            memset(stats, 0, sizeof stats);
            have_grads = 0;
            r->batch_status = FFN_OK;
            ffn_grad_sync_begin(r->sync);
        }
        if (b->status != FFN_OK && r->batch_status == FFN_OK) {
            r->batch_status = b->status;
            snprintf(r->batch_message, sizeof r->batch_message, "%s", b->message ? b->message : "read failed");
            stats[0] = 1;
        }
        if (b->status == FFN_OK && b->local_count > 0) {
            /* Training mode: dropout's masks from (seed, step, global row ids), the same at any rank count. */
            const float *out = ffn_model_forward_train(r->model, b->x, b->local_count, r->seed, step, b->indices);
            ffn_targets t = {b->labels, b->values};
            stats[2] += (double)ffn_count_correct(loss_kind, out, t, b->local_count, r->out_dim);
            if (r->teacher) {
                const float *soft = ffn_model_forward(r->teacher, b->x, b->local_count);
                ffn_distill_sums d = ffn_distill_loss(out, soft, b->labels, b->local_count, r->out_dim,
                                                      cfg->distill_temperature, cfg->distill_alpha, scale, r->dout);
                stats[1] += d.loss;
                stats[5] += d.kl;
            } else {
                stats[1] += ffn_loss_backward(loss_kind, out, t, b->local_count, r->out_dim, scale, r->dout);
            }
            stats[3] += (double)b->local_count;
            /* Only the last micro-batch's backward hands gradients to the exchange. */
            ffn_model_backward(r->model, b->x, b->local_count, r->dout, have_grads,
                               last ? ffn_grad_sync_ready : NULL, r->sync);
            have_grads = 1;
        } else if (last) {
            if (have_grads) /* earlier micro-batches hold this rank's gradients: send them */
                ffn_model_report_grads(r->model, ffn_grad_sync_ready, r->sync);
            else
                zero_gradients(r);
        }
        if (!last) continue;
        stats[4] = stop_signal != 0;
        /* The gradients, and the step's sums riding on the same exchange. */
        if ((st = ffn_grad_sync_finish_sum(r->sync, stats, 6)) != FFN_OK) return st;
        if (stats[0] > 0) {
            if (r->batch_status != FFN_OK) ffn_fail(r->batch_status, "%s", r->batch_message);
            return ffn_comm_agree(r->comm, r->batch_status);
        }
        double loss = stats[1] / stats[3];
        if (!isfinite(loss)) {
            char where[128];
            describe_nonfinite(r, where, sizeof where);
            return ffn_fail(FFN_ERR_NUMERIC,
                            "step %llu (epoch %llu): training loss is %s%s; the last checkpoint is kept; "
                            "lower --lr or set --clip-norm",
                            (unsigned long long)step + 1, (unsigned long long)b->epoch + 1,
                            isnan(loss) ? "NaN" : "infinite", where);
        }
        float lr = ffn_lr_at(&r->schedule, step);
        if ((st = optimizer_step(r, lr)) != FFN_OK) return st;
        step++;
        res->steps++;
        prune_after(r, step);
        maybe_perturb(r, step);
        if (cfg->check_replicas && step % cfg->check_replicas == 0 &&
            (st = check_replicas(r, step)) != FFN_OK)
            return st;

        res->samples += stats[3];
        epoch_loss += stats[1];
        epoch_correct += stats[2];
        epoch_rows += stats[3];
        epoch_kl += stats[5];
        if (cfg->log_every && step % cfg->log_every == 0)
            write_record(r, "step", b->epoch + 1, step, loss, stats[2] / stats[3], NAN, NAN, lr, NAN,
                         ffn_clock_seconds() - start - other_seconds);
        if (stats[4] > 0) {
            if (r->progress) fprintf(stderr, "\n");
            if (cfg->checkpoint_dir) {
                if ((st = save_checkpoint(r, step, b->epoch, b->step + 1)) != FFN_OK) return st;
                char path[4096];
                ffn_checkpoint_name(path, sizeof path, cfg->checkpoint_dir, step);
                return ffn_fail(FFN_ERR_STOPPED, "stopped by a signal after step %llu; checkpoint %s written",
                                (unsigned long long)step, path);
            }
            return ffn_fail(FFN_ERR_STOPPED, "stopped by a signal after step %llu (no --checkpoint-dir: nothing saved)",
                            (unsigned long long)step);
        }
        int epoch_end = b->step + 1 == r->micro_per_epoch || step == r->total_steps;
        double t_end = ffn_clock_seconds();
        if (cfg->checkpoint_dir && cfg->checkpoint_every_steps && step % cfg->checkpoint_every_steps == 0) {
            if ((st = save_checkpoint(r, step, b->epoch, b->step + 1)) != FFN_OK) return st;
            other_seconds += ffn_clock_seconds() - t_end;
            t_end = ffn_clock_seconds();
        }
        if (r->progress && !epoch_end && t_end - last_progress > 0.2) {
            last_progress = t_end;
            print_progress(r, b->epoch, b->step + 1, epoch_loss / epoch_rows, epoch_start);
        }
        if (!epoch_end) continue;

        double epoch_time = t_end - epoch_start;
        double val_loss = NAN, val_acc = NAN;
        if (r->val && (st = evaluate(r, r->val, &val_loss, &val_acc)) != FFN_OK) return st;
        double sps = epoch_rows / epoch_time;
        if (r->print) {
            if (r->progress) fprintf(stderr, "\r%*s\r", 78, "");
            printf("epoch %llu/%llu  train loss %.4f acc %.4f", (unsigned long long)b->epoch + 1,
                   (unsigned long long)cfg->epochs, epoch_loss / epoch_rows, epoch_correct / epoch_rows);
            if (r->val) printf("  val loss %.4f acc %.4f", val_loss, val_acc);
            if (r->teacher) printf("  kl %.4f", epoch_kl / epoch_rows);
            printf("  lr %.3g  %.0f samples/s  %.1f s\n", (double)lr, sps, epoch_time);
            fflush(stdout);
        }
        write_record(r, "epoch", b->epoch + 1, step, epoch_loss / epoch_rows, epoch_correct / epoch_rows,
                     val_loss, val_acc, lr, sps, t_end - start - other_seconds);
        res->final_loss = epoch_loss / epoch_rows;
        res->final_accuracy = epoch_correct / epoch_rows;
        if (cfg->checkpoint_dir && cfg->checkpoint_every_epochs && b->step + 1 == r->micro_per_epoch &&
            (b->epoch + 1) % cfg->checkpoint_every_epochs == 0 &&
            (st = save_checkpoint(r, step, b->epoch, b->step + 1)) != FFN_OK)
            return st;
        epoch_loss = epoch_correct = epoch_rows = epoch_kl = 0;
        other_seconds += ffn_clock_seconds() - t_end;
        epoch_start = ffn_clock_seconds();
    }
    /* The end of training always leaves a checkpoint to resume or fine-tune from. */
    if (cfg->checkpoint_dir && step > 0) {
        uint64_t batch = micro_index(r, step);
        uint64_t epoch = batch / r->micro_per_epoch, in_epoch = batch % r->micro_per_epoch;
        double t0 = ffn_clock_seconds();
        if ((st = save_checkpoint(r, step, epoch, in_epoch)) != FFN_OK) return st;
        other_seconds += ffn_clock_seconds() - t0;
    }
    res->seconds = ffn_clock_seconds() - start - other_seconds;
    return FFN_OK;
}

ffn_status ffn_train_run(const ffn_train_config *cfg, ffn_comm *comm, ffn_train_result *result)
{
    run_state r = {.cfg = cfg, .comm = comm, .rank = ffn_comm_rank(comm), .size = ffn_comm_size(comm)};
    r.print = r.rank == 0 && !cfg->quiet;
    ffn_train_result res = {.final_split = "train"};
    struct sigaction sa, old_term, old_usr1;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    stop_signal = 0;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGUSR1, &sa, &old_usr1);
    /* ffn-train blocks these signals before MPI starts (a stop request during
     * start-up must not kill the ranks); from here the handler takes them. */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &stop_set, NULL);
    ffn_status st = ffn_comm_agree(comm, setup(&r));
    /* Same seed gives the same weights everywhere; the broadcast makes it certain. */
    if (st == FFN_OK)
        st = ffn_comm_bcast_floats(comm, ffn_model_params(r.model), ffn_model_param_count(r.model), 0);
    if (st == FFN_OK) share_gradients(&r);
    if (st == FFN_OK) st = open_metrics(&r);
    if (st == FFN_OK) {
        if (r.print) print_banner(&r);
        st = train_loop(&r, &res);
    }
    if (st == FFN_OK) {
        res.samples_per_second = res.seconds > 0 ? res.samples / res.seconds : 0;
        res.data_wait_fraction = res.seconds > 0 ? ffn_loader_wait_seconds(r.loader) / res.seconds : 0;
        res.comm_wait_fraction = res.seconds > 0 ? ffn_grad_sync_wait_seconds(r.sync) / res.seconds : 0;
        ffn_dataset *final = r.test ? r.test : r.val;
        if (final) {
            res.final_split = r.test ? "test" : "val";
            st = evaluate(&r, final, &res.final_loss, &res.final_accuracy);
        }
        res.has_final = st == FFN_OK;
        if (r.print && st == FFN_OK)
            printf("done: %llu steps in %.1f s, %.0f samples/s, data wait %.1f%%, gradient wait %.1f%%\n",
                   (unsigned long long)res.steps, res.seconds, res.samples_per_second,
                   100 * res.data_wait_fraction, 100 * res.comm_wait_fraction);
        if (r.print && st == FFN_OK && r.size > 1 && res.steps)
            printf("gradient exchange: %.0f bytes per step measured (sent by each rank)\n",
                   (double)ffn_grad_sync_bytes(r.sync) / (double)res.steps);
        if (r.print && st == FFN_OK && r.pruner) {
            size_t pruned = ffn_pruner_pruned_total(r.pruner), all = ffn_pruner_prunable(r.pruner);
            printf("pruned: %zu of %zu weights are 0 (sparsity %.4f)\n", pruned, all,
                   all ? (double)pruned / (double)all : 0.0);
        }
        if (r.rank == 0 && st == FFN_OK && r.metrics) {
            write_record(&r, res.final_split, cfg->epochs, res.steps, res.final_loss, res.final_accuracy,
                         NAN, NAN, 0, res.samples_per_second, res.seconds);
        }
    }
    teardown(&r);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    if (result) *result = res;
    return st;
}
