/* ffn — weight initialisers.
 *
 * Each fills a [fan_out, fan_in] weight block from the counter-based RNG, so
 * every rank that uses the same (seed, stream) draws the same weights. */
#ifndef FFN_INIT_H
#define FFN_INIT_H

#include <stddef.h>
#include "ffn/names.h"
#include "ffn/rng.h"

typedef enum {
    FFN_INIT_ZEROS = 0,
    FFN_INIT_UNIFORM,        /* U(-a, a), a = param (default 0.05) */
    FFN_INIT_NORMAL,         /* N(0, s^2), s = param (default 0.05) */
    FFN_INIT_XAVIER_UNIFORM, /* a = sqrt(6 / (fan_in + fan_out)) */
    FFN_INIT_XAVIER_NORMAL,  /* s = sqrt(2 / (fan_in + fan_out)) */
    FFN_INIT_HE_UNIFORM,     /* a = sqrt(6 / fan_in) */
    FFN_INIT_HE_NORMAL,      /* s = sqrt(2 / fan_in) */
    FFN_INIT_LECUN_UNIFORM,  /* a = sqrt(3 / fan_in) */
    FFN_INIT_LECUN_NORMAL,   /* s = sqrt(1 / fan_in) */
    FFN_INIT_COUNT
} ffn_init;

#define FFN_INIT_DEFAULT_PARAM 0.05f

/* Accepts the names above in lower case ("xavier_uniform"), plus the aliases
 * glorot_uniform/glorot_normal, kaiming_uniform/kaiming_normal, "xavier" (uniform),
 * "he"/"kaiming" (normal), "lecun" (normal). -1 for an unknown name. */
int ffn_init_from_name(const char *name);
const char *ffn_init_name(ffn_init kind);
extern const ffn_names ffn_init_names; /* every initialiser by ffn_init, and the aliases */

/* The standard deviation the initialiser targets (for tests and docs). */
double ffn_init_std(ffn_init kind, float param, size_t fan_in, size_t fan_out);

void ffn_init_fill(ffn_init kind, float param, float *w, size_t fan_out, size_t fan_in,
                   ffn_rng *rng);

#endif
