/* ffn — reading and writing ffn_data_meta at an HDF5 location (internal to
 * libffn: the dataset writer, the checkpoint and ffn-data use it). */
#ifndef FFN_DATA_META_H
#define FFN_DATA_META_H

#include <hdf5.h>
#include "ffn/data.h"

/* Reads class names (attribute "class_names", else a string dataset of that
 * name) and /feature_mean, /feature_std at loc. what names the place in
 * messages ("data.h5", "checkpoint c.h5: /data"). */
ffn_status ffn_meta_read_loc(hid_t loc, const char *what, ffn_data_meta *out);
/* Writes m at loc: the statistics as float64 datasets; the names as
 * ffn_h5_write_strings does (names_as_dataset 1: always a dataset). dcpl: the
 * datasets' creation properties (H5P_DEFAULT for contiguous). */
ffn_status ffn_meta_write_loc(hid_t loc, const char *what, const ffn_data_meta *m, int names_as_dataset, hid_t dcpl);

/* n UTF-8 strings named name at loc (replacing one of that name): an attribute
 * while they fit one in the files' format (HDF5's earliest, the most widely
 * readable: an attribute holds 64 KiB, 16 bytes a string), else a 1-D string
 * dataset (always when as_dataset). Readers take either form. */
enum { FFN_STRINGS_IN_ATTRIBUTE = 4000 };
ffn_status ffn_h5_write_strings(hid_t loc, const char *what, const char *name, const char *const *values, size_t n,
                                int as_dataset);

#endif
