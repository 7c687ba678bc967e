/* ffn — one training step: micro-batches, the gradient exchange, clipping,
 * the optimizer update and pruning (see ffn/step.h). */
#include "ffn/step.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "clock.h"
#include "ffn/distill.h"
#include "worker.h"
#include "ffn/mem.h"

/* The step's sums, in the order they ride on the exchange. */
enum { SUM_ERROR, SUM_LOSS, SUM_CORRECT, SUM_ROWS, SUM_STOP, SUM_KL, SUM_COUNT };

struct ffn_step {
    ffn_step_config cfg;
    int no_exchange;          /* ffn_step_set_exchange(s, 0) */
    ffn_model *model;
    ffn_comm *comm;
    ffn_optim *optim;         /* state over [own_lo, own_hi) of the parameters */
    ffn_grad_sync *sync;
    ffn_shard shard;          /* the larger of cfg.shard and cfg.shard_optimizer */
    size_t own_lo, own_hi;    /* the parameters this rank updates: all, or its ZeRO slice */
    float *grad_slice;        /* [own_hi - own_lo] sharded: the summed gradients of the slice; else NULL */
    float *scatter_tmp;       /* --shard grads/params across nodes: a reduce-scatter's landing place */
    float *scatter_shared;    /* --shard grads/params on one node: layer_grads, node-shared (each rank's segment) */
    int params_shared;        /* --shard optimizer/params on one node: the parameters live once, in node-shared memory */
    uint16_t *bf16_shared;    /* params_shared in bf16: their bf16 copy too (each rank writes its slice's) */
    int sum_in_update;        /* --shard optimizer on one node: the optimizer sums its slice over the node's
                               * gradient segments itself, a chunk at a time (ffn_grad_sync_leave_sum) */
    float sum_chunk[4096];    /* sum_in_update: one chunk's summed gradients (stays in L1/L2) */
    int update_per_bucket;    /* across nodes: each bucket updated as its sums arrive (ffn_grad_sync_finish_each) */
    int micro;                /* micro-batches of the step done so far (the first writes the slice, the rest add) */
    float *layer_grads;       /* --shard grads/params: the gradients of the layer in backward, [largest layer] */
    size_t grads_layer;       /* the layer whose gradients layer_grads holds */
    int gathers;              /* --shard params across nodes: each layer's parameters all-gathered */
    int without_rows;         /* the pass under way computes nothing (its gradients are zero) */
    unsigned char *gathered;  /* --shard params across nodes: each layer's parameters NOT_HERE, COMING or HERE */
    uint64_t *gather_ticket;  /* of the worker's job gathering each COMING layer */
    ffn_worker *worker;       /* the communication thread prefetching layers (NULL: gathers on this thread) */
    float *grads_buf[2];      /* across nodes with the worker: layers alternate, one's sums travel while the next computes */
    uint64_t grads_ticket[2]; /* the worker's last job reading each buffer (grads_busy: one is pending) */
    int grads_busy[2];
    ffn_status worker_status; /* the first failure of the worker's collectives (read after a drain) */
    size_t lowest_trained;    /* backward stops there: no prefetch below */
    ffn_status shard_status;  /* the first failed gather or reduce-scatter of the step */
    double shard_seconds;     /* in those collectives, over the run */
    double update_seconds;    /* in the optimizer update (with its gathers), over the run */
    double shard_bytes;       /* what they move per rank, (N-1)/N of each range, over the run */
    float *dout;              /* [max_rows, output_dim] gradient w.r.t. the model's output */
    size_t out_dim;
    /* The step under way. */
    uint64_t step;
    float scale;              /* 1 / rows of the whole step, over all ranks */
    int have_grads;           /* a micro-batch of this step has written this rank's gradients */
    double sums[SUM_COUNT];
    ffn_status batch_status;  /* the first failed read among this step's micro-batches */
    char batch_message[512];
};

/* ---- --shard grads and --shard params ------------------------------------------
 *
 * No all-reduce: backward writes each layer's gradients into a layer buffer,
 * and as it hands them over they are reduce-scattered into each rank's slice
 * (grad_slice: written by the step's first micro-batch, added to by the
 * others), so a rank holds its slice of the summed gradients and one layer's
 * worth besides (two across nodes, where they alternate). On one node the
 * layer buffer is each rank's segment of a node-shared window and each rank
 * sums its part of everyone's in place (no MPI call); across nodes through
 * MPI_Reduce_scatter. With --shard params, on one node the parameters live
 * once in a node-shared window, each rank updating its slice in place and
 * reading every layer from it (a node barrier after the update); across
 * nodes, the parameters outside the slice are given back and each layer's are
 * all-gathered before its forward and its backward and given back after (the
 * last layer stays from its forward to its backward), on a communication
 * thread that fetches the next layer's while one computes. Every rank makes
 * the same calls in the same order, with or without rows. */

/* What one collective over count floats moves per rank: (N-1)/N of it. */
static void count_bytes(ffn_step *s, size_t count)
{
    const int n = ffn_comm_size(s->comm);
    s->shard_bytes += (double)count * sizeof(float) * (double)(n - 1) / (double)n;
}

/* The time and the bytes of one collective over count floats. */
static void count_collective(ffn_step *s, double t0, size_t count)
{
    s->shard_seconds += ffn_clock_seconds() - t0;
    count_bytes(s, count);
}

/* The summed [offset, offset + count) (range holds it) of the rank's slice into grad_slice, through MPI. */
static ffn_status reduce_scatter_mpi(ffn_step *s, float *range, size_t offset, size_t count, int micro)
{
    const size_t n = ffn_model_param_count(s->model);
    ffn_status st = ffn_comm_reduce_scatter_range(s->comm, range, n, offset, offset + count, s->scatter_tmp,
                                                  s->cfg.bucket_bytes);
    const size_t a = offset > s->own_lo ? offset : s->own_lo;
    const size_t z = offset + count < s->own_hi ? offset + count : s->own_hi;
    float *out = s->grad_slice + (a - s->own_lo);
    const float *sum = range + (a - offset);
    for (size_t i = 0; a < z && i < z - a; i++) out[i] = micro ? out[i] + sum[i] : sum[i];
    return st;
}

