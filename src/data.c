/* ffn — HDF5 datasets: opening and validating the layout, reading rows
 * (the writer is data_writer.c).
 *
 * Reading. ffn_dataset_open checks everything once (types, ranks, row counts,
 * the scale of uint8 features, num_classes, every label, the range of float
 * targets, and for a virtual
 * dataset that each source file is there and large enough: HDF5 would
 * silently read zeros for a missing one). The read functions then build one
 * hyperslab selection per call (runs of consecutive rows joined with
 * H5S_SELECT_OR) and do one H5Dread per dataset.
 *
 * Threads. The HDF5 library is built threadsafe (one global lock), so reads may
 * run on a background thread while another thread computes. One ffn_dataset is
 * used by one thread at a time: its dataspaces and scratch buffer are reused
 * by every call, which keeps the steady state free of our own allocations
 * (the scratch only grows when a larger read comes along).
 *
 * Chunk cache. Datasets are chunked by rows (about 1 MiB a chunk). With a
 * chunk cache, HDF5 would read whole chunks to serve a few scattered rows; for
 * unfiltered data the cache is switched off so that only the selected rows are
 * read from the file. Compressed data (made by other tools) keeps a cache. */
#include "ffn/data.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "data_hdf5.h"
#include "data_rows.h"
#include "watchdog.h"
#include "ffn/mem.h"

#define LABEL_SCAN_ROWS ((size_t)1 << 16) /* rows of /y read at a time by open */
#define TARGET_SCAN_BYTES ((size_t)4 << 20) /* bytes of float /y read at a time by open */
#define LABELS_HELD_MAX ((size_t)64 << 20) /* bytes of labels kept in memory after open */
#define FILTERED_CACHE_BYTES ((size_t)32 << 20)
#define FILTERED_CACHE_SLOTS 12421

struct ffn_dataset {
    char *path;
    hid_t file, dx, dy;
    hid_t fspace_x, fspace_y; /* file dataspaces, reselected by every read */
    hid_t mspace_x, mspace_y; /* memory dataspaces, re-extended by every read */
    ffn_dataset_info info;
    uint8_t *scratch;         /* [rows of the largest read, D] raw uint8 features before scaling */
    size_t scratch_bytes;
    /* ffn_dataset_cache: all of /x as stored, [N, D] uint8 or float32, and
     * /y, [N] int32 or [N, K] float32; cache_y alone: the labels [N], kept
     * from open when they take at most LABELS_HELD_MAX bytes. */
    void *cache_x, *cache_y;
    ffn_row_map *rows_x, *rows_y; /* plain storage: rows read with pread (data_rows.h) */
    char **sources;           /* [n_sources] other files a virtual /x or /y reads, as found at open */
    size_t n_sources;
    int features_only;        /* opened by ffn_dataset_open_features: /y neither opened nor read */
    double *std_mean, *std_std; /* ffn_dataset_standardize: [D] applied to every read, or NULL */
};

/* A short name for an HDF5 datatype, for messages ("int16", "float64", ...). */
static const char *type_name(hid_t t, char *buf, size_t cap)
{
    size_t size = H5Tget_size(t);
    switch (H5Tget_class(t)) {
    case H5T_INTEGER:
        snprintf(buf, cap, "%s%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "uint" : "int", size * 8);
        break;
    case H5T_FLOAT: snprintf(buf, cap, "float%zu", size * 8); break;
    case H5T_STRING: snprintf(buf, cap, "string"); break;
    case H5T_COMPOUND: snprintf(buf, cap, "compound"); break;
    case H5T_ENUM: snprintf(buf, cap, "enum"); break;
    case H5T_ARRAY: snprintf(buf, cap, "array"); break;
    default: snprintf(buf, cap, "an unsupported type"); break;
    }
    return buf;
}

void ffn_dataset_close(ffn_dataset *ds)
{
    if (!ds) return;
    quiet_hdf5();
    close_id(&ds->mspace_x, H5Sclose);
    close_id(&ds->mspace_y, H5Sclose);
    close_id(&ds->fspace_x, H5Sclose);
    close_id(&ds->fspace_y, H5Sclose);
    close_id(&ds->dx, H5Dclose);
    close_id(&ds->dy, H5Dclose);
    close_id(&ds->file, H5Fclose);
    ffn_free(ds->scratch);
    ffn_free(ds->cache_x);
    ffn_free(ds->cache_y);
    ffn_row_map_free(ds->rows_x);
    ffn_row_map_free(ds->rows_y);
    for (size_t i = 0; i < ds->n_sources; i++) free(ds->sources[i]);
    free(ds->sources);
    free(ds->std_mean);
    free(ds->std_std);
    free(ds->path);
    free(ds);
}

const ffn_dataset_info *ffn_dataset_get_info(const ffn_dataset *ds) { return &ds->info; }
const char *ffn_dataset_path(const ffn_dataset *ds) { return ds->path; }
int ffn_dataset_direct_reads(const ffn_dataset *ds) { return ds->rows_x && (ds->rows_y || ds->features_only); }
size_t ffn_dataset_source_count(const ffn_dataset *ds) { return ds->n_sources; }
const char *ffn_dataset_source(const ffn_dataset *ds, size_t i) { return i < ds->n_sources ? ds->sources[i] : NULL; }

/* Remembers a virtual source file (once), so that tools can keep outputs off it. */
static ffn_status add_source(ffn_dataset *ds, const char *file)
{
    for (size_t i = 0; i < ds->n_sources; i++)
        if (strcmp(ds->sources[i], file) == 0) return FFN_OK;
    char **grown = realloc(ds->sources, (ds->n_sources + 1) * sizeof *grown);
    char *copy = copy_string(file);
    if (grown) ds->sources = grown;
    if (!grown || !copy) {
        free(copy);
        return ffn_fail(FFN_ERR_NOMEM, "%s: out of memory", ds->path);
    }
    ds->sources[ds->n_sources++] = copy;
    return FFN_OK;
}

/* A scalar numeric attribute of obj as a double; *found = 0 when absent. */
static ffn_status read_number_attr(hid_t obj, const char *path, const char *field,
                                   const char *name, int integer_only, double *value, int *found)
{
    *found = 0;
    htri_t exists = H5Aexists(obj, name);
    if (exists < 0)
        return ffn_fail(FFN_ERR_FORMAT, "%s: %s: cannot look up attribute \"%s\"", path, field, name);
    if (!exists) return FFN_OK;
    ffn_status st = FFN_OK;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
    hid_t s = a >= 0 ? H5Aget_space(a) : H5I_INVALID_HID;
    char tn[32];
    if (a < 0 || t < 0 || s < 0) {
        st = ffn_fail(FFN_ERR_FORMAT, "%s: %s: cannot open attribute \"%s\"", path, field, name);
    } else if (H5Tget_class(t) != H5T_INTEGER && (integer_only || H5Tget_class(t) != H5T_FLOAT)) {
        st = ffn_fail(FFN_ERR_FORMAT, "%s: %s: attribute \"%s\" has type %s, expected %s", path,
                      field, name, type_name(t, tn, sizeof tn),
                      integer_only ? "an integer" : "a number");
    } else if (H5Sget_simple_extent_npoints(s) != 1) {
        st = ffn_fail(FFN_ERR_FORMAT, "%s: %s: attribute \"%s\" holds %lld values, expected one",
                      path, field, name, (long long)H5Sget_simple_extent_npoints(s));
    } else if (H5Aread(a, H5T_NATIVE_DOUBLE, value) < 0) {
        st = ffn_fail(FFN_ERR_FORMAT, "%s: %s: cannot read attribute \"%s\"", path, field, name);
    } else {
        *found = 1;
    }
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return st;
}

/* Opens /name as a dataset and reads its rank and dims (rank <= 2 kept). */
static ffn_status open_member(hid_t file, const char *path, const char *name, const char *expect,
                              hid_t *out, int *rank, hsize_t dims[2])
{
    htri_t exists = H5Lexists(file, name, H5P_DEFAULT);
    if (exists <= 0)
        return ffn_fail(FFN_ERR_FORMAT, "%s: missing dataset /%s (expected %s)", path, name, expect);
    hid_t o = H5Oopen(file, name, H5P_DEFAULT);
    H5I_type_t kind = o >= 0 ? H5Iget_type(o) : H5I_BADID;
    if (o >= 0) H5Oclose(o);
    if (kind != H5I_DATASET)
        return ffn_fail(FFN_ERR_FORMAT, "%s: /%s is not a dataset (expected %s)", path, name, expect);
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0) return ffn_fail(FFN_ERR_FORMAT, "%s: cannot open dataset /%s", path, name);
    hid_t s = H5Dget_space(d);
    int r = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    hsize_t all[H5S_MAX_RANK];
    if (r < 0 || H5Sget_simple_extent_dims(s, all, NULL) < 0) {
        if (s >= 0) H5Sclose(s);
        H5Dclose(d);
        return ffn_fail(FFN_ERR_FORMAT, "%s: cannot read the shape of /%s", path, name);
    }
    H5Sclose(s);
    dims[0] = r > 0 ? all[0] : 0;
    dims[1] = r > 1 ? all[1] : 0;
    *rank = r;
    *out = d;
    return FFN_OK;
}

