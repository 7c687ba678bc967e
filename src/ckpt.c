/* ffn — HDF5 checkpoints: atomic save, validated load, latest and pruning. */
#define _GNU_SOURCE /* fallocate, FALLOC_FL_KEEP_SIZE */
#include "ffn/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "data_hdf5.h"
#include "data_meta.h"
#include "files.h"
#include "ffn/mem.h"
#include "watchdog.h"
#include "ffn/model.h"
#include "ffn/version.h"

size_t ffn_checkpoint_slice_floats(void)
{
    size_t bytes = FFN_CKPT_SLICE_BYTES;
    const char *env = getenv("FFN_CKPT_SLICE_BYTES");
    if (env && *env) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(env, &end, 10);
        if (!errno && !*end && v > 0) bytes = (size_t)v;
    }
    return bytes >= sizeof(float) ? bytes / sizeof(float) : 1;
}

/* ---- small HDF5 helpers --------------------------------------------------- */

static hid_t string_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

static int write_string_attr(hid_t loc, const char *name, const char *value)
{
    hid_t t = string_type();
    herr_t r = h5_write_scalar_attr(loc, name, t, t, &value);
    H5Tclose(t);
    return r < 0 ? -1 : 0;
}

static int write_u64_attr(hid_t loc, const char *name, uint64_t value)
{
    return h5_write_scalar_attr(loc, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &value) < 0 ? -1 : 0;
}

static int write_double_attr(hid_t loc, const char *name, double value)
{
    return h5_write_scalar_attr(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value) < 0 ? -1 : 0;
}

/* Rows of a dataset's chunk: at most ~1 MiB, whole rows. */
static hsize_t chunk_rows(int rank, const hsize_t *dims, size_t elem_bytes)
{
    hsize_t row = rank == 2 && dims[1] ? dims[1] : 1, max_rows = ((hsize_t)1 << 20) / elem_bytes / row;
    hsize_t rows = dims[0];
    if (max_rows == 0) max_rows = 1;
    if (rows > max_rows) rows = max_rows;
    return rows ? rows : 1;
}

/* One tensor's dataset: chunked by rows with the Fletcher32 checksum filter;
 * every element is written, so no zero-fill pass. -1 on failure. */
static hid_t create_chunked(hid_t loc, const char *name, hid_t file_type, size_t elem_bytes, int rank,
                           const hsize_t *dims)
{
    hsize_t chunk[2] = {chunk_rows(rank, dims, elem_bytes), rank == 2 && dims[1] ? dims[1] : 1};
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_fletcher32(dcpl);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    hid_t d = H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(space);
    return d;
}

/* A pruning mask: uint8 [out, in], written whole. */
static int write_mask(hid_t loc, const char *name, const uint8_t *data, const hsize_t *dims)
{
    hid_t d = create_chunked(loc, name, H5T_STD_U8LE, 1, 2, dims);
    int ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    if (d >= 0) H5Dclose(d);
    return ok ? 0 : -1;
}

/* Selects elements [from, to) (from < to) of a dataset's row-major order in
 * its space: rows of cols, so the partial rows at either end and the whole
 * rows between, as few blocks as that takes (HDF5 walks the union in that
 * same order). Returns the number of blocks (-1: failed), and the first
 * block's shape in one_block [2]. */
static int select_flat_range(hid_t space, int rank, hsize_t cols, hsize_t from, hsize_t to, hsize_t *one_block)
{
    one_block[0] = to - from;
    one_block[1] = 1;
    if (rank == 1) {
        hsize_t start = from, count = to - from;
        return H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0 ? -1 : 1;
    }
    const hsize_t r0 = from / cols, c0 = from % cols, r1 = (to - 1) / cols, c1 = (to - 1) % cols;
    hsize_t blocks[3][4]; /* row, col, rows, cols */
    int n = 0;
    if (r0 == r1) {
        memcpy(blocks[n++], (hsize_t[4]){r0, c0, 1, c1 - c0 + 1}, sizeof blocks[0]);
    } else {
        const hsize_t whole_from = c0 ? r0 + 1 : r0, whole_to = c1 + 1 == cols ? r1 + 1 : r1;
        if (c0) memcpy(blocks[n++], (hsize_t[4]){r0, c0, 1, cols - c0}, sizeof blocks[0]);
        if (whole_to > whole_from) memcpy(blocks[n++], (hsize_t[4]){whole_from, 0, whole_to - whole_from, cols}, sizeof blocks[0]);
        if (c1 + 1 != cols) memcpy(blocks[n++], (hsize_t[4]){r1, 0, 1, c1 + 1}, sizeof blocks[0]);
    }
    for (int i = 0; i < n; i++)
        if (H5Sselect_hyperslab(space, i ? H5S_SELECT_OR : H5S_SELECT_SET, blocks[i], NULL, blocks[i] + 2, NULL) < 0)
            return -1;
    memcpy(one_block, blocks[0] + 2, 2 * sizeof *one_block);
    return n;
}

/* Elements [from, to) of dataset d (rank, cols per row) written from or read
 * into buf [to - from]. One block is described to HDF5 in its own shape in
 * memory too: HDF5 then moves it whole (a flat memory space against a 2-D
 * block goes element run by run, 2-3 times slower). */
static int transfer_flat_range(hid_t d, int rank, hsize_t cols, size_t from, size_t to, float *buf, int write)
{
    hsize_t n = to - from, block[2];
    hid_t fspace = H5Dget_space(d);
    int blocks = fspace >= 0 ? select_flat_range(fspace, rank, cols, from, to, block) : -1;
    hid_t mspace = blocks == 1 ? H5Screate_simple(rank, block, NULL) : H5Screate_simple(1, &n, NULL);
    int ok = blocks > 0 && mspace >= 0 &&
             (write ? H5Dwrite(d, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, buf)
                    : H5Dread(d, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, buf)) >= 0;
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
    return ok ? 0 : -1;
}

