/* ffn — mse, binary cross-entropy on logits, softmax cross-entropy: forward,
 * fused backward and accuracy counting.
 *
 * Each loss is one row kernel shared by forward (dout == NULL) and backward,
 * so both return bit-identical sums. A row is visited once: its few columns
 * stay in L1 across the kernel's short loops, and nothing is allocated.
 *
 * Targets of a row: float values t[c], or an integer label read as a one-hot
 * row; with one output column the label itself is the target value (a 0/1
 * class for bce, a number for mse). softmax_ce takes labels, or float rows
 * read as a distribution (soft targets): -sum_c t_c log softmax(out)_c. */
#include "ffn/loss.h"

#include <math.h>

/* Each loss by ffn_loss: its name and the activation that turns its outputs
 * into predictions (bce is per column, multi-label, so sigmoid at any width). */
static const struct {
    const char *name;
    ffn_act output_act;
} losses[FFN_LOSS_COUNT] = {
    [FFN_LOSS_MSE] = {"mse", FFN_ACT_IDENTITY},
    [FFN_LOSS_BCE] = {"bce", FFN_ACT_SIGMOID},
    [FFN_LOSS_SOFTMAX_CE] = {"softmax_ce", FFN_ACT_SOFTMAX},
};

const ffn_names ffn_loss_names = FFN_NAMES_OF_FIELD(losses, name);

int ffn_loss_from_name(const char *name) { return ffn_names_find(&ffn_loss_names, name); }

const char *ffn_loss_name(ffn_loss kind) { return ffn_names_name(&ffn_loss_names, (int)kind); }

/* A row kernel: returns the row's loss sum (before any division by cols) and,
 * when d != NULL, writes the row's gradient times k. Always inlined so that
 * the driver's constant NULLs fold the branches away. */
#define ROW_KERNEL static inline __attribute__((always_inline)) double

/* Target c of a row: from the value row, or from the label. */
static inline float target_at(const float *t, int32_t label, size_t cols, size_t c)
{
    if (t) return t[c];
    if (cols == 1) return (float)label;
    return (size_t)label == c ? 1.0f : 0.0f;
}

/* ---- mse: mean over cols of (o - t)^2; d/do = 2 (o - t) / cols */

ROW_KERNEL mse_row(const float *o, const float *t, int32_t label, size_t cols, float k,
                   float *d)
{
    double sum = 0.0;
    for (size_t c = 0; c < cols; c++) {
        float diff = o[c] - target_at(t, label, cols, c);
        sum += (double)diff * (double)diff;
        if (d) d[c] = k * diff;
    }
    return sum;
}

/* ---- bce on logits, per element: max(x,0) - x t + log1p(exp(-|x|)),
 * d/dx = sigmoid(x) - t; exp(-|x|) <= 1, so neither overflows. */

ROW_KERNEL bce_row(const float *o, const float *t, int32_t label, size_t cols, float k,
                   float *d)
{
    double sum = 0.0;
    for (size_t c = 0; c < cols; c++) {
        const float x = o[c], tc = target_at(t, label, cols, c);
        const float e = expf(-fabsf(x));
        sum += (double)(x > 0.0f ? x : 0.0f) - (double)x * (double)tc + (double)log1pf(e);
        if (d) {
            const float s = 1.0f / (1.0f + e);
            const float sig = x >= 0.0f ? s : e * s;
            d[c] = k * (sig - tc);
        }
    }
    return sum;
}

/* ---- softmax cross-entropy: log-sum-exp shifted by the row max.
 * With lse = max + log(sum_c exp(o_c - max)):
 *   label:  loss = lse - o_label,              d/do_c = p_c - [c == label]
 *   soft:   loss = sum_c t_c (lse - o_c),      d/do_c = p_c sum(t) - t_c
 * In backward the exponentials are parked in d and scaled in place. */

ROW_KERNEL softmax_ce_row(const float *o, const float *t, int32_t label, size_t cols,
                          float k, float *d)
{
    float max = o[0];
    for (size_t c = 1; c < cols; c++) max = o[c] > max ? o[c] : max;
    double sum_exp = 0.0;
    for (size_t c = 0; c < cols; c++) {
        const float e = expf(o[c] - max);
        sum_exp += (double)e;
        if (d) d[c] = e;
    }
    const double lse = (double)max + log(sum_exp);
    if (!t) {
        if (d) {
            const float kp = (float)((double)k / sum_exp);
            for (size_t c = 0; c < cols; c++) d[c] *= kp;
            d[label] -= k;
        }
        return lse - (double)o[label];
    }
    double loss = 0.0, mass = 0.0;
    for (size_t c = 0; c < cols; c++) {
        loss += (double)t[c] * (lse - (double)o[c]);
        mass += (double)t[c];
    }
    if (d) {
        const float kp = (float)((double)k * mass / sum_exp);
        for (size_t c = 0; c < cols; c++) d[c] = kp * d[c] - k * t[c];
    }
    return loss;
}

