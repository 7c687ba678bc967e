/* ffn — the flag table: parsing, validation, --help and JSON from one description. */
#include "ffn/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/ckpt.h"
#include "ffn/prune.h"
#include "ffn/step.h"

/* T_LOSS .. T_PROGRESS: an int named by one of the names in named_types. */
typedef enum { T_STR, T_U64, T_INT, T_FLOAT, T_DOUBLE, T_FLAG, T_LOSS, T_OPT, T_LR, T_PRECISION, T_GEMM, T_GRAD_DTYPE, T_SHARD, T_PROGRESS } value_type;
typedef enum { ANY, POSITIVE, NONNEG, OPEN_UNIT } range;

typedef struct {
    const char *name; /* without the leading -- */
    value_type type;
    size_t offset;
    range check;
    const char *metavar;
    const char *help;
} flag;

#define F(field) offsetof(ffn_train_config, field)

/* Counts whose products must stay far from 2^64 (rows x batches, steps x
 * epochs): anything larger is a typo, never a real run. Other counts take any
 * value below 2^64. */
static const struct {
    const char *name;
    uint64_t max;
} count_limits[] = {
    {"batch-size", (uint64_t)1 << 30}, {"eval-batch-size", (uint64_t)1 << 24}, {"accumulate", (uint64_t)1 << 20},
    {"epochs", (uint64_t)1 << 40},     {"replace-head", (uint64_t)1 << 31},    {"lora", (uint64_t)1 << 31},
};

static uint64_t count_limit(const char *name)
{
    for (size_t i = 0; i < sizeof count_limits / sizeof count_limits[0]; i++)
        if (strcmp(count_limits[i].name, name) == 0) return count_limits[i].max;
    return UINT64_MAX;
}

