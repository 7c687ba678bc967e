/* ffn-data: the in-memory table, flag parsing, messages and the check that
 * outputs stay off inputs, shared by the commands. */
#include "convert.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/data.h"
#include "../files.h" /* internal: file identity, as ffn-train checks it */
#include "ffn/mem.h"
#include "ffn/rng.h"

int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ffn-data %s: error: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see ffn-data %s --help)\n", cmd);
    va_end(ap);
    return EXIT_USAGE;
}

int data_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ffn-data %s: error: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_DATA;
}

/* ---- flags ------------------------------------------------------------------ */

/* argv[2..argc) (after the program and the command) into a: 0, or EXIT_USAGE
 * with a message. */
static int parse_flags(args *a, int argc, char **argv, const char *const *known, const char *cmd)
{
    memset(a, 0, sizeof *a);
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        if (strncmp(s, "--", 2) != 0 || strlen(s) == 2) {
            if (a->npos == 4) return usage_error(cmd, "unexpected argument '%s'", s);
            a->positional[a->npos++] = s;
            continue;
        }
        const char *match = NULL;
        int takes_value = 1;
        for (int k = 0; known[k]; k++) {
            size_t n = strlen(known[k]);
            int bang = known[k][n - 1] == '!';
            if (strncmp(known[k], s, n - (size_t)bang) == 0 && strlen(s) == n - (size_t)bang) {
                match = known[k];
                takes_value = !bang;
            }
        }
        if (!match) return usage_error(cmd, "unknown flag '%s'", s);
        if (a->count == 16) return usage_error(cmd, "too many flags");
        a->names[a->count] = s;
        if (takes_value) {
            if (i + 1 >= argc) return usage_error(cmd, "%s: missing value", s);
            a->values[a->count] = argv[++i];
        } else {
            a->values[a->count] = "";
        }
        a->count++;
    }
    return 0;
}

int args_parse(args *a, int argc, char **argv, const char *const *known, const char *usage,
               const char *cmd, int *exit_code)
{
    *exit_code = parse_flags(a, argc, argv, known, cmd);
    if (*exit_code) return 1;
    if (arg_has(a, "--help")) {
        fputs(usage, stdout);
        return 1;
    }
    return 0;
}

const char *arg_str(const args *a, const char *name)
{
    const char *v = NULL;
    for (int i = 0; i < a->count; i++)
        if (strcmp(a->names[i], name) == 0) v = a->values[i];
    return v;
}

int arg_has(const args *a, const char *name) { return arg_str(a, name) != NULL; }

int arg_u64(const args *a, const char *name, uint64_t def, uint64_t min, uint64_t max, uint64_t *out,
            const char *cmd)
{
    const char *v = arg_str(a, name);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (v[0] == '-' || !*v || errno || *end || x < min || x > max)
        return usage_error(cmd, "%s: expected an integer in [%llu, %llu], got '%s'", name,
                           (unsigned long long)min, (unsigned long long)max, v);
    *out = x;
    return 0;
}

int arg_double(const args *a, const char *name, double def, double min, double max, double *out,
               const char *cmd)
{
    const char *v = arg_str(a, name);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || errno || *end || !isfinite(x) || x < min || x > max)
        return usage_error(cmd, "%s: expected a number in [%g, %g], got '%s'", name, min, max, v);
    *out = x;
    return 0;
}

/* ---- outputs never over inputs --------------------------------------------------- */

static int same(const char *a, const char *b)
{
    /* A path whose directory does not exist yet cannot be resolved: then only
     * the same spelling names the same file. */
    return ffn_same_file(a, b) || strcmp(a, b) == 0;
}

/* "FLAG PATH", "FLAG PATH's temporary PATH.tmp" or "PATH, a virtual source of FLAG FILE". */
static void describe(char *buf, size_t cap, const named_path *p, int tmp)
{
    if (p->source_of) snprintf(buf, cap, "%s, a virtual source of %s %s", p->path, p->flag, p->source_of);
    else if (tmp) snprintf(buf, cap, "%s %s's temporary %s.tmp", p->flag, p->path, p->path);
    else snprintf(buf, cap, "%s %s", p->flag, p->path);
}

static int clash(const char *cmd, const named_path *out, int out_tmp, const named_path *other, int other_tmp,
                 int other_is_input)
{
    char a[8400], b[8400];
    describe(a, sizeof a, out, out_tmp);
    describe(b, sizeof b, other, other_tmp);
    return usage_error(cmd, "%s is the same file as %s; %s", a, b,
                       other_is_input ? "an output never replaces an input" : "each output needs a file of its own");
}

