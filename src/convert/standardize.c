/* ffn-data --standardize, --standardize-like and the standardize command:
 * per-feature standardization, x = (raw - mean) / std, with the statistics
 * of the training rows kept in the file (/feature_mean, /feature_std).
 *
 * One post-processing pass for every converter: run_converter has the
 * converter write its outputs to OUT.raw.tmp (and VAL.raw.tmp), splits them
 * when the converter has no --val-out of its own, computes the statistics
 * over the training file in two streaming passes (mean, then the squared
 * deviations: population std, as scikit-learn's StandardScaler; a constant
 * column gets std 1), and writes OUT and VAL standardized by row blocks
 * through the dataset writer. Memory stays bounded by a block, except for
 * the split of a converter without its own --val-out (ffn-data split's
 * in-memory table). OUT and VAL are replaced only by complete files; the
 * temporaries are removed whatever happens. */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert.h"
#include "ffn/data.h"

enum { BLOCK_BYTES = 16 << 20 };

static size_t block_rows(size_t features)
{
    size_t b = BLOCK_BYTES / (features * sizeof(float));
    return b ? (b > 65536 ? 65536 : b) : 1;
}

/* The mean and population std of every feature of path's /x. */
static int compute_stats(const char *path, ffn_data_meta *m, const char *cmd)
{
    memset(m, 0, sizeof *m);
    ffn_dataset *ds = NULL;
    if (ffn_dataset_open_features(&ds, path) != FFN_OK) return data_error(cmd, "%s", ffn_last_error());
    const ffn_dataset_info *in = ffn_dataset_get_info(ds);
    size_t d = in->features, rows = in->rows, block = block_rows(d);
    float *x = malloc(block * d * sizeof *x);
    double *acc = calloc(d, sizeof *acc);
    m->mean = calloc(d, sizeof *m->mean);
    m->std = calloc(d, sizeof *m->std);
    int rc = x && acc && m->mean && m->std ? 0 : data_error(cmd, "%s: out of memory for %zu features", path, d);
    for (int pass = 0; pass < 2 && !rc; pass++) {
        memset(acc, 0, d * sizeof *acc);
        for (size_t at = 0; at < rows && !rc; at += block) {
            size_t n = rows - at < block ? rows - at : block;
            if (ffn_dataset_read_range(ds, at, n, x, NULL, NULL) != FFN_OK) {
                rc = data_error(cmd, "%s", ffn_last_error());
                break;
            }
            for (size_t i = 0; i < n; i++) {
                const float *row = x + i * d;
                if (pass == 0)
                    for (size_t j = 0; j < d; j++) acc[j] += row[j];
                else
                    for (size_t j = 0; j < d; j++) {
                        double e = (double)row[j] - m->mean[j];
                        acc[j] += e * e;
                    }
            }
        }
        for (size_t j = 0; j < d && !rc; j++) {
            if (pass == 0) m->mean[j] = acc[j] / (double)rows;
            else {
                double s = sqrt(acc[j] / (double)rows);
                m->std[j] = s > 0 && isfinite(s) ? s : 1.0; /* a constant column stays centred, unscaled */
            }
        }
    }
    m->features = d;
    free(x);
    free(acc);
    ffn_dataset_close(ds);
    if (rc) ffn_data_meta_free(m);
    return rc;
}

/* Every scalar string attribute of path's root (source, created_by, ...) onto w. */
static herr_t copy_string_attr(hid_t loc, const char *name, const H5A_info_t *ainfo, void *op)
{
    (void)ainfo;
    ffn_dataset_writer *w = op;
    if (strcmp(name, "class_names") == 0 || strcmp(name, "num_classes") == 0) return 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = H5Aget_type(a), s = H5Aget_space(a);
    if (a >= 0 && t >= 0 && H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0 &&
        H5Sget_simple_extent_npoints(s) == 1) {
        char *v = NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        if (H5Aread(a, mt, &v) >= 0 && v) ffn_dataset_writer_attr(w, name, v);
        H5free_memory(v);
        H5Tclose(mt);
    }
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return 0;
}