/* The source dataset sd must hold what mapping i of dcpl reads from it. An
 * "all" source selection is stored without an extent in the file, so it is
 * checked by count against the virtual selection; a hyperslab by its bounds. */
static ffn_status check_source_size(hid_t dcpl, size_t i, hid_t sd, const char *path,
                                    const char *field, const char *file, const char *dset)
{
    ffn_status st = FFN_OK;
    hid_t vsp = H5Pget_virtual_vspace(dcpl, i), ssp = H5Pget_virtual_srcspace(dcpl, i);
    hid_t dsp = H5Dget_space(sd);
    hsize_t sdims[H5S_MAX_RANK], lo[H5S_MAX_RANK], hi[H5S_MAX_RANK];
    int srank = dsp >= 0 ? H5Sget_simple_extent_dims(dsp, sdims, NULL) : -1;
    hssize_t need = vsp >= 0 ? H5Sget_select_npoints(vsp) : -1;
    hssize_t have = dsp >= 0 ? H5Sget_simple_extent_npoints(dsp) : -1;
    if (vsp < 0 || ssp < 0 || srank < 0 || need < 0 || have < 0) {
        st = ffn_fail(FFN_ERR_FORMAT, "%s: %s: cannot read virtual mapping %zu (source %s)", path,
                      field, i, file);
    } else if (H5Sget_select_type(ssp) == H5S_SEL_ALL) {
        if (have != need)
            st = ffn_fail(FFN_ERR_FORMAT,
                          "%s: %s: virtual source %s %s holds %lld values, the mapping needs %lld",
                          path, field, file, dset, (long long)have, (long long)need);
    } else if (H5Sget_select_bounds(ssp, lo, hi) < 0) {
        st = ffn_fail(FFN_ERR_FORMAT, "%s: %s: virtual mapping %zu has an unreadable source selection",
                      path, field, i);
    } else {
        int r = H5Sget_simple_extent_ndims(ssp);
        if (r > 0 && r != srank)
            st = ffn_fail(FFN_ERR_FORMAT, "%s: %s: virtual source %s %s has rank %d, the mapping %d",
                          path, field, file, dset, srank, r);
        for (int k = 0; k < srank && st == FFN_OK; k++)
            if (hi[k] >= sdims[k])
                st = ffn_fail(FFN_ERR_FORMAT,
                              "%s: %s: virtual source %s %s has %llu entries in dimension %d, the "
                              "mapping needs %llu",
                              path, field, file, dset, (unsigned long long)sdims[k], k,
                              (unsigned long long)hi[k] + 1);
    }
    if (dsp >= 0) H5Sclose(dsp);
    if (ssp >= 0) H5Sclose(ssp);
    if (vsp >= 0) H5Sclose(vsp);
    return st;
}

/* For a virtual dataset, checks every mapping's source: the file is found where
 * HDF5 looks for it (absolute, or relative to the virtual file's directory, or
 * to the working directory), holds the source dataset, and that dataset is large
 * enough for the mapped selection. Sets *filtered when any source is filtered,
 * and records each source file in ds->sources. */