static int fsync_path(const char *path, int directory)
{
    int fd = open(path, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* A failed write inside HDF5 (disk full, I/O error) leaves the file's
 * metadata cache in a state HDF5 1.10 cannot close (a later close fails with
 * "slist already enabled", and the library then crashes at exit). So the
 * bytes a checkpoint needs are checked and reserved before HDF5 writes any:
 * the free space of the directory's filesystem first, then fallocate() of the
 * file (where the filesystem supports it), after which HDF5's writes cannot
 * run out of space. Returns 0 or an errno. */
static int reserve_space(hid_t f, const char *tmp, size_t bytes)
{
    struct statvfs fs;
    if (statvfs(tmp, &fs) == 0 && (unsigned long long)fs.f_bavail * fs.f_frsize < bytes) return ENOSPC;
    int *fd = NULL;
    if (H5Fget_vfd_handle(f, H5P_DEFAULT, (void **)&fd) < 0 || !fd) return 0;
    if (fallocate(*fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bytes) != 0 && (errno == ENOSPC || errno == EDQUOT))
        return errno;
    return 0; /* reserved, or the filesystem cannot say (then only the check above) */
}

/* Closes a file whose write failed: emptied first, so that the few metadata
 * bytes HDF5 still writes at close find room; the caller removes it. */
static void close_failed_file(hid_t f, const char *tmp)
{
    if (truncate(tmp, 0) != 0) { /* closing is all that is left to try */ }
    H5Fclose(f);
}

static ffn_status check_finite(const float *v, size_t n, const char *path, const char *what, size_t first_index)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return ffn_fail(FFN_ERR_NUMERIC, "checkpoint %s: %s holds a non-finite value (%g at index %zu)", path, what,
                            (double)v[i], first_index + i);
    return FFN_OK;
}

/* ---- save ----------------------------------------------------------------- */

/* The dense weight tensor of layer i whose pruning mask is stored, or NULL. */
static const ffn_tensor *mask_tensor(const ffn_model *m, size_t i)
{
    const ffn_layer *l = ffn_model_layer_const(m, i);
    return l->spec.kind == FFN_LAYER_DENSE ? ffn_model_find_tensor(m, i, "W") : NULL;
}

/* One save, on the writer (rank 0, or the only process) and on the ranks
 * that only feed it. */
typedef struct {
    const ffn_checkpoint *c;
    const ffn_model *m;       /* the tensor layout */
    const char *path;
    ffn_comm *comm;           /* NULL: one process, nothing to agree on */
    int writer;
    size_t slice_floats;
    float *slice;             /* writer: [slice_floats] for fetched values; NULL when all are held */
} saver;

static ffn_status agree(const saver *s, ffn_status st)
{
    return s->comm ? ffn_comm_agree(s->comm, st) : st;
}

/* The message of a write that failed with errno e (0: HDF5 did not say). */
static ffn_status write_failed(const char *path, int e)
{
    if (!e) e = EIO;
    return ffn_fail(FFN_ERR_IO, "checkpoint %s: write failed (%s); the previous checkpoint is kept", path,
                    e == ENOSPC ? "disk full" : strerror(e));
}

/* Everything but the values of the parameter and optimizer state datasets:
 * attributes, groups, pruning masks, /train and /data (writer only). */
static int write_metadata(hid_t f, const ffn_checkpoint *c, const ffn_model *m)
{
    if (write_string_attr(f, "format", "ffn-checkpoint") || write_u64_attr(f, "format_version", FFN_CKPT_FORMAT_VERSION) ||
        write_string_attr(f, "ffn_version", ffn_version()) ||
        write_string_attr(f, "model_spec", c->model_spec) || write_u64_attr(f, "input_dim", c->input_dim) ||
        write_string_attr(f, "loss", c->loss ? c->loss : "") ||
        write_string_attr(f, "config_json", c->config_json ? c->config_json : "{}"))
        return -1;
    /* /model/<i>: one group per layer; its tensors come slice by slice (write_values). */
    hid_t model = H5Gcreate2(f, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (model < 0) return -1;
    int bad = 0;
    for (size_t i = 0; i < ffn_model_layer_count(m) && !bad; i++) {
        char name[32];
        snprintf(name, sizeof name, "%zu", i);
        hid_t g = H5Gcreate2(model, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        bad = g < 0 || write_u64_attr(g, "frozen", (uint64_t)(ffn_model_layer_const(m, i)->frozen != 0));
        if (g >= 0) H5Gclose(g);
    }
    H5Gclose(model);
    if (bad) return -1;

    if (c->mask) {
        hid_t masks = H5Gcreate2(f, "masks", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (masks < 0) return -1;
        for (size_t i = 0; i < ffn_model_layer_count(m) && !bad; i++) {
            const ffn_tensor *w = mask_tensor(m, i);
            if (!w) continue;
            char name[32];
            snprintf(name, sizeof name, "%zu", i);
            hid_t g = H5Gcreate2(masks, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            hsize_t wd[2] = {w->shape[0], w->shape[1]};
            bad = g < 0 || write_mask(g, "W", c->mask + w->offset, wd);
            if (g >= 0) H5Gclose(g);
        }
        H5Gclose(masks);
        if (bad) return -1;
    }

    if (c->optimizer) {
        hid_t g = H5Gcreate2(f, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) return -1;
        bad = write_string_attr(g, "kind", c->optimizer) || write_u64_attr(g, "step_count", c->optimizer_steps);
        H5Gclose(g);
        if (bad) return -1;
    }
    hid_t t = H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (t < 0) return -1;
    bad = write_u64_attr(t, "step", c->step) || write_u64_attr(t, "epoch", c->epoch) ||
          write_u64_attr(t, "step_in_epoch", c->step_in_epoch) || write_u64_attr(t, "seed", c->seed);
    if (!bad && c->data_rows)
        bad = write_u64_attr(t, "data_rows", c->data_rows) || write_u64_attr(t, "data_features", c->data_features) ||
              write_u64_attr(t, "data_classes", c->data_classes);
    if (!bad && c->has_best)
        bad = write_double_attr(t, "best_metric", c->best_metric) || write_u64_attr(t, "best_step", c->best_step) ||
              write_u64_attr(t, "best_epoch", c->best_epoch) || write_u64_attr(t, "stale_epochs", c->stale_epochs);
    H5Gclose(t);
    if (!bad && (c->meta.class_count || c->meta.features)) {
        hid_t g = H5Gcreate2(f, "data", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        hsize_t chunk[1] = {c->meta.features ? (c->meta.features < 131072 ? c->meta.features : 131072) : 1};
        bad = g < 0 || dcpl < 0 || H5Pset_chunk(dcpl, 1, chunk) < 0 || H5Pset_fletcher32(dcpl) < 0 ||
              ffn_meta_write_loc(g, "checkpoint /data", &c->meta, 1, dcpl) != FFN_OK;
        if (dcpl >= 0) H5Pclose(dcpl);
        if (g >= 0) H5Gclose(g);
    }
    return bad ? -1 : 0;
}

/* Test hook: FFN_DEBUG_FAIL_SAVE_SLICE=K makes the writer's K-th slice write
 * (counted over the process's saves, from 1) fail as a full disk would, to
 * show that a write failing midway ends the save on every rank. */
static int debug_fail_this_slice(void)
{
    static long slices;
    const char *hook = getenv("FFN_DEBUG_FAIL_SAVE_SLICE");
    return hook && ++slices == atol(hook);
}

/* One float dataset of `count` values at flat offset `base` of buffer (-1
 * the parameters, i optimizer state i), created by the writer in loc as
 * name, then written a slice at a time. Every rank walks the same slices:
 * fetch (a collective gather when the values are not held), write, agree; a
 * slice holds whole chunks when one fits, so that no chunk is written twice. */
static ffn_status write_sliced(const saver *s, hid_t loc, const char *name, const char *what, int buffer,
                               size_t base, int rank, const hsize_t *dims)
{
    const ffn_checkpoint *c = s->c;
    const hsize_t cols = rank == 2 ? dims[1] : 1;
    const size_t count = (size_t)(dims[0] * cols), chunk = (size_t)(chunk_rows(rank, dims, sizeof(float)) * cols);
    const size_t per = s->slice_floats >= chunk ? s->slice_floats / chunk * chunk : s->slice_floats;
    const float *held = buffer < 0 ? c->params : c->state[buffer];
    ffn_status st = FFN_OK;
    hid_t d = -1;
    if (s->writer) {
        errno = 0;
        if ((d = create_chunked(loc, name, H5T_IEEE_F32LE, sizeof(float), rank, dims)) < 0)
            st = write_failed(s->path, errno);
    }
    for (size_t at = 0; at < count; at += per) {
        const size_t n = count - at < per ? count - at : per;
        const float *v = held ? held + base + at : s->slice;
        if (!held) {
            ffn_status got = c->fetch ? c->fetch(c->fetch_user, buffer, base + at, n, s->writer ? s->slice : NULL)
                                      : ffn_fail(FFN_ERR_ARG, "checkpoint %s: %s: no values and no source", s->path,
                                                 what);
            if (st == FFN_OK) st = got;
        }
        if (s->writer && st == FFN_OK && c->check_finite) st = check_finite(v, n, s->path, what, at);
        if (s->writer && st == FFN_OK) {
            errno = 0;
            if (debug_fail_this_slice()) st = write_failed(s->path, ENOSPC);
            else if (transfer_flat_range(d, rank, cols, at, at + n, (float *)v, 1) != 0)
                st = write_failed(s->path, errno);
        }
        if ((st = agree(s, st)) != FFN_OK) break;
    }
    if (d >= 0) H5Dclose(d);
    return st;
}

/* The parameter tensors (/model/<i>/<t>), then the optimizer state buffers,
 * each slice by slice; the same walk on every rank. */
static ffn_status write_values(const saver *s, hid_t f)
{
    const ffn_checkpoint *c = s->c;
    const ffn_model *m = s->m;
    ffn_status st = FFN_OK;
    char where[96];
    for (size_t k = 0; k < ffn_model_tensor_count(m) && st == FFN_OK; k++) {
        const ffn_tensor *t = ffn_model_tensor(m, k);
        hsize_t dims[2] = {t->shape[0], t->shape[1]};
        snprintf(where, sizeof where, "model/%zu", t->layer);
        hid_t g = s->writer ? H5Gopen2(f, where, H5P_DEFAULT) : -1;
        snprintf(where, sizeof where, "/model/%zu/%s", t->layer, t->name);
        st = write_sliced(s, g, t->name, where, -1, t->offset, t->ndim, dims);
        if (g >= 0) H5Gclose(g);
    }
    const size_t states = c->optimizer ? c->state_count : 0;
    hid_t g = s->writer && states ? H5Gopen2(f, "optimizer", H5P_DEFAULT) : -1;
    hsize_t n[1] = {c->param_count};
    for (size_t i = 0; i < states && st == FFN_OK; i++) {
        const char *name = s->writer ? c->state_names[i] : ""; /* only the writer needs the names */
        snprintf(where, sizeof where, "/optimizer/%s", name);
        st = write_sliced(s, g, name, where, (int)i, 0, 1, n);
    }
    if (g >= 0) H5Gclose(g);
    return st;
}

/* The writer: PATH.tmp created, its bytes reserved and everything but the
 * tensors' values written. On failure nothing is left (*f -1). */
static ffn_status begin_file(const saver *s, const char *tmp, hid_t *f)
{
    const ffn_checkpoint *c = s->c;
    /* HDF5 writes the file under its temporary name (sec2 driver: plain
     * write()s into the page cache; an in-memory image first cost three passes
     * of page faults over the checkpoint's bytes). errno is read right after
     * the failing call: HDF5's sec2 driver leaves write()'s error there. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_sec2(fapl);
    errno = 0;
    *f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (*f < 0) {
        int e = errno;
        ffn_status st = ffn_fail(FFN_ERR_IO, "checkpoint %s: cannot create %s: %s", s->path, tmp,
                                 e ? strerror(e) : "HDF5 error");
        unlink(tmp);
        return st;
    }
    /* Tensors, optimizer state and masks, plus Fletcher32 and chunk index
     * overhead (about 1%), attributes and object headers. */
    size_t bytes = c->param_count * sizeof(float) * (1 + c->state_count) + (c->mask ? c->param_count : 0);
    bytes += bytes / 32 + (c->config_json ? strlen(c->config_json) : 0) + ((size_t)64 << 10);
    int err = reserve_space(*f, tmp, bytes);
    if (!err) {
        errno = 0;
        if (write_metadata(*f, c, s->m)) err = errno ? errno : EIO;
    }
    if (!err) return FFN_OK;
    close_failed_file(*f, tmp);
    unlink(tmp);
    *f = -1;
    return write_failed(s->path, err);
}

/* The writer, once every value is in: flush, close, fsync, rename onto path
 * and fsync the directory. A failure removes PATH.tmp and keeps the previous
 * checkpoint. */
static ffn_status finish_file(const saver *s, const char *tmp, hid_t f)
{
    const char *path = s->path;
    int err = 0;
    errno = 0;
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) {
        err = errno ? errno : EIO;
        close_failed_file(f, tmp);
    } else if (H5Fclose(f) < 0) {
        err = errno ? errno : EIO;
    }
    /* Test hook: FFN_DEBUG_KILL_IN_SAVE=K kills the process during its K-th
     * checkpoint, with the temporary file torn in half. */
    static int saves;
    const char *hook = getenv("FFN_DEBUG_KILL_IN_SAVE");
    if (!err && hook && ++saves == atoi(hook)) {
        struct stat sb;
        if (stat(tmp, &sb) == 0 && truncate(tmp, sb.st_size / 2) == 0) raise(SIGKILL);
    }
    if (!err) {
        int fd = open(tmp, O_RDONLY);
        if (fd < 0 || fsync(fd) != 0) err = errno;
        if (fd >= 0) close(fd);
    }
    if (err) {
        unlink(tmp);
        return write_failed(path, err);
    }
    if (rename(tmp, path) != 0) {
        ffn_status st = ffn_fail(FFN_ERR_IO, "checkpoint %s: cannot rename %s onto it: %s", path, tmp, strerror(errno));
        unlink(tmp);
        return st;
    }
    /* The rename itself must reach the disk. */
    char *dir = strdup(path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = '\0';
            fsync_path(*dir ? dir : "/", 1);
        } else {
            fsync_path(".", 1);
        }
        free(dir);
    }
    return FFN_OK;
}

/* ffn_checkpoint_save (comm NULL) and its collective form: one walk. */
static ffn_status save(const ffn_checkpoint *c, const char *path, ffn_comm *comm)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    saver s = {.c = c, .path = path, .comm = comm, .writer = !comm || ffn_comm_rank(comm) == 0,
               .slice_floats = ffn_checkpoint_slice_floats(), .m = c->model};
    /* The tensor layout: the caller's model, or one built from the spec. */
    ffn_model *own = NULL;
    ffn_status st = FFN_OK;
    if (!s.m && ffn_model_create_from_text(&own, c->model_spec, c->input_dim) != FFN_OK)
        st = ffn_fail(FFN_ERR_ARG, "checkpoint %s: model_spec: %s", path, ffn_last_error());
    if (!s.m) s.m = own;
    if (st == FFN_OK && ffn_model_param_count(s.m) != c->param_count)
        st = ffn_fail(FFN_ERR_ARG, "checkpoint %s: the model has %zu parameters, the buffer given %zu", path,
                      ffn_model_param_count(s.m), c->param_count);
    int fetches = !c->params;
    for (size_t i = 0; c->optimizer && i < c->state_count; i++) fetches |= !c->state[i];
    if (st == FFN_OK && s.writer && fetches) { /* no slice is longer than its dataset */
        size_t cap = s.slice_floats < c->param_count ? s.slice_floats : c->param_count;
        if (!(s.slice = ffn_alloc_floats(cap ? cap : 1)))
            st = ffn_fail(FFN_ERR_NOMEM, "checkpoint %s: out of memory for a slice of %zu values", path, cap);
    }
    char *tmp = NULL;
    hid_t f = -1;
    if (st == FFN_OK && s.writer) {
        size_t len = strlen(path);
        if (!(tmp = malloc(len + 5))) st = ffn_fail(FFN_ERR_NOMEM, "out of memory");
        else {
            memcpy(tmp, path, len);
            memcpy(tmp + len, ".tmp", 5);
            st = begin_file(&s, tmp, &f);
        }
    }
    if ((st = agree(&s, st)) == FFN_OK) st = write_values(&s, f);
    if (s.writer && f >= 0) {
        if (st == FFN_OK) {
            st = finish_file(&s, tmp, f);
        } else { /* the agreed failure, from this rank or another: no half file stays */
            close_failed_file(f, tmp);
            unlink(tmp);
        }
    }
    free(tmp);
    ffn_free(s.slice);
    ffn_model_free(own);
    return agree(&s, st);
}

ffn_status ffn_checkpoint_save(const ffn_checkpoint *c, const char *path)
{
    return save(c, path, NULL);
}

ffn_status ffn_checkpoint_save_collective(const ffn_checkpoint *c, const char *path, ffn_comm *comm)
{
    return save(c, path, comm);
}

/* ---- load ----------------------------------------------------------------- */

static ffn_status read_string_attr(hid_t loc, const char *name, const char *path, char **out)
{
    *out = NULL;
    if (H5Aexists(loc, name) <= 0)
        return ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: attribute '%s' is missing", path, name);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
    ffn_status st = FFN_OK;
    if (H5Tget_class(ft) != H5T_STRING) {
        st = ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: attribute '%s' should be a string", path, name);
    } else if (H5Sget_simple_extent_npoints(sp) != 1) {
        /* H5Aread writes every element: an array of strings would overflow the
         * one-string buffers below. */
        st = ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: attribute '%s' should be one string, it holds %lld",
                      path, name, (long long)H5Sget_simple_extent_npoints(sp));
    } else if (H5Tis_variable_str(ft) > 0) {
        hid_t t = string_type();
        char *value = NULL;
        if (H5Aread(a, t, &value) < 0 || !value)
            st = ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: attribute '%s' is unreadable", path, name);
        else {
            *out = strdup(value);
            H5free_memory(value);
        }
        H5Tclose(t);
    } else {
        size_t n = H5Tget_size(ft);
        char *value = calloc(n + 1, 1);
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, n + 1);
        if (!value || H5Aread(a, t, value) < 0) {
            free(value);
            st = ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: attribute '%s' is unreadable", path, name);
        } else {
            *out = value;
        }
        H5Tclose(t);
    }
    H5Sclose(sp);
    H5Tclose(ft);
    H5Aclose(a);
    if (st == FFN_OK && !*out) st = ffn_fail(FFN_ERR_NOMEM, "out of memory");
    return st;
}

/* One scalar attribute of the given class, read as mem_type into out. */
static ffn_status read_scalar_attr(hid_t loc, const char *name, const char *path, H5T_class_t cls, hid_t mem_type,
                                   void *out, const char *expected)
{
    if (H5Aexists(loc, name) <= 0)
        return ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: attribute '%s' is missing", path, name);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t ft = H5Aget_type(a);
    hid_t s = H5Aget_space(a);
    int ok = H5Tget_class(ft) == cls && H5Sget_simple_extent_npoints(s) == 1 && H5Aread(a, mem_type, out) >= 0;
    H5Sclose(s);
    H5Tclose(ft);
    H5Aclose(a);
    return ok ? FFN_OK
              : ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: attribute '%s' should be %s", path, name, expected);
}

static ffn_status read_u64_attr(hid_t loc, const char *name, const char *path, uint64_t *out)
{
    return read_scalar_attr(loc, name, path, H5T_INTEGER, H5T_NATIVE_UINT64, out, "one integer");
}

static ffn_status read_double_attr(hid_t loc, const char *name, const char *path, double *out)
{
    return read_scalar_attr(loc, name, path, H5T_FLOAT, H5T_NATIVE_DOUBLE, out, "one number");
}

/* Opens the float dataset where/name, whose shape must be exactly dims
 * (close *d with H5Dclose). */
static ffn_status open_floats(hid_t loc, const char *name, const char *path, const char *where, int rank,
                              const hsize_t *dims, hid_t *d)
{
    *d = -1;
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0)
        return ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: dataset %s/%s is missing", path, where, name);
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) return ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: %s/%s is not a dataset", path, where, name);
    hid_t s = H5Dget_space(ds), t = H5Dget_type(ds);
    hsize_t got[2] = {0, 0};
    int r = H5Sget_simple_extent_ndims(s);
    if (r == rank) H5Sget_simple_extent_dims(s, got, NULL);
    ffn_status st = FFN_OK;
    if (H5Tget_class(t) != H5T_FLOAT)
        st = ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: %s/%s should be float32", path, where, name);
    else if (r != rank || got[0] != dims[0] || (rank == 2 && got[1] != dims[1])) {
        if (rank == 2)
            st = ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: %s/%s has shape [%llu, %llu], expected [%llu, %llu]",
                          path, where, name, (unsigned long long)got[0], (unsigned long long)got[1],
                          (unsigned long long)dims[0], (unsigned long long)dims[1]);
        else
            st = ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: %s/%s has %d dims / %llu rows, expected [%llu]",
                          path, where, name, r, (unsigned long long)got[0], (unsigned long long)dims[0]);
    }
    H5Tclose(t);
    H5Sclose(s);
    if (st == FFN_OK) *d = ds;
    else H5Dclose(ds);
    return st;
}

