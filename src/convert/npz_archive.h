/* .npz archives (np.savez: stored; np.savez_compressed: deflated) read
 * through libzip, each member NAME.npy an array NAME read as an npy_stream. */
#ifndef FFN_NPZ_ARCHIVE_H
#define FFN_NPZ_ARCHIVE_H

#include <stddef.h>

#include "npy_stream.h"

typedef struct npz_archive npz_archive;

/* Opens path (0, or EXIT_DATA after one message: not a zip, truncated...). */
int npz_open(npz_archive **out, const char *path, const char *cmd);
void npz_close(npz_archive *z);
size_t npz_count(const npz_archive *z);
/* The array name of member i (its name without ".npy"), NULL for a member
 * that is not a .npy file. */
const char *npz_array_name(const npz_archive *z, size_t i);
/* "stored" or "deflated". */
const char *npz_method(const npz_archive *z, size_t i);
/* The member of array name, or (size_t)-1. */
size_t npz_find(const npz_archive *z, const char *name);
/* "a, b, c": the array names, for messages. */
const char *npz_list(const npz_archive *z, char *buf, size_t cap);
/* Opens member i as s and reads its header; close with npz_member_close. */
int npz_member_open(npz_archive *z, size_t i, npy_stream *s, const char *cmd);
void npz_member_close(npy_stream *s);

#endif
