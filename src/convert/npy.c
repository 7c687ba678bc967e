/* ffn-data npy: NumPy .npy arrays (format 1.0-3.0, little-endian, C order) to the layout. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "ffn/mem.h"
#include "ffn/status.h"

static const char *const CMD = "npy";

typedef struct {
    char descr[8]; /* e.g. "<f4", "|u1" */
    int ndim;
    size_t shape[2];
    void *data;    /* [shape[0]] or [shape[0], shape[1]] elements of descr's type */
} npy;

/* Loads the header, checks it and reads the data. */
static int npy_load(const char *path, npy *a)
{
    memset(a, 0, sizeof *a);
    FILE *f = fopen(path, "rb");
    if (!f) return data_error(CMD, "%s: cannot open: %s", path, strerror(errno));
    unsigned char pre[10];
    int rc = 0;
    char *header = NULL;
    if (fread(pre, 1, 8, f) != 8 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        rc = data_error(CMD, "%s: not a .npy file (no \\x93NUMPY magic)", path);
        goto out;
    }
    size_t hlen;
    if (pre[6] == 1) {
        if (fread(pre + 8, 1, 2, f) != 2) { rc = data_error(CMD, "%s: truncated header", path); goto out; }
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
    } else if (pre[6] == 2 || pre[6] == 3) {
        unsigned char l[4];
        if (fread(l, 1, 4, f) != 4) { rc = data_error(CMD, "%s: truncated header", path); goto out; }
        hlen = (size_t)l[0] | ((size_t)l[1] << 8) | ((size_t)l[2] << 16) | ((size_t)l[3] << 24);
    } else {
        rc = data_error(CMD, "%s: .npy format version %d.%d, expected 1.0, 2.0 or 3.0", path, pre[6], pre[7]);
        goto out;
    }
    if (hlen == 0 || hlen > (1u << 20)) { rc = data_error(CMD, "%s: header length %zu is implausible", path, hlen); goto out; }
    header = calloc(hlen + 1, 1);
    if (!header || fread(header, 1, hlen, f) != hlen) { rc = data_error(CMD, "%s: truncated header", path); goto out; }
    const char *d = strstr(header, "'descr'"), *fo = strstr(header, "'fortran_order'"), *sh = strstr(header, "'shape'");
    if (!d || !fo || !sh) { rc = data_error(CMD, "%s: header lacks descr, fortran_order or shape", path); goto out; }
    if (sscanf(d, "'descr': '%7[^']'", a->descr) != 1) { rc = data_error(CMD, "%s: unreadable descr", path); goto out; }
    if (!strstr(fo, "False")) { rc = data_error(CMD, "%s: fortran_order arrays are not supported (save with C order)", path); goto out; }
    const char *p = strchr(sh, '(');
    if (!p) { rc = data_error(CMD, "%s: unreadable shape", path); goto out; }
    p++;
    size_t total = 1;
    while (*p && *p != ')') {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || errno || a->ndim == 2) { rc = data_error(CMD, "%s: shape must have 1 or 2 dimensions", path); goto out; }
        a->shape[a->ndim++] = (size_t)v;
        if (ffn_size_mul(total, (size_t)v, &total) != 0) { rc = data_error(CMD, "%s: shape overflows", path); goto out; }
        p = end;
    }
    if (a->ndim == 0 || total == 0) { rc = data_error(CMD, "%s: empty array", path); goto out; }
    size_t item = (size_t)atoi(a->descr + 2);
    if ((a->descr[0] != '<' && a->descr[0] != '|') || (item != 1 && item != 4 && item != 8)) {
        rc = data_error(CMD, "%s: dtype %s is not supported (little-endian u1, i4, i8, f4 or f8)", path, a->descr);
        goto out;
    }
    size_t bytes;
    if (ffn_size_mul(total, item, &bytes) != 0) { rc = data_error(CMD, "%s: size overflows", path); goto out; }
    a->data = ffn_alloc(bytes, 1);
    if (!a->data) { rc = data_error(CMD, "%s: out of memory for %zu bytes", path, bytes); goto out; }
    if (fread(a->data, 1, bytes, f) != bytes) {
        rc = data_error(CMD, "%s: holds fewer than the %zu data bytes its header promises", path, bytes);
        ffn_free(a->data);
        a->data = NULL;
    }
out:
    free(header);
    fclose(f);
    return rc;
}

