/* .npy headers and block conversion over a stream (see npy_stream.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "ffn/data_writer.h"
#include "ffn/mem.h"
#include "ffn/status.h"
#include "npy_stream.h"

/* Rows per block handed to the writer, and at most this many bytes of raw x per block. */
enum { BLOCK_ROWS = 4096, BLOCK_BYTES = 8 << 20, MAX_HEADER = 1 << 20 };

static const char *read_error(const npy_stream *s)
{
    const char *why = s->error ? s->error(s->ctx) : NULL;
    return why ? why : strerror(errno ? errno : EIO);
}

int npy_read_exact(npy_stream *s, void *buf, size_t n, const char *cmd)
{
    size_t got = 0;
    while (got < n) {
        errno = 0;
        long long r = s->read(s->ctx, (char *)buf + got, n - got);
        if (r < 0) return data_error(cmd, "%s: read failed: %s", s->name, read_error(s));
        if (r == 0) return -1; /* the caller says what was missing */
        got += (size_t)r;
    }
    return 0;
}

static int header_fail(npy_stream *s, const char *cmd, int rc, const char *what)
{
    /* rc < 0: the stream ended early; else a read error was already printed. */
    return rc < 0 ? data_error(cmd, "%s: truncated header (%s)", s->name, what) : rc;
}

int npy_header_read(npy_stream *s, const char *cmd)
{
    unsigned char pre[12];
    int rc = npy_read_exact(s, pre, 8, cmd);
    if (rc > 0) return rc;
    if (rc < 0 || memcmp(pre, "\x93NUMPY", 6) != 0)
        return data_error(cmd, "%s: not a .npy file (no \\x93NUMPY magic)", s->name);
    size_t hlen, prefix;
    if (pre[6] == 1) {
        if ((rc = npy_read_exact(s, pre + 8, 2, cmd))) return header_fail(s, cmd, rc, "length");
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
        prefix = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if ((rc = npy_read_exact(s, pre + 8, 4, cmd))) return header_fail(s, cmd, rc, "length");
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8) | ((size_t)pre[10] << 16) | ((size_t)pre[11] << 24);
        prefix = 12;
    } else {
        return data_error(cmd, "%s: .npy format version %d.%d, expected 1.0, 2.0 or 3.0", s->name, pre[6], pre[7]);
    }
    if (hlen == 0 || hlen > MAX_HEADER) return data_error(cmd, "%s: header length %zu is implausible", s->name, hlen);
    char *header = calloc(hlen + 1, 1);
    if (!header) return data_error(cmd, "out of memory");
    if ((rc = npy_read_exact(s, header, hlen, cmd))) {
        free(header);
        return header_fail(s, cmd, rc, "dict");
    }
    rc = 0;
    s->ndim = 0;
    const char *d = strstr(header, "'descr'"), *fo = strstr(header, "'fortran_order'"), *sh = strstr(header, "'shape'");
    const char *p = sh ? strchr(sh, '(') : NULL;
    size_t total = 1;
    if (!d || !fo || !sh) rc = data_error(cmd, "%s: header lacks descr, fortran_order or shape", s->name);
    else if (sscanf(d, "'descr': '%7[^']'", s->descr) != 1) rc = data_error(cmd, "%s: unreadable descr", s->name);
    else if (!strstr(fo, "False"))
        rc = data_error(cmd, "%s: fortran_order arrays are not supported (save with C order: np.ascontiguousarray)", s->name);
    else if (!p) rc = data_error(cmd, "%s: unreadable shape", s->name);
    for (p = p ? p + 1 : NULL; !rc && *p && *p != ')';) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || errno || s->ndim == 2) {
            rc = data_error(cmd, "%s: shape must have 1 or 2 dimensions", s->name);
            break;
        }
        s->shape[s->ndim++] = (size_t)v;
        if (ffn_size_mul(total, (size_t)v, &total) != 0) rc = data_error(cmd, "%s: shape overflows", s->name);
        p = end;
    }
    free(header);
    if (rc) return rc;
    if (s->ndim == 1) s->shape[1] = 1;
    if (s->ndim == 0 || total == 0) return data_error(cmd, "%s: empty array", s->name);
    static const char *const types[] = {"u1", "i4", "i8", "f4", "f8"};
    int known = 0;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) known |= strcmp(s->descr + 1, types[i]) == 0;
    if (s->descr[0] == '>')
        return data_error(cmd, "%s: dtype %s is big-endian; save it little-endian (a.astype('<%s'))", s->name, s->descr,
                          s->descr + 1);
    if ((s->descr[0] != '<' && s->descr[0] != '|') || !known)
        return data_error(cmd, "%s: dtype %s is not supported (little-endian u1, i4, i8, f4 or f8)", s->name, s->descr);
    s->item = (size_t)(s->descr[2] - '0');
    size_t bytes;
    if (ffn_size_mul(total, s->item, &bytes) != 0) return data_error(cmd, "%s: size overflows", s->name);
    if (s->data_bytes >= 0) {
        s->data_bytes -= (int64_t)(prefix + hlen);
        if (s->data_bytes < (int64_t)bytes)
            return data_error(cmd, "%s: holds fewer than the %zu data bytes its header promises", s->name, bytes);
    }
    return 0;
}