static ffn_status check_virtual_sources(ffn_dataset *ds, hid_t d, const char *path, const char *field,
                                        int *filtered)
{
    hid_t dcpl = H5Dget_create_plist(d);
    if (dcpl < 0) return ffn_fail(FFN_ERR_FORMAT, "%s: %s: cannot read its creation properties", path, field);
    ffn_status st = FFN_OK;
    H5D_layout_t layout = H5Pget_layout(dcpl);
    if (layout == H5D_CHUNKED) {
        if (H5Pget_nfilters(dcpl) > 0) *filtered = 1;
    } else if (layout == H5D_VIRTUAL) {
        size_t count = 0;
        if (H5Pget_virtual_count(dcpl, &count) < 0)
            st = ffn_fail(FFN_ERR_FORMAT, "%s: %s: cannot read the virtual mappings", path, field);
        char dir[4096], src[4096], dset[1024], full[8192];
        dir_of(path, dir, sizeof dir);
        for (size_t i = 0; i < count && st == FFN_OK; i++) {
            ssize_t fl = H5Pget_virtual_filename(dcpl, i, src, sizeof src);
            ssize_t dl = H5Pget_virtual_dsetname(dcpl, i, dset, sizeof dset);
            if (fl < 0 || dl < 0 || (size_t)fl >= sizeof src || (size_t)dl >= sizeof dset) {
                st = ffn_fail(FFN_ERR_FORMAT, "%s: %s: virtual mapping %zu has an unreadable source name",
                              path, field, i);
                break;
            }
            const char *found = NULL;
            if (strcmp(src, ".") == 0) {
                found = path;
            } else if (src[0] == '/') {
                if (access(src, R_OK) == 0) found = src;
            } else {
                snprintf(full, sizeof full, "%s/%s", dir, src);
                if (access(full, R_OK) == 0) found = full;
                else if (access(src, R_OK) == 0) found = src;
            }
            if (!found) {
                st = ffn_fail(FFN_ERR_FORMAT,
                              "%s: %s is a virtual dataset whose source file %s is missing (looked in %s)",
                              path, field, src, src[0] == '/' ? "/" : dir);
                break;
            }
            if (found == path) continue; /* the same file: checked with the dataset itself */
            if ((st = add_source(ds, found)) != FFN_OK) break;
            hid_t f = H5Fis_hdf5(found) > 0 ? H5Fopen(found, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
            if (f < 0) {
                st = ffn_fail(FFN_ERR_FORMAT, "%s: %s: virtual source %s is not a readable HDF5 file",
                              path, field, found);
                break;
            }
            hid_t sd = H5Lexists(f, dset, H5P_DEFAULT) > 0 ? H5Dopen2(f, dset, H5P_DEFAULT) : -1;
            if (sd < 0) {
                st = ffn_fail(FFN_ERR_FORMAT, "%s: %s: virtual source %s has no dataset %s", path,
                              field, found, dset);
            } else {
                st = check_source_size(dcpl, i, sd, path, field, found, dset);
                hid_t scpl = H5Dget_create_plist(sd);
                if (scpl >= 0) {
                    if (H5Pget_layout(scpl) == H5D_CHUNKED && H5Pget_nfilters(scpl) > 0) *filtered = 1;
                    H5Pclose(scpl);
                }
                H5Dclose(sd);
            }
            H5Fclose(f);
        }
    }
    H5Pclose(dcpl);
    return st;
}

/* Reopens d with a chunk cache that suits row reads (see the top of the file). */
static ffn_status reopen_with_cache(hid_t file, const char *name, hid_t *d, int filtered,
                                    const char *path)
{
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (dapl < 0) return ffn_fail(FFN_ERR_IO, "%s: /%s: cannot create access properties", path, name);
    if (filtered)
        H5Pset_chunk_cache(dapl, FILTERED_CACHE_SLOTS, FILTERED_CACHE_BYTES, 1.0);
    else
        H5Pset_chunk_cache(dapl, 0, 0, 1.0);
    hid_t nd = H5Dopen2(file, name, dapl);
    H5Pclose(dapl);
    if (nd < 0) return ffn_fail(FFN_ERR_IO, "%s: cannot reopen dataset /%s", path, name);
    H5Dclose(*d);
    *d = nd;
    return FFN_OK;
}

/* Reads rows [start, start + n) of a 1-D integer /y into buf. */
static ffn_status read_label_block(ffn_dataset *ds, hsize_t start, size_t n, int32_t *buf)
{
    hsize_t s[1] = { start }, c[1] = { n };
    if (H5Sselect_hyperslab(ds->fspace_y, H5S_SELECT_SET, s, NULL, c, NULL) < 0 ||
        H5Sset_extent_simple(ds->mspace_y, 1, c, NULL) < 0 ||
        H5Dread(ds->dy, H5T_NATIVE_INT32, ds->mspace_y, ds->fspace_y, H5P_DEFAULT, buf) < 0)
        return ffn_fail(FFN_ERR_IO, "%s: /y: read of rows %llu..%llu failed", ds->path,
                        (unsigned long long)start, (unsigned long long)(start + n - 1));
    return FFN_OK;
}

/* Reads every label once, in bounded blocks, checking the range. */
static ffn_status scan_labels(ffn_dataset *ds, int have_attr, long long attr_classes)
{
    size_t rows = ds->info.rows;
    size_t block = rows < LABEL_SCAN_ROWS ? rows : LABEL_SCAN_ROWS;
    /* Labels are 4 bytes a row: up to LABELS_HELD_MAX they are kept once read
     * here, and batches take theirs from memory (half the reads of a batch
     * that streams /x from the file). Beyond, one block at a time. */
    int keep = rows <= LABELS_HELD_MAX / sizeof(int32_t);
    int32_t *all = keep ? ffn_alloc(rows, sizeof *all) : NULL;
    if (keep && !all) ffn_clear_error(); /* not held after all: read per batch */
    int32_t *buf = all ? NULL : ffn_alloc(block, sizeof *buf);
    if (!all && !buf) return FFN_ERR_NOMEM;
    ffn_status st = FFN_OK;
    int32_t max = -1;
    for (size_t at = 0; at < rows && st == FFN_OK; at += block) {
        size_t n = rows - at < block ? rows - at : block;
        int32_t *got = all ? all + at : buf;
        st = read_label_block(ds, at, n, got);
        for (size_t i = 0; i < n && st == FFN_OK; i++) {
            int32_t v = got[i];
            if (v < 0) {
                st = ffn_fail(FFN_ERR_FORMAT, "%s: /y row %zu has label %d, expected a label >= 0",
                              ds->path, at + i, (int)v);
            } else if (have_attr && (long long)v >= attr_classes) {
                st = ffn_fail(FFN_ERR_FORMAT,
                              "%s: /y row %zu has label %d, expected 0 <= label < %lld (num_classes)",
                              ds->path, at + i, (int)v, attr_classes);
            } else if (v == INT32_MAX) {
                st = ffn_fail(FFN_ERR_FORMAT, "%s: /y row %zu has label %d, expected a label < %d",
                              ds->path, at + i, (int)v, INT32_MAX);
            }
            if (v > max) max = v;
        }
    }
    ffn_free(buf);
    if (st != FFN_OK) {
        ffn_free(all);
        return st;
    }
    ds->cache_y = all;
    ds->info.num_classes = have_attr ? (size_t)attr_classes : (size_t)max + 1;
    return FFN_OK;
}

/* Reads every float target once, in bounded blocks, recording the smallest
 * and largest finite value and where they are: a loss that needs targets in a
 * range (bce: [0, 1]) is then checked before training, not after a negative
 * loss. Non-finite targets are left to the reads, which name them. */
static ffn_status scan_targets(ffn_dataset *ds)
{
    ffn_dataset_info *in = &ds->info;
    const size_t k = in->target_cols;
    size_t block = TARGET_SCAN_BYTES / sizeof(float) / k;
    if (block == 0) block = 1;
    if (block > in->rows) block = in->rows;
    float *buf = ffn_alloc(block, k * sizeof *buf);
    if (!buf) return FFN_ERR_NOMEM;
    ffn_status st = FFN_OK;
    int seen = 0;
    for (size_t at = 0; at < in->rows && st == FFN_OK; at += block) {
        size_t n = in->rows - at < block ? in->rows - at : block;
        hsize_t s[2] = { at, 0 }, c[2] = { n, k };
        if (H5Sselect_hyperslab(ds->fspace_y, H5S_SELECT_SET, s, NULL, c, NULL) < 0 ||
            H5Sset_extent_simple(ds->mspace_y, 2, c, NULL) < 0 ||
            H5Dread(ds->dy, H5T_NATIVE_FLOAT, ds->mspace_y, ds->fspace_y, H5P_DEFAULT, buf) < 0) {
            st = ffn_fail(FFN_ERR_IO, "%s: /y: read of rows %zu..%zu failed", ds->path, at, at + n - 1);
            break;
        }
        for (size_t i = 0; i < n * k; i++) {
            float v = buf[i];
            if (!isfinite(v)) continue;
            if (!seen || v < in->y_min) {
                in->y_min = v;
                in->y_min_row = at + i / k;
                in->y_min_col = i % k;
            }
            if (!seen || v > in->y_max) {
                in->y_max = v;
                in->y_max_row = at + i / k;
                in->y_max_col = i % k;
            }
            seen = 1;
        }
    }
    ffn_free(buf);
    return st;
}

static ffn_status open_checked(ffn_dataset *ds)
{
    const char *path = ds->path;
    char tn[32];
    ffn_status st;

    struct stat sb;
    if (stat(path, &sb) != 0)
        return ffn_fail(FFN_ERR_IO, "%s: cannot open dataset file: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return ffn_fail(FFN_ERR_IO, "%s: is a directory, expected an HDF5 dataset file", path);
    if (access(path, R_OK) != 0)
        return ffn_fail(FFN_ERR_IO, "%s: cannot read dataset file: %s", path, strerror(errno));
    if (H5Fis_hdf5(path) <= 0)
        return ffn_fail(FFN_ERR_FORMAT, "%s: not an HDF5 file (no HDF5 signature found)", path);
    ds->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (ds->file < 0)
        return ffn_fail(FFN_ERR_FORMAT,
                        "%s: cannot open as HDF5 (the file is truncated or corrupt)", path);

    /* /x */
    int xr, yr;
    hsize_t xd[2], yd[2];
    st = open_member(ds->file, path, "x", "[N, D] float32 or uint8", &ds->dx, &xr, xd);
    if (st != FFN_OK) return st;
    hid_t xt = H5Dget_type(ds->dx);
    if (xt < 0) return ffn_fail(FFN_ERR_FORMAT, "%s: /x: cannot read its datatype", path);
    H5T_class_t xc = H5Tget_class(xt);
    size_t xs = H5Tget_size(xt);
    int x_float = xc == H5T_FLOAT && xs == 4;
    int x_u8 = xc == H5T_INTEGER && xs == 1 && H5Tget_sign(xt) == H5T_SGN_NONE;
    type_name(xt, tn, sizeof tn);
    H5Tclose(xt);
    if (!x_float && !x_u8)
        return ffn_fail(FFN_ERR_FORMAT,
                        "%s: /x has type %s, expected float32, or uint8 with a \"scale\" attribute",
                        path, tn);
    if (xr != 2)
        return ffn_fail(FFN_ERR_FORMAT, "%s: /x has rank %d, expected 2 ([N, D])", path, xr);
    if (xd[0] == 0) return ffn_fail(FFN_ERR_FORMAT, "%s: /x has 0 rows, expected at least one", path);
    if (xd[1] == 0) return ffn_fail(FFN_ERR_FORMAT, "%s: /x has 0 features, expected at least one", path);
    if (xd[0] > SIZE_MAX || xd[1] > SIZE_MAX || xd[0] >= INT64_MAX) /* hsize_t is 64-bit */
        return ffn_fail(FFN_ERR_FORMAT, "%s: /x shape is too large", path);
    size_t cells;
    if (ffn_size_mul((size_t)xd[0], (size_t)xd[1], &cells) != 0 ||
        ffn_size_mul(cells, sizeof(float), &cells) != 0)
        return ffn_fail(FFN_ERR_FORMAT, "%s: /x shape %llu x %llu overflows", path,
                        (unsigned long long)xd[0], (unsigned long long)xd[1]);
    ds->info.rows = (size_t)xd[0];
    ds->info.features = (size_t)xd[1];
    ds->info.x_is_uint8 = x_u8;
    ds->info.x_scale = 1.0f;
    ds->info.x_offset = 0.0f;
    if (x_u8) {
        double scale = 0, offset = 0;
        int found = 0, has_offset = 0;
        st = read_number_attr(ds->dx, path, "/x", "scale", 0, &scale, &found);
        if (st != FFN_OK) return st;
        if (!found)
            return ffn_fail(FFN_ERR_FORMAT,
                            "%s: /x is uint8 but has no \"scale\" attribute (expected a finite "
                            "non-zero number, e.g. 1/255)", path);
        if (!isfinite(scale) || scale == 0 || !isfinite((float)scale))
            return ffn_fail(FFN_ERR_FORMAT,
                            "%s: /x attribute \"scale\" is %g, expected a finite non-zero number",
                            path, scale);
        st = read_number_attr(ds->dx, path, "/x", "offset", 0, &offset, &has_offset);
        if (st != FFN_OK) return st;
        if (has_offset && (!isfinite(offset) || !isfinite((float)offset)))
            return ffn_fail(FFN_ERR_FORMAT, "%s: /x attribute \"offset\" is %g, expected a finite number",
                            path, offset);
        ds->info.x_scale = (float)scale;
        ds->info.x_offset = (float)offset;
        if (!isfinite(255.0f * ds->info.x_scale + ds->info.x_offset))
            return ffn_fail(FFN_ERR_FORMAT, "%s: /x attributes scale %g and offset %g overflow float32",
                            path, scale, offset);
    }

    /* /y: not looked at when only the features are wanted (predictions). */
    if (ds->features_only) {
        int xf = 0;
        st = check_virtual_sources(ds, ds->dx, path, "/x", &xf);
        if (st == FFN_OK) st = reopen_with_cache(ds->file, "x", &ds->dx, xf, path);
        if (st != FFN_OK) return st;
        ds->fspace_x = H5Dget_space(ds->dx);
        hsize_t one[2] = { 1, 1 };
        ds->mspace_x = H5Screate_simple(2, one, NULL);
        if (ds->fspace_x < 0 || ds->mspace_x < 0) return ffn_fail(FFN_ERR_IO, "%s: cannot create dataspaces", path);
        ds->rows_x = ffn_row_map_build(path, ds->file, ds->dx, x_u8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT,
                                       ds->info.rows, ds->info.features * (x_u8 ? 1 : sizeof(float)));
        return FFN_OK;
    }
    st = open_member(ds->file, path, "y", "[N] int32 labels or [N, K] float32 targets", &ds->dy, &yr, yd);
    if (st != FFN_OK) return st;
    hid_t yt = H5Dget_type(ds->dy);
    if (yt < 0) return ffn_fail(FFN_ERR_FORMAT, "%s: /y: cannot read its datatype", path);
    H5T_class_t yc = H5Tget_class(yt);
    size_t ys = H5Tget_size(yt);
    type_name(yt, tn, sizeof tn);
    H5Tclose(yt);
    /* Labels of another integer width are accepted: they are read as int32 and
     * the range check below rejects any value that does not fit. */
    if (yc == H5T_INTEGER && ys <= 8) {
        if (yr != 1)
            return ffn_fail(FFN_ERR_FORMAT, "%s: /y holds integer labels with rank %d, expected rank 1 ([N])",
                            path, yr);
        ds->info.has_labels = 1;
        ds->info.target_cols = 1;
    } else if (yc == H5T_FLOAT && ys == 4) {
        if (yr != 2)
            return ffn_fail(FFN_ERR_FORMAT,
                            "%s: /y holds float32 targets with rank %d, expected rank 2 ([N, K]; "
                            "use [N, 1] for one target)", path, yr);
        if (yd[1] == 0 || yd[1] > SIZE_MAX)
            return ffn_fail(FFN_ERR_FORMAT, "%s: /y has %llu target columns, expected at least one",
                            path, (unsigned long long)yd[1]);
        ds->info.has_labels = 0;
        ds->info.target_cols = (size_t)yd[1];
    } else {
        return ffn_fail(FFN_ERR_FORMAT,
                        "%s: /y has type %s, expected int32 labels [N] or float32 targets [N, K]",
                        path, tn);
    }
    if (yd[0] != xd[0])
        return ffn_fail(FFN_ERR_FORMAT, "%s: /y has %llu rows but /x has %llu, expected the same",
                        path, (unsigned long long)yd[0], (unsigned long long)xd[0]);

    /* num_classes */
    double nc = 0;
    int have_nc = 0;
    st = read_number_attr(ds->file, path, "root", "num_classes", 1, &nc, &have_nc);
    if (st != FFN_OK) return st;
    if (have_nc && !(nc >= 1 && nc <= (double)INT32_MAX))
        return ffn_fail(FFN_ERR_FORMAT,
                        "%s: attribute num_classes is %.0f, expected an integer from 1 to %d", path,
                        nc, INT32_MAX);

    /* Virtual sources, then the chunk cache. */
    int xf = 0, yf = 0;
    st = check_virtual_sources(ds, ds->dx, path, "/x", &xf);
    if (st == FFN_OK) st = check_virtual_sources(ds, ds->dy, path, "/y", &yf);
    if (st == FFN_OK) st = reopen_with_cache(ds->file, "x", &ds->dx, xf, path);
    if (st == FFN_OK) st = reopen_with_cache(ds->file, "y", &ds->dy, yf, path);
    if (st != FFN_OK) return st;

    ds->fspace_x = H5Dget_space(ds->dx);
    ds->fspace_y = H5Dget_space(ds->dy);
    hsize_t one[2] = { 1, 1 };
    ds->mspace_x = H5Screate_simple(2, one, NULL);
    ds->mspace_y = H5Screate_simple(1, one, NULL);
    if (ds->fspace_x < 0 || ds->fspace_y < 0 || ds->mspace_x < 0 || ds->mspace_y < 0)
        return ffn_fail(FFN_ERR_IO, "%s: cannot create dataspaces", path);

    ds->rows_x = ffn_row_map_build(path, ds->file, ds->dx, x_u8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT,
                                   ds->info.rows, ds->info.features * (x_u8 ? 1 : sizeof(float)));
    ds->rows_y = ffn_row_map_build(path, ds->file, ds->dy, ds->info.has_labels ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT,
                                   ds->info.rows, ds->info.has_labels ? sizeof(int32_t)
                                                                      : ds->info.target_cols * sizeof(float));

    if (ds->info.has_labels) return scan_labels(ds, have_nc, (long long)nc);
    ds->info.num_classes = 0;
    return scan_targets(ds);
}

static ffn_status open_dataset(ffn_dataset **out, const char *path, int features_only)
{
    *out = NULL;
    quiet_hdf5();
    if (!path || !*path) return ffn_fail(FFN_ERR_ARG, "dataset: no file name given");
    ffn_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return ffn_fail(FFN_ERR_NOMEM, "%s: out of memory", path);
    ds->file = ds->dx = ds->dy = H5I_INVALID_HID;
    ds->fspace_x = ds->fspace_y = ds->mspace_x = ds->mspace_y = H5I_INVALID_HID;
    ds->features_only = features_only;
    ds->path = copy_string(path);
    if (!ds->path) {
        free(ds);
        return ffn_fail(FFN_ERR_NOMEM, "%s: out of memory", path);
    }
    ffn_watchdog *guard;
    ffn_status st = ffn_watchdog_start(&guard, path, "opening the dataset");
    if (st == FFN_OK) st = open_checked(ds);
    ffn_watchdog_stop(guard);
    if (st != FFN_OK) {
        ffn_dataset_close(ds);
        return st;
    }
    *out = ds;
    return FFN_OK;
}

ffn_status ffn_dataset_open(ffn_dataset **out, const char *path) { return open_dataset(out, path, 0); }
ffn_status ffn_dataset_open_features(ffn_dataset **out, const char *path) { return open_dataset(out, path, 1); }

/* Selects the rows idx[0..n) (strictly increasing, checked by the caller) of a
 * rank-1 or rank-2 file dataspace as a union of runs of consecutive rows. */
static herr_t select_rows(hid_t fspace, int rank, hsize_t cols, const uint64_t *idx, size_t n)
{
    (void)rank; /* a rank-1 dataspace reads only the first entry of each array */
    H5S_seloper_t op = H5S_SELECT_SET;
    size_t i = 0;
    while (i < n) {
        size_t j = i + 1;
        while (j < n && idx[j] == idx[j - 1] + 1) j++;
        hsize_t start[2] = { idx[i], 0 }, count[2] = { 1, 1 }, block[2] = { j - i, cols };
        if (H5Sselect_hyperslab(fspace, op, start, NULL, count, block) < 0) return -1;
        op = H5S_SELECT_OR;
        i = j;
    }
    return 0;
}

/* The row a position of this read came from. */
static uint64_t row_of(const uint64_t *idx, uint64_t start, size_t i)
{
    return idx ? idx[i] : start + i;
}

/* Index of the first non-finite value of v[0..n), or n. A branch-free pass
 * over the exponent bits (vectorised), then a search only when one was seen. */
static size_t first_nonfinite(const float *v, size_t n)
{
    const uint32_t *bits = (const uint32_t *)(const void *)v;
    uint32_t any = 0;
    for (size_t i = 0; i < n; i++) any |= (uint32_t)((bits[i] & 0x7f800000u) == 0x7f800000u);
    if (!any) return n;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return i;
    return n;
}

/* Every value of v (n rows of `cols`) finite, or an error naming the row and
 * column: field is "/x" (features) or "/y" (targets). */
static ffn_status check_finite(const ffn_dataset *ds, const char *field, const char *column, const float *v,
                               size_t n, size_t cols, const uint64_t *idx, uint64_t start)
{
    size_t bad = first_nonfinite(v, n * cols);
    if (bad == n * cols) return FFN_OK;
    return ffn_fail(FFN_ERR_NUMERIC, "%s: %s row %llu %s %zu is %s, expected a finite value", ds->path, field,
                    (unsigned long long)row_of(idx, start, bad / cols), column, bad % cols,
                    isnan(v[bad]) ? "NaN" : "infinite");
}

/* Rows this far ahead of the one being copied are requested from memory: a
 * batch's rows are scattered over the cache, and each new row's first lines
 * would otherwise stall on DRAM (the next batch's rows, requested one step
 * ahead, are mostly evicted by the step's own traffic by then). Fashion-MNIST
 * at batch 32, one rank: data wait 12.8-13.2% -> 6.7-7.9% of the step. */
enum { GATHER_AHEAD = 4 };

/* x = byte * scale + offset, on the widest vectors the CPU has (a uint8
 * dataset's every batch goes through it; the same bits at any width, no FMA). */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2", "default"), optimize("fp-contract=off")))
#endif
static void scale_bytes(float *restrict x, const uint8_t *restrict bytes, size_t n, float scale, float offset)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)bytes[i] * scale + offset;
}

