/* ffn-data libsvm: LIBSVM / svmlight text (plain or gzip'd) to the layout.
 *
 * A line is "LABEL INDEX:VALUE INDEX:VALUE ... [# comment]", indices
 * increasing; sparse rows are densified into x float32 [N, D]. Two
 * streaming passes keep memory independent of the file's size: pass 1 checks
 * every line, finds D (the largest index) and the distinct labels; pass 2
 * converts and hands the writer blocks of rows. Blank and comment lines are
 * skipped; messages give the line of the file and the row of the dataset
 * (1-based, blank and comment lines not counted). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "convert.h"
#include "ffn/data_writer.h"
#include "ffn/status.h"
#include "libsvm_scan.h"

static const char *const CMD = "libsvm";

/* Labels become classes: the class_names attribute holds at most 4000 names
 * (see csv.c). Densified rows are at most 2^24 features (64 MiB a row). */
enum { MAX_CLASSES = 4000, LABEL_SLOTS = 8192, MAX_FEATURES = 1 << 24 };
enum { BLOCK_ROWS = 4096, BLOCK_BYTES = 8 << 20, READ_BYTES = 1 << 16 };

typedef struct {
    int used;
    int64_t value;
    char *spelling; /* as first written in the file: "+1", "-1", "3" */
    uint64_t count;
    int32_t index;  /* the class, once sorted */
} label_slot;

struct libsvm_scan {
    const char *path, *cmd;
    libsvm_base base;
    size_t features;  /* --features D, or 0 */
    int regression, pass, rc, gzipped;
    int guess_targets; /* regression < 0: labels are classes until a non-integer one is seen */
    size_t line, rows, expected_rows;
    uint64_t nonzeros;
    size_t max_col;   /* 1 + the largest 0-based column seen (one-based: the largest index) */
    int64_t max_index;
    int saw_zero;     /* an index 0 (base AUTO: then zero-based) */
    /* Labels (not --regression). */
    label_slot *slots;
    size_t distinct;
    int too_many;
    int64_t min_label, max_label;
    int mapped;       /* labels become 0..K-1 in value order, names kept */
    /* Pass 2. */
    size_t d;
    ffn_dataset_writer *writer;
    size_t block_rows, in_block;
    uint64_t written;
    float *xb, *tb;
    int32_t *yb;
};

