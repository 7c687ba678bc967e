/* ffn — internal: the arrays of a weights file, between the container
 * formats (weights_npz.c, weights_safetensors.c) and the model (weights.c). */
#ifndef FFN_WEIGHTS_FORMAT_H
#define FFN_WEIGHTS_FORMAT_H

#include <stddef.h>
#include <stdio.h>
#include "ffn/status.h"

#define FFN_WEIGHTS_MAX_DIMS 8
#define FFN_WEIGHTS_MAX_FILE ((size_t)1 << 36) /* 64 GiB: anything larger is not a model we hold */

/* One named float32 array. Read: bytes point into the file's contents
 * (unaligned, little-endian) or into owned; written: data is the model's. */
typedef struct {
    char *name;
    int ndim;
    size_t shape[FFN_WEIGHTS_MAX_DIMS];
    size_t count;               /* product of shape */
    const unsigned char *bytes; /* read: count * 4 bytes */
    const float *data;          /* write */
    void *owned;                /* read: an inflated entry, freed with the array */
} ffn_weights_array;

typedef struct {
    ffn_weights_array *arrays;
    size_t count;
    char *spec_json;            /* the ffn spec, or NULL when the file has none */
    unsigned char *contents;    /* the whole file, which arrays point into */
    size_t size;
} ffn_weights_file;

void ffn_weights_file_free(ffn_weights_file *w);
/* Appends an array named name (copied); returns it, or NULL when out of memory. */
ffn_weights_array *ffn_weights_file_add(ffn_weights_file *w, const char *name);
/* Reads path whole into w->contents (at most FFN_WEIGHTS_MAX_FILE bytes). */
ffn_status ffn_weights_read_contents(ffn_weights_file *w, const char *path);

ffn_status ffn_npz_read(const char *path, ffn_weights_file *out);
ffn_status ffn_npz_write(FILE *f, const char *path, const ffn_weights_array *a, size_t n, const char *spec_json);
ffn_status ffn_safetensors_read(const char *path, ffn_weights_file *out);
ffn_status ffn_safetensors_write(FILE *f, const char *path, const ffn_weights_array *a, size_t n,
                                 const char *spec_json);

#endif
