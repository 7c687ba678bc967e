/* ffn — the fused distillation loss: softened-teacher KL mixed with the label
 * cross-entropy, forward and backward in one pass over each row. */
#include "ffn/distill.h"

#include <math.h>

/* One row: returns the row's loss parts; writes k * gradient into d when d != NULL. */
static inline ffn_distill_sums distill_row(const float *s, const float *t, int32_t label, int has_label,
                                           size_t cols, float T, float alpha, float k, float *d)
{
    const float inv_t = 1.0f / T;
    float max_s = s[0], max_t = t[0];
    for (size_t c = 1; c < cols; c++) {
        max_s = s[c] > max_s ? s[c] : max_s;
        max_t = t[c] > max_t ? t[c] : max_t;
    }
    /* Normalisers of softmax(s/T), softmax(t/T) and softmax(s). */
    double sum_q = 0, sum_p = 0, sum_e = 0;
    for (size_t c = 0; c < cols; c++) {
        sum_q += (double)expf((s[c] - max_s) * inv_t);
        sum_p += (double)expf((t[c] - max_t) * inv_t);
        sum_e += (double)expf(s[c] - max_s);
    }
    const double lse_s_t = (double)max_s / T + log(sum_q);
    const double lse_t_t = (double)max_t / T + log(sum_p);
    const double lse_s = (double)max_s + log(sum_e);
    /* KL = sum_c p_c (log p_c - log q_c) = sum_c p_c (t_c - s_c)/T - lse(t/T) + lse(s/T). */
    double kl = 0;
    for (size_t c = 0; c < cols; c++) {
        const double p = exp((double)t[c] / T - lse_t_t);
        kl += p * ((double)t[c] - (double)s[c]) / T;
    }
    kl += lse_s_t - lse_t_t;
    const double ce = has_label ? lse_s - (double)s[label] : 0.0;
    if (d) {
        const float ks = k * alpha * T, kh = k * (1.0f - alpha);
        const float inv_q = (float)(1.0 / sum_q), inv_p = (float)(1.0 / sum_p), inv_e = (float)(1.0 / sum_e);
        for (size_t c = 0; c < cols; c++) {
            const float q = expf((s[c] - max_s) * inv_t) * inv_q;
            const float p = expf((t[c] - max_t) * inv_t) * inv_p;
            float g = ks * (q - p);
            if (has_label) g += kh * (expf(s[c] - max_s) * inv_e);
            d[c] = g;
        }
        if (has_label) d[label] -= kh;
    }
    const double a = alpha;
    return (ffn_distill_sums){.loss = a * (double)T * (double)T * kl + (1.0 - a) * ce, .kl = kl, .ce = ce};
}

ffn_distill_sums ffn_distill_loss(const float *student, const float *teacher, const int32_t *labels,
                                  size_t rows, size_t cols, float temperature, float alpha,
                                  float scale, float *dout)
{
    ffn_distill_sums total = {0, 0, 0};
    if (rows == 0 || cols == 0) return total;
    for (size_t r = 0; r < rows; r++) {
        ffn_distill_sums row = distill_row(student + r * cols, teacher + r * cols, labels ? labels[r] : 0,
                                           labels != NULL, cols, temperature, alpha, scale,
                                           dout ? dout + r * cols : NULL);
        total.loss += row.loss;
        total.kl += row.kl;
        total.ce += row.ce;
    }
    return total;
}
