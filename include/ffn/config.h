/* ffn — the run configuration and its command-line parser.
 *
 * One table describes every flag (name, value, default, help), so parsing,
 * --help and the copy of the configuration saved in checkpoints and metrics
 * can never disagree. */
#ifndef FFN_CONFIG_H
#define FFN_CONFIG_H

#include <stdint.h>
#include <stdio.h>
#include "ffn/loss.h"
#include "ffn/optim.h"
#include "ffn/status.h"

#define FFN_DEFAULT_MODEL_SPEC "dense:128:relu,dense:10"

typedef struct {
    /* data and model */
    const char *train_path, *val_path, *test_path;
    const char *model_spec;    /* NULL: the default, or the checkpoint's */
    int loss;                  /* ffn_loss */
    /* optimisation */
    int optimizer;             /* ffn_opt_kind */
    float lr;
    float momentum;
    int nesterov;
    float beta1, beta2, eps;
    float rmsprop_alpha;
    float weight_decay;        /* < 0: the optimizer's default */
    float clip_norm;           /* 0 = off */
    int lr_schedule;           /* ffn_lr_kind */
    uint64_t warmup_steps, lr_step_size;
    float lr_gamma, min_lr;
    /* schedule of the run */
    uint64_t batch_size;       /* global, across all ranks */
    uint64_t eval_batch_size;
    uint64_t epochs;
    uint64_t max_steps;        /* 0 = no limit */
    uint64_t seed;
    int no_shuffle;
    /* execution */
    int threads;               /* BLAS threads per rank; 0 = auto */
    int precision;             /* ffn_precision of the matrix products (--precision) */
    int gemm;                  /* ffn_gemm_backend that runs them (--gemm) */
    int grad_dtype;            /* --grad-dtype: 0 fp32, 1 bf16 across nodes */
    double bucket_mb;          /* gradient allreduce bucket */
    double stall_timeout;      /* seconds a rank may lag at the exchange before the job ends; 0 = off */
    uint64_t check_replicas;   /* compare parameter hashes every K steps; 0 = off */
    const char *memory_limit;  /* "MiB" | "off": the memory plan's limit per rank; NULL = detected */
    uint64_t memory_limit_mib; /* parsed by validate: > 0 when set in MiB */
    int memory_limit_off;      /* parsed by validate: 1 = no memory check (the plan is still printed) */
    /* checkpoints and fine-tuning */
    const char *checkpoint_dir;
    const char *checkpoint_every; /* "N" or "Nsteps" (steps), "Nepochs" (epochs) */
    uint64_t checkpoint_every_steps, checkpoint_every_epochs; /* parsed by validate */
    uint64_t keep;             /* checkpoints kept in the directory; 0 = all */
    int keep_best;             /* also keep DIR/ckpt-best.h5, the model at the best --val metric */
    const char *resume;        /* FILE or "latest" (in checkpoint_dir) */
    int allow_data_change;     /* resume on a training set of another shape */
    const char *init_from;     /* checkpoint whose weights start a new run */
    uint64_t replace_head;     /* > 0: the last layer gets this many outputs, fresh */
    const char *freeze;        /* layers kept fixed: "0,1", "0-2", "all-but-last" */
    uint64_t lora;             /* > 0: with --init-from, LoRA adapters of this rank on the chosen dense
                                  layers; every other base tensor fixed except a replaced head */
    float lora_alpha;          /* adapter output scale alpha / rank; 0 = the rank (scale 1) */
    const char *lora_layers;   /* layers given adapters; NULL = every dense layer but a replaced head */
    /* scale and compression */
    uint64_t accumulate;       /* micro-batches (of batch_size) summed per optimizer step */
    int shard_optimizer;       /* ZeRO stage 1: optimizer state split across ranks (set by any --shard) */
    int shard;                 /* ffn_shard (step.h): none, optimizer, grads, params */
    int recompute;             /* the blocks' caches recomputed in backward */
    int fp32_caches;           /* bf16: the blocks' caches kept in fp32 */
    const char *teacher;       /* checkpoint whose model teaches (distillation) */
    float distill_temperature, distill_alpha;
    float prune;               /* target sparsity of the weights; 0 = off */
    const char *prune_scope;   /* "layer" | "global" */
    int prune_scope_kind;      /* ffn_prune_scope, parsed by validate */
    uint64_t prune_start_step, prune_end_step, prune_every;
    /* early stopping (on the --val metric after each epoch) */
    uint64_t early_stop;       /* patience in epochs without improvement; 0 = off */
    const char *early_stop_metric; /* "loss" | "accuracy" */
    int early_stop_on_accuracy;    /* parsed by validate: 1 = higher accuracy is better, 0 = lower loss */
    float early_stop_min_delta;    /* an improvement must beat the best by more than this */
    /* output */
    const char *metrics_path;  /* .csv or JSON lines */
    uint64_t log_every;        /* steps between step records; 0 = per epoch only */
    int progress;              /* -1 auto (stderr is a terminal), 0 off, 1 on */
    int quiet;
    /* --config: the parsed files that string fields may point into, and a note
     * naming a checkpoint's keys that were not replayed (NULL: none). Owned;
     * ffn_config_release frees them. */
    void *config_storage;
    char *config_note;
} ffn_train_config;

