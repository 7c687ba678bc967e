/* ffn — HDF5 datasets: the layout, and reading rows (writing: ffn/data_writer.h).
 *
 * Layout (readable from h5py without ffn):
 *   /x  [N, D]  float32, or uint8 with float attribute "scale" (x * scale on read;
 *               an optional "offset" attribute is added after scaling)
 *   /y  [N]     int32 class labels in [0, num_classes)   or
 *       [N, K]  float32 targets
 * Root attributes: "num_classes" (int, for labels), "source", "created_by",
 * free-form provenance strings. Both datasets chunked by rows.
 * Metadata that travels with the data (ffn_data_meta below), all optional:
 *   "class_names" root attribute, K UTF-8 strings in label order; beyond
 *               4000 names (an attribute's 64 KiB) a string dataset
 *               /class_names instead. Readers take either.
 *   /feature_mean, /feature_std  float64 [D]: x was standardized,
 *               x = (raw - mean) / std, with these training statistics
 *               (ffn-data --standardize; a constant column has std 1)
 * A dataset may be a virtual dataset joining shard files; HDF5 resolves it. */
#ifndef FFN_DATA_H
#define FFN_DATA_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/status.h"

typedef struct ffn_dataset ffn_dataset;

typedef struct {
    size_t rows;        /* N */
    size_t features;    /* D */
    int has_labels;     /* /y is int labels [N] (else float targets [N, K]) */
    size_t target_cols; /* K for float targets; 1 for labels */
    size_t num_classes; /* labels: from the attribute, else max label + 1 */
    int x_is_uint8;
    float x_scale, x_offset;
    /* Float targets: the smallest and largest finite value of /y and where
     * they are (row, column), scanned at open; all 0 for labels, or when no
     * target is finite (the reads report non-finite targets). */
    float y_min, y_max;
    size_t y_min_row, y_min_col, y_max_row, y_max_col;
} ffn_dataset_info;

/* Opens and validates the layout: shapes, dtypes, matching row counts, at least
 * one row, labels in range; records the range of float targets. Every failure
 * names the file and the field. */
ffn_status ffn_dataset_open(ffn_dataset **out, const char *path);
/* Opens /x alone, with every check ffn_dataset_open makes on it, for
 * predictions: /y may be absent and is neither checked nor read when there
 * (has_labels 0, target_cols 0, num_classes 0; reads fill x only). */
ffn_status ffn_dataset_open_features(ffn_dataset **out, const char *path);
void ffn_dataset_close(ffn_dataset *ds);
const ffn_dataset_info *ffn_dataset_get_info(const ffn_dataset *ds);
const char *ffn_dataset_path(const ffn_dataset *ds);
/* The other files a virtual /x or /y reads from, as found at open (absolute,
 * or relative to the working directory); none for a plain dataset. A tool
 * that writes files keeps them off these too: they are part of its input. */
size_t ffn_dataset_source_count(const ffn_dataset *ds);
const char *ffn_dataset_source(const ffn_dataset *ds, size_t i);

/* Reads rows idx[0..n) (strictly increasing) into x [n, D] and either labels [n]
 * or values [n, K] (the other may be NULL). Non-finite features are an error
 * naming the row. Safe to call from one thread while another computes. */
ffn_status ffn_dataset_read_rows(ffn_dataset *ds, const uint64_t *idx, size_t n,
                                 float *x, int32_t *labels, float *values);
/* Reads the contiguous rows [start, start + n). */
ffn_status ffn_dataset_read_range(ffn_dataset *ds, uint64_t start, size_t n,
                                  float *x, int32_t *labels, float *values);

/* Holds all of /x (as stored: uint8 stays uint8) and /y in memory when together
 * they take at most max_bytes, reading the file once in large sequential
 * blocks; later reads are served from memory with the same values, checks and
 * messages. A scattered batch costs about 50 us a row through HDF5's
 * selections and about 2 us a row with direct reads (ffn_dataset_direct_reads);
 * from memory it is a copy.
 * *cached (may be NULL) tells whether the data is held. Too large, or memory
 * refused: FFN_OK, not cached. A failed read: the error, not cached. */
ffn_status ffn_dataset_cache(ffn_dataset *ds, size_t max_bytes, int *cached);
/* A hint: starts moving rows idx[0..n) of a cached dataset towards the CPU
 * caches, so that the read of the next batch finds them there. No-op when the
 * dataset is not cached. */
void ffn_dataset_prefetch_rows(const ffn_dataset *ds, const uint64_t *idx, size_t n);

/* 1 when /x and /y rows are read with plain pread()s at their file offsets
 * (contiguous or row-chunked storage, no filter, native type: see
 * src/data_rows.h), 0 when through HDF5's selections (virtual, compressed or
 * converted data, or FFN_DATA_DIRECT=0 in the environment). The values are
 * the same either way. */
int ffn_dataset_direct_reads(const ffn_dataset *ds);

/* The metadata a dataset carries and a checkpoint records: class names in
 * label order, and the standardization statistics of its features. */
typedef struct ffn_data_meta {
    size_t class_count;  /* 0: no names */
    char **class_names;  /* [class_count] */
    size_t features;     /* 0: not standardized; else D of mean and std */
    double *mean, *std;  /* [features]; every std finite and > 0 */
} ffn_data_meta;

/* Reads path's metadata (none present: all zero). A malformed field (a
 * shape other than [D], a non-finite mean, a std <= 0, names that are not
 * strings) is an error naming the file and the field. */
ffn_status ffn_data_meta_read(const char *path, ffn_data_meta *out);
void ffn_data_meta_free(ffn_data_meta *m);
/* Deep copy (dst is overwritten). */
ffn_status ffn_data_meta_copy(ffn_data_meta *dst, const ffn_data_meta *src);
/* 1 when both carry no statistics, or the same statistics bit for bit. */
int ffn_data_meta_same_stats(const ffn_data_meta *a, const ffn_data_meta *b);
/* 1 when the class names agree: the same list, or either side has none
 * (nothing to compare). */
int ffn_data_meta_same_names(const ffn_data_meta *a, const ffn_data_meta *b);
/* x[i, j] = (float)(((double)x[i, j] - mean[j]) / std[j]) for n rows of d
 * features: the one formula the converters and the readers use, so that
 * standardizing in a file or on read gives the same floats. */
void ffn_standardize_rows(float *x, size_t n, size_t d, const double *mean, const double *std);
/* Every later read of ds returns standardized features (copies mean and
 * std, [features]); NULL mean: raw again. */
ffn_status ffn_dataset_standardize(ffn_dataset *ds, const double *mean, const double *std);

/* The writer of this layout, for the callers that make datasets. */
#include "ffn/data_writer.h"

#endif
