/* Tests for magnitude pruning: the O(n) selection against a sort, exact
 * sparsity per layer and globally, smallest magnitudes first, ties by
 * position, pruned weights never revived, apply, and the cubic schedule. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/prune.h"
#include "ffn/rng.h"
#include "check.h"

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Every k of several inputs (random, few distinct values, sorted, reversed,
 * organ pipe, constant) against the sorted copy. */
static void test_select(void)
{
    ffn_rng rng = ffn_rng_make(3, 0);
    const size_t sizes[] = {1, 2, 5, 17, 100, 1001, 20000};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        float *v = malloc(n * sizeof *v), *sorted = malloc(n * sizeof *v), *work = malloc(n * sizeof *v);
        for (int kind = 0; kind < 6; kind++) {
            for (size_t i = 0; i < n; i++) {
                switch (kind) {
                case 0: v[i] = ffn_rng_uniform(&rng); break;
                case 1: v[i] = (float)ffn_rng_below(&rng, 4); break;
                case 2: v[i] = (float)i; break;
                case 3: v[i] = (float)(n - i); break;
                case 4: v[i] = (float)(i < n / 2 ? i : n - i); break;
                default: v[i] = 0.5f;
                }
            }
            memcpy(sorted, v, n * sizeof *v);
            qsort(sorted, n, sizeof *v, cmp_float);
            size_t step = n > 100 ? n / 37 : 1;
            int bad = 0;
            for (size_t k = 0; k < n; k += step) {
                memcpy(work, v, n * sizeof *v);
                if (ffn_select_kth(work, n, k) != sorted[k]) bad++;
            }
            memcpy(work, v, n * sizeof *v);
            if (ffn_select_kth(work, n, n - 1) != sorted[n - 1]) bad++;
            CHECK_MSG(bad == 0, "n %zu input kind %d: %d wrong selections", n, kind, bad);
        }
        free(v);
        free(sorted);
        free(work);
    }
}

static size_t zeros(const uint8_t *m, size_t n)
{
    size_t z = 0;
    for (size_t i = 0; i < n; i++) z += m[i] == 0;
    return z;
}

/* Two "layers" of 100 and 300 weights with biases between them. */
static void test_layer_and_global(void)
{
    enum { P = 100 + 10 + 300 + 5 };
    ffn_prune_segment segs[2] = {{0, 100}, {110, 300}};
    float w[P];
    ffn_rng rng = ffn_rng_make(11, 2);
    ffn_rng_fill_uniform(&rng, w, P, -1.0f, 1.0f);
    for (size_t i = 110; i < 410; i++) w[i] *= 0.1f; /* layer 1 is smaller: global scope prunes it more */
    ffn_pruner *p;
    CHECK(ffn_pruner_create(&p, segs, 2, P) == FFN_OK);
    CHECK(ffn_pruner_prunable(p) == 400);
    ffn_pruner_update(p, w, 0.5, FFN_PRUNE_LAYER);
    const uint8_t *m = ffn_pruner_mask(p);
    CHECK(ffn_pruner_pruned(p, 0) == 50 && ffn_pruner_pruned(p, 1) == 150);
    CHECK(zeros(m + 100, 10) == 0 && zeros(m + 410, 5) == 0); /* biases untouched */
    /* Every pruned weight is no larger than every kept one, within a layer. */
    for (size_t s = 0; s < 2; s++) {
        float max_pruned = 0, min_kept = INFINITY;
        for (size_t i = segs[s].offset; i < segs[s].offset + segs[s].count; i++) {
            if (m[i]) min_kept = fminf(min_kept, fabsf(w[i]));
            else max_pruned = fmaxf(max_pruned, fabsf(w[i]));
        }
        CHECK(max_pruned <= min_kept);
    }
    /* Raising the sparsity keeps the pruned ones and adds the next smallest. */
    uint8_t before[P];
    memcpy(before, m, P);
    ffn_pruner_apply(p, w);
    for (size_t i = 0; i < P; i++) CHECK(before[i] || w[i] == 0.0f);
    ffn_pruner_update(p, w, 0.8, FFN_PRUNE_LAYER);
    CHECK(ffn_pruner_pruned(p, 0) == 80 && ffn_pruner_pruned(p, 1) == 240);
    int revived = 0;
    for (size_t i = 0; i < P; i++) revived += !before[i] && m[i];
    CHECK(revived == 0);
    /* Lowering it changes nothing (sparsity never decreases). */
    ffn_pruner_update(p, w, 0.3, FFN_PRUNE_LAYER);
    CHECK(ffn_pruner_pruned_total(p) == 320);
    ffn_pruner_free(p);

    /* Global: 60% of all 400, the small layer taking most of it. */
    ffn_rng_fill_uniform(&rng, w, P, -1.0f, 1.0f);
    for (size_t i = 110; i < 410; i++) w[i] *= 0.1f;
    CHECK(ffn_pruner_create(&p, segs, 2, P) == FFN_OK);
    ffn_pruner_update(p, w, 0.6, FFN_PRUNE_GLOBAL);
    m = ffn_pruner_mask(p);
    CHECK(ffn_pruner_pruned_total(p) == 240);
    CHECK(ffn_pruner_pruned(p, 1) > ffn_pruner_pruned(p, 0));
    float max_pruned = 0, min_kept = INFINITY;
    for (size_t s = 0; s < 2; s++)
        for (size_t i = segs[s].offset; i < segs[s].offset + segs[s].count; i++) {
            if (m[i]) min_kept = fminf(min_kept, fabsf(w[i]));
            else max_pruned = fmaxf(max_pruned, fabsf(w[i]));
        }
    CHECK(max_pruned <= min_kept);
    ffn_pruner_free(p);
}