static const flag flags[] = {
    {"train", T_STR, F(train_path), ANY, "FILE", "training set (HDF5: /x, /y; see README)"},
    {"val", T_STR, F(val_path), ANY, "FILE", "validation set, evaluated after every epoch"},
    {"test", T_STR, F(test_path), ANY, "FILE", "test set, evaluated once at the end"},
    {"model", T_STR, F(model_spec), ANY, "SPEC",
     "layers, e.g. dense:128:relu,dense:10; the output activation is implied by the loss "
     "[default: " FFN_DEFAULT_MODEL_SPEC ", or the checkpoint's with --resume/--init-from]"},
    {"loss", T_LOSS, F(loss), ANY, "NAME", "mse | bce | softmax_ce"},
    {"optimizer", T_OPT, F(optimizer), ANY, "NAME", "sgd | adam | adamw | rmsprop"},
    {"lr", T_FLOAT, F(lr), POSITIVE, "X", "learning rate"},
    {"momentum", T_FLOAT, F(momentum), NONNEG, "X", "sgd momentum"},
    {"nesterov", T_FLAG, F(nesterov), ANY, NULL, "sgd: Nesterov momentum (needs --momentum > 0)"},
    {"beta1", T_FLOAT, F(beta1), OPEN_UNIT, "X", "adam/adamw first-moment decay"},
    {"beta2", T_FLOAT, F(beta2), OPEN_UNIT, "X", "adam/adamw second-moment decay"},
    {"eps", T_FLOAT, F(eps), POSITIVE, "X", "adam/adamw/rmsprop denominator epsilon"},
    {"rmsprop-alpha", T_FLOAT, F(rmsprop_alpha), OPEN_UNIT, "X", "rmsprop smoothing constant"},
    {"weight-decay", T_FLOAT, F(weight_decay), ANY, "X",
     "L2 (sgd/adam/rmsprop) or decoupled (adamw) decay on weights, not biases; "
     "negative = the optimizer's default (adamw 0.01, others 0)"},
    {"clip-norm", T_FLOAT, F(clip_norm), NONNEG, "X", "clip gradients to this global L2 norm; 0 = off"},
    {"lr-schedule", T_LR, F(lr_schedule), ANY, "NAME", "constant | step | cosine"},
    {"warmup-steps", T_U64, F(warmup_steps), NONNEG, "N", "linear learning-rate warmup steps"},
    {"lr-step-size", T_U64, F(lr_step_size), NONNEG, "N", "step schedule: steps between decays (0 = one epoch)"},
    {"lr-gamma", T_FLOAT, F(lr_gamma), POSITIVE, "X", "step schedule: decay factor"},
    {"min-lr", T_FLOAT, F(min_lr), NONNEG, "X", "cosine schedule: final learning rate"},
    {"batch-size", T_U64, F(batch_size), POSITIVE, "N", "global batch, split across all ranks"},
    {"eval-batch-size", T_U64, F(eval_batch_size), POSITIVE, "N", "rows per rank per evaluation batch"},
    {"epochs", T_U64, F(epochs), POSITIVE, "N", "passes over the training set"},
    {"max-steps", T_U64, F(max_steps), NONNEG, "N", "stop after this many steps in all; 0 = no limit"},
    {"seed", T_U64, F(seed), ANY, "N", "seed of initialisation and data order"},
    {"no-shuffle", T_FLAG, F(no_shuffle), ANY, NULL, "keep the file's row order every epoch"},
    {"threads", T_INT, F(threads), NONNEG, "N", "BLAS threads per rank; 0 = cores on the node / ranks on the node"},
    {"precision", T_PRECISION, F(precision), ANY, "fp32|bf16",
     "arithmetic of the matrix products: fp32, or bf16 operands with fp32 accumulation (oneDNN, on a CPU with "
     "AVX512_BF16 or AMX); weights, optimizer and checkpoints stay fp32 either way"},
    {"gemm", T_GEMM, F(gemm), ANY, "auto|openblas|onednn",
     "library of the matrix products: fp32 on OpenBLAS or oneDNN (auto: oneDNN where this CPU has AVX-512 and "
     "OpenBLAS runs a kernel without it, e.g. under OPENBLAS_CORETYPE); bf16 always on oneDNN"},
    {"grad-dtype", T_GRAD_DTYPE, F(grad_dtype), ANY, "fp32|bf16",
     "the gradients on the network between nodes: fp32, or bf16 (half the bytes, each partial sum rounded to "
     "bf16); within a node they are summed in fp32 in shared memory either way"},
    {"bucket-mb", T_DOUBLE, F(bucket_mb), POSITIVE, "X", "gradient allreduce bucket size in MiB"},
    {"stall-timeout", T_DOUBLE, F(stall_timeout), NONNEG, "SECONDS",
     "end the job (exit 1, naming the rank) when a rank has not reached a step's gradient exchange this long "
     "after the others; 0 = wait forever"},
    {"check-replicas", T_U64, F(check_replicas), NONNEG, "K",
     "compare a hash of the parameters across ranks every K steps; 0 = off"},
    {"memory-limit", T_STR, F(memory_limit), ANY, "MiB|off",
     "memory per rank the run may use: refuse to start when the predicted peak exceeds it (default: the "
     "smallest of the node's memory / its ranks, the cgroup's limit / its ranks, RLIMIT_AS); off = no check"},
    {"checkpoint-dir", T_STR, F(checkpoint_dir), ANY, "DIR",
     "write checkpoints ckpt-<step>.h5 here (at the end, on SIGTERM/SIGUSR1, and per --checkpoint-every)"},
    {"checkpoint-every", T_STR, F(checkpoint_every), ANY, "N[steps]|Nepochs",
     "checkpoint cadence: every N optimizer steps (500 or 500steps) or N epochs (1epochs)"},
    {"keep", T_U64, F(keep), NONNEG, "K", "keep only the newest K checkpoints in --checkpoint-dir; 0 = all"},
    {"keep-best", T_FLAG, F(keep_best), ANY, NULL,
     "also keep DIR/ckpt-best.h5: the model after the epoch with the best --val metric (--early-stop-metric); "
     "needs --val and --checkpoint-dir; never pruned by --keep"},
    {"resume", T_STR, F(resume), ANY, "FILE|latest",
     "continue a run exactly from a checkpoint (latest: the newest in --checkpoint-dir)"},
    {"allow-data-change", T_FLAG, F(allow_data_change), ANY, NULL,
     "with --resume: accept a training set of another size or class count (training goes on from the next "
     "epoch)"},
    {"init-from", T_STR, F(init_from), ANY, "FILE",
     "start a new run from a checkpoint's weights (fresh optimizer state and step)"},
    {"replace-head", T_U64, F(replace_head), NONNEG, "K",
     "with --init-from: the last layer gets K outputs, freshly initialised; 0 = keep"},
    {"freeze", T_STR, F(freeze), ANY, "LAYERS",
     "layers kept fixed (no gradient computed or sent): e.g. 0 | 0,1 | 0-2 | all-but-last"},
    {"lora", T_U64, F(lora), NONNEG, "R",
     "with --init-from: add LoRA adapters of rank R to the --lora-layers and train only them (and a "
     "--replace-head head); 0 = off"},
    {"lora-alpha", T_FLOAT, F(lora_alpha), NONNEG, "A", "LoRA scale: the adapter's output is multiplied by A / R; 0 = R"},
    {"lora-layers", T_STR, F(lora_layers), ANY, "LAYERS",
     "dense layers that get adapters, e.g. 0 | 0,2 | 0-2 | all-but-last [default: every dense layer but a "
     "replaced head]"},
    {"accumulate", T_U64, F(accumulate), POSITIVE, "K",
     "gradient accumulation: each optimizer step sums the gradients of K consecutive global batches of "
     "--batch-size (effective batch K x --batch-size; one gradient exchange per step)"},
    {"shard", T_SHARD, F(shard), ANY, "none|optimizer|grads|params",
     "what each rank keeps 1/N of (ZeRO): the optimizer state (stage 1; parameters all-gathered after the update), "
     "also the gradients (stage 2; each layer's reduce-scattered as backward makes them), also the parameters "
     "(stage 3; each layer's all-gathered before its forward and backward, then given back)"},
    {"shard-optimizer", T_FLAG, F(shard_optimizer), ANY, NULL, "the same as --shard optimizer"},
    {"recompute", T_FLAG, F(recompute), ANY, NULL,
     "activation checkpointing: the ffn and swiglu blocks keep only their input and recompute their cache in "
     "backward (about one more forward of the blocks a step; the same gradients, bit for bit)"},
    {"fp32-caches", T_FLAG, F(fp32_caches), ANY, NULL,
     "with --precision bf16: keep what the ffn and swiglu blocks keep for backward (hidden activations, norm "
     "values) in fp32, twice its memory (by default bf16 keeps it in bf16), to measure what that rounding costs"},
    {"teacher", T_STR, F(teacher), ANY, "FILE",
     "distillation: a checkpoint whose model (forward only) teaches the one trained; softmax_ce only"},
    {"distill-temperature", T_FLOAT, F(distill_temperature), POSITIVE, "T",
     "distillation: softmax temperature of teacher and student"},
    {"distill-alpha", T_FLOAT, F(distill_alpha), NONNEG, "A",
     "distillation: loss = A T^2 KL(teacher/T || student/T) + (1 - A) label cross-entropy; A in [0, 1]"},
    {"prune", T_FLOAT, F(prune), NONNEG, "S",
     "magnitude pruning: fraction of the weights (not biases) zeroed and kept at 0, in [0, 1); 0 = off"},
    {"prune-scope", T_STR, F(prune_scope), ANY, "layer|global",
     "prune each layer's weights to the sparsity, or all weights together"},
    {"prune-start-step", T_U64, F(prune_start_step), NONNEG, "N",
     "pruning starts after this many optimizer steps (0: before the first)"},
    {"prune-end-step", T_U64, F(prune_end_step), NONNEG, "N",
     "gradual pruning: the sparsity rises on a cubic schedule to --prune at this step; 0 = all at once "
     "at --prune-start-step"},
    {"prune-every", T_U64, F(prune_every), POSITIVE, "N", "gradual pruning: recompute the masks every N steps"},
    {"early-stop", T_U64, F(early_stop), NONNEG, "PATIENCE",
     "stop when the --val metric has not improved for PATIENCE epochs (needs --val); 0 = off"},
    {"early-stop-metric", T_STR, F(early_stop_metric), ANY, "loss|accuracy",
     "the --val metric of --early-stop and --keep-best: lower loss or higher accuracy is better"},
    {"early-stop-min-delta", T_FLOAT, F(early_stop_min_delta), NONNEG, "X",
     "an improvement must beat the best value so far by more than X"},
    {"metrics", T_STR, F(metrics_path), ANY, "FILE", "write metrics records (.csv, else JSON lines)"},
    {"log-every", T_U64, F(log_every), NONNEG, "N",
     "also record every N steps the mean training loss and accuracy since the previous record; 0 = per epoch only"},
    {"progress", T_PROGRESS, F(progress), ANY, "WHEN", "progress bar: auto (when stderr is a terminal) | on | off"},
    {"quiet", T_FLAG, F(quiet), ANY, NULL, "print only errors and the final test line"},
};
#define FLAG_COUNT (sizeof flags / sizeof flags[0])