static void prefetch_cached_row(const ffn_dataset *ds, const uint64_t *idx, uint64_t start, size_t i, size_t xrow)
{
    const char *row = (const char *)ds->cache_x + (size_t)row_of(idx, start, i) * xrow;
    for (size_t b = 0; b < xrow; b += 64) __builtin_prefetch(row + b, 0, 3);
    __builtin_prefetch(row + xrow - 1, 0, 3);
}

/* read_common served from memory (ffn_dataset_cache): the same values and the
 * same checks and messages as a read from the file. */
static ffn_status gather_cached(ffn_dataset *ds, const uint64_t *idx, uint64_t start, size_t n,
                                float *x, int32_t *labels, float *values)
{
    const ffn_dataset_info *in = &ds->info;
    const size_t d = in->features;
    const size_t xrow = d * (in->x_is_uint8 ? 1 : sizeof(float));
    if (x) {
        for (size_t i = 0; i < GATHER_AHEAD && i < n; i++) prefetch_cached_row(ds, idx, start, i, xrow);
        if (in->x_is_uint8) {
            const float scale = in->x_scale, offset = in->x_offset;
            for (size_t i = 0; i < n; i++) {
                if (i + GATHER_AHEAD < n) prefetch_cached_row(ds, idx, start, i + GATHER_AHEAD, xrow);
                const uint8_t *src = (const uint8_t *)ds->cache_x + (size_t)row_of(idx, start, i) * d;
                float *dst = x + i * d;
                scale_bytes(dst, src, d, scale, offset);
            }
        } else {
            for (size_t i = 0; i < n; i++) {
                if (i + GATHER_AHEAD < n) prefetch_cached_row(ds, idx, start, i + GATHER_AHEAD, xrow);
                memcpy(x + i * d, (const float *)ds->cache_x + (size_t)row_of(idx, start, i) * d,
                       d * sizeof *x);
            }
            ffn_status st = check_finite(ds, "/x", "feature", x, n, d, idx, start);
            if (st != FFN_OK) return st;
        }
    }
    if (ds->features_only) return FFN_OK;
    if (in->has_labels && labels) {
        for (size_t i = 0; i < n; i++) labels[i] = ((const int32_t *)ds->cache_y)[row_of(idx, start, i)];
    } else if (!in->has_labels && values) {
        const size_t k = in->target_cols;
        for (size_t i = 0; i < n; i++)
            memcpy(values + i * k, (const float *)ds->cache_y + (size_t)row_of(idx, start, i) * k,
                   k * sizeof *values);
        return check_finite(ds, "/y", "target", values, n, k, idx, start);
    }
    return FFN_OK;
}

