/* Tests for the HDF5 dataset reader and writer: values read back, every
 * validation failure with its status and a message naming file and field,
 * virtual datasets, reads from a second thread, and the writer's atomicity. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "ffn/data.h"
#include "ffn/eval.h"
#include "ffn/model.h"
#include "check.h"
#include "fixtures.h"

static int exists(const char *p) { return access(p, F_OK) == 0; }

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* Expects open to fail with code and a message that names the file and each
 * of the given fragments. */
static void expect_open_fail(const char *path, ffn_status code, const char *frag1, const char *frag2)
{
    ffn_dataset *ds = (ffn_dataset *)1;
    ffn_status st = ffn_dataset_open(&ds, path);
    const char *m = ffn_last_error();
    CHECK_MSG(st == code, "%s: status %s, expected %s (%s)", path, ffn_status_name(st),
              ffn_status_name(code), m);
    CHECK(ds == NULL);
    CHECK_MSG(contains(m, path), "message does not name the file: %s", m);
    if (frag1) CHECK_MSG(contains(m, frag1), "message lacks \"%s\": %s", frag1, m);
    if (frag2) CHECK_MSG(contains(m, frag2), "message lacks \"%s\": %s", frag2, m);
    if (st == FFN_OK) ffn_dataset_close(ds);
}

/* x[r][c] = r * 10 + c, labels r % classes. */
static ffn_status write_float_labels(const char *path, size_t rows, size_t feats, size_t classes)
{
    ffn_dataset_layout L = { .rows = rows, .features = feats, .has_labels = 1, .target_cols = 1,
                             .num_classes = classes };
    ffn_dataset_writer *w;
    ffn_status st = ffn_dataset_writer_create(&w, path, &L);
    if (st != FFN_OK) return st;
    float *x = malloc(rows * feats * sizeof *x);
    int32_t *y = malloc(rows * sizeof *y);
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < feats; c++) x[r * feats + c] = (float)(r * 10 + c);
        y[r] = (int32_t)(r % classes);
    }
    /* Written in two pieces, the second first: any order is allowed. */
    size_t half = rows / 2;
    st = ffn_dataset_writer_rows(w, half, rows - half, x + half * feats, y + half);
    if (st == FFN_OK) st = ffn_dataset_writer_rows(w, 0, half, x, y);
    if (st == FFN_OK) st = ffn_dataset_writer_attr(w, "source", "test_data");
    free(x);
    free(y);
    if (st != FFN_OK) {
        ffn_dataset_writer_abort(w);
        return st;
    }
    return ffn_dataset_writer_close(w);
}

static void test_float_labels(void)
{
    const char *p = tmp_path("float.h5");
    CHECK(write_float_labels(p, 11, 3, 4) == FFN_OK);
    CHECK(!exists(tmp_path("float.h5.tmp")));
    ffn_dataset *ds;
    ffn_status st = ffn_dataset_open(&ds, p);
    CHECK_MSG(st == FFN_OK, "%s", ffn_last_error());
    if (st != FFN_OK) return;
    const ffn_dataset_info *in = ffn_dataset_get_info(ds);
    CHECK(in->rows == 11 && in->features == 3 && in->has_labels && in->target_cols == 1);
    CHECK(in->num_classes == 4 && !in->x_is_uint8);
    CHECK(strcmp(ffn_dataset_path(ds), p) == 0);

    const uint64_t idx[] = { 0, 2, 3, 4, 7, 9, 10 };
    size_t n = sizeof idx / sizeof idx[0];
    float x[7 * 3];
    int32_t y[7];
    CHECK(ffn_dataset_read_rows(ds, idx, n, x, y, NULL) == FFN_OK);
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        for (size_t c = 0; c < 3; c++) ok &= x[i * 3 + c] == (float)(idx[i] * 10 + c);
        ok &= y[i] == (int32_t)(idx[i] % 4);
    }
    CHECK(ok);

    CHECK(ffn_dataset_read_range(ds, 5, 4, x, y, NULL) == FFN_OK);
    ok = 1;
    for (size_t i = 0; i < 4; i++) {
        for (size_t c = 0; c < 3; c++) ok &= x[i * 3 + c] == (float)((5 + i) * 10 + c);
        ok &= y[i] == (int32_t)((5 + i) % 4);
    }
    CHECK(ok);

    /* Labels only, x only. */
    memset(y, 0xff, sizeof y);
    CHECK(ffn_dataset_read_rows(ds, idx, 2, NULL, y, NULL) == FFN_OK);
    CHECK(y[0] == 0 && y[1] == 2);
    CHECK(ffn_dataset_read_range(ds, 10, 1, x, NULL, NULL) == FFN_OK);
    CHECK(x[0] == 100.0f && x[2] == 102.0f);
    /* Nothing to read is fine. */
    CHECK(ffn_dataset_read_rows(ds, NULL, 0, x, y, NULL) == FFN_OK);

    /* Bad requests. */
    const uint64_t unsorted[] = { 3, 2 }, dup[] = { 4, 4 }, out[] = { 1, 11 };
    CHECK(ffn_dataset_read_rows(ds, unsorted, 2, x, y, NULL) == FFN_ERR_ARG);
    CHECK(contains(ffn_last_error(), p) && contains(ffn_last_error(), "increasing"));
    CHECK(ffn_dataset_read_rows(ds, dup, 2, x, y, NULL) == FFN_ERR_ARG);
    CHECK(ffn_dataset_read_rows(ds, out, 2, x, y, NULL) == FFN_ERR_ARG);
    CHECK(contains(ffn_last_error(), "row 11"));
    CHECK(ffn_dataset_read_range(ds, 9, 3, x, y, NULL) == FFN_ERR_ARG);
    CHECK(ffn_dataset_read_range(ds, UINT64_MAX, 2, x, y, NULL) == FFN_ERR_ARG);
    ffn_dataset_close(ds);
    ffn_dataset_close(NULL);
}