void ffn_config_defaults(ffn_train_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->loss = FFN_LOSS_SOFTMAX_CE;
    cfg->optimizer = FFN_OPT_ADAM;
    cfg->lr = 1e-3f;
    cfg->beta1 = 0.9f;
    cfg->beta2 = 0.999f;
    cfg->eps = 1e-8f;
    cfg->rmsprop_alpha = 0.99f;
    cfg->weight_decay = -1.0f;
    cfg->lr_schedule = FFN_LR_CONSTANT;
    cfg->lr_gamma = 0.1f;
    cfg->batch_size = 32;
    cfg->eval_batch_size = 1024;
    cfg->epochs = 10;
    cfg->seed = 42;
    cfg->bucket_mb = 4.0;
    cfg->stall_timeout = 600.0;
    cfg->progress = -1;
    cfg->checkpoint_every = "1epochs";
    cfg->keep = 3;
    cfg->early_stop_metric = "loss";
    cfg->accumulate = 1;
    cfg->distill_temperature = 4.0f;
    cfg->distill_alpha = 0.5f;
    cfg->prune_scope = "layer";
    cfg->prune_every = 100;
}

/* --progress: auto (-1: when stderr is a terminal), on (1), off (0). */
static const char *const progress_names[] = {"auto", "on", "off"};
static const int progress_values[] = {-1, 1, 0};
static const ffn_names progress_table = FFN_NAMES_OF_ARRAY(progress_names);


/* The names each named value type takes. */
static const ffn_names *const named_types[] = {
    [T_LOSS] = &ffn_loss_names,
    [T_OPT] = &ffn_opt_names,
    [T_LR] = &ffn_lr_names,
    [T_PRECISION] = &ffn_precision_names,
    [T_GEMM] = &ffn_gemm_backend_names,
    [T_GRAD_DTYPE] = &ffn_precision_names, /* 0 fp32, 1 bf16 */
    [T_SHARD] = &ffn_shard_names,
    [T_PROGRESS] = &progress_table,
};

static const char *progress_name(int p) { return p < 0 ? "auto" : p ? "on" : "off"; }

/* where: how the message names the value ("--lr", or "FILE: key 'lr'"). */
static ffn_status bad_value(const char *where, const char *value, const char *expected)
{
    return ffn_fail(FFN_ERR_ARG, "%s: expected %s, got '%s'", where, expected, value);
}

/* value must outlive cfg for T_STR (it is stored, not copied). */
static ffn_status set_value(ffn_train_config *cfg, const flag *f, const char *value, const char *where)
{
    char *field = (char *)cfg + f->offset;
    char *end;
    errno = 0;
    switch (f->type) {
    case T_STR:
        if (!*value) return bad_value(where, value, "a non-empty value");
        *(const char **)field = value;
        return FFN_OK;
    case T_U64: {
        const char *want = f->check == POSITIVE ? "a positive integer" : "a non-negative integer";
        if (value[0] == '-' || !*value) return bad_value(where, value, want);
        unsigned long long v = strtoull(value, &end, 10);
        if (errno == ERANGE) return bad_value(where, value, "an integer below 2^64");
        if (errno || *end) return bad_value(where, value, want);
        if (f->check == POSITIVE && v == 0) return bad_value(where, value, "a positive integer");
        if (v > count_limit(f->name)) {
            char range_text[64];
            snprintf(range_text, sizeof range_text, "an integer in [%d, %llu]", f->check == POSITIVE,
                     (unsigned long long)count_limit(f->name));
            return bad_value(where, value, range_text);
        }
        *(uint64_t *)field = v;
        return FFN_OK;
    }
    case T_INT: {
        long v = strtol(value, &end, 10);
        if (errno || *end || !*value || v < 0 || v > 4096)
            return bad_value(where, value, "an integer in [0, 4096]");
        *(int *)field = (int)v;
        return FFN_OK;
    }
    case T_FLOAT:
    case T_DOUBLE: {
        double v = strtod(value, &end);
        if (errno || *end || !*value || !isfinite(v)) return bad_value(where, value, "a finite number");
        if (f->type == T_FLOAT) {
            if (fabs(v) > 3.0e38) return bad_value(where, value, "a number within float range");
            /* The range is checked on what is stored: 1e-60 is 0 as a float, 0.999999999 is 1. */
            v = (float)v;
        }
        if (f->check == POSITIVE && !(v > 0)) return bad_value(where, value, "a positive number");
        if (f->check == NONNEG && !(v >= 0)) return bad_value(where, value, "a number >= 0");
        if (f->check == OPEN_UNIT && !(v > 0 && v < 1)) return bad_value(where, value, "a number in (0, 1)");
        if (f->type == T_FLOAT) {
            *(float *)field = (float)v;
        } else {
            *(double *)field = v;
        }
        return FFN_OK;
    }
    case T_FLAG: return FFN_OK; /* flags take no value; handled by the caller */
    case T_LOSS:
    case T_OPT:
    case T_LR:
    case T_PRECISION:
    case T_GEMM:
    case T_GRAD_DTYPE:
    case T_SHARD:
    case T_PROGRESS: {
        const ffn_names *names = named_types[f->type];
        char list[FFN_NAMES_LIST_MAX];
        int v = ffn_names_find(names, value);
        if (v < 0) return bad_value(where, value, ffn_names_list(names, list, sizeof list));
        *(int *)field = f->type == T_PROGRESS ? progress_values[v] : v;
        return FFN_OK;
    }
    }
    return FFN_OK;
}

