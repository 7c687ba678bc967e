/* The in-memory dataset (ffn_dataset_cache) reads exactly what the file does:
 *  - uint8 features with scale and offset, int labels; float features, float
 *    targets: scattered rows and ranges, bit for bit, cached vs from HDF5;
 *  - a dataset larger than the budget is not cached and still reads;
 *  - a NaN feature / an infinite target gives the same status and message;
 *  - the loader from memory (the default for data that fits) hands out the same
 *    batches as the loader reading HDF5 on its thread (FFN_DATA_CACHE_MB=0). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "ffn/data.h"
#include "ffn/loader.h"
#include "ffn/mem.h"
#include "ffn/rng.h"
#include "check.h"
#include "fixtures.h"

enum { ROWS = 1000, FEATS = 37, COLS = 5, CLASSES = 7 };

static void write_uint8(const char *path)
{
    ffn_dataset_layout L = {.rows = ROWS, .features = FEATS, .x_uint8 = 1, .x_scale = 1.0f / 255.0f,
                            .has_labels = 1, .target_cols = 1, .num_classes = CLASSES};
    uint8_t *x = malloc(ROWS * FEATS);
    int32_t *y = malloc(ROWS * sizeof *y);
    for (size_t i = 0; i < ROWS * FEATS; i++) x[i] = (uint8_t)(i * 2654435761u >> 24);
    for (int r = 0; r < ROWS; r++) y[r] = (r * 5) % CLASSES;
    CHECK(write_dataset(path, &L, x, y) == FFN_OK);
    free(x);
    free(y);
    /* An offset as well, so the gather applies x * scale + offset as the file read does. */
    double off = -0.5;
    add_x_attr(path, "offset", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &off);
}

static void write_float(const char *path)
{
    ffn_dataset_layout L = {.rows = ROWS, .features = FEATS, .has_labels = 0, .target_cols = COLS};
    float *x = malloc(ROWS * FEATS * sizeof *x), *y = malloc(ROWS * COLS * sizeof *y);
    ffn_rng rng = ffn_rng_make(3, 4);
    ffn_rng_fill_normal(&rng, x, ROWS * FEATS, 0, 1);
    ffn_rng_fill_normal(&rng, y, ROWS * COLS, 0, 1);
    CHECK(write_dataset(path, &L, x, y) == FFN_OK);
    free(x);
    free(y);
}

/* Float /x with a NaN at (row 5, feature 3), float /y with +inf at (row 9, col 1), written raw. */
static void write_nonfinite(const char *path)
{
    float *x = calloc(20 * 4, sizeof *x), *y = calloc(20 * 2, sizeof *y);
    x[5 * 4 + 3] = NAN;
    y[9 * 2 + 1] = INFINITY;
    raw_spec s = {H5T_NATIVE_FLOAT, 2, {20, 4}, x, H5T_NATIVE_FLOAT, 2, {20, 2}, y, -1, 0};
    write_raw(path, &s);
    free(x);
    free(y);
}

/* Reads the same rows from a (file) and b (cached): bit-identical. */
static void compare_reads(ffn_dataset *a, ffn_dataset *b)
{
    const ffn_dataset_info *in = ffn_dataset_get_info(a);
    size_t k = in->has_labels ? 1 : in->target_cols;
    float *xa = ffn_alloc_floats(ROWS * FEATS), *xb = ffn_alloc_floats(ROWS * FEATS);
    float *va = ffn_alloc_floats(ROWS * k), *vb = ffn_alloc_floats(ROWS * k);
    int32_t *la = ffn_alloc(ROWS, sizeof *la), *lb = ffn_alloc(ROWS, sizeof *lb);
    uint64_t *idx = ffn_alloc(ROWS, sizeof *idx);
    ffn_rng rng = ffn_rng_make(9, 9);
    for (int trial = 0; trial < 40; trial++) {
        /* A sorted random subset (every row with probability p), then a range. */
        size_t n = 0;
        float p = trial < 20 ? 0.03f * (float)(trial + 1) : 1.0f;
        for (uint64_t r = 0; r < ROWS; r++)
            if (ffn_rng_uniform(&rng) < p) idx[n++] = r;
        if (n == 0) idx[n++] = ROWS - 1;
        CHECK(ffn_dataset_read_rows(a, idx, n, xa, la, va) == FFN_OK);
        CHECK(ffn_dataset_read_rows(b, idx, n, xb, lb, vb) == FFN_OK);
        CHECK(memcmp(xa, xb, n * FEATS * sizeof *xa) == 0);
        if (in->has_labels) CHECK(memcmp(la, lb, n * sizeof *la) == 0);
        else CHECK(memcmp(va, vb, n * k * sizeof *va) == 0);
        uint64_t start = ffn_rng_below(&rng, ROWS);
        size_t len = 1 + ffn_rng_below(&rng, ROWS - start);
        CHECK(ffn_dataset_read_range(a, start, len, xa, la, va) == FFN_OK);
        CHECK(ffn_dataset_read_range(b, start, len, xb, lb, vb) == FFN_OK);
        CHECK(memcmp(xa, xb, len * FEATS * sizeof *xa) == 0);
        if (in->has_labels) CHECK(memcmp(la, lb, len * sizeof *la) == 0);
        else CHECK(memcmp(va, vb, len * k * sizeof *va) == 0);
    }
    /* Out-of-range rows are refused the same way. */
    idx[0] = ROWS;
    CHECK(ffn_dataset_read_rows(a, idx, 1, xa, la, va) == FFN_ERR_ARG);
    CHECK(ffn_dataset_read_rows(b, idx, 1, xb, lb, vb) == FFN_ERR_ARG);
    ffn_free(xa);
    ffn_free(xb);
    ffn_free(va);
    ffn_free(vb);
    ffn_free(la);
    ffn_free(lb);
    ffn_free(idx);
}

