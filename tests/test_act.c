/* Tests for the activations: hand values, stability, and finite-difference
 * gradients against a double-precision reference, including aliased buffers. */
#include <math.h>
#include <string.h>

#include "ffn/act.h"
#include "ffn/dense.h"
#include "ffn/rng.h"
#include "check.h"
#include "fixtures.h"

enum { ROWS = 4, COLS = 6, N = ROWS * COLS };

/* ---- double-precision reference of each activation (ref_act_row, fixtures.h) */

/* L = sum_rc w[r,c] * act(z)[r,c], in double. */
static double ref_objective(ffn_act a, double slope, const double *z, const float *w)
{
    double y[COLS], total = 0;
    for (size_t r = 0; r < ROWS; r++) {
        ref_act_row(a, slope, z + r * COLS, y, COLS);
        for (size_t c = 0; c < COLS; c++) total += w[r * COLS + c] * y[c];
    }
    return total;
}

/* Random z in [-3, 3], kept at least 0.05 away from 0 so central differences
 * with step 1e-3 never straddle the kink of relu / leaky_relu. */
static void random_inputs(ffn_rng *rng, float *z, float *w)
{
    ffn_rng_fill_uniform(rng, z, N, -3.0f, 3.0f);
    ffn_rng_fill_uniform(rng, w, N, -1.0f, 1.0f);
    for (size_t i = 0; i < N; i++)
        if (fabsf(z[i]) < 0.05f) z[i] = z[i] < 0 ? -0.05f - z[i] : 0.05f + z[i];
}

/* Largest relative error of the float forward against the double reference
 * and of the analytic dz = act'(z) * w against central differences of L.
 * aliased: forward in place (y == z), backward with z == y and dz == dy. */
static void gradient_check(ffn_act a, float param, int aliased, ffn_rng *rng)
{
    float z[N], w[N], y[N], dz[N];
    random_inputs(rng, z, w);

    double zd[N];
    for (size_t i = 0; i < N; i++) zd[i] = z[i];
    double yref[COLS], fwd_err = 0;

    if (aliased) {
        float buf[N];
        memcpy(buf, z, sizeof buf);
        ffn_act_forward(a, param, buf, buf, ROWS, COLS);
        memcpy(y, buf, sizeof y);
        memcpy(dz, w, sizeof dz);
        ffn_act_backward(a, param, buf, buf, dz, dz, ROWS, COLS);
    } else {
        ffn_act_forward(a, param, z, y, ROWS, COLS);
        ffn_act_backward(a, param, z, y, w, dz, ROWS, COLS);
    }
    for (size_t r = 0; r < ROWS; r++) {
        ref_act_row(a, param, zd + r * COLS, yref, COLS);
        for (size_t c = 0; c < COLS; c++)
            fwd_err = fmax(fwd_err, fabs(y[r * COLS + c] - yref[c]));
    }

    const double h = 1e-3;
    double grad_err = 0;
    for (size_t i = 0; i < N; i++) {
        double saved = zd[i];
        zd[i] = saved + h;
        double up = ref_objective(a, param, zd, w);
        zd[i] = saved - h;
        double down = ref_objective(a, param, zd, w);
        zd[i] = saved;
        double numeric = (up - down) / (2 * h);
        double rel = fabs(dz[i] - numeric) / fmax(1e-3, fabs(numeric));
        grad_err = fmax(grad_err, rel);
    }
    /* Bounds: the forward is float (|y| <= 3, so ~1e-6 absolute); the numeric
     * derivative is double with O(h^2) ~ 1e-6 truncation, so float rounding in
     * the analytic gradient dominates: max |analytic - numeric| /
     * max(1e-3, |numeric|) < 1e-3 leaves two orders of margin and still
     * catches any wrong formula (those err by O(1)). */
    CHECK_MSG(fwd_err < 1e-5, "%s(param %g, aliased %d) forward err %g", ffn_act_name(a),
              (double)param, aliased, fwd_err);
    CHECK_MSG(grad_err < 1e-3, "%s(param %g, aliased %d) gradient rel err %g", ffn_act_name(a),
              (double)param, aliased, grad_err);
}

static void test_gradients(void)
{
    ffn_rng rng = ffn_rng_make(2024, 0);
    const float no_param = 0.0f;
    const ffn_act simple[] = { FFN_ACT_IDENTITY, FFN_ACT_RELU, FFN_ACT_SIGMOID, FFN_ACT_TANH,
                               FFN_ACT_GELU, FFN_ACT_SOFTMAX };
    for (size_t k = 0; k < sizeof simple / sizeof simple[0]; k++) {
        for (int rep = 0; rep < 3; rep++) gradient_check(simple[k], no_param, 0, &rng);
        if (!ffn_act_backward_needs_z(simple[k], no_param))
            for (int rep = 0; rep < 3; rep++) gradient_check(simple[k], no_param, 1, &rng);
    }
    const float slopes[] = { 0.01f, 0.2f, 0.0f, -0.5f };
    for (size_t k = 0; k < sizeof slopes / sizeof slopes[0]; k++) {
        gradient_check(FFN_ACT_LEAKY_RELU, slopes[k], 0, &rng);
        if (!ffn_act_backward_needs_z(FFN_ACT_LEAKY_RELU, slopes[k]))
            gradient_check(FFN_ACT_LEAKY_RELU, slopes[k], 1, &rng);
    }
}

