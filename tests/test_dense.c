/* Tests for the dense layer: forward against a double reference, and
 * finite-difference gradients of dx, dW and db for every activation; the
 * accumulate flag; NULL gradients skipped; z aliasing y. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ffn/act.h"
#include "ffn/dense.h"
#include "ffn/rng.h"
#include "check.h"
#include "fixtures.h"

enum { B = 3, IN = 5, OUT = 4, NX = B * IN, NW = OUT * IN, NY = B * OUT, GUARD = 8 };

/* ---- double reference: z = x W^T + b, y = act(z); L = sum r .* y */

static void ref_forward(ffn_act a, double slope, const double *x, const double *W,
                        const double *b, double *z, double *y)
{
    for (size_t r = 0; r < B; r++) {
        for (size_t o = 0; o < OUT; o++) {
            double s = b[o];
            for (size_t i = 0; i < IN; i++) s += x[r * IN + i] * W[o * IN + i];
            z[r * OUT + o] = s;
        }
        ref_act_row(a, slope, z + r * OUT, y + r * OUT, OUT);
    }
}

static double ref_objective(ffn_act a, double slope, const double *x, const double *W,
                            const double *b, const float *weights)
{
    double z[NY], y[NY], total = 0;
    ref_forward(a, slope, x, W, b, z, y);
    for (size_t i = 0; i < NY; i++) total += weights[i] * y[i];
    return total;
}

typedef struct {
    float x[NX], W[NW], b[OUT], r[NY]; /* r: dL/dy */
    double xd[NX], Wd[NW], bd[OUT];
} problem;

/* Random x, W, b in [-1, 1] with every pre-activation at least 0.05 from 0
 * (redrawn until so), so the central differences below, which move z by at
 * most h * (1 + 5) = 6e-3, never straddle the kink of relu or leaky_relu. */
static void make_problem(problem *p, ffn_rng *rng)
{
    for (int tries = 0; tries < 1000; tries++) {
        ffn_rng_fill_uniform(rng, p->x, NX, -1, 1);
        ffn_rng_fill_uniform(rng, p->W, NW, -1, 1);
        ffn_rng_fill_uniform(rng, p->b, OUT, -1, 1);
        for (size_t i = 0; i < NX; i++) p->xd[i] = p->x[i];
        for (size_t i = 0; i < NW; i++) p->Wd[i] = p->W[i];
        for (size_t i = 0; i < OUT; i++) p->bd[i] = p->b[i];
        double z[NY], y[NY];
        ref_forward(FFN_ACT_IDENTITY, 0, p->xd, p->Wd, p->bd, z, y);
        int ok = 1;
        for (size_t i = 0; i < NY; i++) ok &= fabs(z[i]) >= 0.05;
        if (ok) break;
    }
    ffn_rng_fill_uniform(rng, p->r, NY, -1, 1);
}

/* Central difference of the objective w.r.t. v[i] (v is one of p's doubles). */
static double numeric_grad(ffn_act a, double slope, problem *p, double *v, size_t i)
{
    const double h = 1e-3;
    double saved = v[i];
    v[i] = saved + h;
    double up = ref_objective(a, slope, p->xd, p->Wd, p->bd, p->r);
    v[i] = saved - h;
    double down = ref_objective(a, slope, p->xd, p->Wd, p->bd, p->r);
    v[i] = saved;
    return (up - down) / (2 * h);
}

/* Relative error with a floor: |a - n| / max(|n|, 1e-2). */
static double rel_err(double analytic, double numeric)
{
    double e = fabs(analytic - numeric) / fmax(fabs(numeric), 1e-2);
    return e == e ? e : INFINITY;
}

/* Bounds for the checks below: the float forward (sums of 5 products of
 * values <= 1, then the activation) is within 1e-5 of the double reference;
 * the gradients are float sgemm results (~1e-6 relative) against central
 * differences in double with h = 1e-3 (O(h^2) truncation, ~1e-6 for these
 * smooth functions), so 1e-3 relative (floor 1e-2, i.e. 1e-5 absolute)
 * leaves a wide margin and still catches a wrong transpose, a missing
 * activation derivative or a lost bias term, all O(1). */
