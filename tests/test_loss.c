/* Tests for the losses: hand values, finite-difference gradients against a
 * double-precision reference, scale, stability at logits of +-1e4, integer
 * labels read as one-hot rows, accuracy counting and names. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ffn/loss.h"
#include "ffn/rng.h"
#include "check.h"

enum { ROWS = 4, MAXC = 7, MAXN = ROWS * MAXC };

/* ---- double-precision reference, written from the definitions */

/* Target c of row r: float values, or the label as one-hot row (the label
 * itself when there is one column). */
static double ref_target(ffn_targets t, size_t r, size_t c, size_t cols)
{
    if (!t.labels) return t.values[r * cols + c];
    if (cols == 1) return t.labels[r];
    return (size_t)t.labels[r] == c ? 1.0 : 0.0;
}

static double ref_loss(ffn_loss kind, const double *out, ffn_targets t, size_t rows, size_t cols)
{
    double total = 0;
    for (size_t r = 0; r < rows; r++) {
        const double *o = out + r * cols;
        double row = 0;
        if (kind == FFN_LOSS_MSE) {
            for (size_t c = 0; c < cols; c++) {
                double d = o[c] - ref_target(t, r, c, cols);
                row += d * d / (double)cols;
            }
        } else if (kind == FFN_LOSS_BCE) {
            /* -t log sigmoid(x) - (1 - t) log(1 - sigmoid(x)), straight from
             * the definition (fine for the moderate logits used here). */
            for (size_t c = 0; c < cols; c++) {
                double tc = ref_target(t, r, c, cols), s = 1 / (1 + exp(-o[c]));
                row += (-tc * log(s) - (1 - tc) * log(1 - s)) / (double)cols;
            }
        } else {
            /* -sum_c t_c log softmax(o)_c (one-hot t for labels). */
            double sum = 0;
            for (size_t c = 0; c < cols; c++) sum += exp(o[c]);
            for (size_t c = 0; c < cols; c++) {
                double tc = t.labels ? ((size_t)t.labels[r] == c) : t.values[r * cols + c];
                row -= tc * log(exp(o[c]) / sum);
            }
        }
        total += row;
    }
    return total;
}

static ffn_targets labels_of(const int32_t *l) { return (ffn_targets){ .labels = l, .values = NULL }; }
static ffn_targets values_of(const float *v) { return (ffn_targets){ .labels = NULL, .values = v }; }

/* ---- hand-derived values */