static const flag *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < FLAG_COUNT; i++)
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0) return &flags[i];
    return NULL;
}

/* Flags outside the table: they steer the parser rather than set a field. */
static const char *const meta_flags[] = {"config", "print-config", "help", "version"};
#define META_COUNT (sizeof meta_flags / sizeof meta_flags[0])

/* Levenshtein distance of a[0..la) and b, or a large number for long names. */
static size_t edit_distance(const char *a, size_t la, const char *b)
{
    size_t lb = strlen(b), row[65];
    if (la > 64 || lb > 64) return 1000;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t above = row[j];
            size_t best = diagonal + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[lb];
}

/* The known name nearest to name[0..len): edit distance <= 2, else one that
 * starts with it (a shortened flag); NULL when none is close. with_meta: also
 * the flags outside the table (command line, not config files). */
static const char *nearest_name(const char *name, size_t len, int with_meta)
{
    const char *best = NULL, *prefixed = NULL;
    size_t best_distance = 3;
    size_t total = FLAG_COUNT + (with_meta ? META_COUNT : 0);
    for (size_t i = 0; i < total; i++) {
        const char *candidate = i < FLAG_COUNT ? flags[i].name : meta_flags[i - FLAG_COUNT];
        size_t d = edit_distance(name, len, candidate);
        if (d < best_distance) {
            best_distance = d;
            best = candidate;
        }
        if (!prefixed && len >= 2 && strncmp(candidate, name, len) == 0) prefixed = candidate;
    }
    return best ? best : prefixed;
}

static ffn_status unknown_flag(const char *name, size_t len)
{
    const char *near = nearest_name(name, len, 1);
    if (near) return ffn_fail(FFN_ERR_ARG, "unknown flag '--%.*s' (did you mean --%s?)", (int)len, name, near);
    return ffn_fail(FFN_ERR_ARG, "unknown flag '--%.*s' (see --help)", (int)len, name);
}

void ffn_config_release(ffn_train_config *cfg)
{
    cJSON_Delete(cfg->config_storage);
    free(cfg->config_note);
    cfg->config_storage = NULL;
    cfg->config_note = NULL;
}

/* The JSON value as short text for messages. */
static void describe_json(const cJSON *item, char *out, size_t cap)
{
    char *text = cJSON_PrintUnformatted(item);
    snprintf(out, cap, "%s", text ? text : "?");
    if (text && strlen(text) >= cap && cap > 4) strcpy(out + cap - 4, "...");
    free(text);
}

/* What a key of the flag's type takes in a config file. */
static const char *json_expected(const flag *f, char *out, size_t cap)
{
    char list[FFN_NAMES_LIST_MAX];
    switch (f->type) {
    case T_STR: snprintf(out, cap, "a string (%s) or null", f->metavar); break;
    case T_FLAG: snprintf(out, cap, "true or false"); break;
    case T_LOSS:
    case T_OPT:
    case T_LR:
    case T_PRECISION:
    case T_GEMM:
    case T_GRAD_DTYPE:
    case T_SHARD:
    case T_PROGRESS:
        snprintf(out, cap, "a string: %s", ffn_names_list(named_types[f->type], list, sizeof list));
        break;
    case T_U64: snprintf(out, cap, "an integer (or its digits as a string)"); break;
    case T_INT: snprintf(out, cap, "an integer"); break;
    default: snprintf(out, cap, "a number"); break;
    }
    return out;
}

/* One key of a config file: the JSON type checked here, the value itself by
 * set_value (numbers go back to text, so the same rules apply as on the
 * command line). */
static ffn_status apply_json_value(ffn_train_config *cfg, const flag *f, const cJSON *item, const char *where)
{
    if (cJSON_IsNull(item)) return FFN_OK; /* unset: the default stays */
    char expected[FFN_NAMES_LIST_MAX + 32], got[64];
    int type_ok;
    switch (f->type) {
    case T_FLAG: type_ok = cJSON_IsBool(item); break;
    case T_STR:
    case T_LOSS:
    case T_OPT:
    case T_LR:
    case T_PRECISION:
    case T_GEMM:
    case T_GRAD_DTYPE:
    case T_SHARD:
    case T_PROGRESS: type_ok = cJSON_IsString(item); break;
    case T_U64: type_ok = cJSON_IsNumber(item) || cJSON_IsString(item); break; /* string: beyond 2^53 */
    default: type_ok = cJSON_IsNumber(item); break;
    }
    if (!type_ok) {
        describe_json(item, got, sizeof got);
        return ffn_fail(FFN_ERR_ARG, "%s: expected %s, got %s", where, json_expected(f, expected, sizeof expected), got);
    }
    if (f->type == T_FLAG) {
        *(int *)((char *)cfg + f->offset) = cJSON_IsTrue(item);
        return FFN_OK;
    }
    if (cJSON_IsString(item)) return set_value(cfg, f, item->valuestring, where);
    char text[64];
    snprintf(text, sizeof text, "%.17g", item->valuedouble); /* round-trips the double exactly */
    return set_value(cfg, f, text, where);
}