/* The worker's jobs: a layer's parameters gathered, a range of gradients reduce-scattered. */
typedef struct {
    ffn_step *s;
    size_t layer;
} gather_job;
typedef struct {
    ffn_step *s;
    float *range;
    size_t offset, count;
    int micro;
} scatter_job;

static void run_gather(ffn_step *s, size_t i, ffn_status *status)
{
    const ffn_layer *l = ffn_model_layer_const(s->model, i);
    float *params = (float *)ffn_model_params_const(s->model);
    if (*status == FFN_OK)
        *status = ffn_comm_allgather_slices(s->comm, params, ffn_model_param_count(s->model), l->param_offset,
                                            l->param_offset + l->param_count, s->cfg.bucket_bytes);
    ffn_model_bf16_refresh_layer(s->model, i);
    count_bytes(s, l->param_count);
}

static void gather_job_run(void *payload)
{
    gather_job *j = payload;
    run_gather(j->s, j->layer, &j->s->worker_status);
}

static void scatter_job_run(void *payload)
{
    scatter_job *j = payload;
    ffn_step *s = j->s;
    ffn_status st = reduce_scatter_mpi(s, j->range, j->offset, j->count, j->micro);
    if (s->worker_status == FFN_OK) s->worker_status = st;
    count_bytes(s, j->count);
}

static void shard_ready(void *user, size_t offset, size_t count)
{
    ffn_step *s = user;
    const ffn_layer *l = ffn_model_layer_const(s->model, s->grads_layer);
    float *range = s->layer_grads + (offset - l->param_offset);
    if (s->worker) { /* travels while the next layer's backward computes (into the other buffer) */
        const scatter_job j = {s, range, offset, count, s->micro > 0};
        const int b = s->layer_grads == s->grads_buf[1];
        s->grads_ticket[b] = ffn_worker_post(s->worker, scatter_job_run, &j, sizeof j);
        s->grads_busy[b] = 1;
        return;
    }
    const double t0 = ffn_clock_seconds();
    if (s->shard_status == FFN_OK)
        s->shard_status = s->scatter_shared
                              ? ffn_comm_reduce_scatter_shared(s->comm, s->scatter_shared, range,
                                                               ffn_model_param_count(s->model), offset, offset + count,
                                                               s->grad_slice, s->micro > 0)
                              : reduce_scatter_mpi(s, range, offset, count, s->micro > 0);
    count_collective(s, t0, count);
}

enum { NOT_HERE, COMING, HERE };

/* Layer i's parameters outside the slice given back (it is here: nothing writes them). */
static void release_layer(ffn_step *s, size_t i)
{
    ffn_model_release_layer(s->model, i, s->own_lo, s->own_hi);
    s->gathered[i] = NOT_HERE;
}

/* Every job done, every gathered layer given back (the parameters are about to change). */
static void release_all(ffn_step *s)
{
    if (!s->gathers) return;
    if (s->worker) ffn_worker_drain(s->worker);
    s->grads_busy[0] = s->grads_busy[1] = 0;
    for (size_t i = 0; i < ffn_model_layer_count(s->model); i++)
        if (s->gathered[i] != NOT_HERE) release_layer(s, i);
}

/* Layer i's parameters gathered (on the worker, ahead of need: prefetch). */
static void prefetch_layer(ffn_step *s, size_t i)
{
    if (!s->worker || i >= ffn_model_layer_count(s->model) || s->gathered[i] != NOT_HERE) return;
    const gather_job j = {s, i};
    s->gather_ticket[i] = ffn_worker_post(s->worker, gather_job_run, &j, sizeof j);
    s->gathered[i] = COMING;
}

static void gather_layer(ffn_step *s, size_t i)
{
    if (s->gathered[i] == NOT_HERE && s->worker) prefetch_layer(s, i);
    if (s->gathered[i] == COMING) {
        ffn_worker_wait(s->worker, s->gather_ticket[i]);
    } else if (s->gathered[i] == NOT_HERE) {
        const double t0 = ffn_clock_seconds();
        run_gather(s, i, &s->shard_status);
        s->shard_seconds += ffn_clock_seconds() - t0;
    }
    s->gathered[i] = HERE;
}

static void before_layer(void *user, size_t i, ffn_pass pass)
{
    ffn_step *s = user;
    if (s->gathers) {
        gather_layer(s, i);
        /* The next layer's comes while this one computes. */
        if (pass == FFN_PASS_FORWARD) prefetch_layer(s, i + 1);
        else if (i > s->lowest_trained) prefetch_layer(s, i - 1);
    }
    if (pass != FFN_PASS_BACKWARD) return;
    /* Backward writes the layer's gradients into a layer buffer (zeros for a pass without rows):
     * with the worker, layers alternate between two, the other's sums still travelling. */
    if (s->worker) {
        const int b = (int)(i & 1);
        if (s->grads_busy[b]) ffn_worker_wait(s->worker, s->grads_ticket[b]);
        s->grads_busy[b] = 0;
        s->layer_grads = s->grads_buf[b];
    }
    ffn_model_set_layer_grads(s->model, i, s->layer_grads);
    s->grads_layer = i;
    if (s->without_rows) memset(s->layer_grads, 0, ffn_model_layer_const(s->model, i)->param_count * sizeof(float));
}

static void after_layer(void *user, size_t i, ffn_pass pass)
{
    ffn_step *s = user;
    if (pass == FFN_PASS_BACKWARD) ffn_model_set_layer_grads(s->model, i, NULL);
    /* The last layer's backward comes right after its forward. */
    if (!s->gathers || (pass == FFN_PASS_FORWARD && i + 1 == ffn_model_layer_count(s->model))) return;
    release_layer(s, i);
}