/* Writes in's rows standardized with stats (from the file named stats_from) to out. */
static int write_standardized(const char *in_path, const char *out, const ffn_data_meta *stats,
                              const char *stats_from, const char *flag, const char *cmd)
{
    ffn_dataset *ds = NULL;
    if (ffn_dataset_open(&ds, in_path) != FFN_OK) return data_error(cmd, "%s", ffn_last_error());
    const ffn_dataset_info *in = ffn_dataset_get_info(ds);
    ffn_data_meta meta;
    int rc = 0;
    if (ffn_data_meta_read(in_path, &meta) != FFN_OK) {
        ffn_dataset_close(ds);
        return data_error(cmd, "%s", ffn_last_error());
    }
    if (stats->features != in->features) {
        rc = data_error(cmd, "%s%s%s has statistics for %zu features, but %s has %zu; expected the same", flag,
                        *flag ? " " : "", stats_from, stats->features, out, in->features);
    } else if (meta.features) {
        rc = data_error(cmd, "%s is standardized already (/feature_mean, /feature_std); expected raw data", in_path);
    }
    size_t d = in->features, rows = in->rows, block = block_rows(d), k = in->has_labels ? 1 : in->target_cols;
    ffn_dataset_layout L = {.rows = rows, .features = d, .has_labels = in->has_labels, .target_cols = k,
                            .num_classes = in->has_labels ? in->num_classes : 0};
    ffn_dataset_writer *w = NULL;
    float *x = malloc(block * d * sizeof *x);
    void *y = malloc(block * k * 4);
    if (!rc && (!x || !y)) rc = data_error(cmd, "%s: out of memory", out);
    if (!rc && ffn_dataset_writer_create(&w, out, &L) != FFN_OK) rc = data_error(cmd, "%s", ffn_last_error());
    for (size_t at = 0; !rc && at < rows; at += block) {
        size_t n = rows - at < block ? rows - at : block;
        if (ffn_dataset_read_range(ds, at, n, x, in->has_labels ? y : NULL, in->has_labels ? NULL : y) != FFN_OK) {
            rc = data_error(cmd, "%s", ffn_last_error());
            break;
        }
        ffn_standardize_rows(x, n, d, stats->mean, stats->std);
        if (ffn_dataset_writer_rows(w, at, n, x, y) != FFN_OK) rc = data_error(cmd, "%s", ffn_last_error());
    }
    if (!rc) {
        ffn_data_meta out_meta = meta;
        out_meta.features = stats->features;
        out_meta.mean = stats->mean;
        out_meta.std = stats->std;
        if (ffn_dataset_writer_meta(w, &out_meta) != FFN_OK) rc = data_error(cmd, "%s", ffn_last_error());
    }
    if (!rc) {
        hid_t f = H5Fopen(in_path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f >= 0) {
            H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_string_attr, w);
            H5Fclose(f);
        }
        if (ffn_dataset_writer_attr(w, "standardized_with", stats_from) != FFN_OK)
            rc = data_error(cmd, "%s", ffn_last_error());
    }
    if (!rc) {
        if (ffn_dataset_writer_close(w) != FFN_OK) rc = data_error(cmd, "%s", ffn_last_error());
    } else if (w) {
        ffn_dataset_writer_abort(w);
    }
    free(x);
    free(y);
    ffn_data_meta_free(&meta);
    ffn_dataset_close(ds);
    return rc;
}

/* The statistics of --standardize-like / --like FILE. */
static int like_stats(const char *like, const char *flag, ffn_data_meta *m, const char *cmd)
{
    if (ffn_data_meta_read(like, m) != FFN_OK) return data_error(cmd, "%s %s", flag, ffn_last_error());
    if (!m->features) {
        ffn_data_meta_free(m);
        return data_error(cmd, "%s %s carries no standardization statistics (/feature_mean, /feature_std); expected a "
                          "file written with --standardize", flag, like);
    }
    return 0;
}

static char *suffixed(const char *path, const char *suffix)
{
    size_t n = strlen(path) + strlen(suffix) + 1;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s", path, suffix);
    return p;
}

