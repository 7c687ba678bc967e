/* ffn — predictions over a dataset, streamed in order to CSV, NPY or HDF5
 * (see ffn/predict.h). */
#include "ffn/predict.h"

#include <errno.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data_meta.h"
#include "ffn/mem.h"

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n > t && strcmp(s + n - t, tail) == 0;
}

int ffn_predict_format_of(const char *path)
{
    if (ends_with(path, ".csv")) return FFN_PREDICT_CSV;
    if (ends_with(path, ".npy")) return FFN_PREDICT_NPY;
    if (ends_with(path, ".h5") || ends_with(path, ".hdf5")) return FFN_PREDICT_HDF5;
    return -1;
}

/* ---- the writer (rank 0) ------------------------------------------------------
 * Rows arrive as records of `stride` floats: with classes, the class (a whole
 * number below 2^24, exact in a float) then K probabilities; else K outputs. */
typedef struct {
    ffn_predict_format format;
    const char *path;
    char *tmp;
    int classify;
    size_t k, stride, rows, written;
    FILE *f;
    hid_t file, d_first, d_second; /* HDF5: /class and /prob, or /output alone */
    const char *const *names;      /* [n_names] class names (CSV column), or NULL */
    size_t n_names;
} writer;

/* A CSV field, quoted, with inner quotes doubled. */
static int csv_quoted(FILE *f, const char *s)
{
    if (fputc('"', f) == EOF) return -1;
    for (; *s; s++)
        if ((*s == '"' && fputc('"', f) == EOF) || fputc(*s, f) == EOF) return -1;
    return fputc('"', f) == EOF ? -1 : 0;
}

static ffn_status hdf5_attr(hid_t f, const char *name, const char *value, const char *path)
{
    if (!value) return FFN_OK;
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR), a = H5I_INVALID_HID;
    int ok = t >= 0 && s >= 0 && H5Tset_size(t, strlen(value) + 1) >= 0 &&
             (a = H5Acreate2(f, name, t, s, H5P_DEFAULT, H5P_DEFAULT)) >= 0 && H5Awrite(a, t, value) >= 0;
    if (a >= 0) H5Aclose(a);
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    return ok ? FFN_OK : ffn_fail(FFN_ERR_IO, "%s: cannot write attribute %s", path, name);
}

static hid_t hdf5_dataset(hid_t f, const char *name, hid_t type, int rank, size_t rows, size_t k)
{
    hsize_t dims[2] = {rows, k}, chunk[2] = {rows < 4096 ? rows : 4096, k};
    if (k && chunk[0] * k > (1u << 20)) chunk[0] = (1u << 20) / k ? (1u << 20) / k : 1;
    hid_t s = H5Screate_simple(rank, dims, NULL), p = H5Pcreate(H5P_DATASET_CREATE), d = H5I_INVALID_HID;
    /* No modification times: the same predictions give the same bytes. */
    if (s >= 0 && p >= 0 && H5Pset_chunk(p, rank, chunk) >= 0 && H5Pset_obj_track_times(p, 0) >= 0)
        d = H5Dcreate2(f, name, type, s, H5P_DEFAULT, p, H5P_DEFAULT);
    if (p >= 0) H5Pclose(p);
    if (s >= 0) H5Sclose(s);
    return d;
}

