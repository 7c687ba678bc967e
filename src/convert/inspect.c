/* ffn-data info on files that are not ffn datasets: .npy, .npz, IDX, CSV and
 * LIBSVM (plain or gzip'd), described without converting, streaming: rows,
 * columns, dtype, the label column, classes and their counts.
 *
 * The format is told by content (magic bytes; for text, the first data
 * line), never by the extension alone, and the output says what it assumed. */
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <zlib.h>

#include "convert.h"
#include "csv_summary.h"
#include "inspect.h"
#include "libsvm_scan.h"
#include "npy_stream.h"
#include "npz_archive.h"

static const char *const CMD = "info";

/* Labels are counted in an array indexed by the label up to this (else only the range is given). */
enum { MAX_COUNTED_LABEL = 1 << 16, SNIFF_BYTES = 1 << 16 };

static void print_counts(const char *const *names, const uint64_t *counts, size_t n)
{
    printf("class counts:");
    for (size_t c = 0; c < n; c++) printf(" %s:%llu", names[c], (unsigned long long)counts[c]);
    printf("\n");
}

/* Streams a 1-D integer array: its label range and, when small, the counts. */
static int npy_label_counts(npy_stream *s, const char *indent)
{
    enum { BLOCK = 1 << 16 };
    unsigned char *raw = malloc(BLOCK * s->item);
    uint64_t *counts = calloc(MAX_COUNTED_LABEL, sizeof *counts);
    if (!raw || !counts) {
        free(raw);
        free(counts);
        return data_error(CMD, "out of memory");
    }
    double lo = 0, hi = 0;
    int rc = 0;
    for (size_t at = 0; at < s->shape[0]; at += BLOCK) {
        size_t m = s->shape[0] - at < BLOCK ? s->shape[0] - at : BLOCK;
        if ((rc = npy_read_exact(s, raw, m * s->item, CMD))) {
            if (rc < 0) rc = data_error(CMD, "%s: the data ends at row %zu of %zu", s->name, at, s->shape[0]);
            break;
        }
        for (size_t i = 0; i < m; i++) {
            double v = npy_element(s, raw, i);
            if (at + i == 0 || v < lo) lo = v;
            if (at + i == 0 || v > hi) hi = v;
            if (v >= 0 && v < MAX_COUNTED_LABEL) counts[(size_t)v]++;
        }
    }
    if (!rc) {
        printf("%slabels: %.0f..%.0f", indent, lo, hi);
        if (lo < 0) printf(" (negative: ffn-data npy refuses them; labels are 0..K-1)\n");
        else if (hi >= MAX_COUNTED_LABEL) printf(" (too many to count)\n");
        else {
            printf(", num_classes %.0f as ffn-data npy would write it\n%sclass counts:", hi + 1, indent);
            for (size_t c = 0; c <= (size_t)hi; c++)
                if (counts[c]) printf(" %zu:%llu", c, (unsigned long long)counts[c]);
            printf("\n");
        }
    }
    free(raw);
    free(counts);
    return rc;
}

/* Shape, dtype and (for 1-D integers) labels of an array whose header is read. */
static int describe_array(npy_stream *s)
{
    char d[64];
    printf("shape: %s\nrows: %zu\n", npy_describe(s, d, sizeof d), s->shape[0]);
    if (s->ndim == 2) {
        printf("columns: %zu (as x: %s; as y: %s)\n", s->shape[1],
               s->descr[1] == 'u' ? "uint8, scale 1/255" : s->descr[1] == 'f' ? "float32" : "refused (u1, f4 or f8)",
               s->descr[1] == 'f' ? "float targets" : "refused (2-D targets are f4 or f8)");
        return 0;
    }
    if (s->descr[1] == 'f') {
        printf("as y: refused (1-D labels are integers)\n");
        return 0;
    }
    return npy_label_counts(s, "");
}

static int describe_npy(const char *path)
{
    npy_stream s;
    int rc = npy_file_open(&s, path, CMD);
    if (rc) return rc;
    printf("file: %s\nformat: npy (NumPy array, by its \\x93NUMPY magic)\n", path);
    rc = describe_array(&s);
    npy_file_close(&s);
    return rc;
}

