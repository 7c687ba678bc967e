/* ffn — magnitude pruning: O(n) selection, masks, the cubic schedule. */
#include "ffn/prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/mem.h"

struct ffn_pruner {
    size_t param_count, segment_count, prunable;
    ffn_prune_segment *segments; /* [segment_count] */
    uint8_t *mask;  /* [param_count] */
    float *scratch; /* [prunable]: keys for the selection */
};

static const char *const scope_names[FFN_PRUNE_SCOPE_COUNT] = {"layer", "global"};

int ffn_prune_scope_from_name(const char *name)
{
    if (!name) return -1;
    for (int k = 0; k < FFN_PRUNE_SCOPE_COUNT; k++)
        if (strcmp(name, scope_names[k]) == 0) return k;
    return -1;
}

const char *ffn_prune_scope_name(ffn_prune_scope scope)
{
    return (unsigned)scope < FFN_PRUNE_SCOPE_COUNT ? scope_names[scope] : "unknown";
}

/* ---- selection ------------------------------------------------------------ */

static inline void swap_f(float *a, size_t i, size_t j)
{
    float t = a[i];
    a[i] = a[j];
    a[j] = t;
}

static void insertion_sort(float *a, size_t lo, size_t hi)
{
    for (size_t i = lo + 1; i < hi; i++) {
        float v = a[i];
        size_t j = i;
        for (; j > lo && a[j - 1] > v; j--) a[j] = a[j - 1];
        a[j] = v;
    }
}

static float select_range(float *a, size_t lo, size_t hi, size_t k);

/* Median of the medians of groups of five: a pivot with at least 30% of
 * [lo, hi) on either side, whatever the input. The medians are moved to the
 * front of the range; the caller partitions by value afterwards. */
static float median_of_medians(float *a, size_t lo, size_t hi)
{
    size_t groups = 0;
    for (size_t i = lo; i < hi; i += 5) {
        size_t e = hi - i < 5 ? hi : i + 5;
        insertion_sort(a, i, e);
        swap_f(a, lo + groups, i + (e - i) / 2);
        groups++;
    }
    return select_range(a, lo, lo + groups, lo + groups / 2);
}

static float median3(float x, float y, float z)
{
    if (x > y) {
        float t = x;
        x = y;
        y = t;
    }
    if (y > z) y = z;
    return x > y ? x : y;
}

/* The k-th smallest of a[lo, hi) (k absolute), reordering that range. */
static float select_range(float *a, size_t lo, size_t hi, size_t k)
{
    int budget = 8;
    for (size_t n = hi - lo; n > 1; n >>= 1) budget += 2;
    while (hi - lo > 16) {
        const size_t n = hi - lo;
        float pivot = budget-- > 0 ? median3(a[lo], a[lo + n / 2], a[hi - 1]) : median_of_medians(a, lo, hi);
        /* Three-way partition: [lo, lt) < pivot, [lt, gt) == pivot, [gt, hi) > pivot,
         * so runs of equal keys (already-pruned weights) cost one pass. */
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (a[i] < pivot) swap_f(a, lt++, i++);
            else if (a[i] > pivot) swap_f(a, i, --gt);
            else i++;
        }
        if (k < lt) hi = lt;
        else if (k >= gt) lo = gt;
        else return pivot;
    }
    insertion_sort(a, lo, hi);
    return a[k];
}

float ffn_select_kth(float *v, size_t n, size_t k)
{
    if (n == 0) return NAN;
    if (k >= n) k = n - 1;
    return select_range(v, 0, n, k);
}

/* ---- the pruner ------------------------------------------------------------- */

ffn_status ffn_pruner_create(ffn_pruner **out, const ffn_prune_segment *segments, size_t count,
                             size_t param_count)
{
    *out = NULL;
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        const ffn_prune_segment *s = &segments[i];
        if (s->offset > param_count || s->count > param_count - s->offset)
            return ffn_fail(FFN_ERR_ARG, "pruning: segment %zu [%zu, +%zu) lies outside %zu parameters", i,
                            s->offset, s->count, param_count);
        total += s->count;
    }
    ffn_pruner *p = calloc(1, sizeof *p);
    if (!p) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    p->param_count = param_count;
    p->segment_count = count;
    p->prunable = total;
    p->segments = calloc(count ? count : 1, sizeof *p->segments);
    p->mask = ffn_alloc(param_count ? param_count : 1, 1);
    p->scratch = ffn_alloc_floats(total ? total : 1);
    if (!p->segments || !p->mask || !p->scratch) {
        ffn_pruner_free(p);
        return ffn_fail(FFN_ERR_NOMEM, "out of memory for pruning masks");
    }
    if (count) memcpy(p->segments, segments, count * sizeof *segments);
    memset(p->mask, 1, param_count);
    *out = p;
    return FFN_OK;
}

