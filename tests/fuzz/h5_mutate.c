/* Fuzz targets: HDF5 files built from the fuzzer's choices (see h5_mutate.h). */
#define _DEFAULT_SOURCE /* mkdtemp */
#include "h5_mutate.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_WRITE_POINTS 4096

static char tmpdir[256];

static void remove_tmpdir(void)
{
    fz_clean_tmpdir();
    rmdir(tmpdir);
}

const char *fz_tmpdir(void)
{
    if (!tmpdir[0]) {
        struct stat sb;
        const char *base = getenv("FFN_FUZZ_TMPDIR");
        if (!base) base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp";
        snprintf(tmpdir, sizeof tmpdir, "%s/ffn-fuzz-XXXXXX", base);
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(remove_tmpdir);
    }
    return tmpdir;
}

int fz_hdf5_init(char *path, size_t cap, const char *file_name)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    H5set_free_list_limits(-1, -1, -1, -1, -1, -1);
    snprintf(path, cap, "%s/%s", fz_tmpdir(), file_name);
    return getenv("FFN_FUZZ_VERBOSE") != NULL;
}

void fz_clean_tmpdir(void)
{
    const char *dir = fz_tmpdir();
    DIR *d = opendir(dir);
    if (!d) return;
    char p[600];
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

/* ---- types, dataspaces, values --------------------------------------------- */

/* A datatype: mostly the ones ffn accepts, then every other class. */
static hid_t make_type(fz_input *in, int *vlen_string)
{
    *vlen_string = 0;
    hid_t t;
    switch (fz_pick(in, 22)) {
    case 0: case 1: case 2: return H5Tcopy(H5T_IEEE_F32LE);
    case 3: return H5Tcopy(H5T_IEEE_F32BE);
    case 4: return H5Tcopy(H5T_IEEE_F64LE);
    case 5: /* a 16-bit float, made by hand (HDF5 1.10 has no predefined one) */
        t = H5Tcopy(H5T_IEEE_F32LE);
        H5Tset_fields(t, 15, 10, 5, 0, 10);
        H5Tset_precision(t, 16);
        H5Tset_size(t, 2);
        H5Tset_ebias(t, 15);
        return t;
    case 6: case 7: return H5Tcopy(H5T_STD_U8LE);
    case 8: return H5Tcopy(H5T_STD_I8LE);
    case 9: return H5Tcopy(H5T_STD_I16LE);
    case 10: case 11: return H5Tcopy(H5T_STD_I32LE);
    case 12: return H5Tcopy(H5T_STD_I32BE);
    case 13: return H5Tcopy(H5T_STD_I64LE);
    case 14: return H5Tcopy(H5T_STD_U64LE);
    case 15:
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 1 + fz_pick(in, 24));
        return t;
    case 16:
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        *vlen_string = 1;
        return t;
    case 17: {
        t = H5Tenum_create(H5T_NATIVE_INT32);
        int a = 0, b = 1;
        H5Tenum_insert(t, "a", &a);
        H5Tenum_insert(t, "b", &b);
        return t;
    }
    case 18:
        t = H5Tcreate(H5T_COMPOUND, 8);
        H5Tinsert(t, "a", 0, H5T_IEEE_F32LE);
        H5Tinsert(t, "b", 4, H5T_STD_I32LE);
        return t;
    case 19: {
        hsize_t n[1] = {2};
        return H5Tarray_create2(H5T_IEEE_F32LE, 1, n);
    }
    case 20: return H5Tcopy(H5T_STD_B8LE);
    default: return H5Tcreate(H5T_OPAQUE, 4);
    }
}

static hsize_t make_dim(fz_input *in)
{
    static const hsize_t huge[] = {(hsize_t)1 << 31, (hsize_t)1 << 32, ((hsize_t)1 << 32) + 1,
                                   (hsize_t)1 << 40, (hsize_t)1 << 61, (hsize_t)1 << 62,
                                   ((hsize_t)1 << 63) - 1};
    uint8_t b = fz_u8(in);
    return b < 248 ? b % 19 : huge[(b - 248) % (sizeof huge / sizeof huge[0])];
}

