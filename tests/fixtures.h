/* The fixtures ffn's tests share: a temporary directory for a test's files,
 * small datasets written with ffn's writer or directly with HDF5, double
 * references of the activations, and a log of the gradient ranges backward
 * reports ready.
 *
 * Header-only, like check.h (whose counters belong to the test's one
 * translation unit): a test includes it and needs nothing else in its build. */
#ifndef FFN_TEST_FIXTURES_H
#define FFN_TEST_FIXTURES_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "ffn/act.h"
#include "ffn/ckpt.h"
#include "ffn/data.h"

/* ---- a temporary directory ---------------------------------------------- */

static char fixture_dir[64];

/* Makes /tmp/ffn-test-NAME-XXXXXX; 0, or -1 after a message. */
static inline int tmp_dir_make(const char *test_name)
{
    snprintf(fixture_dir, sizeof fixture_dir, "/tmp/ffn-test-%s-XXXXXX", test_name);
    if (!mkdtemp(fixture_dir)) {
        perror("mkdtemp");
        return -1;
    }
    return 0;
}

static inline const char *tmp_dir(void) { return fixture_dir; }

/* DIR/name, in one of 8 buffers used in turn (so a few paths can be held at once). */
static inline const char *tmp_path(const char *name)
{
    static char buf[8][256];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 256, "%s/%s", fixture_dir, name);
    return p;
}

/* Writes text to path (created or truncated); 0, or -1 after a message. */
static inline int write_text_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "could not create %s\n", path);
        return -1;
    }
    int bad = fputs(text, f) < 0;
    bad |= fclose(f) != 0;
    if (bad) fprintf(stderr, "could not write %s\n", path);
    return bad ? -1 : 0;
}

/* Removes the directory and everything in it; 0, or -1 after a message. */
static inline int tmp_dir_remove(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fixture_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", fixture_dir);
        return -1;
    }
    return 0;
}

/* ---- datasets ------------------------------------------------------------- */

/* All L->rows rows of x and y (types as ffn_dataset_writer_rows takes them)
 * written to path in one piece. */
static inline ffn_status write_dataset(const char *path, const ffn_dataset_layout *L, const void *x,
                                       const void *y)
{
    ffn_dataset_writer *w = NULL;
    ffn_status st = ffn_dataset_writer_create(&w, path, L);
    if (st != FFN_OK) return st;
    st = ffn_dataset_writer_rows(w, 0, L->rows, x, y);
    if (st != FFN_OK) {
        ffn_dataset_writer_abort(w);
        return st;
    }
    return ffn_dataset_writer_close(w);
}

/* A scalar attribute name = *value on an HDF5 object, replacing any before. */
static inline herr_t write_scalar_attr(hid_t obj, const char *name, hid_t file_type, hid_t mem_type,
                                       const void *value)
{
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, file_type, s, H5P_DEFAULT, H5P_DEFAULT);
    herr_t r = a >= 0 ? H5Awrite(a, mem_type, value) : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    return r;
}

/* Adds a scalar attribute to /x of an existing file, as other tools may. */
static inline herr_t add_x_attr(const char *path, const char *name, hid_t file_type, hid_t mem_type,
                                const void *value)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = f >= 0 ? H5Dopen2(f, "x", H5P_DEFAULT) : H5I_INVALID_HID;
    herr_t r = d >= 0 ? write_scalar_attr(d, name, file_type, mem_type, value) : -1;
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
    return r;
}

/* A file made directly with HDF5, past ffn's writer and its checks: x and y
 * are optional (a negative type skips). */
typedef struct {
    hid_t xtype; /* file and memory type of x, or -1 */
    int xrank;
    hsize_t xd[2];
    const void *x; /* [xd[0]] or [xd[0], xd[1]] of xtype, or NULL: not written */
    hid_t ytype;
    int yrank;
    hsize_t yd[2];
    const void *y; /* [yd[0]] or [yd[0], yd[1]] of ytype, or NULL: not written */
    int num_classes; /* < 0: no attribute */
    double scale;    /* > 0: "scale" attribute on /x */
} raw_spec;