static void test_hand_values(void)
{
    const double ln2 = log(2.0);
    /* softmax_ce of [0, 0] with label 0: -log(1/2). */
    float z2[2] = { 0, 0 };
    int32_t l0 = 0, l1 = 1, l2 = 2;
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_SOFTMAX_CE, z2, labels_of(&l0), 1, 2), ln2, 1e-7);
    /* [1, 2, 3], label 2: log(e + e^2 + e^3) - 3 = log(1 + e^-1 + e^-2). */
    float z3[3] = { 1, 2, 3 };
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_SOFTMAX_CE, z3, labels_of(&l2), 1, 3),
               log(1 + exp(-1.0) + exp(-2.0)), 1e-7);
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_SOFTMAX_CE, z3, labels_of(&l0), 1, 3),
               log(1 + exp(-1.0) + exp(-2.0)) + 2, 1e-6);
    /* Gradient of softmax_ce on [0, 0], label 0: softmax - onehot = [-1/2, 1/2]. */
    float d2[2];
    double s = ffn_loss_backward(FFN_LOSS_SOFTMAX_CE, z2, labels_of(&l0), 1, 2, 1.0f, d2);
    CHECK_NEAR(s, ln2, 1e-7);
    CHECK_NEAR(d2[0], -0.5, 1e-7);
    CHECK_NEAR(d2[1], 0.5, 1e-7);

    /* mse: mean over columns. [1, 2] against [0, 0]: (1 + 4) / 2. */
    float o2[2] = { 1, 2 }, t00[2] = { 0, 0 };
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_MSE, o2, values_of(t00), 1, 2), 2.5, 1e-7);
    /* Two rows are summed: rows [1, 2] and [1, 2] -> 5. */
    float o22[4] = { 1, 2, 1, 2 }, t22[4] = { 0, 0, 0, 0 };
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_MSE, o22, values_of(t22), 2, 2), 5.0, 1e-7);
    /* d/do = 2 (o - t) / cols = [1, 2]. */
    ffn_loss_backward(FFN_LOSS_MSE, o2, values_of(t00), 1, 2, 1.0f, d2);
    CHECK_NEAR(d2[0], 1.0, 1e-7);
    CHECK_NEAR(d2[1], 2.0, 1e-7);
    /* Integer label 1 over three columns is the row [0, 1, 0]:
     * (0.25 + 0.64 + 0.01) / 3 = 0.3. */
    float o3[3] = { 0.5f, 0.2f, 0.1f };
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_MSE, o3, labels_of(&l1), 1, 3), 0.3, 1e-7);
    /* One column: the label is the target value. (1 - 3)^2 = 4. */
    float o1 = 1.0f;
    int32_t l3 = 3;
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_MSE, &o1, labels_of(&l3), 1, 1), 4.0, 1e-7);

    /* bce on logit 0: log 2 whatever the target. */
    float x0 = 0.0f, t1 = 1.0f, t0 = 0.0f, t03 = 0.3f;
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_BCE, &x0, values_of(&t1), 1, 1), ln2, 1e-7);
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_BCE, &x0, values_of(&t0), 1, 1), ln2, 1e-7);
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_BCE, &x0, values_of(&t03), 1, 1), ln2, 1e-7);
    /* Logit 2: target 1 -> log(1 + e^-2); target 0 -> 2 + log(1 + e^-2). */
    float x2 = 2.0f;
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_BCE, &x2, values_of(&t1), 1, 1), log1p(exp(-2.0)), 1e-7);
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_BCE, &x2, values_of(&t0), 1, 1), 2 + log1p(exp(-2.0)), 1e-6);
    /* One column: the integer label is the 0/1 target. */
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_BCE, &x2, labels_of(&l1), 1, 1), log1p(exp(-2.0)), 1e-7);
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_BCE, &x2, labels_of(&l0), 1, 1), 2 + log1p(exp(-2.0)), 1e-6);
    /* d/dx = sigmoid(x) - t: at 0 with t = 1, -1/2. */
    float dx;
    ffn_loss_backward(FFN_LOSS_BCE, &x0, values_of(&t1), 1, 1, 1.0f, &dx);
    CHECK_NEAR(dx, -0.5, 1e-7);
    /* Multi-column bce with a label: one-hot, mean over columns.
     * [0, 2] label 1 -> (log 2 + log(1 + e^-2)) / 2. */
    float xb[2] = { 0, 2 };
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_BCE, xb, labels_of(&l1), 1, 2),
               (ln2 + log1p(exp(-2.0))) / 2, 1e-7);

    /* No rows: zero, and dout untouched. */
    float canary = 7.0f;
    CHECK(ffn_loss_backward(FFN_LOSS_SOFTMAX_CE, z2, labels_of(&l0), 0, 2, 1.0f, &canary) == 0.0);
    CHECK(canary == 7.0f);
}

/* ---- finite differences against the reference */

/* Max over elements of |analytic - numeric| / max(|numeric|, 1e-2), where the
 * analytic gradient is dout / scale from the library and the numeric one is a
 * central difference (h = 1e-4) of the double reference. Bound 1e-4: the
 * reference's truncation error is O(h^2) ~ 1e-8 and float rounding of the
 * library's gradient ~1e-7 relative, while any wrong formula (missing 1/cols,
 * factor 2, sign, wrong target) errs by O(1). The forward must match the
 * reference to 1e-6 relative (float inputs, double accumulation). */