/* Runs ROW over every row, with the target kind (labels or values) and the
 * mode (forward: d == NULL) fixed per loop, so each of the four loops is
 * compiled with its branches folded away. */
#define FOR_EACH_ROW(ROW, k)                                                              \
    do {                                                                                  \
        if (tg.labels && dout)                                                            \
            for (size_t r = 0; r < rows; r++)                                             \
                total += ROW(out + r * cols, NULL, tg.labels[r], cols, k, dout + r * cols); \
        else if (tg.labels)                                                               \
            for (size_t r = 0; r < rows; r++)                                             \
                total += ROW(out + r * cols, NULL, tg.labels[r], cols, k, NULL);          \
        else if (dout)                                                                    \
            for (size_t r = 0; r < rows; r++)                                             \
                total += ROW(out + r * cols, tg.values + r * cols, 0, cols, k,            \
                             dout + r * cols);                                            \
        else                                                                              \
            for (size_t r = 0; r < rows; r++)                                             \
                total += ROW(out + r * cols, tg.values + r * cols, 0, cols, k, NULL);     \
    } while (0)

/* The shared driver: dout == NULL is forward. k is the per-element gradient
 * factor: scale, times 2/cols for mse and 1/cols for bce. */
static double loss_rows(ffn_loss kind, const float *out, ffn_targets tg, size_t rows,
                        size_t cols, float scale, float *dout)
{
    if (rows == 0 || cols == 0) return 0.0;
    double total = 0.0;
    switch (kind) {
    case FFN_LOSS_MSE: {
        const float k = (float)(2.0 * (double)scale / (double)cols);
        FOR_EACH_ROW(mse_row, k);
        return total / (double)cols;
    }
    case FFN_LOSS_BCE: {
        const float k = (float)((double)scale / (double)cols);
        FOR_EACH_ROW(bce_row, k);
        return total / (double)cols;
    }
    case FFN_LOSS_SOFTMAX_CE:
        FOR_EACH_ROW(softmax_ce_row, scale);
        return total;
    default:
        return NAN;
    }
}

double ffn_loss_forward(ffn_loss kind, const float *out, ffn_targets t, size_t rows,
                        size_t cols)
{
    return loss_rows(kind, out, t, rows, cols, 0.0f, NULL);
}

double ffn_loss_backward(ffn_loss kind, const float *out, ffn_targets t, size_t rows,
                         size_t cols, float scale, float *dout)
{
    return loss_rows(kind, out, t, rows, cols, scale, dout);
}

/* ---- accuracy */

/* The first index of the largest value (NaNs never win; a NaN at 0 keeps 0):
 * the largest value first, in 16 independent lanes that vectorise, then its
 * first index. The same answer as one loop keeping the best index by `>`,
 * twice as fast on a wide output (a 1024-wide regression's accuracy read
 * 0.38 ms of a 35 ms step). */
static size_t argmax(const float *v, size_t n)
{
    enum { LANES = 16 };
    if (n < 2 * LANES || v[0] != v[0]) {
        size_t best = 0;
        for (size_t c = 1; c < n; c++)
            if (v[c] > v[best]) best = c;
        return best;
    }
    float lane[LANES];
    for (size_t j = 0; j < LANES; j++) lane[j] = v[0];
    size_t c = 0;
    for (; c + LANES <= n; c += LANES)
        for (size_t j = 0; j < LANES; j++) lane[j] = v[c + j] > lane[j] ? v[c + j] : lane[j];
    float top = lane[0];
    for (size_t j = 1; j < LANES; j++) top = lane[j] > top ? lane[j] : top;
    for (; c < n; c++) top = v[c] > top ? v[c] : top;
    size_t first = 0;
    while (v[first] != top) first++; /* top is one of v's values, not NaN */
    return first;
}

size_t ffn_count_correct(ffn_loss kind, const float *out, ffn_targets t, size_t rows,
                         size_t cols)
{
    if (cols == 0) return 0;
    size_t correct = 0;
    for (size_t r = 0; r < rows; r++) {
        const float *o = out + r * cols;
        const float *tv = t.labels ? NULL : t.values + r * cols;
        if (cols == 1 && kind != FFN_LOSS_SOFTMAX_CE) {
            const float target = tv ? tv[0] : (float)t.labels[r];
            if (kind == FFN_LOSS_BCE)
                correct += (o[0] > 0.0f) == (target > 0.5f);
            else
                correct += fabsf(o[0] - target) < 0.5f;
            continue;
        }
        const size_t want = tv ? argmax(tv, cols) : (size_t)t.labels[r];
        correct += argmax(o, cols) == want;
    }
    return correct;
}

ffn_act ffn_loss_output_act(ffn_loss kind, size_t cols)
{
    (void)cols;
    return (unsigned)kind < FFN_LOSS_COUNT ? losses[kind].output_act : FFN_ACT_IDENTITY;
}