static ffn_status read_failed(const char *path, const char *where, const char *name)
{
    return ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: %s/%s failed its checksum or could not be read (file corrupted)",
                    path, where, name);
}

/* Reads a float dataset whose shape must be exactly dims. */
static ffn_status read_floats(hid_t loc, const char *name, const char *path, const char *where,
                              float *out, int rank, const hsize_t *dims)
{
    hid_t d;
    ffn_status st = open_floats(loc, name, path, where, rank, dims, &d);
    if (st != FFN_OK) return st;
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) st = read_failed(path, where, name);
    H5Dclose(d);
    return st;
}

/* Elements [from, to) of the float dataset where/name (shaped dims) into out
 * [to - from], each checked finite. */
static ffn_status read_flat_range(hid_t loc, const char *name, const char *path, const char *where, int rank,
                                  const hsize_t *dims, size_t from, size_t to, float *out)
{
    if (from >= to) return FFN_OK;
    hid_t d;
    ffn_status st = open_floats(loc, name, path, where, rank, dims, &d);
    if (st != FFN_OK) return st;
    if (transfer_flat_range(d, rank, rank == 2 ? dims[1] : 1, from, to, out, 0) != 0)
        st = read_failed(path, where, name);
    H5Dclose(d);
    char what[96];
    snprintf(what, sizeof what, "%s/%s", where, name);
    return st == FFN_OK ? check_finite(out, to - from, path, what, from) : st;
}