static void gradient_check(ffn_loss kind, ffn_targets t, size_t cols, ffn_rng *rng,
                           const char *what)
{
    const size_t n = ROWS * cols;
    float out[MAXN], dout[MAXN];
    double outd[MAXN];
    ffn_rng_fill_uniform(rng, out, n, -3.0f, 3.0f);
    for (size_t i = 0; i < n; i++) outd[i] = out[i];
    for (size_t i = 0; i < n; i++) dout[i] = NAN; /* every element must be written */

    const float scale = 0.25f;
    const double fwd = ffn_loss_forward(kind, out, t, ROWS, cols);
    const double bwd = ffn_loss_backward(kind, out, t, ROWS, cols, scale, dout);
    const double ref = ref_loss(kind, outd, t, ROWS, cols);
    CHECK_MSG(fabs(fwd - ref) <= 1e-6 * fabs(ref), "%s %s: forward %.12g, reference %.12g",
              ffn_loss_name(kind), what, fwd, ref);
    /* Backward returns the very same sum (same kernel, same order). */
    CHECK_MSG(bwd == fwd, "%s %s: backward returned %.17g, forward %.17g", ffn_loss_name(kind),
              what, bwd, fwd);

    const double h = 1e-4;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double saved = outd[i];
        outd[i] = saved + h;
        double up = ref_loss(kind, outd, t, ROWS, cols);
        outd[i] = saved - h;
        double down = ref_loss(kind, outd, t, ROWS, cols);
        outd[i] = saved;
        double numeric = (up - down) / (2 * h);
        double analytic = dout[i] / scale;
        double err = fabs(analytic - numeric) / fmax(fabs(numeric), 1e-2);
        if (!(err <= worst)) worst = err; /* NaN sticks */
    }
    CHECK_MSG(worst < 1e-4, "%s %s (cols %zu): gradient rel err %g", ffn_loss_name(kind), what,
              cols, worst);
}

static void test_gradients(void)
{
    ffn_rng rng = ffn_rng_make(77, 0);
    const size_t widths[] = { 1, 2, 5, 7 };
    for (int kind = 0; kind < FFN_LOSS_COUNT; kind++) {
        for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
            const size_t cols = widths[w];
            int32_t labels[ROWS];
            float values[MAXN];
            /* Labels in range: one-hot over cols, or 0/1 (bce) / small
             * numbers (mse) for one column; softmax_ce needs < cols. */
            for (size_t r = 0; r < ROWS; r++) {
                if (cols > 1 || kind == FFN_LOSS_SOFTMAX_CE)
                    labels[r] = (int32_t)ffn_rng_below(&rng, cols);
                else
                    labels[r] = (int32_t)ffn_rng_below(&rng, kind == FFN_LOSS_BCE ? 2 : 5);
            }
            gradient_check((ffn_loss)kind, labels_of(labels), cols, &rng, "labels");

            /* Float targets: any real for mse, probabilities in [0, 1] for bce
             * (soft ones included), distributions over the row for softmax_ce. */
            if (kind == FFN_LOSS_MSE) {
                ffn_rng_fill_uniform(&rng, values, ROWS * cols, -2.0f, 2.0f);
            } else if (kind == FFN_LOSS_BCE) {
                ffn_rng_fill_uniform(&rng, values, ROWS * cols, 0.0f, 1.0f);
                values[0] = 0.0f;
                values[ROWS * cols - 1] = 1.0f;
            } else {
                ffn_rng_fill_uniform(&rng, values, ROWS * cols, 0.0f, 1.0f);
                for (size_t r = 0; r < ROWS; r++) {
                    float sum = 0;
                    for (size_t c = 0; c < cols; c++) sum += values[r * cols + c];
                    for (size_t c = 0; c < cols; c++) values[r * cols + c] /= sum;
                }
            }
            gradient_check((ffn_loss)kind, values_of(values), cols, &rng, "values");
        }
    }
}

/* Integer labels are exactly the one-hot float rows (bce/mse one column:
 * the label as the value), in forward and backward. */