const char *npy_describe(const npy_stream *s, char *buf, size_t cap)
{
    if (s->ndim == 1) snprintf(buf, cap, "[%zu] %s", s->shape[0], s->descr);
    else snprintf(buf, cap, "[%zu, %zu] %s", s->shape[0], s->shape[1], s->descr);
    return buf;
}

double npy_element(const npy_stream *s, const void *data, size_t i)
{
    const char *t = s->descr + 1;
    if (!strcmp(t, "u1")) return ((const unsigned char *)data)[i];
    if (!strcmp(t, "i4")) return ((const int32_t *)data)[i];
    if (!strcmp(t, "i8")) return (double)((const int64_t *)data)[i];
    if (!strcmp(t, "f4")) return ((const float *)data)[i];
    if (!strcmp(t, "f8")) return ((const double *)data)[i];
    return NAN;
}

static int data_short(const npy_stream *s, const char *cmd, int rc, size_t row)
{
    return rc < 0 ? data_error(cmd, "%s: the data ends at row %zu of %zu", s->name, row, s->shape[0]) : rc;
}

/* The read that meets a zip member's end makes libzip compare its CRC-32. */
static int check_end(npy_stream *s, const char *cmd)
{
    char tail[64];
    if (!s->check_end) return 0;
    errno = 0;
    long long r = s->read(s->ctx, tail, sizeof tail);
    if (r < 0) return data_error(cmd, "%s: %s (the member is corrupt)", s->name, read_error(s));
    if (r > 0) return data_error(cmd, "%s: holds more data than its header's shape", s->name);
    return 0;
}

/* Pass 1 over the labels: each in 0..INT32_MAX; the number of classes. */
static int label_classes(npy_stream *y, size_t *num_classes, const char *cmd)
{
    size_t block = BLOCK_BYTES / y->item, n = y->shape[0];
    void *raw = malloc(block * y->item);
    if (!raw) return data_error(cmd, "out of memory");
    int rc = 0;
    *num_classes = 0;
    for (size_t at = 0; !rc && at < n; at += block) {
        size_t m = n - at < block ? n - at : block;
        if ((rc = npy_read_exact(y, raw, m * y->item, cmd))) {
            rc = data_short(y, cmd, rc, at);
            break;
        }
        for (size_t i = 0; i < m; i++) {
            double v = npy_element(y, raw, i);
            if (v < 0 || v > 2147483647.0) {
                rc = data_error(cmd, "%s: label %g at row %zu is out of range", y->name, v, at + i);
                break;
            }
            if ((size_t)v + 1 > *num_classes) *num_classes = (size_t)v + 1;
        }
    }
    free(raw);
    return rc;
}

