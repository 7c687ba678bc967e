/* Tests of the data pipeline (sampler + prefetching loader) on a real HDF5 file
 * whose row i holds x = (i, -i), so every row read can be traced:
 *  - coverage: over one epoch at 3 ranks, with N = 1003 rows (not a multiple of
 *    3 nor of the batch 10), every row is seen exactly once; the last batch has
 *    N mod B = 3 rows; the rows read are the rows named.
 *  - the global batch at each step is the same set of rows for 1, 2, 3 and 4 ranks.
 *  - epochs differ in order; the same seed repeats it.
 *  - a loader started mid-epoch (resume) hands out the same batches as one that
 *    ran from the start.
 *  - FFN_DATA_CACHE_MB: a whole number of MiB sets the budget; junk is refused
 *    by the budget and by ffn_loader_create, naming the variable. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ffn/data.h"
#include "ffn/loader.h"
#include "ffn/sampler.h"
#include "check.h"
#include "fixtures.h"

enum { N = 1003, D = 2, BATCH = 10, STEPS = (N + BATCH - 1) / BATCH };

/* Row i: x = (i, -i), label i % 7. */
static ffn_status write_traceable_rows(const char *path)
{
    ffn_dataset_layout layout = {.rows = N, .features = D, .has_labels = 1, .target_cols = 1, .num_classes = 7};
    float *x = malloc(N * D * sizeof *x);
    int32_t *y = malloc(N * sizeof *y);
    for (int i = 0; i < N; i++) {
        x[i * D] = (float)i;
        x[i * D + 1] = (float)-i;
        y[i] = i % 7;
    }
    ffn_status st = write_dataset(path, &layout, x, y);
    free(x);
    free(y);
    return st;
}

static ffn_loader *make_loader(ffn_dataset *ds, int rank, int nranks, uint64_t epoch, uint64_t step,
                               uint64_t total, uint64_t seed)
{
    ffn_loader_config c = {.batch_size = BATCH, .seed = seed, .shuffle = 1, .rank = rank, .nranks = nranks,
                           .start_epoch = epoch, .start_step = step, .total_steps = total, .prefetch = 1};
    ffn_loader *l = NULL;
    CHECK(ffn_loader_create(&l, ds, &c) == FFN_OK);
    return l;
}

/* Marks the rows of one epoch at R ranks into seen[], checking each batch. */
static void run_epoch(int nranks, ffn_dataset **ds, int *seen, uint64_t (*batches)[BATCH])
{
    ffn_loader *l[4];
    for (int r = 0; r < nranks; r++) l[r] = make_loader(ds[r], r, nranks, 0, 0, STEPS, 5);
    for (int s = 0; s < STEPS; s++) {
        size_t total = 0, expected = s == STEPS - 1 ? N % BATCH : BATCH;
        uint64_t rows[BATCH];
        for (int r = 0; r < nranks; r++) {
            const ffn_batch *b = ffn_loader_next(l[r]);
            CHECK(b && b->status == FFN_OK);
            if (!b) return;
            CHECK(b->global_count == expected);
            CHECK(b->epoch == 0 && b->step == (uint64_t)s);
            for (size_t i = 0; i < b->local_count; i++) {
                uint64_t row = b->indices[i];
                CHECK_MSG(b->x[i * D] == (float)row && b->x[i * D + 1] == -(float)row,
                          "row %llu read as (%g, %g)", (unsigned long long)row, b->x[i * D], b->x[i * D + 1]);
                CHECK(b->labels[i] == (int32_t)(row % 7));
                if (i > 0) CHECK(b->indices[i] > b->indices[i - 1]);
                seen[row]++;
                if (total + i < BATCH) rows[total + i] = row;
            }
            total += b->local_count;
        }
        CHECK_MSG(total == expected, "step %d: ranks got %zu rows in all, expected %zu", s, total, expected);
        /* The batch as a set: sort and compare with the 1-rank run. */
        for (size_t i = 1; i < total; i++)
            for (size_t j = i; j > 0 && rows[j - 1] > rows[j]; j--) {
                uint64_t t = rows[j];
                rows[j] = rows[j - 1];
                rows[j - 1] = t;
            }
        if (nranks == 1) {
            memcpy(batches[s], rows, total * sizeof *rows);
        } else {
            int same = memcmp(batches[s], rows, total * sizeof *rows) == 0;
            CHECK_MSG(same, "step %d: the global batch at %d ranks differs from 1 rank", s, nranks);
        }
    }
    for (int r = 0; r < nranks; r++) {
        CHECK(ffn_loader_next(l[r]) == NULL);
        ffn_loader_free(l[r]);
    }
}