void ffn_pruner_free(ffn_pruner *p)
{
    if (!p) return;
    free(p->segments);
    ffn_free(p->mask);
    ffn_free(p->scratch);
    free(p);
}

uint8_t *ffn_pruner_mask(ffn_pruner *p) { return p->mask; }
size_t ffn_pruner_segment_count(const ffn_pruner *p) { return p->segment_count; }
const ffn_prune_segment *ffn_pruner_segment(const ffn_pruner *p, size_t i) { return &p->segments[i]; }
size_t ffn_pruner_prunable(const ffn_pruner *p) { return p->prunable; }

size_t ffn_pruner_pruned(const ffn_pruner *p, size_t segment)
{
    const ffn_prune_segment *s = &p->segments[segment];
    size_t n = 0;
    for (size_t i = 0; i < s->count; i++) n += p->mask[s->offset + i] == 0;
    return n;
}

size_t ffn_pruner_pruned_total(const ffn_pruner *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->segment_count; i++) n += ffn_pruner_pruned(p, i);
    return n;
}

/* The selection key of a weight: already pruned ones first (-1), then |w|;
 * NaN last, so that it can never pass for small. */
static inline float key_of(float w, uint8_t kept)
{
    if (!kept) return -1.0f;
    float a = fabsf(w);
    return a == a ? a : INFINITY;
}

/* Prunes exactly k of the entries of segments [first, last) together. */
static void update_group(ffn_pruner *p, const float *params, size_t first, size_t last, double sparsity)
{
    size_t n = 0, already = 0;
    for (size_t s = first; s < last; s++) {
        const ffn_prune_segment *sg = &p->segments[s];
        const float *w = params + sg->offset;
        const uint8_t *m = p->mask + sg->offset;
        for (size_t i = 0; i < sg->count; i++) {
            p->scratch[n++] = key_of(w[i], m[i]);
            already += m[i] == 0;
        }
    }
    if (n == 0) return;
    double want = sparsity * (double)n;
    size_t k = want <= 0 ? 0 : want >= (double)n ? n : (size_t)llround(want);
    if (k <= already) return; /* sparsity never decreases */
    const float threshold = ffn_select_kth(p->scratch, n, k - 1);
    size_t below = 0;
    for (size_t s = first; s < last; s++) {
        const ffn_prune_segment *sg = &p->segments[s];
        const float *w = params + sg->offset;
        const uint8_t *m = p->mask + sg->offset;
        for (size_t i = 0; i < sg->count; i++) below += key_of(w[i], m[i]) < threshold;
    }
    size_t ties = k - below; /* entries equal to the threshold still to prune, by position */
    for (size_t s = first; s < last; s++) {
        const ffn_prune_segment *sg = &p->segments[s];
        const float *w = params + sg->offset;
        uint8_t *m = p->mask + sg->offset;
        for (size_t i = 0; i < sg->count; i++) {
            float key = key_of(w[i], m[i]);
            if (key < threshold) {
                m[i] = 0;
            } else if (key == threshold && ties) {
                m[i] = 0;
                ties--;
            }
        }
    }
}

void ffn_pruner_update(ffn_pruner *p, const float *params, double sparsity, ffn_prune_scope scope)
{
    if (!(sparsity > 0)) return;
    if (sparsity > 1) sparsity = 1;
    if (scope == FFN_PRUNE_GLOBAL) {
        update_group(p, params, 0, p->segment_count, sparsity);
    } else {
        for (size_t s = 0; s < p->segment_count; s++) update_group(p, params, s, s + 1, sparsity);
    }
}

void ffn_pruner_apply_range(const ffn_pruner *p, float *base, size_t lo, size_t hi)
{
    for (size_t s = 0; s < p->segment_count; s++) {
        const ffn_prune_segment *sg = &p->segments[s];
        size_t a = sg->offset > lo ? sg->offset : lo, e = sg->offset + sg->count < hi ? sg->offset + sg->count : hi;
        if (a >= e) continue;
        float *restrict w = base + (a - lo);
        const uint8_t *restrict m = p->mask + a;
        for (size_t i = 0; i < e - a; i++) w[i] = m[i] ? w[i] : 0.0f;
    }
}

void ffn_pruner_apply(const ffn_pruner *p, float *params)
{
    ffn_pruner_apply_range(p, params, 0, p->param_count);
}

/* ---- the schedule ------------------------------------------------------------ */

double ffn_prune_schedule(double final, uint64_t start, uint64_t end, uint64_t t)
{
    if (t < start) return 0.0;
    if (end <= start || t >= end) return final;
    double r = 1.0 - (double)(t - start) / (double)(end - start);
    return final * (1.0 - r * r * r);
}

int ffn_prune_due(uint64_t start, uint64_t end, uint64_t every, uint64_t t)
{
    if (t < start) return 0;
    if (end <= start) return t == start;
    if (t > end) return 0;
    if (t == end) return 1;
    if (every == 0) every = 1;
    return (t - start) % every == 0;
}
