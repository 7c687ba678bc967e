/* ffn — rows read straight from an HDF5 file (internal to data.c).
 *
 * A plain dataset (contiguous, or chunked by whole rows with no filter, stored
 * in the native type, in a file without a user block) keeps each row as
 * row_bytes contiguous bytes at a fixed file offset. Once the chunk addresses
 * are known, a batch of scattered rows is one pread() per run of consecutive
 * rows: no HDF5 selection, no per-chunk index lookups, microseconds a row
 * where HDF5's own row selection took tens. Anything else (virtual, filtered,
 * converted) returns NULL from the build and stays on HDF5's reads. */
#ifndef FFN_DATA_ROWS_H
#define FFN_DATA_ROWS_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ffn_row_map ffn_row_map;

/* The map of dataset d of file `path` ([rows] or [rows, row_elems]), read
 * as mem_type; NULL when the dataset is not plain (see above), or when
 * FFN_DATA_DIRECT=0 is set in the environment. */
ffn_row_map *ffn_row_map_build(const char *path, hid_t file, hid_t d, hid_t mem_type, size_t rows,
                               size_t row_bytes);
/* Reads rows idx[0..n) (strictly increasing) or, with idx NULL, [start,
 * start + n) into dst, row after row. 0, or an errno (EIO for a short read). */
int ffn_row_map_read(const ffn_row_map *m, const uint64_t *idx, uint64_t start, size_t n, void *dst);
void ffn_row_map_free(ffn_row_map *m);

#endif
