/* libFuzzer target: the dataset validation layer (ffn_dataset_open and the
 * row readers) on HDF5 files made from the fuzzer's choices.
 *
 * Each input decodes into a small valid dataset (rows, features, float32 or
 * uint8 /x, int labels or float targets, num_classes), written by ffn's own
 * writer, then up to 5 mutations (h5_mutate.c): /x, /y or others replaced by
 * datasets of another dtype, rank, shape, layout or contents (NaN, Inf,
 * labels out of range, huge dims), attributes (scale, offset, num_classes)
 * of other types and shapes, groups in place of datasets, virtual datasets
 * with missing, short or same-file sources, one corrupted stored byte.
 *
 * Properties: opening never crashes and fails with a message; an opened
 * dataset reads its rows with every value finite and every label in
 * [0, num_classes); out-of-range reads are refused; reads served from memory
 * (ffn_dataset_cache) give the same status and the same bits as reads from
 * the file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ffn/data.h"
#include "ffn/status.h"
#include "h5_mutate.h"

#define MAX_READ 8

static char path[512];
static int verbose; /* FFN_FUZZ_VERBOSE=1: print each outcome (for looking at a corpus) */

static void die(const char *what)
{
    fprintf(stderr, "fuzz_dataset: %s (last error: %s)\n", what, ffn_last_error());
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    verbose = fz_hdf5_init(path, sizeof path, "data.h5");
    return 0;
}

/* The valid starting point. Returns 0 when it was written. */
static int write_base(fz_input *in)
{
    ffn_dataset_layout L = {0};
    L.rows = 1 + fz_pick(in, 24);
    L.features = 1 + fz_pick(in, 6);
    L.x_uint8 = fz_pick(in, 4) == 0;
    L.x_scale = 1.0f / 255.0f;
    L.has_labels = fz_pick(in, 3) != 0;
    L.target_cols = L.has_labels ? 1 : 1 + fz_pick(in, 3);
    L.num_classes = L.has_labels ? fz_pick(in, 5) : 0;
    size_t cells = L.rows * L.features, ycells = L.rows * L.target_cols;
    float *xf = malloc(cells * sizeof *xf), *yf = malloc(ycells * sizeof *yf);
    uint8_t *xu = malloc(cells);
    int32_t *lab = malloc(L.rows * sizeof *lab);
    int rc = -1;
    if (xf && yf && xu && lab) {
        for (size_t i = 0; i < cells; i++) {
            xu[i] = fz_u8(in);
            xf[i] = ((float)xu[i] - 128.0f) / 32.0f;
        }
        for (size_t i = 0; i < ycells; i++) yf[i] = (float)(fz_u8(in) % 9) - 4.0f;
        for (size_t i = 0; i < L.rows; i++)
            lab[i] = (int32_t)(fz_u8(in) % (L.num_classes ? L.num_classes : 4));
        ffn_dataset_writer *w = NULL;
        if (ffn_dataset_writer_create(&w, path, &L) == FFN_OK) {
            const void *x = L.x_uint8 ? (const void *)xu : (const void *)xf;
            const void *y = L.has_labels ? (const void *)lab : (const void *)yf;
            if (ffn_dataset_writer_rows(w, 0, L.rows, x, y) == FFN_OK) {
                rc = ffn_dataset_writer_close(w) == FFN_OK ? 0 : -1;
            } else {
                ffn_dataset_writer_abort(w);
            }
        }
    }
    free(xf);
    free(yf);
    free(xu);
    free(lab);
    return rc;
}

typedef struct {
    ffn_status st;
    float *x, *values;
    int32_t *labels;
} read_result;

/* Checks what a successful read returned. */
static void check_values(const ffn_dataset_info *info, const read_result *r, size_t n)
{
    if (r->st != FFN_OK) {
        if (!*ffn_last_error()) die("a read failed without a message");
        return;
    }
    for (size_t i = 0; i < n * info->features; i++)
        if (!isfinite(r->x[i])) die("a read returned a non-finite feature");
    if (info->has_labels) {
        for (size_t i = 0; i < n; i++)
            if (r->labels[i] < 0 || (size_t)r->labels[i] >= info->num_classes)
                die("a read returned a label outside [0, num_classes)");
    } else {
        for (size_t i = 0; i < n * info->target_cols; i++)
            if (!isfinite(r->values[i])) die("a read returned a non-finite target");
    }
}

static void read_one(ffn_dataset *ds, const uint64_t *idx, uint64_t start, size_t n, read_result *r)
{
    ffn_clear_error();
    r->st = idx ? ffn_dataset_read_rows(ds, idx, n, r->x, r->labels, r->values)
                : ffn_dataset_read_range(ds, start, n, r->x, r->labels, r->values);
}

/* The same three reads, from the file or from the cache: the first n rows,
 * the rows idx[0..k), and a range running one row past the end. */
