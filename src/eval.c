/* ffn — evaluation over a whole dataset (see ffn/eval.h). */
#include "ffn/eval.h"

#include <stdlib.h>

#include "ffn/mem.h"
#include "ffn/partition.h"

struct ffn_evaluator {
    ffn_model *model;
    ffn_loss loss;
    size_t batch_rows, out_dim;
    float *x;         /* [batch_rows, input_dim] */
    int32_t *labels;  /* [batch_rows] */
    float *values;    /* [batch_rows, out_dim] */
};

ffn_status ffn_check_dataset_fits(const ffn_model *m, ffn_loss loss, const ffn_dataset *ds, const char *what)
{
    const ffn_dataset_info *info = ffn_dataset_get_info(ds);
    size_t out = ffn_model_output_dim(m), in = ffn_model_input_dim(m);
    if (info->features != in)
        return ffn_fail(FFN_ERR_FORMAT, "%s: /x has %zu features, expected %zu (the model's input width)", what,
                        info->features, in);
    if (!info->has_labels) {
        if (loss == FFN_LOSS_SOFTMAX_CE)
            return ffn_fail(FFN_ERR_FORMAT, "%s: /y holds float targets, but softmax_ce expects int32 class labels",
                            what);
        if (info->target_cols != out)
            return ffn_fail(FFN_ERR_FORMAT, "%s: /y has %zu target columns, but the model outputs %zu", what,
                            info->target_cols, out);
        /* bce's targets are probabilities: outside [0, 1] its loss is unbounded below. */
        if (loss == FFN_LOSS_BCE && (info->y_min < 0 || info->y_max > 1)) {
            int low = info->y_min < 0;
            return ffn_fail(FFN_ERR_FORMAT,
                            "%s: /y row %zu column %zu has target %g, but bce needs targets in [0, 1]", what,
                            low ? info->y_min_row : info->y_max_row, low ? info->y_min_col : info->y_max_col,
                            (double)(low ? info->y_min : info->y_max));
        }
        return FFN_OK;
    }
    if (loss == FFN_LOSS_BCE && out == 1) {
        if (info->num_classes > 2)
            return ffn_fail(FFN_ERR_FORMAT, "%s: bce with one output needs labels 0/1, but num_classes is %zu",
                            what, info->num_classes);
        return FFN_OK;
    }
    if (info->num_classes > out)
        return ffn_fail(FFN_ERR_FORMAT,
                        "%s: labels go up to %zu classes, but the model outputs %zu (last layer units must be the "
                        "class count)",
                        what, info->num_classes, out);
    return FFN_OK;
}

ffn_status ffn_evaluator_create(ffn_evaluator **out, ffn_model *m, ffn_loss loss, size_t batch_rows)
{
    *out = NULL;
    ffn_evaluator *e = calloc(1, sizeof *e);
    if (!e) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    e->model = m;
    e->loss = loss;
    e->batch_rows = batch_rows;
    e->out_dim = ffn_model_output_dim(m);
    e->x = ffn_alloc(batch_rows, ffn_model_input_dim(m) * sizeof(float));
    e->labels = ffn_alloc(batch_rows, sizeof(int32_t));
    e->values = ffn_alloc(batch_rows, e->out_dim * sizeof(float));
    ffn_status st = e->x && e->labels && e->values ? ffn_model_reserve(m, batch_rows)
                                                   : ffn_fail(FFN_ERR_NOMEM, "out of memory for evaluation batches");
    if (st != FFN_OK) {
        ffn_evaluator_free(e);
        return st;
    }
    *out = e;
    return FFN_OK;
}

void ffn_evaluator_free(ffn_evaluator *e)
{
    if (!e) return;
    ffn_free(e->x);
    ffn_free(e->labels);
    ffn_free(e->values);
    free(e);
}

/* The predicted class of each row: the largest output, or logit > 0 for one output. */
static void count_confusion(const float *y, const int32_t *labels, size_t n, size_t out, uint64_t *confusion,
                            size_t classes)
{
    for (size_t i = 0; i < n; i++) {
        size_t pred = 0;
        if (out == 1) {
            pred = y[i] > 0;
        } else {
            for (size_t k = 1; k < out; k++)
                if (y[i * out + k] > y[i * out + pred]) pred = k;
        }
        if ((size_t)labels[i] < classes && pred < classes) confusion[(size_t)labels[i] * classes + pred]++;
    }
}

ffn_status ffn_evaluate(ffn_evaluator *e, ffn_dataset *ds, ffn_comm *comm, ffn_eval_result *out,
                        uint64_t *confusion, size_t classes)
{
    const ffn_dataset_info *info = ffn_dataset_get_info(ds);
    size_t lo = 0, hi = info->rows;
    if (comm) ffn_partition(info->rows, (size_t)ffn_comm_rank(comm), (size_t)ffn_comm_size(comm), &lo, &hi);
    double sums[4] = {0, 0, 0, 0}; /* error, loss, correct, rows */
    ffn_status st = FFN_OK;
    /* Every rank runs as many forwards as the rank with the most rows (a
     * forward of the sharded step gathers parameters collectively): the
     * others, and a rank whose read failed, run the rest without rows. */
    const size_t most = comm ? (info->rows + (size_t)ffn_comm_size(comm) - 1) / (size_t)ffn_comm_size(comm) : hi - lo;
    const size_t batches = (most + e->batch_rows - 1) / e->batch_rows;
    for (size_t b = 0, at = lo; b < batches; b++, at += e->batch_rows) {
        if (at >= hi || st != FFN_OK) {
            ffn_model_forward_without_rows(e->model);
            continue;
        }
        size_t n = hi - at < e->batch_rows ? hi - at : e->batch_rows;
        int32_t *labels = info->has_labels ? e->labels : NULL;
        st = ffn_dataset_read_range(ds, at, n, e->x, labels, labels ? NULL : e->values);
        if (st != FFN_OK) continue;
        const float *y = ffn_model_forward(e->model, e->x, n);
        ffn_targets t = {labels, e->values};
        sums[1] += ffn_loss_forward(e->loss, y, t, n, e->out_dim);
        sums[2] += (double)ffn_count_correct(e->loss, y, t, n, e->out_dim);
        sums[3] += (double)n;
        if (confusion && labels) count_confusion(y, labels, n, e->out_dim, confusion, classes);
    }
    if (comm) {
        sums[0] = st != FFN_OK;
        ffn_status cst = ffn_comm_sum_doubles(comm, sums, 4);
        if (cst != FFN_OK) return cst;
        if (sums[0] > 0) return ffn_comm_agree(comm, st);
    } else if (st != FFN_OK) {
        return st;
    }
    out->loss = sums[1] / sums[3];
    out->accuracy = sums[2] / sums[3];
    out->rows = sums[3];
    return FFN_OK;
}