static void test_uint8_scale(void)
{
    const char *p = tmp_path("u8.h5");
    ffn_dataset_layout L = { .rows = 6, .features = 4, .x_uint8 = 1, .x_scale = 0.5f,
                             .has_labels = 1, .target_cols = 1, .num_classes = 0 };
    ffn_dataset_writer *w;
    CHECK(ffn_dataset_writer_create(&w, p, &L) == FFN_OK);
    uint8_t x[24];
    int32_t y[6] = { 0, 5, 1, 2, 0, 3 };
    for (int i = 0; i < 24; i++) x[i] = (uint8_t)(i * 10 + 5);
    CHECK(ffn_dataset_writer_rows(w, 0, 6, x, y) == FFN_OK);
    CHECK(ffn_dataset_writer_close(w) == FFN_OK);

    ffn_dataset *ds;
    CHECK(ffn_dataset_open(&ds, p) == FFN_OK);
    if (!ds) return;
    const ffn_dataset_info *in = ffn_dataset_get_info(ds);
    CHECK(in->x_is_uint8 && in->x_scale == 0.5f && in->x_offset == 0.0f);
    CHECK_MSG(in->num_classes == 6, "no attribute: max label + 1, got %zu", in->num_classes);
    const uint64_t idx[] = { 1, 4, 5 };
    float xf[12];
    int32_t lab[3];
    CHECK(ffn_dataset_read_rows(ds, idx, 3, xf, lab, NULL) == FFN_OK);
    int ok = 1;
    for (int i = 0; i < 3; i++)
        for (int c = 0; c < 4; c++) ok &= xf[i * 4 + c] == 0.5f * (float)x[idx[i] * 4 + c];
    CHECK(ok);
    CHECK(lab[0] == 5 && lab[1] == 0 && lab[2] == 3);
    /* A bigger read grows the scratch; a smaller one reuses it. */
    float all[24];
    CHECK(ffn_dataset_read_range(ds, 0, 6, all, NULL, NULL) == FFN_OK);
    CHECK(all[23] == 0.5f * 235.0f);
    CHECK(ffn_dataset_read_range(ds, 5, 1, all, NULL, NULL) == FFN_OK);
    CHECK(all[0] == 0.5f * 205.0f);
    ffn_dataset_close(ds);

    /* A uint8 /x with an offset attribute (written by another tool). */
    const char *q = tmp_path("u8off.h5");
    int32_t y2[2] = { 0, 1 };
    uint8_t x2[4] = { 0, 1, 2, 255 };
    raw_spec s = { H5T_NATIVE_UINT8, 2, { 2, 2 }, x2, H5T_NATIVE_INT32, 1, { 2, 0 }, y2, 2, 2.0 };
    write_raw(q, &s);
    float off = -1.0f;
    add_x_attr(q, "offset", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &off);
    CHECK(ffn_dataset_open(&ds, q) == FFN_OK);
    if (!ds) return;
    CHECK(ffn_dataset_read_range(ds, 0, 2, xf, NULL, NULL) == FFN_OK);
    CHECK(xf[0] == -1.0f && xf[1] == 1.0f && xf[2] == 3.0f && xf[3] == 509.0f);
    ffn_dataset_close(ds);
    /* uint8 without a scale attribute. */
    s.scale = 0;
    write_raw(q, &s);
    expect_open_fail(q, FFN_ERR_FORMAT, "/x", "scale");
}