static inline void write_raw(const char *path, const raw_spec *s)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (s->xtype >= 0) {
        hid_t sp = H5Screate_simple(s->xrank, s->xd, NULL);
        hid_t d = H5Dcreate2(f, "x", s->xtype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (s->x) H5Dwrite(d, s->xtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->x);
        if (s->scale > 0) write_scalar_attr(d, "scale", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &s->scale);
        H5Dclose(d);
        H5Sclose(sp);
    }
    if (s->ytype >= 0) {
        hid_t sp = H5Screate_simple(s->yrank, s->yd, NULL);
        hid_t d = H5Dcreate2(f, "y", s->ytype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (s->y) H5Dwrite(d, s->ytype, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->y);
        H5Dclose(d);
        H5Sclose(sp);
    }
    if (s->num_classes >= 0) {
        long long v = s->num_classes;
        write_scalar_attr(f, "num_classes", H5T_STD_I64LE, H5T_NATIVE_LLONG, &v);
    }
    H5Fclose(f);
}

/* ---- double references of the activations --------------------------------- */

/* act(v) of an element-wise activation; NaN for softmax (see ref_act_row). */
static inline double ref_act(ffn_act a, double slope, double v)
{
    switch (a) {
    case FFN_ACT_IDENTITY: return v;
    case FFN_ACT_RELU: return v > 0 ? v : 0;
    case FFN_ACT_LEAKY_RELU: return v > 0 ? v : slope * v;
    case FFN_ACT_SIGMOID: return 1 / (1 + exp(-v));
    case FFN_ACT_TANH: return tanh(v);
    case FFN_ACT_GELU: return 0.5 * v * (1 + erf(v / sqrt(2.0)));
    default: return NAN;
    }
}

/* y = act(z) over one row of n values (softmax is over the row). */
static inline void ref_act_row(ffn_act a, double slope, const double *z, double *y, size_t n)
{
    if (a == FFN_ACT_SOFTMAX) {
        double max = z[0], sum = 0;
        for (size_t c = 1; c < n; c++) max = fmax(max, z[c]);
        for (size_t c = 0; c < n; c++) sum += exp(z[c] - max);
        for (size_t c = 0; c < n; c++) y[c] = exp(z[c] - max) / sum;
        return;
    }
    for (size_t c = 0; c < n; c++) y[c] = ref_act(a, slope, z[c]);
}

/* ---- the gradient ranges backward reports ready ----------------------------- */

enum { READY_LOG_MAX = 32 };

typedef struct {
    size_t n; /* ranges reported (only the first READY_LOG_MAX are kept) */
    size_t offset[READY_LOG_MAX], count[READY_LOG_MAX];
} ready_log;

/* The ready callback of ffn_model_backward, user a ready_log. */
static inline void ready_log_add(void *user, size_t offset, size_t count)
{
    ready_log *log = user;
    if (log->n < READY_LOG_MAX) {
        log->offset[log->n] = offset;
        log->count[log->n] = count;
    }
    log->n++;
}

/* A valid checkpoint of a small model (dense:3:relu,dense:2 on 2 inputs) at
 * path, recording config_json (NULL: none); with_adam adds zeroed Adam state. */
static inline ffn_status write_small_checkpoint(const char *path, const char *config_json, int with_adam)
{
    ffn_model *m = NULL;
    ffn_status st = ffn_model_create_from_text(&m, "dense:3:relu,dense:2", 2);
    if (st != FFN_OK) return st;
    ffn_model_init_params(m, 1);
    ffn_checkpoint c;
    memset(&c, 0, sizeof c);
    c.model_spec = ffn_model_spec_text(m);
    c.input_dim = 2;
    c.loss = "softmax_ce";
    c.model = m;
    c.param_count = ffn_model_param_count(m);
    c.params = ffn_model_params(m);
    c.config_json = (char *)config_json;
    if (with_adam) {
        c.optimizer = "adam";
        c.state_count = 2;
        c.state_names[0] = "m";
        c.state_names[1] = "v";
        c.state[0] = calloc(c.param_count, sizeof(float));
        c.state[1] = calloc(c.param_count, sizeof(float));
    }
    st = ffn_checkpoint_save(&c, path);
    free(c.state[0]);
    free(c.state[1]);
    free(c.model_spec);
    ffn_model_free(m);
    return st;
}

#endif