/* Keys of a checkpoint's recorded run that are not replayed: they would
 * resume it again or write over its checkpoints and metrics. */
static const char *const not_replayed[] = {"resume", "allow-data-change", "checkpoint-dir", "metrics"};

static int is_not_replayed(const char *key)
{
    for (size_t i = 0; i < sizeof not_replayed / sizeof not_replayed[0]; i++)
        if (strcmp(not_replayed[i], key) == 0) return 1;
    return 0;
}

/* Appends "key (value)" to cfg->config_note for a skipped checkpoint key. */
static ffn_status note_skipped(ffn_train_config *cfg, const char *source, const char *key, const cJSON *item)
{
    if (cJSON_IsNull(item) || cJSON_IsFalse(item)) return FFN_OK; /* nothing was set: nothing lost */
    char value[64];
    describe_json(item, value, sizeof value);
    size_t old = cfg->config_note ? strlen(cfg->config_note) : 0;
    size_t need = old + strlen(source) + strlen(key) + strlen(value) + 96;
    char *note = realloc(cfg->config_note, need);
    if (!note) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    if (!old) snprintf(note, need, "--config %s: not replayed (give them on the command line): --%s %s", source, key, value);
    else snprintf(note + old, need - old, ", --%s %s", key, value);
    cfg->config_note = note;
    return FFN_OK;
}

/* Applies the parsed object root (kept in cfg->config_storage by the caller). */
static ffn_status apply_json_object(ffn_train_config *cfg, const cJSON *root, const char *source, int from_checkpoint)
{
    if (!cJSON_IsObject(root))
        return ffn_fail(FFN_ERR_ARG, "%s: expected a JSON object of flag names and values, like --print-config writes",
                        source);
    for (const cJSON *item = root->child; item; item = item->next) {
        const char *key = item->string;
        for (const cJSON *earlier = root->child; earlier != item; earlier = earlier->next)
            if (strcmp(earlier->string, key) == 0) return ffn_fail(FFN_ERR_ARG, "%s: key '%s' given twice", source, key);
        const flag *f = find_flag(key, strlen(key));
        if (!f) {
            const char *near = nearest_name(key, strlen(key), 0);
            if (near) return ffn_fail(FFN_ERR_ARG, "%s: unknown key '%s' (did you mean '%s'?)", source, key, near);
            return ffn_fail(FFN_ERR_ARG, "%s: unknown key '%s' (keys are ffn-train's flags without --; see --help)",
                            source, key);
        }
        if (from_checkpoint && is_not_replayed(key)) {
            ffn_status st = note_skipped(cfg, source, key, item);
            if (st != FFN_OK) return st;
            continue;
        }
        char where[512];
        snprintf(where, sizeof where, "%s: key '%s'", source, key);
        ffn_status st = apply_json_value(cfg, f, item, where);
        if (st != FFN_OK) return st;
    }
    return FFN_OK;
}

/* Keeps root alive as long as cfg: the string fields point into it. */
static ffn_status keep_json(ffn_train_config *cfg, cJSON *root)
{
    if (!cfg->config_storage && !(cfg->config_storage = cJSON_CreateArray())) {
        cJSON_Delete(root);
        return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    }
    cJSON_AddItemToArray(cfg->config_storage, root);
    return FFN_OK;
}

static ffn_status parse_json_text(ffn_train_config *cfg, const char *json, size_t length, const char *source,
                                  int from_checkpoint)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, length, &end, 0);
    if (root) { /* only whitespace may follow the object */
        while (end < json + length && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
        if (end < json + length) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root) {
        size_t line = 1, column = 1;
        for (const char *p = json; end && p < end && p < json + length; p++) {
            if (*p == '\n') line++, column = 1;
            else column++;
        }
        return ffn_fail(FFN_ERR_ARG, "%s: not valid JSON (line %zu, column %zu)", source, line, column);
    }
    ffn_status st = keep_json(cfg, root);
    return st == FFN_OK ? apply_json_object(cfg, root, source, from_checkpoint) : st;
}

ffn_status ffn_config_apply_json(ffn_train_config *cfg, const char *json, const char *source, int from_checkpoint)
{
    return parse_json_text(cfg, json, strlen(json), source, from_checkpoint);
}

/* A config file larger than this is a mistake (a dataset given by error). */
#define CONFIG_FILE_MAX ((size_t)1 << 20)

ffn_status ffn_config_load(ffn_train_config *cfg, const char *path)
{
    FILE *file = fopen(path, "rb");
    if (!file) return ffn_fail(FFN_ERR_ARG, "--config %s: cannot open: %s", path, strerror(errno));
    char *text = malloc(CONFIG_FILE_MAX + 1);
    if (!text) {
        fclose(file);
        return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    }
    size_t length = fread(text, 1, CONFIG_FILE_MAX + 1, file);
    int read_error = ferror(file);
    fclose(file);
    static const char hdf5_signature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
    ffn_status st;
    if (length >= 8 && memcmp(text, hdf5_signature, 8) == 0) {
        free(text);
        char *json = NULL;
        st = ffn_checkpoint_read_config(path, &json);
        if (st == FFN_OK) st = parse_json_text(cfg, json, strlen(json), path, 1);
        free(json);
        return st;
    }
    if (read_error) st = ffn_fail(FFN_ERR_ARG, "--config %s: read error", path);
    else if (length > CONFIG_FILE_MAX)
        st = ffn_fail(FFN_ERR_ARG, "--config %s: larger than %zu bytes; expected a JSON object or a checkpoint", path,
                      CONFIG_FILE_MAX);
    else if (memchr(text, '\0', length))
        st = ffn_fail(FFN_ERR_ARG, "--config %s: expected a JSON file or a checkpoint (.h5), got binary data", path);
    else st = parse_json_text(cfg, text, length, path, 0);
    free(text);
    return st;
}