static void test_float_targets(void)
{
    const char *p = tmp_path("targets.h5");
    ffn_dataset_layout L = { .rows = 5, .features = 2, .has_labels = 0, .target_cols = 3 };
    ffn_dataset_writer *w;
    CHECK(ffn_dataset_writer_create(&w, p, &L) == FFN_OK);
    float x[10], y[15];
    for (int i = 0; i < 10; i++) x[i] = (float)i * 0.25f;
    for (int i = 0; i < 15; i++) y[i] = (float)i - 7.5f;
    for (int r = 0; r < 5; r++) CHECK(ffn_dataset_writer_rows(w, (uint64_t)r, 1, x + 2 * r, y + 3 * r) == FFN_OK);
    CHECK(ffn_dataset_writer_close(w) == FFN_OK);
    ffn_dataset *ds;
    CHECK(ffn_dataset_open(&ds, p) == FFN_OK);
    if (!ds) return;
    const ffn_dataset_info *in = ffn_dataset_get_info(ds);
    CHECK(!in->has_labels && in->target_cols == 3 && in->num_classes == 0);
    const uint64_t idx[] = { 0, 3, 4 };
    float xr[6], yr[9];
    int32_t unused[3] = { 7, 7, 7 };
    CHECK(ffn_dataset_read_rows(ds, idx, 3, xr, unused, yr) == FFN_OK);
    int ok = 1;
    for (int i = 0; i < 3; i++) {
        for (int c = 0; c < 2; c++) ok &= xr[i * 2 + c] == x[idx[i] * 2 + c];
        for (int c = 0; c < 3; c++) ok &= yr[i * 3 + c] == y[idx[i] * 3 + c];
    }
    CHECK(ok);
    CHECK(unused[0] == 7); /* labels buffer untouched for a targets dataset */
    /* The range of /y, scanned at open: y[i] = i - 7.5 over 5 rows of 3. */
    CHECK(in->y_min == -7.5f && in->y_min_row == 0 && in->y_min_col == 0);
    CHECK(in->y_max == 6.5f && in->y_max_row == 4 && in->y_max_col == 2);
    /* bce needs targets in [0, 1]: refused naming the file, /y, the row, column and value; mse takes them. */
    ffn_model *m = NULL;
    CHECK(ffn_model_create_from_text(&m, "dense:3", 2) == FFN_OK);
    if (m) {
        CHECK(ffn_check_dataset_fits(m, FFN_LOSS_MSE, ds, "--train targets.h5") == FFN_OK);
        CHECK(ffn_check_dataset_fits(m, FFN_LOSS_BCE, ds, "--train targets.h5") == FFN_ERR_FORMAT);
        CHECK_MSG(contains(ffn_last_error(), "--train targets.h5: /y row 0 column 0 has target -7.5") &&
                      contains(ffn_last_error(), "bce needs targets in [0, 1]"),
                  "%s", ffn_last_error());
    }
    ffn_dataset_close(ds);

    /* Targets in [0, 1] but one above 1, in the middle: that one is named. */
    const char *q = tmp_path("probs.h5");
    CHECK(ffn_dataset_writer_create(&w, q, &L) == FFN_OK);
    for (int i = 0; i < 15; i++) y[i] = (float)i / 14.0f;
    y[7] = 1.25f; /* row 2, column 1 */
    for (int r = 0; r < 5; r++) CHECK(ffn_dataset_writer_rows(w, (uint64_t)r, 1, x + 2 * r, y + 3 * r) == FFN_OK);
    CHECK(ffn_dataset_writer_close(w) == FFN_OK);
    CHECK(ffn_dataset_open(&ds, q) == FFN_OK);
    if (ds && m) {
        in = ffn_dataset_get_info(ds);
        CHECK(in->y_min == 0.0f && in->y_max == 1.25f && in->y_max_row == 2 && in->y_max_col == 1);
        CHECK(ffn_check_dataset_fits(m, FFN_LOSS_BCE, ds, "--val probs.h5") == FFN_ERR_FORMAT);
        CHECK_MSG(contains(ffn_last_error(), "--val probs.h5: /y row 2 column 1 has target 1.25"), "%s",
                  ffn_last_error());
        ffn_dataset_close(ds);
    }
    /* All in [0, 1]: bce takes them. */
    y[7] = 0.5f;
    CHECK(ffn_dataset_writer_create(&w, q, &L) == FFN_OK);
    for (int r = 0; r < 5; r++) CHECK(ffn_dataset_writer_rows(w, (uint64_t)r, 1, x + 2 * r, y + 3 * r) == FFN_OK);
    CHECK(ffn_dataset_writer_close(w) == FFN_OK);
    CHECK(ffn_dataset_open(&ds, q) == FFN_OK);
    if (ds && m) {
        CHECK_MSG(ffn_check_dataset_fits(m, FFN_LOSS_BCE, ds, "--train probs.h5") == FFN_OK, "%s", ffn_last_error());
        ffn_dataset_close(ds);
    }
    ffn_model_free(m);
}