/* Scalar, null, or simple of rank 1-3 (mostly 1 and 2). */
static hid_t make_space(fz_input *in, int *rank, hsize_t dims[3], int unlimited)
{
    int kind = (int)fz_pick(in, 10);
    *rank = 0;
    if (kind == 0) return H5Screate(H5S_SCALAR);
    if (kind == 1) return H5Screate(H5S_NULL);
    *rank = kind < 5 ? 1 : kind < 9 ? 2 : 3;
    hsize_t max[3];
    for (int i = 0; i < *rank; i++) {
        dims[i] = make_dim(in);
        max[i] = unlimited ? H5S_UNLIMITED : dims[i];
    }
    return H5Screate_simple(*rank, dims, max);
}

/* Fills buf[0..bytes) from the input: raw bytes, or small values of the type. */
static void fill_raw(fz_input *in, hid_t type, void *buf, size_t points)
{
    size_t size = H5Tget_size(type), bytes = points * size;
    uint8_t *p = buf;
    int small = fz_pick(in, 2);
    H5T_class_t cls = H5Tget_class(type);
    if (small && (cls == H5T_INTEGER || cls == H5T_FLOAT)) {
        /* Small, mostly valid values converted into the type by HDF5. */
        double *v = malloc(points * sizeof *v);
        if (!v) return;
        for (size_t i = 0; i < points; i++) v[i] = (double)(fz_u8(in) % 7) - (fz_pick(in, 16) == 0 ? 3 : 0);
        memset(buf, 0, bytes);
        hid_t mt = H5Tcopy(H5T_NATIVE_DOUBLE);
        /* H5Tconvert works in place in a buffer large enough for both types. */
        size_t need = points * (size > sizeof(double) ? size : sizeof(double));
        uint8_t *tmp = malloc(need);
        if (tmp) {
            memcpy(tmp, v, points * sizeof *v);
            if (H5Tconvert(mt, type, points, tmp, NULL, H5P_DEFAULT) >= 0) memcpy(buf, tmp, bytes);
            free(tmp);
        }
        H5Tclose(mt);
        free(v);
        return;
    }
    for (size_t i = 0; i < bytes; i++) p[i] = in->n ? fz_u8(in) : (uint8_t)(i * 37);
}

/* The number of elements of a dataspace, or -1 when it exceeds MAX_WRITE_POINTS
 * (H5Sget_simple_extent_npoints wraps around: [2^63 - 1, 2^63 - 1] gives 1). */
static long long space_points(hid_t space)
{
    H5S_class_t cls = H5Sget_simple_extent_type(space);
    if (cls == H5S_NULL) return 0;
    if (cls == H5S_SCALAR) return 1;
    hsize_t dims[H5S_MAX_RANK];
    int rank = H5Sget_simple_extent_dims(space, dims, NULL);
    if (rank < 0) return -1;
    long long n = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] == 0) return 0;
        if (dims[i] > MAX_WRITE_POINTS || (unsigned long long)n * dims[i] > MAX_WRITE_POINTS) n = -1;
        if (n < 0) continue; /* a later zero still makes it empty */
        n *= (long long)dims[i];
    }
    return n;
}

