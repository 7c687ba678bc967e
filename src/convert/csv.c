/* ffn-data csv: numeric CSV (optional header) to the dataset layout. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "ffn/mem.h"

static const char *const CMD = "csv";

/* Splits line in place on commas (trailing newline removed); returns the field count. */
static size_t split_fields(char *line, char **fields, size_t cap)
{
    size_t n = 0;
    line[strcspn(line, "\r\n")] = '\0';
    for (char *p = line;; p++) {
        if (n < cap) fields[n] = p;
        n++;
        p = strchr(p, ',');
        if (!p) break;
        *p = '\0';
    }
    return n;
}

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

int cmd_csv(int argc, char **argv)
{
    static const char *const known[] = {"--out", "--label-col", "--header!", "--no-header!", "--regression", "--help!", NULL};
    static const char usage[] = "usage: ffn-data csv FILE --out OUT.h5 [--label-col N|NAME] [--header|--no-header] [--regression K]\n"
                                "Numeric CSV: the label column (default: the last; N counts from 0) becomes y int32; the\n"
                                "others x float32. --regression K: the last K columns are float targets instead.\n"
                                "A first row that is not numeric is taken as a header unless --no-header.\n";
    args a;
    int rc;
    if (args_parse(&a, argc, argv, known, usage, CMD, &rc)) return rc;
    if (a.npos != 1) {
        fputs(usage, stdout);
        return usage_error(CMD, "give one CSV FILE");
    }
    const char *path = a.positional[0], *out = arg_str(&a, "--out"), *label_col = arg_str(&a, "--label-col");
    if (!out) return usage_error(CMD, "--out is required");
    uint64_t regression;
    if ((rc = arg_u64(&a, "--regression", 0, 1, 1u << 20, &regression, CMD))) return rc;
    if (regression && label_col) return usage_error(CMD, "--label-col and --regression exclude each other");
    const named_path input = {"FILE", path, NULL}, output = {"--out", out, NULL};
    if ((rc = check_outputs(CMD, &input, 1, &output, 1))) return rc;
    FILE *f = fopen(path, "r");
    if (!f) return data_error(CMD, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL, **fields = NULL;
    size_t cap = 0, ncols = 0, rows = 0, rows_cap = 0, line_no = 0, label = 0;
    double *values = NULL;
    int header = arg_has(&a, "--header") ? 1 : arg_has(&a, "--no-header") ? 0 : -1;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        line_no++;
        if (line[strspn(line, " \t\r\n")] == '\0') continue; /* blank line */
        if (ncols == 0) {
            size_t commas = 0;
            for (const char *p = line; *p; p++) commas += *p == ',';
            fields = malloc((commas + 1) * sizeof *fields);
            if (!fields) { rc = data_error(CMD, "out of memory"); break; }
        }
        size_t n = split_fields(line, fields, ncols ? ncols : (size_t)-1);
        if (ncols == 0) {
            ncols = n;
            double v;
            int numeric = 1;
            for (size_t k = 0; k < ncols; k++) numeric &= parse_number(fields[k], &v) == 0;
            if (header < 0) header = !numeric;
            if (label_col) {
                char *end;
                unsigned long idx = strtoul(label_col, &end, 10);
                if (*end == '\0' && end != label_col) label = idx;
                else {
                    label = ncols;
                    for (size_t k = 0; header && k < ncols; k++)
                        if (strcmp(fields[k], label_col) == 0) label = k;
                }
                if (label >= ncols) {
                    rc = usage_error(CMD, "--label-col %s: no such column in %s (%zu columns%s)", label_col, path,
                                     ncols, header ? "" : ", and no header to match names");
                    break;
                }
            } else {
                label = ncols - 1;
            }
            if (regression && regression >= ncols) {
                rc = usage_error(CMD, "--regression %llu: %s has only %zu columns", (unsigned long long)regression, path, ncols);
                break;
            }
            if (ncols < 2) { rc = data_error(CMD, "%s: needs at least 2 columns, found %zu", path, ncols); break; }
            if (header) continue;
        } else if (n != ncols) {
            rc = data_error(CMD, "%s line %zu: %zu fields, expected %zu like the first line", path, line_no, n, ncols);
            break;
        }
        if (rows == rows_cap) {
            rows_cap = rows_cap ? 2 * rows_cap : 1024;
            double *grown = realloc(values, rows_cap * ncols * sizeof *values);
            if (!grown) { rc = data_error(CMD, "out of memory at line %zu", line_no); break; }
            values = grown;
        }
        for (size_t k = 0; k < ncols; k++) {
            double v;
            if (parse_number(fields[k], &v) != 0 || !isfinite(v)) {
                rc = data_error(CMD, "%s line %zu column %zu: '%s' is not a finite number", path, line_no, k, fields[k]);
                break;
            }
            values[rows * ncols + k] = v;
        }
        if (rc) break;
        rows++;
    }
    free(line);
    free(fields);
    fclose(f);
    if (!rc && rows == 0) rc = data_error(CMD, "%s: no data rows", path);
    table t = {0};
    if (!rc) {
        size_t ny = regression ? (size_t)regression : 1, nx = ncols - ny;
        t.rows = rows;
        t.cols = nx;
        t.has_labels = !regression;
        t.target_cols = regression ? ny : 0;
        t.xf = ffn_alloc(rows, nx * sizeof(float));
        if (regression) t.targets = ffn_alloc(rows, ny * sizeof(float));
        else t.labels = ffn_alloc(rows, sizeof(int32_t));
        if (!t.xf || (!t.labels && !t.targets)) rc = data_error(CMD, "out of memory");
        for (size_t r = 0; !rc && r < rows; r++) {
            const double *row = values + r * ncols;
            size_t j = 0;
            for (size_t k = 0; k < ncols; k++) {
                if (regression ? k >= nx : k == label) continue;
                t.xf[r * nx + j++] = (float)row[k];
            }
            if (regression) {
                for (size_t k = 0; k < ny; k++) t.targets[r * ny + k] = (float)row[nx + k];
            } else {
                double v = row[label];
                if (v != floor(v) || v < 0 || v > 2147483647.0) {
                    rc = data_error(CMD, "%s data row %zu: label %g is not an integer >= 0", path, r + 1, v);
                    break;
                }
                t.labels[r] = (int32_t)v;
                if ((size_t)v + 1 > t.num_classes) t.num_classes = (size_t)v + 1;
            }
        }
    }
    free(values);
    if (!rc) rc = table_write(&t, out, NULL, 0, NULL, 0, path);
    if (!rc) printf("ffn-data csv: %s (%zu rows, %zu features)\n", out, t.rows, t.cols);
    table_free(&t);
    return rc;
}
