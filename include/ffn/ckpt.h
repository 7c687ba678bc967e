/* ffn — HDF5 checkpoints: everything needed to continue a run exactly, or to
 * start fine-tuning from its weights.
 *
 * Layout (format_version 1; readable with h5py alone):
 *   root attributes  format = "ffn-checkpoint", format_version (int),
 *                    ffn_version, model_spec (canonical), input_dim, loss,
 *                    config_json (the run's full configuration)
 *   /model/<i>       one group per layer (i from 0), attribute frozen (0/1;
 *                    absent in older files: 0)
 *   /model/<i>/<t>   float32, one dataset per parameter tensor t of layer i,
 *                    named and shaped as the spec's layer kind declares them
 *                    (see model.h): dense W [out, in], b [out] (+ lora_A
 *                    [R, in], lora_B [out, R]); layernorm gamma, beta [in];
 *                    ffn ln_gamma, ln_beta [in], W1 [H, in], b1 [H], W2 [in, H],
 *                    b2 [in]; swiglu ln_gamma, ln_beta, W1, W3 [H, in], W2 [in, H];
 *                    dropout none
 *   /optimizer       attributes kind, step_count; datasets named after the
 *                    state buffers (m, v, momentum, square_avg), each float32
 *                    [P] in the flat parameter order (layer 0's tensors in the
 *                    order above, then layer 1's, ...)
 *   /train           attributes step (optimizer steps taken), epoch and
 *                    step_in_epoch (the next batch to train on), seed, and
 *                    data_rows, data_features, data_classes (the training
 *                    set's shape, checked on resume; absent in older files);
 *                    with a --val set, the best-model state: best_metric
 *                    (float64, the best --val loss or accuracy so far),
 *                    best_step, best_epoch (1-based) and stale_epochs (epochs
 *                    since it improved); absent in older files and before
 *                    the first validation (a fresh state)
 *   /masks/<i>/W     uint8 [out, in], present only for a pruned model: 1 where
 *                    layer i's weight is kept, 0 where it is pruned (held at 0)
 *   /data            the training data's metadata (ffn_data_meta), present
 *                    when it has any: class_names (UTF-8 string dataset [K],
 *                    label order), feature_mean and feature_std (float64 [D],
 *                    Fletcher32: the data was standardized with them, and
 *                    ffn-eval applies them to raw data)
 * Every dataset is chunked with HDF5's Fletcher32 checksum filter, so a
 * corrupted byte fails the read instead of loading silently.
 *
 * Saving writes PATH.tmp, flushes and fsyncs it, then renames it onto PATH
 * (and fsyncs the directory): a crash at any moment leaves the old file or the
 * new one under PATH, never a partial one.
 *
 * Slices: the parameter and optimizer state datasets are written, and can be
 * read, a slice of the flat parameter order at a time (at most
 * ffn_checkpoint_slice_floats() values), so that neither a sharded run's
 * writer nor a rank resuming its shard ever holds a whole model's state. */
#ifndef FFN_CKPT_H
#define FFN_CKPT_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/comm.h"
#include "ffn/data.h"
#include "ffn/model.h"
#include "ffn/optim.h"
#include "ffn/status.h"

#define FFN_CKPT_FORMAT_VERSION 1

/* The most bytes of parameters or optimizer state a save holds at once (one
 * slice: 64 MiB, a whole number of the datasets' 1 MiB chunks). The
 * environment variable FFN_CKPT_SLICE_BYTES overrides it (tests: small
 * slices cross tensor and shard boundaries in a small model). */
#define FFN_CKPT_SLICE_BYTES ((size_t)64 << 20)
/* The slice in floats: FFN_CKPT_SLICE_BYTES or its override (at least 1). */
size_t ffn_checkpoint_slice_floats(void);

/* Where a save finds the values it does not hold (params NULL, or state[i]
 * NULL): elements [lo, lo + count) of the parameters (buffer -1) or of
 * optimizer state buffer i, in the flat parameter order, into out [count].
 * In a collective save every rank calls it with the same arguments in the same
 * order, the ranks that do not write with out NULL: ffn_step_gather_range. */
typedef ffn_status (*ffn_checkpoint_fetch)(void *user, int buffer, size_t lo, size_t count, float *out);