static int describe_npz(const char *path)
{
    npz_archive *z;
    int rc = npz_open(&z, path, CMD);
    if (rc) return rc;
    char list[1024];
    printf("file: %s\nformat: npz (zip of NumPy arrays, by its PK magic)\narrays: %s\n", path,
           npz_list(z, list, sizeof list));
    for (size_t i = 0; !rc && i < npz_count(z); i++) {
        const char *name = npz_array_name(z, i);
        if (!name) continue;
        npy_stream s;
        if ((rc = npz_member_open(z, i, &s, CMD))) break;
        char d[64];
        printf("array '%s' (%s):\n  shape: %s\n", name, npz_method(z, i), npy_describe(&s, d, sizeof d));
        if (s.ndim == 1 && s.descr[1] != 'f') rc = npy_label_counts(&s, "  ");
        npz_member_close(&s);
    }
    npz_close(z);
    return rc;
}

static uint32_t be32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static int idx_item(unsigned char type, const char **name)
{
    switch (type) {
    case 0x08: *name = "ubyte"; return 1;
    case 0x09: *name = "sbyte"; return 1;
    case 0x0B: *name = "short"; return 2;
    case 0x0C: *name = "int"; return 4;
    case 0x0D: *name = "float"; return 4;
    case 0x0E: *name = "double"; return 8;
    default: return 0;
    }
}

/* The first four (decompressed) bytes are an IDX magic: 0, 0, a type, 1-4 dimensions. */
static int is_idx_magic(const unsigned char *m)
{
    const char *name;
    return m[0] == 0 && m[1] == 0 && idx_item(m[2], &name) && m[3] >= 1 && m[3] <= 4;
}