static void test_validation(void)
{
    float xf[6] = { 1, 2, 3, 4, 5, 6 };
    int32_t y3[3] = { 0, 1, 1 };
    int16_t xs[6] = { 1, 2, 3, 4, 5, 6 };

    expect_open_fail(tmp_path("does-not-exist.h5"), FFN_ERR_IO, "No such file", NULL);

    const char *txt = tmp_path("text.h5");
    FILE *f = fopen(txt, "w");
    fputs("this is not an HDF5 file\n", f);
    fclose(f);
    expect_open_fail(txt, FFN_ERR_FORMAT, "not an HDF5 file", NULL);

    expect_open_fail(tmp_dir(), FFN_ERR_IO, "directory", NULL);

    /* Truncated: a valid file cut in half. */
    const char *tr = tmp_path("truncated.h5");
    CHECK(write_float_labels(tr, 2000, 8, 3) == FFN_OK);
    struct stat sb;
    CHECK(stat(tr, &sb) == 0);
    CHECK(truncate(tr, sb.st_size / 2) == 0);
    expect_open_fail(tr, FFN_ERR_FORMAT, "truncated", NULL);

    const char *p = tmp_path("bad.h5");
    raw_spec s = { H5T_NATIVE_FLOAT, 2, { 3, 2 }, xf, -1, 0, { 0, 0 }, NULL, -1, 0 };
    write_raw(p, &s);
    expect_open_fail(p, FFN_ERR_FORMAT, "missing dataset /y", NULL);

    raw_spec nox = { -1, 0, { 0, 0 }, NULL, H5T_NATIVE_INT32, 1, { 3, 0 }, y3, -1, 0 };
    write_raw(p, &nox);
    expect_open_fail(p, FFN_ERR_FORMAT, "missing dataset /x", NULL);

    s = (raw_spec){ H5T_NATIVE_INT16, 2, { 3, 2 }, xs, H5T_NATIVE_INT32, 1, { 3, 0 }, y3, -1, 0 };
    write_raw(p, &s);
    expect_open_fail(p, FFN_ERR_FORMAT, "/x has type int16", "expected float32");

    double xd[6] = { 1, 2, 3, 4, 5, 6 };
    s = (raw_spec){ H5T_NATIVE_DOUBLE, 2, { 3, 2 }, xd, H5T_NATIVE_INT32, 1, { 3, 0 }, y3, -1, 0 };
    write_raw(p, &s);
    expect_open_fail(p, FFN_ERR_FORMAT, "/x has type float64", NULL);

    s = (raw_spec){ H5T_NATIVE_FLOAT, 1, { 6, 0 }, xf, H5T_NATIVE_INT32, 1, { 3, 0 }, y3, -1, 0 };
    write_raw(p, &s);
    expect_open_fail(p, FFN_ERR_FORMAT, "/x has rank 1", "expected 2");

    s = (raw_spec){ H5T_NATIVE_FLOAT, 2, { 3, 2 }, xf, H5T_NATIVE_INT32, 2, { 3, 1 }, y3, -1, 0 };
    write_raw(p, &s);
    expect_open_fail(p, FFN_ERR_FORMAT, "/y", "rank 2");

    s = (raw_spec){ H5T_NATIVE_FLOAT, 2, { 3, 2 }, xf, H5T_NATIVE_DOUBLE, 2, { 3, 1 }, xd, -1, 0 };
    write_raw(p, &s);
    expect_open_fail(p, FFN_ERR_FORMAT, "/y has type float64", NULL);

    s = (raw_spec){ H5T_NATIVE_FLOAT, 2, { 3, 2 }, xf, H5T_NATIVE_INT32, 1, { 2, 0 }, y3, -1, 0 };
    write_raw(p, &s);
    expect_open_fail(p, FFN_ERR_FORMAT, "/y has 2 rows but /x has 3", NULL);

    s = (raw_spec){ H5T_NATIVE_FLOAT, 2, { 0, 2 }, NULL, H5T_NATIVE_INT32, 1, { 0, 0 }, NULL, -1, 0 };
    write_raw(p, &s);
    expect_open_fail(p, FFN_ERR_FORMAT, "/x has 0 rows", NULL);

    int32_t neg[3] = { 0, 1, -2 };
    s = (raw_spec){ H5T_NATIVE_FLOAT, 2, { 3, 2 }, xf, H5T_NATIVE_INT32, 1, { 3, 0 }, neg, -1, 0 };
    write_raw(p, &s);
    expect_open_fail(p, FFN_ERR_FORMAT, "/y row 2", "label -2");

    int32_t big[3] = { 0, 3, 1 };
    s = (raw_spec){ H5T_NATIVE_FLOAT, 2, { 3, 2 }, xf, H5T_NATIVE_INT32, 1, { 3, 0 }, big, 3, 0 };
    write_raw(p, &s);
    expect_open_fail(p, FFN_ERR_FORMAT, "/y row 1", "num_classes");

    s.num_classes = 0;
    write_raw(p, &s);
    expect_open_fail(p, FFN_ERR_FORMAT, "num_classes", "expected an integer");

    /* int64 labels are read as int32; one that does not fit is rejected. */
    int64_t wide[3] = { 0, 1, (int64_t)1 << 40 };
    s = (raw_spec){ H5T_NATIVE_FLOAT, 2, { 3, 2 }, xf, H5T_NATIVE_INT64, 1, { 3, 0 }, wide, -1, 0 };
    write_raw(p, &s);
    expect_open_fail(p, FFN_ERR_FORMAT, "/y row 2", NULL);
    wide[2] = 2;
    write_raw(p, &s);
    ffn_dataset *ds;
    CHECK(ffn_dataset_open(&ds, p) == FFN_OK);
    if (ds) {
        CHECK(ffn_dataset_get_info(ds)->num_classes == 3);
        ffn_dataset_close(ds);
    }

    /* NaN features are found on read, naming the row. */
    float xn[8] = { 1, 2, 3, 4, 5, 6, NAN, 8 };
    int32_t y4[4] = { 0, 1, 0, 1 };
    s = (raw_spec){ H5T_NATIVE_FLOAT, 2, { 4, 2 }, xn, H5T_NATIVE_INT32, 1, { 4, 0 }, y4, 2, 0 };
    write_raw(p, &s);
    CHECK(ffn_dataset_open(&ds, p) == FFN_OK);
    if (ds) {
        float out[8];
        int32_t lab[4];
        const uint64_t good[] = { 0, 1, 2 }, bad[] = { 1, 3 };
        CHECK(ffn_dataset_read_rows(ds, good, 3, out, lab, NULL) == FFN_OK);
        CHECK(ffn_dataset_read_rows(ds, bad, 2, out, lab, NULL) == FFN_ERR_NUMERIC);
        CHECK_MSG(contains(ffn_last_error(), "/x row 3") && contains(ffn_last_error(), p), "%s",
                  ffn_last_error());
        CHECK(ffn_dataset_read_range(ds, 2, 2, out, lab, NULL) == FFN_ERR_NUMERIC);
        CHECK(contains(ffn_last_error(), "row 3"));
        ffn_dataset_close(ds);
    }
}

