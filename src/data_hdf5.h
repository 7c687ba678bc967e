/* ffn — the HDF5 and path helpers the dataset reader (data.c), writer
 * (data_writer.c) and the checkpoint (ckpt.c) share (internal to libffn). */
#ifndef FFN_DATA_HDF5_H
#define FFN_DATA_HDF5_H

#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* HDF5 prints its error stack by default; ffn reports its own messages. The
 * setting belongs to the calling thread's error stack in a threadsafe build,
 * so every entry point repeats it (it is cheap). */
static inline void quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* Closes *id with fn unless it is invalid, and marks it invalid. */
static inline void close_id(hid_t *id, herr_t (*fn)(hid_t))
{
    if (*id >= 0) fn(*id);
    *id = H5I_INVALID_HID;
}

/* A scalar attribute name on obj (replacing one of that name): file_type as
 * stored, *value in mem_type. Negative on failure. */
static inline herr_t h5_write_scalar_attr(hid_t obj, const char *name, hid_t file_type, hid_t mem_type,
                                          const void *value)
{
    hid_t s = H5Screate(H5S_SCALAR);
    if (s < 0) return -1;
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t a = H5Acreate2(obj, name, file_type, s, H5P_DEFAULT, H5P_DEFAULT);
    herr_t r = a >= 0 ? H5Awrite(a, mem_type, value) : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    return r;
}

static inline char *copy_string(const char *s)
{
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

/* The directory part of path ("." when there is none), into buf. */
static inline void dir_of(const char *path, char *buf, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(buf, cap, ".");
    } else if (slash == path) {
        snprintf(buf, cap, "/");
    } else {
        snprintf(buf, cap, "%.*s", (int)(slash - path), path);
    }
}

/* Selects the rows [start, start + n) of a rank-1 or rank-2 file dataspace
 * (a rank-1 dataspace reads only the first entry of each array). */
static inline herr_t select_range(hid_t fspace, int rank, hsize_t cols, uint64_t start, size_t n)
{
    (void)rank;
    hsize_t s[2] = { start, 0 }, c[2] = { 1, 1 }, b[2] = { n, cols };
    return H5Sselect_hyperslab(fspace, H5S_SELECT_SET, s, NULL, c, b);
}

#endif