static double element(const npy *a, size_t i)
{
    const char *t = a->descr + 1;
    if (!strcmp(t, "u1")) return ((const unsigned char *)a->data)[i];
    if (!strcmp(t, "i4")) return ((const int32_t *)a->data)[i];
    if (!strcmp(t, "i8")) return (double)((const int64_t *)a->data)[i];
    if (!strcmp(t, "f4")) return ((const float *)a->data)[i];
    if (!strcmp(t, "f8")) return ((const double *)a->data)[i];
    return NAN;
}

int cmd_npy(int argc, char **argv)
{
    static const char *const known[] = {"--x", "--y", "--out", "--help!", NULL};
    static const char usage[] = "usage: ffn-data npy --x X.npy --y Y.npy --out OUT.h5\n"
                                "X: [N, D] u1 (kept as uint8, scale 1/255), f4 or f8. Y: [N] integer labels (u1, i4, i8)\n"
                                "or [N, K] f4/f8 float targets.\n";
    args a;
    int rc;
    if (args_parse(&a, argc, argv, known, usage, CMD, &rc)) return rc;
    const char *xp = arg_str(&a, "--x"), *yp = arg_str(&a, "--y"), *out = arg_str(&a, "--out");
    if (!xp || !yp || !out) return usage_error(CMD, "--x, --y and --out are required");
    const named_path inputs[] = {{"--x", xp, NULL}, {"--y", yp, NULL}}, output = {"--out", out, NULL};
    if ((rc = check_outputs(CMD, inputs, 2, &output, 1))) return rc;
    npy X, Y;
    if ((rc = npy_load(xp, &X))) return rc;
    if ((rc = npy_load(yp, &Y))) { ffn_free(X.data); return rc; }
    table t = {0};
    if (X.ndim != 2) rc = data_error(CMD, "%s: x must be 2-D [N, D], has %d dims", xp, X.ndim);
    else if (Y.shape[0] != X.shape[0]) rc = data_error(CMD, "%s has %zu rows but %s has %zu", xp, X.shape[0], yp, Y.shape[0]);
    else if (X.descr[1] != 'u' && X.descr[1] != 'f') rc = data_error(CMD, "%s: x dtype %s, expected u1, f4 or f8", xp, X.descr);
    if (!rc) {
        t.rows = X.shape[0];
        t.cols = X.shape[1];
        t.x_uint8 = !strcmp(X.descr + 1, "u1");
        t.scale = 1.0f / 255.0f;
        t.has_labels = Y.ndim == 1;
        t.target_cols = Y.ndim == 2 ? Y.shape[1] : 0;
        if (t.has_labels && Y.descr[1] == 'f') rc = data_error(CMD, "%s: 1-D labels must be integers, got %s", yp, Y.descr);
        if (!t.has_labels && Y.descr[1] != 'f') rc = data_error(CMD, "%s: 2-D targets must be f4 or f8, got %s", yp, Y.descr);
    }
    if (!rc) {
        if (t.x_uint8) {
            t.xu = X.data;
            X.data = NULL;
        } else {
            t.xf = ffn_alloc(t.rows, t.cols * sizeof(float));
            for (size_t i = 0; t.xf && i < t.rows * t.cols; i++) {
                double v = element(&X, i);
                if (!isfinite(v)) { rc = data_error(CMD, "%s: element %zu (row %zu) is not finite", xp, i, i / t.cols); break; }
                t.xf[i] = (float)v;
            }
        }
        if (t.has_labels) {
            t.labels = ffn_alloc(t.rows, sizeof(int32_t));
            for (size_t i = 0; !rc && t.labels && i < t.rows; i++) {
                double v = element(&Y, i);
                if (v < 0 || v > 2147483647.0) { rc = data_error(CMD, "%s: label %g at row %zu is out of range", yp, v, i); break; }
                t.labels[i] = (int32_t)v;
                if ((size_t)v + 1 > t.num_classes) t.num_classes = (size_t)v + 1;
            }
        } else {
            t.targets = ffn_alloc(t.rows, t.target_cols * sizeof(float));
            for (size_t i = 0; t.targets && i < t.rows * t.target_cols; i++) t.targets[i] = (float)element(&Y, i);
        }
        if (!rc && ((!t.xu && !t.xf) || (!t.labels && !t.targets))) rc = data_error(CMD, "out of memory");
    }
    ffn_free(X.data);
    ffn_free(Y.data);
    if (!rc) rc = table_write(&t, out, NULL, 0, NULL, 0, xp);
    if (!rc) printf("ffn-data npy: %s (%zu rows, %zu features)\n", out, t.rows, t.cols);
    table_free(&t);
    return rc;
}
