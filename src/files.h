/* ffn — which file a path names. Outputs are checked against inputs by
 * identity (device and inode), never by spelling: "data/../train.h5", a
 * symlink or a hard link to the training set is still the training set. */
#ifndef FFN_FILES_H
#define FFN_FILES_H

/* 1 when a and b name the same file: both exist and share device and inode,
 * or (when one does not exist yet) both resolve to the same absolute path
 * (real path of the directory, then the last component). 0 otherwise, and
 * for NULL. */
int ffn_same_file(const char *a, const char *b);

#endif