/* Writes to obj (a dataset or an attribute) what fits in MAX_WRITE_POINTS. */
static void write_values(fz_input *in, hid_t obj, int is_attr, hid_t type, int vlen_string,
                         hid_t space, const char *text)
{
    long long points = space_points(space);
    if (points <= 0) return;
    size_t n = (size_t)points;
    if (vlen_string) {
        char **strs = calloc(n, sizeof *strs);
        static char own[4][256];
        for (size_t i = 0; strs && i < n; i++) {
            if (text && i == 0) {
                strs[i] = (char *)text;
            } else {
                fz_text(in, own[i % 4], sizeof own[0]);
                strs[i] = own[i % 4];
            }
        }
        if (strs) {
            if (is_attr) H5Awrite(obj, type, strs);
            else H5Dwrite(obj, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, strs);
        }
        free(strs);
        return;
    }
    size_t size = H5Tget_size(type);
    uint8_t *buf = calloc(n, size);
    if (!buf) return;
    if (text && H5Tget_class(type) == H5T_STRING) {
        size_t len = strlen(text);
        memcpy(buf, text, len < size ? len : size);
    } else {
        fill_raw(in, type, buf, n);
    }
    if (is_attr) H5Awrite(obj, type, buf);
    else H5Dwrite(obj, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    free(buf);
}

/* ---- datasets, attributes, virtual datasets -------------------------------- */

void fz_replace_dataset(fz_input *in, hid_t loc, const char *name)
{
    if (H5Lexists(loc, name, H5P_DEFAULT) > 0) H5Ldelete(loc, name, H5P_DEFAULT);
    int vlen = 0, rank = 0;
    hsize_t dims[3] = {0, 0, 0};
    hid_t type = make_type(in, &vlen);
    int layout = (int)fz_pick(in, 4); /* 0 contiguous, 1 compact, 2-3 chunked */
    hid_t space = make_space(in, &rank, dims, layout >= 2 && fz_pick(in, 4) == 0);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (layout == 1) {
        H5Pset_layout(dcpl, H5D_COMPACT);
    } else if (layout >= 2 && rank > 0) {
        hsize_t chunk[3];
        for (int i = 0; i < rank; i++) chunk[i] = dims[i] == 0 ? 1 : dims[i] < 8 ? dims[i] : 8;
        H5Pset_chunk(dcpl, rank, chunk);
        int filters = (int)fz_pick(in, 8);
        if (filters & 1) H5Pset_fletcher32(dcpl);
        if (filters & 2) H5Pset_shuffle(dcpl);
        if (filters & 4) H5Pset_deflate(dcpl, 1);
    }
    hid_t d = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (getenv("FFN_FUZZ_VERBOSE"))
        fprintf(stderr, "fz_replace_dataset %s: class %d size %zu rank %d dims %llu %llu %llu layout %d -> %s\n",
                name, (int)H5Tget_class(type), H5Tget_size(type), rank, (unsigned long long)dims[0],
                (unsigned long long)dims[1], (unsigned long long)dims[2], layout, d >= 0 ? "made" : "refused");
    if (d >= 0) {
        if (fz_pick(in, 4) == 0) fz_set_attribute(in, d, fz_pick(in, 2) ? "scale" : "offset", NULL);
        write_values(in, d, 0, type, vlen, space, NULL);
        H5Dclose(d);
    }
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Tclose(type);
}

void fz_set_attribute(fz_input *in, hid_t obj, const char *name, const char *text)
{
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    int vlen = 0;
    hid_t type;
    if (text && fz_pick(in, 2)) {
        /* Text from the input as the value (a model_spec, a format name...). */
        type = H5Tcopy(H5T_C_S1);
        vlen = (int)fz_pick(in, 2);
        H5Tset_size(type, vlen ? H5T_VARIABLE : strlen(text) + 1);
    } else {
        type = make_type(in, &vlen);
    }
    hid_t space;
    switch (fz_pick(in, 8)) {
    case 0: space = H5Screate(H5S_NULL); break;
    case 1: {
        hsize_t n[1] = {1 + fz_pick(in, 3)};
        space = H5Screate_simple(1, n, NULL);
        break;
    }
    case 2: {
        hsize_t n[1] = {0};
        space = H5Screate_simple(1, n, NULL);
        break;
    }
    default: space = H5Screate(H5S_SCALAR); break;
    }
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        write_values(in, a, 1, type, vlen, space, text);
        H5Aclose(a);
    }
    H5Sclose(space);
    H5Tclose(type);
}

