/* ffn — writing an HDF5 dataset in the layout of ffn/data.h.
 *
 * The writer creates PATH.tmp, rows are written in any order, close flushes
 * and renames onto PATH (an existing PATH is only replaced by a complete
 * file). Every row is checked as it is given: finite values, labels in range. */
#ifndef FFN_DATA_WRITER_H
#define FFN_DATA_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/status.h"

typedef struct ffn_dataset_writer ffn_dataset_writer;
typedef struct {
    size_t rows, features;
    int x_uint8;        /* store x as uint8 (values given as uint8) */
    float x_scale;      /* for uint8 */
    int has_labels;     /* y int32 [N]; else float32 [N, target_cols] */
    size_t target_cols;
    size_t num_classes; /* written as the "num_classes" attribute when > 0 */
} ffn_dataset_layout;

ffn_status ffn_dataset_writer_create(ffn_dataset_writer **out, const char *path,
                                     const ffn_dataset_layout *layout);
/* x is float* [n, features] or uint8_t* per layout.x_uint8; y is int32_t* [n]
 * or float* [n, target_cols]. */
ffn_status ffn_dataset_writer_rows(ffn_dataset_writer *w, uint64_t start, size_t n,
                                   const void *x, const void *y);
ffn_status ffn_dataset_writer_attr(ffn_dataset_writer *w, const char *name, const char *value);
/* n UTF-8 strings (e.g. class_names in label order): a file attribute up to
 * 4000 strings (an attribute's 64 KiB in HDF5's earliest format, which the
 * writer uses), a 1-D string dataset of the same name beyond. */
ffn_status ffn_dataset_writer_attr_strings(ffn_dataset_writer *w, const char *name, const char *const *values,
                                           size_t n);
/* Writes m's class names (the class_names attribute) and statistics
 * (/feature_mean, /feature_std) when present. */
struct ffn_data_meta;
ffn_status ffn_dataset_writer_meta(ffn_dataset_writer *w, const struct ffn_data_meta *meta);
/* Finishes and renames; on error removes the temporary. Always frees w. */
ffn_status ffn_dataset_writer_close(ffn_dataset_writer *w);
/* Frees w and removes the temporary without touching PATH. */
void ffn_dataset_writer_abort(ffn_dataset_writer *w);

#endif
