/* ffn-data split, subset, shard and info: operations on dataset files. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert.h"
#include "inspect.h"
#include "../data_meta.h" /* internal: the metadata at an HDF5 location */
#include "ffn/data.h"
#include "ffn/partition.h"
#include "ffn/rng.h"

/* ---- split ------------------------------------------------------------------- */

int cmd_split(int argc, char **argv)
{
    static const char *const CMD = "split";
    static const char *const known[] = {"--train-out", "--val-out", "--val-count", "--val-fraction", "--seed",
                                        "--help!", NULL};
    static const char usage[] = "usage: ffn-data split IN.h5 --train-out A.h5 --val-out B.h5 (--val-count N | --val-fraction F) [--seed S]\n"
                                "A seeded random choice of rows goes to B.h5, the rest to A.h5; both keep file order.\n";
    args a;
    int rc;
    if (args_parse(&a, argc, argv, known, usage, CMD, &rc)) return rc;
    const char *in = a.npos == 1 ? a.positional[0] : NULL;
    const char *to = arg_str(&a, "--train-out"), *vo = arg_str(&a, "--val-out");
    if (!in || !to || !vo) return usage_error(CMD, "give IN.h5, --train-out and --val-out");
    split_flags split;
    if ((rc = split_flags_parse(&split, &a, CMD))) return rc;
    if (arg_has(&a, "--val-count") == arg_has(&a, "--val-fraction"))
        return usage_error(CMD, "give exactly one of --val-count and --val-fraction");
    table t;
    if ((rc = table_read(&t, in))) return rc;
    const named_path outputs[] = {{"--train-out", to, NULL}, {"--val-out", vo, NULL}};
    if ((rc = table_check_outputs(&t, "IN.h5", in, outputs, 2, CMD))) {
        table_free(&t);
        return rc;
    }
    rc = table_write_split(&t, &split, to, vo, in, CMD);
    if (!rc) {
        size_t nv = split_val_rows(&split, t.rows);
        printf("ffn-data split: %s (%zu rows), %s (%zu rows)\n", to, t.rows - nv, vo, nv);
    }
    table_free(&t);
    return rc;
}

/* ---- subset ------------------------------------------------------------------ */

/* "0-4", "5,6,7", "1,3-5" into keep[0..limit). */
static int parse_classes(const char *s, unsigned char *keep, size_t limit)
{
    while (*s) {
        char *end;
        unsigned long lo = strtoul(s, &end, 10), hi = lo;
        if (end == s) return -1;
        if (*end == '-') {
            const char *p = end + 1;
            hi = strtoul(p, &end, 10);
            if (end == p || hi < lo) return -1;
        }
        if (hi >= limit) return -1;
        for (unsigned long c = lo; c <= hi; c++) keep[c] = 1;
        if (*end == ',') end++;
        else if (*end) return -1;
        s = end;
    }
    return 0;
}