static int describe_idx(const char *path)
{
    gzFile in = gzopen(path, "rb");
    if (!in) return data_error(CMD, "%s: cannot open: %s", path, strerror(errno ? errno : ENOMEM));
    unsigned char head[4 + 16];
    const char *type = "?";
    int rc = 0;
    if (gzread(in, head, 4) != 4) {
        gzclose(in);
        return data_error(CMD, "%s: truncated IDX header", path);
    }
    int item = idx_item(head[2], &type), nd = head[3];
    if (gzread(in, head + 4, (unsigned)(4 * nd)) != 4 * nd) {
        gzclose(in);
        return data_error(CMD, "%s: truncated IDX header (%d dimensions promised)", path, nd);
    }
    uint64_t dims[4], cols = 1, total = item;
    for (int i = 0; i < nd; i++) {
        dims[i] = be32(head + 4 + 4 * i);
        if (i) cols *= dims[i];
        total *= dims[i];
    }
    printf("file: %s\nformat: IDX (by its magic 00 00 %02x %02x)%s\ntype: %s\ndims: [", path, head[2], head[3],
           gzdirect(in) ? "" : ", gzip'd", type);
    for (int i = 0; i < nd; i++) printf("%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
    printf("]\nrows: %llu\ncolumns: %llu%s\n", (unsigned long long)dims[0], (unsigned long long)cols,
           nd == 1 ? " (labels)" : "");
    /* Stream the data: its length is checked, and ubyte labels are counted. */
    uint64_t counts[256] = {0}, got = 0;
    unsigned char buf[1 << 16];
    int n;
    while ((n = gzread(in, buf, sizeof buf)) > 0) {
        if (nd == 1 && item == 1 && head[2] == 0x08)
            for (int i = 0; i < n && got + (uint64_t)i < total; i++) counts[buf[i]]++;
        got += (uint64_t)n;
    }
    int err;
    const char *msg = gzerror(in, &err);
    if (n < 0 || (err != Z_OK && err != Z_BUF_ERROR)) rc = data_error(CMD, "%s: read failed: %s", path, msg);
    else if (err == Z_BUF_ERROR) rc = data_error(CMD, "%s: the gzip stream is truncated", path);
    else if (got < total)
        rc = data_error(CMD, "%s: holds %llu data bytes, its header promises %llu (truncated)", path,
                        (unsigned long long)got, (unsigned long long)total);
    else if (nd == 1 && head[2] == 0x08) {
        printf("class counts:");
        for (int c = 0; c < 256; c++)
            if (counts[c]) printf(" %d:%llu", c, (unsigned long long)counts[c]);
        printf("\n");
    }
    gzclose(in);
    return rc;
}

static int describe_csv(const char *path, const char *why)
{
    csv_summary s;
    int rc = csv_summarize(path, &s);
    if (rc) return rc;
    printf("file: %s\nformat: CSV (%s)%s\n", path, why, s.gzipped ? ", gzip'd" : "");
    printf("rows: %zu (data rows; %s)\ncolumns: %zu\n", s.rows, s.header ? "a header row besides" : "no header row",
           s.columns);
    if (s.label_name) printf("label column: '%s' (%zu, the last, as ffn-data csv takes it by default)\n", s.label_name, s.label_col);
    else printf("label column: %zu (the last, as ffn-data csv takes it by default)\n", s.label_col);
    if (s.float_labels && !s.string_labels)
        printf("labels: %zu of the last column's values are not integers >= 0: a target column (ffn-data csv "
               "--regression 1)\n", s.float_labels);
    else if (s.string_labels) printf("labels: %zu named classes (ffn-data csv numbers them in name order)\n", s.n_labels);
    else if (s.too_many) printf("labels: integers 0..%lld, more than 4000 distinct (not counted)\n", (long long)s.max_label);
    else printf("labels: integers, num_classes %lld as ffn-data csv would write it\n", (long long)s.max_label + 1);
    if (!s.too_many && !s.float_labels) print_counts((const char *const *)s.labels, s.counts, s.n_labels);
    if (s.missing) printf("missing cells: %zu (ffn-data csv needs --fill-missing)\n", s.missing);
    if (s.nonnumeric)
        printf("non-numeric cells: %zu outside the label column, the first at %s (ffn-data csv refuses them; "
               "--label-col names another label column)\n", s.nonnumeric, s.first_nonnumeric);
    csv_summary_free(&s);
    return 0;
}

static int describe_libsvm(const char *path, const char *why)
{
    libsvm_scan *s;
    int rc = libsvm_scan_run(&s, path, LIBSVM_AUTO, 0, -1, CMD);
    if (!rc) {
        printf("file: %s\nformat: LIBSVM (%s)%s\n", path, why, libsvm_scan_gzipped(s) ? ", gzip'd" : "");
        size_t rows = libsvm_scan_rows(s), d = libsvm_scan_features(s);
        printf("rows: %zu\ncolumns: %zu (densified features; indices %s)\n", rows, d,
               libsvm_scan_zero_based(s) ? "zero-based: an index 0 is present (convert with --zero-based)"
                                         : "one-based, LIBSVM's convention (no index 0)");
        printf("nonzeros: %llu (%.3g%% dense)\n", (unsigned long long)libsvm_scan_nonzeros(s),
               100.0 * (double)libsvm_scan_nonzeros(s) / ((double)rows * (double)d));
        if (libsvm_scan_targets(s)) {
            printf("labels: not all integers: float targets (convert with --regression)\n");
        } else if (libsvm_scan_too_many(s)) {
            printf("labels: more than 4000 distinct (not counted)\n");
        } else {
            size_t k = libsvm_scan_classes(s);
            const char **names = malloc((k ? k : 1) * sizeof *names);
            uint64_t *counts = malloc((k ? k : 1) * sizeof *counts);
            if (!names || !counts) rc = data_error(CMD, "out of memory");
            else {
                size_t n = libsvm_scan_labels(s, names, counts, k);
                if (libsvm_scan_mapped(s))
                    printf("labels: %zu classes, from %s..%s mapped to 0..%zu (kept as class_names)\n", n, names[0],
                           names[n - 1], n - 1);
                else printf("labels: integers, num_classes %zu\n", k);
                print_counts(names, counts, n);
            }
            free(names);
            free(counts);
        }
    }
    libsvm_scan_free(s);
    return rc;
}

/* The first data line of a text file (not blank, not a # comment); -1 for
 * a binary file (a NUL or another control character in its first bytes). */
static int first_line(const char *path, char *line, size_t cap)
{
    gzFile in = gzopen(path, "rb");
    if (!in) return -1;
    int n = gzread(in, line, (unsigned)(cap < 4096 ? cap : 4096));
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == 0 || (c < 0x20 && !strchr("\t\r\n\f\v", c))) n = -1;
    }
    if (n <= 0 || gzrewind(in) != 0) {
        gzclose(in);
        return -1;
    }
    int found = 0;
    while (!found && gzgets(in, line, (int)cap)) {
        const char *p = line + strspn(line, " \t\r\n");
        found = *p && *p != '#';
    }
    gzclose(in);
    return found ? 0 : -1;
}

