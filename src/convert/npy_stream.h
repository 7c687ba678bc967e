/* .npy arrays read as streams: the header, then the data in blocks of rows.
 *
 * Shared by ffn-data npy (plain files), npz (zip members read through
 * libzip) and info. A stream is anything with a read function, so a
 * deflated zip member converts in the same bounded memory as a file. */
#ifndef FFN_NPY_STREAM_H
#define FFN_NPY_STREAM_H

#include <stddef.h>
#include <stdint.h>

/* Bytes read into buf (up to n; fewer only at the end), 0 at the end, -1 on an
 * error after printing nothing (the caller names it through error()). */
typedef long long (*npy_read_fn)(void *ctx, void *buf, size_t n);

typedef struct {
    const char *name;     /* for messages: "x.npy", "data.npz: member 'x'" */
    void *ctx;
    npy_read_fn read;
    const char *(*error)(void *ctx); /* why the last read failed; NULL for errno */
    /* Filled by npy_header_read: */
    char descr[8];        /* "<f4", "|u1": one of u1, i4, i8, f4, f8, little-endian */
    int ndim;             /* 1 or 2 */
    size_t shape[2];      /* shape[1] is 1 for a 1-D array */
    size_t item;          /* bytes per element */
    int64_t data_bytes;   /* the bytes after the header when known (file or member size), else -1 */
    int check_end;        /* read to the end after the data (a zip member's CRC is checked there) */
} npy_stream;

/* Reads and checks the header (version 1.0-3.0, C order, a supported
 * little-endian dtype, 1 or 2 dimensions, not empty). 0, or EXIT_DATA after
 * one message naming s->name. */
int npy_header_read(npy_stream *s, const char *cmd);
/* "[N, D] <f4" for messages and info. */
const char *npy_describe(const npy_stream *s, char *buf, size_t cap);
/* Reads exactly n bytes of data; EXIT_DATA with a message naming s->name
 * when the stream ends early or fails (what names the missing part). */
int npy_read_exact(npy_stream *s, void *buf, size_t n, const char *cmd);
/* Element i of raw data of s's dtype, as a double. */
double npy_element(const npy_stream *s, const void *data, size_t i);

/* Reopens a stream at its start (the labels are read twice: once for the
 * number of classes, which the writer needs first). */
typedef int (*npy_reopen_fn)(npy_stream *s, void *arg, const char *cmd);

/* Converts x [N, D] (u1 kept as uint8 with scale 1/255, or f4/f8) and y ([N]
 * integer labels or [N, K] f4/f8 targets) to the dataset at out, in blocks
 * of rows. Both headers are read already; reopen_y restarts y after its
 * first pass. x_flag/y_flag name the inputs in messages about their roles.
 * 0, or an exit code after one message; out is then untouched. */
int npy_convert(npy_stream *x, npy_stream *y, npy_reopen_fn reopen_y, void *reopen_arg, const char *out,
                const char *source, const char *cmd);

/* A .npy file as a stream, its header read (npy.c); close it with npy_file_close. */
int npy_file_open(npy_stream *s, const char *path, const char *cmd);
void npy_file_close(npy_stream *s);

#endif
