/* ffn — writing an HDF5 dataset (the layout of ffn/data.h).
 *
 * The writer creates PATH.tmp, checks every row it is given (finite values,
 * labels in range), records which rows were written, and on close flushes,
 * closes, fsyncs and renames onto PATH; any failure removes the temporary, so
 * PATH only ever holds a complete file. */
#include "ffn/data_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "data_hdf5.h"
#include "data_meta.h"
#include "ffn/data.h"
#include "ffn/mem.h"

#define CHUNK_TARGET_BYTES ((size_t)1 << 20) /* about this many bytes a chunk of rows */

struct ffn_dataset_writer {
    char *path, *tmp;
    hid_t file, dx, dy, fspace_x, fspace_y;
    ffn_dataset_layout layout;
    uint8_t *written; /* [rows / 8 + 1]: one bit a row, set once the row is written */
    size_t written_rows;
    int broken;       /* an HDF5 write failed: the file cannot be trusted */
    int tmp_created;  /* PATH.tmp is ours to remove */
};

static void writer_release(ffn_dataset_writer *w)
{
    quiet_hdf5();
    close_id(&w->fspace_x, H5Sclose);
    close_id(&w->fspace_y, H5Sclose);
    close_id(&w->dx, H5Dclose);
    close_id(&w->dy, H5Dclose);
    close_id(&w->file, H5Fclose);
}

static void writer_free(ffn_dataset_writer *w)
{
    ffn_free(w->written);
    free(w->path);
    free(w->tmp);
    free(w);
}

void ffn_dataset_writer_abort(ffn_dataset_writer *w)
{
    if (!w) return;
    writer_release(w);
    if (w->tmp && w->tmp_created) unlink(w->tmp);
    writer_free(w);
}

/* A chunk of about CHUNK_TARGET_BYTES, at least one row. */
static hsize_t chunk_rows(size_t rows, size_t row_bytes)
{
    size_t r = row_bytes > 0 ? CHUNK_TARGET_BYTES / row_bytes : rows;
    if (r < 1) r = 1;
    if (r > rows) r = rows;
    return (hsize_t)r;
}

static hid_t create_member(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims,
                           size_t row_bytes)
{
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[2] = { chunk_rows((size_t)dims[0], row_bytes), rank > 1 ? dims[1] : 1 };
    hid_t d = H5I_INVALID_HID;
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, rank, chunk) >= 0 &&
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) >= 0)
        d = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return d;
}

