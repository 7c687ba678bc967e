/* ffn — a model evaluated on a whole dataset: mean loss, accuracy and, for
 * class labels, a confusion matrix. One function for ffn-train's --val and
 * --test and for ffn-eval, alone or across ranks. */
#ifndef FFN_EVAL_H
#define FFN_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/comm.h"
#include "ffn/data.h"
#include "ffn/loss.h"
#include "ffn/model.h"
#include "ffn/status.h"

/* Whether ds fits the model and the loss: /x has the model's input width, and
 * /y holds what the loss reads (int32 labels below the output count; bce on
 * one output: 0/1) or float targets as wide as the output. Errors begin with
 * `what` (e.g. "--val data/val.h5") and say what was expected. */
ffn_status ffn_check_dataset_fits(const ffn_model *m, ffn_loss loss, const ffn_dataset *ds, const char *what);

typedef struct {
    double loss;      /* mean over the rows */
    double accuracy;  /* share of rows predicted right (ffn_count_correct) */
    double rows;
} ffn_eval_result;

/* Reads batch_rows rows at a time into buffers of its own (allocated once)
 * and runs the model's evaluation forward (reserved here for batch_rows). */
typedef struct ffn_evaluator ffn_evaluator;
ffn_status ffn_evaluator_create(ffn_evaluator **out, ffn_model *m, ffn_loss loss, size_t batch_rows);
void ffn_evaluator_free(ffn_evaluator *e);

/* Collective over comm (NULL: this process alone): each rank takes its share
 * of the rows (ffn_partition) and the sums are reduced. A read error on any
 * rank is returned by all. confusion [classes, classes] (rows: true class,
 * columns: predicted; NULL for none) counts this rank's rows. */
ffn_status ffn_evaluate(ffn_evaluator *e, ffn_dataset *ds, ffn_comm *comm, ffn_eval_result *out,
                        uint64_t *confusion, size_t classes);

#endif