ffn_status ffn_dataset_cache(ffn_dataset *ds, size_t max_bytes, int *cached)
{
    quiet_hdf5();
    if (cached) *cached = ds->cache_x != NULL;
    if (ds->cache_x) return FFN_OK;
    const ffn_dataset_info *in = &ds->info;
    size_t xb, yb, total;
    if (ffn_size_mul(in->rows, in->features, &xb) != 0 ||
        ffn_size_mul(xb, in->x_is_uint8 ? 1 : sizeof(float), &xb) != 0 ||
        ffn_size_mul(in->rows, ds->features_only ? 0 : in->has_labels ? sizeof(int32_t) : in->target_cols * sizeof(float), &yb) != 0 ||
        ffn_size_add(xb, yb, &total) != 0 || total > max_bytes)
        return FFN_OK;
    void *held_y = ds->cache_y; /* labels kept since open: reused, not read again */
    void *cx = ffn_alloc(xb, 1), *cy = held_y ? held_y : ds->features_only ? NULL : ffn_alloc(yb, 1);
    ffn_status st = FFN_OK;
    if (!cx || (!cy && !ds->features_only)) {
        ffn_clear_error(); /* too big to hold after all: keep reading from the file */
        ffn_free(cx);
        if (cy != held_y) ffn_free(cy);
        return FFN_OK;
    }
    /* Whole blocks of contiguous rows: one large sequential read each. */
    const size_t xrow = xb / in->rows, yrow = yb / in->rows;
    size_t block = ((size_t)64 << 20) / (xrow + yrow);
    if (block == 0) block = 1;
    for (size_t at = 0; at < in->rows && st == FFN_OK; at += block) {
        size_t n = in->rows - at < block ? in->rows - at : block;
        hsize_t mdims[2] = { n, in->features };
        if (select_range(ds->fspace_x, 2, in->features, at, n) < 0 ||
            H5Sset_extent_simple(ds->mspace_x, 2, mdims, NULL) < 0 ||
            H5Dread(ds->dx, in->x_is_uint8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT, ds->mspace_x,
                    ds->fspace_x, H5P_DEFAULT, (char *)cx + at * xrow) < 0) {
            st = ffn_fail(FFN_ERR_IO, "%s: /x: read of rows %zu..%zu failed", ds->path, at, at + n - 1);
            break;
        }
        if (held_y || ds->features_only) continue;
        int rank = in->has_labels ? 1 : 2;
        hsize_t cols = in->has_labels ? 1 : in->target_cols;
        hsize_t ydims[2] = { n, cols };
        if (select_range(ds->fspace_y, rank, cols, at, n) < 0 ||
            H5Sset_extent_simple(ds->mspace_y, rank, ydims, NULL) < 0 ||
            H5Dread(ds->dy, in->has_labels ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT, ds->mspace_y,
                    ds->fspace_y, H5P_DEFAULT, (char *)cy + at * yrow) < 0)
            st = ffn_fail(FFN_ERR_IO, "%s: /y: read of rows %zu..%zu failed", ds->path, at, at + n - 1);
    }
    if (st != FFN_OK) {
        ffn_free(cx);
        if (cy != held_y) ffn_free(cy);
        return st;
    }
    ds->cache_x = cx;
    ds->cache_y = cy;
    if (cached) *cached = 1;
    return FFN_OK;
}