int cmd_subset(int argc, char **argv)
{
    static const char *const CMD = "subset";
    static const char *const known[] = {"--out", "--classes", "--per-class", "--relabel!", "--seed", "--help!", NULL};
    static const char usage[] = "usage: ffn-data subset IN.h5 --out OUT.h5 [--classes LIST] [--per-class N] [--relabel] [--seed S]\n"
                                "Keeps the rows of the listed classes (e.g. 0-4 or 5,7,9), optionally N per class\n"
                                "(a seeded choice; file order kept). --relabel maps the kept classes to 0..k-1.\n";
    args a;
    int rc;
    if (args_parse(&a, argc, argv, known, usage, CMD, &rc)) return rc;
    const char *in = a.npos == 1 ? a.positional[0] : NULL, *out = arg_str(&a, "--out");
    if (!in || !out) return usage_error(CMD, "give IN.h5 and --out");
    uint64_t per_class, seed;
    if ((rc = arg_u64(&a, "--per-class", 0, 1, UINT64_MAX, &per_class, CMD)) ||
        (rc = arg_u64(&a, "--seed", 0, 0, UINT64_MAX, &seed, CMD)))
        return rc;
    table t;
    if ((rc = table_read(&t, in))) return rc;
    const named_path output = {"--out", out, NULL};
    if ((rc = table_check_outputs(&t, "IN.h5", in, &output, 1, CMD))) {
        table_free(&t);
        return rc;
    }
    if (!t.has_labels) {
        table_free(&t);
        return data_error(CMD, "%s: /y holds float targets; subset needs class labels", in);
    }
    size_t C = t.num_classes;
    unsigned char *keep = calloc(C, 1);
    int32_t *map = calloc(C, sizeof *map);
    size_t *quota = calloc(C, sizeof *quota);
    uint64_t *sel = malloc(t.rows * sizeof *sel);
    uint64_t *perm = malloc(t.rows * sizeof *perm);
    unsigned char *take = calloc(t.rows, 1);
    if (!keep || !map || !quota || !sel || !perm || !take) {
        rc = data_error(CMD, "out of memory");
        goto done;
    }
    const char *classes = arg_str(&a, "--classes");
    if (classes) {
        if (parse_classes(classes, keep, C) != 0) {
            rc = usage_error(CMD, "--classes: expected a list like 0-4 or 5,6,7 within [0, %zu), got '%s'", C, classes);
            goto done;
        }
    } else {
        memset(keep, 1, C);
    }
    size_t k = 0;
    for (size_t c = 0; c < C; c++) map[c] = keep[c] ? (int32_t)k++ : -1;
    /* Walk a seeded permutation and take up to per_class rows of each kept class. */
    ffn_rng rng = ffn_rng_make(seed, FFN_STREAM_DATA);
    ffn_rng_permutation(&rng, perm, t.rows);
    for (size_t i = 0; i < t.rows; i++) {
        size_t r = perm[i], c = (size_t)t.labels[r];
        if (!keep[c] || (per_class && quota[c] == per_class)) continue;
        quota[c]++;
        take[r] = 1;
    }
    size_t n = 0;
    for (size_t r = 0; r < t.rows; r++)
        if (take[r]) sel[n++] = r;
    if (n == 0) {
        rc = data_error(CMD, "%s: no rows of the chosen classes", in);
        goto done;
    }
    int relabel = arg_has(&a, "--relabel");
    rc = table_write(&t, out, sel, n, relabel ? map : NULL, relabel ? k : 0, in);
    if (!rc) printf("ffn-data subset: %s (%zu rows, %zu classes%s)\n", out, n, k, relabel ? ", relabelled" : "");
done:
    free(keep);
    free(map);
    free(quota);
    free(sel);
    free(perm);
    free(take);
    table_free(&t);
    return rc;
}

/* ---- shard ------------------------------------------------------------------- */