/* First pass over argv: --help/--version, and where --config and
 * --print-config stand, so that the file applies before every other flag. */
static ffn_status scan_meta_flags(int argc, char **argv, const char **config_path, int *print, int *help)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *help = FFN_CONFIG_HELP;
            return FFN_OK;
        }
        if (strcmp(arg, "--version") == 0) {
            *help = FFN_CONFIG_VERSION;
            return FFN_OK;
        }
        if (strncmp(arg, "--", 2) != 0) continue; /* the second pass names it */
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (len == 6 && strncmp(name, "config", 6) == 0) {
            if (*config_path)
                return ffn_fail(FFN_ERR_ARG, "--config: given twice (give one file; flags on the command line override it)");
            if (!eq && i + 1 >= argc) return ffn_fail(FFN_ERR_ARG, "--config: missing value (expected FILE.json|CKPT.h5)");
            *config_path = eq ? eq + 1 : argv[++i];
            if (!**config_path) return ffn_fail(FFN_ERR_ARG, "--config: expected FILE.json|CKPT.h5, got ''");
        } else if (len == 12 && strncmp(name, "print-config", 12) == 0) {
            if (eq) return ffn_fail(FFN_ERR_ARG, "--print-config takes no value");
            *print = 1;
        } else {
            const flag *f = find_flag(name, len);
            if (f && f->type != T_FLAG && !eq) i++; /* its value, even one starting with -- */
        }
    }
    return FFN_OK;
}

ffn_status ffn_config_parse(ffn_train_config *cfg, int argc, char **argv, int *help)
{
    *help = 0;
    const char *config_path = NULL;
    int print = 0;
    ffn_status st = scan_meta_flags(argc, argv, &config_path, &print, help);
    if (st != FFN_OK || *help) return st;
    if (config_path && (st = ffn_config_load(cfg, config_path)) != FFN_OK) return st;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0)
            return ffn_fail(FFN_ERR_ARG, "unexpected argument '%s' (flags start with --; see --help)", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (len == 6 && strncmp(name, "config", 6) == 0) { /* applied above */
            if (!eq) i++;
            continue;
        }
        if (len == 12 && strncmp(name, "print-config", 12) == 0) continue;
        const flag *f = find_flag(name, len);
        if (!f) return unknown_flag(name, len);
        if (f->type == T_FLAG) {
            if (eq) return ffn_fail(FFN_ERR_ARG, "--%s takes no value", f->name);
            *(int *)((char *)cfg + f->offset) = 1;
            continue;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc)
                return ffn_fail(FFN_ERR_ARG, "--%s: missing value (expected %s)", f->name, f->metavar);
            value = argv[++i];
        }
        char where[80];
        snprintf(where, sizeof where, "--%s", f->name);
        st = set_value(cfg, f, value, where);
        if (st != FFN_OK) return st;
    }
    if (print) *help = FFN_CONFIG_PRINT;
    return FFN_OK;
}

static ffn_status parse_every(ffn_train_config *cfg)
{
    const char *s = cfg->checkpoint_every;
    char *end;
    errno = 0;
    if (!s || s[0] < '0' || s[0] > '9') goto bad;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno || n == 0) goto bad;
    if (*end == '\0' || strcmp(end, "steps") == 0 || strcmp(end, "step") == 0) {
        cfg->checkpoint_every_steps = n;
        cfg->checkpoint_every_epochs = 0;
        return FFN_OK;
    }
    if (strcmp(end, "epochs") == 0 || strcmp(end, "epoch") == 0) {
        cfg->checkpoint_every_epochs = n;
        cfg->checkpoint_every_steps = 0;
        return FFN_OK;
    }
bad:
    return ffn_fail(FFN_ERR_ARG, "--checkpoint-every: expected N, Nsteps or Nepochs with N > 0, got '%s'",
                    s ? s : "");
}

ffn_status ffn_config_parse_layers(const char *text, size_t n, int *frozen)
{
    return ffn_config_parse_layer_list("--freeze", text, n, frozen);
}

ffn_status ffn_config_parse_layer_list(const char *flag_name, const char *text, size_t n, int *frozen)
{
    for (size_t i = 0; i < n; i++) frozen[i] = 0;
    if (strcmp(text, "all-but-last") == 0) {
        for (size_t i = 0; i + 1 < n; i++) frozen[i] = 1;
        return FFN_OK;
    }
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        if (*p < '0' || *p > '9') goto bad;
        unsigned long long lo = strtoull(p, &end, 10), hi = lo;
        if (errno) goto bad;
        if (*end == '-') {
            p = end + 1;
            if (*p < '0' || *p > '9') goto bad;
            hi = strtoull(p, &end, 10);
            if (errno || hi < lo) goto bad;
        }
        if (hi >= n)
            return ffn_fail(FFN_ERR_ARG, "%s: layer %llu does not exist (the model has layers 0-%zu)", flag_name,
                            hi, n - 1);
        for (unsigned long long i = lo; i <= hi; i++) frozen[i] = 1;
        if (*end == ',') end++;
        else if (*end) goto bad;
        p = end;
    }
    return FFN_OK;
bad:
    return ffn_fail(FFN_ERR_ARG, "%s: expected layer indices like 0 | 0,1 | 0-2 | all-but-last, got '%s'", flag_name,
                    text);
}

/* --memory-limit: a whole number of MiB (1 to 2^40), or off. */
static ffn_status parse_memory_limit(ffn_train_config *cfg)
{
    const char *s = cfg->memory_limit;
    cfg->memory_limit_mib = 0;
    cfg->memory_limit_off = 0;
    if (!s) return FFN_OK;
    if (strcmp(s, "off") == 0) {
        cfg->memory_limit_off = 1;
        return FFN_OK;
    }
    char *end;
    errno = 0;
    unsigned long long v = s[0] >= '0' && s[0] <= '9' ? strtoull(s, &end, 10) : 0;
    if (s[0] < '0' || s[0] > '9' || errno || *end || v == 0 || v > (1ull << 40))
        return ffn_fail(FFN_ERR_ARG, "--memory-limit: expected a whole number of MiB in [1, 2^40] or off, got '%s'", s);
    cfg->memory_limit_mib = v;
    return FFN_OK;
}

