/* ffn — knowledge distillation: the student learns from a teacher's softened
 * outputs as well as from the labels (Hinton, Vinyals and Dean 2015).
 *
 * Per row, with student logits s, teacher logits t, label y, temperature T
 * and mixing weight A in [0, 1]:
 *
 *   loss = A * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - A) * CE(softmax(s), y)
 *   d loss / d s_c = A * T * (softmax(s/T)_c - softmax(t/T)_c)
 *                  + (1 - A) * (softmax(s)_c - [c == y])
 *
 * T^2 keeps the soft term's gradient on the scale of the hard one as T grows.
 * Fused and stable: every softmax is shifted by its row maximum, the KL is
 * sum_c p_c ((t_c - s_c)/T) - lse(t/T) + lse(s/T), so a student equal to its
 * teacher has KL exactly 0. Like ffn_loss, sums over the rows of the call;
 * the gradient is scale * d(sum)/d(s) (scale = 1 / global batch). Nothing is
 * allocated. */
#ifndef FFN_DISTILL_H
#define FFN_DISTILL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double loss; /* sum over rows of the mixed loss above */
    double kl;   /* sum over rows of KL(softmax(t/T) || softmax(s/T)) (no T^2, no A) */
    double ce;   /* sum over rows of the label cross-entropy (0 when labels is NULL) */
} ffn_distill_sums;

/* student, teacher: [rows, cols] logits. labels: [rows] in [0, cols), or NULL
 * only when alpha == 1 (pure distillation). dout: [rows, cols] gradient, or
 * NULL for the loss alone. temperature > 0, alpha in [0, 1]. */
ffn_distill_sums ffn_distill_loss(const float *student, const float *teacher, const int32_t *labels,
                                  size_t rows, size_t cols, float temperature, float alpha,
                                  float scale, float *dout);

#endif