int check_outputs(const char *cmd, const named_path *in, size_t n_in, const named_path *out, size_t n_out)
{
    int rc = 0;
    char *tmp = NULL, *tmp_other = NULL;
    for (size_t i = 0; i < n_out && !rc; i++) {
        if (!out[i].path) continue;
        /* Every output is written to PATH.tmp, then renamed: that file must be free too. */
        size_t n = strlen(out[i].path) + 5;
        free(tmp);
        tmp = malloc(n);
        if (!tmp) return data_error(cmd, "out of memory");
        snprintf(tmp, n, "%s.tmp", out[i].path);
        for (size_t j = 0; j < n_in && !rc; j++) {
            if (!in[j].path) continue;
            if (same(out[i].path, in[j].path)) rc = clash(cmd, &out[i], 0, &in[j], 0, 1);
            else if (same(tmp, in[j].path)) rc = clash(cmd, &out[i], 1, &in[j], 0, 1);
        }
        for (size_t k = 0; k < i && !rc; k++) {
            if (!out[k].path) continue;
            n = strlen(out[k].path) + 5;
            free(tmp_other);
            tmp_other = malloc(n);
            if (!tmp_other) {
                rc = data_error(cmd, "out of memory");
                break;
            }
            snprintf(tmp_other, n, "%s.tmp", out[k].path);
            if (same(out[i].path, out[k].path)) rc = clash(cmd, &out[i], 0, &out[k], 0, 0);
            else if (same(tmp, out[k].path)) rc = clash(cmd, &out[i], 1, &out[k], 0, 0);
            else if (same(out[i].path, tmp_other)) rc = clash(cmd, &out[i], 0, &out[k], 1, 0);
        }
    }
    free(tmp);
    free(tmp_other);
    return rc;
}

int table_check_outputs(const table *t, const char *in_flag, const char *in, const named_path *out, size_t n_out,
                        const char *cmd)
{
    named_path *inputs = malloc((t->n_sources + 1) * sizeof *inputs);
    if (!inputs) return data_error(cmd, "out of memory");
    inputs[0] = (named_path){in_flag, in, NULL};
    for (size_t i = 0; i < t->n_sources; i++) inputs[i + 1] = (named_path){in_flag, t->sources[i], in};
    int rc = check_outputs(cmd, inputs, t->n_sources + 1, out, n_out);
    free(inputs);
    return rc;
}

/* ---- the table ---------------------------------------------------------------- */

void table_free(table *t)
{
    ffn_free(t->xu);
    ffn_free(t->xf);
    ffn_free(t->labels);
    ffn_free(t->targets);
    for (size_t i = 0; i < t->n_sources; i++) free(t->sources[i]);
    free(t->sources);
    ffn_data_meta_free(&t->meta);
    memset(t, 0, sizeof *t);
}

static int read_all(hid_t f, const char *name, hid_t type, void *buf)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return -1;
    int rc = H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0 ? -1 : 0;
    H5Dclose(d);
    return rc;
}

int table_read(table *t, const char *path)
{
    memset(t, 0, sizeof *t);
    ffn_dataset *ds = NULL;
    if (ffn_dataset_open(&ds, path) != FFN_OK) {
        fprintf(stderr, "ffn-data: error: %s\n", ffn_last_error());
        return EXIT_DATA;
    }
    const ffn_dataset_info *in = ffn_dataset_get_info(ds);
    t->rows = in->rows;
    t->cols = in->features;
    t->has_labels = in->has_labels;
    t->num_classes = in->num_classes;
    t->target_cols = in->has_labels ? 0 : in->target_cols;
    t->x_uint8 = in->x_is_uint8 && in->x_offset == 0;
    t->scale = in->x_scale;
    if (t->x_uint8) t->xu = ffn_alloc(t->rows, t->cols);
    else t->xf = ffn_alloc(t->rows, t->cols * sizeof(float));
    if (t->has_labels) t->labels = ffn_alloc(t->rows, sizeof(int32_t));
    else t->targets = ffn_alloc(t->rows, t->target_cols * sizeof(float));
    size_t ns = ffn_dataset_source_count(ds);
    t->sources = ns ? calloc(ns, sizeof *t->sources) : NULL;
    for (size_t i = 0; t->sources && i < ns; i++)
        if ((t->sources[i] = strdup(ffn_dataset_source(ds, i)))) t->n_sources++;
    int rc = 0;
    if (ffn_data_meta_read(path, &t->meta) != FFN_OK) {
        rc = data_error("read", "%s", ffn_last_error());
    } else if (t->meta.features && t->meta.features != t->cols) {
        rc = data_error("read", "%s: /feature_mean has %zu values, expected one for each of the %zu features", path,
                        t->meta.features, t->cols);
    } else if ((!t->xu && !t->xf) || (!t->labels && !t->targets) || t->n_sources != ns) {
        rc = data_error("read", "%s: out of memory for %zu rows", path, t->rows);
    } else if (t->x_uint8) {
        /* Raw bytes, so that uint8 data stays uint8 in what we write. */
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f < 0 || read_all(f, "x", H5T_NATIVE_UINT8, t->xu) < 0 ||
            read_all(f, "y", H5T_NATIVE_INT32, t->labels) < 0)
            rc = data_error("read", "%s: reading /x and /y failed", path);
        if (f >= 0) H5Fclose(f);
    } else if (ffn_dataset_read_range(ds, 0, t->rows, t->xf, t->labels, t->targets) != FFN_OK) {
        rc = data_error("read", "%s", ffn_last_error());
    }
    ffn_dataset_close(ds);
    if (rc) table_free(t);
    return rc;
}

