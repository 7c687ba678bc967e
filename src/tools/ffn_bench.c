/* ffn-bench: the micro measures behind launch/bench.sh (issue 7).
 *
 *   ffn-bench [--quick] [--threads N]
 *       the suite: training-step speed of the benchmark models against the
 *       sgemm-bound time of the same shapes, the gradient exchange against a
 *       bare MPI_Allreduce (under mpirun -np 2), checkpoint writes against a raw
 *       fsync'd write; prints one table row per measure
 *   ffn-bench step --model SPEC --input D --loss L --batch B [--threads N]
 *                  [--data FILE] [--seconds S] [--bucket-mb X] [--precision fp32|bf16]
 *                  [--gemm auto|openblas|onednn] [--grad-dtype fp32|bf16] [--shard MODE]
 *       one model: samples/s, GFLOP/s (6 x params x samples), sgemm bound and,
 *       with more than one rank, the gradient exchange (alone, beside a bare
 *       MPI_Allreduce and the ring's traffic with no sums: the link's floor)
 *   ffn-bench ckpt --model SPEC --input D [--dir DIR]
 *       checkpoint write MB/s (Adam state included) vs raw write + fsync
 *   ffn-bench train FFN-TRAIN-FLAGS...
 *       exactly ffn-train's run (ffn_train_run), then the peak RSS of every
 *       rank against the bytes the run must hold
 *
 * Every line that bench.sh reads starts with "RESULT name key=value ...".
 * Rates are the median of three timed repeats; under MPI, a rank's figure is
 * the slowest rank's (every rank waits for it each step). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "../clock.h" /* internal: the tools share the library's clocks */
#include "../gemm.h"  /* internal: the bf16 bound runs on the library's GEMM engine */
#include "ffn/act.h"
#include "ffn/ckpt.h"
#include "ffn/comm.h"
#include "ffn/config.h"
#include "ffn/data.h"
#include "ffn/dense.h"
#include "ffn/loader.h"
#include "ffn/loss.h"
#include "ffn/mem.h"
#include "ffn/model.h"
#include "ffn/optim.h"
#include "ffn/rng.h"
#include "ffn/sampler.h"
#include "ffn/step.h"
#include "ffn/train.h"
#include "ffn/version.h"

static ffn_comm *comm;
static int rank, nranks;

