/* LIBSVM / svmlight text read in one checking pass (libsvm.c): rows,
 * features, labels. ffn-data libsvm converts after it; info prints it. */
#ifndef FFN_LIBSVM_SCAN_H
#define FFN_LIBSVM_SCAN_H

#include <stddef.h>
#include <stdint.h>

typedef enum { LIBSVM_ONE_BASED, LIBSVM_ZERO_BASED, LIBSVM_AUTO /* zero-based when an index 0 is seen */ } libsvm_base;
typedef struct libsvm_scan libsvm_scan;

/* Reads path once; 0, or an exit code after one message naming the file and
 * line. *out is set either way: free it with libsvm_scan_free. features: a
 * bound on the indices (0: none); regression: 1 labels are float targets, 0
 * integer classes, -1 classes unless a label is not an integer (info). */
int libsvm_scan_run(libsvm_scan **out, const char *path, libsvm_base base, size_t features, int regression,
                    const char *cmd);
/* The labels are float targets. */
int libsvm_scan_targets(const libsvm_scan *s);
size_t libsvm_scan_rows(const libsvm_scan *s);
size_t libsvm_scan_features(const libsvm_scan *s);
uint64_t libsvm_scan_nonzeros(const libsvm_scan *s);
int libsvm_scan_zero_based(const libsvm_scan *s);
int libsvm_scan_gzipped(const libsvm_scan *s);
/* Labels other than 0..K-1 (e.g. -1/+1) become classes 0..K-1 in value order. */
int libsvm_scan_mapped(const libsvm_scan *s);
/* The number of classes (0 for regression). */
size_t libsvm_scan_classes(const libsvm_scan *s);
/* The distinct labels in value order, as spelled first in the file, and
 * their row counts: up to cap of them; returns how many were written. */
size_t libsvm_scan_labels(const libsvm_scan *s, const char **spellings, uint64_t *counts, size_t cap);
/* More distinct labels than could be counted (4000). */
int libsvm_scan_too_many(const libsvm_scan *s);
void libsvm_scan_free(libsvm_scan *s);

#endif