static ffn_status writer_open(writer *w, ffn_predict_format format, const char *path, int classify, size_t k,
                              size_t rows, ffn_loss loss, ffn_predict_source src)
{
    *w = (writer){.format = format, .path = path, .classify = classify, .k = k, .stride = k + (classify ? 1 : 0),
                  .rows = rows, .file = H5I_INVALID_HID, .d_first = H5I_INVALID_HID, .d_second = H5I_INVALID_HID,
                  .names = classify && src.class_count ? src.class_names : NULL,
                  .n_names = classify && src.class_names ? src.class_count : 0};
    size_t cap = strlen(path) + 8;
    if (!(w->tmp = malloc(cap))) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    snprintf(w->tmp, cap, "%s.tmp", path);
    if (format == FFN_PREDICT_HDF5) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
        if (fcpl >= 0) H5Pset_obj_track_times(fcpl, 0);
        w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, fcpl >= 0 ? fcpl : H5P_DEFAULT, H5P_DEFAULT);
        if (fcpl >= 0) H5Pclose(fcpl);
        if (w->file < 0) return ffn_fail(FFN_ERR_IO, "%s: cannot create the HDF5 file", w->tmp);
        if (classify) {
            w->d_first = hdf5_dataset(w->file, "class", H5T_STD_I32LE, 1, rows, 1);
            w->d_second = hdf5_dataset(w->file, "prob", H5T_IEEE_F32LE, 2, rows, k);
        } else {
            w->d_first = hdf5_dataset(w->file, "output", H5T_IEEE_F32LE, 2, rows, k);
        }
        if (w->d_first < 0 || (classify && w->d_second < 0))
            return ffn_fail(FFN_ERR_IO, "%s: cannot create the datasets", w->tmp);
        ffn_status st = hdf5_attr(w->file, "loss", ffn_loss_name(loss), w->tmp);
        if (st == FFN_OK) st = hdf5_attr(w->file, "checkpoint", src.checkpoint, w->tmp);
        if (st == FFN_OK) st = hdf5_attr(w->file, "data", src.data, w->tmp);
        if (st == FFN_OK) st = hdf5_attr(w->file, "created_by", "ffn-eval --predict", w->tmp);
        if (st == FFN_OK && w->names) st = ffn_h5_write_strings(w->file, w->tmp, "class_names", w->names, w->n_names, 0);
        return st;
    }
    if (!(w->f = fopen(w->tmp, "wb"))) return ffn_fail(FFN_ERR_IO, "%s: cannot create: %s", w->tmp, strerror(errno));
    int failed = 0;
    if (format == FFN_PREDICT_CSV) {
        failed = fputs(classify ? (w->names ? "class,class_name" : "class") : "", w->f) == EOF;
        for (size_t j = 0; j < k && !failed; j++)
            failed = fprintf(w->f, "%s%s_%zu", classify || j ? "," : "", classify ? "prob" : "output", j) < 0;
        failed = failed || fputc('\n', w->f) == EOF;
    } else { /* .npy version 1.0, header padded to 64 bytes as numpy writes it */
        char dict[256], header[512];
        int n = classify ? snprintf(dict, sizeof dict,
                                    "{'descr': [('class', '<i4'), ('prob', '<f4', (%zu,))], 'fortran_order': False, "
                                    "'shape': (%zu,), }", k, rows)
                         : snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }",
                                    rows, k);
        size_t total = 10 + (size_t)n + 1, padded = (total + 63) / 64 * 64;
        memcpy(header, "\x93NUMPY\x01\x00", 8);
        header[8] = (char)((padded - 10) & 0xFF);
        header[9] = (char)((padded - 10) >> 8);
        memcpy(header + 10, dict, (size_t)n);
        memset(header + 10 + n, ' ', padded - total);
        header[padded - 1] = '\n';
        failed = fwrite(header, 1, padded, w->f) != padded;
    }
    return failed ? ffn_fail(FFN_ERR_IO, "%s: write failed: %s", w->tmp, strerror(errno)) : FFN_OK;
}

