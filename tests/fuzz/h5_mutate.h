/* Fuzz targets: HDF5 files built from the fuzzer's choices.
 *
 * The dataset and checkpoint targets start from a valid file (written by ffn
 * itself) and apply a few mutations decoded from the input, each through the
 * HDF5 API, so the container stays well formed and what is exercised is ffn's
 * validation of shapes, dtypes, ranks, attributes, values, virtual dataset
 * sources and checksums (HDF5's own parsing of the container is trusted; see
 * the README's trust model). */
#ifndef FFN_FUZZ_H5_MUTATE_H
#define FFN_FUZZ_H5_MUTATE_H

#include <hdf5.h>

#include "fuzz_input.h"

/* A scratch directory for this process (created once, under $FFN_FUZZ_TMPDIR,
 * else /dev/shm when it exists, else /tmp; removed at exit). */
const char *fz_tmpdir(void);
/* Removes every file in it (what one input made). */
void fz_clean_tmpdir(void);
/* The set-up every HDF5 target shares: HDF5's error printing off, its free
 * lists unbounded (every file open allocates about a megabyte of cache
 * structures, and fresh pages cost more than the work), and path set to
 * file_name in the scratch directory. Returns whether FFN_FUZZ_VERBOSE is set
 * (print each outcome, for looking at a corpus). */
int fz_hdf5_init(char *path, size_t cap, const char *file_name);

/* Builds a dataset named name under loc (replacing whatever is there) with a
 * type, dataspace, layout, filters and contents decoded from in. */
void fz_replace_dataset(fz_input *in, hid_t loc, const char *name);
/* Sets attribute name on obj (replacing any) with a decoded type, shape and value.
 * text, when not NULL, is the value used for string types. */
void fz_set_attribute(fz_input *in, hid_t obj, const char *name, const char *text);
/* Makes name under file (replacing it) a virtual dataset whose source is a
 * dataset in another file made here (or missing, or too small, or the same file). */
void fz_make_virtual(fz_input *in, hid_t file, const char *file_path, const char *name);

/* Names (paths from the root, without the leading '/') of every object in
 * the file, in visit order; returns the count (at most cap). */
size_t fz_list_objects(hid_t file, char names[][64], size_t cap);
/* Records where a byte of the dataset's stored data lies in the file
 * (contiguous or first chunk); *offset = -1 when there is none. */
void fz_data_offset(hid_t dset, long long *offset, long long *size);
/* Flips bits of the byte at offset of the file at path. */
void fz_flip_byte(const char *path, long long offset, uint8_t mask);

/* Applies count decoded mutations to the file at path: replace or delete a
 * dataset or group, set or delete attributes, make a virtual dataset, corrupt
 * a stored byte. attrs lists attribute names worth trying. Returns the number
 * of mutations decoded (0: the file is untouched), -1 when it cannot be opened. */
int fz_mutate_file(fz_input *in, const char *path, const char *const *attrs, size_t attr_count,
                   int max_mutations);

#endif