static void test_needs_z(void)
{
    CHECK(ffn_act_backward_needs_z(FFN_ACT_GELU, 0) == 1);
    CHECK(ffn_act_backward_needs_z(FFN_ACT_LEAKY_RELU, 0.01f) == 0);
    CHECK(ffn_act_backward_needs_z(FFN_ACT_LEAKY_RELU, 0.0f) == 1);
    CHECK(ffn_act_backward_needs_z(FFN_ACT_LEAKY_RELU, -0.1f) == 1);
    CHECK(ffn_act_backward_needs_z(FFN_ACT_RELU, 0) == 0);
    CHECK(ffn_act_backward_needs_z(FFN_ACT_SIGMOID, 0) == 0);
    CHECK(ffn_act_backward_needs_z(FFN_ACT_TANH, 0) == 0);
    CHECK(ffn_act_backward_needs_z(FFN_ACT_SOFTMAX, 0) == 0);
    CHECK(ffn_act_backward_needs_z(FFN_ACT_IDENTITY, 0) == 0);
}

static float act1(ffn_act a, float param, float z)
{
    float y;
    ffn_act_forward(a, param, &z, &y, 1, 1);
    return y;
}

static float grad1(ffn_act a, float param, float z)
{
    float y, dy = 1.0f, dz;
    ffn_act_forward(a, param, &z, &y, 1, 1);
    ffn_act_backward(a, param, &z, &y, &dy, &dz, 1, 1);
    return dz;
}

static void test_hand_values(void)
{
    CHECK(act1(FFN_ACT_RELU, 0, -1.0f) == 0.0f);
    CHECK(act1(FFN_ACT_RELU, 0, 2.5f) == 2.5f);
    CHECK(act1(FFN_ACT_IDENTITY, 0, -7.0f) == -7.0f);
    CHECK_NEAR(act1(FFN_ACT_LEAKY_RELU, 0.2f, -2.0f), -0.4, 1e-7);
    CHECK_NEAR(act1(FFN_ACT_LEAKY_RELU, 0.01f, 3.0f), 3.0, 0);
    CHECK(act1(FFN_ACT_SIGMOID, 0, 0.0f) == 0.5f);
    CHECK_NEAR(act1(FFN_ACT_SIGMOID, 0, 2.0f), 0.8807970779778823, 1e-7);
    CHECK_NEAR(act1(FFN_ACT_SIGMOID, 0, -2.0f), 0.11920292202211755, 1e-7);
    CHECK_NEAR(act1(FFN_ACT_TANH, 0, 0.5f), 0.46211715726000974, 1e-7);
    CHECK_NEAR(act1(FFN_ACT_GELU, 0, 1.0f), 0.8413447460685429, 1e-6);
    CHECK_NEAR(act1(FFN_ACT_GELU, 0, -1.0f), -0.15865525393145707, 1e-6);
    CHECK(act1(FFN_ACT_GELU, 0, 0.0f) == 0.0f);
    /* gelu'(0) = 1/2, gelu'(1) = Phi(1) + phi(1) */
    CHECK_NEAR(grad1(FFN_ACT_GELU, 0, 0.0f), 0.5, 1e-7);
    CHECK_NEAR(grad1(FFN_ACT_GELU, 0, 1.0f), 0.8413447460685429 + 0.24197072451914337, 1e-6);
    CHECK_NEAR(grad1(FFN_ACT_SIGMOID, 0, 0.0f), 0.25, 1e-7);
    CHECK(grad1(FFN_ACT_RELU, 0, -1.0f) == 0.0f);
    CHECK(grad1(FFN_ACT_RELU, 0, 1.0f) == 1.0f);
    CHECK_NEAR(grad1(FFN_ACT_LEAKY_RELU, 0.2f, -1.0f), 0.2, 1e-7);

    float z[3] = { 1, 2, 3 }, y[3];
    ffn_act_forward(FFN_ACT_SOFTMAX, 0, z, y, 1, 3);
    CHECK_NEAR(y[0], 0.09003057317038046, 1e-7);
    CHECK_NEAR(y[1], 0.24472847105479764, 1e-7);
    CHECK_NEAR(y[2], 0.6652409557748218, 1e-7);

    /* Softmax is per row: two rows differing by a constant give equal rows. */
    float z2[6] = { 1, 2, 3, 101, 102, 103 }, y2[6];
    ffn_act_forward(FFN_ACT_SOFTMAX, 0, z2, y2, 2, 3);
    for (int c = 0; c < 3; c++) CHECK_NEAR(y2[c], y2[3 + c], 1e-6);
}

