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
/* Writes m at loc: the statistics as float64 datasets; the names as an
 * attribute (names_as_dataset 0; the file needs HDF5 1.8's format for more
 * than 64 KiB of names) or as a string dataset (1). dcpl: the datasets'
 * creation properties (H5P_DEFAULT for contiguous). */
ffn_status ffn_meta_write_loc(hid_t loc, const char *what, const ffn_data_meta *m, int names_as_dataset, hid_t dcpl);

#endif