ffn_status ffn_config_validate(ffn_train_config *cfg)
{
    ffn_status st = parse_every(cfg);
    if (st != FFN_OK) return st;
    if ((st = parse_memory_limit(cfg)) != FFN_OK) return st;
    if (cfg->resume && cfg->init_from)
        return ffn_fail(FFN_ERR_ARG, "--resume and --init-from: give one (resume continues a run; init-from starts a new one)");
    if (cfg->resume && strcmp(cfg->resume, "latest") == 0 && !cfg->checkpoint_dir)
        return ffn_fail(FFN_ERR_ARG, "--resume latest: needs --checkpoint-dir");
    if (cfg->allow_data_change && !cfg->resume)
        return ffn_fail(FFN_ERR_ARG, "--allow-data-change: only with --resume");
    if (cfg->replace_head && !cfg->init_from)
        return ffn_fail(FFN_ERR_ARG, "--replace-head: only with --init-from");
    /* With --resume the checkpoint already holds its adapters and frozen layers; the
     * flags are accepted (and ignored) so that relaunching the same command resumes. */
    if (cfg->lora && !cfg->init_from && !cfg->resume)
        return ffn_fail(FFN_ERR_ARG, "--lora: only with --init-from (adapters fine-tune a checkpoint's weights; "
                        "for a fresh model put lora=R in the --model spec)");
    if (!cfg->lora && (cfg->lora_layers || cfg->lora_alpha > 0))
        return ffn_fail(FFN_ERR_ARG, "--%s: needs --lora R", cfg->lora_layers ? "lora-layers" : "lora-alpha");
    if (cfg->lora > (1u << 31)) return ffn_fail(FFN_ERR_ARG, "--lora: expected a rank in [1, 2^31]");
    if (!cfg->train_path) return ffn_fail(FFN_ERR_ARG, "--train: missing (expected an HDF5 dataset file)");
    if (cfg->nesterov && cfg->optimizer == FFN_OPT_SGD && !(cfg->momentum > 0))
        return ffn_fail(FFN_ERR_ARG, "--nesterov: needs --momentum > 0");
    if (!(cfg->distill_alpha <= 1))
        return ffn_fail(FFN_ERR_ARG, "--distill-alpha: expected a number in [0, 1], got %g", (double)cfg->distill_alpha);
    if (cfg->teacher && cfg->loss != FFN_LOSS_SOFTMAX_CE)
        return ffn_fail(FFN_ERR_ARG, "--teacher: distillation needs --loss softmax_ce (got %s)",
                        ffn_loss_name((ffn_loss)cfg->loss));
    /* --shard-optimizer is --shard optimizer; a larger --shard includes it. */
    cfg->shard = ffn_shard_asked(cfg->shard, cfg->shard_optimizer);
    cfg->shard_optimizer = cfg->shard >= FFN_SHARD_OPTIMIZER;
    if (cfg->shard >= FFN_SHARD_GRADS && (cfg->prune > 0 || cfg->grad_dtype == 1))
        return ffn_fail(FFN_ERR_ARG, "--shard %s: not with %s (use --shard optimizer)",
                        ffn_names_name(&ffn_shard_names, cfg->shard), cfg->prune > 0 ? "--prune" : "--grad-dtype bf16");
    if (cfg->shard >= FFN_SHARD_PARAMS && cfg->check_replicas)
        return ffn_fail(FFN_ERR_ARG, "--check-replicas: with --shard params no two ranks hold the same parameters");
    if (!(cfg->prune < 1))
        return ffn_fail(FFN_ERR_ARG, "--prune: expected a sparsity in [0, 1), got %g", (double)cfg->prune);
    cfg->prune_scope_kind = ffn_prune_scope_from_name(cfg->prune_scope);
    char list[FFN_NAMES_LIST_MAX];
    if (cfg->prune_scope_kind < 0)
        return ffn_fail(FFN_ERR_ARG, "--prune-scope: expected %s, got '%s'",
                        ffn_names_list(&ffn_prune_scope_names, list, sizeof list), cfg->prune_scope);
    if (cfg->prune_end_step && cfg->prune_end_step < cfg->prune_start_step)
        return ffn_fail(FFN_ERR_ARG, "--prune-end-step %llu: expected at least --prune-start-step %llu",
                        (unsigned long long)cfg->prune_end_step, (unsigned long long)cfg->prune_start_step);
    if (!cfg->early_stop_metric) cfg->early_stop_metric = "loss";
    if (strcmp(cfg->early_stop_metric, "loss") != 0 && strcmp(cfg->early_stop_metric, "accuracy") != 0)
        return ffn_fail(FFN_ERR_ARG, "--early-stop-metric: expected loss | accuracy, got '%s'", cfg->early_stop_metric);
    cfg->early_stop_on_accuracy = strcmp(cfg->early_stop_metric, "accuracy") == 0;
    if (cfg->early_stop && !cfg->val_path)
        return ffn_fail(FFN_ERR_ARG, "--early-stop %llu: needs --val (it watches the validation metric after each "
                        "epoch)", (unsigned long long)cfg->early_stop);
    if (cfg->keep_best && (!cfg->val_path || !cfg->checkpoint_dir))
        return ffn_fail(FFN_ERR_ARG, "--keep-best: needs --val (the metric that picks the best model) and "
                        "--checkpoint-dir (where ckpt-best.h5 goes)");
    if (cfg->lr_schedule == FFN_LR_COSINE && cfg->min_lr > cfg->lr)
        return ffn_fail(FFN_ERR_ARG, "--min-lr: expected at most --lr (%g), got %g", (double)cfg->lr,
                        (double)cfg->min_lr);
    return FFN_OK;
}