static void test_names(void)
{
    for (int a = 0; a < FFN_ACT_COUNT; a++) CHECK(ffn_act_from_name(ffn_act_name(a)) == a);
    CHECK(ffn_act_from_name("gelu") == FFN_ACT_GELU);
    CHECK(ffn_act_from_name("linear") == FFN_ACT_IDENTITY);
    CHECK(ffn_act_from_name("none") == FFN_ACT_IDENTITY);
    CHECK(ffn_act_from_name("swish") == -1);
    CHECK(ffn_act_from_name("") == -1);
    CHECK(ffn_act_from_name(NULL) == -1);
}

static void test_extremes(void)
{
    CHECK(act1(FFN_ACT_SIGMOID, 0, 100.0f) == 1.0f);
    float s_neg = act1(FFN_ACT_SIGMOID, 0, -100.0f);
    CHECK(isfinite(s_neg) && s_neg >= 0.0f && s_neg < 1e-40f);
    CHECK(act1(FFN_ACT_SIGMOID, 0, -1e4f) == 0.0f);
    CHECK(isfinite(grad1(FFN_ACT_SIGMOID, 0, -1e4f)));
    CHECK(act1(FFN_ACT_TANH, 0, 1e4f) == 1.0f);
    CHECK(grad1(FFN_ACT_TANH, 0, -1e4f) == 0.0f);
    CHECK(act1(FFN_ACT_GELU, 0, 1e4f) == 1e4f);
    float g = act1(FFN_ACT_GELU, 0, -1e4f);
    CHECK(isfinite(g) && fabsf(g) < 1e-30f);
    CHECK(isfinite(grad1(FFN_ACT_GELU, 0, -1e4f)) && isfinite(grad1(FFN_ACT_GELU, 0, 1e4f)));

    float z[2] = { 1e4f, -1e4f }, y[2], dy[2] = { 1, -1 }, dz[2];
    ffn_act_forward(FFN_ACT_SOFTMAX, 0, z, y, 1, 2);
    CHECK(y[0] == 1.0f && y[1] == 0.0f);
    ffn_act_backward(FFN_ACT_SOFTMAX, 0, z, y, dy, dz, 1, 2);
    CHECK(isfinite(dz[0]) && isfinite(dz[1]));
    float big[3] = { 1e4f, 1e4f, -1e4f }, ybig[3];
    ffn_act_forward(FFN_ACT_SOFTMAX, 0, big, ybig, 1, 3);
    CHECK_NEAR(ybig[0], 0.5, 1e-7);
    CHECK_NEAR(ybig[1], 0.5, 1e-7);
}

static void test_bias_act(void)
{
    enum { R = 3, C = 5 };
    ffn_rng rng = ffn_rng_make(9, 9);
    float z0[R * C], b[C];
    ffn_rng_fill_uniform(&rng, z0, R * C, -2, 2);
    ffn_rng_fill_uniform(&rng, b, C, -1, 1);

    const ffn_act acts[] = { FFN_ACT_IDENTITY, FFN_ACT_RELU, FFN_ACT_TANH, FFN_ACT_SOFTMAX };
    for (size_t k = 0; k < sizeof acts / sizeof acts[0]; k++) {
        float z[R * C], y[R * C], expect_z[R * C], expect_y[R * C];
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) expect_z[r * C + c] = z0[r * C + c] + b[c];
        ffn_act_forward(acts[k], 0, expect_z, expect_y, R, C);

        memcpy(z, z0, sizeof z);
        ffn_bias_act_forward(acts[k], 0, b, z, y, R, C);
        CHECK(memcmp(z, expect_z, sizeof z) == 0);
        CHECK(memcmp(y, expect_y, sizeof y) == 0);

        memcpy(z, z0, sizeof z); /* in place */
        ffn_bias_act_forward(acts[k], 0, b, z, z, R, C);
        CHECK(memcmp(z, expect_y, sizeof z) == 0);

        memcpy(z, z0, sizeof z); /* no bias */
        ffn_bias_act_forward(acts[k], 0, NULL, z, y, R, C);
        ffn_act_forward(acts[k], 0, z0, expect_y, R, C);
        CHECK(memcmp(z, z0, sizeof z) == 0);
        CHECK(memcmp(y, expect_y, sizeof y) == 0);
    }
}

int main(void)
{
    test_needs_z();
    test_hand_values();
    test_names();
    test_extremes();
    test_gradients();
    test_bias_act();
    return check_done("test_act");
}