/* A checkpoint's content in memory. Loading fills it; saving writes it. */
typedef struct {
    int format_version;
    char *model_spec;      /* canonical spec text */
    size_t input_dim;
    char *loss;            /* loss name */
    char *config_json;     /* may be NULL */
    /* The model the spec builds: its layers' tensors (names, shapes, offsets
     * in params) and frozen flags. Load: created and owned, and params is its
     * parameter buffer. Save: optional (read only; NULL = built from
     * model_spec and input_dim, nothing frozen). */
    ffn_model *model;
    size_t layer_count;    /* load: the layers' input and output widths */
    size_t *layer_in, *layer_out;   /* [layer_count]; not used by save */
    size_t param_count;
    float *params;         /* [param_count], flat order (the model's tensors in order); NULL:
                              save: fetched, load_header: not read (ffn_checkpoint_read_params) */
    char *optimizer;       /* optimizer kind name, or NULL when no state */
    uint64_t optimizer_steps;
    size_t state_count;    /* 0 .. FFN_OPTIM_MAX_STATE */
    char *state_names[FFN_OPTIM_MAX_STATE]; /* [state_count] used */
    float *state[FFN_OPTIM_MAX_STATE]; /* [state_count] used, [param_count] each; NULL as params */
    ffn_checkpoint_fetch fetch;  /* save: the source of what params / state leave NULL */
    void *fetch_user;
    int check_finite;      /* save: a non-finite value fails it (FFN_ERR_NUMERIC naming the dataset) */
    uint64_t step, epoch, step_in_epoch, seed;
    /* The training set it was trained on: rows, /x columns, num_classes (0 for
     * float targets); 0 rows = not recorded (files before this field). */
    uint64_t data_rows, data_features, data_classes;
 /* The best --val metric so far and when (early stopping, --keep-best); has_best 0 = none yet. */
    int has_best;
    double best_metric;
    uint64_t best_step, best_epoch, stale_epochs;
    uint8_t *mask;         /* [param_count] pruning mask (1 kept, 0 pruned; biases 1), or NULL */
    ffn_data_meta meta;    /* the training data's class names and statistics (/data); all zero: none */
} ffn_checkpoint;

/* Reads and validates the whole file (every failure names the file and the
 * field). Free with ffn_checkpoint_free. */
ffn_status ffn_checkpoint_load(ffn_checkpoint *out, const char *path);
void ffn_checkpoint_free(ffn_checkpoint *c);
/* Frees the tensors only (the model and params, optimizer state, mask; set
 * to NULL, their counts kept), keeping the metadata: a checkpoint that seeded
 * a run once its values are copied. ffn_checkpoint_free still frees the rest. */
void ffn_checkpoint_free_tensors(ffn_checkpoint *c);
/* Everything but the values of the parameter and optimizer state datasets
 * (params and state[] stay NULL; their names, shapes and types are checked):
 * read them with the two functions below, each rank what it keeps. */
ffn_status ffn_checkpoint_load_header(ffn_checkpoint *out, const char *path);
/* Elements [lo, hi) of the flat parameter order of path (whose header is c)
 * into out [hi - lo], read from the tensor datasets they fall in; nothing
 * else of out is written. A non-finite value fails (FFN_ERR_NUMERIC). */
ffn_status ffn_checkpoint_read_params(const ffn_checkpoint *c, const char *path, size_t lo, size_t hi, float *out);
/* The same for optimizer state buffer c->state_names[i]. */
ffn_status ffn_checkpoint_read_state(const ffn_checkpoint *c, const char *path, size_t i, size_t lo, size_t hi,
                                     float *out);
/* Reads every value of path slice by slice: FFN_OK when the file loads and
 * every parameter and optimizer state value is finite (checksums and
 * ffn_checkpoint_check_finite's test without holding the file in memory). */
ffn_status ffn_checkpoint_verify(const char *path);
/* Only the config_json attribute (malloc'd; free() it), without reading the
 * tensors: for ffn-train --config CKPT.h5. */
ffn_status ffn_checkpoint_read_config(const char *path, char **json);

/* Writes c atomically to path (see above). The buffers are only read. */
ffn_status ffn_checkpoint_save(const ffn_checkpoint *c, const char *path);
/* Collective over comm: rank 0 writes path as ffn_checkpoint_save does, the
 * parameters and optimizer state slice by slice through c->fetch, which every
 * rank calls in the same order (c on the other ranks needs only the model or
 * spec, param_count, optimizer, state_count and fetch, and params and state
 * NULL as on rank 0). The ranks agree after each slice,
 * so a failure anywhere (a full disk on rank 0, a failed gather) ends the save
 * on every rank with the same status and message, PATH.tmp removed. */
ffn_status ffn_checkpoint_save_collective(const ffn_checkpoint *c, const char *path, ffn_comm *comm);

/* Checkpoint files in dir are named ckpt-<step, 10 digits>.h5. */
void ffn_checkpoint_name(char *out, size_t cap, const char *dir, uint64_t step);
/* The steps of the checkpoints in dir, newest first (malloc'd, free() it;
 * NULL when there are none). */
size_t ffn_checkpoint_steps(const char *dir, uint64_t **steps);
/* The newest complete checkpoint in dir (largest step), malloc'd; NULL with
 * FFN_ERR_IO set when there is none. */
char *ffn_checkpoint_latest(const char *dir);
/* Deletes all but the newest keep checkpoints in dir (keep 0: none deleted),
 * never the file `protect` (the checkpoint a run resumed from; NULL: none). */
ffn_status ffn_checkpoint_prune(const char *dir, size_t keep, const char *protect);
/* FFN_OK when every parameter and optimizer state value held is finite; else
 * FFN_ERR_NUMERIC naming the file, the dataset and the first bad value. */
ffn_status ffn_checkpoint_check_finite(const ffn_checkpoint *c, const char *path);

#endif