static void test_labels_as_one_hot(void)
{
    ffn_rng rng = ffn_rng_make(5, 5);
    for (int kind = 0; kind < FFN_LOSS_COUNT; kind++) {
        for (size_t cols = 1; cols <= 6; cols += 5) {
            float out[MAXN], onehot[MAXN], da[MAXN], db[MAXN];
            int32_t labels[ROWS];
            ffn_rng_fill_uniform(&rng, out, ROWS * cols, -2, 2);
            for (size_t r = 0; r < ROWS; r++) {
                labels[r] = (int32_t)((r * 3 + 1) % (cols > 1 ? cols : 2));
                for (size_t c = 0; c < cols; c++)
                    onehot[r * cols + c] = cols == 1 ? (float)labels[r] : (float)((size_t)labels[r] == c);
            }
            if (cols == 1 && kind == FFN_LOSS_SOFTMAX_CE)
                for (size_t r = 0; r < ROWS; r++) labels[r] = 0, onehot[r] = 1.0f;
            double a = ffn_loss_backward((ffn_loss)kind, out, labels_of(labels), ROWS, cols, 0.5f, da);
            double b = ffn_loss_backward((ffn_loss)kind, out, values_of(onehot), ROWS, cols, 0.5f, db);
            /* Same maths on different code paths: 1e-6 relative on the sum,
             * 1e-6 absolute on gradients of magnitude <= 1. */
            CHECK_MSG(fabs(a - b) <= 1e-6 * fabs(b), "%s cols %zu: labels %.9g, one-hot %.9g",
                      ffn_loss_name((ffn_loss)kind), cols, a, b);
            double worst = 0;
            for (size_t i = 0; i < ROWS * cols; i++) worst = fmax(worst, fabs(da[i] - db[i]));
            CHECK_MSG(worst <= 1e-6, "%s cols %zu: gradient differs by %g",
                      ffn_loss_name((ffn_loss)kind), cols, worst);
        }
    }
}

static void test_scale(void)
{
    ffn_rng rng = ffn_rng_make(3, 3);
    enum { C = 5 };
    float out[ROWS * C], d1[ROWS * C], ds[ROWS * C], t[ROWS * C];
    int32_t labels[ROWS] = { 0, 4, 2, 1 };
    ffn_rng_fill_uniform(&rng, out, ROWS * C, -2, 2);
    ffn_rng_fill_uniform(&rng, t, ROWS * C, 0, 1);
    const float scales[] = { 1.0f / 256, 3.0f, -0.5f };
    for (int kind = 0; kind < FFN_LOSS_COUNT; kind++)
        for (int use_labels = 0; use_labels < 2; use_labels++) {
            ffn_targets tg = use_labels ? labels_of(labels) : values_of(t);
            double s1 = ffn_loss_backward((ffn_loss)kind, out, tg, ROWS, C, 1.0f, d1);
            for (size_t k = 0; k < sizeof scales / sizeof scales[0]; k++) {
                double ss = ffn_loss_backward((ffn_loss)kind, out, tg, ROWS, C, scales[k], ds);
                /* The returned sum ignores scale. */
                CHECK(ss == s1);
                /* dout scales linearly: 1e-5 relative to max(|s d|, |s| / 10)
                 * (float rounding of the per-element factor, a few ulps of
                 * terms up to |s| in size); a scale applied wrongly or not at
                 * all errs by O(1). */
                double worst = 0;
                for (size_t i = 0; i < ROWS * C; i++)
                    worst = fmax(worst, fabs(ds[i] - scales[k] * d1[i]) /
                                            fmax(fabs(scales[k] * d1[i]), fabs(scales[k]) * 0.1));
                CHECK_MSG(worst < 1e-5, "%s scale %g: rel err %g", ffn_loss_name((ffn_loss)kind),
                          (double)scales[k], worst);
            }
        }
    /* Scale 0 gives zero gradients. */
    ffn_loss_backward(FFN_LOSS_SOFTMAX_CE, out, labels_of(labels), ROWS, C, 0.0f, ds);
    for (size_t i = 0; i < ROWS * C; i++) CHECK(ds[i] == 0.0f);
}