void ffn_dataset_prefetch_rows(const ffn_dataset *ds, const uint64_t *idx, size_t n)
{
    if (!ds->cache_x) return;
    const ffn_dataset_info *in = &ds->info;
    const size_t xrow = in->features * (in->x_is_uint8 ? 1 : sizeof(float));
    const size_t yrow = in->has_labels ? sizeof(int32_t) : in->target_cols * sizeof(float);
    for (size_t i = 0; i < n; i++) {
        if (idx[i] >= in->rows) continue;
        const char *x = (const char *)ds->cache_x + (size_t)idx[i] * xrow;
        for (size_t b = 0; b < xrow; b += 64) __builtin_prefetch(x + b, 0, 1);
        __builtin_prefetch(x + xrow - 1, 0, 1);
        if (ds->features_only) continue;
        const char *y = (const char *)ds->cache_y + (size_t)idx[i] * yrow;
        for (size_t b = 0; b < yrow; b += 64) __builtin_prefetch(y + b, 0, 1);
    }
}

/* One read of n rows, either idx (sorted) or the range [start, start + n). */
static ffn_status read_stored(ffn_dataset *ds, const uint64_t *idx, uint64_t start, size_t n,
                              float *x, int32_t *labels, float *values);

/* The rows as stored, then standardized when ffn_dataset_standardize asked. */
static ffn_status read_common(ffn_dataset *ds, const uint64_t *idx, uint64_t start, size_t n,
                              float *x, int32_t *labels, float *values)
{
    ffn_status st = read_stored(ds, idx, start, n, x, labels, values);
    if (st == FFN_OK && x && ds->std_mean) ffn_standardize_rows(x, n, ds->info.features, ds->std_mean, ds->std_std);
    return st;
}