/* The parameter count of the model's largest layer: one layer's buffer. */
static size_t largest_layer(const ffn_model *m)
{
    size_t largest = 0;
    for (size_t i = 0; i < ffn_model_layer_count(m); i++)
        if (ffn_model_layer_const(m, i)->param_count > largest) largest = ffn_model_layer_const(m, i)->param_count;
    return largest;
}

/* One node, sharded: the parameters held once, in a node-shared window where
 * each rank's slice is its own segment; each rank updates its slice in place
 * and the others read it after a node barrier (no all-gather). In bf16 their
 * bf16 copy too: each rank's optimizer writes its slice's, so no rank converts
 * the whole model each step. Collective; across nodes (or where the window
 * cannot be laid out by slices) nothing changes. */
static ffn_status share_params_on_node(ffn_step *s)
{
    ffn_model *m = s->model;
    const size_t n = ffn_model_param_count(m);
    float *window = ffn_comm_alloc_node_slices(s->comm, n);
    if (!window) return FFN_OK;
    ffn_model_use_param_buffer(m, window, s->own_lo, s->own_hi);
    s->params_shared = 1;
    if (ffn_model_precision(m) == FFN_PRECISION_BF16 && (s->bf16_shared = ffn_comm_alloc_node_slices_u16(s->comm, n))) {
        ffn_model_use_bf16_buffer(m, s->bf16_shared);
        ffn_model_bf16_refresh_slice(m, s->own_lo, s->own_hi);
    }
    ffn_status st = ffn_comm_node_sync(s->comm); /* every slice is in */
    if (s->bf16_shared) ffn_model_bf16_set_current(m);
    return st;
}

static ffn_status create_sharded(ffn_step *s)
{
    if (s->cfg.pruner) return ffn_fail(FFN_ERR_ARG, "--shard %s does not prune yet: use --shard optimizer with --prune",
                                       ffn_names_name(&ffn_shard_names, (int)s->shard));
    if (s->cfg.grad_bf16)
        return ffn_fail(FFN_ERR_ARG, "--grad-dtype bf16 runs with the all-reduce exchange; --shard %s reduce-scatters "
                                     "in fp32", ffn_names_name(&ffn_shard_names, (int)s->shard));
    const size_t own = s->own_hi > s->own_lo ? s->own_hi - s->own_lo : 1;
    const size_t largest = largest_layer(s->model) ? largest_layer(s->model) : 1;
    /* The slice page-mapped: a frozen base's part of it is never written, so takes no memory. */
    if (!(s->grad_slice = ffn_alloc_pages(own * sizeof(float))))
        return ffn_fail(FFN_ERR_NOMEM, "out of memory for the gradient slice");
    /* Collective from here: every rank gets as far (agreed by the caller before).
     * On one node the layer buffer itself is node-shared: backward writes each
     * rank's segment and every rank sums its part of all of them in place.
     * FFN_SHARD_NODE_SHARED=0: MPI collectives even on one node (the path
     * across nodes, for tests and measures). */
    const char *node_shared = getenv("FFN_SHARD_NODE_SHARED");
    s->scatter_shared = node_shared && strcmp(node_shared, "0") == 0 ? NULL : ffn_comm_alloc_shared_floats(s->comm, largest);
    s->layer_grads = s->scatter_shared;
    const size_t per = s->cfg.bucket_bytes / sizeof(float) ? s->cfg.bucket_bytes / sizeof(float) : 1;
    if (!s->layer_grads && !(s->layer_grads = ffn_alloc_floats(largest)))
        return ffn_fail(FFN_ERR_NOMEM, "out of memory for a layer's gradients");
    if (!s->scatter_shared && ffn_comm_size(s->comm) > 1 && !(s->scatter_tmp = ffn_alloc_floats(per < own ? per : own)))
        return ffn_fail(FFN_ERR_NOMEM, "out of memory for the gradient reduce-scatter");
    const ffn_layer_hooks hooks = {before_layer, after_layer, s};
    ffn_model_set_layer_hooks(s->model, &hooks);
    if (s->shard < FFN_SHARD_PARAMS) return FFN_OK;
    if (s->scatter_shared) {
        ffn_status st = share_params_on_node(s);
        if (st != FFN_OK || s->params_shared) return st;
    }
    if (ffn_comm_size(s->comm) == 1) return FFN_OK;
    /* Only the slice stays; the rest comes back layer by layer. */
    const size_t layers = ffn_model_layer_count(s->model);
    if (!(s->gathered = calloc(layers, 1)) || !(s->gather_ticket = calloc(layers, sizeof *s->gather_ticket)))
        return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    s->gathers = 1;
    s->lowest_trained = ffn_model_lowest_trained(s->model);
    ffn_model_set_bf16_by_layer(s->model, 1);
    for (size_t i = 0; i < layers; i++) release_layer(s, i);
    /* The communication thread (FFN_SHARD_PREFETCH=0: none): gathers ahead and
     * reduce-scatters behind while this thread computes; MPI must allow a
     * thread of its own (every rank decides alike: the same library). */
    const char *prefetch = getenv("FFN_SHARD_PREFETCH");
    if ((prefetch && strcmp(prefetch, "0") == 0) || !ffn_comm_threads_serialized(s->comm)) return FFN_OK;
    s->grads_buf[0] = s->layer_grads;
    if (!(s->grads_buf[1] = ffn_alloc_floats(largest)))
        return ffn_fail(FFN_ERR_NOMEM, "out of memory for a second layer's gradients");
    if (!(s->worker = ffn_worker_start())) {
        ffn_free(s->grads_buf[1]);
        s->grads_buf[1] = NULL;
    }
    return FFN_OK;
}

