/* Tests for the distillation loss: finite-difference gradients against a
 * double-precision reference written from the definition, KL exactly 0 when
 * the teacher is the student, alpha = 0 is plain softmax_ce, the hand value
 * of a two-class case, scale, and stability at logits of +-1e4. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ffn/distill.h"
#include "ffn/loss.h"
#include "ffn/rng.h"
#include "check.h"

enum { ROWS = 4, MAXC = 7, MAXN = ROWS * MAXC };

/* A T^2 KL(softmax(t/T) || softmax(s/T)) + (1 - A) CE, straight from the
 * definitions (log of each probability, no shifted forms). */
static double ref_loss(const double *s, const float *t, const int32_t *labels, size_t rows,
                       size_t cols, double T, double A, double *kl_out)
{
    double total = 0, kl_total = 0;
    for (size_t r = 0; r < rows; r++) {
        const double *sr = s + r * cols;
        const float *tr = t + r * cols;
        double zq = 0, zp = 0, ze = 0;
        for (size_t c = 0; c < cols; c++) {
            zq += exp(sr[c] / T);
            zp += exp(tr[c] / T);
            ze += exp(sr[c]);
        }
        double kl = 0;
        for (size_t c = 0; c < cols; c++) {
            double p = exp(tr[c] / T) / zp, q = exp(sr[c] / T) / zq;
            kl += p * log(p / q);
        }
        double ce = labels ? -log(exp(sr[labels[r]]) / ze) : 0;
        total += A * T * T * kl + (1 - A) * ce;
        kl_total += kl;
    }
    if (kl_out) *kl_out = kl_total;
    return total;
}

/* Analytic gradient (dout / scale) against central differences (h = 1e-4)
 * of the reference: relative error below 1e-4 (see test_loss.c for the
 * reasoning); forward within 1e-6 relative of the reference. */
static void gradient_check(size_t cols, float T, float A, int with_labels, ffn_rng *rng)
{
    const size_t n = ROWS * cols;
    float s[MAXN], t[MAXN], d[MAXN];
    double sd[MAXN];
    int32_t labels[ROWS];
    ffn_rng_fill_uniform(rng, s, n, -3.0f, 3.0f);
    ffn_rng_fill_uniform(rng, t, n, -4.0f, 4.0f);
    for (size_t r = 0; r < ROWS; r++) labels[r] = (int32_t)ffn_rng_below(rng, cols);
    for (size_t i = 0; i < n; i++) {
        sd[i] = s[i];
        d[i] = NAN;
    }
    const int32_t *lab = with_labels ? labels : NULL;
    const float scale = 0.125f;
    ffn_distill_sums fwd = ffn_distill_loss(s, t, lab, ROWS, cols, T, A, 0.0f, NULL);
    ffn_distill_sums bwd = ffn_distill_loss(s, t, lab, ROWS, cols, T, A, scale, d);
    double ref_kl;
    double ref = ref_loss(sd, t, lab, ROWS, cols, T, A, &ref_kl);
    CHECK_MSG(fabs(fwd.loss - ref) <= 1e-6 * fabs(ref) + 1e-9, "cols %zu T %g A %g: loss %.12g, reference %.12g",
              cols, (double)T, (double)A, fwd.loss, ref);
    CHECK_MSG(fabs(fwd.kl - ref_kl) <= 1e-6 * fabs(ref_kl) + 1e-9, "cols %zu T %g: kl %.12g, reference %.12g", cols,
              (double)T, fwd.kl, ref_kl);
    CHECK(bwd.loss == fwd.loss && bwd.kl == fwd.kl && bwd.ce == fwd.ce);
    const double h = 1e-4;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double saved = sd[i];
        sd[i] = saved + h;
        double up = ref_loss(sd, t, lab, ROWS, cols, T, A, NULL);
        sd[i] = saved - h;
        double down = ref_loss(sd, t, lab, ROWS, cols, T, A, NULL);
        sd[i] = saved;
        double numeric = (up - down) / (2 * h), analytic = d[i] / scale;
        double err = fabs(analytic - numeric) / fmax(fabs(numeric), 1e-2);
        if (!(err <= worst)) worst = err;
    }
    CHECK_MSG(worst < 1e-4, "cols %zu T %g A %g labels %d: gradient rel err %g", cols, (double)T, (double)A,
              with_labels, worst);
}

static void test_gradients(void)
{
    ffn_rng rng = ffn_rng_make(808, 0);
    const size_t widths[] = {2, 5, 7};
    const float temps[] = {1.0f, 2.0f, 4.0f, 0.5f};
    const float alphas[] = {0.0f, 0.3f, 0.9f, 1.0f};
    for (size_t w = 0; w < 3; w++)
        for (size_t k = 0; k < 4; k++)
            for (size_t a = 0; a < 4; a++) gradient_check(widths[w], temps[k], alphas[a], 1, &rng);
    /* Pure distillation needs no labels. */
    gradient_check(5, 3.0f, 1.0f, 0, &rng);
}

/* Teacher == student: KL exactly 0, and with A = 1 a zero gradient; with
 * A < 1 the gradient is exactly (1 - A) times softmax_ce's. */
