/* ffn-data: a seeded train/validation split of a table, shared by split and
 * idx --val-out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "ffn/rng.h"

int split_flags_parse(split_flags *s, const args *a, const char *cmd)
{
    int rc;
    if ((rc = arg_u64(a, "--seed", 0, 0, UINT64_MAX, &s->seed, cmd)) ||
        (rc = arg_u64(a, "--val-count", 0, 1, UINT64_MAX, &s->count, cmd)) ||
        (rc = arg_double(a, "--val-fraction", 0, 0, 1, &s->fraction, cmd)))
        return rc;
    s->by_count = arg_has(a, "--val-count");
    return 0;
}

size_t split_val_rows(const split_flags *s, size_t rows)
{
    return s->by_count ? (size_t)s->count : (size_t)(s->fraction * (double)rows + 0.5);
}

/* chosen[r] = 1 for a seeded choice of k of the n rows, else 0. */
static void choose_rows(uint64_t seed, size_t n, size_t k, unsigned char *chosen)
{
    uint64_t *perm = malloc((n ? n : 1) * sizeof *perm);
    memset(chosen, 0, n);
    if (!perm) return;
    ffn_rng rng = ffn_rng_make(seed, FFN_STREAM_DATA);
    ffn_rng_permutation(&rng, perm, n);
    for (size_t i = 0; i < k && i < n; i++) chosen[perm[i]] = 1;
    free(perm);
}

int table_write_split(const table *t, const split_flags *s, const char *train_out,
                      const char *val_out, const char *source, const char *cmd)
{
    size_t k = split_val_rows(s, t->rows);
    if (k == 0 || k >= t->rows)
        return usage_error(cmd, "the validation split has %zu of the %zu rows of %s; expected between 1 and %zu", k,
                           t->rows, source, t->rows - 1);
    int rc;
    unsigned char *chosen = malloc(t->rows); /* [rows]: 1 for a validation row */
    uint64_t *tr = malloc(t->rows * sizeof *tr), *va = malloc(k * sizeof *va); /* row ids, file order */
    if (!chosen || !tr || !va) {
        rc = data_error(cmd, "out of memory");
    } else {
        choose_rows(s->seed, t->rows, k, chosen);
        size_t nt = 0, nv = 0;
        for (size_t i = 0; i < t->rows; i++) {
            if (chosen[i]) va[nv++] = i;
            else tr[nt++] = i;
        }
        rc = table_write(t, train_out, tr, nt, NULL, 0, source);
        if (!rc) rc = table_write(t, val_out, va, nv, NULL, 0, source);
    }
    free(chosen);
    free(tr);
    free(va);
    return rc;
}
