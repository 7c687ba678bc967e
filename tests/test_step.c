/* The training step module (ffn/step.h), on any number of ranks: run alone as
 * a unit test, and under mpiexec -n 2 and -n 3 by e2e_step_mpi.sh. Every rank
 * holds the whole global batch and trains on its share (ffn_partition), so
 * each check compares against a reference computed on all rows alone:
 *   - an SGD step moves the parameters by -lr x the finite-difference
 *     gradient of the mean loss over the global batch;
 *   - the step's sums are the loss, correct count and rows of that batch;
 *   - two micro-batches make the same step as one batch of their rows;
 *   - clipping bounds the update; ZeRO-1 gives the unsharded update;
 *   - pruned weights stay 0; a non-finite loss or a failed read on one rank
 *     stops every rank with one message and leaves the parameters as they were;
 *   - a stop request on one rank reaches all. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffn/comm.h"
#include "ffn/mem.h"
#include "ffn/partition.h"
#include "ffn/prune.h"
#include "ffn/rng.h"
#include "ffn/step.h"

enum { ROWS = 8, IN = 3, OUT = 2 };
static const char *SPEC = "dense:4:tanh,dense:2";

static ffn_comm *comm;
static int rank, nranks;
static float x[ROWS * IN];
static int32_t labels[ROWS];

static ffn_model *make_model(void)
{
    ffn_model *m;
    if (ffn_model_create_from_text(&m, SPEC, IN) != FFN_OK || ffn_model_reserve(m, ROWS) != FFN_OK) {
        fprintf(stderr, "model: %s\n", ffn_last_error());
        exit(1);
    }
    ffn_model_init_params(m, 11);
    return m;
}

static ffn_step_config sgd_config(float momentum)
{
    ffn_step_config c = {.loss = FFN_LOSS_SOFTMAX_CE, .optim = ffn_optim_defaults(FFN_OPT_SGD),
                         .bucket_bytes = 1 << 20, .max_rows = ROWS, .seed = 1};
    c.optim.momentum = momentum;
    return c;
}

static ffn_step *make_step(ffn_model *m, const ffn_step_config *c)
{
    ffn_step *s;
    if (ffn_step_create(&s, m, comm, c) != FFN_OK) {
        fprintf(stderr, "step: %s\n", ffn_last_error());
        exit(1);
    }
    return s;
}

/* This rank's share of global rows [lo, hi) as a micro-batch. */
static ffn_step_batch share_of(size_t lo, size_t hi)
{
    size_t a, b;
    ffn_partition(hi - lo, (size_t)rank, (size_t)nranks, &a, &b);
    return (ffn_step_batch){x + (lo + a) * IN, {labels + lo + a, NULL}, NULL, b - a};
}

/* Mean loss over all rows, evaluation forward (no dropout here). */
static double mean_loss(ffn_model *m)
{
    const float *y = ffn_model_forward(m, x, ROWS);
    ffn_targets t = {labels, NULL};
    return ffn_loss_forward(FFN_LOSS_SOFTMAX_CE, y, t, ROWS, OUT) / ROWS;
}

static float *copy_params(ffn_model *m)
{
    size_t n = ffn_model_param_count(m);
    float *p = ffn_alloc_floats(n);
    memcpy(p, ffn_model_params(m), n * sizeof *p);
    return p;
}