static void line_error(libsvm_scan *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line_error(libsvm_scan *s, const char *fmt, ...)
{
    if (s->rc) return;
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    s->rc = data_error(s->cmd, "%s: line %zu (row %zu): %s", s->path, s->line, s->rows + 1, what);
}

static label_slot *label_find(libsvm_scan *s, int64_t v)
{
    size_t i = (size_t)((uint64_t)v * 0x9E3779B97F4A7C15ull >> 40) & (LABEL_SLOTS - 1);
    while (s->slots[i].used && s->slots[i].value != v) i = (i + 1) & (LABEL_SLOTS - 1);
    return &s->slots[i];
}

static void label_seen(libsvm_scan *s, int64_t v, const char *text)
{
    if (v < s->min_label) s->min_label = v;
    if (v > s->max_label) s->max_label = v;
    if (s->too_many) return;
    label_slot *l = label_find(s, v);
    if (!l->used) {
        if (s->distinct == MAX_CLASSES) {
            s->too_many = 1;
            return;
        }
        if (!(l->spelling = strdup(text))) {
            s->rc = data_error(s->cmd, "out of memory");
            return;
        }
        l->used = 1;
        l->value = v;
        s->distinct++;
    }
    l->count++;
}

/* One line: checked in pass 1, converted into the block in pass 2. */
static void parse_line(libsvm_scan *s, char *text)
{
    char *hash = strchr(text, '#');
    if (hash) *hash = '\0';
    const char *sep = " \t\r\n\v\f";
    char *save = NULL, *tok = strtok_r(text, sep, &save);
    if (!tok) return; /* blank or comment only */
    if (strchr(tok, ':')) {
        line_error(s, "missing label (the line starts with '%.40s'; expected LABEL INDEX:VALUE ...)", tok);
        return;
    }
    const char *label_text = tok;
    char *end;
    errno = 0;
    double label = strtod(tok, &end);
    if (end == tok || *end || errno || !isfinite(label)) {
        line_error(s, "bad label '%.40s' (expected a number)", tok);
        return;
    }
    if (!s->regression && (label != floor(label) || fabs(label) > 2147483647.0)) {
        if (!s->guess_targets) {
            line_error(s, "label '%.40s' is not an integer (use --regression for float targets)", tok);
            return;
        }
        s->regression = 1; /* info: a non-integer label makes the labels targets */
    }
    if (s->regression && !isfinite((float)label)) {
        line_error(s, "target '%.40s' is beyond float32", tok);
        return;
    }
    if (s->pass == 2 && s->rows >= s->expected_rows) {
        line_error(s, "more rows than in the first pass (did the file change?)");
        return;
    }
    float *row = s->pass == 2 ? s->xb + s->in_block * s->d : NULL;
    if (row) memset(row, 0, s->d * sizeof *row);
    int64_t prev = -1;
    while ((tok = strtok_r(NULL, sep, &save))) {
        if (strncmp(tok, "qid:", 4) == 0) continue; /* svmlight's query id: not a feature */
        char *colon = strchr(tok, ':');
        if (!colon || colon == tok || tok[0] < '0' || tok[0] > '9') {
            line_error(s, "bad token '%.40s' (expected INDEX:VALUE)", tok);
            return;
        }
        errno = 0;
        unsigned long long idx = strtoull(tok, &end, 10);
        if (end != colon || errno || idx > (unsigned long long)INT64_MAX) {
            line_error(s, "bad index in '%.40s' (expected a whole number)", tok);
            return;
        }
        double v = strtod(colon + 1, &end);
        if (end == colon + 1 || *end) {
            line_error(s, "bad value in '%.40s' (expected INDEX:VALUE)", tok);
            return;
        }
        if (!isfinite(v) || !isfinite((float)v)) {
            line_error(s, "value in '%.40s' is not a finite float32", tok);
            return;
        }
        if ((int64_t)idx == prev) {
            line_error(s, "duplicate index %llu", idx);
            return;
        }
        if ((int64_t)idx < prev) {
            line_error(s, "index %llu after index %lld (indices must increase within a line)", idx, (long long)prev);
            return;
        }
        prev = (int64_t)idx;
        if (idx == 0) {
            if (s->base == LIBSVM_ONE_BASED) {
                line_error(s, "index 0 in a one-based file (LIBSVM counts from 1; --zero-based if yours counts from 0)");
                return;
            }
            s->saw_zero = 1;
        }
        /* The column if the file is zero-based; one-based subtracts 1 when known. */
        unsigned long long limit = s->features ? s->features : MAX_FEATURES;
        unsigned long long col = s->base == LIBSVM_ONE_BASED ? idx - 1 : idx;
        if (col >= limit) {
            if (s->features)
                line_error(s, "index %llu is beyond --features %zu (%s)", idx, s->features,
                           s->base == LIBSVM_ONE_BASED ? "indices 1..D" : "indices 0..D-1");
            else
                line_error(s, "index %llu is beyond the %d features a densified row may have (--features to check a bound)",
                           idx, MAX_FEATURES);
            return;
        }
        if ((int64_t)idx > s->max_index) s->max_index = (int64_t)idx;
        if (s->pass == 1) {
            if (col + 1 > s->max_col) s->max_col = (size_t)col + 1;
            if (v != 0) s->nonzeros++;
        } else {
            row[col] = (float)v;
        }
    }
    if (s->pass == 1) {
        if (!s->regression) label_seen(s, (int64_t)label, label_text);
    } else if (s->regression) {
        s->tb[s->in_block] = (float)label;
    } else if (!s->mapped) {
        s->yb[s->in_block] = (int32_t)label;
    } else {
        const label_slot *l = label_find(s, (int64_t)label);
        if (!l->used) {
            line_error(s, "label '%.40s' was not in the file in the first pass (did it change?)", label_text);
            return;
        }
        s->yb[s->in_block] = l->index;
    }
    s->rows++;
}

static void flush_block(libsvm_scan *s)
{
    if (s->rc || s->in_block == 0) return;
    const void *y = s->regression ? (const void *)s->tb : (const void *)s->yb;
    if (ffn_dataset_writer_rows(s->writer, s->written, s->in_block, s->xb, y) != FFN_OK) {
        s->rc = data_error(s->cmd, "%s", ffn_last_error());
        return;
    }
    s->written += s->in_block;
    s->in_block = 0;
}

/* Reads the whole file once, a line at a time (gzread reads gzip, by its
 * magic bytes, and plain files alike). */
static void run_pass(libsvm_scan *s)
{
    s->line = 0;
    s->rows = 0;
    errno = 0;
    gzFile in = gzopen(s->path, "rb");
    if (!in) {
        s->rc = data_error(s->cmd, "%s: cannot open: %s", s->path, errno ? strerror(errno) : "out of memory");
        return;
    }
    gzbuffer(in, READ_BYTES);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) s->rc = data_error(s->cmd, "out of memory");
    while (!s->rc) {
        /* One whole line, however long (a sparse row may hold many features). */
        len = 0;
        int got = 0;
        while (gzgets(in, buf + len, (int)(cap - len > INT32_MAX ? INT32_MAX : cap - len))) {
            got = 1;
            len += strlen(buf + len);
            if (len && buf[len - 1] == '\n') break;
            if (cap - len < 2) {
                char *grown = realloc(buf, cap * 2);
                if (!grown) {
                    s->rc = data_error(s->cmd, "out of memory");
                    break;
                }
                buf = grown;
                cap *= 2;
            }
        }
        if (!got || s->rc) break;
        s->line++;
        size_t before = s->rows;
        parse_line(s, buf);
        if (s->pass == 2 && s->rows > before && ++s->in_block == s->block_rows) flush_block(s);
    }
    if (!s->rc) {
        int err;
        const char *msg = gzerror(in, &err);
        if (err != Z_OK && err != Z_BUF_ERROR) s->rc = data_error(s->cmd, "%s: read failed: %s", s->path, msg);
        else if (err == Z_BUF_ERROR) s->rc = data_error(s->cmd, "%s: the gzip stream is truncated", s->path);
    }
    s->gzipped = !gzdirect(in);
    free(buf);
    gzclose(in);
}