static void gradient_check(ffn_act a, float param, ffn_rng *rng, int alias_zy)
{
    problem p;
    make_problem(&p, rng);
    const char *name = ffn_act_name(a);

    float zbuf[NY], ybuf[NY], dy[NY];
    float dx[NX + GUARD], dW[NW + GUARD], db[OUT + GUARD];
    float *z = alias_zy ? ybuf : zbuf, *y = ybuf;
    ffn_dense_forward(z, y, p.x, p.W, p.b, B, IN, OUT, a, param);

    double zr[NY], yr[NY];
    ref_forward(a, param, p.xd, p.Wd, p.bd, zr, yr);
    double fwd = 0;
    for (size_t i = 0; i < NY; i++) {
        fwd = fmax(fwd, fabs(y[i] - yr[i]));
        if (!alias_zy) fwd = fmax(fwd, fabs(z[i] - zr[i]));
    }
    CHECK_MSG(fwd < 1e-5, "%s(%g) alias %d: forward err %g", name, (double)param, alias_zy, fwd);

    /* Outputs start as NaN (every element must be written) with a guard
     * region of sentinels after them (nothing may be written past the end). */
    for (size_t i = 0; i < NX + GUARD; i++) dx[i] = i < NX ? NAN : 1234.5f;
    for (size_t i = 0; i < NW + GUARD; i++) dW[i] = i < NW ? NAN : 1234.5f;
    for (size_t i = 0; i < OUT + GUARD; i++) db[i] = i < OUT ? NAN : 1234.5f;
    memcpy(dy, p.r, sizeof dy);
    ffn_dense_backward(dx, dW, db, dy, p.x, p.W, z, y, B, IN, OUT, a, param, 0);

    double ex = 0, eW = 0, eb = 0;
    for (size_t i = 0; i < NX; i++) ex = fmax(ex, rel_err(dx[i], numeric_grad(a, param, &p, p.xd, i)));
    for (size_t i = 0; i < NW; i++) eW = fmax(eW, rel_err(dW[i], numeric_grad(a, param, &p, p.Wd, i)));
    for (size_t i = 0; i < OUT; i++) eb = fmax(eb, rel_err(db[i], numeric_grad(a, param, &p, p.bd, i)));
    CHECK_MSG(ex < 1e-3, "%s(%g) alias %d: dx rel err %g", name, (double)param, alias_zy, ex);
    CHECK_MSG(eW < 1e-3, "%s(%g) alias %d: dW rel err %g", name, (double)param, alias_zy, eW);
    CHECK_MSG(eb < 1e-3, "%s(%g) alias %d: db rel err %g", name, (double)param, alias_zy, eb);
    int guards = 1;
    for (size_t i = 0; i < GUARD; i++)
        guards &= dx[NX + i] == 1234.5f && dW[NW + i] == 1234.5f && db[OUT + i] == 1234.5f;
    CHECK_MSG(guards, "%s: wrote past the end of a gradient", name);

    /* dy is documented to come back as dz = dL/dz: db is its column sum. */
    for (size_t o = 0; o < OUT; o++) {
        double s = 0;
        for (size_t r = 0; r < B; r++) s += dy[r * OUT + o];
        CHECK_NEAR(s, db[o], 1e-6);
    }

    /* accumulate = 1 adds to what is there (1e-6 absolute: one float add). */
    float dW2[NW], db2[OUT], dx2[NX];
    for (size_t i = 0; i < NW; i++) dW2[i] = 0.5f + (float)i;
    for (size_t i = 0; i < OUT; i++) db2[i] = -2.0f + (float)i;
    memcpy(dy, p.r, sizeof dy);
    ffn_dense_backward(dx2, dW2, db2, dy, p.x, p.W, z, y, B, IN, OUT, a, param, 1);
    double acc = 0;
    for (size_t i = 0; i < NW; i++) acc = fmax(acc, fabs(dW2[i] - (0.5f + (float)i + dW[i])));
    for (size_t i = 0; i < OUT; i++) acc = fmax(acc, fabs(db2[i] - (-2.0f + (float)i + db[i])));
    CHECK_MSG(acc < 1e-5, "%s: accumulate err %g", name, acc);
    /* dx is always written, never accumulated. */
    CHECK(memcmp(dx2, dx, sizeof dx2) == 0);
}

static void test_gradients(void)
{
    ffn_rng rng = ffn_rng_make(31337, 0);
    const struct {
        ffn_act act;
        float param;
    } cases[] = {
        { FFN_ACT_IDENTITY, 0 }, { FFN_ACT_RELU, 0 }, { FFN_ACT_LEAKY_RELU, 0.01f },
        { FFN_ACT_LEAKY_RELU, 0.2f }, { FFN_ACT_LEAKY_RELU, 0.0f }, { FFN_ACT_LEAKY_RELU, -0.3f },
        { FFN_ACT_SIGMOID, 0 }, { FFN_ACT_TANH, 0 }, { FFN_ACT_GELU, 0 }, { FFN_ACT_SOFTMAX, 0 },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        for (int rep = 0; rep < 3; rep++) gradient_check(cases[k].act, cases[k].param, &rng, 0);
        /* z may be y exactly when the backward needs only y. */
        if (!ffn_act_backward_needs_z(cases[k].act, cases[k].param))
            for (int rep = 0; rep < 3; rep++) gradient_check(cases[k].act, cases[k].param, &rng, 1);
    }
}