void ffn_config_defaults(ffn_train_config *cfg);

/* Frees what --config brought in (the fields pointing into it become invalid). */
void ffn_config_release(ffn_train_config *cfg);

/* Parses argv[1..argc). Errors name the flag and what it expects; an unknown
 * flag gets the nearest known one suggested. --config FILE applies a JSON file
 * (or a checkpoint's config_json, see ffn_config_load) first, wherever it
 * stands, so the other flags on the line override it.
 * Sets *help to FFN_CONFIG_HELP when --help was given, FFN_CONFIG_VERSION for
 * --version (nothing else is checked then), FFN_CONFIG_PRINT for
 * --print-config (the caller prints ffn_config_to_json_pretty and exits;
 * ffn_config_validate is not needed), else 0. */
enum { FFN_CONFIG_HELP = 1, FFN_CONFIG_VERSION = 2, FFN_CONFIG_PRINT = 3 };
ffn_status ffn_config_parse(ffn_train_config *cfg, int argc, char **argv, int *help);
/* Applies a JSON object of flag names (without --) to values, typed as
 * ffn_config_to_json writes them (strings, numbers, true/false for flags
 * without a value; null = leave as it is). Every value is validated as on the
 * command line; errors name source and the key. from_checkpoint: the keys that
 * would resume or overwrite the recorded run (resume, allow-data-change,
 * checkpoint-dir, metrics) are skipped and named in cfg->config_note. */
ffn_status ffn_config_apply_json(ffn_train_config *cfg, const char *json, const char *source, int from_checkpoint);
/* --config PATH: a JSON file, or a checkpoint (HDF5) whose config_json is
 * replayed as ffn_config_apply_json(..., from_checkpoint = 1) does. */
ffn_status ffn_config_load(ffn_train_config *cfg, const char *path);
/* Cross-field checks after parsing (required flags, ranges). */
ffn_status ffn_config_validate(ffn_train_config *cfg);
/* Parses a layer list ("0,2", "0-3", "all-but-last") for a model of n layers
 * into frozen[0..n) (errors name --freeze). */
ffn_status ffn_config_parse_layers(const char *text, size_t n, int *frozen);
/* The same for any flag taking a layer list (errors name flag_name). */
ffn_status ffn_config_parse_layer_list(const char *flag_name, const char *text, size_t n, int *chosen);
void ffn_config_print_help(FILE *out, const char *program);
/* The optimizer the flags ask for: the kind's defaults, then --momentum,
 * --nesterov, --beta1, --beta2, --eps, --rmsprop-alpha, and --weight-decay
 * when it is >= 0. */
ffn_optim_config ffn_config_optim(const ffn_train_config *cfg);
/* The configuration as JSON (malloc'd), for checkpoints and metrics files. */
char *ffn_config_to_json(const ffn_train_config *cfg);
/* The same, indented for people (--print-config). */
char *ffn_config_to_json_pretty(const ffn_train_config *cfg);

#endif
