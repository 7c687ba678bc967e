/* ffn — weight initialisers over a [fan_out, fan_in] block.
 *
 * Uniform kinds draw U(-a, a) with ffn_rng_fill_uniform (values in [-a, a)),
 * normal kinds N(0, s^2) with ffn_rng_fill_normal, so the draw depends only on
 * the generator's (seed, stream, counter). The bound or std is computed in
 * double from the fans, then rounded to float once. */
#include "ffn/init.h"

#include <math.h>
#include <string.h>

static const char *const init_names[FFN_INIT_COUNT] = {
    [FFN_INIT_ZEROS] = "zeros",
    [FFN_INIT_UNIFORM] = "uniform",
    [FFN_INIT_NORMAL] = "normal",
    [FFN_INIT_XAVIER_UNIFORM] = "xavier_uniform",
    [FFN_INIT_XAVIER_NORMAL] = "xavier_normal",
    [FFN_INIT_HE_UNIFORM] = "he_uniform",
    [FFN_INIT_HE_NORMAL] = "he_normal",
    [FFN_INIT_LECUN_UNIFORM] = "lecun_uniform",
    [FFN_INIT_LECUN_NORMAL] = "lecun_normal",
};

static const ffn_name_alias init_aliases[] = {
    { "glorot_uniform", FFN_INIT_XAVIER_UNIFORM },
    { "glorot_normal", FFN_INIT_XAVIER_NORMAL },
    { "kaiming_uniform", FFN_INIT_HE_UNIFORM },
    { "kaiming_normal", FFN_INIT_HE_NORMAL },
    { "xavier", FFN_INIT_XAVIER_UNIFORM },
    { "he", FFN_INIT_HE_NORMAL },
    { "kaiming", FFN_INIT_HE_NORMAL },
    { "lecun", FFN_INIT_LECUN_NORMAL },
};

const ffn_names ffn_init_names = FFN_NAMES_OF_ARRAY_WITH_ALIASES(init_names, init_aliases);

int ffn_init_from_name(const char *name) { return ffn_names_find(&ffn_init_names, name); }

const char *ffn_init_name(ffn_init kind) { return ffn_names_name(&ffn_init_names, (int)kind); }

/* The explicit range/std of uniform and normal; a non-positive or non-finite
 * param means "not given" and falls back to the default. */
static double explicit_param(float param)
{
    return (param > 0.0f && isfinite(param)) ? (double)param : (double)FFN_INIT_DEFAULT_PARAM;
}

/* sqrt(num / den), 0 for an empty block (den == 0) instead of Inf. */
static double ratio_sqrt(double num, double den)
{
    return den > 0.0 ? sqrt(num / den) : 0.0;
}

/* The half-width a of a uniform kind. */
static double uniform_bound(ffn_init kind, float param, size_t fan_in, size_t fan_out)
{
    const double fi = (double)fan_in, fo = (double)fan_out;
    switch (kind) {
    case FFN_INIT_UNIFORM: return explicit_param(param);
    case FFN_INIT_XAVIER_UNIFORM: return ratio_sqrt(6.0, fi + fo);
    case FFN_INIT_HE_UNIFORM: return ratio_sqrt(6.0, fi);
    case FFN_INIT_LECUN_UNIFORM: return ratio_sqrt(3.0, fi);
    default: return 0.0;
    }
}

double ffn_init_std(ffn_init kind, float param, size_t fan_in, size_t fan_out)
{
    const double fi = (double)fan_in, fo = (double)fan_out;
    switch (kind) {
    case FFN_INIT_ZEROS: return 0.0;
    case FFN_INIT_NORMAL: return explicit_param(param);
    case FFN_INIT_XAVIER_NORMAL: return ratio_sqrt(2.0, fi + fo);
    case FFN_INIT_HE_NORMAL: return ratio_sqrt(2.0, fi);
    case FFN_INIT_LECUN_NORMAL: return ratio_sqrt(1.0, fi);
    case FFN_INIT_UNIFORM:
    case FFN_INIT_XAVIER_UNIFORM:
    case FFN_INIT_HE_UNIFORM:
    case FFN_INIT_LECUN_UNIFORM:
        /* U(-a, a) has variance a^2 / 3. */
        return uniform_bound(kind, param, fan_in, fan_out) / sqrt(3.0);
    default: return 0.0;
    }
}

void ffn_init_fill(ffn_init kind, float param, float *w, size_t fan_out, size_t fan_in,
                   ffn_rng *rng)
{
    const size_t n = fan_out * fan_in;
    if (n == 0) return;
    switch (kind) {
    case FFN_INIT_UNIFORM:
    case FFN_INIT_XAVIER_UNIFORM:
    case FFN_INIT_HE_UNIFORM:
    case FFN_INIT_LECUN_UNIFORM: {
        const float a = (float)uniform_bound(kind, param, fan_in, fan_out);
        ffn_rng_fill_uniform(rng, w, n, -a, a);
        break;
    }
    case FFN_INIT_NORMAL:
    case FFN_INIT_XAVIER_NORMAL:
    case FFN_INIT_HE_NORMAL:
    case FFN_INIT_LECUN_NORMAL:
        ffn_rng_fill_normal(rng, w, n, 0.0f, (float)ffn_init_std(kind, param, fan_in, fan_out));
        break;
    case FFN_INIT_ZEROS:
    default:
        memset(w, 0, n * sizeof *w);
        break;
    }
}