static int compare_values(const void *a, const void *b)
{
    int64_t x = (*(label_slot *const *)a)->value, y = (*(label_slot *const *)b)->value;
    return (x > y) - (x < y);
}

int libsvm_scan_run(libsvm_scan **out, const char *path, libsvm_base base, size_t features, int regression,
                    const char *cmd)
{
    libsvm_scan *s = calloc(1, sizeof *s);
    *out = s;
    if (!s) return data_error(cmd, "out of memory");
    *s = (libsvm_scan){.path = path, .cmd = cmd, .base = base, .features = features, .regression = regression > 0,
                       .guess_targets = regression < 0, .pass = 1, .min_label = INT64_MAX, .max_label = INT64_MIN,
                       .max_index = -1};
    if (!s->regression && !(s->slots = calloc(LABEL_SLOTS, sizeof *s->slots))) return s->rc = data_error(cmd, "out of memory");
    run_pass(s);
    if (s->rc) return s->rc;
    if (s->rows == 0) return s->rc = data_error(cmd, "%s: no rows (every line is blank or a comment)", path);
    /* D: --features, else the largest index (one-based: index D is column D-1). */
    int zero = base == LIBSVM_ZERO_BASED || (base == LIBSVM_AUTO && s->saw_zero);
    s->d = features ? features : zero ? s->max_col : (size_t)(s->max_index > 0 ? s->max_index : 0);
    if (s->d == 0) return s->rc = data_error(cmd, "%s: no features at all (no INDEX:VALUE in any line)", path);
    if (!s->regression) {
        /* Labels from 0 are classes as they are; others (-1/+1, 1..K) become
         * 0..K-1 in value order, their spellings kept as class names. */
        s->mapped = s->min_label != 0;
        if (s->mapped && s->too_many)
            return s->rc = data_error(cmd, "%s: more than %d distinct labels that do not start at 0 (classes are "
                                           "numbered from 0; use --regression for values)", path, MAX_CLASSES);
        label_slot **sorted = malloc(s->distinct * sizeof *sorted);
        if (!sorted) return s->rc = data_error(cmd, "out of memory");
        size_t n = 0;
        for (size_t i = 0; i < LABEL_SLOTS; i++)
            if (s->slots[i].used) sorted[n++] = &s->slots[i];
        qsort(sorted, n, sizeof *sorted, compare_values);
        for (size_t c = 0; c < n; c++) sorted[c]->index = (int32_t)c;
        free(sorted);
    }
    return 0;
}