/* Logits of +-1e4: finite everything, and the exact large value
 * (tolerances: 1e-3 absolute on values of 1e4-2e4, i.e. 1e-7 relative). */
static void test_stability(void)
{
    const float big = 1e4f;
    int32_t l0 = 0, l1 = 1;
    float d[3];

    float z[2] = { big, -big };
    CHECK_NEAR(ffn_loss_backward(FFN_LOSS_SOFTMAX_CE, z, labels_of(&l1), 1, 2, 1.0f, d), 2e4, 1e-3);
    CHECK(d[0] == 1.0f && d[1] == -1.0f); /* softmax [1, 0] minus one-hot [0, 1] */
    CHECK_NEAR(ffn_loss_backward(FFN_LOSS_SOFTMAX_CE, z, labels_of(&l0), 1, 2, 1.0f, d), 0.0, 1e-12);
    CHECK(d[0] == 0.0f && d[1] == 0.0f);
    float zz[3] = { big, big, -big };
    CHECK_NEAR(ffn_loss_backward(FFN_LOSS_SOFTMAX_CE, zz, labels_of(&l0), 1, 3, 1.0f, d), log(2.0),
               1e-7);
    CHECK_NEAR(d[0], -0.5, 1e-7);
    CHECK_NEAR(d[1], 0.5, 1e-7);
    CHECK(d[2] == 0.0f);
    float zn[2] = { -big, -big };
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_SOFTMAX_CE, zn, labels_of(&l0), 1, 2), log(2.0), 1e-7);
    /* Soft targets at extreme logits: 0 * (huge) stays 0, no NaN. */
    float soft[2] = { 0.25f, 0.75f };
    CHECK_NEAR(ffn_loss_backward(FFN_LOSS_SOFTMAX_CE, z, values_of(soft), 1, 2, 1.0f, d),
               0.75 * 2e4, 1e-3);
    CHECK(isfinite(d[0]) && isfinite(d[1]));
    CHECK_NEAR(d[0], 0.75, 1e-7);
    CHECK_NEAR(d[1], -0.75, 1e-7);

    float xp = big, xn = -big, t0 = 0.0f, t1 = 1.0f, th = 0.5f;
    CHECK_NEAR(ffn_loss_backward(FFN_LOSS_BCE, &xp, values_of(&t0), 1, 1, 1.0f, d), 1e4, 1e-3);
    CHECK(d[0] == 1.0f);
    CHECK_NEAR(ffn_loss_backward(FFN_LOSS_BCE, &xp, values_of(&t1), 1, 1, 1.0f, d), 0.0, 1e-12);
    CHECK(d[0] == 0.0f);
    CHECK_NEAR(ffn_loss_backward(FFN_LOSS_BCE, &xn, values_of(&t1), 1, 1, 1.0f, d), 1e4, 1e-3);
    CHECK(d[0] == -1.0f);
    CHECK_NEAR(ffn_loss_backward(FFN_LOSS_BCE, &xn, values_of(&t0), 1, 1, 1.0f, d), 0.0, 1e-12);
    CHECK(d[0] == 0.0f);
    CHECK_NEAR(ffn_loss_backward(FFN_LOSS_BCE, &xn, values_of(&th), 1, 1, 1.0f, d), 5e3, 1e-3);
    CHECK_NEAR(d[0], -0.5, 1e-7);

    float m = big, mt = -big;
    CHECK_NEAR(ffn_loss_backward(FFN_LOSS_MSE, &m, values_of(&mt), 1, 1, 1.0f, d), 4e8, 1e-3);
    CHECK_NEAR(d[0], 4e4, 1e-3);

    /* A whole batch of extremes through every loss: finite sums and gradients. */
    float out[ROWS * 3] = { big, -big, 0, -big, -big, -big, big, big, big, 0, big, -big };
    int32_t labels[ROWS] = { 1, 2, 0, 2 };
    float dd[ROWS * 3];
    for (int kind = 0; kind < FFN_LOSS_COUNT; kind++) {
        double s = ffn_loss_backward((ffn_loss)kind, out, labels_of(labels), ROWS, 3, 0.1f, dd);
        CHECK_MSG(isfinite(s), "%s: loss %g", ffn_loss_name((ffn_loss)kind), s);
        for (size_t i = 0; i < ROWS * 3; i++)
            CHECK_MSG(isfinite(dd[i]), "%s: dout[%zu] = %g", ffn_loss_name((ffn_loss)kind), i,
                      (double)dd[i]);
    }
    /* softmax_ce of that batch, row by row: 1e4 - (-1e4), log 3 (three
     * equal logits), log 3 again, 1e4 - (-1e4). */
    CHECK_NEAR(ffn_loss_forward(FFN_LOSS_SOFTMAX_CE, out, labels_of(labels), ROWS, 3),
               2e4 + log(3.0) + log(3.0) + 2e4, 1e-3);
}