static int file_equals(const char *path, const char *text)
{
    char buf[64] = { 0 };
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    return n == strlen(text) && memcmp(buf, text, n) == 0;
}

static void test_writer_atomic(void)
{
    const char *p = tmp_path("atomic.h5"), *t = tmp_path("atomic.h5.tmp");
    ffn_dataset_layout L = { .rows = 4, .features = 2, .has_labels = 1, .target_cols = 1,
                             .num_classes = 2 };
    float x[8] = { 0 };
    int32_t y[4] = { 0, 1, 0, 1 };
    ffn_dataset_writer *w;

    /* Abort: nothing left. */
    CHECK(ffn_dataset_writer_create(&w, p, &L) == FFN_OK);
    CHECK(exists(t) && !exists(p));
    CHECK(ffn_dataset_writer_rows(w, 0, 4, x, y) == FFN_OK);
    ffn_dataset_writer_abort(w);
    CHECK(!exists(t) && !exists(p));

    /* An existing PATH stays until close succeeds. */
    FILE *f = fopen(p, "w");
    fputs("old", f);
    fclose(f);
    CHECK(ffn_dataset_writer_create(&w, p, &L) == FFN_OK);
    CHECK(ffn_dataset_writer_rows(w, 0, 4, x, y) == FFN_OK);
    CHECK(file_equals(p, "old"));
    ffn_dataset_writer_abort(w);
    CHECK(file_equals(p, "old") && !exists(t));

    /* Rows missing: close fails, PATH untouched, temporary removed. */
    CHECK(ffn_dataset_writer_create(&w, p, &L) == FFN_OK);
    CHECK(ffn_dataset_writer_rows(w, 0, 3, x, y) == FFN_OK);
    CHECK(ffn_dataset_writer_rows(w, 1, 2, x, y) == FFN_OK); /* overlap counts once */
    CHECK(ffn_dataset_writer_close(w) == FFN_ERR_ARG);
    CHECK(contains(ffn_last_error(), "3 of 4 rows"));
    CHECK(file_equals(p, "old") && !exists(t));

    /* Bad rows are refused with the row named, before anything is written. */
    CHECK(ffn_dataset_writer_create(&w, p, &L) == FFN_OK);
    int32_t bad[4] = { 0, 1, 2, 0 };
    CHECK(ffn_dataset_writer_rows(w, 0, 4, x, bad) == FFN_ERR_ARG);
    CHECK(contains(ffn_last_error(), "/y row 2"));
    float xn[8] = { 0, 0, 0, INFINITY, 0, 0, 0, 0 };
    CHECK(ffn_dataset_writer_rows(w, 0, 4, xn, y) == FFN_ERR_NUMERIC);
    CHECK(contains(ffn_last_error(), "/x row 1"));
    CHECK(ffn_dataset_writer_rows(w, 3, 2, x, y) == FFN_ERR_ARG);
    CHECK(ffn_dataset_writer_attr(w, "num_classes", "3") == FFN_ERR_ARG);
    /* A good write still works after refused ones, then close replaces PATH. */
    CHECK(ffn_dataset_writer_rows(w, 0, 4, x, y) == FFN_OK);
    CHECK(ffn_dataset_writer_attr(w, "created_by", "test_data") == FFN_OK);
    CHECK(ffn_dataset_writer_attr(w, "created_by", "test_data again") == FFN_OK);
    CHECK(ffn_dataset_writer_close(w) == FFN_OK);
    CHECK(exists(p) && !exists(t) && !file_equals(p, "old"));
    ffn_dataset *ds;
    CHECK(ffn_dataset_open(&ds, p) == FFN_OK);
    if (ds) {
        CHECK(ffn_dataset_get_info(ds)->rows == 4);
        ffn_dataset_close(ds);
    }

    /* Bad layouts and an unwritable place. */
    ffn_dataset_layout bad_layout = L;
    bad_layout.rows = 0;
    CHECK(ffn_dataset_writer_create(&w, p, &bad_layout) == FFN_ERR_ARG && w == NULL);
    bad_layout = L;
    bad_layout.features = SIZE_MAX / 2;
    bad_layout.rows = 16;
    CHECK(ffn_dataset_writer_create(&w, p, &bad_layout) == FFN_ERR_NOMEM);
    bad_layout = L;
    bad_layout.x_uint8 = 1;
    bad_layout.x_scale = NAN;
    CHECK(ffn_dataset_writer_create(&w, p, &bad_layout) == FFN_ERR_ARG);
    CHECK(ffn_dataset_writer_create(&w, tmp_path("no-such-dir/out.h5"), &L) == FFN_ERR_IO);
    CHECK(contains(ffn_last_error(), "no-such-dir/out.h5"));
    CHECK(exists(p) && !exists(t));
}