/* Elements [lo, hi) of the flat parameter order (the tensors of model m)
 * into out [hi - lo]: from each tensor its part of the range. */
static ffn_status read_param_range(hid_t f, const ffn_model *m, const char *path, size_t lo, size_t hi, float *out)
{
    ffn_status st = FFN_OK;
    for (size_t k = 0; k < ffn_model_tensor_count(m) && st == FFN_OK; k++) {
        const ffn_tensor *t = ffn_model_tensor(m, k);
        size_t from = t->offset > lo ? t->offset : lo, to = t->offset + t->count < hi ? t->offset + t->count : hi;
        if (from >= to) continue;
        char where[48];
        snprintf(where, sizeof where, "/model/%zu", t->layer);
        hid_t g = H5Gopen2(f, where, H5P_DEFAULT);
        if (g < 0) return ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: group %s is missing", path, where);
        hsize_t dims[2] = {t->shape[0], t->shape[1]};
        st = read_flat_range(g, t->name, path, where, t->ndim, dims, from - t->offset, to - t->offset,
                             out + (from - lo));
        H5Gclose(g);
    }
    return st;
}

/* Elements [lo, hi) of /optimizer/<name> (param_count values) into out [hi - lo]. */
static ffn_status read_state_range(hid_t f, const char *name, size_t param_count, const char *path, size_t lo,
                                   size_t hi, float *out)
{
    hid_t g = H5Lexists(f, "optimizer", H5P_DEFAULT) > 0 ? H5Gopen2(f, "optimizer", H5P_DEFAULT) : -1;
    if (g < 0) return ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: group /optimizer is missing", path);
    hsize_t n[1] = {param_count};
    ffn_status st = read_flat_range(g, name, path, "/optimizer", 1, n, lo, hi, out);
    H5Gclose(g);
    return st;
}

