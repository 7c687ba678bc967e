/* ffn-data csv: a CSV file (RFC 4180 quoting through libcsv; plain or gzip'd)
 * to the dataset layout.
 *
 * Two streaming passes keep memory independent of the file's size: pass 1
 * counts the rows, checks every cell, collects the distinct string labels
 * and the column sums that --fill-missing mean needs; pass 2 converts and
 * hands the writer blocks of rows. Rows are numbered as records of the file,
 * a header being row 1, so a row number is the line number unless a quoted
 * field spans lines (blank lines are skipped and not counted). */
#include <csv.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "convert.h"
#include "csv_summary.h"
#include "ffn/data_writer.h"
#include "ffn/status.h"

static const char *const CMD = "csv";

/* String labels become classes 0..K-1; the mapping is kept in memory (a hash
 * table at most half full) and written as class_names (an attribute up to
 * 4000 names, a string dataset beyond: see ffn_dataset_writer_attr_strings). */
enum { MAX_CLASSES = 65536, LABEL_SLOTS = 131072 };
/* Rows per block handed to the writer, and at most this many bytes of x per block. */
enum { BLOCK_ROWS = 4096, BLOCK_BYTES = 8 << 20, READ_BYTES = 1 << 16 };

typedef enum { FILL_NONE, FILL_ZERO, FILL_MEAN, FILL_VALUE } fill_mode;
typedef enum { ROLE_X, ROLE_LABEL, ROLE_TARGET } column_role;

typedef struct {
    char *name;
    int32_t index; /* the class, once the names are sorted */
    uint64_t count; /* rows with this label (pass 1; for info) */
} label_slot;

typedef struct {
    const char *path, *label_arg;
    int pass, rc;                 /* rc: the first error's exit code; the callbacks then do nothing */
    size_t regression;            /* K target columns, or 0 for a label column */
    int header;                   /* -1: not decided yet (auto-detect) */
    size_t ncols, label, nx;
    column_role *role;            /* [ncols] */
    size_t *slot;                 /* [ncols]: the column's index in x or in the targets */
    char **names;                 /* [ncols] header names, or NULL */
    /* The current record. */
    size_t record, field;         /* 1-based record number; fields seen in it */
    /* The first record's fields, kept until its role (header or data) is known. */
    char **first;
    size_t nfirst, first_cap;
    int first_pending;            /* numeric features, non-numeric label: header if no other label is a name */
    size_t data_rows, expected_rows; /* expected: pass 1's count, checked in pass 2 */
    /* Missing values: mean needs each x column's sum and count of present cells. */
    fill_mode fill;
    double fill_value;
    double *sum, *fill_by_col;    /* [nx] */
    uint64_t *present;            /* [nx] */
    size_t filled;
    /* Labels: numbers, or names when any label is not a number. */
    int string_labels, too_many;
    label_slot *slots;            /* [LABEL_SLOTS], open addressing */
    size_t distinct;
    int64_t max_label;
    /* Pass 2: a block of converted rows. */
    ffn_dataset_writer *writer;
    size_t block_rows, in_block;
    uint64_t written;
    float *xb, *tb;
    int32_t *yb;
    int row_ok;                   /* the current record has the right field count so far */
    int summarizing;              /* csv_summarize: pass 1 only; missing and non-numeric cells counted */
    size_t float_labels;          /* when summarizing: labels that are not integers >= 0 */
    size_t nonnumeric, nonnumeric_record, nonnumeric_col; /* when summarizing: how many, and the first */
} csv_state;

static int parse_number(const char *s, double *v)
{
    while (*s == ' ' || *s == '\t') s++;
    if (!*s) return -1;
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    while (*end == ' ' || *end == '\t') end++;
    return errno || *end ? -1 : 0;
}

/* Spellings of a missing value: an empty cell, NA, N/A, NaN, null (any case). */
static int is_missing(const char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (n == 0) return 1;
    static const char *const spellings[] = {"na", "n/a", "nan", "null"};
    for (size_t i = 0; i < sizeof spellings / sizeof *spellings; i++)
        if (strlen(spellings[i]) == n && strncasecmp(s, spellings[i], n) == 0) return 1;
    return 0;
}