/* Two shard files and a virtual dataset over them, made with the HDF5 API. */
static void test_virtual(void)
{
    const char *a = tmp_path("part-a.h5"), *b = tmp_path("part-b.h5"), *v = tmp_path("joined.h5");
    CHECK(write_float_labels(a, 5, 3, 4) == FFN_OK);
    CHECK(write_float_labels(b, 4, 3, 4) == FFN_OK);
    hid_t f = H5Fcreate(v, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const char *names[2] = { "part-a.h5", "part-b.h5" };
    hsize_t rows[2] = { 5, 4 }, at = 0;
    hsize_t xd[2] = { 9, 3 }, yd[1] = { 9 };
    hid_t xcpl = H5Pcreate(H5P_DATASET_CREATE), ycpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t xs = H5Screate_simple(2, xd, NULL), ys = H5Screate_simple(1, yd, NULL);
    for (int i = 0; i < 2; i++) {
        hsize_t start[2] = { at, 0 }, cnt[2] = { rows[i], 3 };
        H5Sselect_hyperslab(xs, H5S_SELECT_SET, start, NULL, cnt, NULL);
        H5Sselect_hyperslab(ys, H5S_SELECT_SET, start, NULL, cnt, NULL);
        hid_t sx = H5Screate_simple(2, cnt, NULL), sy = H5Screate_simple(1, cnt, NULL);
        H5Pset_virtual(xcpl, xs, names[i], "/x", sx);
        H5Pset_virtual(ycpl, ys, names[i], "/y", sy);
        H5Sclose(sx);
        H5Sclose(sy);
        at += rows[i];
    }
    H5Sselect_all(xs);
    H5Sselect_all(ys);
    hid_t dx = H5Dcreate2(f, "x", H5T_IEEE_F32LE, xs, H5P_DEFAULT, xcpl, H5P_DEFAULT);
    hid_t dy = H5Dcreate2(f, "y", H5T_STD_I32LE, ys, H5P_DEFAULT, ycpl, H5P_DEFAULT);
    CHECK(dx >= 0 && dy >= 0);
    H5Dclose(dx);
    H5Dclose(dy);
    H5Pclose(xcpl);
    H5Pclose(ycpl);
    H5Sclose(xs);
    H5Sclose(ys);
    H5Fclose(f);

    ffn_dataset *ds;
    ffn_status st = ffn_dataset_open(&ds, v);
    CHECK_MSG(st == FFN_OK, "%s", ffn_last_error());
    if (ds) {
        CHECK(ffn_dataset_get_info(ds)->rows == 9 && ffn_dataset_get_info(ds)->num_classes == 4);
        /* Its sources, for tools that must not write over them. */
        CHECK(ffn_dataset_source_count(ds) == 2 && ffn_dataset_source(ds, 2) == NULL);
        CHECK(ffn_dataset_source_count(ds) == 2 && strcmp(ffn_dataset_source(ds, 0), a) == 0 &&
              strcmp(ffn_dataset_source(ds, 1), b) == 0);
        const uint64_t idx[] = { 3, 4, 5, 8 }; /* runs across the shard boundary */
        const uint64_t src[] = { 3, 4, 0, 3 }; /* row within its shard */
        float x[12];
        int32_t y[4];
        CHECK(ffn_dataset_read_rows(ds, idx, 4, x, y, NULL) == FFN_OK);
        int ok = 1;
        for (int i = 0; i < 4; i++) {
            for (int c = 0; c < 3; c++) ok &= x[i * 3 + c] == (float)(src[i] * 10 + (uint64_t)c);
            ok &= y[i] == (int32_t)(src[i] % 4);
        }
        CHECK(ok);
        ffn_dataset_close(ds);
    }
    /* A shard gone: HDF5 would read fill values; open refuses, naming it. */
    CHECK(rename(b, tmp_path("part-b.moved")) == 0);
    expect_open_fail(v, FFN_ERR_FORMAT, "part-b.h5", "missing");
    /* A shard too short for its mapping. */
    CHECK(write_float_labels(b, 3, 3, 4) == FFN_OK);
    expect_open_fail(v, FFN_ERR_FORMAT, "part-b.h5", "the mapping needs 12");
}

typedef struct {
    ffn_dataset *ds;
    size_t rows;
    int failures;
    char message[256];
} reader_arg;

static void *reader(void *p)
{
    reader_arg *r = p;
    uint64_t idx[64];
    float x[64 * 3];
    int32_t y[64];
    for (int rep = 0; rep < 200; rep++) {
        size_t n = 0;
        for (uint64_t i = (uint64_t)rep % 5; i < r->rows && n < 64; i += 1 + (i % 3)) idx[n++] = i;
        if (ffn_dataset_read_rows(r->ds, idx, n, x, y, NULL) != FFN_OK) {
            snprintf(r->message, sizeof r->message, "%s", ffn_last_error());
            r->failures++;
            continue;
        }
        for (size_t i = 0; i < n; i++)
            if (x[i * 3 + 1] != (float)(idx[i] * 10 + 1) || y[i] != (int32_t)(idx[i] % 4)) r->failures++;
    }
    /* An error on this thread comes back as a message, not a printed HDF5 stack. */
    const uint64_t beyond[] = { r->rows };
    if (ffn_dataset_read_rows(r->ds, beyond, 1, x, y, NULL) != FFN_ERR_ARG) r->failures++;
    return NULL;
}

static void test_threads(void)
{
    const char *p = tmp_path("threads.h5");
    CHECK(write_float_labels(p, 300, 3, 4) == FFN_OK);
    ffn_dataset *a, *b;
    CHECK(ffn_dataset_open(&a, p) == FFN_OK);
    CHECK(ffn_dataset_open(&b, p) == FFN_OK);
    if (!a || !b) return;
    reader_arg ra = { a, 300, 0, "" }, rb = { b, 300, 0, "" };
    pthread_t t;
    CHECK(pthread_create(&t, NULL, reader, &ra) == 0);
    reader(&rb); /* the main thread reads its own handle meanwhile */
    pthread_join(t, NULL);
    CHECK_MSG(ra.failures == 0, "%s", ra.message);
    CHECK_MSG(rb.failures == 0, "%s", rb.message);
    ffn_dataset_close(a);
    ffn_dataset_close(b);
}

/* Rows read with pread at their file offsets (data_rows.c) against HDF5's own
 * selections (FFN_DATA_DIRECT=0): bitwise the same values, for row-chunked
 * files of several chunks (uint8 + labels, float32 + targets), a contiguous
 * file, and a compressed one (which stays on HDF5's reads). Reads: sorted
 * scattered rows (runs inside and across chunk boundaries) and ranges. */
static int same_rows(const char *path, int want_direct)
{
    ffn_dataset *a = NULL, *b = NULL;
    unsetenv("FFN_DATA_DIRECT");
    CHECK(ffn_dataset_open(&a, path) == FFN_OK);
    setenv("FFN_DATA_DIRECT", "0", 1);
    CHECK(ffn_dataset_open(&b, path) == FFN_OK);
    unsetenv("FFN_DATA_DIRECT");
    if (!a || !b) return 0;
    CHECK_MSG(ffn_dataset_direct_reads(a) == want_direct, "%s: direct reads %d, expected %d", path,
              ffn_dataset_direct_reads(a), want_direct);
    CHECK(!ffn_dataset_direct_reads(b));
    const ffn_dataset_info *in = ffn_dataset_get_info(a);
    size_t rows = in->rows, d = in->features, k = in->has_labels ? 1 : in->target_cols;
    uint64_t *idx = malloc(rows * sizeof *idx);
    float *xa = malloc(rows * d * sizeof *xa), *xb = malloc(rows * d * sizeof *xb);
    float *va = malloc(rows * k * sizeof *va), *vb = malloc(rows * k * sizeof *vb);
    int32_t *la = malloc(rows * sizeof *la), *lb = malloc(rows * sizeof *lb);
    int same = idx && xa && xb && va && vb && la && lb;
    uint32_t state = 12345;
    for (int trial = 0; same && trial < 40; trial++) {
        size_t n = 0;
        int keep = 1 + trial % 7; /* every keep-th row, on average: runs of several lengths */
        for (size_t r = 0; r < rows; r++) {
            state = state * 1664525u + 1013904223u;
            if ((state >> 8) % (unsigned)keep == 0) idx[n++] = r;
        }
        if (trial % 5 == 4) { /* a range instead */
            size_t start = (size_t)(state >> 4) % rows, len = rows - start < 1500 ? rows - start : 1500;
            CHECK(ffn_dataset_read_range(a, start, len, xa, la, va) == FFN_OK);
            CHECK(ffn_dataset_read_range(b, start, len, xb, lb, vb) == FFN_OK);
            n = len;
        } else {
            CHECK(ffn_dataset_read_rows(a, idx, n, xa, la, va) == FFN_OK);
            CHECK(ffn_dataset_read_rows(b, idx, n, xb, lb, vb) == FFN_OK);
        }
        same &= memcmp(xa, xb, n * d * sizeof *xa) == 0;
        same &= in->has_labels ? memcmp(la, lb, n * sizeof *la) == 0 : memcmp(va, vb, n * k * sizeof *va) == 0;
    }
    CHECK_MSG(same, "%s: direct and HDF5 reads differ", path);
    free(idx), free(xa), free(xb), free(va), free(vb), free(la), free(lb);
    ffn_dataset_close(a);
    ffn_dataset_close(b);
    return same;
}

static void test_direct_reads(void)
{
    /* uint8, 1000 bytes a row: the writer's ~1 MiB chunks hold 1048 rows, so 3001 rows are 3 chunks. */
    const size_t rows = 3001, feats = 1000;
    const char *p1 = tmp_path("direct-u8.h5");
    ffn_dataset_layout L1 = { .rows = rows, .features = feats, .x_uint8 = 1, .x_scale = 1.0f / 255,
                              .has_labels = 1, .target_cols = 1, .num_classes = 7 };
    uint8_t *x8 = malloc(rows * feats);
    float *xf = malloc(rows * 300 * sizeof *xf), *t = malloc(rows * 3 * sizeof *t);
    int32_t *y = malloc(rows * sizeof *y);
    if (!x8 || !xf || !t || !y) return;
    for (size_t i = 0; i < rows * feats; i++) x8[i] = (uint8_t)(i * 2654435761u >> 24);
    for (size_t r = 0; r < rows; r++) y[r] = (int32_t)(r % 7);
    ffn_dataset_writer *w;
    CHECK(ffn_dataset_writer_create(&w, p1, &L1) == FFN_OK);
    CHECK(ffn_dataset_writer_rows(w, 0, rows, x8, y) == FFN_OK);
    CHECK(ffn_dataset_writer_close(w) == FFN_OK);
    CHECK(same_rows(p1, 1));
    /* float32, 1200 bytes a row, with float targets [N, 3]. */
    const char *p2 = tmp_path("direct-f32.h5");
    ffn_dataset_layout L2 = { .rows = rows, .features = 300, .has_labels = 0, .target_cols = 3 };
    for (size_t i = 0; i < rows * 300; i++) xf[i] = (float)(i % 977) * 0.25f - 100.0f;
    for (size_t i = 0; i < rows * 3; i++) t[i] = (float)i * 0.5f;
    CHECK(ffn_dataset_writer_create(&w, p2, &L2) == FFN_OK);
    CHECK(ffn_dataset_writer_rows(w, 0, rows, xf, t) == FFN_OK);
    CHECK(ffn_dataset_writer_close(w) == FFN_OK);
    CHECK(same_rows(p2, 1));
    /* Contiguous (HDF5's default layout). */
    const char *p3 = tmp_path("direct-contig.h5");
    raw_spec s3 = { .xtype = H5T_NATIVE_FLOAT, .xrank = 2, .xd = { rows, 300 }, .x = xf,
                    .ytype = H5T_NATIVE_INT32, .yrank = 1, .yd = { rows, 0 }, .y = y, .num_classes = 7 };
    write_raw(p3, &s3);
    CHECK(same_rows(p3, 1));
    /* Compressed: HDF5 reads it (through its chunk cache), the direct path stays off. */
    const char *p4 = tmp_path("direct-gzip.h5");
    hid_t f = H5Fcreate(p4, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t xd[2] = { rows, 300 }, yd[1] = { rows }, cx[2] = { 256, 300 }, cy[1] = { 256 };
    hid_t sx = H5Screate_simple(2, xd, NULL), sy = H5Screate_simple(1, yd, NULL);
    hid_t px = H5Pcreate(H5P_DATASET_CREATE), py = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(px, 2, cx);
    H5Pset_deflate(px, 1);
    H5Pset_chunk(py, 1, cy);
    hid_t dx = H5Dcreate2(f, "x", H5T_IEEE_F32LE, sx, H5P_DEFAULT, px, H5P_DEFAULT);
    hid_t dy = H5Dcreate2(f, "y", H5T_STD_I32LE, sy, H5P_DEFAULT, py, H5P_DEFAULT);
    H5Dwrite(dx, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, xf);
    H5Dwrite(dy, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
    H5Dclose(dx), H5Dclose(dy), H5Pclose(px), H5Pclose(py), H5Sclose(sx), H5Sclose(sy), H5Fclose(f);
    CHECK(same_rows(p4, 0));
    /* /x in an external raw file (contiguous layout, but not in this file): HDF5 reads it. */
    const char *p5 = tmp_path("direct-external.h5");
    char ext[512];
    snprintf(ext, sizeof ext, "%s", tmp_path("direct-external.bin"));
    f = H5Fcreate(p5, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    sx = H5Screate_simple(2, xd, NULL), sy = H5Screate_simple(1, yd, NULL);
    px = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_external(px, ext, 0, (hsize_t)rows * 300 * sizeof(float));
    dx = H5Dcreate2(f, "x", H5T_IEEE_F32LE, sx, H5P_DEFAULT, px, H5P_DEFAULT);
    dy = H5Dcreate2(f, "y", H5T_STD_I32LE, sy, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(dx, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, xf);
    H5Dwrite(dy, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
    H5Dclose(dx), H5Dclose(dy), H5Pclose(px), H5Sclose(sx), H5Sclose(sy), H5Fclose(f);
    CHECK(same_rows(p5, 0));
    free(x8), free(xf), free(t), free(y);
}

/* FFN_OPEN_TIMEOUT: whole seconds (0 = off) open as before; junk fails the
 * open naming the variable, instead of silently guarding with the default. */
static void test_open_timeout_setting(void)
{
    const char *p = tmp_path("timeout.h5");
    CHECK(write_float_labels(p, 4, 2, 3) == FFN_OK);
    const char *fine[] = {"0", "5", "", "604800"};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        setenv("FFN_OPEN_TIMEOUT", fine[i], 1);
        ffn_dataset *ds = NULL;
        CHECK_MSG(ffn_dataset_open(&ds, p) == FFN_OK, "'%s': %s", fine[i], ffn_last_error());
        ffn_dataset_close(ds);
    }
    const char *junk[] = {"soon", "-1", "2.5", "10s", "604801", "99999999999999999999"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        setenv("FFN_OPEN_TIMEOUT", junk[i], 1);
        ffn_dataset *ds = NULL;
        CHECK_MSG(ffn_dataset_open(&ds, p) == FFN_ERR_ARG && ds == NULL, "'%s' accepted", junk[i]);
        CHECK_MSG(contains(ffn_last_error(), "FFN_OPEN_TIMEOUT") && contains(ffn_last_error(), junk[i]) &&
                      contains(ffn_last_error(), "expected a whole number of seconds from 0 to 604800"),
                  "%s", ffn_last_error());
    }
    unsetenv("FFN_OPEN_TIMEOUT");
}

int main(void)
{
    if (tmp_dir_make("data") != 0) return 1;
    test_float_labels();
    test_uint8_scale();
    test_float_targets();
    test_validation();
    test_writer_atomic();
    test_virtual();
    test_threads();
    test_direct_reads();
    test_open_timeout_setting();
    tmp_dir_remove();
    return check_done("test_data");
}