static void test_count_correct(void)
{
    /* softmax_ce: argmax == label. Rows' argmax: 2, 0, 1 (tie -> first), 1. */
    float out[4 * 3] = { 0.1f, 0.2f, 0.9f, 5, -1, 2, 0, 3, 3, -2, -1, -3 };
    int32_t labels[4] = { 2, 1, 1, 1 };
    CHECK(ffn_count_correct(FFN_LOSS_SOFTMAX_CE, out, labels_of(labels), 4, 3) == 3);
    CHECK(ffn_count_correct(FFN_LOSS_SOFTMAX_CE, out, labels_of(labels), 2, 3) == 1);
    CHECK(ffn_count_correct(FFN_LOSS_SOFTMAX_CE, out, labels_of(labels), 0, 3) == 0);
    /* Multi-column targets: argmax of the target row. */
    float t[4 * 3] = { 0, 0, 1, 0.5f, 0.3f, 0.2f, 0, 0, 1, 0.1f, 0.8f, 0.1f };
    CHECK(ffn_count_correct(FFN_LOSS_SOFTMAX_CE, out, values_of(t), 4, 3) == 3);
    CHECK(ffn_count_correct(FFN_LOSS_MSE, out, values_of(t), 4, 3) == 3);
    CHECK(ffn_count_correct(FFN_LOSS_BCE, out, values_of(t), 4, 3) == 3);
    /* Multi-column labels for mse/bce: argmax == label as well. */
    CHECK(ffn_count_correct(FFN_LOSS_MSE, out, labels_of(labels), 4, 3) == 3);
    CHECK(ffn_count_correct(FFN_LOSS_BCE, out, labels_of(labels), 4, 3) == 3);

    /* One-column bce: (logit > 0) == (target > 0.5). */
    float logits[5] = { 2.0f, -1.0f, 0.5f, -0.5f, 0.0f };
    int32_t bl[5] = { 1, 0, 0, 1, 0 };
    CHECK(ffn_count_correct(FFN_LOSS_BCE, logits, labels_of(bl), 5, 1) == 3);
    float bt[5] = { 0.9f, 0.2f, 0.5f, 0.6f, 0.4f }; /* 0.5 is not > 0.5 */
    CHECK(ffn_count_correct(FFN_LOSS_BCE, logits, values_of(bt), 5, 1) == 3);
    /* One-column mse: |out - t| < 0.5 (exactly 0.5 is wrong). */
    float pred[5] = { 1.2f, 2.0f, 2.9f, -0.6f, 1.5f };
    int32_t ml[5] = { 1, 3, 3, 0, 1 };
    CHECK(ffn_count_correct(FFN_LOSS_MSE, pred, labels_of(ml), 5, 1) == 2);
    float mt[5] = { 1.0f, 2.4f, 3.5f, -1.0f, 2.0f };
    CHECK(ffn_count_correct(FFN_LOSS_MSE, pred, values_of(mt), 5, 1) == 3);
}

/* The first index of the largest value, as one loop keeping the best by `>`. */
static size_t argmax_ref(const float *v, size_t n)
{
    size_t best = 0;
    for (size_t c = 1; c < n; c++)
        if (v[c] > v[best]) best = c;
    return best;
}