ffn_status ffn_step_create(ffn_step **out, ffn_model *model, ffn_comm *comm, const ffn_step_config *cfg)
{
    *out = NULL;
    ffn_step *s = calloc(1, sizeof *s);
    ffn_status st = s ? FFN_OK : ffn_fail(FFN_ERR_NOMEM, "out of memory");
    const size_t nparams = ffn_model_param_count(model);
    if (st == FFN_OK) {
        s->cfg = *cfg;
        s->model = model;
        s->comm = comm;
        s->out_dim = ffn_model_output_dim(model);
        s->own_lo = 0;
        s->own_hi = nparams;
        s->shard = ffn_shard_asked((int)cfg->shard, cfg->shard_optimizer);
        if (ffn_comm_size(comm) == 1) s->shard = FFN_SHARD_NONE; /* one rank: nothing to split, nothing to send */
        if (s->shard >= FFN_SHARD_OPTIMIZER) ffn_comm_slice(comm, nparams, ffn_comm_rank(comm), &s->own_lo, &s->own_hi);
        const size_t own = s->own_hi > s->own_lo ? s->own_hi - s->own_lo : 1;
        if (s->shard == FFN_SHARD_OPTIMIZER && !(s->grad_slice = ffn_alloc_floats(own)))
            st = ffn_fail(FFN_ERR_NOMEM, "out of memory for the gradient slice");
    }
    if (st == FFN_OK && !(s->dout = ffn_alloc(cfg->max_rows ? cfg->max_rows : 1, s->out_dim * sizeof(float))))
        st = ffn_fail(FFN_ERR_NOMEM, "out of memory for the output gradient");
    if (st == FFN_OK && !(s->optim = ffn_optim_create(&cfg->optim, s->own_hi - s->own_lo)))
        st = ffn_fail(FFN_ERR_ARG, "optimizer: %s", ffn_last_error());
    st = ffn_comm_agree(comm, st);
    /* --shard optimizer on one node: the parameters once per node instead of
     * all-gathered after each update (not with pruning, whose masks every
     * rank applies to the whole model). */
    if (st == FFN_OK && s->shard == FFN_SHARD_OPTIMIZER && !cfg->pruner) st = share_params_on_node(s);
    st = ffn_comm_agree(comm, st);
    if (st == FFN_OK && s->shard >= FFN_SHARD_GRADS)
        st = create_sharded(s); /* no all-reduce exchange: each layer's gradients reduce-scattered */
    else if (st == FFN_OK)
        st = s->grad_slice ? ffn_grad_sync_create_sharded(&s->sync, comm, ffn_model_grads(model), nparams,
                                                          cfg->bucket_bytes, s->grad_slice)
                           : ffn_grad_sync_create(&s->sync, comm, ffn_model_grads(model), nparams,
                                                  cfg->bucket_bytes);
    st = ffn_comm_agree(comm, st);
    if (st != FFN_OK) {
        ffn_step_free(s);
        return st;
    }
    if (s->shard < FFN_SHARD_GRADS) {
        /* Several ranks on one node: the gradients move into node-shared memory,
         * where the exchange sums them in place instead of copying them through
         * MPI (ffn_comm_alloc_shared_floats); with several such nodes the exchange
         * becomes hierarchical (sums within each node, slices across). Elsewhere
         * nothing changes. */
        float *shared = ffn_comm_alloc_shared_floats(comm, nparams);
        if (shared) {
            ffn_model_use_grad_buffer(model, shared);
            ffn_grad_sync_use_buffer(s->sync, shared);
        }
        st = ffn_comm_agree(comm, cfg->grad_bf16 ? ffn_grad_sync_set_wire_bf16(s->sync) : FFN_OK);
        if (st != FFN_OK) {
            ffn_step_free(s);
            return st;
        }
        /* --shard optimizer, parameters node-shared: no slice buffer written and read back, each
         * rank's optimizer sums its slice over the node's segments as it goes (with --clip-norm
         * the norm needs the sums first: the reduce-scatter stays). Every rank decides alike. */
        if (s->params_shared && cfg->clip_norm <= 0) s->sum_in_update = ffn_grad_sync_leave_sum(s->sync);
        /* Across nodes the buckets leave during backward: a large weight's gradients go in pieces. */
        ffn_model_set_grad_piece(model, ffn_grad_sync_piece_floats(s->sync));
        /* And the optimizer updates each bucket as soon as its sums arrive, while the ones behind
         * are still on the network, where nothing needs every sum first (the norm of --clip-norm,
         * the masks of pruning). Every rank decides alike. FFN_UPDATE_PER_BUCKET=0: after the
         * whole exchange (for tests and measures; the same bits). */
        const char *per_bucket = getenv("FFN_UPDATE_PER_BUCKET");
        if (per_bucket && strcmp(per_bucket, "0") != 0 && strcmp(per_bucket, "1") != 0) {
            ffn_step_free(s);
            return ffn_fail(FFN_ERR_ARG, "FFN_UPDATE_PER_BUCKET is '%s', expected 1 (across nodes the optimizer "
                            "updates each gradient bucket as its sums arrive, the default) or 0 (after the whole "
                            "exchange)", per_bucket);
        }
        s->update_per_bucket = ffn_grad_sync_streams(s->sync) && s->shard == FFN_SHARD_NONE &&
                               cfg->clip_norm <= 0 && !cfg->pruner && !(per_bucket && per_bucket[0] == '0');
    }
    *out = s;
    return FFN_OK;
}

