/* ffn — the training loop: data, forward, loss, backward with the gradient
 * exchange, optimizer step, evaluation and reporting, on every rank alike.
 *
 * Every rank runs the same sequence of collectives whatever happens locally:
 * a rank whose batch failed to read still joins the gradient exchange (with
 * zero gradients) and reports the failure in the step's one small metrics
 * reduction, after which all ranks agree on the message and stop together. */
#ifndef FFN_TRAIN_H
#define FFN_TRAIN_H

#include <stdint.h>
#include "ffn/comm.h"
#include "ffn/config.h"
#include "ffn/status.h"

typedef struct {
    uint64_t steps;          /* optimizer steps taken in this run */
    double samples;          /* training rows processed, all ranks */
    double seconds;          /* wall time of the training loop (evaluation excluded) */
    double samples_per_second;
    double data_wait_fraction, comm_wait_fraction;
    int has_final;           /* a final evaluation ran */
    const char *final_split; /* "test", "val" or "train" */
    double final_loss, final_accuracy;
} ffn_train_result;

/* Collective over comm. Rank 0 prints progress (unless cfg->quiet). Returns
 * FFN_OK or the agreed error (the same on every rank, message in ffn_last_error). */
ffn_status ffn_train_run(const ffn_train_config *cfg, ffn_comm *comm, ffn_train_result *result);

#endif