void fz_make_virtual(fz_input *in, hid_t file, const char *file_path, const char *name)
{
    if (H5Lexists(file, name, H5P_DEFAULT) > 0) H5Ldelete(file, name, H5P_DEFAULT);
    int rank = 1 + (int)fz_pick(in, 2);
    hsize_t vdims[2], sdims[2];
    for (int i = 0; i < rank; i++) {
        vdims[i] = 1 + fz_pick(in, 12);
        sdims[i] = vdims[i];
    }
    int size_choice = (int)fz_pick(in, 4); /* 0 source too small, 1 larger, else equal */
    if (size_choice == 0) sdims[0] = vdims[0] > 1 ? vdims[0] - 1 : 0;
    if (size_choice == 1) sdims[0] = vdims[0] + 3;
    hid_t type;
    switch (fz_pick(in, 4)) {
    case 0: type = H5Tcopy(H5T_IEEE_F32LE); break;
    case 1: type = H5Tcopy(H5T_STD_I32LE); break;
    case 2: type = H5Tcopy(H5T_STD_U8LE); break;
    default: type = H5Tcopy(H5T_IEEE_F64LE); break;
    }
    int where = (int)fz_pick(in, 5); /* 0 missing file, 1 same file, 2 absolute path, else relative */
    char src_name[512], src_path[512];
    const char *dir = fz_tmpdir();
    snprintf(src_path, sizeof src_path, "%s/src-%s.h5", dir, name);
    for (char *p = src_path + strlen(dir) + 1; *p; p++)
        if (*p == '/') *p = '_';
    const char *slash = strrchr(src_path, '/');
    snprintf(src_name, sizeof src_name, "%s", where == 2 ? src_path : slash + 1);
    const char *src_dset = "/data";
    hid_t sspace = H5Screate_simple(rank, sdims, NULL);
    if (where == 1) {
        snprintf(src_name, sizeof src_name, ".");
        src_dset = "/vsource";
        if (H5Lexists(file, "vsource", H5P_DEFAULT) > 0) H5Ldelete(file, "vsource", H5P_DEFAULT);
        hid_t d = H5Dcreate2(file, "vsource", type, sspace, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (d >= 0) {
            write_values(in, d, 0, type, 0, sspace, NULL);
            H5Dclose(d);
        }
    } else if (where != 0) {
        hid_t sf = H5Fcreate(src_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        if (sf >= 0) {
            hid_t d = H5Dcreate2(sf, "data", type, sspace, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (d >= 0) {
                write_values(in, d, 0, type, 0, sspace, NULL);
                H5Dclose(d);
            }
            H5Fclose(sf);
        }
    } else {
        unlink(src_path);
    }
    (void)file_path;
    hid_t vspace = H5Screate_simple(rank, vdims, NULL);
    hid_t map_src = H5Scopy(sspace);
    if (fz_pick(in, 2)) {
        /* A hyperslab mapping of the first rows (may run past a short source). */
        hsize_t start[2] = {0, 0}, count[2] = {vdims[0], rank > 1 ? vdims[1] : 1};
        H5Sclose(map_src);
        map_src = H5Screate_simple(rank, vdims, NULL);
        H5Sselect_hyperslab(map_src, H5S_SELECT_SET, start, NULL, count, NULL);
        H5Sselect_hyperslab(vspace, H5S_SELECT_SET, start, NULL, count, NULL);
    }
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (H5Pset_virtual(dcpl, vspace, src_name, src_dset, map_src) >= 0) {
        H5Sselect_all(vspace);
        hid_t d = H5Dcreate2(file, name, type, vspace, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (d >= 0) H5Dclose(d);
    }
    H5Pclose(dcpl);
    H5Sclose(map_src);
    H5Sclose(vspace);
    H5Sclose(sspace);
    H5Tclose(type);
}

/* ---- walking and corrupting ------------------------------------------------- */

typedef struct {
    char (*names)[64];
    size_t count, cap;
} name_list;

static herr_t visit_cb(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)g;
    (void)info;
    name_list *l = data;
    if (l->count < l->cap && strlen(name) < 64) snprintf(l->names[l->count++], 64, "%s", name);
    return 0;
}

size_t fz_list_objects(hid_t file, char names[][64], size_t cap)
{
    name_list l = {names, 0, cap};
    H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, visit_cb, &l);
    return l.count;
}

void fz_data_offset(hid_t dset, long long *offset, long long *size)
{
    *offset = -1;
    *size = 0;
    hid_t dcpl = H5Dget_create_plist(dset);
    if (dcpl < 0) return;
    H5D_layout_t layout = H5Pget_layout(dcpl);
    H5Pclose(dcpl);
    if (layout == H5D_CONTIGUOUS) {
        haddr_t a = H5Dget_offset(dset);
        hsize_t s = H5Dget_storage_size(dset);
        if (a != HADDR_UNDEF && s > 0) {
            *offset = (long long)a;
            *size = (long long)s;
        }
    } else if (layout == H5D_CHUNKED) {
        hid_t space = H5Dget_space(dset);
        hsize_t nchunks = 0;
        if (H5Dget_num_chunks(dset, space, &nchunks) >= 0 && nchunks > 0) {
            hsize_t coords[H5S_MAX_RANK];
            unsigned mask = 0;
            haddr_t a = HADDR_UNDEF;
            hsize_t s = 0;
            if (H5Dget_chunk_info(dset, space, 0, coords, &mask, &a, &s) >= 0 && a != HADDR_UNDEF && s > 0) {
                *offset = (long long)a;
                *size = (long long)s;
            }
        }
        H5Sclose(space);
    }
}

void fz_flip_byte(const char *path, long long offset, uint8_t mask)
{
    int fd = open(path, O_RDWR);
    if (fd < 0) return;
    uint8_t b;
    if (pread(fd, &b, 1, offset) == 1) {
        b ^= mask ? mask : 1;
        if (pwrite(fd, &b, 1, offset) != 1) perror("pwrite");
    }
    close(fd);
}

/* Splits "a/b/c" into the parent group ("a/b", or "/") and the last name. */
static void split_path(const char *path, char *parent, char *base)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(parent, "/");
        strcpy(base, path);
    } else {
        snprintf(parent, 64, "%.*s", (int)(slash - path), path);
        snprintf(base, 64, "%s", slash + 1);
    }
}

