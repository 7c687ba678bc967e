/* Tests for the metadata a dataset carries (ffn_data_meta): class names and
 * standardization statistics written and read back bit for bit (names past
 * HDF5's 64 KiB compact attribute limit too), the standardization applied on
 * read equal to the converters' expression on every read path (range, rows,
 * cached), the comparison of statistics, and malformed fields refused with
 * the file and the field named. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "ffn/data.h"
#include "check.h"
#include "fixtures.h"

enum { ROWS = 37, D = 3, NAMES = 5000 };

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

static float raw_x(size_t r, size_t c) { return (float)(r * 1.25 + c * 100.0 - 7.0) * (c == 2 ? 0.001f : 1.0f); }

/* ROWS rows of D features, labels r % 3, with meta. */
static ffn_status write_with_meta(const char *path, const ffn_data_meta *m)
{
    ffn_dataset_layout L = {.rows = ROWS, .features = D, .has_labels = 1, .target_cols = 1, .num_classes = 3};
    ffn_dataset_writer *w;
    ffn_status st = ffn_dataset_writer_create(&w, path, &L);
    if (st != FFN_OK) return st;
    float x[ROWS * D];
    int32_t y[ROWS];
    for (size_t r = 0; r < ROWS; r++) {
        for (size_t c = 0; c < D; c++) x[r * D + c] = raw_x(r, c);
        y[r] = (int32_t)(r % 3);
    }
    st = ffn_dataset_writer_rows(w, 0, ROWS, x, y);
    if (st == FFN_OK) st = ffn_dataset_writer_meta(w, m);
    if (st != FFN_OK) {
        ffn_dataset_writer_abort(w);
        return st;
    }
    return ffn_dataset_writer_close(w);
}

static void test_round_trip(void)
{
    const char *p = tmp_path("meta.h5");
    double mean[D] = {1.0 / 3.0, -42.5, 0.1}, std[D] = {2.0, 1.0 / 7.0, 1e-3};
    ffn_data_meta m = {.class_count = NAMES, .features = D, .mean = mean, .std = std};
    m.class_names = calloc(NAMES, sizeof *m.class_names);
    for (size_t i = 0; i < NAMES; i++) {
        m.class_names[i] = malloc(40);
        snprintf(m.class_names[i], 40, "class \"%05zu\" with a longer name", i); /* ~160 KiB of names */
    }
    ffn_status st = write_with_meta(p, &m);
    CHECK_MSG(st == FFN_OK, "%s", ffn_last_error());
    ffn_data_meta r;
    st = ffn_data_meta_read(p, &r);
    CHECK_MSG(st == FFN_OK, "%s", ffn_last_error());
    CHECK(r.class_count == NAMES && r.features == D);
    for (size_t i = 0; r.class_names && i < r.class_count; i++)
        if (strcmp(r.class_names[i], m.class_names[i]) != 0) {
            CHECK_MSG(0, "name %zu: '%s', expected '%s'", i, r.class_names[i], m.class_names[i]);
            break;
        }
    CHECK(r.mean && memcmp(r.mean, mean, sizeof mean) == 0 && r.std && memcmp(r.std, std, sizeof std) == 0);
    CHECK(ffn_data_meta_same_stats(&r, &m));
    ffn_data_meta c;
    CHECK(ffn_data_meta_copy(&c, &r) == FFN_OK && ffn_data_meta_same_stats(&c, &r) && c.class_count == NAMES &&
          strcmp(c.class_names[NAMES - 1], m.class_names[NAMES - 1]) == 0);
    c.std[1] = nextafter(c.std[1], 1.0); /* one bit off */
    CHECK(!ffn_data_meta_same_stats(&c, &r));
    ffn_data_meta none = {0}, none2 = {0};
    CHECK(ffn_data_meta_same_stats(&none, &none2) && !ffn_data_meta_same_stats(&none, &r));
    /* Class names: the same list, or none on one side, agree; one name changed does not. */
    CHECK(ffn_data_meta_same_names(&c, &r) && ffn_data_meta_same_names(&none, &r));
    c.class_names[NAMES / 2][0] ^= 1;
    CHECK(!ffn_data_meta_same_names(&c, &r));
    c.class_names[NAMES / 2][0] ^= 1;
    c.class_count--;
    CHECK(!ffn_data_meta_same_names(&c, &r));
    c.class_count++;
    ffn_data_meta_free(&c);
    CHECK(c.class_names == NULL && c.mean == NULL && c.features == 0);

    /* Standardized on read: the converters' expression, on every read path. */
    ffn_dataset *ds;
    CHECK((st = ffn_dataset_open(&ds, p)) == FFN_OK);
    if (st == FFN_OK) {
        float want[ROWS * D], got[ROWS * D];
        for (size_t i = 0; i < ROWS; i++)
            for (size_t c2 = 0; c2 < D; c2++) want[i * D + c2] = raw_x(i, c2);
        ffn_standardize_rows(want, ROWS, D, mean, std);
        CHECK_NEAR(want[1 * D + 0], (raw_x(1, 0) - 1.0 / 3.0) / 2.0, 1e-6);
        CHECK(ffn_dataset_standardize(ds, r.mean, r.std) == FFN_OK);
        CHECK(ffn_dataset_read_range(ds, 0, ROWS, got, NULL, NULL) == FFN_OK);
        CHECK(memcmp(got, want, sizeof want) == 0);
        uint64_t idx[3] = {2, 5, 36};
        float rows3[3 * D];
        CHECK(ffn_dataset_read_rows(ds, idx, 3, rows3, NULL, NULL) == FFN_OK);
        CHECK(memcmp(rows3, want + 2 * D, D * sizeof(float)) == 0 && memcmp(rows3 + 2 * D, want + 36 * D, D * sizeof(float)) == 0);
        int cached = 0;
        CHECK(ffn_dataset_cache(ds, (size_t)1 << 20, &cached) == FFN_OK && cached);
        memset(got, 0, sizeof got);
        CHECK(ffn_dataset_read_range(ds, 0, ROWS, got, NULL, NULL) == FFN_OK);
        CHECK(memcmp(got, want, sizeof want) == 0);
        CHECK(ffn_dataset_standardize(ds, NULL, NULL) == FFN_OK); /* raw again */
        CHECK(ffn_dataset_read_range(ds, 1, 1, got, NULL, NULL) == FFN_OK);
        CHECK(got[0] == raw_x(1, 0) && got[2] == raw_x(1, 2));
        ffn_dataset_close(ds);
    }
    ffn_data_meta_free(&r);

    /* A writer refuses statistics for another feature count. */
    ffn_data_meta wrong = {.features = 2, .mean = mean, .std = std};
    st = write_with_meta(tmp_path("wrong.h5"), &wrong);
    CHECK_MSG(st == FFN_ERR_ARG && contains(ffn_last_error(), "2 feature statistics for 3 features"), "%s",
              ffn_last_error());
    for (size_t i = 0; i < NAMES; i++) free(m.class_names[i]);
    free(m.class_names);
}