size_t libsvm_scan_rows(const libsvm_scan *s) { return s->rows; }
size_t libsvm_scan_features(const libsvm_scan *s) { return s->d; }
int libsvm_scan_targets(const libsvm_scan *s) { return s->regression; }
uint64_t libsvm_scan_nonzeros(const libsvm_scan *s) { return s->nonzeros; }
int libsvm_scan_zero_based(const libsvm_scan *s) { return s->base == LIBSVM_ZERO_BASED || (s->base == LIBSVM_AUTO && s->saw_zero); }
int libsvm_scan_gzipped(const libsvm_scan *s) { return s->gzipped; }
int libsvm_scan_mapped(const libsvm_scan *s) { return s->mapped; }
size_t libsvm_scan_classes(const libsvm_scan *s)
{
    return s->regression ? 0 : s->mapped ? s->distinct : (size_t)s->max_label + 1;
}

size_t libsvm_scan_labels(const libsvm_scan *s, const char **spellings, uint64_t *counts, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; s->slots && i < LABEL_SLOTS; i++) {
        const label_slot *l = &s->slots[i];
        if (!l->used) continue;
        size_t at = (size_t)l->index; /* the label's place in value order */
        if (at < cap) spellings[at] = l->spelling, counts[at] = l->count;
        n++;
    }
    return n < cap ? n : cap;
}

int libsvm_scan_too_many(const libsvm_scan *s) { return s->too_many; }

void libsvm_scan_free(libsvm_scan *s)
{
    if (!s) return;
    for (size_t i = 0; s->slots && i < LABEL_SLOTS; i++) free(s->slots[i].spelling);
    free(s->slots);
    free(s->xb);
    free(s->tb);
    free(s->yb);
    free(s);
}

