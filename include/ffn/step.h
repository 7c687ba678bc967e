/* ffn — one training step, the same code for ffn-train, ffn-bench and the tests.
 *
 * A step is one or more micro-batches (--accumulate K). Each micro-batch is a
 * training forward, the loss (or distillation against a teacher) and a
 * backward whose gradients add up locally. After the last one the gradients
 * are summed across ranks (ffn_grad_sync: buckets started while backward
 * runs, node-shared memory on one node), the global gradient norm is clipped,
 * the optimizer updates the parameters this rank owns (all of them, or its
 * ZeRO-1 slice, all-gathered afterwards), pruning masks hold pruned weights at
 * 0 and the pruning schedule may draw new masks:
 *
 *   ffn_step_begin(s, step, rows_in_step);
 *   for each micro-batch: ffn_step_micro(s, &batch, last) or ffn_step_micro_failed(...)
 *   ffn_step_finish(s, step, epoch, lr, stop_requested, &stats);
 *
 * Every rank makes the same collectives whatever happened on it: a rank whose
 * batch failed to read, or that has no rows, still joins the exchange (with
 * zero gradients); the failure and the step's sums ride on the exchange, and
 * finish returns the same status on every rank. Nothing is allocated after
 * ffn_step_create. */
#ifndef FFN_STEP_H
#define FFN_STEP_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/comm.h"
#include "ffn/loss.h"
#include "ffn/model.h"
#include "ffn/names.h"
#include "ffn/optim.h"
#include "ffn/prune.h"
#include "ffn/status.h"

typedef struct {
    double sparsity;          /* final sparsity of the weights; 0 = no schedule */
    uint64_t start, end;      /* optimizer steps: cubic ramp from start to end (end <= start: at once) */
    uint64_t every;           /* steps between new masks during the ramp */
    ffn_prune_scope scope;
} ffn_prune_plan;

/* What each rank keeps of the training state (ZeRO's stages). Every mode
 * trains the same model: the sums are the same, only where they live changes. */
typedef enum {
    FFN_SHARD_NONE = 0,    /* every rank holds everything: 16 B per parameter with Adam */
    FFN_SHARD_OPTIMIZER,   /* ZeRO-1: 1/N of the optimizer state (gradients reduce-scattered,
                              parameters all-gathered after the update) */
    FFN_SHARD_GRADS,       /* ZeRO-2: also 1/N of the gradients (each layer's reduce-scattered as
                              backward produces them; no full gradient buffer) */
    FFN_SHARD_PARAMS,      /* ZeRO-3: also 1/N of the parameters (each layer's all-gathered just
                              before its forward and again before its backward, then given back) */
} ffn_shard;
extern const ffn_names ffn_shard_names; /* "none", "optimizer", "grads", "params" */
/* The sharding asked for by a mode and the --shard-optimizer flag: the larger. */
static inline ffn_shard ffn_shard_asked(int shard, int shard_optimizer)
{
    const ffn_shard flag = shard_optimizer ? FFN_SHARD_OPTIMIZER : FFN_SHARD_NONE;
    return (ffn_shard)shard > flag ? (ffn_shard)shard : flag;
}
/* Whether the parameters (and in bf16 their copy) are held once per node,
 * each rank updating its slice in place: --shard optimizer without pruning,
 * or --shard params, at several ranks all on one node. What ffn_step_create
 * sets up where the node-shared windows can be had; the memory plan and the
 * frozen-base sharing go by it. */
static inline int ffn_shard_params_once_per_node(ffn_shard shard, int pruning, int ranks, int local_ranks)
{
    return (shard >= FFN_SHARD_PARAMS || (shard == FFN_SHARD_OPTIMIZER && !pruning)) && ranks > 1 &&
           local_ranks == ranks;
}

typedef struct {
    ffn_loss loss;
    ffn_optim_config optim;
    float clip_norm;          /* clip the global gradient L2 norm to this; 0 = off */
    int shard_optimizer;      /* ZeRO-1 (the same as shard = FFN_SHARD_OPTIMIZER) */
    ffn_shard shard;          /* what each rank keeps; the larger of this and shard_optimizer holds */
    int grad_bf16;            /* --grad-dtype bf16: gradients cross nodes in bf16 (ffn_grad_sync_set_wire_bf16) */
    size_t bucket_bytes;      /* gradient exchange buckets */
    size_t max_rows;          /* the most rows one micro-batch has on this rank */
    uint64_t seed;            /* the run's seed: dropout masks */
    ffn_model *teacher;       /* distillation (forward only, softmax_ce), or NULL; borrowed */
    float distill_temperature, distill_alpha;
    ffn_pruner *pruner;       /* masks over the parameters, or NULL; borrowed */
    ffn_prune_plan prune;     /* when the pruner draws new masks */
} ffn_step_config;

/* One micro-batch on this rank. */
typedef struct {
    const float *x;           /* [rows, input_dim] */
    ffn_targets targets;      /* labels [rows] or values [rows, out] */
    const uint64_t *row_ids;  /* [rows] global row ids (dropout masks), or NULL: 0, 1, ... */
    size_t rows;              /* may be 0 (a rank with nothing of a small last batch) */
} ffn_step_batch;

