/* ffn — losses on a batch of network outputs.
 *
 * Targets are either integer labels [rows] or float values [rows, cols].
 * Integer labels given to mse or bce are read as one-hot rows (bce with one
 * output column reads the label as the 0/1 target itself).
 *
 * Reduction: the per-sample loss is summed over the rows of this call, so that
 * ranks can add their sums and divide once by the global batch. Per sample:
 *   mse        mean over cols of (out - t)^2
 *   bce        mean over cols of the logistic loss of logit out against t in [0,1]
 *   softmax_ce -log softmax(out)[label]   (log-sum-exp stable)
 * Backward writes d(scale * sum)/d(out); pass scale = 1 / global batch. */
#ifndef FFN_LOSS_H
#define FFN_LOSS_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/act.h"
#include "ffn/names.h"

typedef enum {
    FFN_LOSS_MSE = 0,
    FFN_LOSS_BCE,        /* on logits: sigmoid is part of the loss */
    FFN_LOSS_SOFTMAX_CE, /* on logits: softmax is part of the loss */
    FFN_LOSS_COUNT
} ffn_loss;

typedef struct {
    const int32_t *labels; /* [rows], or NULL */
    const float *values;   /* [rows, cols], used when labels is NULL */
} ffn_targets;

int ffn_loss_from_name(const char *name); /* -1 for unknown */
const char *ffn_loss_name(ffn_loss kind);
extern const ffn_names ffn_loss_names;

/* Sum over rows of the per-sample loss (accumulated in double). */
double ffn_loss_forward(ffn_loss kind, const float *out, ffn_targets t,
                        size_t rows, size_t cols);

/* dout = scale * d(sum)/d(out); returns the same sum as forward (fused:
 * softmax and sigmoid are computed once). */
double ffn_loss_backward(ffn_loss kind, const float *out, ffn_targets t,
                         size_t rows, size_t cols, float scale, float *dout);

/* Number of rows whose prediction is right: argmax == label for softmax_ce
 * and for multi-column targets (argmax of the target row); for one-column bce
 * (logit > 0) == (target > 0.5). For mse on one column, |out - t| < 0.5. */
size_t ffn_count_correct(ffn_loss kind, const float *out, ffn_targets t,
                         size_t rows, size_t cols);

/* The activation that turns outputs into predictions (softmax, sigmoid, or
 * identity for mse): what ffn-eval applies to report probabilities. */
ffn_act ffn_loss_output_act(ffn_loss kind, size_t cols);

#endif