ffn_optim_config ffn_config_optim(const ffn_train_config *cfg)
{
    ffn_optim_config oc = ffn_optim_defaults((ffn_opt_kind)cfg->optimizer);
    oc.momentum = cfg->momentum;
    oc.nesterov = cfg->nesterov;
    oc.beta1 = cfg->beta1;
    oc.beta2 = cfg->beta2;
    oc.eps = cfg->eps;
    oc.alpha = cfg->rmsprop_alpha;
    if (cfg->weight_decay >= 0) oc.weight_decay = cfg->weight_decay;
    return oc;
}

/* The shortest %g text that reads back as the same value (so a configuration
 * printed into a checkpoint or by --print-config reruns bit for bit). */
static void format_exact(char *out, size_t cap, double v, int is_float)
{
    for (int digits = 6; digits <= 17; digits++) {
        snprintf(out, cap, "%.*g", digits, v);
        double back = strtod(out, NULL);
        if (is_float ? (float)back == (float)v : back == v) return;
    }
}

static void format_value(const ffn_train_config *cfg, const flag *f, char *out, size_t cap)
{
    const char *field = (const char *)cfg + f->offset;
    switch (f->type) {
    case T_STR: snprintf(out, cap, "%s", *(const char *const *)field ? *(const char *const *)field : ""); break;
    case T_U64: snprintf(out, cap, "%llu", (unsigned long long)*(const uint64_t *)field); break;
    case T_INT: snprintf(out, cap, "%d", *(const int *)field); break;
    case T_FLOAT: format_exact(out, cap, (double)*(const float *)field, 1); break;
    case T_DOUBLE: format_exact(out, cap, *(const double *)field, 0); break;
    case T_FLAG: snprintf(out, cap, "%s", *(const int *)field ? "true" : "false"); break;
    case T_LOSS:
    case T_OPT:
    case T_LR:
    case T_PRECISION:
    case T_GEMM:
    case T_GRAD_DTYPE:
    case T_SHARD: snprintf(out, cap, "%s", ffn_names_name(named_types[f->type], *(const int *)field)); break;
    case T_PROGRESS: snprintf(out, cap, "%s", progress_name(*(const int *)field)); break;
    }
}

void ffn_config_print_help(FILE *out, const char *program)
{
    ffn_train_config defaults;
    ffn_config_defaults(&defaults);
    fprintf(out,
            "usage: %s --train FILE [flags]\n"
            "       mpirun -np N %s --train FILE [flags]\n\n"
            "Trains a feedforward network data-parallel over MPI ranks. Flags take\n"
            "'--flag value' or '--flag=value'.\n\n",
            program, program);
    for (size_t i = 0; i < FLAG_COUNT; i++) {
        const flag *f = &flags[i];
        char name[64], def[256];
        snprintf(name, sizeof name, "--%s%s%s", f->name, f->metavar ? " " : "", f->metavar ? f->metavar : "");
        format_value(&defaults, f, def, sizeof def);
        fprintf(out, "  %-24s %s", name, f->help);
        if (f->type != T_FLAG && def[0]) fprintf(out, " [default: %s]", def);
        fputc('\n', out);
    }
    fprintf(out, "  %-24s %s\n", "--config FILE",
            "flags from a JSON object {\"lr\": 0.01, \"quiet\": true, ...} (keys: these flags without --), or "
            "a checkpoint's recorded run (CKPT.h5; --resume, --checkpoint-dir and --metrics are not replayed); "
            "flags on the command line override it");
    fprintf(out, "  %-24s %s\n", "--print-config", "print the configuration as JSON (usable with --config) and exit");
    fprintf(out, "  %-24s %s\n", "--version", "print ffn's version and the libraries' (OpenBLAS, HDF5, MPI)");
    fprintf(out, "\nThe last line printed is 'test: loss X accuracy Y' when --test is given.\n");
}

/* The shortest decimal that reads back as the same float (0.9, not
 * 0.899999976158142): what a person typed, and exact through --config. */
static double shortest_float(float v)
{
    char text[32];
    for (int digits = 6; digits < 9; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, (double)v);
        if (strtof(text, NULL) == v) return strtod(text, NULL);
    }
    return v;
}

static char *config_json(const ffn_train_config *cfg, int pretty)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    for (size_t i = 0; i < FLAG_COUNT; i++) {
        const flag *f = &flags[i];
        const char *field = (const char *)cfg + f->offset;
        char text[256];
        switch (f->type) {
        case T_U64: {
            /* Above 2^53 a JSON number (a double) would round: the exact digits as a string. */
            uint64_t v = *(const uint64_t *)field;
            if (v > ((uint64_t)1 << 53)) {
                snprintf(text, sizeof text, "%llu", (unsigned long long)v);
                cJSON_AddStringToObject(root, f->name, text);
            } else {
                cJSON_AddNumberToObject(root, f->name, (double)v);
            }
            break;
        }
        case T_INT: cJSON_AddNumberToObject(root, f->name, *(const int *)field); break;
        case T_FLOAT: cJSON_AddNumberToObject(root, f->name, shortest_float(*(const float *)field)); break;
        case T_DOUBLE: cJSON_AddNumberToObject(root, f->name, *(const double *)field); break;
        case T_FLAG: cJSON_AddBoolToObject(root, f->name, *(const int *)field); break;
        case T_STR:
            if (*(const char *const *)field) cJSON_AddStringToObject(root, f->name, *(const char *const *)field);
            else cJSON_AddNullToObject(root, f->name);
            break;
        default:
            format_value(cfg, f, text, sizeof text);
            cJSON_AddStringToObject(root, f->name, text);
        }
    }
    char *json = pretty ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return json;
}

char *ffn_config_to_json(const ffn_train_config *cfg) { return config_json(cfg, 0); }

char *ffn_config_to_json_pretty(const ffn_train_config *cfg) { return config_json(cfg, 1); }