static void test_sgd_matches_finite_differences(void)
{
    ffn_model *m = make_model();
    size_t n = ffn_model_param_count(m);
    float *p = ffn_model_params(m), *before = copy_params(m);
    /* The reference: central differences of the mean loss, every parameter. */
    double *fd = calloc(n, sizeof *fd);
    const float h = 1e-2f;
    for (size_t i = 0; i < n; i++) {
        float keep = p[i];
        p[i] = keep + h;
        double up = mean_loss(m);
        p[i] = keep - h;
        double down = mean_loss(m);
        p[i] = keep;
        fd[i] = (up - down) / (2.0 * h);
    }
    double loss0 = mean_loss(m);
    size_t correct0 = ffn_count_correct(FFN_LOSS_SOFTMAX_CE, ffn_model_forward(m, x, ROWS),
                                        (ffn_targets){labels, NULL}, ROWS, OUT);
    ffn_step_config c = sgd_config(0);
    ffn_step *s = make_step(m, &c);
    const float lr = 0.5f;
    ffn_step_stats st;
    ffn_step_begin(s, 0, ROWS);
    ffn_step_batch b = share_of(0, ROWS);
    ffn_step_micro(s, &b, 1);
    CHECK(ffn_step_finish(s, 0, 0, lr, 0, &st) == FFN_OK);
    CHECK_NEAR(st.rows, ROWS, 0);
    CHECK_NEAR(st.loss_sum / st.rows, loss0, 1e-6);
    CHECK_NEAR(st.correct, (double)correct0, 0);
    CHECK_NEAR(st.kl_sum, 0, 0);
    CHECK(!st.stop_requested);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double g = (before[i] - p[i]) / lr;
        if (fabs(g - fd[i]) > worst) worst = fabs(g - fd[i]);
    }
    CHECK_MSG(worst < 2e-4, "largest |step gradient - finite difference| %.3g", worst);
    ffn_step_free(s);
    ffn_model_free(m);
    ffn_free(before);
    free(fd);
}

/* One step of `parts` micro-batches over the 8 rows; returns the parameters after. */
static float *step_in_parts(int parts, ffn_step_config c, float lr)
{
    ffn_model *m = make_model();
    ffn_step *s = make_step(m, &c);
    ffn_step_stats st;
    ffn_step_begin(s, 0, ROWS);
    for (int k = 0; k < parts; k++) {
        ffn_step_batch b = share_of((size_t)k * ROWS / parts, (size_t)(k + 1) * ROWS / parts);
        ffn_step_micro(s, &b, k + 1 == parts);
    }
    CHECK(ffn_step_finish(s, 0, 0, lr, 0, &st) == FFN_OK);
    CHECK_NEAR(st.rows, ROWS, 0);
    float *p = copy_params(m);
    ffn_step_free(s);
    ffn_model_free(m);
    return p;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > d) d = fabs((double)a[i] - b[i]);
    return d;
}

static void test_accumulation_and_sharding(void)
{
    ffn_model *m = make_model();
    size_t n = ffn_model_param_count(m);
    float *init = copy_params(m);
    ffn_model_free(m);
    ffn_step_config adam = sgd_config(0);
    adam.optim = ffn_optim_defaults(FFN_OPT_ADAM);
    float *one = step_in_parts(1, adam, 1e-2f);
    float *two = step_in_parts(2, adam, 1e-2f);
    /* Adam's first step moves every parameter with a gradient by about lr. */
    CHECK_NEAR(max_diff(one, init, n), 1e-2, 1e-4);
    CHECK_MSG(max_diff(one, two, n) < 1e-6, "accumulated step differs by %.3g", max_diff(one, two, n));
    adam.shard_optimizer = 1;
    float *sharded = step_in_parts(1, adam, 1e-2f);
    CHECK_MSG(max_diff(one, sharded, n) < 1e-6, "ZeRO-1 step differs by %.3g", max_diff(one, sharded, n));
    ffn_free(init);
    ffn_free(one);
    ffn_free(two);
    ffn_free(sharded);
}

static void test_clipping(void)
{
    ffn_model *m = make_model();
    size_t n = ffn_model_param_count(m);
    float *before = copy_params(m);
    ffn_model_free(m);
    ffn_step_config c = sgd_config(0);
    c.clip_norm = 1e-3f;
    float *after = step_in_parts(1, c, 1.0f);
    double sq = 0;
    for (size_t i = 0; i < n; i++) sq += ((double)after[i] - before[i]) * ((double)after[i] - before[i]);
    CHECK_NEAR(sqrt(sq), 1e-3, 1e-6);
    ffn_free(before);
    ffn_free(after);
}