/* /masks/<i>/W: uint8 [out, in] of 0/1; layers without one keep every weight. */
static ffn_status load_masks(hid_t f, ffn_checkpoint *c, const char *path)
{
    c->mask = ffn_alloc(c->param_count ? c->param_count : 1, 1);
    if (!c->mask) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    memset(c->mask, 1, c->param_count);
    hid_t masks = H5Gopen2(f, "masks", H5P_DEFAULT);
    if (masks < 0) return ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: /masks is not a group", path);
    ffn_status st = FFN_OK;
    for (size_t i = 0; i < c->layer_count && st == FFN_OK; i++) {
        char name[32];
        const ffn_tensor *wt = mask_tensor(c->model, i);
        if (!wt) continue;
        size_t w = wt->count, offset = wt->offset, rows = wt->shape[0], cols = wt->shape[1];
        snprintf(name, sizeof name, "%zu", i);
        if (H5Lexists(masks, name, H5P_DEFAULT) > 0) {
            hid_t g = H5Gopen2(masks, name, H5P_DEFAULT);
            if (H5Lexists(g, "W", H5P_DEFAULT) > 0) {
                hid_t d = H5Dopen2(g, "W", H5P_DEFAULT);
                hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
                hsize_t got[2] = {0, 0};
                int r = H5Sget_simple_extent_ndims(sp);
                if (r == 2) H5Sget_simple_extent_dims(sp, got, NULL);
                if (H5Tget_class(t) != H5T_INTEGER || r != 2 || got[0] != rows || got[1] != cols)
                    st = ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: /masks/%zu/W should be integer [%zu, %zu]", path, i,
                                  rows, cols);
                else if (H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, c->mask + offset) < 0)
                    st = ffn_fail(FFN_ERR_FORMAT,
                                  "checkpoint %s: /masks/%zu/W failed its checksum or could not be read (file corrupted)",
                                  path, i);
                for (size_t k = 0; st == FFN_OK && k < w; k++)
                    if (c->mask[offset + k] > 1)
                        st = ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: /masks/%zu/W holds %u; expected 0 or 1", path, i,
                                      (unsigned)c->mask[offset + k]);
                H5Tclose(t);
                H5Sclose(sp);
                H5Dclose(d);
            }
            H5Gclose(g);
        }
    }
    H5Gclose(masks);
    return st;
}