ffn_status ffn_dataset_standardize(ffn_dataset *ds, const double *mean, const double *std)
{
    free(ds->std_mean);
    free(ds->std_std);
    ds->std_mean = ds->std_std = NULL;
    if (!mean) return FFN_OK;
    size_t d = ds->info.features;
    ds->std_mean = malloc(d * sizeof *ds->std_mean);
    ds->std_std = malloc(d * sizeof *ds->std_std);
    if (!ds->std_mean || !ds->std_std) {
        free(ds->std_mean);
        free(ds->std_std);
        ds->std_mean = ds->std_std = NULL;
        return ffn_fail(FFN_ERR_NOMEM, "%s: out of memory for %zu feature statistics", ds->path, d);
    }
    memcpy(ds->std_mean, mean, d * sizeof *mean);
    memcpy(ds->std_std, std, d * sizeof *std);
    return FFN_OK;
}

static ffn_status read_stored(ffn_dataset *ds, const uint64_t *idx, uint64_t start, size_t n,
                              float *x, int32_t *labels, float *values)
{
    quiet_hdf5();
    const ffn_dataset_info *in = &ds->info;
    if (n == 0) return FFN_OK;
    if (idx) {
        for (size_t i = 0; i < n; i++) {
            if (idx[i] >= in->rows)
                return ffn_fail(FFN_ERR_ARG, "%s: row %llu requested, the dataset has %zu rows",
                                ds->path, (unsigned long long)idx[i], in->rows);
            if (i > 0 && idx[i] <= idx[i - 1])
                return ffn_fail(FFN_ERR_ARG,
                                "%s: row indices must be strictly increasing (position %zu: %llu after %llu)",
                                ds->path, i, (unsigned long long)idx[i], (unsigned long long)idx[i - 1]);
        }
    } else if (start > in->rows || n > in->rows - start) {
        return ffn_fail(FFN_ERR_ARG, "%s: rows %llu..%llu requested, the dataset has %zu rows",
                        ds->path, (unsigned long long)start, (unsigned long long)start + n - 1,
                        in->rows);
    }
    size_t cells;
    if (ffn_size_mul(n, in->features, &cells) != 0)
        return ffn_fail(FFN_ERR_NOMEM, "%s: a read of %zu rows overflows", ds->path, n);
    if (ds->cache_x) return gather_cached(ds, idx, start, n, x, labels, values);

    if (x) {
        void *raw = x; /* float32 lands in place; uint8 in the scratch buffer, scaled below */
        if (in->x_is_uint8) {
            if (cells > ds->scratch_bytes) {
                uint8_t *grown = ffn_alloc(cells, 1);
                if (!grown) return FFN_ERR_NOMEM;
                ffn_free(ds->scratch);
                ds->scratch = grown;
                ds->scratch_bytes = cells;
            }
            raw = ds->scratch;
        }
        if (ds->rows_x) {
            int err = ffn_row_map_read(ds->rows_x, idx, start, n, raw);
            if (err) return ffn_fail(FFN_ERR_IO, "%s: /x: read of %zu rows failed: %s", ds->path, n, strerror(err));
        } else {
            hsize_t mdims[2] = { n, in->features };
            herr_t sel = idx ? select_rows(ds->fspace_x, 2, in->features, idx, n)
                             : select_range(ds->fspace_x, 2, in->features, start, n);
            if (sel < 0 || H5Sset_extent_simple(ds->mspace_x, 2, mdims, NULL) < 0)
                return ffn_fail(FFN_ERR_IO, "%s: /x: cannot select %zu rows", ds->path, n);
            if (H5Dread(ds->dx, in->x_is_uint8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT, ds->mspace_x, ds->fspace_x,
                        H5P_DEFAULT, raw) < 0)
                return ffn_fail(FFN_ERR_IO, "%s: /x: read of %zu rows failed", ds->path, n);
        }
        if (in->x_is_uint8) {
            const float scale = in->x_scale, offset = in->x_offset;
            const uint8_t *bytes = ds->scratch;
            scale_bytes(x, bytes, cells, scale, offset);
        } else {
            ffn_status st = check_finite(ds, "/x", "feature", x, n, in->features, idx, start);
            if (st != FFN_OK) return st;
        }
    }

    /* /y into the buffer that matches its kind; the other one is not touched. */
    void *ybuf = ds->features_only ? NULL : in->has_labels ? (void *)labels : (void *)values;
    if (ybuf && in->has_labels && ds->cache_y) {
        for (size_t i = 0; i < n; i++) labels[i] = ((const int32_t *)ds->cache_y)[row_of(idx, start, i)];
    } else if (ybuf) {
        if (ds->rows_y) {
            int err = ffn_row_map_read(ds->rows_y, idx, start, n, ybuf);
            if (err) return ffn_fail(FFN_ERR_IO, "%s: /y: read of %zu rows failed: %s", ds->path, n, strerror(err));
        } else {
            int rank = in->has_labels ? 1 : 2;
            hsize_t cols = in->has_labels ? 1 : in->target_cols;
            hsize_t mdims[2] = { n, cols };
            herr_t sel = idx ? select_rows(ds->fspace_y, rank, cols, idx, n)
                             : select_range(ds->fspace_y, rank, cols, start, n);
            if (sel < 0 || H5Sset_extent_simple(ds->mspace_y, rank, mdims, NULL) < 0)
                return ffn_fail(FFN_ERR_IO, "%s: /y: cannot select %zu rows", ds->path, n);
            hid_t mt = in->has_labels ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT;
            if (H5Dread(ds->dy, mt, ds->mspace_y, ds->fspace_y, H5P_DEFAULT, ybuf) < 0)
                return ffn_fail(FFN_ERR_IO, "%s: /y: read of %zu rows failed", ds->path, n);
        }
        if (!in->has_labels) return check_finite(ds, "/y", "target", values, n, in->target_cols, idx, start);
    }
    return FFN_OK;
}

ffn_status ffn_dataset_read_rows(ffn_dataset *ds, const uint64_t *idx, size_t n, float *x,
                                 int32_t *labels, float *values)
{
    if (n > 0 && !idx) return ffn_fail(FFN_ERR_ARG, "%s: read_rows without row indices", ds->path);
    return read_common(ds, idx, 0, n, x, labels, values);
}

ffn_status ffn_dataset_read_range(ffn_dataset *ds, uint64_t start, size_t n, float *x,
                                  int32_t *labels, float *values)
{
    return read_common(ds, NULL, start, n, x, labels, values);
}