int table_write(const table *t, const char *path, const uint64_t *sel, size_t n,
                const int32_t *relabel, size_t num_classes, const char *source)
{
    if (!sel) n = t->rows;
    if (n == 0) return data_error("write", "%s: no rows to write", path);
    ffn_dataset_layout L = {.rows = n, .features = t->cols, .x_uint8 = t->x_uint8, .x_scale = t->scale,
                            .has_labels = t->has_labels, .target_cols = t->has_labels ? 1 : t->target_cols,
                            .num_classes = t->has_labels ? (num_classes ? num_classes : t->num_classes) : 0};
    ffn_dataset_writer *w = NULL;
    if (ffn_dataset_writer_create(&w, path, &L) != FFN_OK) {
        fprintf(stderr, "ffn-data: error: %s\n", ffn_last_error());
        return EXIT_DATA;
    }
    /* Write in blocks of contiguous output rows, gathering the selected ones. */
    enum { BLOCK = 4096 };
    size_t xrow = t->cols * (t->x_uint8 ? 1 : sizeof(float));
    size_t yrow = t->has_labels ? sizeof(int32_t) : t->target_cols * sizeof(float);
    unsigned char *xb = malloc(BLOCK * xrow), *yb = malloc(BLOCK * yrow);
    ffn_status st = xb && yb ? FFN_OK : ffn_fail(FFN_ERR_NOMEM, "%s: out of memory", path);
    const unsigned char *xs = t->x_uint8 ? (const unsigned char *)t->xu : (const unsigned char *)t->xf;
    const unsigned char *ys = t->has_labels ? (const unsigned char *)t->labels : (const unsigned char *)t->targets;
    for (size_t at = 0; at < n && st == FFN_OK; at += BLOCK) {
        size_t m = n - at < BLOCK ? n - at : BLOCK;
        for (size_t i = 0; i < m; i++) {
            size_t r = sel ? (size_t)sel[at + i] : at + i;
            memcpy(xb + i * xrow, xs + r * xrow, xrow);
            memcpy(yb + i * yrow, ys + r * yrow, yrow);
            if (relabel && t->has_labels) ((int32_t *)yb)[i] = relabel[t->labels[r]];
        }
        st = ffn_dataset_writer_rows(w, at, m, xb, yb);
    }
    free(xb);
    free(yb);
    /* The class names follow the labels: relabelled, a kept class's name
     * moves to its new number and a dropped class's name is left out. */
    ffn_data_meta meta = t->meta;
    char **names = NULL;
    if (st == FFN_OK && relabel && t->has_labels && t->meta.class_count) {
        size_t k = L.num_classes;
        names = calloc(k ? k : 1, sizeof *names);
        if (!names) st = ffn_fail(FFN_ERR_NOMEM, "%s: out of memory", path);
        for (size_t c = 0; names && c < t->meta.class_count && c < t->num_classes; c++)
            if (relabel[c] >= 0 && (size_t)relabel[c] < k) names[relabel[c]] = t->meta.class_names[c];
        meta.class_names = names;
        meta.class_count = k;
        for (size_t c = 0; names && c < k; c++)
            if (!names[c]) meta.class_count = 0; /* a class without a name: keep none rather than guess */
    }
    if (st == FFN_OK) st = ffn_dataset_writer_meta(w, &meta);
    free(names);
    if (st == FFN_OK && source) st = ffn_dataset_writer_attr(w, "source", source);
    if (st == FFN_OK) st = ffn_dataset_writer_attr(w, "created_by", "ffn-data");
    if (st != FFN_OK) {
        ffn_dataset_writer_abort(w);
        fprintf(stderr, "ffn-data: error: %s\n", ffn_last_error());
        return EXIT_DATA;
    }
    if (ffn_dataset_writer_close(w) != FFN_OK) {
        fprintf(stderr, "ffn-data: error: %s\n", ffn_last_error());
        return EXIT_DATA;
    }
    return 0;
}
