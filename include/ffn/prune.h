/* ffn — magnitude pruning: masks that zero the smallest weights, to a target
 * sparsity per segment (a layer's weight matrix) or over all segments at once,
 * optionally reached gradually on the cubic schedule of Zhu and Gupta (2017).
 *
 * The mask covers the flat parameter buffer (one byte a parameter: 1 kept,
 * 0 pruned); entries outside the segments (biases) are always 1. An update
 * never revives a pruned weight: it prunes the weights already pruned first,
 * then the smallest |w| among the rest, ties broken by position, so exactly
 * round(sparsity * n) weights end up pruned (or more, if more were already).
 * Selection is O(n) (introselect: three-way quickselect, median-of-medians
 * after too many bad pivots), never a sort. Nothing is allocated after
 * create; every rank computes the same masks from the same parameters. */
#ifndef FFN_PRUNE_H
#define FFN_PRUNE_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/names.h"
#include "ffn/status.h"

typedef enum { FFN_PRUNE_LAYER = 0, FFN_PRUNE_GLOBAL, FFN_PRUNE_SCOPE_COUNT } ffn_prune_scope;

int ffn_prune_scope_from_name(const char *name); /* "layer" | "global"; -1 otherwise */
const char *ffn_prune_scope_name(ffn_prune_scope scope);
extern const ffn_names ffn_prune_scope_names;

typedef struct {
    size_t offset, count; /* a range of the parameter buffer that may be pruned */
} ffn_prune_segment;

typedef struct ffn_pruner ffn_pruner;

/* Segments must not overlap and must lie within [0, param_count). The mask
 * starts all ones. */
ffn_status ffn_pruner_create(ffn_pruner **out, const ffn_prune_segment *segments, size_t count,
                             size_t param_count);
void ffn_pruner_free(ffn_pruner *p);

/* The mask [param_count]: read it to save, write it to restore. */
uint8_t *ffn_pruner_mask(ffn_pruner *p);
size_t ffn_pruner_segment_count(const ffn_pruner *p);
const ffn_prune_segment *ffn_pruner_segment(const ffn_pruner *p, size_t i);
/* Pruned entries of segment i, and of all segments. */
size_t ffn_pruner_pruned(const ffn_pruner *p, size_t segment);
size_t ffn_pruner_pruned_total(const ffn_pruner *p);
size_t ffn_pruner_prunable(const ffn_pruner *p); /* total entries of all segments */

/* Recomputes the mask from |params| to reach sparsity in [0, 1): per
 * segment (LAYER) or over the segments together (GLOBAL). */
void ffn_pruner_update(ffn_pruner *p, const float *params, double sparsity, ffn_prune_scope scope);
/* params[i] = 0 wherever the mask is 0 (in the segments). */
void ffn_pruner_apply(const ffn_pruner *p, float *params);
/* The same over the range [lo, hi) of the parameter buffer only, for a buffer
 * base holding that range (base[0] is entry lo): a ZeRO slice of the
 * parameters or of the gradients. */
void ffn_pruner_apply_range(const ffn_pruner *p, float *base, size_t lo, size_t hi);

/* The cubic schedule: the sparsity to hold after optimizer step t, rising
 * from 0 at t = start to final at t = end (and final after):
 *   s(t) = final * (1 - (1 - (t - start) / (end - start))^3)
 * With end <= start it is a single step to final at start. Before start: 0. */
double ffn_prune_schedule(double final, uint64_t start, uint64_t end, uint64_t t);
/* Whether the mask is recomputed after step t: every `every` steps from start
 * (every 0 means 1), and at end. */
int ffn_prune_due(uint64_t start, uint64_t end, uint64_t every, uint64_t t);

/* The k-th smallest (from 0) of v[0..n), k < n; v is reordered. O(n). */
float ffn_select_kth(float *v, size_t n, size_t k);

#endif