static void test_coverage_and_rank_independence(ffn_dataset **ds)
{
    static uint64_t batches[STEPS][BATCH];
    for (int nranks = 1; nranks <= 4; nranks++) {
        int seen[N] = {0};
        run_epoch(nranks, ds, seen, batches);
        int once = 0;
        for (int i = 0; i < N; i++) once += seen[i] == 1;
        CHECK_MSG(once == N, "%d ranks: %d of %d rows seen exactly once in the epoch", nranks, once, N);
    }
}

static void test_epochs_and_resume(ffn_dataset *ds)
{
    /* Reference: 2.5 epochs from the start on 1 rank. */
    uint64_t total = 2 * STEPS + STEPS / 2;
    uint64_t (*ref)[BATCH] = calloc(total, sizeof *ref);
    ffn_loader *l = make_loader(ds, 0, 1, 0, 0, total, 9);
    for (uint64_t s = 0; s < total; s++) {
        const ffn_batch *b = ffn_loader_next(l);
        CHECK(b != NULL);
        if (!b) break;
        CHECK(b->epoch == s / STEPS && b->step == s % STEPS);
        memcpy(ref[s], b->indices, b->local_count * sizeof(uint64_t));
    }
    ffn_loader_free(l);
    CHECK_MSG(memcmp(ref[0], ref[STEPS], sizeof ref[0]) != 0, "epoch 1 repeats epoch 0's first batch");
    /* Resume at epoch 1, step 40. */
    uint64_t at = STEPS + 40;
    l = make_loader(ds, 0, 1, 1, 40, total - at, 9);
    for (uint64_t s = at; s < total; s++) {
        const ffn_batch *b = ffn_loader_next(l);
        CHECK(b != NULL);
        if (!b) break;
        size_t n = s % STEPS == STEPS - 1 ? N % BATCH : BATCH;
        CHECK_MSG(b->local_count == n && memcmp(ref[s], b->indices, n * sizeof(uint64_t)) == 0,
                  "resumed loader differs at step %llu", (unsigned long long)s);
    }
    CHECK(ffn_loader_next(l) == NULL);
    ffn_loader_free(l);
    /* Same seed, same order; another seed, another order. */
    l = make_loader(ds, 0, 1, 0, 0, 1, 9);
    const ffn_batch *b = ffn_loader_next(l);
    CHECK(b && memcmp(b->indices, ref[0], BATCH * sizeof(uint64_t)) == 0);
    ffn_loader_free(l);
    l = make_loader(ds, 0, 1, 0, 0, 1, 10);
    b = ffn_loader_next(l);
    CHECK(b && memcmp(b->indices, ref[0], BATCH * sizeof(uint64_t)) != 0);
    ffn_loader_free(l);
    free(ref);
}