/* Whether an optimizer kind before kind (in ffn_opt_kind order) may hold a
 * state buffer named name: each name is read once. */
static int state_name_seen(const char *name, int kind)
{
    for (int k = 0; k < kind; k++)
        for (size_t i = 0; ffn_optim_kind_state_name((ffn_opt_kind)k, i); i++)
            if (strcmp(ffn_optim_kind_state_name((ffn_opt_kind)k, i), name) == 0) return 1;
    return 0;
}

/* Every state buffer of /optimizer (g) named as some optimizer kind names
 * one (with values: read; without: only checked); whoever restores them
 * checks that they are the kind's. */
static ffn_status load_optimizer_state(hid_t g, ffn_checkpoint *c, const char *path, int values)
{
    hsize_t n[1] = {c->param_count};
    for (int kind = 0; kind < FFN_OPT_COUNT; kind++) {
        const char *name;
        for (size_t k = 0; (name = ffn_optim_kind_state_name((ffn_opt_kind)kind, k)); k++) {
            if (state_name_seen(name, kind) || H5Lexists(g, name, H5P_DEFAULT) <= 0) continue;
            if (c->state_count == FFN_OPTIM_MAX_STATE)
                return ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: /optimizer holds too many state buffers", path);
            size_t i = c->state_count++;
            c->state_names[i] = strdup(name);
            if (values) c->state[i] = ffn_alloc_floats(c->param_count);
            if (!c->state_names[i] || (values && !c->state[i])) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
            hid_t d;
            ffn_status st = values ? read_floats(g, name, path, "/optimizer", c->state[i], 1, n)
                                   : open_floats(g, name, path, "/optimizer", 1, n, &d);
            if (st != FFN_OK) return st;
            if (!values) H5Dclose(d);
        }
    }
    return FFN_OK;
}

/* The whole file (values 1), or all but the values of the parameter and
 * optimizer state datasets (values 0: their names, types and shapes checked). */
static ffn_status load_contents(hid_t f, ffn_checkpoint *c, const char *path, int values)
{
    ffn_status st;
    char *format = NULL;
    if ((st = read_string_attr(f, "format", path, &format)) != FFN_OK) return st;
    int is_ckpt = strcmp(format, "ffn-checkpoint") == 0;
    free(format);
    if (!is_ckpt) return ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: attribute 'format' is not 'ffn-checkpoint'", path);
    uint64_t v;
    if ((st = read_u64_attr(f, "format_version", path, &v)) != FFN_OK) return st;
    if (v > FFN_CKPT_FORMAT_VERSION || v == 0)
        return ffn_fail(FFN_ERR_FORMAT,
                        "checkpoint %s: format_version %llu is newer than this ffn reads (up to %d); "
                        "upgrade ffn",
                        path, (unsigned long long)v, FFN_CKPT_FORMAT_VERSION);
    c->format_version = (int)v;
    uint64_t input_dim;
    if ((st = read_string_attr(f, "model_spec", path, &c->model_spec)) != FFN_OK ||
        (st = read_u64_attr(f, "input_dim", path, &input_dim)) != FFN_OK ||
        (st = read_string_attr(f, "loss", path, &c->loss)) != FFN_OK)
        return st;
    if (H5Aexists(f, "config_json") > 0 && (st = read_string_attr(f, "config_json", path, &c->config_json)) != FFN_OK)
        return st;
    c->input_dim = (size_t)input_dim;
    /* The spec decides every tensor and shape: the model built from it is kept
     * (c->model), and the parameters are read into its buffer. */
    if (input_dim == 0 || input_dim > (1ull << 31))
        return ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: input_dim %llu is out of range", path,
                        (unsigned long long)input_dim);
    if ((st = ffn_model_create_from_text(&c->model, c->model_spec, c->input_dim)) != FFN_OK)
        return ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: model_spec: %s", path, ffn_last_error());
    ffn_model *m = c->model;
    c->layer_count = ffn_model_layer_count(m);
    c->param_count = ffn_model_param_count(m);
    c->params = values ? ffn_model_params(m) : NULL;
    c->layer_in = calloc(c->layer_count, sizeof *c->layer_in);
    c->layer_out = calloc(c->layer_count, sizeof *c->layer_out);
    for (size_t i = 0; c->layer_in && c->layer_out && i < c->layer_count; i++) {
        c->layer_in[i] = ffn_model_layer(m, i)->in;
        c->layer_out[i] = ffn_model_layer(m, i)->out;
    }
    if (!c->layer_in || !c->layer_out) return ffn_fail(FFN_ERR_NOMEM, "out of memory");

    if (H5Lexists(f, "model", H5P_DEFAULT) <= 0)
        return ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: group /model is missing", path);
    hid_t model = H5Gopen2(f, "model", H5P_DEFAULT);
    for (size_t i = 0; i < c->layer_count && st == FFN_OK; i++) {
        char name[32], where[48];
        snprintf(name, sizeof name, "%zu", i);
        snprintf(where, sizeof where, "/model/%zu", i);
        if (H5Lexists(model, name, H5P_DEFAULT) <= 0) {
            st = ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: group %s is missing", path, where);
            break;
        }
        hid_t g = H5Gopen2(model, name, H5P_DEFAULT);
        const ffn_layer *l = ffn_model_layer_const(m, i);
        uint64_t frozen = 0; /* files before the attribute: nothing frozen */
        if (H5Aexists(g, "frozen") > 0) st = read_u64_attr(g, "frozen", path, &frozen);
        if (st == FFN_OK && frozen) ffn_model_set_frozen(m, i, 1);
        for (size_t k = 0; k < l->tensor_count && st == FFN_OK; k++) {
            const ffn_tensor *t = &l->tensors[k];
            hsize_t dims[2] = {t->shape[0], t->shape[1]};
            hid_t d;
            if (values) st = read_floats(g, t->name, path, where, c->params + t->offset, t->ndim, dims);
            else if ((st = open_floats(g, t->name, path, where, t->ndim, dims, &d)) == FFN_OK) H5Dclose(d);
        }
        H5Gclose(g);
    }
    H5Gclose(model);
    if (st != FFN_OK) return st;

    if (H5Lexists(f, "masks", H5P_DEFAULT) > 0 && (st = load_masks(f, c, path)) != FFN_OK) return st;

    if (H5Lexists(f, "optimizer", H5P_DEFAULT) > 0) {
        hid_t g = H5Gopen2(f, "optimizer", H5P_DEFAULT);
        st = read_string_attr(g, "kind", path, &c->optimizer);
        if (st == FFN_OK) st = read_u64_attr(g, "step_count", path, &c->optimizer_steps);
        if (st == FFN_OK) st = load_optimizer_state(g, c, path, values);
        H5Gclose(g);
        if (st != FFN_OK) return st;
    }
    if (H5Lexists(f, "train", H5P_DEFAULT) <= 0)
        return ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: group /train is missing", path);
    hid_t t = H5Gopen2(f, "train", H5P_DEFAULT);
    if ((st = read_u64_attr(t, "step", path, &c->step)) == FFN_OK &&
        (st = read_u64_attr(t, "epoch", path, &c->epoch)) == FFN_OK &&
        (st = read_u64_attr(t, "step_in_epoch", path, &c->step_in_epoch)) == FFN_OK)
        st = read_u64_attr(t, "seed", path, &c->seed);
    /* The training set's shape: absent in files of older versions (0: unknown). */
    if (st == FFN_OK && H5Aexists(t, "data_rows") > 0 &&
        (st = read_u64_attr(t, "data_rows", path, &c->data_rows)) == FFN_OK &&
        (st = read_u64_attr(t, "data_features", path, &c->data_features)) == FFN_OK)
        st = read_u64_attr(t, "data_classes", path, &c->data_classes);
    /* The best-model state: absent in older files and before the first validation. */
    if (st == FFN_OK && H5Aexists(t, "best_metric") > 0 &&
        (st = read_double_attr(t, "best_metric", path, &c->best_metric)) == FFN_OK &&
        (st = read_u64_attr(t, "best_step", path, &c->best_step)) == FFN_OK &&
        (st = read_u64_attr(t, "best_epoch", path, &c->best_epoch)) == FFN_OK &&
        (st = read_u64_attr(t, "stale_epochs", path, &c->stale_epochs)) == FFN_OK)
        c->has_best = 1;
    H5Gclose(t);
    /* The training data's metadata: absent in older files and for data without any. */
    if (st == FFN_OK && H5Lexists(f, "data", H5P_DEFAULT) > 0) {
        char what[4200];
        snprintf(what, sizeof what, "checkpoint %s: /data", path);
        hid_t g = H5Gopen2(f, "data", H5P_DEFAULT);
        st = g >= 0 ? ffn_meta_read_loc(g, what, &c->meta) : ffn_fail(FFN_ERR_FORMAT, "%s cannot be opened", what);
        if (g >= 0) H5Gclose(g);
        if (st == FFN_OK && c->meta.features && c->meta.features != c->input_dim)
            st = ffn_fail(FFN_ERR_FORMAT, "%s: feature_mean has %zu values, expected input_dim %zu", what,
                          c->meta.features, c->input_dim);
    }
    return st;
}