/* A file with /feature_mean and /feature_std as given (n values each; std NULL: absent). */
static void write_stats(const char *path, const double *mean, const double *std, size_t n)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[1] = {n};
    hid_t s = H5Screate_simple(1, dims, NULL);
    const char *names[2] = {"feature_mean", "feature_std"};
    const double *v[2] = {mean, std};
    for (int i = 0; i < 2; i++) {
        if (!v[i]) continue;
        hid_t d = H5Dcreate2(f, names[i], H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v[i]);
        H5Dclose(d);
    }
    H5Sclose(s);
    H5Fclose(f);
}

static void expect_meta_fail(const char *path, const char *frag)
{
    ffn_data_meta m;
    ffn_status st = ffn_data_meta_read(path, &m);
    CHECK_MSG(st != FFN_OK && contains(ffn_last_error(), path) && contains(ffn_last_error(), frag),
              "%s: status %d, message '%s', expected '%s'", path, (int)st, ffn_last_error(), frag);
    CHECK(m.features == 0 && m.mean == NULL && m.class_count == 0);
}

static void test_malformed(void)
{
    double mean[2] = {0, 1}, zero_std[2] = {1, 0}, nan_mean[2] = {NAN, 0}, ok_std[2] = {1, 1};
    const char *p = tmp_path("bad_std.h5");
    write_stats(p, mean, zero_std, 2);
    expect_meta_fail(p, "/feature_std[1] is 0, expected a finite number > 0");
    p = tmp_path("nan_mean.h5");
    write_stats(p, nan_mean, ok_std, 2);
    expect_meta_fail(p, "/feature_mean[0] is nan, expected a finite number");
    p = tmp_path("mean_only.h5");
    write_stats(p, mean, NULL, 2);
    expect_meta_fail(p, "/feature_mean is present without /feature_std");
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    test_round_trip();
    test_malformed();
    return check_done("test_data_meta");
}