static void test_cache_budget_setting(ffn_dataset *ds)
{
    ffn_loader_config c = {.batch_size = BATCH, .nranks = 1, .total_steps = 1};
    size_t bytes = 1;
    setenv("FFN_DATA_CACHE_MB", "3", 1);
    CHECK(ffn_loader_cache_budget(&c, &bytes) == FFN_OK && bytes == (size_t)3 << 20);
    setenv("FFN_DATA_CACHE_MB", "0", 1);
    CHECK(ffn_loader_cache_budget(&c, &bytes) == FFN_OK && bytes == 0);
    setenv("FFN_DATA_CACHE_MB", "", 1); /* empty: as if unset */
    CHECK(ffn_loader_cache_budget(&c, &bytes) == FFN_OK && bytes > 0);
    const char *junk[] = {"lots", "-1", "1.5", " 8", "8 ", "+8", "0x10", "16777217", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        setenv("FFN_DATA_CACHE_MB", junk[i], 1);
        CHECK_MSG(ffn_loader_cache_budget(&c, &bytes) == FFN_ERR_ARG, "'%s' accepted", junk[i]);
        CHECK_MSG(strstr(ffn_last_error(), "FFN_DATA_CACHE_MB") && strstr(ffn_last_error(), junk[i]) &&
                      strstr(ffn_last_error(), "expected a whole number of MiB from 0 to 16777216"),
                  "%s", ffn_last_error());
        ffn_loader *l = (ffn_loader *)&c; /* create must set it to NULL */
        CHECK(ffn_loader_create(&l, ds, &c) == FFN_ERR_ARG && l == NULL);
    }
    unsetenv("FFN_DATA_CACHE_MB");
    ffn_loader *l = NULL;
    CHECK(ffn_loader_create(&l, ds, &c) == FFN_OK && l);
    ffn_loader_free(l);
}

/* ffn_sampler_local: each rank's share is the positions [len*r/R, len*(r+1)/R)
 * of the global batch, sorted ascending, for shares below and above the size
 * where the sort changes method (64), and the shares together are the batch. */
static void test_sampler_shares_sorted(void)
{
    static const size_t batches[] = {7, 64, 65, 200, 1000};
    for (size_t k = 0; k < sizeof batches / sizeof batches[0]; k++) {
        ffn_sampler smp;
        CHECK(ffn_sampler_init(&smp, 5000, batches[k], 42, 1) == FFN_OK);
        ffn_sampler_set_epoch(&smp, 3);
        for (int nranks = 1; nranks <= 3; nranks++) {
            uint64_t idx[1000];
            size_t global = 0, seen = 0, begin = 2 * batches[k];
            int bad = 0;
            for (int r = 0; r < nranks; r++) {
                size_t n = ffn_sampler_local(&smp, 2, r, nranks, idx, &global);
                for (size_t i = 1; i < n; i++) bad |= idx[i - 1] >= idx[i];
                /* the same set as the order's positions for this rank */
                size_t lo = global * (size_t)r / (size_t)nranks, hi = global * (size_t)(r + 1) / (size_t)nranks;
                bad |= n != hi - lo;
                for (size_t p = lo; p < hi && !bad; p++) {
                    int found = 0;
                    for (size_t i = 0; i < n; i++) found |= idx[i] == smp.order[begin + p];
                    bad |= !found;
                }
                seen += n;
            }
            CHECK_MSG(!bad && seen == global && global == batches[k],
                      "batch %zu on %d ranks: shares not sorted or not the batch's rows", batches[k], nranks);
        }
        ffn_sampler_free(&smp);
    }
}

int main(void)
{
    test_sampler_shares_sorted();
    if (tmp_dir_make("loader") != 0) return 1;
    const char *path = tmp_path("rows.h5");
    CHECK(write_traceable_rows(path) == FFN_OK);
    ffn_dataset *ds[4] = {0};
    for (int r = 0; r < 4; r++) CHECK(ffn_dataset_open(&ds[r], path) == FFN_OK);
    if (ds[3]) {
        test_coverage_and_rank_independence(ds);
        test_epochs_and_resume(ds[0]);
        test_cache_budget_setting(ds[0]);
    }
    for (int r = 0; r < 4; r++) ffn_dataset_close(ds[r]);
    tmp_dir_remove();
    return check_done("test_loader");
}