/* Wide rows (the vectorised argmax, 16 lanes and a tail) full of ties, NaNs,
 * signed zeros and infinities: the same count as the plain loop gives, for
 * every width from 1 to 200 and for 1024. Each row is scored against a label
 * placed at its reference argmax or one off it. */
static void test_count_correct_wide(void)
{
    enum { NROWS = 8, MAXW = 1024 };
    static float out[NROWS * MAXW];
    int32_t labels[NROWS];
    ffn_rng rng = ffn_rng_make(11, 5);
    int mismatches = 0;
    for (size_t w = 1; w <= MAXW; w = w == 200 ? MAXW : w + 1) {
        for (size_t i = 0; i < NROWS * w; i++) {
            uint32_t k = ffn_rng_below(&rng, 24);
            out[i] = k == 0 ? NAN : k == 1 ? -0.0f : k == 2 ? 0.0f : k == 3 ? INFINITY : k == 4 ? -INFINITY
                                                                                           : (float)k - 14.0f;
        }
        if (w > 3) out[0] = NAN; /* a NaN first: index 0 */
        size_t want = 0;
        for (size_t r = 0; r < NROWS; r++) {
            size_t a = argmax_ref(out + r * w, w);
            labels[r] = (int32_t)(r % 2 || w == 1 ? a : (a + 1) % w);
            want += (size_t)labels[r] == a;
        }
        mismatches += ffn_count_correct(FFN_LOSS_SOFTMAX_CE, out, labels_of(labels), NROWS, w) != want;
    }
    CHECK_MSG(mismatches == 0, "argmax of wide rows: %d widths differ from the plain loop", mismatches);
}

static void test_names_and_act(void)
{
    static const char *const names[FFN_LOSS_COUNT] = { "mse", "bce", "softmax_ce" };
    for (int k = 0; k < FFN_LOSS_COUNT; k++) {
        CHECK(strcmp(ffn_loss_name((ffn_loss)k), names[k]) == 0);
        CHECK(ffn_loss_from_name(names[k]) == k);
    }
    CHECK(ffn_loss_from_name("hinge") == -1);
    CHECK(ffn_loss_from_name("MSE") == -1);
    CHECK(ffn_loss_from_name("") == -1);
    CHECK(ffn_loss_from_name(NULL) == -1);
    CHECK(ffn_loss_output_act(FFN_LOSS_SOFTMAX_CE, 10) == FFN_ACT_SOFTMAX);
    CHECK(ffn_loss_output_act(FFN_LOSS_BCE, 1) == FFN_ACT_SIGMOID);
    CHECK(ffn_loss_output_act(FFN_LOSS_BCE, 4) == FFN_ACT_SIGMOID);
    CHECK(ffn_loss_output_act(FFN_LOSS_MSE, 3) == FFN_ACT_IDENTITY);

    /* The output act turns logits into the probabilities the loss scores:
     * -log(prob of the label) equals softmax_ce; same for bce. */
    float z[3] = { 0.3f, -1.2f, 2.0f }, p[3];
    int32_t l = 1;
    ffn_act_forward(ffn_loss_output_act(FFN_LOSS_SOFTMAX_CE, 3), 0, z, p, 1, 3);
    CHECK_NEAR(-log(p[1]), ffn_loss_forward(FFN_LOSS_SOFTMAX_CE, z, labels_of(&l), 1, 3), 1e-6);
    ffn_act_forward(ffn_loss_output_act(FFN_LOSS_BCE, 1), 0, z, p, 1, 1);
    CHECK_NEAR(-log(p[0]), ffn_loss_forward(FFN_LOSS_BCE, z, labels_of(&l), 1, 1), 1e-6);
}

int main(void)
{
    test_hand_values();
    test_gradients();
    test_labels_as_one_hot();
    test_scale();
    test_stability();
    test_count_correct();
    test_count_correct_wide();
    test_names_and_act();
    return check_done("test_loss");
}