/* Opens path read-only under the open watchdog (`what` names the work in its
 * message); close with close_guarded. */
static ffn_status open_guarded(const char *path, const char *what, hid_t *f, ffn_watchdog **guard)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (access(path, R_OK) != 0)
        return ffn_fail(FFN_ERR_IO, "checkpoint %s: cannot read: %s", path, strerror(errno));
    if (H5Fis_hdf5(path) <= 0)
        return ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: not an HDF5 file (or truncated)", path);
    ffn_status st = ffn_watchdog_start(guard, path, what);
    if (st != FFN_OK) return st;
    *f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*f < 0) {
        ffn_watchdog_stop(*guard);
        return ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: HDF5 cannot open it (truncated or corrupted?)", path);
    }
    return FFN_OK;
}

static void close_guarded(hid_t f, ffn_watchdog *guard)
{
    H5Fclose(f);
    ffn_watchdog_stop(guard);
}

/* The whole file (values 1) or everything but the parameter and state values. */
static ffn_status load_file(ffn_checkpoint *c, const char *path, int values)
{
    memset(c, 0, sizeof *c);
    hid_t f;
    ffn_watchdog *guard;
    ffn_status st = open_guarded(path, "loading the checkpoint", &f, &guard);
    if (st != FFN_OK) return st;
    st = load_contents(f, c, path, values);
    close_guarded(f, guard);
    if (st != FFN_OK) ffn_checkpoint_free(c);
    return st;
}

ffn_status ffn_checkpoint_load(ffn_checkpoint *c, const char *path) { return load_file(c, path, 1); }

ffn_status ffn_checkpoint_load_header(ffn_checkpoint *c, const char *path) { return load_file(c, path, 0); }

/* Elements [lo, hi) of the parameters (buffer -1) or of state buffer i of
 * path (header c) into out. */
static ffn_status read_range(const ffn_checkpoint *c, const char *path, int buffer, size_t lo, size_t hi, float *out)
{
    if (lo > hi || hi > c->param_count)
        return ffn_fail(FFN_ERR_ARG, "checkpoint %s: range [%zu, %zu) beyond its %zu parameters", path, lo, hi,
                        c->param_count);
    if (buffer >= 0 && (size_t)buffer >= c->state_count)
        return ffn_fail(FFN_ERR_ARG, "checkpoint %s: no optimizer state buffer %d", path, buffer);
    if (lo == hi) return FFN_OK;
    hid_t f;
    ffn_watchdog *guard;
    ffn_status st = open_guarded(path, "reading the checkpoint", &f, &guard);
    if (st != FFN_OK) return st;
    st = buffer < 0 ? read_param_range(f, c->model, path, lo, hi, out)
                    : read_state_range(f, c->state_names[buffer], c->param_count, path, lo, hi, out);
    close_guarded(f, guard);
    return st;
}

ffn_status ffn_checkpoint_read_params(const ffn_checkpoint *c, const char *path, size_t lo, size_t hi, float *out)
{
    return read_range(c, path, -1, lo, hi, out);
}

ffn_status ffn_checkpoint_read_state(const ffn_checkpoint *c, const char *path, size_t i, size_t lo, size_t hi,
                                     float *out)
{
    return read_range(c, path, (int)i, lo, hi, out);
}