/* z aliasing y gives bit-for-bit the gradients of separate buffers. */
static void test_alias_same_bits(void)
{
    ffn_rng rng = ffn_rng_make(8, 8);
    for (int a = 0; a < FFN_ACT_COUNT; a++) {
        const float param = a == FFN_ACT_LEAKY_RELU ? 0.1f : 0.0f;
        if (ffn_act_backward_needs_z((ffn_act)a, param)) continue;
        problem p;
        make_problem(&p, &rng);
        float z[NY], y1[NY], y2[NY], dy1[NY], dy2[NY];
        float dx1[NX], dx2[NX], dW1[NW], dW2[NW], db1[OUT], db2[OUT];
        ffn_dense_forward(z, y1, p.x, p.W, p.b, B, IN, OUT, (ffn_act)a, param);
        ffn_dense_forward(y2, y2, p.x, p.W, p.b, B, IN, OUT, (ffn_act)a, param);
        CHECK(memcmp(y1, y2, sizeof y1) == 0);
        memcpy(dy1, p.r, sizeof dy1);
        memcpy(dy2, p.r, sizeof dy2);
        ffn_dense_backward(dx1, dW1, db1, dy1, p.x, p.W, z, y1, B, IN, OUT, (ffn_act)a, param, 0);
        ffn_dense_backward(dx2, dW2, db2, dy2, p.x, p.W, y2, y2, B, IN, OUT, (ffn_act)a, param, 0);
        CHECK_MSG(memcmp(dx1, dx2, sizeof dx1) == 0 && memcmp(dW1, dW2, sizeof dW1) == 0 &&
                      memcmp(db1, db2, sizeof db1) == 0,
                  "%s: aliased z differs", ffn_act_name((ffn_act)a));
    }
}

/* dW/db NULL (frozen layer) and dx NULL (first layer) are skipped; what is
 * computed is unchanged. */
static void test_null_outputs(void)
{
    ffn_rng rng = ffn_rng_make(99, 1);
    problem p;
    make_problem(&p, &rng);
    const ffn_act a = FFN_ACT_TANH;
    float y[NY], dy[NY], dx[NX], dW[NW], db[OUT], dx2[NX], dW2[NW], db2[OUT];
    ffn_dense_forward(y, y, p.x, p.W, p.b, B, IN, OUT, a, 0);
    memcpy(dy, p.r, sizeof dy);
    ffn_dense_backward(dx, dW, db, dy, p.x, p.W, y, y, B, IN, OUT, a, 0, 0);

    memcpy(dy, p.r, sizeof dy);
    ffn_dense_backward(dx2, NULL, NULL, dy, p.x, p.W, y, y, B, IN, OUT, a, 0, 0);
    CHECK(memcmp(dx, dx2, sizeof dx) == 0);
    memcpy(dy, p.r, sizeof dy);
    ffn_dense_backward(NULL, dW2, db2, dy, p.x, p.W, y, y, B, IN, OUT, a, 0, 0);
    CHECK(memcmp(dW, dW2, sizeof dW) == 0 && memcmp(db, db2, sizeof db) == 0);
    memcpy(dy, p.r, sizeof dy);
    ffn_dense_backward(NULL, NULL, NULL, dy, p.x, p.W, y, y, B, IN, OUT, a, 0, 0);
    CHECK(1); /* reached without touching NULL (the sanitizer build would trap) */

    /* An empty batch: dW and db written as zeros (accumulate 0) or left as
     * they are (accumulate 1); dx not touched. */
    for (size_t i = 0; i < NW; i++) dW2[i] = 5.0f;
    for (size_t i = 0; i < OUT; i++) db2[i] = 5.0f;
    for (size_t i = 0; i < NX; i++) dx2[i] = 5.0f;
    ffn_dense_backward(dx2, dW2, db2, dy, p.x, p.W, y, y, 0, IN, OUT, a, 0, 1);
    int kept = 1;
    for (size_t i = 0; i < NW; i++) kept &= dW2[i] == 5.0f;
    for (size_t i = 0; i < OUT; i++) kept &= db2[i] == 5.0f;
    for (size_t i = 0; i < NX; i++) kept &= dx2[i] == 5.0f;
    CHECK(kept);
    ffn_dense_backward(dx2, dW2, db2, dy, p.x, p.W, y, y, 0, IN, OUT, a, 0, 0);
    int zeroed = 1;
    for (size_t i = 0; i < NW; i++) zeroed &= dW2[i] == 0.0f;
    for (size_t i = 0; i < OUT; i++) zeroed &= db2[i] == 0.0f;
    CHECK(zeroed);
}

int main(void)
{
    test_gradients();
    test_alias_same_bits();
    test_null_outputs();
    return check_done("test_dense");
}