int npy_convert(npy_stream *x, npy_stream *y, npy_reopen_fn reopen_y, void *reopen_arg, const char *out,
                const char *source, const char *cmd)
{
    if (x->ndim != 2) return data_error(cmd, "%s: x must be 2-D [N, D], has %d dims", x->name, x->ndim);
    if (y->shape[0] != x->shape[0])
        return data_error(cmd, "%s has %zu rows but %s has %zu", x->name, x->shape[0], y->name, y->shape[0]);
    if (x->descr[1] != 'u' && x->descr[1] != 'f')
        return data_error(cmd, "%s: x dtype %s, expected u1, f4 or f8", x->name, x->descr);
    int labels = y->ndim == 1;
    if (labels && y->descr[1] == 'f') return data_error(cmd, "%s: 1-D labels must be integers, got %s", y->name, y->descr);
    if (!labels && y->descr[1] != 'f') return data_error(cmd, "%s: 2-D targets must be f4 or f8, got %s", y->name, y->descr);
    size_t rows = x->shape[0], cols = x->shape[1], k = y->shape[1], num_classes = 0;
    int rc;
    if (labels) {
        if ((rc = label_classes(y, &num_classes, cmd))) return rc;
        npy_stream again = *y;
        if ((rc = reopen_y(y, reopen_arg, cmd)) || (rc = npy_header_read(y, cmd))) return rc;
        if (strcmp(again.descr, y->descr) || again.shape[0] != y->shape[0] || again.ndim != y->ndim)
            return data_error(cmd, "%s: changed while it was read", y->name);
    }
    int x_uint8 = !strcmp(x->descr + 1, "u1");
    size_t xrow = cols * (x->item > sizeof(float) ? x->item : sizeof(float));
    size_t block = xrow ? BLOCK_BYTES / xrow : BLOCK_ROWS;
    if (block > BLOCK_ROWS) block = BLOCK_ROWS;
    if (block == 0) block = 1;
    void *xraw = ffn_alloc(block, cols * x->item), *yraw = ffn_alloc(block, k * y->item);
    float *xf = x_uint8 ? NULL : ffn_alloc(block, cols * sizeof(float));
    void *yv = ffn_alloc(block, labels ? sizeof(int32_t) : k * sizeof(float));
    ffn_dataset_layout layout = {.rows = rows, .features = cols, .x_uint8 = x_uint8, .x_scale = 1.0f / 255.0f,
                                 .has_labels = labels, .target_cols = labels ? 1 : k,
                                 .num_classes = labels ? num_classes : 0};
    ffn_dataset_writer *w = NULL;
    rc = 0;
    if (!xraw || !yraw || !yv || (!x_uint8 && !xf)) rc = data_error(cmd, "out of memory");
    else if (ffn_dataset_writer_create(&w, out, &layout) != FFN_OK) rc = data_error(cmd, "%s", ffn_last_error());
    for (size_t at = 0; !rc && at < rows; at += block) {
        size_t m = rows - at < block ? rows - at : block;
        if ((rc = npy_read_exact(x, xraw, m * cols * x->item, cmd))) {
            rc = data_short(x, cmd, rc, at);
            break;
        }
        if ((rc = npy_read_exact(y, yraw, m * k * y->item, cmd))) {
            rc = data_short(y, cmd, rc, at);
            break;
        }
        for (size_t i = 0; !x_uint8 && i < m * cols; i++) {
            double v = npy_element(x, xraw, i);
            if (!isfinite(v)) {
                size_t e = at * cols + i;
                rc = data_error(cmd, "%s: element %zu (row %zu) is not finite", x->name, e, e / cols);
                break;
            }
            xf[i] = (float)v;
        }
        for (size_t i = 0; !rc && i < m * (labels ? 1 : k); i++) {
            double v = npy_element(y, yraw, i);
            if (labels && (v < 0 || v > 2147483647.0)) { /* checked in pass 1: the file changed */
                rc = data_error(cmd, "%s: label %g at row %zu is out of range", y->name, v, at + i);
                break;
            }
            if (labels) ((int32_t *)yv)[i] = (int32_t)v;
            else ((float *)yv)[i] = (float)v;
        }
        if (!rc && ffn_dataset_writer_rows(w, at, m, x_uint8 ? xraw : (void *)xf, yv) != FFN_OK)
            rc = data_error(cmd, "%s", ffn_last_error());
    }
    if (!rc) rc = check_end(x, cmd);
    if (!rc) rc = check_end(y, cmd);
    ffn_free(xraw);
    ffn_free(yraw);
    ffn_free(xf);
    ffn_free(yv);
    ffn_status ws = FFN_OK;
    if (!rc && source) ws = ffn_dataset_writer_attr(w, "source", source);
    if (!rc && ws == FFN_OK) ws = ffn_dataset_writer_attr(w, "created_by", "ffn-data");
    if (!rc && ws == FFN_OK) ws = ffn_dataset_writer_close(w), w = NULL;
    if (!rc && ws != FFN_OK) rc = data_error(cmd, "%s", ffn_last_error());
    if (w) ffn_dataset_writer_abort(w);
    return rc;
}