/* Pass 2: the dataset at out. */
static int convert(libsvm_scan *s, const char *out)
{
    s->pass = 2;
    s->expected_rows = s->rows;
    s->block_rows = BLOCK_BYTES / (s->d * sizeof(float));
    if (s->block_rows > BLOCK_ROWS) s->block_rows = BLOCK_ROWS;
    if (s->block_rows == 0) s->block_rows = 1;
    s->xb = malloc(s->block_rows * s->d * sizeof *s->xb);
    if (s->regression) s->tb = malloc(s->block_rows * sizeof *s->tb);
    else s->yb = malloc(s->block_rows * sizeof *s->yb);
    if (!s->xb || (!s->tb && !s->yb)) return s->rc = data_error(s->cmd, "out of memory");
    /* Pass 2 checks indices against the D pass 1 found. */
    if (!s->features) s->features = s->d;
    ffn_dataset_layout layout = {.rows = s->expected_rows, .features = s->d, .has_labels = !s->regression,
                                 .target_cols = 1, .num_classes = libsvm_scan_classes(s)};
    if (ffn_dataset_writer_create(&s->writer, out, &layout) != FFN_OK)
        return s->rc = data_error(s->cmd, "%s", ffn_last_error());
    run_pass(s);
    flush_block(s);
    if (!s->rc && s->rows != s->expected_rows)
        s->rc = data_error(s->cmd, "%s: %zu rows now, %zu in the first pass (did the file change?)", s->path, s->rows,
                           s->expected_rows);
    ffn_status ws = FFN_OK;
    if (!s->rc && s->mapped) {
        const char **names = malloc(s->distinct * sizeof *names);
        uint64_t *counts = malloc(s->distinct * sizeof *counts);
        if (!names || !counts) ws = ffn_fail(FFN_ERR_NOMEM, "out of memory");
        else libsvm_scan_labels(s, names, counts, s->distinct);
        if (ws == FFN_OK) ws = ffn_dataset_writer_attr_strings(s->writer, "class_names", names, s->distinct);
        free(names);
        free(counts);
    }
    if (!s->rc && ws == FFN_OK) ws = ffn_dataset_writer_attr(s->writer, "source", s->path);
    if (!s->rc && ws == FFN_OK) ws = ffn_dataset_writer_attr(s->writer, "created_by", "ffn-data");
    if (!s->rc && ws == FFN_OK) ws = ffn_dataset_writer_close(s->writer), s->writer = NULL;
    if (!s->rc && ws != FFN_OK) s->rc = data_error(s->cmd, "%s", ffn_last_error());
    if (s->writer) ffn_dataset_writer_abort(s->writer);
    s->writer = NULL;
    return s->rc;
}

int cmd_libsvm(int argc, char **argv)
{
    static const char *const known[] = {"--out", "--features", "--regression!", "--zero-based!", "--one-based!",
                                        "--help!", NULL};
    static const char usage[] =
        "usage: ffn-data libsvm FILE[.gz] --out OUT.h5 [--features D] [--regression] [--zero-based|--one-based]\n"
        "LIBSVM / svmlight text, plain or gzip'd: lines 'LABEL INDEX:VALUE ... [# comment]', indices\n"
        "increasing (one-based unless --zero-based; qid:N is skipped). Rows are densified into x float32\n"
        "[N, D], D the largest index unless --features D (then larger indices are refused). Integer\n"
        "labels become y int32: labels from 0 as they are; others (-1/+1, 1..K) as 0..K-1 in value order,\n"
        "their spellings kept as the class_names attribute. --regression keeps float targets [N, 1].\n";
    args a;
    int rc;
    if (args_parse(&a, argc, argv, known, usage, CMD, &rc)) return rc;
    if (a.npos != 1) {
        fputs(usage, stdout);
        return usage_error(CMD, "give one LIBSVM FILE");
    }
    const char *path = a.positional[0], *out = arg_str(&a, "--out");
    if (!out) return usage_error(CMD, "--out is required");
    if (arg_has(&a, "--zero-based") && arg_has(&a, "--one-based"))
        return usage_error(CMD, "--zero-based and --one-based exclude each other");
    uint64_t features;
    if ((rc = arg_u64(&a, "--features", 0, 1, MAX_FEATURES, &features, CMD))) return rc;
    const named_path input = {"FILE", path, NULL}, output = {"--out", out, NULL};
    if ((rc = check_outputs(CMD, &input, 1, &output, 1))) return rc;
    libsvm_scan *s;
    libsvm_base base = arg_has(&a, "--zero-based") ? LIBSVM_ZERO_BASED : LIBSVM_ONE_BASED;
    rc = libsvm_scan_run(&s, path, base, (size_t)features, arg_has(&a, "--regression"), CMD);
    if (!rc) rc = convert(s, out);
    if (!rc) {
        printf("ffn-data libsvm: %s (%zu rows, %zu features", out, s->rows, s->d);
        if (s->regression) printf(", float targets");
        else if (s->mapped) printf(", %zu classes from labels %s..%s", s->distinct, label_find(s, s->min_label)->spelling,
                                   label_find(s, s->max_label)->spelling);
        else printf(", %zu classes", libsvm_scan_classes(s));
        printf("%s)\n", s->gzipped ? "; read gzip'd" : "");
    }
    libsvm_scan_free(s);
    return rc;
}