/* Appends n records (the class column is rewritten in place as int32 bits). */
static ffn_status writer_rows(writer *w, float *rec, size_t n)
{
    if (w->classify)
        for (size_t i = 0; i < n; i++) {
            int32_t c = (int32_t)rec[i * w->stride];
            memcpy(&rec[i * w->stride], &c, sizeof c);
        }
    int failed = 0;
    if (w->format == FFN_PREDICT_HDF5) {
        hsize_t mdims[2] = {n, w->stride}, start[2] = {w->written, 0}, count[2] = {n, w->k};
        hsize_t mstart[2] = {0, w->classify ? 1 : 0}, mcount[2] = {n, w->k}, one_col[2] = {n, 1}, zero[2] = {0, 0};
        hid_t ms = H5Screate_simple(2, mdims, NULL);
        hid_t values = w->classify ? w->d_second : w->d_first, fs = H5Dget_space(values);
        failed = ms < 0 || fs < 0 || H5Sselect_hyperslab(ms, H5S_SELECT_SET, mstart, NULL, mcount, NULL) < 0 ||
                 H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
                 H5Dwrite(values, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, rec) < 0;
        if (fs >= 0) H5Sclose(fs);
        if (!failed && w->classify) {
            fs = H5Dget_space(w->d_first);
            failed = fs < 0 || H5Sselect_hyperslab(ms, H5S_SELECT_SET, zero, NULL, one_col, NULL) < 0 ||
                     H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
                     H5Dwrite(w->d_first, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, rec) < 0;
            if (fs >= 0) H5Sclose(fs);
        }
        if (ms >= 0) H5Sclose(ms);
    } else if (w->format == FFN_PREDICT_NPY) {
        failed = n && fwrite(rec, sizeof(float) * w->stride, n, w->f) != n;
    } else {
        for (size_t i = 0; i < n && !failed; i++) {
            const float *r = rec + i * w->stride;
            size_t j = 0;
            if (w->classify) {
                int32_t c;
                memcpy(&c, r, sizeof c);
                failed = fprintf(w->f, "%d", (int)c) < 0;
                if (!failed && w->names)
                    failed = fputc(',', w->f) == EOF ||
                             csv_quoted(w->f, c >= 0 && (size_t)c < w->n_names ? w->names[c] : "") != 0;
                j = 1;
            }
            for (; j < w->stride && !failed; j++) failed = fprintf(w->f, j ? ",%.9g" : "%.9g", (double)r[j]) < 0;
            failed = failed || fputc('\n', w->f) == EOF;
        }
    }
    w->written += n;
    return failed ? ffn_fail(FFN_ERR_IO, "%s: write of rows %zu.. failed (disk full?)", w->tmp, w->written - n)
                  : FFN_OK;
}

/* Finishes the file and renames it onto the output (commit), or removes it. */
static ffn_status writer_close(writer *w, int commit)
{
    ffn_status st = FFN_OK;
    if (w->format == FFN_PREDICT_HDF5) {
        if (w->d_first >= 0) H5Dclose(w->d_first);
        if (w->d_second >= 0) H5Dclose(w->d_second);
        if (w->file >= 0 && (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0 || H5Fclose(w->file) < 0) && commit)
            st = ffn_fail(FFN_ERR_IO, "%s: cannot close the HDF5 file (disk full?)", w->tmp);
        if (st == FFN_OK && commit) { /* HDF5 closed it: flush the bytes to disk before the rename */
            FILE *f = fopen(w->tmp, "rb");
            if (!f || fsync(fileno(f)) != 0) st = ffn_fail(FFN_ERR_IO, "%s: cannot flush: %s", w->tmp, strerror(errno));
            if (f) fclose(f);
        }
    } else if (w->f) {
        if (commit && (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0))
            st = ffn_fail(FFN_ERR_IO, "%s: cannot flush: %s", w->tmp, strerror(errno));
        if (fclose(w->f) != 0 && commit && st == FFN_OK)
            st = ffn_fail(FFN_ERR_IO, "%s: cannot close: %s", w->tmp, strerror(errno));
    }
    if (w->tmp) {
        if (commit && st == FFN_OK && rename(w->tmp, w->path) != 0)
            st = ffn_fail(FFN_ERR_IO, "%s: cannot rename %s onto it: %s", w->path, w->tmp, strerror(errno));
        if (!commit || st != FFN_OK) unlink(w->tmp);
    }
    free(w->tmp);
    w->tmp = NULL;
    return st;
}

/* ---- computing -------------------------------------------------------------- */

/* Records for rows [start, start + n) of ds into rec [n, stride]. */
static ffn_status predict_batch(ffn_model *m, ffn_loss loss, ffn_dataset *ds, size_t start, size_t n, float *x,
                                float *probs, float *rec, int classify, size_t k)
{
    ffn_status st = ffn_dataset_read_range(ds, start, n, x, NULL, NULL);
    if (st != FFN_OK || n == 0) return st;
    const float *y = ffn_model_forward(m, x, n);
    if (!classify) {
        memcpy(rec, y, n * k * sizeof *rec);
        return FFN_OK;
    }
    ffn_act_forward(ffn_loss_output_act(loss, k), 0.0f, y, probs, n, k);
    for (size_t i = 0; i < n; i++) {
        const float *o = y + i * k;
        size_t best = 0;
        if (k == 1 && loss == FFN_LOSS_BCE) {
            best = o[0] > 0.0f;
        } else {
            for (size_t c = 1; c < k; c++)
                if (o[c] > o[best]) best = c;
        }
        rec[i * (k + 1)] = (float)best;
        memcpy(rec + i * (k + 1) + 1, probs + i * k, k * sizeof *rec);
    }
    return FFN_OK;
}

