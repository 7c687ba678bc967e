/* ffn — what one ffn-train run holds, shared by the files that make up
 * ffn_train_run (internal to libffn):
 *   train.c             the loop: steps, epochs, evaluation, signals, checkpoint cadence
 *   train_setup.c       datasets, model (fresh, resumed or fine-tuned), teacher, pruning, step, loader
 *   train_checkpoint.c  the checkpoint a run starts from, and the ones it writes
 *   train_report.c      banner, epoch lines, progress bar, metrics records, summary
 * The step itself is a library module of its own (ffn/step.h). */
#ifndef FFN_TRAIN_RUN_H
#define FFN_TRAIN_RUN_H

#include <stdint.h>
#include <stdio.h>

#include "ffn/ckpt.h"
#include "ffn/comm.h"
#include "ffn/config.h"
#include "ffn/data.h"
#include "ffn/eval.h"
#include "ffn/loader.h"
#include "ffn/memplan.h"
#include "ffn/model.h"
#include "ffn/optim.h"
#include "ffn/prune.h"
#include "ffn/share.h"
#include "ffn/step.h"
#include "ffn/train.h"

typedef struct {
    FILE *file;     /* --metrics, rank 0 only; NULL when off */
    int csv;        /* CSV (the name ends in .csv), else JSON lines */
    int progress;   /* draw a progress bar on stderr */
} ffn_run_output;

typedef struct {
    const ffn_train_config *cfg;
    ffn_comm *comm;
    int rank, size;
    int print;                    /* this rank prints (rank 0, not --quiet) */
    int threads;                  /* BLAS threads of this rank */
    ffn_dataset *train, *val, *test;
    ffn_model *model;
    ffn_model *teacher;           /* --teacher: forward only, or NULL */
    ffn_pruner *pruner;           /* --prune, or masks inherited from the checkpoint; or NULL */
    ffn_step *step;
    ffn_evaluator *eval;
    ffn_loader *loader;
    ffn_lr_schedule schedule;
    size_t max_local;             /* the most rows of one batch on this rank */
    uint64_t seed;                /* the run's seed (a resumed run keeps its checkpoint's) */
    uint64_t micro_per_epoch;     /* loader batches per epoch (--accumulate of them make a step) */
    uint64_t steps_per_epoch, total_steps; /* optimizer steps */
    uint64_t start_step, start_epoch, start_step_in_epoch;
    ffn_checkpoint ckpt;          /* the checkpoint resumed or fine-tuned from, during setup */
    int have_ckpt;
    ffn_checkpoint teacher_ckpt;  /* --teacher's, from the memory plan until load_teacher builds the teacher */
    int have_teacher_ckpt;
    ffn_data_meta train_meta;     /* --train's class names and statistics, recorded in every checkpoint */
    char *start_path;             /* that checkpoint's file (pruning never deletes it), or NULL */
    int lock_fd;                  /* rank 0: the --checkpoint-dir lock (ffn.lock) held for the run; else -1 */
    /* What every checkpoint written repeats. */
    char *config_json, *spec_text;
    size_t *layer_in, *layer_out; /* [layer count] widths */
    uint64_t last_saved_step;
    int saved_any;
    /* The best --val metric so far and when (1-based epoch), and the epochs
     * since it improved: early stopping and --keep-best decide on it, and
     * every checkpoint carries it so that a resumed run decides the same. */
    int has_best;
    double best_metric;
    uint64_t best_step, best_epoch, stale_epochs;
    ffn_run_output out;
    /* The memory plan (train_setup.c: plan_memory): the prediction, the limit
     * it was checked against and that limit's source. */
    ffn_mem_plan mem_plan;
    ffn_share_info share;         /* the fixed tensors held once per node (ffn_run_start) */
    ffn_mem_limits mem_limits;
    uint64_t mem_limit;
    char mem_which[700];
} ffn_run;

/* train_setup.c: everything local before the first collective of training;
 * the caller agrees on the outcome. */
ffn_status ffn_run_setup(ffn_run *r);
/* Collective, after setup was agreed: broadcasts the parameters, creates the
 * step and restores its optimizer state when resuming. */
ffn_status ffn_run_start(ffn_run *r);
void ffn_run_teardown(ffn_run *r);
/* What each rank keeps of the training state (the step's ffn_shard), known
 * before the step exists. */
ffn_shard ffn_run_shard(const ffn_run *r);
/* The parameters this rank keeps, [lo, hi) of the flat order: all of them, or
 * with --shard params its slice, cut as ffn_step_create cuts it. A resumed or
 * fine-tuned run reads only these from its checkpoint. */
void ffn_run_kept_params(const ffn_run *r, size_t *lo, size_t *hi);

/* train_checkpoint.c */
ffn_status ffn_run_load_start_checkpoint(ffn_run *r);
/* --resume, once the model is built: the settings that decide what trains and
 * which rows make a step, and the training set's shape, match the checkpoint's. */
ffn_status ffn_run_check_resume(ffn_run *r);
/* Collective once the step exists: each rank reads the optimizer state of
 * the parameters it updates (ffn_step_owned_range) from the checkpoint. */
ffn_status ffn_run_restore_optimizer(ffn_run *r);
/* Rank 0 creates --checkpoint-dir, proves it writable and locks it for this
 * run: a second run into the same directory is refused, naming the holder.
 * A fresh run refuses a directory that already holds checkpoints. */
ffn_status ffn_run_prepare_checkpoint_dir(ffn_run *r);
void ffn_run_unlock_checkpoint_dir(ffn_run *r);
/* Collective: rank 0 writes; all agree. (epoch, step_in_epoch) is the next batch to train on. */
ffn_status ffn_run_save_checkpoint(ffn_run *r, uint64_t step, uint64_t epoch, uint64_t step_in_epoch);
/* --keep-best: the same, to DIR/ckpt-best.h5 (written over, never pruned). */
ffn_status ffn_run_save_best(ffn_run *r, uint64_t step, uint64_t epoch, uint64_t step_in_epoch);

/* train_report.c */
ffn_status ffn_run_open_metrics(ffn_run *r);
void ffn_run_close_metrics(ffn_run *r);
void ffn_run_print_banner(const ffn_run *r);
void ffn_run_record(ffn_run *r, const char *kind, uint64_t epoch, uint64_t step, double loss, double acc,
                    double val_loss, double val_acc, double lr, double sps, double elapsed);
void ffn_run_progress(const ffn_run *r, uint64_t epoch, uint64_t batch, double loss, double epoch_start);
void ffn_run_clear_progress(const ffn_run *r);
void ffn_run_print_epoch(const ffn_run *r, uint64_t epoch, double loss, double acc, int has_val, double val_loss,
                         double val_acc, double kl, float lr, double samples_per_s, double seconds);
void ffn_run_print_summary(ffn_run *r, const ffn_train_result *res);
/* --early-stop ended the run after (1-based) epoch: one line saying why. */
void ffn_run_print_early_stop(const ffn_run *r, uint64_t epoch);

#endif