void ffn_step_free(ffn_step *s)
{
    if (!s) return;
    ffn_worker_stop(s->worker); /* its jobs done first */
    free(s->gathered);
    free(s->gather_ticket);
    if (s->shard >= FFN_SHARD_GRADS) {
        ffn_model_set_layer_hooks(s->model, NULL);
        ffn_model_set_bf16_by_layer(s->model, 0);
    }
    ffn_grad_sync_free(s->sync);
    ffn_optim_free(s->optim);
    if (s->shard >= FFN_SHARD_GRADS)
        ffn_free_pages(s->grad_slice, (s->own_hi > s->own_lo ? s->own_hi - s->own_lo : 1) * sizeof(float));
    else
        ffn_free(s->grad_slice);
    ffn_free(s->scatter_tmp);
    if (s->grads_buf[1]) { /* the worker's two (layer_grads is one of them) */
        ffn_free(s->grads_buf[0]);
        ffn_free(s->grads_buf[1]);
    } else if (s->layer_grads != s->scatter_shared) {
        ffn_free(s->layer_grads); /* a node-shared one goes with the comm */
    }
    ffn_free(s->dout);
    free(s);
}

ffn_optim *ffn_step_optim(ffn_step *s) { return s->optim; }
ffn_grad_sync *ffn_step_grad_sync(ffn_step *s) { return s->sync; }
int ffn_step_updates_per_bucket(const ffn_step *s) { return s->update_per_bucket; }
void ffn_step_set_exchange(ffn_step *s, int exchange) { s->no_exchange = !exchange; }

void ffn_step_owned_range(const ffn_step *s, size_t *lo, size_t *hi)
{
    *lo = s->own_lo;
    *hi = s->own_hi;
}

static const char *const shard_names[] = {"none", "optimizer", "grads", "params"};
const ffn_names ffn_shard_names = FFN_NAMES_OF_ARRAY(shard_names);

ffn_shard ffn_step_shard(const ffn_step *s) { return s->shard; }

const char *ffn_step_shard_method(const ffn_step *s)
{
    if (s->shard < FFN_SHARD_GRADS) return "";
    if (ffn_comm_size(s->comm) == 1) return "one rank: nothing to exchange";
    if (s->shard == FFN_SHARD_GRADS)
        return s->scatter_shared ? "each layer's gradients reduce-scattered through node-shared memory as backward "
                                   "makes them; parameters all-gathered after the update"
                                 : "each layer's gradients reduce-scattered (MPI_Reduce_scatter) as backward makes "
                                   "them; parameters all-gathered after the update";
    return s->params_shared ? "each layer's gradients reduce-scattered through node-shared memory as backward makes "
                              "them; parameters held once per node in node-shared memory, each rank updating its "
                              "slice"
           : s->scatter_shared ? "each layer's gradients reduce-scattered through node-shared memory; parameters "
                                 "all-gathered layer by layer before forward and backward (MPI_Allgatherv)"
                               : s->worker ? "each layer's gradients reduce-scattered (MPI_Reduce_scatter) while the next "
                                             "layer's backward computes; parameters all-gathered layer by layer "
                                             "(MPI_Allgatherv), the next layer's while one computes: a communication "
                                             "thread"
                                           : "each layer's gradients reduce-scattered (MPI_Reduce_scatter) as backward "
                                             "makes them; parameters all-gathered layer by layer before forward and "
                                             "backward (MPI_Allgatherv)";
}

int ffn_step_params_node_shared(const ffn_step *s) { return s->params_shared; }
int ffn_step_bf16_node_shared(const ffn_step *s) { return s->bf16_shared != NULL; }

double ffn_step_others_shared_bytes(const ffn_step *s)
{
    const int n = ffn_comm_local_size(s->comm);
    if (n < 2) return 0;
    double bytes = 0; /* every rank reads all of the parameters' window, and 1/N of each other rank's layer segment */
    if (s->params_shared) bytes += (double)ffn_model_param_count(s->model) * sizeof(float) * (double)(n - 1) / n;
    if (s->bf16_shared) bytes += (double)ffn_model_param_count(s->model) * sizeof(uint16_t) * (double)(n - 1) / n;
    if (s->scatter_shared) {
        bytes += (double)largest_layer(s->model) * sizeof(float) * (double)(n - 1) / n;
    }
    return bytes;
}

double ffn_step_comm_wait_seconds(const ffn_step *s)
{
    if (s->sync) return ffn_grad_sync_wait_seconds(s->sync);
    return s->shard_seconds + (s->worker ? ffn_worker_wait_seconds(s->worker) : 0);
}

double ffn_step_update_seconds(const ffn_step *s) { return s->update_seconds; }

double ffn_step_comm_bytes(const ffn_step *s) { return s->sync ? (double)ffn_grad_sync_bytes(s->sync) : s->shard_bytes; }

ffn_status ffn_step_gather_range(ffn_step *s, int buffer, size_t lo, size_t count, float *out, int root)
{
    const size_t n = ffn_model_param_count(s->model);
    if (lo > n || count > n - lo) return ffn_fail(FFN_ERR_ARG, "gather of [%zu, +%zu) beyond %zu parameters", lo, count, n);
    /* Held whole by every rank: the root copies its own. */
    const int sharded = buffer < 0 ? s->shard >= FFN_SHARD_PARAMS : s->own_hi - s->own_lo < n;
    const float *src = buffer < 0 ? ffn_model_params_const(s->model) : ffn_optim_state(s->optim, (size_t)buffer);
    if (!sharded) {
        if (ffn_comm_rank(s->comm) == root && count) memcpy(out, src + (buffer < 0 ? lo : lo - s->own_lo), count * sizeof *out);
        return FFN_OK;
    }
    if (buffer < 0) src += s->own_lo; /* the owned slice of the flat buffer */
    return ffn_comm_gather_range(s->comm, src, n, lo, lo + count, out, root, s->cfg.bucket_bytes);
}

ffn_status ffn_step_gather_state(ffn_step *s, size_t i, float *full, int root)
{
    return ffn_step_gather_range(s, (int)i, 0, ffn_model_param_count(s->model), full, root);
}

/* ---- pruning ------------------------------------------------------------- */