/* Ties at the threshold are broken by position; sparsity 0.9 of 10 equal
 * weights prunes the first 9. A weight pruned stays so even when its value
 * (before apply) grows large. */
static void test_ties_and_revival(void)
{
    float w[10];
    for (int i = 0; i < 10; i++) w[i] = 0.25f;
    ffn_prune_segment seg = {0, 10};
    ffn_pruner *p;
    CHECK(ffn_pruner_create(&p, &seg, 1, 10) == FFN_OK);
    ffn_pruner_update(p, w, 0.9, FFN_PRUNE_LAYER);
    const uint8_t *m = ffn_pruner_mask(p);
    for (int i = 0; i < 9; i++) CHECK(m[i] == 0);
    CHECK(m[9] == 1);
    ffn_pruner_free(p);

    CHECK(ffn_pruner_create(&p, &seg, 1, 10) == FFN_OK);
    for (int i = 0; i < 10; i++) w[i] = (float)(i + 1);
    ffn_pruner_update(p, w, 0.3, FFN_PRUNE_LAYER); /* prunes 1, 2, 3 */
    m = ffn_pruner_mask(p);
    CHECK(m[0] == 0 && m[1] == 0 && m[2] == 0 && m[3] == 1);
    w[0] = 100.0f; /* a training step moved a pruned weight */
    ffn_pruner_update(p, w, 0.5, FFN_PRUNE_LAYER);
    CHECK(m[0] == 0 && m[3] == 0 && m[4] == 0 && m[5] == 1);
    CHECK(ffn_pruner_pruned_total(p) == 5);
    ffn_pruner_apply(p, w);
    CHECK(w[0] == 0.0f && w[4] == 0.0f && w[5] == 6.0f);
    /* apply_range touches only its range, through a buffer that starts at lo. */
    float part[4] = {7, 7, 7, 7}; /* entries 2..5: masks 0, 0, 0, 1 */
    ffn_pruner_apply_range(p, part, 2, 6);
    CHECK(part[0] == 0.0f && part[1] == 0.0f && part[2] == 0.0f && part[3] == 7.0f);
    /* Sparsity 1 prunes everything; round(0.05 * 10) = 1 would be a no-op now. */
    ffn_pruner_update(p, w, 1.0, FFN_PRUNE_LAYER);
    CHECK(ffn_pruner_pruned_total(p) == 10);
    ffn_pruner_free(p);

    ffn_prune_segment outside = {8, 5};
    CHECK(ffn_pruner_create(&p, &outside, 1, 10) == FFN_ERR_ARG);
}

static void test_schedule(void)
{
    CHECK(ffn_prune_schedule(0.8, 100, 200, 50) == 0.0);
    CHECK(ffn_prune_schedule(0.8, 100, 200, 100) == 0.0);
    CHECK_NEAR(ffn_prune_schedule(0.8, 100, 200, 150), 0.8 * (1 - 0.125), 1e-12);
    CHECK(ffn_prune_schedule(0.8, 100, 200, 200) == 0.8);
    CHECK(ffn_prune_schedule(0.8, 100, 200, 5000) == 0.8);
    CHECK(ffn_prune_schedule(0.9, 0, 0, 0) == 0.9); /* one shot */
    /* Monotone non-decreasing. */
    double last = 0;
    int monotone = 1;
    for (uint64_t t = 0; t < 300; t++) {
        double s = ffn_prune_schedule(0.9, 20, 250, t);
        monotone &= s >= last;
        last = s;
    }
    CHECK(monotone);
    CHECK(ffn_prune_due(0, 0, 100, 0) && !ffn_prune_due(0, 0, 100, 1));
    CHECK(!ffn_prune_due(10, 95, 20, 9) && ffn_prune_due(10, 95, 20, 10) && ffn_prune_due(10, 95, 20, 30));
    CHECK(!ffn_prune_due(10, 95, 20, 31) && ffn_prune_due(10, 95, 20, 95) && !ffn_prune_due(10, 95, 20, 110));
    CHECK(ffn_prune_scope_from_name("global") == FFN_PRUNE_GLOBAL && ffn_prune_scope_from_name("x") == -1);
}

int main(void)
{
    test_select();
    test_layer_and_global();
    test_ties_and_revival();
    test_schedule();
    return check_done("test_prune");
}