ffn_status ffn_predict(ffn_model *m, ffn_loss loss, ffn_dataset *ds, ffn_comm *comm, size_t batch_rows,
                       const char *out, ffn_predict_source source)
{
    const ffn_dataset_info *info = ffn_dataset_get_info(ds);
    const size_t rows = info->rows, k = ffn_model_output_dim(m), in = ffn_model_input_dim(m);
    const int rank = comm ? ffn_comm_rank(comm) : 0, ranks = comm ? ffn_comm_size(comm) : 1;
    const int classify = loss != FFN_LOSS_MSE;
    const size_t stride = k + (classify ? 1 : 0);
    int format = ffn_predict_format_of(out);
    ffn_status st = FFN_OK;
    if (format < 0)
        st = ffn_fail(FFN_ERR_ARG, "--predict %s: expected a name ending in .csv, .npy or .h5", out);
    else if (info->features != in)
        st = ffn_fail(FFN_ERR_FORMAT, "%s: /x has %zu features, expected %zu (the model's input width)",
                      ffn_dataset_path(ds), info->features, in);
    else if (classify && k >= (1u << 24))
        st = ffn_fail(FFN_ERR_ARG, "--predict: %zu classes, more than a float holds exactly", k);
    float *x = NULL, *probs = NULL, *rec = NULL, *gathered = NULL;
    size_t recv_floats = 0;
    if (st == FFN_OK && (ffn_size_mul(batch_rows * (size_t)ranks, stride, &recv_floats) != 0 ||
                         !(x = ffn_alloc(batch_rows, in * sizeof(float))) ||
                         !(probs = ffn_alloc(batch_rows, k * sizeof(float))) ||
                         !(rec = ffn_alloc(batch_rows, stride * sizeof(float))) ||
                         (rank == 0 && !(gathered = ffn_alloc(recv_floats, sizeof(float))))))
        st = ffn_fail(FFN_ERR_NOMEM, "--predict: out of memory for batches of %zu rows", batch_rows);
    if (st == FFN_OK) st = ffn_model_reserve(m, batch_rows);
    writer w = {.tmp = NULL, .file = H5I_INVALID_HID, .d_first = H5I_INVALID_HID, .d_second = H5I_INVALID_HID};
    int opened = 0;
    if (st == FFN_OK && rank == 0) {
        opened = 1;
        st = writer_open(&w, (ffn_predict_format)format, out, classify, k, rows, loss, source);
    }
    if (comm) st = ffn_comm_agree(comm, st);

    /* Round s: batch s*P + r is rank r's; rank 0 appends the P batches in order. */
    const size_t batches = (rows + batch_rows - 1) / batch_rows;
    for (size_t round = 0; st == FFN_OK && round * (size_t)ranks < batches; round++) {
        size_t batch = round * (size_t)ranks + (size_t)rank, start = batch * batch_rows, n = 0;
        if (batch < batches) n = rows - start < batch_rows ? rows - start : batch_rows;
        ffn_status local = predict_batch(m, loss, ds, start, n, x, probs, rec, classify, k);
        if (comm && (st = ffn_comm_agree(comm, local)) != FFN_OK) break;
        if (!comm && (st = local) != FFN_OK) break;
        size_t first = round * (size_t)ranks * batch_rows, last = first + (size_t)ranks * batch_rows;
        size_t count = (last < rows ? last : rows) - first;
        if (comm) st = ffn_comm_gather_floats(comm, rec, n * stride, gathered, 0);
        else memcpy(gathered, rec, n * stride * sizeof *rec);
        if (st == FFN_OK && rank == 0) st = writer_rows(&w, gathered, count);
        if (comm) st = ffn_comm_agree(comm, st); /* a failed write ends every rank's loop */
    }
    if (opened) {
        ffn_status closed = writer_close(&w, st == FFN_OK);
        if (st == FFN_OK) st = closed;
    }
    if (comm) st = ffn_comm_agree(comm, st);
    ffn_free(x);
    ffn_free(probs);
    ffn_free(rec);
    ffn_free(gathered);
    return st;
}