/* The schedule after `steps` optimizer steps: new masks when due, on every
 * rank alike (same parameters, same selection). */
static void prune_after(ffn_step *s, uint64_t steps)
{
    const ffn_prune_plan *p = &s->cfg.prune;
    if (!s->cfg.pruner || !(p->sparsity > 0)) return;
    uint64_t end = p->end > p->start ? p->end : p->start;
    if (!ffn_prune_due(p->start, end, p->every, steps)) return;
    float *params = ffn_model_params(s->model);
    ffn_pruner_update(s->cfg.pruner, params, ffn_prune_schedule(p->sparsity, p->start, end, steps), p->scope);
    ffn_pruner_apply(s->cfg.pruner, params);
}

void ffn_step_prepare(ffn_step *s, uint64_t steps_done, int fresh)
{
    if (fresh) prune_after(s, steps_done);
    if (s->cfg.pruner) ffn_pruner_apply(s->cfg.pruner, ffn_model_params(s->model));
}

/* ---- micro-batches ---------------------------------------------------------- */

void ffn_step_begin(ffn_step *s, uint64_t step, size_t step_rows)
{
    s->step = step;
    s->scale = 1.0f / (float)step_rows;
    memset(s->sums, 0, sizeof s->sums);
    s->have_grads = 0;
    s->batch_status = FFN_OK;
    s->shard_status = s->worker_status = FFN_OK; /* the worker is idle between steps */
    s->micro = 0;
    if (!s->no_exchange && s->sync) ffn_grad_sync_begin(s->sync, step + 1);
}

static ffn_grad_ready_fn ready_fn(const ffn_step *s, int last)
{
    if (s->no_exchange) return NULL;
    if (s->shard >= FFN_SHARD_GRADS) return shard_ready; /* every micro-batch: the slice accumulates */
    return last ? ffn_grad_sync_ready : NULL;
}

static void *ready_user(ffn_step *s) { return s->shard >= FFN_SHARD_GRADS ? (void *)s : (void *)s->sync; }

/* --shard grads/params, a micro-batch without rows: this rank adds nothing
 * (before_layer zeroes each layer buffer) but makes every collective the others make. */
static void sharded_without_rows(ffn_step *s)
{
    s->without_rows = 1;
    ffn_model_pass_without_rows(s->model, s->no_exchange ? NULL : shard_ready, s);
    s->without_rows = 0;
    s->micro++;
}

/* A rank without rows in the step's last micro-batch still hands the exchange
 * its gradients: those of earlier micro-batches, or zeros (of the trainable
 * tensors, the only ones ever sent). */
static void report_without_rows(ffn_step *s)
{
    if (s->have_grads)
        ffn_model_report_grads(s->model, ready_fn(s, 1), s->sync);
    else
        ffn_model_zero_grads(s->model, ready_fn(s, 1), s->sync);
}

/* This rank has nothing for a micro-batch. */
static void micro_without_rows(ffn_step *s, int last)
{
    if (s->shard >= FFN_SHARD_GRADS)
        sharded_without_rows(s);
    else if (last)
        report_without_rows(s);
}

void ffn_step_micro(ffn_step *s, const ffn_step_batch *b, int last)
{
    if (b->rows == 0) {
        micro_without_rows(s, last);
        return;
    }
    const ffn_step_config *c = &s->cfg;
    /* Dropout's masks from (seed, step, global row ids): the same at any rank count. */
    const float *out = ffn_model_forward_train(s->model, b->x, b->rows, c->seed, s->step, b->row_ids);
    s->sums[SUM_CORRECT] += (double)ffn_count_correct(c->loss, out, b->targets, b->rows, s->out_dim);
    if (c->teacher) {
        const float *soft = ffn_model_forward(c->teacher, b->x, b->rows);
        ffn_distill_sums d = ffn_distill_loss(out, soft, b->targets.labels, b->rows, s->out_dim,
                                              c->distill_temperature, c->distill_alpha, s->scale, s->dout);
        s->sums[SUM_LOSS] += d.loss;
        s->sums[SUM_KL] += d.kl;
    } else {
        s->sums[SUM_LOSS] += ffn_loss_backward(c->loss, out, b->targets, b->rows, s->out_dim, s->scale, s->dout);
    }
    s->sums[SUM_ROWS] += (double)b->rows;
    /* Only the last micro-batch's backward hands gradients to the exchange. */
    /* Sharded grads: each micro-batch's own gradients, summed into the slice. */
    const int sharded = s->shard >= FFN_SHARD_GRADS;
    ffn_model_backward(s->model, b->x, b->rows, s->dout, s->have_grads && !sharded, ready_fn(s, last), ready_user(s));
    s->have_grads = 1;
    s->micro++;
}

void ffn_step_micro_failed(ffn_step *s, ffn_status status, const char *message, int last)
{
    if (s->batch_status == FFN_OK) {
        s->batch_status = status;
        snprintf(s->batch_message, sizeof s->batch_message, "%s", message ? message : "read failed");
        s->sums[SUM_ERROR] = 1;
    }
    micro_without_rows(s, last);
}

/* ---- the update ------------------------------------------------------------ */