static void test_pruned_weights_stay_zero(void)
{
    ffn_model *m = make_model();
    const ffn_layer *l0 = ffn_model_layer_const(m, 0);
    ffn_prune_segment seg = {l0->param_offset, l0->weight_count};
    ffn_pruner *pr;
    CHECK(ffn_pruner_create(&pr, &seg, 1, ffn_model_param_count(m)) == FFN_OK);
    uint8_t *mask = ffn_pruner_mask(pr);
    mask[0] = mask[1] = mask[2] = 0;
    ffn_step_config c = sgd_config(0);
    c.optim = ffn_optim_defaults(FFN_OPT_ADAM);
    c.pruner = pr;
    ffn_step *s = make_step(m, &c);
    ffn_step_prepare(s, 0, 1);
    float *p = ffn_model_params(m);
    CHECK(p[0] == 0 && p[1] == 0 && p[2] == 0);
    for (uint64_t k = 0; k < 3; k++) {
        ffn_step_stats st;
        ffn_step_begin(s, k, ROWS);
        ffn_step_batch b = share_of(0, ROWS);
        ffn_step_micro(s, &b, 1);
        CHECK(ffn_step_finish(s, k, 0, 1e-2f, 0, &st) == FFN_OK);
    }
    CHECK(p[0] == 0 && p[1] == 0 && p[2] == 0);
    CHECK(p[3] != 0);
    ffn_step_free(s);
    ffn_pruner_free(pr);
    ffn_model_free(m);
}

static void test_failures_leave_parameters(void)
{
    ffn_model *m = make_model();
    size_t n = ffn_model_param_count(m);
    ffn_step_config c = sgd_config(0.9f);
    ffn_step *s = make_step(m, &c);
    float *before = copy_params(m);
    ffn_step_stats st;

    /* A read failure on the last rank only: every rank stops with its message. */
    ffn_step_begin(s, 0, ROWS);
    if (rank == nranks - 1) {
        ffn_step_micro_failed(s, FFN_ERR_IO, "rows 0-7 of broken.h5: read failed", 1);
    } else {
        ffn_step_batch b = share_of(0, ROWS);
        ffn_step_micro(s, &b, 1);
    }
    ffn_status r = ffn_step_finish(s, 0, 0, 0.1f, 0, &st);
    CHECK(r == FFN_ERR_IO);
    CHECK_MSG(strstr(ffn_last_error(), "broken.h5") != NULL, "message: %s", ffn_last_error());
    CHECK(max_diff(before, ffn_model_params(m), n) == 0);

    /* A non-finite loss: FFN_ERR_NUMERIC naming the step, the epoch and the tensor. */
    ffn_model_params(m)[0] = NAN;
    ffn_step_begin(s, 4, ROWS);
    ffn_step_batch b = share_of(0, ROWS);
    ffn_step_micro(s, &b, 1);
    r = ffn_step_finish(s, 4, 1, 0.1f, 0, &st);
    CHECK(r == FFN_ERR_NUMERIC);
    CHECK_MSG(strstr(ffn_last_error(), "step 5 (epoch 2)") && strstr(ffn_last_error(), "layer 0's W"),
              "message: %s", ffn_last_error());
    CHECK(max_diff(before + 1, ffn_model_params(m) + 1, n - 1) == 0);

    /* A stop request on rank 0 reaches every rank. */
    ffn_model_params(m)[0] = before[0];
    ffn_step_begin(s, 0, ROWS);
    ffn_step_micro(s, &b, 1);
    CHECK(ffn_step_finish(s, 0, 0, 0.1f, rank == 0, &st) == FFN_OK);
    CHECK(st.stop_requested == 1);
    ffn_step_free(s);
    ffn_model_free(m);
    ffn_free(before);
}

int main(int argc, char **argv)
{
    if (ffn_comm_init(&comm, &argc, &argv) != FFN_OK) {
        fprintf(stderr, "test_step: %s\n", ffn_last_error());
        return 1;
    }
    rank = ffn_comm_rank(comm);
    nranks = ffn_comm_size(comm);
    ffn_rng rng = ffn_rng_make(5, 9);
    ffn_rng_fill_uniform(&rng, x, ROWS * IN, -1, 1);
    for (int i = 0; i < ROWS; i++) labels[i] = (int32_t)ffn_rng_below(&rng, OUT);
    test_sgd_matches_finite_differences();
    test_accumulation_and_sharding();
    test_clipping();
    test_pruned_weights_stay_zero();
    test_failures_leave_parameters();
    /* Every rank's verdict: a failure anywhere fails the run. */
    double bad = check_failures;
    ffn_comm_sum_doubles(comm, &bad, 1);
    if (bad > 0 && check_failures == 0) check_failures = 1;
    char name[32];
    snprintf(name, sizeof name, "test_step (rank %d of %d)", rank, nranks);
    int rc = check_done(name);
    ffn_comm_finalize(comm);
    return rc;
}