static void read_three(ffn_dataset *ds, const ffn_dataset_info *info, read_result r[3], size_t n,
                       const uint64_t *idx, size_t k)
{
    read_one(ds, NULL, 0, n, &r[0]);
    check_values(info, &r[0], n);
    read_one(ds, idx, 0, k, &r[1]);
    check_values(info, &r[1], k);
    if (idx[k - 1] >= info->rows && r[1].st == FFN_OK) die("rows past the end were read");
    read_one(ds, NULL, info->rows - 1, 2, &r[2]);
    if (r[2].st == FFN_OK) die("a range past the end was read");
    if (verbose)
        fprintf(stderr, "fuzz_dataset: reads %s, %s, %s\n", ffn_status_name(r[0].st), ffn_status_name(r[1].st),
                ffn_status_name(r[2].st));
}

static void alloc_result(read_result *r, const ffn_dataset_info *info)
{
    r->st = FFN_OK;
    r->x = calloc(MAX_READ * info->features + 1, sizeof *r->x);
    r->values = calloc(MAX_READ * info->target_cols + 1, sizeof *r->values);
    r->labels = calloc(MAX_READ + 1, sizeof *r->labels);
    if (!r->x || !r->values || !r->labels) die("out of memory in the harness");
}

static void free_result(read_result *r)
{
    free(r->x);
    free(r->values);
    free(r->labels);
}

/* Rows /name declares (0 when it is not a dataset of rank >= 1). */
static unsigned long long declared_rows(const char *name)
{
    unsigned long long rows = 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f >= 0 && H5Lexists(f, name, H5P_DEFAULT) > 0 ? H5Dopen2(f, name, H5P_DEFAULT) : -1;
    hid_t s = d >= 0 ? H5Dget_space(d) : -1;
    hsize_t dims[H5S_MAX_RANK];
    if (s >= 0 && H5Sget_simple_extent_dims(s, dims, NULL) > 0) rows = dims[0];
    if (s >= 0) H5Sclose(s);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
    return rows;
}

static void exercise(fz_input *in)
{
    /* A file may declare billions of rows in a few bytes (chunks never written
     * read as zeros): ffn then checks every label, as it should, which takes
     * minutes. Such inputs are left out rather than reported as timeouts. */
    unsigned long long xr = declared_rows("x"), yr = declared_rows("y");
    if (xr > ((unsigned long long)1 << 20) && xr == yr) return;

    ffn_dataset *ds = NULL;
    ffn_clear_error();
    ffn_status st = ffn_dataset_open(&ds, path);
    if (verbose) fprintf(stderr, "fuzz_dataset: open: %s\n", st == FFN_OK ? "ok" : ffn_last_error());
    if (st != FFN_OK) {
        if (ds) die("a failed open returned a dataset");
        if (!*ffn_last_error()) die("a failed open left no message");
        return;
    }
    const ffn_dataset_info *info = ffn_dataset_get_info(ds);
    if (info->rows == 0 || info->features == 0 || info->target_cols == 0) die("opened with an empty shape");
    if (info->has_labels && info->num_classes == 0) die("labels with no classes");
    /* Wide rows are legal but would make this harness allocate a lot. */
    if (info->features > 4096 || info->target_cols > 4096) {
        ffn_dataset_close(ds);
        return;
    }
    size_t n = info->rows < MAX_READ ? info->rows : MAX_READ;
    /* Rows to read: a strictly increasing list, possibly running off the end. */
    uint64_t idx[MAX_READ];
    size_t k = 1 + fz_pick(in, n);
    uint64_t at = fz_pick(in, 3);
    for (size_t i = 0; i < k; i++) {
        idx[i] = at;
        at += 1 + fz_pick(in, 3);
    }
    read_result file[3], mem[3];
    for (int j = 0; j < 3; j++) alloc_result(&file[j], info);
    read_three(ds, info, file, n, idx, k);

    int cached = 0;
    ffn_clear_error();
    if (ffn_dataset_cache(ds, (size_t)1 << 20, &cached) != FFN_OK && !*ffn_last_error())
        die("caching failed without a message");
    if (cached) {
        /* Served from memory: the same status and the same bits as from the file. */
        for (int j = 0; j < 3; j++) alloc_result(&mem[j], info);
        read_three(ds, info, mem, n, idx, k);
        for (int j = 0; j < 2; j++) {
            size_t rows = j == 0 ? n : k;
            if ((file[j].st == FFN_OK) != (mem[j].st == FFN_OK))
                die("a cached read and a file read disagree on success");
            if (file[j].st != FFN_OK) continue;
            if (memcmp(file[j].x, mem[j].x, rows * info->features * sizeof(float)) != 0)
                die("cached features differ from the file's");
            if (info->has_labels ? memcmp(file[j].labels, mem[j].labels, rows * sizeof(int32_t)) != 0
                                 : memcmp(file[j].values, mem[j].values, rows * info->target_cols * sizeof(float)) != 0)
                die("cached labels or targets differ from the file's");
        }
        for (int j = 0; j < 3; j++) free_result(&mem[j]);
    }
    for (int j = 0; j < 3; j++) free_result(&file[j]);
    ffn_dataset_close(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_input in = {data, size};
    static const char *const attrs[] = {"scale", "offset", "num_classes", "source", "created_by"};
    if (write_base(&in) == 0) {
        fz_mutate_file(&in, path, attrs, sizeof attrs / sizeof attrs[0], 5);
        exercise(&in);
    }
    fz_clean_tmpdir();
    return 0;
}