static ffn_status writer_setup(ffn_dataset_writer *w)
{
    const ffn_dataset_layout *L = &w->layout;
    const char *path = w->path;
    size_t xrow, yrow, total;
    if (L->rows == 0) return ffn_fail(FFN_ERR_ARG, "%s: writer: rows must be at least 1", path);
    if (L->features == 0) return ffn_fail(FFN_ERR_ARG, "%s: writer: features must be at least 1", path);
    if (!L->has_labels && L->target_cols == 0)
        return ffn_fail(FFN_ERR_ARG, "%s: writer: target_cols must be at least 1 for float targets", path);
    if (L->has_labels && L->num_classes > (size_t)INT32_MAX)
        return ffn_fail(FFN_ERR_ARG, "%s: writer: num_classes %zu is larger than %d", path,
                        L->num_classes, INT32_MAX);
    if (L->x_uint8 && (!isfinite(L->x_scale) || L->x_scale == 0))
        return ffn_fail(FFN_ERR_ARG, "%s: writer: x_scale is %g, expected a finite non-zero number",
                        path, (double)L->x_scale);
    if (ffn_size_mul(L->features, L->x_uint8 ? 1 : sizeof(float), &xrow) != 0 ||
        ffn_size_mul(L->has_labels ? 1 : L->target_cols, 4, &yrow) != 0 ||
        ffn_size_add(xrow, yrow, &total) != 0 || ffn_size_mul(total, L->rows, &total) != 0 ||
        L->rows > (size_t)INT64_MAX)
        return ffn_fail(FFN_ERR_NOMEM, "%s: writer: %zu rows of %zu features overflow", path,
                        L->rows, L->features);
    w->written = ffn_alloc(L->rows / 8 + 1, 1);
    if (!w->written) return FFN_ERR_NOMEM;

    /* Create the temporary with open() first for a clear errno message. */
    int fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return ffn_fail(FFN_ERR_IO, "%s: cannot create %s: %s", path, w->tmp, strerror(errno));
    close(fd);
    w->tmp_created = 1;
    /* HDF5's earliest format, the most widely readable (and the one HDF5
     * 1.10 parses most robustly when a file is damaged). */
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) return ffn_fail(FFN_ERR_IO, "%s: cannot create HDF5 file %s", path, w->tmp);

    hsize_t xd[2] = { L->rows, L->features };
    w->dx = create_member(w->file, "x", L->x_uint8 ? H5T_STD_U8LE : H5T_IEEE_F32LE, 2, xd, xrow);
    if (w->dx < 0) return ffn_fail(FFN_ERR_IO, "%s: cannot create dataset /x", path);
    if (L->has_labels) {
        hsize_t yd[1] = { L->rows };
        w->dy = create_member(w->file, "y", H5T_STD_I32LE, 1, yd, xrow);
    } else {
        hsize_t yd[2] = { L->rows, L->target_cols };
        w->dy = create_member(w->file, "y", H5T_IEEE_F32LE, 2, yd, xrow);
    }
    if (w->dy < 0) return ffn_fail(FFN_ERR_IO, "%s: cannot create dataset /y", path);
    if (L->x_uint8 &&
        h5_write_scalar_attr(w->dx, "scale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &L->x_scale) < 0)
        return ffn_fail(FFN_ERR_IO, "%s: cannot write attribute /x scale", path);
    if (L->has_labels && L->num_classes > 0) {
        int32_t nc = (int32_t)L->num_classes;
        if (h5_write_scalar_attr(w->file, "num_classes", H5T_STD_I32LE, H5T_NATIVE_INT32, &nc) < 0)
            return ffn_fail(FFN_ERR_IO, "%s: cannot write attribute num_classes", path);
    }
    w->fspace_x = H5Dget_space(w->dx);
    w->fspace_y = H5Dget_space(w->dy);
    if (w->fspace_x < 0 || w->fspace_y < 0)
        return ffn_fail(FFN_ERR_IO, "%s: cannot get dataspaces", path);
    return FFN_OK;
}

ffn_status ffn_dataset_writer_create(ffn_dataset_writer **out, const char *path,
                                     const ffn_dataset_layout *layout)
{
    *out = NULL;
    quiet_hdf5();
    if (!path || !*path) return ffn_fail(FFN_ERR_ARG, "dataset writer: no file name given");
    if (!layout) return ffn_fail(FFN_ERR_ARG, "%s: dataset writer: no layout given", path);
    ffn_dataset_writer *w = calloc(1, sizeof *w);
    if (!w) return ffn_fail(FFN_ERR_NOMEM, "%s: out of memory", path);
    w->file = w->dx = w->dy = w->fspace_x = w->fspace_y = H5I_INVALID_HID;
    w->layout = *layout;
    size_t n = strlen(path), tn;
    w->path = copy_string(path);
    w->tmp = ffn_size_add(n, 5, &tn) == 0 ? malloc(tn) : NULL;
    if (!w->path || !w->tmp) {
        writer_free(w);
        return ffn_fail(FFN_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(w->tmp, path, n);
    memcpy(w->tmp + n, ".tmp", 5);
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        writer_free(w);
        return ffn_fail(FFN_ERR_IO, "%s: is a directory, expected a file name to write", path);
    }
    ffn_status st = writer_setup(w);
    if (st != FFN_OK) {
        ffn_dataset_writer_abort(w);
        return st;
    }
    *out = w;
    return FFN_OK;
}

ffn_status ffn_dataset_writer_rows(ffn_dataset_writer *w, uint64_t start, size_t n, const void *x,
                                   const void *y)
{
    quiet_hdf5();
    const ffn_dataset_layout *L = &w->layout;
    if (n == 0) return FFN_OK;
    if (!x || !y) return ffn_fail(FFN_ERR_ARG, "%s: writer: rows need both x and y", w->path);
    if (w->broken) return ffn_fail(FFN_ERR_IO, "%s: writer: an earlier write failed", w->path);
    if (start > L->rows || n > L->rows - start)
        return ffn_fail(FFN_ERR_ARG, "%s: writer: rows %llu..%llu are outside [0, %zu)", w->path,
                        (unsigned long long)start, (unsigned long long)start + n - 1, L->rows);
    size_t cells = n * L->features; /* fits: n <= rows and rows * features was checked */
    if (!L->x_uint8) {
        const float *xf = x;
        for (size_t i = 0; i < cells; i++)
            if (!isfinite(xf[i]))
                return ffn_fail(FFN_ERR_NUMERIC, "%s: /x row %llu feature %zu is not finite", w->path,
                                (unsigned long long)(start + i / L->features), i % L->features);
    }
    if (L->has_labels) {
        const int32_t *lab = y;
        for (size_t i = 0; i < n; i++) {
            if (lab[i] < 0 || (L->num_classes > 0 && (size_t)lab[i] >= L->num_classes))
                return ffn_fail(FFN_ERR_ARG, "%s: /y row %llu has label %d, expected 0 <= label < %zu",
                                w->path, (unsigned long long)(start + i), (int)lab[i],
                                L->num_classes > 0 ? L->num_classes : (size_t)INT32_MAX);
        }
    } else {
        const float *v = y;
        for (size_t i = 0; i < n * L->target_cols; i++)
            if (!isfinite(v[i]))
                return ffn_fail(FFN_ERR_NUMERIC, "%s: /y row %llu target %zu is not finite", w->path,
                                (unsigned long long)(start + i / L->target_cols), i % L->target_cols);
    }
    hsize_t xm[2] = { n, L->features }, ym[2] = { n, L->target_cols };
    int yrank = L->has_labels ? 1 : 2;
    hid_t mx = H5Screate_simple(2, xm, NULL), my = H5Screate_simple(yrank, ym, NULL);
    herr_t r = mx >= 0 && my >= 0 ? 0 : -1;
    if (r >= 0) r = select_range(w->fspace_x, 2, L->features, start, n);
    if (r >= 0)
        r = H5Dwrite(w->dx, L->x_uint8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT, mx, w->fspace_x,
                     H5P_DEFAULT, x);
    if (r >= 0) r = select_range(w->fspace_y, yrank, L->target_cols, start, n);
    if (r >= 0)
        r = H5Dwrite(w->dy, L->has_labels ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT, my, w->fspace_y,
                     H5P_DEFAULT, y);
    if (mx >= 0) H5Sclose(mx);
    if (my >= 0) H5Sclose(my);
    if (r < 0) {
        w->broken = 1;
        return ffn_fail(FFN_ERR_IO, "%s: write of rows %llu..%llu to %s failed", w->path,
                        (unsigned long long)start, (unsigned long long)start + n - 1, w->tmp);
    }
    for (size_t i = 0; i < n; i++) {
        size_t row = (size_t)start + i;
        uint8_t bit = (uint8_t)(1u << (row & 7));
        if (!(w->written[row >> 3] & bit)) {
            w->written[row >> 3] |= bit;
            w->written_rows++;
        }
    }
    return FFN_OK;
}

ffn_status ffn_dataset_writer_attr(ffn_dataset_writer *w, const char *name, const char *value)
{
    quiet_hdf5();
    if (!name || !*name || !value)
        return ffn_fail(FFN_ERR_ARG, "%s: writer: attribute needs a name and a value", w->path);
    if (strcmp(name, "num_classes") == 0)
        return ffn_fail(FFN_ERR_ARG, "%s: writer: num_classes is set by the layout, not as a string",
                        w->path);
    hid_t t = H5Tcopy(H5T_C_S1);
    herr_t r = t >= 0 ? 0 : -1;
    if (r >= 0) r = H5Tset_size(t, H5T_VARIABLE);
    if (r >= 0) r = H5Tset_cset(t, H5T_CSET_UTF8);
    if (r >= 0) r = h5_write_scalar_attr(w->file, name, t, t, &value);
    if (t >= 0) H5Tclose(t);
    if (r < 0) return ffn_fail(FFN_ERR_IO, "%s: cannot write attribute %s", w->path, name);
    return FFN_OK;
}

ffn_status ffn_dataset_writer_attr_strings(ffn_dataset_writer *w, const char *name, const char *const *values,
                                           size_t n)
{
    quiet_hdf5();
    if (!name || !*name || (!values && n) || n == 0)
        return ffn_fail(FFN_ERR_ARG, "%s: writer: a string array attribute needs a name and values", w->path);
    for (size_t i = 0; i < n; i++)
        if (!values[i]) return ffn_fail(FFN_ERR_ARG, "%s: writer: attribute %s: value %zu is NULL", w->path, name, i);
    return ffn_h5_write_strings(w->file, w->path, name, values, n, 0);
}

ffn_status ffn_dataset_writer_meta(ffn_dataset_writer *w, const ffn_data_meta *m)
{
    quiet_hdf5();
    if (!m) return FFN_OK;
    if (m->features && m->features != w->layout.features)
        return ffn_fail(FFN_ERR_ARG, "%s: writer: %zu feature statistics for %zu features", w->path, m->features,
                        w->layout.features);
    return ffn_meta_write_loc(w->file, w->path, m, 0, H5P_DEFAULT);
}

/* fsync a file, then its directory so that the rename is durable too. */
static int sync_path(const char *p)
{
    int fd = open(p, O_RDONLY);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

ffn_status ffn_dataset_writer_close(ffn_dataset_writer *w)
{
    if (!w) return FFN_OK;
    quiet_hdf5();
    ffn_status st = FFN_OK;
    if (w->broken) {
        st = ffn_fail(FFN_ERR_IO, "%s: not written: an earlier write failed", w->path);
    } else if (w->written_rows != w->layout.rows) {
        st = ffn_fail(FFN_ERR_ARG, "%s: not written: only %zu of %zu rows were given", w->path,
                      w->written_rows, w->layout.rows);
    } else if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0) {
        st = ffn_fail(FFN_ERR_IO, "%s: flushing %s failed", w->path, w->tmp);
    }
    if (st != FFN_OK) {
        ffn_dataset_writer_abort(w);
        return st;
    }
    close_id(&w->fspace_x, H5Sclose);
    close_id(&w->fspace_y, H5Sclose);
    close_id(&w->dx, H5Dclose);
    close_id(&w->dy, H5Dclose);
    herr_t r = H5Fclose(w->file);
    w->file = H5I_INVALID_HID;
    if (r < 0) {
        st = ffn_fail(FFN_ERR_IO, "%s: closing %s failed", w->path, w->tmp);
    } else if (sync_path(w->tmp) != 0) {
        st = ffn_fail(FFN_ERR_IO, "%s: fsync of %s failed: %s", w->path, w->tmp, strerror(errno));
    } else if (rename(w->tmp, w->path) != 0) {
        st = ffn_fail(FFN_ERR_IO, "%s: rename from %s failed: %s", w->path, w->tmp, strerror(errno));
    } else {
        char dir[4096];
        dir_of(w->path, dir, sizeof dir);
        (void)sync_path(dir); /* best effort: some file systems refuse fsync on a directory */
        free(w->tmp);
        w->tmp = NULL; /* nothing left to remove */
    }
    ffn_dataset_writer_abort(w);
    return st;
}