/* Summed over the step's micro-batches and over every rank. */
typedef struct {
    double loss_sum;          /* of the per-row loss (distillation: the mixed loss) */
    double correct;           /* rows predicted right (ffn_count_correct) */
    double rows;
    double kl_sum;            /* distillation: KL(teacher || student) summed over rows; else 0 */
    int stop_requested;       /* some rank passed stop_requested to finish */
} ffn_step_stats;

typedef struct ffn_step ffn_step;

/* Collective over comm (call it on every rank once they agree that setup
 * succeeded): creates the optimizer (over this rank's parameters), the
 * gradient exchange and the buffers; on one node the model's gradients move
 * into node-shared memory. Returns the agreed status. The model is borrowed
 * and must have been reserved for cfg->max_rows. */
ffn_status ffn_step_create(ffn_step **out, ffn_model *model, ffn_comm *comm, const ffn_step_config *cfg);
void ffn_step_free(ffn_step *s);

/* Before the first step of a run (steps_done taken already): a fresh run
 * (fresh != 0) draws masks if the schedule prunes before step 1; any run then
 * zeroes the pruned weights. */
void ffn_step_prepare(ffn_step *s, uint64_t steps_done, int fresh);

/* Starts optimizer step `step` (0-based; dropout masks depend on it), whose
 * micro-batches hold step_rows rows over all ranks: the loss is their mean. */
void ffn_step_begin(ffn_step *s, uint64_t step, size_t step_rows);
/* Forward, loss and backward of one micro-batch; `last` marks the step's
 * last one, whose backward starts the gradient exchange. */
void ffn_step_micro(ffn_step *s, const ffn_step_batch *b, int last);
/* This rank's micro-batch could not be read: the step goes on (the exchange
 * must), and finish returns status with message on every rank. */
void ffn_step_micro_failed(ffn_step *s, ffn_status status, const char *message, int last);
/* Collective: sums gradients and stats over the ranks, then (all ranks alike)
 * stops with the agreed read error, or with FFN_ERR_NUMERIC naming the step,
 * the epoch and the first non-finite tensor when the loss is not finite,
 * leaving the parameters untouched; otherwise clips, updates at rate lr,
 * applies the masks and the pruning schedule after step + 1 steps. */
ffn_status ffn_step_finish(ffn_step *s, uint64_t step, uint64_t epoch, float lr, int stop_requested,
                           ffn_step_stats *stats);

/* The optimizer: its state covers this rank's parameters [lo, hi). */
ffn_optim *ffn_step_optim(ffn_step *s);
void ffn_step_owned_range(const ffn_step *s, size_t *lo, size_t *hi);
/* Collective: state buffer i over all the parameters in full [param_count]
 * on rank root (others pass NULL). Unsharded, rank root copies its own. */
ffn_status ffn_step_gather_state(ffn_step *s, size_t i, float *full, int root);
/* The sharding in force (none with one rank, whatever was asked). */
ffn_shard ffn_step_shard(const ffn_step *s);
/* Collective (every rank, the same arguments): elements [lo, lo + count) of
 * the parameters (buffer -1) or of optimizer state buffer i (buffer i >= 0),
 * in the flat parameter order, into out [count] on rank root (others pass
 * NULL), whatever the sharding: from the ranks that hold them. Checkpoints
 * are written slice by slice through this, so no rank ever holds a whole
 * sharded buffer. */
ffn_status ffn_step_gather_range(ffn_step *s, int buffer, size_t lo, size_t count, float *out, int root);
/* --shard grads/params: how the gradients and parameters travel, for the banner ("" otherwise). */
const char *ffn_step_shard_method(const ffn_step *s);
/* --shard optimizer/params on one node: the parameters are one node-shared buffer. */
int ffn_step_params_node_shared(const ffn_step *s);
/* ... and, in bf16, the weights' bf16 copy with them. */
int ffn_step_bf16_node_shared(const ffn_step *s);
/* Bytes of node-shared buffers that other ranks of the node hold and this
 * one reads (counted in its RSS): the parameters' window, its read of the
 * others' layer gradients. */
double ffn_step_others_shared_bytes(const ffn_step *s);
/* Over the run: seconds this rank waited on the gradient exchange (or, with
 * --shard grads/params, spent in the gathers and reduce-scatters, which block)
 * and the bytes it sent. */
double ffn_step_comm_wait_seconds(const ffn_step *s);
double ffn_step_comm_bytes(const ffn_step *s);
/* Over the run: seconds this rank spent in the optimizer update, from the
 * summed gradients to the new parameters (with the bf16 copy, and the
 * all-gather of ZeRO slices where there is one). */
double ffn_step_update_seconds(const ffn_step *s);
/* The gradient exchange (NULL with --shard grads/params; its counters; ffn-bench's measure of it alone). */
ffn_grad_sync *ffn_step_grad_sync(ffn_step *s);
/* 1 where the optimizer updates each gradient bucket as soon as its sums
 * arrive, while later buckets are still on the network (across nodes, the
 * flat all-reduce, no --clip-norm and no pruning; FFN_UPDATE_PER_BUCKET=0
 * turns it off); the same bits as one update after the whole exchange. */
int ffn_step_updates_per_bucket(const ffn_step *s);
/* Measurement only (ffn-bench's compute-only step): with exchange 0 the
 * gradients are not summed across ranks (the step's sums still are), so the
 * replicas drift apart. On by default. */
void ffn_step_set_exchange(ffn_step *s, int exchange);

#endif