int fz_mutate_file(fz_input *in, const char *path, const char *const *attrs, size_t attr_count,
                   int max_mutations)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return -1;
    char names[64][64];
    size_t n = fz_list_objects(f, names, 64);
    long long flip_at = -1;
    uint8_t flip_mask = 0;
    int count = (int)fz_pick(in, (size_t)max_mutations + 1);
    for (int k = 0; k < count; k++) {
        int op = (int)fz_pick(in, 10);
        size_t which = fz_pick(in, n + 1);
        const char *target = which < n ? names[which] : "/";
        char parent[64], base[64], text[256];
        split_path(target, parent, base);
        int is_root = which >= n;
        switch (op) {
        case 0: case 1: /* a dataset with another type, shape, layout or contents */
            if (!is_root) {
                hid_t g = H5Gopen2(f, parent, H5P_DEFAULT);
                if (g >= 0) {
                    fz_replace_dataset(in, g, base);
                    H5Gclose(g);
                }
            } else {
                fz_replace_dataset(in, f, fz_pick(in, 2) ? "x" : "y");
            }
            break;
        case 2: case 3: case 4: { /* an attribute with another type, shape or value */
            hid_t o = H5Oopen(f, target, H5P_DEFAULT);
            if (o >= 0) {
                const char *name = attrs[fz_pick(in, attr_count)];
                fz_text(in, text, sizeof text);
                fz_set_attribute(in, o, name, text);
                H5Oclose(o);
            }
            break;
        }
        case 5: /* gone */
            if (!is_root) H5Ldelete(f, target, H5P_DEFAULT);
            break;
        case 6: /* a group where a dataset was, or the reverse */
            if (!is_root) {
                H5Ldelete(f, target, H5P_DEFAULT);
                hid_t g = H5Gcreate2(f, target, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
                if (g >= 0) H5Gclose(g);
            }
            break;
        case 7: /* a virtual dataset over a source file */
            fz_make_virtual(in, f, path, is_root ? (fz_pick(in, 2) ? "x" : "y") : target);
            break;
        case 8: { /* one corrupted byte of stored data (checksums, value checks) */
            hid_t d = is_root ? -1 : H5Dopen2(f, target, H5P_DEFAULT);
            if (d >= 0) {
                long long off, size;
                fz_data_offset(d, &off, &size);
                if (off >= 0) {
                    flip_at = off + (long long)fz_pick(in, (size_t)size);
                    flip_mask = (uint8_t)(1u << fz_pick(in, 8));
                }
                H5Dclose(d);
            }
            break;
        }
        default: { /* an attribute removed */
            hid_t o = H5Oopen(f, target, H5P_DEFAULT);
            if (o >= 0) {
                const char *name = attrs[fz_pick(in, attr_count)];
                if (H5Aexists(o, name) > 0) H5Adelete(o, name);
                H5Oclose(o);
            }
            break;
        }
        }
    }
    H5Fclose(f);
    if (flip_at >= 0) fz_flip_byte(path, flip_at, flip_mask);
    return count;
}