/* The "source" attribute of path (for the split of a temporary), else path. */
static char *source_of(const char *path)
{
    char *v = NULL, *copy = NULL;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f >= 0 && H5Aexists(f, "source") > 0) {
        hid_t a = H5Aopen(f, "source", H5P_DEFAULT), t = H5Aget_type(a);
        if (t >= 0 && H5Tis_variable_str(t) > 0) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(t));
            if (H5Aread(a, mt, &v) >= 0 && v) copy = strdup(v);
            H5free_memory(v);
            H5Tclose(mt);
        }
        if (t >= 0) H5Tclose(t);
        H5Aclose(a);
    }
    if (f >= 0) H5Fclose(f);
    return copy ? copy : strdup(path);
}

/* Copies what f holds to fd, with every "TEMP" of from[i] written as to[i]. */
static void replay(FILE *f, int fd, const char *const *from, const char *const *to, size_t n)
{
    FILE *out = fdopen(dup(fd), "w");
    if (!out) return;
    rewind(f);
    char line[16384];
    while (fgets(line, sizeof line, f)) {
        for (const char *p = line; *p;) {
            size_t best = 0, which = 0;
            for (size_t i = 0; i < n; i++) {
                size_t len = from[i] ? strlen(from[i]) : 0;
                if (len > best && strncmp(p, from[i], len) == 0) best = len, which = i;
            }
            if (best) {
                fputs(to[which], out);
                p += best;
            } else {
                fputc(*p++, out);
            }
        }
    }
    fclose(out);
}

/* Runs the converter on the temporaries with its stdout and stderr caught, then
 * prints them naming the files the user gave (OUT.h5, not OUT.h5.raw.tmp). */