/* LABEL INDEX:VALUE ...: a number, then (at least one) INDEX:VALUE tokens only. */
static int looks_like_libsvm(char *line)
{
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    const char *sep = " \t\r\n";
    char *save, *tok = strtok_r(line, sep, &save), *end;
    if (!tok) return 0;
    strtod(tok, &end);
    if (*end || end == tok) return 0;
    int pairs = 0;
    while ((tok = strtok_r(NULL, sep, &save))) {
        if (strncmp(tok, "qid:", 4) == 0) continue;
        strtoull(tok, &end, 10);
        if (end == tok || *end != ':') return 0;
        strtod(end + 1, &end);
        if (*end) return 0;
        pairs++;
    }
    return pairs > 0;
}

static const char *extension(const char *path)
{
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    static char ext[32];
    snprintf(ext, sizeof ext, "%s", base);
    size_t n = strlen(ext);
    if (n > 3 && strcasecmp(ext + n - 3, ".gz") == 0) ext[n - 3] = '\0';
    const char *dot = strrchr(ext, '.');
    return dot ? dot : "";
}

int inspect_other(const char *path, int *handled)
{
    *handled = 0;
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return 0; /* the dataset reader says why */
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char m[8] = {0};
    size_t n = fread(m, 1, sizeof m, f);
    fclose(f);
    if (H5Fis_hdf5(path) > 0) return 0;
    *handled = 1;
    if (n >= 6 && memcmp(m, "\x93NUMPY", 6) == 0) return describe_npy(path);
    if (n >= 4 && (memcmp(m, "PK\x03\x04", 4) == 0 || memcmp(m, "PK\x05\x06", 4) == 0)) return describe_npz(path);
    unsigned char inner[4] = {0};
    gzFile in = gzopen(path, "rb");
    int got = in ? gzread(in, inner, 4) : -1;
    if (in) gzclose(in);
    if (got == 4 && is_idx_magic(inner)) return describe_idx(path);
    char *line = malloc(SNIFF_BYTES);
    if (!line) return data_error(CMD, "out of memory");
    int rc;
    const char *ext = extension(path);
    if (first_line(path, line, SNIFF_BYTES) != 0) {
        rc = data_error(CMD, "%s: not an ffn dataset (HDF5), .npy, .npz, IDX, CSV or LIBSVM file (binary, or no text "
                             "line)", path);
    } else {
        int comma = strchr(line, ',') != NULL;
        char why[160];
        if (!comma && looks_like_libsvm(line)) {
            snprintf(why, sizeof why, "assumed from the content: its first line is LABEL INDEX:VALUE ...%s%s",
                     *ext ? "; extension " : "", ext);
            rc = describe_libsvm(path, why);
        } else if (comma || strcasecmp(ext, ".csv") == 0) {
            snprintf(why, sizeof why, "assumed from the content: %s%s%s",
                     comma ? "comma-separated fields" : "one column, extension .csv", *ext && comma ? "; extension " : "",
                     comma ? ext : "");
            rc = describe_csv(path, why);
        } else {
            rc = data_error(CMD, "%s: not an ffn dataset (HDF5), .npy, .npz, IDX, CSV or LIBSVM file (its first line "
                                 "has no commas and is not LABEL INDEX:VALUE ...)", path);
        }
    }
    free(line);
    return rc;
}