/* The first tensor holding a non-finite parameter or gradient, for the error message. */
static void describe_nonfinite(const ffn_model *m, char *out, size_t cap)
{
    for (size_t k = 0; k < ffn_model_tensor_count(m); k++) {
        const ffn_tensor *t = ffn_model_tensor(m, k);
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

/* [lo, hi): the part of tensor t in this rank's slice; 0 when there is none. */
static int owned_part(const ffn_step *s, const ffn_tensor *t, size_t *lo, size_t *hi)
{
    *lo = t->offset > s->own_lo ? t->offset : s->own_lo;
    *hi = t->offset + t->count < s->own_hi ? t->offset + t->count : s->own_hi;
    return *lo < *hi;
}

/* The owned part of trainable tensor t updated; w and g hold the owned range
 * [own_lo, own_hi) from their index 0, and so does copy, the bf16 copy the
 * optimizer writes as it goes (NULL: none; only weights have one). */
static void update_owned(ffn_step *s, float lr, float *w, const float *g, const ffn_tensor *t, uint16_t *copy)
{
    size_t lo, hi;
    if (owned_part(s, t, &lo, &hi))
        ffn_optim_update_bf16(s->optim, lr, w, g, lo - s->own_lo, hi - lo, t->decay, t->ndim == 2 ? copy : NULL);
}

/* sum_in_update: the slice's trainable tensors updated from their gradients
 * summed over the node's segments in rank order (the reduce-scatter's order:
 * the same bits), ((g0 + g1) + g2) + ...: all but the last rank's summed into
 * sum_chunk a chunk at a time, the last one added as the optimizer reads it
 * (two ranks: straight from both segments, in one pass). */
static void update_summed(ffn_step *s, float lr, float *w, uint16_t *copy)
{
    int p;
    const float *const *seg = ffn_grad_sync_node_segments(s->sync, &p);
    const size_t chunk = p > 2 ? sizeof s->sum_chunk / sizeof *s->sum_chunk : SIZE_MAX;
    float *sum = s->sum_chunk;
    for (size_t k = 0; k < ffn_model_tensor_count(s->model); k++) {
        const ffn_tensor *t = ffn_model_tensor(s->model, k);
        size_t lo, hi;
        if (!t->trainable || !owned_part(s, t, &lo, &hi)) continue;
        for (size_t at = lo; at < hi;) {
            const size_t n = hi - at < chunk ? hi - at : chunk;
            const float *first = seg[0] + at;
            if (p > 2) {
                memcpy(sum, first, n * sizeof *sum);
                for (int q = 1; q < p - 1; q++)
                    for (size_t i = 0; i < n; i++) sum[i] += seg[q][at + i];
                first = sum;
            }
            ffn_optim_update_summed(s->optim, lr, w, at - s->own_lo, n, t->decay, first, seg[p - 1] + at,
                                    t->ndim == 2 ? copy : NULL);
            at += n;
        }
    }
}

/* What one optimizer pass reads and writes: the owned parameters w and their
 * gradients g (both indexed from own_lo), and the bf16 copy it keeps current
 * as it goes (NULL: none; indexed as w is). */
typedef struct {
    ffn_step *s;
    float lr;
    float *w, *g;
    uint16_t *copy;
} update_pass;

static update_pass update_begin(ffn_step *s, float lr)
{
    ffn_model *m = s->model;
    /* Before ffn_model_params, which marks the copy stale: only a copy that was
     * current can be kept current chunk by chunk. */
    const int fuse = ffn_model_bf16_current(m) && s->shard == FFN_SHARD_NONE && !s->cfg.pruner;
    float *params = ffn_model_params(m);
    update_pass u = {.s = s, .lr = lr, .w = params + s->own_lo,
                     .g = s->grad_slice ? s->grad_slice : ffn_model_grads(m)};
    release_all(s); /* the parameters are about to change */
    /* The bf16 copy the optimizer writes as it writes each weight (a chunk at
     * a time, in cache), instead of a pass of its own before the next forward
     * reads every weight again: the node-shared one (this rank's slice of it),
     * or the model's own where this rank owns every parameter. */
    uint16_t *copy = s->bf16_shared;
    if (fuse) {
        float *unused;
        void *own_copy;
        ffn_model_page_buffers(m, &unused, &own_copy);
        copy = own_copy;
    }
    u.copy = copy ? copy + s->own_lo : NULL;
    ffn_optim_begin_step(s->optim);
    return u;
}

/* The bf16 copy is current again once every owned parameter is updated. */
static void update_end(ffn_step *s, const update_pass *u)
{
    if (u->copy) ffn_model_bf16_set_current(s->model);
}

/* Per bucket (ffn_grad_done_fn): the trainable tensors' parts in [lo, hi)
 * updated, in pieces with the exchange progressed between them so that the
 * buckets behind keep moving. Element by element the same update as one
 * pass over each tensor. */
static void update_bucket(void *ctx, size_t lo, size_t hi)
{
    enum { PIECE = 1 << 17 }; /* floats: about 0.1 ms of Adam */
    update_pass *u = ctx;
    ffn_step *s = u->s;
    const double t0 = ffn_clock_seconds();
    for (size_t k = 0; k < ffn_model_tensor_count(s->model); k++) {
        const ffn_tensor *t = ffn_model_tensor(s->model, k);
        size_t a, z;
        if (!t->trainable || !owned_part(s, t, &a, &z)) continue;
        if (a < lo) a = lo;
        if (z > hi) z = hi;
        for (; a < z; a += PIECE) {
            const size_t n = z - a < PIECE ? z - a : PIECE;
            ffn_optim_update_bf16(s->optim, u->lr, u->w, u->g, a - s->own_lo, n, t->decay,
                                  t->ndim == 2 ? u->copy : NULL);
            ffn_grad_sync_progress(s->sync);
        }
    }
    s->update_seconds += ffn_clock_seconds() - t0;
}

/* Every rank updates the parameters it owns (all of them, or its ZeRO slice,
 * whose summed gradients the reduce-scatter left in grad_slice); sharded
 * slices are then all-gathered. Collective when sharded. */
static ffn_status update(ffn_step *s, float lr)
{
    ffn_model *m = s->model;
    update_pass u = update_begin(s, lr);
    const size_t own = s->own_hi - s->own_lo;
    float *w = u.w, *g = u.g;
    ffn_pruner *pruner = s->cfg.pruner;
    ffn_status st = FFN_OK;
    /* A pruned weight gets no gradient: it neither counts in the norm nor moves the optimizer state. */
    if (pruner) ffn_pruner_apply_range(pruner, g, s->own_lo, s->own_hi);
    if (s->cfg.clip_norm > 0) {
        double norm = ffn_grad_norm(g, own); /* frozen layers hold zeros */
        if (s->shard >= FFN_SHARD_OPTIMIZER) { /* the global norm from the slices' squared norms */
            double sq = norm * norm;
            if ((st = ffn_comm_sum_doubles(s->comm, &sq, 1)) != FFN_OK) return st;
            norm = sqrt(sq);
        }
        float scale = ffn_clip_scale(norm, s->cfg.clip_norm);
        if (scale != 1.0f) ffn_scale(g, own, scale);
    }
    uint16_t *slice_copy = u.copy;
    /* Trainable tensors only; weight decay where the tensor says (weights, not biases or norms). */
    const size_t nt = ffn_model_tensor_count(m);
    if (s->sum_in_update) { /* no clipping, no pruning (see ffn_step_create) */
        update_summed(s, lr, w, slice_copy);
    } else {
        for (size_t k = 0; k < nt; k++) {
            const ffn_tensor *t = ffn_model_tensor(m, k);
            if (t->trainable) update_owned(s, lr, w, g, t, slice_copy);
        }
    }
    if (pruner) ffn_pruner_apply_range(pruner, w, s->own_lo, s->own_hi); /* pruned weights stay exactly 0 */
    /* Node-shared parameters: nobody reads them for the next forward before
     * every slice is written (nor writes gradients before every segment is read). */
    if (s->params_shared) st = ffn_comm_node_sync(s->comm);
    update_end(s, &u);
    if (s->params_shared) return st;
    /* ZeRO-1/2: every rank gets every slice back, of the trainable tensors only
     * (each run of adjacent ones in one go; fixed tensors never changed). */
    const int gather = s->shard == FFN_SHARD_OPTIMIZER || s->shard == FFN_SHARD_GRADS;
    for (size_t k = 0; gather && k < nt && st == FFN_OK;) {
        const ffn_tensor *t = ffn_model_tensor(m, k++);
        if (!t->trainable) continue;
        size_t lo = t->offset, hi = t->offset + t->count;
        for (; k < nt && ffn_model_tensor(m, k)->trainable && ffn_model_tensor(m, k)->offset == hi; k++)
            hi += ffn_model_tensor(m, k)->count;
        st = ffn_comm_allgather_slices(s->comm, u.w - s->own_lo, ffn_model_param_count(m), lo, hi,
                                       s->cfg.bucket_bytes);
    }
    return st;
}

ffn_status ffn_step_finish(ffn_step *s, uint64_t step, uint64_t epoch, float lr, int stop_requested,
                           ffn_step_stats *stats)
{
    s->sums[SUM_STOP] = stop_requested != 0;
    /* The worker's collectives done before this thread's (one MPI caller at a time). */
    if (s->worker) {
        ffn_worker_drain(s->worker);
        s->grads_busy[0] = s->grads_busy[1] = 0;
        if (s->shard_status == FFN_OK) s->shard_status = s->worker_status;
    }
    /* The gradients, and the step's sums riding on the same exchange; or,
     * updating per bucket, every bucket started and the sums first, on their
     * own (they say whether there is an update at all). */
    const int per_bucket = s->update_per_bucket && !s->no_exchange;
    ffn_status st;
    if (per_bucket) {
        st = ffn_grad_sync_flush_sum(s->sync, s->sums, SUM_COUNT);
    } else {
        st = s->no_exchange || !s->sync ? ffn_comm_sum_doubles(s->comm, s->sums, SUM_COUNT)
                                        : ffn_grad_sync_finish_sum(s->sync, s->sums, SUM_COUNT);
    }
    if (st == FFN_OK && s->shard >= FFN_SHARD_GRADS) st = ffn_comm_agree(s->comm, s->shard_status);
    if (st != FFN_OK) return st;
    *stats = (ffn_step_stats){.loss_sum = s->sums[SUM_LOSS], .correct = s->sums[SUM_CORRECT],
                              .rows = s->sums[SUM_ROWS], .kl_sum = s->sums[SUM_KL],
                              .stop_requested = s->sums[SUM_STOP] > 0};
    /* No update this step: updating per bucket, the exchange is completed all
     * the same (nothing left in flight; the gradients summed for the message). */
    if (s->sums[SUM_ERROR] > 0) {
        if (per_bucket && (st = ffn_grad_sync_finish_each(s->sync, NULL, NULL)) != FFN_OK) return st;
        if (s->batch_status != FFN_OK) ffn_fail(s->batch_status, "%s", s->batch_message);
        return ffn_comm_agree(s->comm, s->batch_status);
    }
    double loss = stats->loss_sum / stats->rows;
    if (!isfinite(loss)) {
        if (per_bucket && (st = ffn_grad_sync_finish_each(s->sync, NULL, NULL)) != FFN_OK) return st;
        char where[128];
        describe_nonfinite(s->model, where, sizeof where);
        return ffn_fail(FFN_ERR_NUMERIC,
                        "step %llu (epoch %llu): training loss is %s%s; the last checkpoint is kept; "
                        "lower --lr or set --clip-norm",
                        (unsigned long long)step + 1, (unsigned long long)epoch + 1, isnan(loss) ? "NaN" : "infinite",
                        where);
    }
    if (per_bucket) { /* update_bucket counts its own time, not the waits between buckets */
        update_pass u = update_begin(s, lr);
        st = ffn_grad_sync_finish_each(s->sync, update_bucket, &u);
        update_end(s, &u);
    } else {
        const double t0 = ffn_clock_seconds();
        st = update(s, lr);
        s->update_seconds += ffn_clock_seconds() - t0;
    }
    if (st != FFN_OK) return st;
    prune_after(s, step + 1);
    return FFN_OK;
}