ffn_status ffn_checkpoint_verify(const char *path)
{
    ffn_checkpoint c;
    memset(&c, 0, sizeof c);
    hid_t f;
    ffn_watchdog *guard;
    ffn_status st = open_guarded(path, "checking the checkpoint", &f, &guard);
    if (st != FFN_OK) return st;
    st = load_contents(f, &c, path, 0);
    const size_t per = ffn_checkpoint_slice_floats(), P = c.param_count;
    float *slice = st == FFN_OK ? ffn_alloc_floats(per < P ? per : P ? P : 1) : NULL;
    if (st == FFN_OK && !slice) st = ffn_fail(FFN_ERR_NOMEM, "checkpoint %s: out of memory for a slice", path);
    for (size_t lo = 0; lo < P && st == FFN_OK; lo += per) {
        size_t hi = P - lo < per ? P : lo + per;
        st = read_param_range(f, c.model, path, lo, hi, slice);
        for (size_t i = 0; i < c.state_count && st == FFN_OK; i++)
            st = read_state_range(f, c.state_names[i], P, path, lo, hi, slice);
    }
    close_guarded(f, guard);
    ffn_free(slice);
    ffn_checkpoint_free(&c);
    return st;
}

ffn_status ffn_checkpoint_read_config(const char *path, char **json)
{
    *json = NULL;
    hid_t f;
    ffn_watchdog *guard;
    ffn_status st = open_guarded(path, "reading the checkpoint's configuration", &f, &guard);
    if (st != FFN_OK) return st;
    char *format = NULL;
    st = read_string_attr(f, "format", path, &format);
    if (st == FFN_OK && strcmp(format, "ffn-checkpoint") != 0)
        st = ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: attribute 'format' is not 'ffn-checkpoint'", path);
    free(format);
    if (st == FFN_OK && H5Aexists(f, "config_json") <= 0)
        st = ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: no config_json attribute (no recorded configuration)", path);
    if (st == FFN_OK) st = read_string_attr(f, "config_json", path, json);
    close_guarded(f, guard);
    return st;
}

void ffn_checkpoint_free_tensors(ffn_checkpoint *c)
{
    if (c->model) ffn_model_free(c->model); /* owns params */
    else ffn_free(c->params);
    c->model = NULL;
    c->params = NULL;
    ffn_free(c->mask);
    c->mask = NULL;
    for (int i = 0; i < FFN_OPTIM_MAX_STATE; i++) {
        ffn_free(c->state[i]);
        c->state[i] = NULL;
    }
}

void ffn_checkpoint_free(ffn_checkpoint *c)
{
    free(c->model_spec);
    free(c->loss);
    free(c->config_json);
    free(c->layer_in);
    free(c->layer_out);
    if (c->model) ffn_model_free(c->model); /* owns params */
    else ffn_free(c->params);
    ffn_free(c->mask);
    ffn_data_meta_free(&c->meta);
    free(c->optimizer);
    for (int i = 0; i < FFN_OPTIM_MAX_STATE; i++) {
        free(c->state_names[i]);
        ffn_free(c->state[i]);
    }
    memset(c, 0, sizeof *c);
}

/* ---- the checkpoint directory ---------------------------------------------- */

void ffn_checkpoint_name(char *out, size_t cap, const char *dir, uint64_t step)
{
    snprintf(out, cap, "%s/ckpt-%010" PRIu64 ".h5", dir, step);
}

/* Steps of the complete checkpoints in dir (names ckpt-<digits>.h5 exactly). */
static size_t list_steps(const char *dir, uint64_t **steps)
{
    *steps = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *s = e->d_name;
        size_t len = strlen(s);
        if (len != 18 || strncmp(s, "ckpt-", 5) != 0 || strcmp(s + 15, ".h5") != 0) continue;
        uint64_t step = 0;
        int ok = 1;
        for (int i = 5; i < 15; i++) {
            if (s[i] < '0' || s[i] > '9') ok = 0;
            step = step * 10 + (uint64_t)(s[i] - '0');
        }
        if (!ok) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            uint64_t *grown = realloc(*steps, cap * sizeof *grown);
            if (!grown) break;
            *steps = grown;
        }
        (*steps)[n++] = step;
    }
    closedir(d);
    return n;
}

static int newest_first(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x < y) - (x > y);
}

size_t ffn_checkpoint_steps(const char *dir, uint64_t **steps)
{
    size_t n = list_steps(dir, steps);
    if (n) qsort(*steps, n, sizeof **steps, newest_first);
    return n;
}

char *ffn_checkpoint_latest(const char *dir)
{
    uint64_t *steps;
    size_t n = ffn_checkpoint_steps(dir, &steps);
    if (n == 0) {
        free(steps);
        ffn_fail(FFN_ERR_IO, "--resume latest: no checkpoint (ckpt-*.h5) in %s", dir);
        return NULL;
    }
    size_t cap = strlen(dir) + 32;
    char *path = malloc(cap);
    if (path) ffn_checkpoint_name(path, cap, dir, steps[0]);
    free(steps);
    return path;
}

ffn_status ffn_checkpoint_prune(const char *dir, size_t keep, const char *protect)
{
    if (keep == 0) return FFN_OK;
    uint64_t *steps;
    size_t n = ffn_checkpoint_steps(dir, &steps);
    size_t cap = strlen(dir) + 32;
    char *path = n > keep ? malloc(cap) : NULL;
    for (size_t i = keep; path && i < n; i++) {
        ffn_checkpoint_name(path, cap, dir, steps[i]);
        if (!ffn_same_file(path, protect)) unlink(path);
    }
    free(path);
    free(steps);
    return FFN_OK;
}

ffn_status ffn_checkpoint_check_finite(const ffn_checkpoint *c, const char *path)
{
    char what[96];
    for (size_t k = 0; c->model && k < ffn_model_tensor_count(c->model); k++) {
        const ffn_tensor *t = ffn_model_tensor(c->model, k);
        snprintf(what, sizeof what, "/model/%zu/%s", t->layer, t->name);
        ffn_status st = c->params ? check_finite(c->params + t->offset, t->count, path, what, 0) : FFN_OK;
        if (st != FFN_OK) return st;
    }
    for (size_t i = 0; i < c->state_count; i++) {
        if (!c->state[i]) continue;
        snprintf(what, sizeof what, "/optimizer/%s", c->state_names[i]);
        ffn_status st = check_finite(c->state[i], c->param_count, path, what, 0);
        if (st != FFN_OK) return st;
    }
    return FFN_OK;
}