static void test_same_values(const char *path)
{
    ffn_dataset *a, *b;
    CHECK(ffn_dataset_open(&a, path) == FFN_OK);
    CHECK(ffn_dataset_open(&b, path) == FFN_OK);
    int cached = -1;
    CHECK(ffn_dataset_cache(b, (size_t)1 << 30, &cached) == FFN_OK);
    CHECK(cached == 1);
    CHECK(ffn_dataset_cache(b, 0, &cached) == FFN_OK && cached == 1); /* already held */
    compare_reads(a, b);
    /* Too large for the budget: not cached, reads as before. */
    CHECK(ffn_dataset_cache(a, 1000, &cached) == FFN_OK);
    CHECK(cached == 0);
    compare_reads(a, b);
    ffn_dataset_close(a);
    ffn_dataset_close(b);
}

/* Rows idx[0..n) of write_nonfinite's file fail alike from the file (a) and
 * from memory (b): FFN_ERR_NUMERIC, one message, naming what. */
static void expect_same_failure(ffn_dataset *a, ffn_dataset *b, const uint64_t *idx, size_t n,
                                const char *what)
{
    float x[20 * 4], v[20 * 2];
    char msg[512];
    CHECK(ffn_dataset_read_rows(a, idx, n, x, NULL, v) == FFN_ERR_NUMERIC);
    snprintf(msg, sizeof msg, "%s", ffn_last_error());
    CHECK(ffn_dataset_read_rows(b, idx, n, x, NULL, v) == FFN_ERR_NUMERIC);
    CHECK_MSG(strcmp(msg, ffn_last_error()) == 0, "file: '%s' memory: '%s'", msg, ffn_last_error());
    CHECK(strstr(msg, what) != NULL);
}

static void test_nonfinite(void)
{
    const char *p = tmp_path("nonfinite.h5");
    write_nonfinite(p);
    ffn_dataset *a, *b;
    CHECK(ffn_dataset_open(&a, p) == FFN_OK);
    CHECK(ffn_dataset_open(&b, p) == FFN_OK);
    int cached = 0;
    CHECK(ffn_dataset_cache(b, (size_t)1 << 20, &cached) == FFN_OK && cached);
    uint64_t idx[3] = {2, 5, 7};
    expect_same_failure(a, b, idx, 3, "row 5 feature 3 is NaN");
    uint64_t idy[2] = {8, 9};
    expect_same_failure(a, b, idy, 2, "/y row 9 target 1 is infinite");
    float x[20 * 4], v[20 * 2];
    /* Rows without the bad values read fine from both. */
    uint64_t ok[2] = {0, 19};
    CHECK(ffn_dataset_read_rows(a, ok, 2, x, NULL, v) == FFN_OK);
    CHECK(ffn_dataset_read_rows(b, ok, 2, x, NULL, v) == FFN_OK);
    ffn_dataset_close(a);
    ffn_dataset_close(b);
}

/* Two epochs of batches, at 2 ranks, from a loader: copied out for comparison. */
static void loader_batches(const char *path, int rank, float *x, int32_t *y, uint64_t *steps)
{
    ffn_dataset *ds;
    CHECK(ffn_dataset_open(&ds, path) == FFN_OK);
    ffn_loader_config c = {.batch_size = 64, .seed = 11, .shuffle = 1, .rank = rank, .nranks = 2,
                           .total_steps = 2 * ((ROWS + 63) / 64), .prefetch = 1};
    ffn_loader *l;
    CHECK(ffn_loader_create(&l, ds, &c) == FFN_OK);
    const ffn_batch *b;
    size_t at = 0;
    *steps = 0;
    while ((b = ffn_loader_next(l)) != NULL) {
        CHECK(b->status == FFN_OK);
        memcpy(x + at * FEATS, b->x, b->local_count * FEATS * sizeof *x);
        memcpy(y + at, b->labels, b->local_count * sizeof *y);
        at += b->local_count;
        ++*steps;
    }
    CHECK(at == ROWS); /* each rank: half of two epochs */
    CHECK(ffn_loader_wait_seconds(l) >= 0);
    ffn_loader_free(l);
    ffn_dataset_close(ds);
}

static void test_loader(const char *path)
{
    float *xa = malloc(2 * ROWS * FEATS * sizeof *xa), *xb = malloc(2 * ROWS * FEATS * sizeof *xb);
    int32_t *ya = malloc(2 * ROWS * sizeof *ya), *yb = malloc(2 * ROWS * sizeof *yb);
    for (int rank = 0; rank < 2; rank++) {
        uint64_t sa, sb;
        setenv("FFN_DATA_CACHE_MB", "0", 1); /* HDF5 on the prefetch thread */
        loader_batches(path, rank, xa, ya, &sa);
        unsetenv("FFN_DATA_CACHE_MB"); /* the default: held in memory */
        loader_batches(path, rank, xb, yb, &sb);
        CHECK(sa == sb);
        CHECK(memcmp(xa, xb, ROWS * FEATS * sizeof *xa) == 0);
        CHECK(memcmp(ya, yb, ROWS * sizeof *ya) == 0);
    }
    free(xa);
    free(xb);
    free(ya);
    free(yb);
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (tmp_dir_make("cache") != 0) return 1;
    const char *u8 = tmp_path("u8.h5"), *fl = tmp_path("float.h5");
    write_uint8(u8);
    write_float(fl);
    test_same_values(u8);
    test_same_values(fl);
    test_nonfinite();
    test_loader(u8);
    if (tmp_dir_remove() != 0) return 1;
    return check_done("test_data_cache");
}