static void test_teacher_is_student(void)
{
    ffn_rng rng = ffn_rng_make(9, 1);
    float s[ROWS * 6], d[ROWS * 6], dce[ROWS * 6];
    int32_t labels[ROWS] = {0, 5, 2, 3};
    ffn_rng_fill_uniform(&rng, s, ROWS * 6, -5.0f, 5.0f);
    ffn_distill_sums one = ffn_distill_loss(s, s, labels, ROWS, 6, 3.0f, 1.0f, 1.0f, d);
    CHECK(one.kl == 0.0 && one.loss == 0.0);
    for (size_t i = 0; i < ROWS * 6; i++) CHECK(d[i] == 0.0f);
    ffn_distill_sums half = ffn_distill_loss(s, s, labels, ROWS, 6, 2.0f, 0.5f, 1.0f, d);
    double ce = ffn_loss_backward(FFN_LOSS_SOFTMAX_CE, s, (ffn_targets){labels, NULL}, ROWS, 6, 1.0f, dce);
    CHECK(half.kl == 0.0);
    CHECK_NEAR(half.ce, ce, 1e-9);
    CHECK_NEAR(half.loss, 0.5 * ce, 1e-9);
    for (size_t i = 0; i < ROWS * 6; i++) CHECK_NEAR(d[i], 0.5 * dce[i], 1e-7);
}

/* A = 0 is softmax_ce whatever the teacher; hand value of a two-class KL. */
static void test_values(void)
{
    float s[3] = {1, 2, 3}, t[3] = {3, -1, 0.5f}, d[3], dce[3];
    int32_t label = 2;
    ffn_distill_sums z = ffn_distill_loss(s, t, &label, 1, 3, 4.0f, 0.0f, 1.0f, d);
    double ce = ffn_loss_backward(FFN_LOSS_SOFTMAX_CE, s, (ffn_targets){&label, NULL}, 1, 3, 1.0f, dce);
    CHECK_NEAR(z.loss, ce, 1e-9);
    for (int i = 0; i < 3; i++) CHECK_NEAR(d[i], dce[i], 1e-7);
    /* Two classes, T = 1: p = [1/2, 1/2] (teacher [0, 0]), q = softmax([0, log 3]) = [1/4, 3/4];
     * KL = 1/2 log(2) + 1/2 log(2/3). */
    float s2[2] = {0, (float)log(3.0)}, t2[2] = {0, 0};
    ffn_distill_sums k = ffn_distill_loss(s2, t2, NULL, 1, 2, 1.0f, 1.0f, 1.0f, d);
    CHECK_NEAR(k.kl, 0.5 * log(2.0) + 0.5 * log(2.0 / 3.0), 1e-7);
    CHECK_NEAR(d[0], 0.25 - 0.5, 1e-7);
    CHECK_NEAR(d[1], 0.75 - 0.5, 1e-7);
    /* T^2 weighting: same logits at T = 2 weigh the KL by 4. */
    ffn_distill_sums k2 = ffn_distill_loss(s2, t2, NULL, 1, 2, 2.0f, 1.0f, 1.0f, NULL);
    CHECK_NEAR(k2.loss, 4 * k2.kl, 1e-12);
    /* scale multiplies the gradient only. */
    float d8[2];
    ffn_distill_sums k8 = ffn_distill_loss(s2, t2, NULL, 1, 2, 1.0f, 1.0f, 0.125f, d8);
    CHECK(k8.loss == k.loss);
    CHECK_NEAR(d8[0], 0.125 * d[0], 1e-9);
}

static void test_stability(void)
{
    const float big = 1e4f;
    float s[ROWS * 3] = {big, -big, 0, -big, -big, -big, big, big, big, 0, big, -big};
    float t[ROWS * 3] = {-big, big, 0, big, -big, 0, 0, 0, big, -big, -big, -big};
    int32_t labels[ROWS] = {1, 2, 0, 2};
    float d[ROWS * 3];
    const float temps[] = {1.0f, 4.0f};
    for (int k = 0; k < 2; k++) {
        ffn_distill_sums r = ffn_distill_loss(s, t, labels, ROWS, 3, temps[k], 0.7f, 0.1f, d);
        CHECK_MSG(isfinite(r.loss) && isfinite(r.kl) && isfinite(r.ce), "T %g: loss %g kl %g ce %g",
                  (double)temps[k], r.loss, r.kl, r.ce);
        CHECK(r.kl >= -1e-3);
        for (int i = 0; i < ROWS * 3; i++) CHECK_MSG(isfinite(d[i]), "T %g: d[%d] = %g", (double)temps[k], i, (double)d[i]);
    }
    /* Row 0 at T = 1: teacher puts all mass on class 1, where the student is at -1e4 below its max:
     * KL = (t_1 - s_1) - lse(t) + lse(s) = (1e4 + 1e4) - 1e4 + 1e4 = 2e4. */
    ffn_distill_sums r0 = ffn_distill_loss(s, t, NULL, 1, 3, 1.0f, 1.0f, 1.0f, NULL);
    CHECK_NEAR(r0.kl, 2e4, 1e-2);
}

int main(void)
{
    test_gradients();
    test_teacher_is_student();
    test_values();
    test_stability();
    return check_done("test_distill");
}