/* "'age' (3)" with a header, else "3". */
static const char *column_name(const csv_state *st, size_t k, char *buf, size_t cap)
{
    if (st->names && k < st->ncols) snprintf(buf, cap, "'%.200s' (%zu)", st->names[k], k);
    else snprintf(buf, cap, "%zu", k);
    return buf;
}

static void cell_error(csv_state *st, size_t record, size_t k, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void cell_error(csv_state *st, size_t record, size_t k, const char *fmt, ...)
{
    if (st->rc) return;
    char what[512], col[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    st->rc = data_error(CMD, "%s: row %zu, column %s: %s", st->path, record, column_name(st, k, col, sizeof col), what);
}

static uint64_t hash_text(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The slot holding name, or the empty slot where it would go. */
static label_slot *label_find(csv_state *st, const char *name)
{
    size_t i = (size_t)hash_text(name) & (LABEL_SLOTS - 1);
    while (st->slots[i].name && strcmp(st->slots[i].name, name) != 0) i = (i + 1) & (LABEL_SLOTS - 1);
    return &st->slots[i];
}

/* Pass 1: remembers a label's text; a name (not a number) makes every label a name. */
static void label_collect(csv_state *st, size_t record, const char *text, int is_name)
{
    st->string_labels |= is_name;
    if (!st->too_many) {
        label_slot *s = label_find(st, text);
        if (!s->name) {
            if (st->distinct == MAX_CLASSES) {
                st->too_many = 1;
            } else if (!(s->name = strdup(text))) {
                st->rc = data_error(CMD, "out of memory");
                return;
            } else {
                st->distinct++;
            }
        }
        if (s->name && st->pass == 1) s->count++;
    }
    if (st->too_many && st->string_labels)
        cell_error(st, record, st->label,
                   "more than %d distinct class names (string labels map to at most %d classes)",
                   MAX_CLASSES, MAX_CLASSES);
}

/* One cell of a data row: checked in pass 1, converted into the block in pass 2. */
static void data_cell(csv_state *st, size_t record, size_t k, const char *text)
{
    if (st->rc || k >= st->ncols) return;
    column_role role = st->role[k];
    size_t j = st->slot[k];
    if (role == ROLE_LABEL) {
        double v = 0;
        if (is_missing(text)) {
            cell_error(st, record, k, "missing label ('%.80s'); labels cannot be filled", text);
            return;
        }
        int number = parse_number(text, &v) == 0;
        if (number && isfinite(v) && (v != floor(v) || v < 0) && st->summarizing) {
            st->float_labels++; /* info: a target column, not labels */
            return;
        }
        if (number && (!isfinite(v) || v != floor(v) || v < 0 || v > 2147483647.0)) {
            cell_error(st, record, k, "label '%.80s' is not an integer >= 0 (nor a class name)", text);
            return;
        }
        if (st->pass == 1) {
            if (number && v > (double)st->max_label) st->max_label = (int64_t)v;
            label_collect(st, record, text, !number);
        } else if (st->string_labels) {
            label_slot *s = label_find(st, text);
            if (!s->name) {
                cell_error(st, record, k, "label '%.80s' was not in the file in the first pass (did it change?)", text);
                return;
            }
            st->yb[st->in_block] = s->index;
        } else {
            st->yb[st->in_block] = (int32_t)v;
        }
        return;
    }
    double v;
    if (is_missing(text)) {
        if (role == ROLE_TARGET) {
            cell_error(st, record, k, "empty or NA target ('%.80s'); targets cannot be filled", text);
            return;
        }
        if (st->fill == FILL_NONE) {
            cell_error(st, record, k, "%s; fill with --fill-missing mean|zero|VALUE",
                       *text ? "missing value (NA/NaN/null)" : "empty cell");
            return;
        }
        if (st->pass == 2) st->xb[st->in_block * st->nx + j] = (float)st->fill_by_col[j];
        if (st->pass == 2 || st->summarizing) st->filled++;
        return;
    }
    if (parse_number(text, &v) != 0 && st->summarizing) {
        if (st->nonnumeric++ == 0) st->nonnumeric_record = record, st->nonnumeric_col = k;
        return;
    }
    if (parse_number(text, &v) != 0) {
        cell_error(st, record, k, "'%.80s' is not a number", text);
        return;
    }
    if (!isfinite(v)) {
        cell_error(st, record, k, "'%.80s' is not a finite number", text);
        return;
    }
    if (st->pass == 1) {
        if (role == ROLE_X) {
            st->sum[j] += v;
            st->present[j]++;
        }
    } else if (role == ROLE_X) {
        st->xb[st->in_block * st->nx + j] = (float)v;
    } else {
        st->tb[st->in_block * st->regression + j] = (float)v;
    }
}

static void flush_block(csv_state *st)
{
    if (st->rc || st->in_block == 0) return;
    const void *y = st->regression ? (const void *)st->tb : (const void *)st->yb;
    if (ffn_dataset_writer_rows(st->writer, st->written, st->in_block, st->xb, y) != FFN_OK) {
        st->rc = data_error(CMD, "%s", ffn_last_error());
        return;
    }
    st->written += st->in_block;
    st->in_block = 0;
}

/* The end of a data row: its field count, then (pass 2) the block. */
static void data_row_end(csv_state *st, size_t record, size_t fields)
{
    if (st->rc) return;
    if (fields != st->ncols) {
        st->rc = data_error(CMD, "%s: row %zu: %zu fields, expected %zu like %s", st->path, record, fields,
                            st->ncols, st->header == 1 ? "the header" : "row 1");
        return;
    }
    st->data_rows++;
    if (st->pass == 2) {
        if (st->data_rows > st->expected_rows) {
            st->rc = data_error(CMD, "%s: row %zu: more rows than in the first pass (did the file change?)",
                                st->path, record);
            return;
        }
        if (++st->in_block == st->block_rows) flush_block(st);
    }
}

static void replay_first_as_data(csv_state *st)
{
    for (size_t k = 0; k < st->nfirst; k++) data_cell(st, 1, k, st->first[k]);
    data_row_end(st, 1, st->nfirst);
}

/* The first record decides the columns, the label and (unless given) the header. */
static void first_record_end(csv_state *st)
{
    size_t n = st->ncols = st->nfirst;
    const char *arg = st->label_arg;
    if (st->regression && st->regression >= n) {
        st->rc = usage_error(CMD, "--regression %zu: %s has only %zu columns", st->regression, st->path, n);
        return;
    }
    if (n < 2) {
        st->rc = data_error(CMD, "%s: needs at least 2 columns, found %zu", st->path, n);
        return;
    }
    st->label = n - 1;
    if (arg) {
        char *end;
        unsigned long idx = strtoul(arg, &end, 10);
        if (*end == '\0' && end != arg && arg[0] != '-') {
            st->label = idx;
        } else {
            if (st->header == 0) {
                st->rc = usage_error(CMD, "--label-col %s names a column, but --no-header says %s has no names", arg, st->path);
                return;
            }
            st->label = n;
            for (size_t k = 0; k < n; k++)
                if (strcmp(st->first[k], arg) == 0) st->label = k;
            if (st->label < n) st->header = 1;
        }
        if (st->label >= n) {
            st->rc = usage_error(CMD, "--label-col %s: no such column in %s (%zu columns%s)", arg, st->path, n,
                                 st->header == 0 ? ", and no header to match names" : "");
            return;
        }
    }
    st->role = calloc(n, sizeof *st->role);
    st->slot = calloc(n, sizeof *st->slot);
    size_t ny = st->regression ? st->regression : 1;
    st->nx = n - ny;
    st->sum = calloc(st->nx, sizeof *st->sum);
    st->present = calloc(st->nx, sizeof *st->present);
    st->fill_by_col = calloc(st->nx, sizeof *st->fill_by_col);
    if (!st->role || !st->slot || !st->sum || !st->present || !st->fill_by_col) {
        st->rc = data_error(CMD, "out of memory");
        return;
    }
    for (size_t k = 0, j = 0; k < n; k++) {
        if (st->regression && k >= st->nx) st->role[k] = ROLE_TARGET, st->slot[k] = k - st->nx;
        else if (!st->regression && k == st->label) st->role[k] = ROLE_LABEL;
        else st->role[k] = ROLE_X, st->slot[k] = j++;
    }
    if (st->header < 0) {
        /* A header has a non-numeric feature; a row whose only non-number is
         * its label is a header when every other label is a number. */
        int names = 0, label_name = 0;
        double v;
        for (size_t k = 0; k < n; k++) {
            int text = !is_missing(st->first[k]) && parse_number(st->first[k], &v) != 0;
            if (st->role[k] == ROLE_LABEL) label_name = text;
            else names |= text;
        }
        if (names) st->header = 1;
        else if (label_name) st->first_pending = 1;
        else st->header = 0;
    }
    if (st->header == 1) {
        st->names = st->first;
        st->first = NULL;
    } else if (st->header == 0) {
        replay_first_as_data(st);
    }
}

static void on_field(void *text, size_t len, void *data)
{
    csv_state *st = data;
    if (st->rc) return;
    const char *s = text ? text : "";
    if (text && memchr(s, '\0', len)) {
        cell_error(st, st->record, st->field, "a NUL byte in the cell");
        return;
    }
    if (st->record == 1) {
        /* Kept whole in both passes: pass 2 needs the same decision. */
        if (st->nfirst == st->first_cap) {
            size_t cap = st->first_cap ? 2 * st->first_cap : 64;
            char **grown = realloc(st->first, cap * sizeof *grown);
            if (!grown) {
                st->rc = data_error(CMD, "out of memory");
                return;
            }
            st->first = grown;
            st->first_cap = cap;
        }
        if (!(st->first[st->nfirst++] = strdup(s))) st->rc = data_error(CMD, "out of memory");
    } else {
        data_cell(st, st->record, st->field, s);
    }
    st->field++;
}

static void on_row_end(int terminator, void *data)
{
    (void)terminator;
    csv_state *st = data;
    if (st->rc) return;
    if (st->record == 1) {
        if (st->pass == 1) first_record_end(st);
        else if (st->header == 0) replay_first_as_data(st);
    } else {
        data_row_end(st, st->record, st->field);
    }
    st->record++;
    st->field = 0;
}

static void free_strings(char **s, size_t n)
{
    for (size_t i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

/* Reads the whole file through libcsv once; gzread reads gzip (by its magic
 * bytes) and plain files alike. */
static void run_pass(csv_state *st, int *gzipped)
{
    st->record = 1;
    st->field = 0;
    st->data_rows = 0;
    /* The first record is kept again: pass 2 meets it before anything else. */
    free_strings(st->first, st->nfirst);
    st->first = NULL;
    st->nfirst = st->first_cap = 0;
    errno = 0;
    gzFile in = gzopen(st->path, "rb");
    if (!in) {
        st->rc = data_error(CMD, "%s: cannot open: %s", st->path, errno ? strerror(errno) : "out of memory");
        return;
    }
    gzbuffer(in, READ_BYTES);
    struct csv_parser parser;
    if (csv_init(&parser, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0) {
        gzclose(in);
        st->rc = data_error(CMD, "out of memory");
        return;
    }
    static char buf[READ_BYTES];
    int n = 0;
    while (!st->rc && (n = gzread(in, buf, sizeof buf)) > 0) {
        if (csv_parse(&parser, buf, (size_t)n, on_field, on_row_end, st) != (size_t)n && !st->rc)
            st->rc = data_error(CMD, "%s: row %zu: %s (a quote must open a field and close it, and quotes inside a quoted field are doubled)",
                                st->path, st->record, csv_strerror(csv_error(&parser)));
    }
    if (!st->rc) {
        int err;
        const char *msg = gzerror(in, &err);
        if (n < 0 || (err != Z_OK && err != Z_BUF_ERROR)) st->rc = data_error(CMD, "%s: read failed: %s", st->path, msg);
        else if (err == Z_BUF_ERROR) st->rc = data_error(CMD, "%s: the gzip stream is truncated", st->path);
    }
    if (!st->rc && csv_fini(&parser, on_field, on_row_end, st) != 0 && !st->rc)
        st->rc = data_error(CMD, "%s: row %zu: %s (an unclosed quote?)", st->path, st->record,
                            csv_strerror(csv_error(&parser)));
    *gzipped = !gzdirect(in);
    csv_free(&parser);
    gzclose(in);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* After pass 1: the header decision left pending, the row count, the fill
 * values, and the sorted class names (*class_names, [distinct]). */
/* Everything a conversion or a summary allocated in st (not st.rc). */
static void csv_state_free(csv_state *st)
{
    for (size_t i = 0; st->slots && i < LABEL_SLOTS; i++) free(st->slots[i].name);
    free(st->slots);
    free_strings(st->first, st->nfirst);
    free_strings(st->names, st->ncols);
    free(st->role);
    free(st->slot);
    free(st->sum);
    free(st->present);
    free(st->fill_by_col);
    free(st->xb);
    free(st->tb);
    free(st->yb);
}

static void finish_pass1(csv_state *st, char ***class_names)
{
    if (st->rc) return;
    if (st->ncols == 0) {
        st->rc = data_error(CMD, "%s: no rows", st->path);
        return;
    }
    if (st->first_pending) {
        st->header = !st->string_labels;
        if (st->header) {
            st->names = st->first;
            st->first = NULL;
        } else {
            replay_first_as_data(st);
        }
        st->first_pending = 0;
        if (st->rc) return;
    }
    if (st->data_rows == 0) {
        st->rc = data_error(CMD, "%s: no data rows", st->path);
        return;
    }
    for (size_t j = 0; j < st->nx; j++) {
        if (st->fill == FILL_VALUE) st->fill_by_col[j] = st->fill_value;
        else if (st->fill == FILL_MEAN && st->present[j]) st->fill_by_col[j] = st->sum[j] / (double)st->present[j];
        else if (st->fill == FILL_MEAN) {
            size_t k = 0;
            while (st->role[k] != ROLE_X || st->slot[k] != j) k++;
            char col[256];
            st->rc = data_error(CMD, "%s: column %s: no values at all, so no mean to fill with", st->path,
                                column_name(st, k, col, sizeof col));
            return;
        }
        if (st->fill == FILL_MEAN && !isfinite((float)st->fill_by_col[j])) {
            st->rc = data_error(CMD, "%s: a column's mean is beyond float32", st->path);
            return;
        }
    }
    if (st->string_labels) {
        char **sorted = malloc(st->distinct * sizeof *sorted);
        if (!sorted) {
            st->rc = data_error(CMD, "out of memory");
            return;
        }
        size_t n = 0;
        for (size_t i = 0; i < LABEL_SLOTS; i++)
            if (st->slots[i].name) sorted[n++] = st->slots[i].name;
        qsort(sorted, n, sizeof *sorted, compare_names);
        for (size_t c = 0; c < n; c++) label_find(st, sorted[c])->index = (int32_t)c;
        *class_names = sorted;
    }
}

int cmd_csv(int argc, char **argv)
{
    static const char *const known[] = {"--out", "--label-col", "--header!", "--no-header!", "--regression",
                                        "--fill-missing", "--help!", NULL};
    static const char usage[] =
        "usage: ffn-data csv FILE[.gz] --out OUT.h5 [--label-col N|NAME] [--header|--no-header] [--regression K]\n"
        "                    [--fill-missing zero|mean|VALUE]\n"
        "CSV with RFC 4180 quoting, plain or gzip'd. The label column (default: the last; N counts from 0)\n"
        "becomes y int32: integers >= 0 as they are, or, when any label is not a number, class names\n"
        "sorted and numbered 0..K-1 (K <= 65536; stored as the class_names attribute). The other\n"
        "columns become x float32. --regression K: the last K columns are float targets instead.\n"
        "A first row with a non-numeric feature is a header (so is one whose only non-number is the\n"
        "label when every other label is a number) unless --no-header. Missing cells (empty, NA, N/A,\n"
        "NaN, null) are refused unless --fill-missing fills features with 0, the column's mean or VALUE.\n";
    args a;
    int rc;
    if (args_parse(&a, argc, argv, known, usage, CMD, &rc)) return rc;
    if (a.npos != 1) {
        fputs(usage, stdout);
        return usage_error(CMD, "give one CSV FILE");
    }
    csv_state st = {.path = a.positional[0], .label_arg = arg_str(&a, "--label-col"), .max_label = -1};
    const char *out = arg_str(&a, "--out"), *fill = arg_str(&a, "--fill-missing");
    if (!out) return usage_error(CMD, "--out is required");
    uint64_t regression;
    if ((rc = arg_u64(&a, "--regression", 0, 1, 1u << 20, &regression, CMD))) return rc;
    st.regression = (size_t)regression;
    if (regression && st.label_arg) return usage_error(CMD, "--label-col and --regression exclude each other");
    if (arg_has(&a, "--header") && arg_has(&a, "--no-header")) return usage_error(CMD, "--header and --no-header exclude each other");
    st.header = arg_has(&a, "--header") ? 1 : arg_has(&a, "--no-header") ? 0 : -1;
    if (fill) {
        if (strcmp(fill, "zero") == 0) st.fill = FILL_ZERO;
        else if (strcmp(fill, "mean") == 0) st.fill = FILL_MEAN;
        else if (parse_number(fill, &st.fill_value) == 0 && isfinite((float)st.fill_value)) st.fill = FILL_VALUE;
        else return usage_error(CMD, "--fill-missing %s: expected zero, mean or a finite number", fill);
    }
    const named_path input = {"FILE", st.path, NULL}, output = {"--out", out, NULL};
    if ((rc = check_outputs(CMD, &input, 1, &output, 1))) return rc;

    char **class_names = NULL;
    int gzipped = 0;
    st.slots = calloc(LABEL_SLOTS, sizeof *st.slots);
    if (!st.slots) st.rc = data_error(CMD, "out of memory");
    st.pass = 1;
    if (!st.rc) run_pass(&st, &gzipped);
    finish_pass1(&st, &class_names);

    if (!st.rc) {
        st.pass = 2;
        st.expected_rows = st.data_rows;
        size_t row_bytes = st.nx * sizeof(float) + (st.regression ? st.regression * sizeof(float) : sizeof(int32_t));
        st.block_rows = BLOCK_BYTES / row_bytes;
        if (st.block_rows > BLOCK_ROWS) st.block_rows = BLOCK_ROWS;
        if (st.block_rows == 0) st.block_rows = 1;
        st.xb = malloc(st.block_rows * st.nx * sizeof *st.xb);
        if (st.regression) st.tb = malloc(st.block_rows * st.regression * sizeof *st.tb);
        else st.yb = malloc(st.block_rows * sizeof *st.yb);
        if (!st.xb || (!st.tb && !st.yb)) st.rc = data_error(CMD, "out of memory");
        ffn_dataset_layout layout = {.rows = st.expected_rows, .features = st.nx, .has_labels = !st.regression,
                                     .target_cols = st.regression ? st.regression : 1,
                                     .num_classes = st.regression ? 0
                                                    : st.string_labels ? st.distinct
                                                                       : (size_t)st.max_label + 1};
        if (!st.rc && ffn_dataset_writer_create(&st.writer, out, &layout) != FFN_OK)
            st.rc = data_error(CMD, "%s", ffn_last_error());
        if (!st.rc) run_pass(&st, &gzipped);
        flush_block(&st);
        if (!st.rc && st.data_rows != st.expected_rows)
            st.rc = data_error(CMD, "%s: %zu data rows now, %zu in the first pass (did the file change?)", st.path,
                               st.data_rows, st.expected_rows);
        ffn_status ws = FFN_OK;
        if (!st.rc && class_names)
            ws = ffn_dataset_writer_attr_strings(st.writer, "class_names", (const char *const *)class_names, st.distinct);
        if (!st.rc && ws == FFN_OK) ws = ffn_dataset_writer_attr(st.writer, "source", st.path);
        if (!st.rc && ws == FFN_OK) ws = ffn_dataset_writer_attr(st.writer, "created_by", "ffn-data");
        if (!st.rc && ws == FFN_OK) ws = ffn_dataset_writer_close(st.writer), st.writer = NULL;
        if (!st.rc && ws != FFN_OK) st.rc = data_error(CMD, "%s", ffn_last_error());
        if (st.writer) ffn_dataset_writer_abort(st.writer);
    }
    if (!st.rc) {
        printf("ffn-data csv: %s (%zu rows, %zu features", out, st.expected_rows, st.nx);
        if (st.string_labels) printf(", %zu named classes", st.distinct);
        if (st.filled) printf(", %zu missing cells filled", st.filled);
        printf("%s)\n", gzipped ? "; read gzip'd" : "");
    }
    free(class_names); /* the names themselves belong to the slots */
    csv_state_free(&st);
    return st.rc;
}

/* Label slots in order: numbers by value, names alphabetically. */
static int compare_label_slots(const void *a, const void *b)
{
    const char *x = ((const label_slot *)a)->name, *y = ((const label_slot *)b)->name;
    char *ex, *ey;
    double u = strtod(x, &ex), v = strtod(y, &ey);
    if (!*ex && !*ey && u != v) return (u > v) - (u < v);
    return strcmp(x, y);
}

int csv_summarize(const char *path, csv_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    csv_state st = {.path = path, .max_label = -1, .header = -1, .fill = FILL_ZERO, .summarizing = 1};
    char **class_names = NULL;
    st.slots = calloc(LABEL_SLOTS, sizeof *st.slots);
    if (!st.slots) st.rc = data_error(CMD, "out of memory");
    st.pass = 1;
    if (!st.rc) run_pass(&st, &sum->gzipped);
    finish_pass1(&st, &class_names);
    free(class_names);
    if (!st.rc) {
        sum->rows = st.data_rows;
        sum->columns = st.ncols;
        sum->header = st.header == 1;
        sum->label_col = st.label;
        sum->label_name = st.names ? strdup(st.names[st.label]) : NULL;
        sum->string_labels = st.string_labels;
        sum->max_label = st.max_label;
        sum->missing = st.filled;
        sum->nonnumeric = st.nonnumeric;
        sum->float_labels = st.float_labels;
        if (st.nonnumeric) {
            char col[256];
            snprintf(sum->first_nonnumeric, sizeof sum->first_nonnumeric, "row %zu, column %s",
                     st.nonnumeric_record, column_name(&st, st.nonnumeric_col, col, sizeof col));
        }
        sum->too_many = st.too_many;
        sum->n_labels = st.distinct;
        sum->labels = calloc(st.distinct ? st.distinct : 1, sizeof *sum->labels);
        sum->counts = calloc(st.distinct ? st.distinct : 1, sizeof *sum->counts);
        label_slot *used = calloc(st.distinct ? st.distinct : 1, sizeof *used);
        if (!sum->labels || !sum->counts || !used) st.rc = data_error(CMD, "out of memory");
        size_t n = 0;
        for (size_t i = 0; !st.rc && i < LABEL_SLOTS; i++)
            if (st.slots[i].name) used[n++] = st.slots[i], st.slots[i].name = NULL;
        qsort(used, n, sizeof *used, compare_label_slots);
        for (size_t c = 0; c < n; c++) sum->labels[c] = used[c].name, sum->counts[c] = used[c].count;
        free(used);
    }
    csv_state_free(&st);
    if (st.rc) csv_summary_free(sum);
    return st.rc;
}

void csv_summary_free(csv_summary *sum)
{
    for (size_t i = 0; sum->labels && i < sum->n_labels; i++) free(sum->labels[i]);
    free(sum->labels);
    free(sum->counts);
    free(sum->label_name);
    memset(sum, 0, sizeof *sum);
}