static double max_over_ranks(double v)
{
    double out = v;
    if (nranks > 1) MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return out;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median3(double a, double b, double c)
{
    double v[3] = {a, b, c};
    qsort(v, 3, sizeof v[0], cmp_double);
    return v[1];
}

/* Peak resident set of this process, bytes. */
static double peak_rss_bytes(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_maxrss * 1024.0;
}

static void die(const char *what)
{
    if (rank == 0) fprintf(stderr, "ffn-bench: error: %s%s%s\n", what, *ffn_last_error() ? ": " : "",
                           ffn_last_error());
    ffn_comm_abort(comm, 1);
}

/* ---- timing a repeated action on every rank ------------------------------- */

typedef void (*action_fn)(void *ctx);

/* Seconds per call of fn: the fastest of five repeats, each about `seconds`/5
 * long (at least `min_calls` calls), all ranks running together; the slowest
 * rank's time counts. Every rank makes the same number of calls (fn may be
 * collective). The fastest repeat is the steadiest measure of the code on a
 * shared machine (timeit's advice); bench_torch.py does the same. The median
 * repeat is kept in g_median. A measure and its bound take turns
 * (time_side_by_side). */
enum { REPEATS = 5 };
static double g_median; /* the last time_per_call's median repeat */
static double g_cpu;    /* ... and its least process CPU time a call (this rank) */
static int g_quick;     /* --quick: one warm-up call, one call a repeat at least */

/* One measure in progress: fn's calls per repeat, and each repeat's time. */
typedef struct {
    action_fn fn;
    void *ctx;
    long calls;
    double rep[REPEATS];
    double cpu; /* the least process CPU time a call (this rank) */
} timing;

static void timing_start(timing *t, action_fn fn, void *ctx, double seconds, int min_calls)
{
    *t = (timing){.fn = fn, .ctx = ctx, .cpu = INFINITY};
    fn(ctx); /* warm up: first touch, BLAS buffers */
    if (!g_quick) fn(ctx);
    if (g_quick) min_calls = 1;
    double t0 = ffn_clock_seconds();
    fn(ctx);
    double one = max_over_ranks(ffn_clock_seconds() - t0);
    double per = one > 0 ? seconds / REPEATS / one : min_calls;
    t->calls = per < min_calls ? min_calls : per > 1e6 ? 1000000 : (long)per;
    if (nranks > 1) MPI_Bcast(&t->calls, 1, MPI_LONG, 0, MPI_COMM_WORLD);
}

static void timing_repeat(timing *t, int r)
{
    if (nranks > 1) MPI_Barrier(MPI_COMM_WORLD);
    double s = ffn_clock_seconds(), c = ffn_clock_cpu_seconds();
    for (long i = 0; i < t->calls; i++) t->fn(t->ctx);
    double cpu = (ffn_clock_cpu_seconds() - c) / (double)t->calls;
    t->rep[r] = max_over_ranks((ffn_clock_seconds() - s) / (double)t->calls);
    if (cpu < t->cpu) t->cpu = cpu;
}

/* The fastest repeat; g_median and g_cpu set from this measure. */
static double timing_best(timing *t)
{
    qsort(t->rep, REPEATS, sizeof t->rep[0], cmp_double);
    g_median = t->rep[REPEATS / 2];
    g_cpu = t->cpu;
    return t->rep[0];
}

static double time_per_call(action_fn fn, void *ctx, double seconds, int min_calls)
{
    timing t;
    timing_start(&t, fn, ctx, seconds, min_calls);
    for (int r = 0; r < REPEATS; r++) timing_repeat(&t, r);
    return timing_best(&t);
}

/* Two measures side by side: their repeats alternate (a b, b a, a b ...), so
 * that a ratio of the two is taken under the same machine. A shared host's
 * memory bandwidth and clock drift over seconds; measured one after the other,
 * the bf16 step's ratio to its bound swung 0.74-0.86 between runs. */
static void time_side_by_side(timing *a, timing *b)
{
    for (int r = 0; r < REPEATS; r++) {
        timing *first = r % 2 ? b : a, *second = r % 2 ? a : b;
        /* One untimed call each time the measure changes: the other's
         * buffers and GEMM plans have just been through the caches. */
        first->fn(first->ctx);
        timing_repeat(first, r);
        second->fn(second->ctx);
        timing_repeat(second, r);
    }
}

/* ---- the training step: the library's own (ffn/step.h), one micro-batch a step ---- */

typedef struct {
    ffn_model *model;
    ffn_step *step;
    ffn_loss loss;
    size_t input, out_dim, local, global;
    size_t pool_batches, at;   /* in-memory batches, cycled */
    float *x, *values;         /* [pool_batches * local, input], [.., out_dim] */
    int32_t *labels;           /* [pool_batches * local] */
    double loss_sum;
    long steps;                /* train_step calls so far */
    /* sgemm-bound buffers */
    float *ga, *gb, *gc;       /* [local, widest], [largest weight], [local, widest] */
    ffn_gemm_engine *gemm;     /* bf16: the bound's engine (every operand read from its bf16 copy) */
} step_ctx;

static void train_step(void *p)
{
    step_ctx *s = p;
    size_t b = s->at++ % s->pool_batches;
    ffn_step_batch mb = {s->x + b * s->local * s->input,
                         {s->labels ? s->labels + b * s->local : NULL,
                          s->values ? s->values + b * s->local * s->out_dim : NULL},
                         NULL, s->local};
    ffn_step_stats stats;
    ffn_step_begin(s->step, s->at, s->global);
    ffn_step_micro(s->step, &mb, 1);
    if (ffn_step_finish(s->step, s->at, 0, 1e-4f, 0, &stats) != FFN_OK) die("training step");
    s->loss_sum += stats.loss_sum;
    s->steps++;
}

/* The gradient exchange alone, on gradients already computed: what the step
 * pays for it when nothing of it overlaps backward. */
static void exchange_alone(void *p)
{
    step_ctx *s = p;
    ffn_grad_sync *sync = ffn_step_grad_sync(s->step);
    ffn_grad_sync_begin(sync, 0);
    ffn_model_report_grads(s->model, ffn_grad_sync_ready, sync);
    if (ffn_grad_sync_finish(sync) != FFN_OK) die("gradient exchange");
}

/* The GEMMs one training step cannot avoid, on the same shapes and with the
 * same transposes as dense.c: forward x·Wᵀ per layer, dW = dzᵀ·x per layer,
 * dx = dz·W for every layer but the first. In bf16 every operand is already
 * bf16 (the bound of the products alone, no conversion). */
static void sgemm_step(void *p)
{
    step_ctx *s = p;
    size_t n = s->local;
    for (size_t i = 0; i < ffn_model_layer_count(s->model); i++) {
        const ffn_layer *l = ffn_model_layer_const(s->model, i);
        size_t in = l->in, out = l->out, b = n;
        ffn_gemm(s->gemm, 0, 1, b, out, in, 1.0f, s->ga, in, s->gb, in, 0.0f, s->gc, out);
        ffn_gemm(s->gemm, 1, 0, out, in, b, 1.0f, s->gc, out, s->ga, in, 0.0f, s->gb, in);
        if (i > 0) ffn_gemm(s->gemm, 0, 0, b, in, out, 1.0f, s->gc, out, s->gb, in, 0.0f, s->ga, in);
    }
}

typedef struct {
    float *buf;
    size_t n, bucket;
} allreduce_ctx;

/* A bare blocking MPI_Allreduce of the gradient bytes, in buckets as ffn's
 * exchange sends them (one call above 32 MiB is slower in Open MPI). */
static void bare_allreduce_buckets(void *p)
{
    allreduce_ctx *a = p;
    for (size_t done = 0; done < a->n;) {
        size_t len = a->n - done < a->bucket ? a->n - done : a->bucket;
        MPI_Allreduce(MPI_IN_PLACE, a->buf + done, (int)len, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        done += len;
    }
}

/* The ring's traffic with nothing else: every rank sends 2(N-1)/N of the
 * gradient bytes to the next rank and receives as much from the one before,
 * in bucket-sized messages all in flight at once, no sums, no dependencies
 * between them. What the link, the transport and the ranks' cores can move:
 * the floor of any ring or reduce-scatter + all-gather on this network, where
 * S/B is the floor of the wire. Receives land in `scratch` (`wave` floats, at
 * most 256 MiB: a model that barely fits is not doubled), in waves where the
 * bytes exceed it. */
typedef struct {
    float *buf, *scratch;
    size_t n, bucket, wave;
    MPI_Request *requests; /* 2 per message of a wave */
} ring_traffic_ctx;

static void ring_traffic(void *p)
{
    ring_traffic_ctx *t = p;
    int next = (rank + 1) % nranks, prev = (rank + nranks - 1) % nranks;
    size_t total = 2 * (size_t)(nranks - 1) * t->n / (size_t)nranks;
    for (size_t sent = 0; sent < total;) { /* one wave: at most t->wave floats */
        size_t wave = total - sent < t->wave ? total - sent : t->wave;
        int k = 0;
        for (size_t at = 0; at < wave; at += t->bucket) {
            int len = (int)(wave - at < t->bucket ? wave - at : t->bucket);
            MPI_Irecv(t->scratch + at, len, MPI_FLOAT, prev, 0, MPI_COMM_WORLD, &t->requests[k++]);
            MPI_Isend(t->buf + at, len, MPI_FLOAT, next, 0, MPI_COMM_WORLD, &t->requests[k++]);
        }
        MPI_Waitall(k, t->requests, MPI_STATUSES_IGNORE);
        sent += wave;
    }
}

static void bare_allreduce_one(void *p)
{
    allreduce_ctx *a = p;
    MPI_Allreduce(MPI_IN_PLACE, a->buf, (int)a->n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

typedef struct {
    const char *name, *model, *loss, *data;
    size_t input, batch;
    int threads;
    double seconds, bucket_mb;
    ffn_precision precision;
    ffn_gemm_backend gemm;
    int grad_bf16; /* --grad-dtype bf16 */
    ffn_shard shard; /* --shard MODE */
} step_args;

/* Loads the in-memory pool: this rank's share of the first rows of --data,
 * or synthetic values (uniform features, random labels / normal targets). */
static void fill_pool(step_ctx *s, const step_args *a)
{
    size_t rows = s->pool_batches * s->local;
    if (a->data) {
        ffn_dataset *ds;
        if (ffn_dataset_open(&ds, a->data) != FFN_OK) die("--data");
        const ffn_dataset_info *info = ffn_dataset_get_info(ds);
        if (info->features != s->input) die("--data: feature count differs from --input");
        size_t start = (size_t)rank * rows; /* fits: see run_step */
        if (ffn_dataset_read_range(ds, start, rows, s->x, s->labels, s->values) != FFN_OK) die("--data");
        ffn_dataset_close(ds);
        return;
    }
    ffn_rng rng = ffn_rng_make(7, 1000 + (uint64_t)rank);
    ffn_rng_fill_uniform(&rng, s->x, rows * s->input, 0.0f, 1.0f);
    if (s->labels)
        for (size_t i = 0; i < rows; i++) s->labels[i] = (int32_t)ffn_rng_below(&rng, s->out_dim);
    else
        ffn_rng_fill_normal(&rng, s->values, rows * s->out_dim, 0.0f, 1.0f);
}

typedef struct {
    double params, step_s, samples_s, gflops, bound_s, bound_gflops;
    double nosync_s, bare_s, wait_s, median_s, cpu_s, bound_cpu_s, exchange_s, update_s, traffic_s;
} step_result;

static step_result run_step(const step_args *a, int quiet)
{
    step_result r;
    memset(&r, 0, sizeof r);
    ffn_gemm_set_threads(a->threads);
    step_ctx s;
    memset(&s, 0, sizeof s);
    s.loss = (ffn_loss)ffn_loss_from_name(a->loss);
    if ((int)s.loss < 0) {
        char list[FFN_NAMES_LIST_MAX], what[FFN_NAMES_LIST_MAX + 32];
        snprintf(what, sizeof what, "--loss: expected %s", ffn_names_list(&ffn_loss_names, list, sizeof list));
        die(what);
    }
    if (ffn_model_create_from_text(&s.model, a->model, a->input) != FFN_OK) die("--model");
    ffn_model_init_params(s.model, 1);
    if (ffn_model_set_compute(s.model, a->precision, a->gemm) != FFN_OK) die(ffn_last_error());
    s.input = a->input;
    s.out_dim = ffn_model_output_dim(s.model);
    s.global = a->batch;
    s.local = ffn_sampler_max_local(a->batch, nranks);
    if (a->batch % (size_t)nranks) die("--batch must be a multiple of the rank count");
    /* Up to 16 batches (64 MiB at most) cycled from memory, this rank's own rows. */
    size_t per_batch = s.local * a->input * sizeof(float);
    s.pool_batches = ((size_t)64 << 20) / per_batch;
    if (s.pool_batches > 16) s.pool_batches = 16;
    if (a->data) {
        ffn_dataset *ds;
        if (ffn_dataset_open(&ds, a->data) != FFN_OK) die("--data");
        size_t fit = ffn_dataset_get_info(ds)->rows / (s.local * (size_t)nranks);
        ffn_dataset_close(ds);
        if (fit < s.pool_batches) s.pool_batches = fit;
        if (s.pool_batches == 0) die("--data: fewer rows than one global batch");
    }
    if (s.pool_batches == 0) s.pool_batches = 1;
    if (ffn_model_reserve(s.model, s.local) != FFN_OK) die("reserve");
    size_t rows = s.pool_batches * s.local;
    s.x = ffn_alloc(rows, a->input * sizeof(float));
    if (s.loss == FFN_LOSS_SOFTMAX_CE)
        s.labels = ffn_alloc(rows, sizeof(int32_t));
    else
        s.values = ffn_alloc(rows, s.out_dim * sizeof(float));
    if (!s.x || (!s.labels && !s.values)) die("out of memory");
    fill_pool(&s, a);
    /* As ffn-train runs it: Adam, and on one node the gradients in node-shared memory. */
    ffn_step_config sc = {.loss = s.loss, .optim = ffn_optim_defaults(FFN_OPT_ADAM), .grad_bf16 = a->grad_bf16,
                          .shard = a->shard,
                          .bucket_bytes = (size_t)(a->bucket_mb * 1048576.0), .max_rows = s.local, .seed = 1};
    if (ffn_step_create(&s.step, s.model, comm, &sc) != FFN_OK) die("training step");
    const size_t bucket_floats = sc.bucket_bytes / sizeof(float) ? sc.bucket_bytes / sizeof(float) : 1;
    ffn_grad_sync *sync = ffn_step_grad_sync(s.step);
    r.params = (double)ffn_model_param_count(s.model);
    double flops = 6.0 * r.params * (double)s.local;

    /* sgemm bound: the step's unavoidable GEMMs, every rank at once. */
    size_t widest = a->input;
    for (size_t i = 0; i < ffn_model_layer_count(s.model); i++)
        if (ffn_model_layer(s.model, i)->out > widest) widest = ffn_model_layer(s.model, i)->out;
    size_t wmax = 0;
    for (size_t i = 0; i < ffn_model_layer_count(s.model); i++)
        if (ffn_model_layer(s.model, i)->weight_count > wmax) wmax = ffn_model_layer(s.model, i)->weight_count;
    /* One arena [ga | gb | gc], so that in bf16 one copy holds every operand. */
    size_t arena = 2 * s.local * widest + wmax;
    float *bound_buf = ffn_alloc_floats(arena);
    ffn_bf16 *bound_bf16 = a->precision == FFN_PRECISION_BF16 ? ffn_alloc(arena, sizeof(ffn_bf16)) : NULL;
    if (!bound_buf || (a->precision == FFN_PRECISION_BF16 && !bound_bf16)) die("out of memory");
    s.ga = bound_buf;
    s.gb = s.ga + s.local * widest;
    s.gc = s.gb + wmax;
    ffn_rng rng = ffn_rng_make(3, 77);
    ffn_rng_fill_uniform(&rng, s.ga, s.local * widest, -1, 1);
    ffn_rng_fill_uniform(&rng, s.gb, wmax, -0.01f, 0.01f);
    if (a->precision != FFN_PRECISION_FP32 || ffn_gemm_resolve(a->precision, a->gemm) != FFN_GEMM_OPENBLAS)
        if (ffn_gemm_create(&s.gemm, a->precision, a->gemm) != FFN_OK) die(ffn_last_error());
    if (bound_bf16) {
        ffn_bf16_from_floats(bound_bf16, bound_buf, arena);
        ffn_gemm_set_bf16_copy(s.gemm, bound_buf, bound_bf16, arena);
    }
    /* The gradient wait: its mean over every step timed (the slower rank's); a
     * few steps alone swing with the network's and the other rank's timing. */
    double w0 = nranks > 1 ? ffn_step_comm_wait_seconds(s.step) : 0, u0 = ffn_step_update_seconds(s.step);
    long steps0 = s.steps;
    timing bound_t, step_t;
    timing_start(&bound_t, sgemm_step, &s, a->seconds * 0.5, 3);
    timing_start(&step_t, train_step, &s, a->seconds, 3);
    time_side_by_side(&bound_t, &step_t);
    r.bound_s = timing_best(&bound_t);
    r.bound_cpu_s = g_cpu;
    r.bound_gflops = flops / r.bound_s / 1e9;
    r.step_s = timing_best(&step_t);
    r.median_s = g_median;
    r.cpu_s = g_cpu;
    r.update_s = max_over_ranks((ffn_step_update_seconds(s.step) - u0) / (double)(s.steps - steps0));
    r.samples_s = (double)s.global / r.step_s;
    r.gflops = flops / r.step_s / 1e9;
    if (!isfinite(s.loss_sum)) die("the benchmark's training loss is not finite");

    if (nranks > 1) {
        r.wait_s = max_over_ranks((ffn_step_comm_wait_seconds(s.step) - w0) / (double)(s.steps - steps0));
        ffn_step_set_exchange(s.step, 0);
        r.nosync_s = time_per_call(train_step, &s, a->seconds * 0.5, 3);
        ffn_step_set_exchange(s.step, 1);
    }
    if (nranks > 1 && !sync) { /* --shard grads/params: no all-reduce exchange to time alone */
        r.exchange_s = r.bare_s = NAN;
    } else if (nranks > 1) {
        r.exchange_s = time_per_call(exchange_alone, &s, a->seconds * 0.5, 3);
        allreduce_ctx ac = {ffn_model_grads(s.model), ffn_model_param_count(s.model), bucket_floats};
        double bucketed = time_per_call(bare_allreduce_buckets, &ac, a->seconds * 0.5, 3);
        double one = ac.n <= (size_t)1 << 30 ? time_per_call(bare_allreduce_one, &ac, a->seconds * 0.5, 3)
                                             : bucketed;
        r.bare_s = bucketed < one ? bucketed : one; /* the faster is the baseline */
    }
    r.traffic_s = NAN;
    if (nranks > 1) {
        size_t n = ffn_model_param_count(s.model), wave = n < ((size_t)1 << 26) ? n : (size_t)1 << 26;
        ring_traffic_ctx t = {ffn_model_grads(s.model), ffn_alloc_floats(wave), n, bucket_floats, wave,
                              malloc(2 * ((wave + bucket_floats - 1) / bucket_floats) * sizeof(MPI_Request))};
        if (!t.scratch || !t.requests) die("out of memory");
        r.traffic_s = time_per_call(ring_traffic, &t, a->seconds * 0.5, 3);
        ffn_free(t.scratch);
        free(t.requests);
    }

    if (rank == 0 && !quiet) {
        printf("RESULT step name=%s model=%s input=%zu loss=%s batch=%zu ranks=%d threads=%d "
               "params=%.0f step_ms=%.4f median_step_ms=%.4f samples_per_s=%.1f gflops=%.3f sgemm_bound_ms=%.4f "
               "sgemm_gflops=%.3f of_bound=%.4f update_ms=%.4f",
               a->name, a->model, a->input, a->loss, a->batch, nranks, a->threads, r.params,
               1e3 * r.step_s, 1e3 * r.median_s, r.samples_s, r.gflops, 1e3 * r.bound_s, r.bound_gflops,
               r.bound_s / r.step_s, 1e3 * r.update_s);
        if (nranks > 1)
            /* exchange: on its own; exposed: what it adds to the step; hidden: the
             * part of it that ran while backward did. */
            printf(" compute_only_ms=%.4f exchange_ms=%.4f exposed_ms=%.4f bare_allreduce_ms=%.4f ring_traffic_ms=%.4f "
                   "wait_ms=%.4f exchange_vs_bare=%.4f hidden=%.4f grad_mb=%.3f exchange=%s",
                   1e3 * r.nosync_s, 1e3 * r.exchange_s, 1e3 * (r.step_s - r.nosync_s), 1e3 * r.bare_s, 1e3 * r.traffic_s,
                   1e3 * r.wait_s, r.exchange_s / r.bare_s,
                   fmax(0.0, fmin(1.0, 1.0 - (r.step_s - r.nosync_s) / r.exchange_s)),
                   r.params * 4.0 / 1048576.0, sync ? ffn_grad_sync_method(sync) : "sharded");
        char gemm[160];
        ffn_model_gemm_name(s.model, gemm, sizeof gemm);
        for (char *c = gemm; *c; c++)
            if (*c == ' ') *c = '_'; /* one key=value token */
        printf(" cpu_step_ms=%.4f cpu_bound_ms=%.4f kernels=%s corename=%s precision=%s gemm=%s shard=%s\n",
               1e3 * r.cpu_s, 1e3 * r.bound_cpu_s, ffn_act_kernels(), openblas_get_corename(),
               ffn_names_name(&ffn_precision_names, (int)a->precision), gemm,
               ffn_names_name(&ffn_shard_names, (int)a->shard));
        fflush(stdout);
    }
    ffn_gemm_free(s.gemm);
    ffn_free(bound_bf16);
    ffn_free(bound_buf);
    ffn_free(s.x);
    ffn_free(s.labels);
    ffn_free(s.values);
    ffn_step_free(s.step);
    ffn_model_free(s.model);
    return r;
}

/* ---- checkpoint writes ------------------------------------------------------ */

typedef struct {
    double bytes, ckpt_mbs, raw_mbs;
} ckpt_result;

static double raw_write(const char *path, size_t bytes)
{
    size_t chunk = (size_t)4 << 20;
    char *buf = ffn_alloc(chunk, 1);
    if (!buf) die("out of memory");
    for (size_t i = 0; i < chunk; i++) buf[i] = (char)(i * 2654435761u >> 13);
    double t0 = ffn_clock_seconds();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("raw write: cannot open");
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < chunk ? bytes - done : chunk;
        ssize_t w = write(fd, buf, n);
        if (w <= 0) die("raw write failed");
        done += (size_t)w;
    }
    if (fsync(fd) != 0) die("raw fsync failed");
    close(fd);
    double t = ffn_clock_seconds() - t0;
    unlink(path);
    ffn_free(buf);
    return t;
}

static ckpt_result run_ckpt(const char *model_spec, size_t input, const char *dir, int repeats, int quiet)
{
    ckpt_result r = {0, 0, 0};
    if (rank != 0) return r;
    ffn_model *m;
    if (ffn_model_create_from_text(&m, model_spec, input) != FFN_OK) die("--model");
    ffn_model_init_params(m, 1);
    ffn_optim_config oc = ffn_optim_defaults(FFN_OPT_ADAM);
    size_t P = ffn_model_param_count(m);
    ffn_optim *opt = ffn_optim_create(&oc, P);
    if (!opt) die("optimizer");
    ffn_rng rng = ffn_rng_make(5, 5);
    for (size_t i = 0; i < ffn_optim_state_count(opt); i++)
        ffn_rng_fill_uniform(&rng, ffn_optim_state(opt, i), P, 0, 1e-3f);
    size_t nl = ffn_model_layer_count(m);
    size_t *lin = calloc(nl, sizeof *lin), *lout = calloc(nl, sizeof *lout);
    for (size_t i = 0; i < nl; i++) {
        lin[i] = ffn_model_layer(m, i)->in;
        lout[i] = ffn_model_layer(m, i)->out;
    }
    char *spec = ffn_model_spec_text(m);
    ffn_checkpoint c = {.format_version = FFN_CKPT_FORMAT_VERSION, .model_spec = spec, .input_dim = input,
                        .loss = "mse", .config_json = "{}", .layer_count = nl, .layer_in = lin,
                        .layer_out = lout, .param_count = P, .params = ffn_model_params(m),
                        .optimizer = (char *)ffn_opt_name(FFN_OPT_ADAM), .optimizer_steps = 1, .state_count = ffn_optim_state_count(opt),
                        .step = 1, .epoch = 0, .step_in_epoch = 1, .seed = 1, .model = m};
    for (size_t i = 0; i < c.state_count; i++) {
        c.state_names[i] = (char *)ffn_optim_state_name(opt, i);
        c.state[i] = ffn_optim_state(opt, i);
    }
    char path[4096], raw[4096];
    snprintf(path, sizeof path, "%s/ffn-bench-ckpt-%ld.h5", dir, (long)getpid());
    snprintf(raw, sizeof raw, "%s/ffn-bench-raw-%ld.bin", dir, (long)getpid());
    double tc[3] = {0, 0, 0}, tr[3] = {0, 0, 0};
    struct stat stt;
    for (int i = 0; i < repeats && i < 3; i++) {
        double t0 = ffn_clock_seconds();
        if (ffn_checkpoint_save(&c, path) != FFN_OK) die("checkpoint save");
        tc[i] = ffn_clock_seconds() - t0;
        if (stat(path, &stt) != 0) die("checkpoint stat");
        r.bytes = (double)stt.st_size;
        unlink(path);
        tr[i] = raw_write(raw, (size_t)stt.st_size);
    }
    double c_s = repeats >= 3 ? median3(tc[0], tc[1], tc[2]) : tc[0];
    double r_s = repeats >= 3 ? median3(tr[0], tr[1], tr[2]) : tr[0];
    r.ckpt_mbs = r.bytes / 1048576.0 / c_s;
    r.raw_mbs = r.bytes / 1048576.0 / r_s;
    if (!quiet)
        printf("RESULT ckpt model=%s input=%zu bytes=%.0f ckpt_ms=%.2f ckpt_mb_s=%.1f raw_ms=%.2f raw_mb_s=%.1f "
               "ratio=%.4f\n",
               model_spec, input, r.bytes, 1e3 * c_s, r.ckpt_mbs, 1e3 * r_s, r.raw_mbs, r.ckpt_mbs / r.raw_mbs);
    free(spec);
    free(lin);
    free(lout);
    ffn_optim_free(opt);
    ffn_model_free(m);
    return r;
}

/* ---- ffn-train's run, with its memory accounted ------------------------------ */

static double vm_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = atof(line + 6);
    fclose(f);
    return kb * 1024.0;
}

static int run_train(int argc, char **argv)
{
    double base_rss = vm_rss_bytes(); /* MPI and the libraries, before any ffn allocation */
    ffn_train_config cfg;
    ffn_config_defaults(&cfg);
    int help = 0;
    ffn_status st = ffn_config_parse(&cfg, argc, argv, &help);
    if (st == FFN_OK) st = ffn_config_validate(&cfg);
    if (st != FFN_OK || help) {
        if (rank == 0) fprintf(stderr, "ffn-bench train: %s\n", help ? "takes ffn-train's flags" : ffn_last_error());
        return 2;
    }
    ffn_train_result res;
    st = ffn_train_run(&cfg, comm, &res);
    if (st != FFN_OK) {
        if (rank == 0) fprintf(stderr, "ffn-bench train: error: %s\n", ffn_last_error());
        return 1;
    }
    if (rank == 0 && res.has_final)
        printf("%s: loss %.4f accuracy %.4f\n", res.final_split, res.final_loss, res.final_accuracy);
    double rss = max_over_ranks(peak_rss_bytes());
    double base = max_over_ranks(base_rss);

    /* What the run has to hold (see train.c's setup and the loader). */
    ffn_dataset *ds;
    if (ffn_dataset_open(&ds, cfg.train_path) != FFN_OK) die("--train");
    ffn_dataset_info info = *ffn_dataset_get_info(ds);
    ffn_dataset_close(ds);
    ffn_model *m;
    if (ffn_model_create_from_text(&m, cfg.model_spec ? cfg.model_spec : FFN_DEFAULT_MODEL_SPEC,
                                   info.features) != FFN_OK)
        die("--model");
    double P = (double)ffn_model_param_count(m);
    ffn_optim_config oc = ffn_config_optim(&cfg);
    double nstate = (double)ffn_optim_state_buffers(&oc);
    double state = P * 4.0 * (2 + nstate);
    size_t local = ffn_sampler_max_local(cfg.batch_size, nranks);
    size_t reserve = local > cfg.eval_batch_size ? local : cfg.eval_batch_size;
    double act = 0, widest = (double)info.features;
    for (size_t i = 0; i < ffn_model_layer_count(m); i++) {
        const ffn_layer *l = ffn_model_layer(m, i);
        act += (double)reserve * (double)l->out * 4.0 *
               (ffn_act_backward_needs_z(l->spec.act, l->spec.act_param) ? 2 : 1);
        if ((double)l->out > widest) widest = (double)l->out;
    }
    act += 2.0 * (double)reserve * widest * 4.0 + (double)local * (double)ffn_model_output_dim(m) * 4.0;
    double tcols = info.has_labels ? 1 : (double)info.target_cols;
    /* The loader holds the whole dataset when it fits its budget. */
    ffn_loader_config lc = {.local_ranks = ffn_comm_local_size(comm)};
    double raw = (double)info.rows * ((double)info.features * (info.x_is_uint8 ? 1.0 : 4.0) + tcols * 4.0);
    size_t budget;
    if (ffn_loader_cache_budget(&lc, &budget) != FFN_OK) die("the dataset budget");
    double held = raw <= (double)budget ? raw : 0.0;
    double data = held + 2.0 * (double)local * ((double)info.features * 4.0 + tcols * 4.0 + 8.0) /* loader slots */
                  + (double)cfg.eval_batch_size * ((double)info.features + (double)ffn_model_output_dim(m) + 1) * 4.0
                  + (double)info.rows * 8.0; /* the sampler's epoch order */
    ffn_model_free(m);
    if (rank == 0)
        printf("RESULT train ranks=%d samples_per_s=%.1f seconds=%.3f steps=%llu data_wait=%.4f "
               "grad_wait=%.4f peak_rss_mb=%.2f runtime_rss_mb=%.2f state_mb=%.2f activations_mb=%.2f "
               "data_mb=%.2f dataset_held_mb=%.2f accounted_mb=%.2f rss_ratio=%.4f rss_over_runtime_ratio=%.4f\n",
               nranks, res.samples_per_second, res.seconds, (unsigned long long)res.steps,
               res.data_wait_fraction, res.comm_wait_fraction, rss / 1048576.0, base / 1048576.0,
               state / 1048576.0, act / 1048576.0, data / 1048576.0, held / 1048576.0, (state + act + data) / 1048576.0,
               rss / (state + act + data), (rss - base) / (state + act + data));
    return 0;
}

/* ---- memory: the bandwidth an optimizer update can have -------------------------- */

typedef struct {
    float *w, *m, *v, *g;
    uint16_t *copy;
    size_t n;
    ffn_optim *adam;
} memory_ctx;

/* The least traffic of an Adam update with fp32 master weights and moments
 * that writes a bf16 copy, the gradient already in cache: w, m and v read and
 * written, the copy written (26 bytes a parameter), with next to no arithmetic,
 * built for the widest vectors the CPU has, so that it is a floor. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void update_floor(void *p)
{
    memory_ctx *c = p;
    enum { CACHED = 4096 }; /* the gradient: 16 KiB read again and again */
    for (size_t at = 0; at < c->n; at += CACHED) {
        const size_t len = c->n - at < CACHED ? c->n - at : CACHED;
        float *restrict w = c->w + at, *restrict m = c->m + at, *restrict v = c->v + at;
        uint16_t *restrict copy = c->copy + at;
        const float *restrict g = c->g;
        for (size_t i = 0; i < len; i++) {
            const float mi = 0.9f * m[i] + g[i], vi = 0.99f * v[i] + g[i];
            m[i] = mi;
            v[i] = vi;
            const float wi = w[i] - 1e-9f * (mi + vi);
            w[i] = wi;
            union { float f; uint32_t u; } bits = {.f = wi};
            copy[i] = (uint16_t)(bits.u >> 16);
        }
    }
}

/* ffn's own update as a bf16 run makes it: Adam, the gradient from memory, the
 * copy written a chunk at a time (30 bytes a parameter). */
static void update_adam(void *p)
{
    memory_ctx *c = p;
    ffn_optim_begin_step(c->adam);
    ffn_optim_update_bf16(c->adam, 1e-6f, c->w, c->g, 0, c->n, 1, c->copy);
}

/* Every rank at once, so that under mpirun the figures are what the ranks of
 * a node get together: GB/s summed over the ranks. */
static int run_memory(size_t n, double seconds)
{
    memory_ctx c = {.n = n};
    c.w = ffn_alloc_floats(n);
    c.m = ffn_alloc_floats(n);
    c.v = ffn_alloc_floats(n);
    c.g = ffn_alloc_floats(n);
    c.copy = ffn_alloc(n, sizeof *c.copy);
    ffn_optim_config oc = ffn_optim_defaults(FFN_OPT_ADAM);
    c.adam = ffn_optim_create(&oc, n);
    if (!c.w || !c.m || !c.v || !c.g || !c.copy || !c.adam) die("out of memory");
    ffn_rng rng = ffn_rng_make(5, (uint64_t)rank);
    ffn_rng_fill_uniform(&rng, c.w, n, -0.1f, 0.1f);
    ffn_rng_fill_uniform(&rng, c.g, n, -0.01f, 0.01f);
    timing floor_t, adam_t;
    timing_start(&floor_t, update_floor, &c, seconds, 3);
    timing_start(&adam_t, update_adam, &c, seconds, 3);
    time_side_by_side(&floor_t, &adam_t);
    const double floor_s = timing_best(&floor_t), adam_s = timing_best(&adam_t);
    const double total = (double)n * nranks;
    if (rank == 0)
        printf("RESULT memory ranks=%d params_per_rank=%zu floor_ms=%.4f floor_gbs=%.2f adam_ms=%.4f adam_gbs=%.2f "
               "kernels=%s\n",
               nranks, n, 1e3 * floor_s, 26.0 * total / floor_s / 1e9, 1e3 * adam_s, 30.0 * total / adam_s / 1e9,
               ffn_act_kernels());
    ffn_optim_free(c.adam);
    ffn_free(c.w);
    ffn_free(c.m);
    ffn_free(c.v);
    ffn_free(c.g);
    ffn_free(c.copy);
    return 0;
}

/* ---- the suite ---------------------------------------------------------------- */

static int finite_row(double v) { return isfinite(v) && v > 0; }

static int suite(int quick, int threads, const char *dir)
{
    g_quick = quick;
    double sec = quick ? 0.3 : 3.0;
    if (threads <= 0) threads = 1;
    if (rank == 0) {
        printf("ffn-bench: %d rank%s x %d BLAS thread%s, OpenBLAS %s (%s)%s\n", nranks, nranks > 1 ? "s" : "",
               threads, threads > 1 ? "s" : "", openblas_get_corename(), openblas_get_config(),
               quick ? ", quick" : "");
        printf("| measure | ffn | reference | ratio |\n|---|---:|---:|---:|\n");
    }
    step_args runs[3] = {
        {"mlp-b32", "dense:128:relu,dense:10", "softmax_ce", NULL, 784, 32, threads, sec, 4, FFN_PRECISION_FP32, FFN_GEMM_AUTO, 0, FFN_SHARD_NONE},
        {"mlp-b256", "dense:128:relu,dense:10", "softmax_ce", NULL, 784, 256, threads, sec, 4, FFN_PRECISION_FP32, FFN_GEMM_AUTO, 0, FFN_SHARD_NONE},
        {"ffn-b256", "dense:4096:gelu,dense:1024", "mse", NULL, 1024, 256, threads, sec, 4, FFN_PRECISION_FP32, FFN_GEMM_AUTO, 0, FFN_SHARD_NONE},
    };
    int bad = 0;
    for (int i = 0; i < 3; i++) {
        step_result r = run_step(&runs[i], 0);
        bad |= !finite_row(r.samples_s) || !finite_row(r.bound_gflops);
        if (rank == 0) {
            printf("| %s step, samples/s (per rank %.0f) | %.0f | - | - |\n", runs[i].name,
                   r.samples_s / nranks, r.samples_s);
            printf("| %s GFLOP/s per rank vs sgemm on the same shapes | %.2f | %.2f | %.3f |\n", runs[i].name,
                   r.gflops, r.bound_gflops, r.bound_s / r.step_s);
            if (nranks > 1) {
                double ex = r.exchange_s;
                printf("| %s gradient exchange ms vs bare MPI_Allreduce ms | %.3f | %.3f | %.3f |\n",
                       runs[i].name, 1e3 * ex, 1e3 * r.bare_s, ex / r.bare_s);
                bad |= !isfinite(ex / r.bare_s);
            }
            fflush(stdout);
        }
    }
    ckpt_result c = run_ckpt(quick ? "dense:128:relu,dense:10" : "dense:4096:gelu,dense:1024",
                             quick ? 784 : 1024, dir, quick ? 1 : 3, 0);
    if (rank == 0) {
        printf("| checkpoint write MB/s (%.1f MB) vs raw write+fsync | %.1f | %.1f | %.3f |\n",
               c.bytes / 1048576.0, c.ckpt_mbs, c.raw_mbs, c.ckpt_mbs / c.raw_mbs);
        bad |= !finite_row(c.ckpt_mbs) || !finite_row(c.raw_mbs);
        printf("| peak RSS MB (this process) | %.1f | - | - |\n", peak_rss_bytes() / 1048576.0);
    }
    return bad ? 1 : 0;
}

/* ---- main ---------------------------------------------------------------------- */

static const char *flag_value(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return def;
}

/* The value table t names for flag name (def when absent), or -1 after a message (rank 0). */
static int named_flag(int argc, char **argv, const char *name, const char *def, const ffn_names *t)
{
    const char *v = flag_value(argc, argv, name, def);
    int k = ffn_names_find(t, v);
    if (k < 0 && rank == 0) {
        char list[FFN_NAMES_LIST_MAX];
        fprintf(stderr, "ffn-bench step: %s: expected %s, got '%s'\n", name, ffn_names_list(t, list, sizeof list), v);
    }
    return k;
}

static int has_flag(int argc, char **argv, const char *name)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        ffn_version_print(stdout, "ffn-bench"); /* no MPI start-up needed */
        return 0;
    }
    if (ffn_comm_init(&comm, &argc, &argv) != FFN_OK) {
        fprintf(stderr, "ffn-bench: error: %s\n", ffn_last_error());
        return 1;
    }
    rank = ffn_comm_rank(comm);
    nranks = ffn_comm_size(comm);
    int rc = 0;
    const char *cmd = argc > 1 && argv[1][0] != '-' ? argv[1] : "";
    if (has_flag(argc, argv, "--help") && strcmp(cmd, "train") != 0) {
        if (rank == 0)
            printf("usage: ffn-bench [--quick] [--threads N] [--dir DIR]\n"
                   "       ffn-bench --version\n"
                   "       ffn-bench step --model SPEC --input D --loss L --batch B [--threads N] [--data FILE]\n"
                   "                      [--seconds S] [--bucket-mb X] [--name NAME] [--precision fp32|bf16] [--gemm auto|openblas|onednn]\n"
                   "                      [--grad-dtype fp32|bf16] [--shard none|optimizer|grads|params]\n"
                   "       ffn-bench ckpt --model SPEC --input D [--dir DIR]\n"
                   "       ffn-bench memory [--params N] [--seconds S]   (an optimizer update's bandwidth, every rank at once)\n"
                   "       ffn-bench train FFN-TRAIN-FLAGS...\n"
                   "(synthetic datasets: ffn-data synth)\n");
    } else if (!strcmp(cmd, "step")) {
        step_args a = {flag_value(argc, argv, "--name", "step"), flag_value(argc, argv, "--model", NULL),
                       flag_value(argc, argv, "--loss", "softmax_ce"), flag_value(argc, argv, "--data", NULL),
                       strtoull(flag_value(argc, argv, "--input", "0"), NULL, 10),
                       strtoull(flag_value(argc, argv, "--batch", "32"), NULL, 10),
                       atoi(flag_value(argc, argv, "--threads", "1")),
                       atof(flag_value(argc, argv, "--seconds", "3")),
                       atof(flag_value(argc, argv, "--bucket-mb", "4")), FFN_PRECISION_FP32, FFN_GEMM_AUTO, 0, FFN_SHARD_NONE};
        int precision = named_flag(argc, argv, "--precision", "fp32", &ffn_precision_names);
        int grad_dtype = named_flag(argc, argv, "--grad-dtype", "fp32", &ffn_precision_names);
        int gemm = named_flag(argc, argv, "--gemm", "auto", &ffn_gemm_backend_names);
        int shard = named_flag(argc, argv, "--shard", "none", &ffn_shard_names);
        if (precision < 0 || grad_dtype < 0 || gemm < 0 || shard < 0) a.model = NULL;
        a.shard = shard < 0 ? FFN_SHARD_NONE : (ffn_shard)shard;
        a.precision = precision < 0 ? FFN_PRECISION_FP32 : (ffn_precision)precision;
        a.grad_bf16 = grad_dtype == FFN_PRECISION_BF16;
        a.gemm = gemm < 0 ? FFN_GEMM_AUTO : (ffn_gemm_backend)gemm;
        if (!a.model || !a.input || !a.batch || a.threads < 1) {
            if (rank == 0) fprintf(stderr, "ffn-bench step: --model, --input and --batch are required\n");
            rc = 2;
        } else {
            run_step(&a, 0);
        }
    } else if (!strcmp(cmd, "ckpt")) {
        const char *model = flag_value(argc, argv, "--model", NULL);
        size_t input = strtoull(flag_value(argc, argv, "--input", "0"), NULL, 10);
        if (!model || !input) {
            if (rank == 0) fprintf(stderr, "ffn-bench ckpt: --model and --input are required\n");
            rc = 2;
        } else {
            run_ckpt(model, input, flag_value(argc, argv, "--dir", "."), 3, 0);
        }
    } else if (!strcmp(cmd, "memory")) {
        long long n = atoll(flag_value(argc, argv, "--params", "8393728"));
        double sec = atof(flag_value(argc, argv, "--seconds", "2"));
        if (n < 4096 || !(sec > 0)) {
            if (rank == 0) fprintf(stderr, "ffn-bench memory: --params must be >= 4096 and --seconds > 0\n");
            rc = 2;
        } else {
            rc = run_memory((size_t)n, sec);
        }
    } else if (!strcmp(cmd, "train")) {
        rc = run_train(argc - 1, argv + 1);
    } else if (!*cmd) {
        rc = suite(has_flag(argc, argv, "--quick"), atoi(flag_value(argc, argv, "--threads", "1")),
                   flag_value(argc, argv, "--dir", "."));
    } else {
        if (rank == 0) fprintf(stderr, "ffn-bench: unknown command '%s' (see --help)\n", cmd);
        rc = 2;
    }
    fflush(stdout);
    ffn_comm_finalize(comm);
    return rc;
}