static int run_renamed(int (*run)(int, char **), int argc, char **argv, const char *const *from,
                       const char *const *to, size_t n)
{
    FILE *cap_out = tmpfile(), *cap_err = tmpfile();
    int saved_out = dup(1), saved_err = dup(2);
    if (!cap_out || !cap_err || saved_out < 0 || saved_err < 0) {
        if (cap_out) fclose(cap_out);
        if (cap_err) fclose(cap_err);
        if (saved_out >= 0) close(saved_out);
        if (saved_err >= 0) close(saved_err);
        return run(argc, argv); /* no capture: the messages name the temporaries */
    }
    fflush(stdout);
    fflush(stderr);
    dup2(fileno(cap_out), 1);
    dup2(fileno(cap_err), 2);
    int rc = run(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    replay(cap_out, 1, from, to, n);
    replay(cap_err, 2, from, to, n);
    fclose(cap_out);
    fclose(cap_err);
    return rc;
}

int run_converter(int (*run)(int, char **), int own_split, int argc, char **argv)
{
    const char *cmd = argv[1];
    int standardize = 0, help = 0;
    const char *like = NULL, *out = NULL, *val = NULL;
    args split_args = {0}; /* --val-count, --val-fraction, --seed for a split made here */
    char **nargv = calloc((size_t)argc + 1, sizeof *nargv);
    int nargc = 0, out_at = -1, val_at = -1, rc = 0;
    if (!nargv) return data_error(cmd, "out of memory");
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        int mine_split = !own_split && i >= 2 &&
                         (!strcmp(s, "--val-out") || !strcmp(s, "--val-count") || !strcmp(s, "--val-fraction") ||
                          !strcmp(s, "--seed"));
        if (i >= 2 && !strcmp(s, "--standardize")) {
            standardize = 1;
        } else if (i >= 2 && (!strcmp(s, "--standardize-like") || mine_split)) {
            if (i + 1 >= argc) {
                free(nargv);
                return usage_error(cmd, "%s: missing value", s);
            }
            if (!strcmp(s, "--standardize-like")) like = argv[i + 1];
            else if (!strcmp(s, "--val-out")) val = argv[i + 1];
            else if (split_args.count < 16) {
                split_args.names[split_args.count] = s;
                split_args.values[split_args.count++] = argv[i + 1];
            }
            i++;
        } else {
            if (i >= 2 && !strcmp(s, "--help")) help = 1;
            if (i >= 2 && i + 1 < argc && !strcmp(s, "--out")) out_at = nargc + 1;
            if (i >= 2 && i + 1 < argc && own_split && !strcmp(s, "--val-out")) val_at = nargc + 1;
            nargv[nargc++] = argv[i];
        }
    }
    if (help) {
        rc = run(nargc, nargv);
        printf("Standardization (any converter): --standardize writes x as (x - mean) / std per feature, with the\n"
               "training rows' statistics kept as /feature_mean and /feature_std (float64 [D]; std 1 for a constant\n"
               "column); with --val-out the validation rows get the training rows' statistics. --standardize-like\n"
               "TRAIN.h5 applies TRAIN.h5's statistics instead.\n");
        if (!own_split)
            printf("Validation split: --val-out VAL.h5 (--val-count N | --val-fraction F) [--seed S], as ffn-data split.\n");
        free(nargv);
        return rc;
    }
    int split_here = !own_split && (val || split_args.count);
    if (!standardize && !like && !split_here) {
        free(nargv);
        return run(argc, argv);
    }
    split_flags split = {0};
    ffn_data_meta stats = {0};
    int converted = 0; /* the converter ran: its temporaries (a partial pair too) are ours to remove */
    char *raw_out = NULL, *raw_val = NULL, *raw_train = NULL, *raw_split_val = NULL, *source = NULL;
    if (standardize && like) rc = usage_error(cmd, "--standardize and --standardize-like exclude each other");
    else if (out_at < 0) rc = usage_error(cmd, "--out is required");
    if (!rc && split_here) {
        if (!val) rc = usage_error(cmd, "--val-count/--val-fraction/--seed need --val-out");
        else if (arg_has(&split_args, "--val-count") == arg_has(&split_args, "--val-fraction"))
            rc = usage_error(cmd, "--val-out needs exactly one of --val-count N and --val-fraction F");
        else rc = split_flags_parse(&split, &split_args, cmd);
    }
    if (!rc && val_at >= 0) val = nargv[val_at];
    out = out_at >= 0 ? nargv[out_at] : NULL;
    if (!rc) {
        /* Outputs (and their temporaries) stay off every file the command names. */
        named_path *inputs = calloc((size_t)argc + 1, sizeof *inputs);
        size_t n_in = 0;
        for (int i = 2; inputs && i < nargc; i++) {
            struct stat sb;
            if (i == out_at || i == val_at || stat(nargv[i], &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
            inputs[n_in++] = (named_path){"input", nargv[i], NULL};
        }
        if (inputs && like) inputs[n_in++] = (named_path){"--standardize-like", like, NULL};
        raw_out = suffixed(out, ".raw.tmp");
        raw_val = val ? suffixed(val, ".raw.tmp") : NULL;
        const named_path outputs[] = {{"--out", out, NULL}, {"--val-out", val, NULL}, {"--out", raw_out, NULL},
                                      {"--val-out", raw_val, NULL}};
        if (!inputs || !raw_out || (val && !raw_val)) rc = data_error(cmd, "out of memory");
        else rc = check_outputs(cmd, inputs, n_in, outputs, 4);
        free(inputs);
    }
    if (!rc && like) rc = like_stats(like, "--standardize-like", &stats, cmd);
    if (!rc) {
        nargv[out_at] = raw_out;
        if (val_at >= 0) nargv[val_at] = raw_val;
        const char *from[2] = {raw_out, val_at >= 0 ? raw_val : NULL}, *to[2] = {out, val};
        rc = run_renamed(run, nargc, nargv, from, to, 2);
        converted = 1;
    }
    const char *train_in = raw_out, *val_in = val_at >= 0 ? raw_val : NULL;
    if (!rc && split_here) {
        /* A split of the converted rows, as ffn-data split makes it. */
        int std_after = standardize || like;
        table t;
        source = source_of(raw_out);
        if (!source) rc = data_error(cmd, "out of memory");
        if (!rc) rc = table_read(&t, raw_out);
        if (!rc) {
            raw_train = std_after ? suffixed(out, ".train.raw.tmp") : NULL;
            raw_split_val = std_after ? raw_val : NULL;
            rc = table_write_split(&t, &split, std_after ? raw_train : out, std_after ? raw_split_val : val, source, cmd);
            if (!rc) {
                size_t val_rows = split_val_rows(&split, t.rows);
                printf("ffn-data %s: split %zu rows: %zu to %s, %zu to %s\n", cmd, t.rows, t.rows - val_rows, out,
                       val_rows, val);
            }
            table_free(&t);
            train_in = raw_train;
            val_in = raw_split_val;
        }
    }
    if (!rc && standardize) rc = compute_stats(train_in, &stats, cmd);
    if (!rc && (standardize || like)) {
        const char *flag = standardize ? "" : "--standardize-like";
        rc = write_standardized(train_in, out, &stats, standardize ? out : like, flag, cmd);
        if (!rc && val_in) rc = write_standardized(val_in, val, &stats, standardize ? out : like, flag, cmd);
        if (!rc)
            printf("ffn-data %s: standardized %zu features with the statistics of %s: %s%s%s\n", cmd, stats.features,
                   standardize ? "its training rows" : like, out, val ? " and " : "", val ? val : "");
    }
    if (converted) {
        unlink(raw_out);
        if (raw_val) unlink(raw_val);
        if (raw_train) unlink(raw_train);
    }
    ffn_data_meta_free(&stats);
    free(raw_out);
    free(raw_val);
    free(raw_train);
    free(source);
    free(nargv);
    return rc;
}

int cmd_standardize(int argc, char **argv)
{
    static const char *const CMD = "standardize";
    static const char *const known[] = {"--out", "--like", "--help!", NULL};
    static const char usage[] =
        "usage: ffn-data standardize IN.h5 --out OUT.h5 [--like TRAIN.h5]\n"
        "Writes IN.h5 with x standardized per feature, (x - mean) / std, and the statistics as /feature_mean and\n"
        "/feature_std (float64 [D]): IN.h5's own (population std; 1 for a constant column), or TRAIN.h5's with --like.\n";
    args a;
    int rc;
    if (args_parse(&a, argc, argv, known, usage, CMD, &rc)) return rc;
    const char *in = a.npos == 1 ? a.positional[0] : NULL, *out = arg_str(&a, "--out"), *like = arg_str(&a, "--like");
    if (!in || !out) return usage_error(CMD, "give IN.h5 and --out");
    ffn_dataset *ds = NULL;
    if (ffn_dataset_open(&ds, in) != FFN_OK) return data_error(CMD, "%s", ffn_last_error());
    size_t ns = ffn_dataset_source_count(ds);
    named_path *inputs = calloc(ns + 2, sizeof *inputs);
    if (!inputs) rc = data_error(CMD, "out of memory");
    size_t n_in = 0;
    if (inputs) {
        inputs[n_in++] = (named_path){"IN.h5", in, NULL};
        if (like) inputs[n_in++] = (named_path){"--like", like, NULL};
        for (size_t i = 0; i < ns; i++) inputs[n_in++] = (named_path){"IN.h5", ffn_dataset_source(ds, i), in};
        const named_path output = {"--out", out, NULL};
        rc = check_outputs(CMD, inputs, n_in, &output, 1);
    }
    free(inputs);
    ffn_dataset_close(ds);
    if (rc) return rc;
    ffn_data_meta stats;
    rc = like ? like_stats(like, "--like", &stats, CMD) : compute_stats(in, &stats, CMD);
    if (!rc) rc = write_standardized(in, out, &stats, like ? like : in, like ? "--like" : "", CMD);
    if (!rc) printf("ffn-data standardize: %s (%zu features, statistics of %s)\n", out, stats.features, like ? like : in);
    ffn_data_meta_free(&stats);
    return rc;
}

void print_meta(const char *path)
{
    ffn_data_meta m;
    if (ffn_data_meta_read(path, &m) != FFN_OK) {
        printf("metadata: %s\n", ffn_last_error());
        return;
    }
    if (m.class_count) {
        enum { SHOWN = 10 };
        printf("class names: %zu (", m.class_count);
        for (size_t i = 0; i < m.class_count && i < SHOWN; i++) printf("%s%zu:%.60s", i ? " " : "", i, m.class_names[i]);
        printf("%s)\n", m.class_count > SHOWN ? " ..." : "");
    } else {
        printf("class names: none\n");
    }
    if (m.features) {
        printf("standardized: yes, /feature_mean and /feature_std over %zu features (feature 0: mean %.6g, std %.6g)\n",
               m.features, m.mean[0], m.std[0]);
    } else {
        printf("standardized: no\n");
    }
    ffn_data_meta_free(&m);
}