/* Maps rows [lo, hi) of a virtual dataset onto the whole of src's dataset. */
static int add_mapping(hid_t dcpl, hid_t vspace, int rank, const hsize_t *dims, hsize_t lo, hsize_t hi,
                       const char *src_file, const char *dset)
{
    hsize_t start[2] = {lo, 0}, count[2] = {hi - lo, rank == 2 ? dims[1] : 1};
    hsize_t sdims[2] = {hi - lo, rank == 2 ? dims[1] : 1};
    hid_t sspace = H5Screate_simple(rank, sdims, NULL);
    int ok = H5Sselect_hyperslab(vspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
             H5Pset_virtual(dcpl, vspace, src_file, dset, sspace) >= 0;
    H5Sclose(sspace);
    return ok ? 0 : -1;
}

static int copy_attr(hid_t from, hid_t to, const char *name)
{
    if (H5Aexists(from, name) <= 0) return 0;
    hid_t a = H5Aopen(from, name, H5P_DEFAULT), t = H5Aget_type(a), s = H5Aget_space(a);
    size_t size = H5Tget_size(t);
    void *buf = calloc(1, size * (size_t)H5Sget_simple_extent_npoints(s) + 1);
    int ok = buf && H5Aread(a, t, buf) >= 0;
    if (ok) {
        hid_t b = H5Acreate2(to, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
        ok = b >= 0 && H5Awrite(b, t, buf) >= 0;
        if (b >= 0) H5Aclose(b);
    }
    free(buf);
    H5Sclose(s);
    H5Tclose(t);
    H5Aclose(a);
    return ok ? 0 : -1;
}

int cmd_shard(int argc, char **argv)
{
    static const char *const CMD = "shard";
    static const char *const known[] = {"--shards", "--out", "--help!", NULL};
    static const char usage[] = "usage: ffn-data shard IN.h5 --shards K --out PREFIX\n"
                                "Writes PREFIX-00000-of-0000K.h5 ... (contiguous row ranges) and PREFIX.h5, whose /x and /y\n"
                                "are HDF5 virtual datasets joining the shards (names relative to PREFIX.h5's directory).\n";
    args a;
    int rc;
    if (args_parse(&a, argc, argv, known, usage, CMD, &rc)) return rc;
    const char *in = a.npos == 1 ? a.positional[0] : NULL, *prefix = arg_str(&a, "--out");
    uint64_t k;
    if (!in || !prefix) return usage_error(CMD, "give IN.h5, --shards and --out");
    if ((rc = arg_u64(&a, "--shards", 0, 1, 99999, &k, CMD))) return rc;
    if (!arg_has(&a, "--shards")) return usage_error(CMD, "--shards is required");
    table t;
    if ((rc = table_read(&t, in))) return rc;
    if (k > t.rows) {
        rc = usage_error(CMD, "--shards %llu is more than the %zu rows of %s", (unsigned long long)k, t.rows, in);
        table_free(&t);
        return rc;
    }
    /* Every shard and the joining file stay off the input and its sources.
     * The shards' names differ from each other and from the joining file's
     * in the same directory, so each shard is checked with the joining file
     * alone (K checks, not K^2). */
    char path[8192], rel[8192], vpath[8192], tmp[8200];
    snprintf(vpath, sizeof vpath, "%s.h5", prefix);
    char joining_flag[4200], shard_flag[4200];
    snprintf(joining_flag, sizeof joining_flag, "--out %s's joining file", prefix);
    snprintf(shard_flag, sizeof shard_flag, "--out %s's shard", prefix);
    for (uint64_t s = 0; s < k && !rc; s++) {
        snprintf(path, sizeof path, "%s-%05llu-of-%05llu.h5", prefix, (unsigned long long)s, (unsigned long long)k);
        const named_path outputs[] = {{joining_flag, vpath, NULL}, {shard_flag, path, NULL}};
        rc = table_check_outputs(&t, "IN.h5", in, outputs, 2, CMD);
    }
    if (rc) {
        table_free(&t);
        return rc;
    }
    /* Make the prefix's directory. */
    char dir[4096], base[4096];
    snprintf(dir, sizeof dir, "%s", prefix);
    char *slash = strrchr(dir, '/');
    const char *name = slash ? slash + 1 : prefix;
    if (slash) {
        *slash = '\0';
        char cmd_mkdir[4200];
        snprintf(cmd_mkdir, sizeof cmd_mkdir, "%s", dir);
        for (char *p = cmd_mkdir + 1; *p; p++)
            if (*p == '/') {
                *p = '\0';
                mkdir(cmd_mkdir, 0777);
                *p = '/';
            }
        mkdir(cmd_mkdir, 0777);
    }
    snprintf(base, sizeof base, "%s", name);
    uint64_t *sel = malloc(t.rows * sizeof *sel);
    if (!sel) rc = data_error(CMD, "out of memory for %zu rows", t.rows);
    for (size_t i = 0; sel && i < t.rows; i++) sel[i] = i;
    for (uint64_t s = 0; sel && s < k && !rc; s++) {
        size_t lo, hi;
        ffn_partition(t.rows, (size_t)s, (size_t)k, &lo, &hi);
        snprintf(path, sizeof path, "%s-%05llu-of-%05llu.h5", prefix, (unsigned long long)s, (unsigned long long)k);
        rc = table_write(&t, path, sel + lo, hi - lo, NULL, 0, in);
    }
    free(sel);
    if (rc) {
        table_free(&t);
        return rc;
    }
    /* The virtual file, written to a temporary name and renamed. */
    snprintf(tmp, sizeof tmp, "%s.tmp", vpath);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    int bad = f < 0;
    hid_t src = bad ? -1 : H5Fopen(in, H5F_ACC_RDONLY, H5P_DEFAULT);
    for (int which = 0; which < 2 && !bad; which++) {
        const char *dset = which ? "y" : "x";
        int rank = which ? (t.has_labels ? 1 : 2) : 2;
        hsize_t dims[2] = {t.rows, which ? (t.has_labels ? 1 : t.target_cols) : t.cols};
        hid_t type = which ? (t.has_labels ? H5T_STD_I32LE : H5T_IEEE_F32LE) : (t.x_uint8 ? H5T_STD_U8LE : H5T_IEEE_F32LE);
        hid_t vspace = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
        for (uint64_t s = 0; s < k && !bad; s++) {
            size_t lo, hi;
            ffn_partition(t.rows, (size_t)s, (size_t)k, &lo, &hi);
            snprintf(rel, sizeof rel, "%s-%05llu-of-%05llu.h5", base, (unsigned long long)s, (unsigned long long)k);
            bad = add_mapping(dcpl, vspace, rank, dims, lo, hi, rel, dset) != 0;
        }
        hid_t d = bad ? -1 : H5Dcreate2(f, dset, type, vspace, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (d < 0) bad = 1;
        if (!bad && which == 0 && t.x_uint8 && src >= 0) {
            hid_t sd = H5Dopen2(src, "x", H5P_DEFAULT);
            bad = sd < 0 || copy_attr(sd, d, "scale") != 0 || copy_attr(sd, d, "offset") != 0;
            if (sd >= 0) H5Dclose(sd);
        }
        if (d >= 0) H5Dclose(d);
        H5Pclose(dcpl);
        H5Sclose(vspace);
    }
    if (!bad && src >= 0) bad = copy_attr(src, f, "num_classes") != 0;
    if (!bad) bad = ffn_meta_write_loc(f, vpath, &t.meta, 0, H5P_DEFAULT) != FFN_OK;
    if (src >= 0) H5Fclose(src);
    if (f >= 0 && H5Fclose(f) < 0) bad = 1;
    if (bad || rename(tmp, vpath) != 0) {
        unlink(tmp);
        table_free(&t);
        return data_error(CMD, "%s: writing the virtual dataset failed", vpath);
    }
    printf("ffn-data shard: %llu shards %s-*-of-%05llu.h5 joined by %s\n", (unsigned long long)k, prefix,
           (unsigned long long)k, vpath);
    table_free(&t);
    return 0;
}

/* ---- info -------------------------------------------------------------------- */

static herr_t print_attr(hid_t loc, const char *name, const H5A_info_t *ainfo, void *op)
{
    (void)ainfo;
    (void)op;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t points = H5Sget_simple_extent_npoints(sp);
    printf("  attribute %s = ", name);
    if (strcmp(name, "class_names") == 0 && points > 1 && H5Tget_class(t) == H5T_STRING &&
        H5Tis_variable_str(t) > 0) {
        /* ffn-data csv's class names, in label order: the first ones, then how
         * many (other arrays stay a count). */
        enum { SHOWN = 20 };
        char **s = calloc((size_t)points, sizeof *s);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        if (s && H5Aread(a, mt, s) >= 0) {
            for (hssize_t i = 0; i < points && i < SHOWN; i++) printf("%s%lld:%.60s", i ? " " : "", (long long)i, s[i] ? s[i] : "");
            if (points > SHOWN) printf(" ...");
            printf(" (%lld values)", (long long)points);
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, s);
        } else {
            printf("(%lld values)", (long long)points);
        }
        free(s);
        H5Tclose(mt);
    } else if (points != 1) {
        /* H5Aread writes every element: only single values are read into the
         * one-value buffers below. */
        printf("(%lld values)", (long long)points);
    } else if (H5Tget_class(t) == H5T_STRING) {
        if (H5Tis_variable_str(t) > 0) {
            char *s = NULL;
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(t));
            if (H5Aread(a, mt, &s) >= 0 && s) printf("%s", s);
            H5free_memory(s);
            H5Tclose(mt);
        } else {
            size_t n = H5Tget_size(t);
            char *s = calloc(n + 1, 1);
            if (s && H5Aread(a, t, s) >= 0) printf("%s", s);
            free(s);
        }
    } else if (H5Tget_class(t) == H5T_INTEGER) {
        long long v = 0;
        H5Aread(a, H5T_NATIVE_LLONG, &v);
        printf("%lld", v);
    } else if (H5Tget_class(t) == H5T_FLOAT) {
        double v = 0;
        H5Aread(a, H5T_NATIVE_DOUBLE, &v);
        printf("%g", v);
    } else {
        printf("(type class %d)", (int)H5Tget_class(t));
    }
    printf("\n");
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
    return 0;
}

int cmd_info(int argc, char **argv)
{
    static const char *const CMD = "info";
    static const char *const known[] = {"--help!", NULL};
    static const char usage[] =
        "usage: ffn-data info FILE\nPrints shape, dtype, class counts, attributes and virtual sources of a dataset;\n"
        "of a .npy, .npz, IDX, CSV or LIBSVM file (plain or gzip'd, told apart by content), its rows, columns,\n"
        "dtype, labels and class counts, read as a stream without converting.\n";
    args a;
    int rc;
    if (args_parse(&a, argc, argv, known, usage, CMD, &rc)) return rc;
    if (a.npos != 1) {
        fputs(usage, stdout);
        return EXIT_USAGE;
    }
    const char *path = a.positional[0];
    int handled;
    rc = inspect_other(path, &handled);
    if (handled) return rc;
    ffn_dataset *ds = NULL;
    if (ffn_dataset_open(&ds, path) != FFN_OK) {
        fprintf(stderr, "ffn-data: error: %s\n", ffn_last_error());
        return EXIT_DATA;
    }
    const ffn_dataset_info *in = ffn_dataset_get_info(ds);
    printf("file: %s\nrows: %zu\nfeatures: %zu\n", path, in->rows, in->features);
    if (in->x_is_uint8) printf("x: uint8, scale %g, offset %g\n", (double)in->x_scale, (double)in->x_offset);
    else printf("x: float32\n");
    if (in->has_labels) {
        printf("y: int32 labels, num_classes %zu\n", in->num_classes);
        /* Blocks of at most 64 MiB of features (and 65536 rows): open checked
         * that one row's bytes fit in size_t, so block * features cannot overflow. */
        size_t block = ((size_t)16 << 20) / in->features;
        if (block == 0) block = 1;
        if (block > 65536) block = 65536;
        size_t *counts = calloc(in->num_classes, sizeof *counts);
        int32_t *lab = malloc(block * sizeof *lab);
        float *x = malloc(block * in->features * sizeof *x);
        if (!counts || !lab || !x) rc = data_error(CMD, "%s: out of memory", path);
        for (size_t at = 0; !rc && at < in->rows; at += block) {
            size_t n = in->rows - at < block ? in->rows - at : block;
            if (ffn_dataset_read_range(ds, at, n, x, lab, NULL) != FFN_OK) {
                rc = data_error(CMD, "%s", ffn_last_error());
                break;
            }
            for (size_t i = 0; i < n; i++) counts[lab[i]]++;
        }
        if (!rc && counts) {
            printf("class counts:");
            for (size_t c = 0; c < in->num_classes; c++) printf(" %zu:%zu", c, counts[c]);
            printf("\n");
        }
        free(counts);
        free(lab);
        free(x);
    } else {
        printf("y: float32 targets [%zu, %zu]\n", in->rows, in->target_cols);
    }
    ffn_dataset_close(ds);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f >= 0) {
        H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, NULL, print_attr, NULL);
        hid_t d = H5Dopen2(f, "x", H5P_DEFAULT);
        hid_t dcpl = d >= 0 ? H5Dget_create_plist(d) : -1;
        if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_VIRTUAL) {
            size_t count = 0;
            H5Pget_virtual_count(dcpl, &count);
            printf("x is virtual, %zu source%s:\n", count, count == 1 ? "" : "s");
            for (size_t i = 0; i < count; i++) {
                char name[4096];
                H5Pget_virtual_filename(dcpl, i, name, sizeof name);
                printf("  %s\n", name);
            }
        }
        if (dcpl >= 0) H5Pclose(dcpl);
        if (d >= 0) H5Dclose(d);
        H5Fclose(f);
    }
    if (!rc) print_meta(path);
    return rc;
}
