/* ffn — a model's predictions for every row of a dataset, streamed to a file.
 *
 * What a row gets: for softmax_ce and bce the predicted class (the largest
 * output, first on ties; for bce on one output logit > 0, as accuracy counts
 * it) and the probabilities (softmax, or sigmoid for bce: ffn_loss_output_act);
 * for mse the outputs themselves. The output file's extension picks the format:
 *   .csv   header "class,prob_0,...,prob_<K-1>" (mse: "output_0,...") and one
 *          line a row, floats with 9 significant digits (float32 round-trips);
 *          with class names known, "class,class_name,prob_0,..." and the name
 *          quoted as RFC 4180 does (an empty name past the list)
 *   .npy   classes: a structured array [N] of ('class', '<i4'), ('prob', '<f4', (K,)),
 *          read as a['class'], a['prob']; mse: float32 [N, K]
 *   .h5    /class int32 [N] and /prob float32 [N, K]; mse: /output float32
 *          [N, K]; root attributes loss, checkpoint, data, and class_names
 *          (strings in class order) when known
 *          (.npy holds no names: take them from the checkpoint's
 *          /data/class_names)
 *
 * Data-parallel: rows are cut into batches of batch_rows; each round takes
 * the next P batches, rank r computing batch r of the round (its contiguous
 * share of the round's rows), and rank 0 gathers them and appends them in
 * order. Every batch holds the same rows whatever the rank count, so the
 * output is byte-identical for any P. Memory is bounded by P batches on rank
 * 0 and one on the others. The file is written as OUT.tmp and renamed. */
#ifndef FFN_PREDICT_H
#define FFN_PREDICT_H

#include <stddef.h>
#include "ffn/comm.h"
#include "ffn/data.h"
#include "ffn/loss.h"
#include "ffn/model.h"
#include "ffn/status.h"

typedef enum { FFN_PREDICT_CSV = 0, FFN_PREDICT_NPY, FFN_PREDICT_HDF5 } ffn_predict_format;

/* From OUT's extension (.csv, .npy, .h5 or .hdf5); -1 for any other. */
int ffn_predict_format_of(const char *path);

typedef struct {
    const char *checkpoint, *data; /* recorded in the HDF5 output's attributes; may be NULL */
    const char *const *class_names; /* [class_count] names of the classes, or NULL */
    size_t class_count;
} ffn_predict_source;

/* Collective over comm (NULL: this process alone). ds's /x must have the
 * model's input width. Rank 0 writes out; every rank returns the same status. */
ffn_status ffn_predict(ffn_model *m, ffn_loss loss, ffn_dataset *ds, ffn_comm *comm, size_t batch_rows,
                       const char *out, ffn_predict_source source);

#endif
