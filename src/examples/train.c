/* Example: training a small model in a few calls, through libffn's step
 * module (the step ffn-train itself runs).
 *
 *   train [DATASET|-] [EPOCHS]
 *
 * Without DATASET (or with -) it makes its own: three Gaussian blobs in the plane, 600
 * points. With one (ffn's HDF5 layout, integer labels), it trains on up to
 * its first 4096 rows. It prints the mean loss and accuracy of each epoch:
 *
 *   epoch 1: loss 0.9021 accuracy 0.6133
 *   ...
 *   loss 0.9021 -> 0.0712
 *
 * A single process needs no mpirun (ffn_comm_init starts MPI as a singleton);
 * under mpirun -np N each rank trains on its share of every batch and the
 * gradients are summed, so every rank ends with the same model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ffn/ffn.h>

enum { BATCH = 64, MAX_ROWS = 4096, BLOBS = 3, BLOB_ROWS = 200 };

typedef struct {
    size_t rows, features, classes;
    float *x;        /* [rows, features] */
    int32_t *labels; /* [rows] */
} table;

/* Three blobs around the corners of a triangle, one class each. */
static int make_blobs(table *t)
{
    t->rows = BLOBS * BLOB_ROWS, t->features = 2, t->classes = BLOBS;
    t->x = malloc(sizeof *t->x * t->rows * 2);
    t->labels = malloc(sizeof *t->labels * t->rows);
    if (!t->x || !t->labels) return -1;
    static const float centre[BLOBS][2] = {{0.0f, 2.0f}, {-1.7f, -1.0f}, {1.7f, -1.0f}};
    ffn_rng rng = ffn_rng_make(7, FFN_STREAM_DATA);
    for (size_t i = 0; i < t->rows; i++) {
        size_t c = ffn_rng_below(&rng, BLOBS);
        t->labels[i] = (int32_t)c;
        t->x[2 * i] = centre[c][0] + 0.7f * (float)ffn_rng_normal(&rng);
        t->x[2 * i + 1] = centre[c][1] + 0.7f * (float)ffn_rng_normal(&rng);
    }
    return 0;
}

static int read_dataset(table *t, const char *path)
{
    ffn_dataset *ds;
    if (ffn_dataset_open(&ds, path) != FFN_OK) return -1;
    const ffn_dataset_info *info = ffn_dataset_get_info(ds);
    if (!info->has_labels) {
        ffn_dataset_close(ds);
        ffn_fail(FFN_ERR_ARG, "%s: this example trains on class labels; the dataset has float targets", path);
        return -1;
    }
    t->rows = info->rows < MAX_ROWS ? info->rows : MAX_ROWS;
    t->features = info->features, t->classes = info->num_classes;
    t->x = malloc(sizeof *t->x * t->rows * t->features);
    t->labels = malloc(sizeof *t->labels * t->rows);
    ffn_status st = t->x && t->labels ? ffn_dataset_read_range(ds, 0, t->rows, t->x, t->labels, NULL)
                                      : ffn_fail(FFN_ERR_NOMEM, "out of memory");
    ffn_dataset_close(ds);
    return st == FFN_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
    ffn_comm *comm;
    if (ffn_comm_init(&comm, &argc, &argv) != FFN_OK) {
        fprintf(stderr, "train: %s\n", ffn_last_error());
        return 1;
    }
    int rank = ffn_comm_rank(comm), ranks = ffn_comm_size(comm);
    int epochs = argc > 2 ? atoi(argv[2]) : 20;
    table data = {0};
    ffn_model *model = NULL;
    ffn_step *step = NULL;
    float *x = NULL;
    int32_t *labels = NULL;
    int rc = 1;
    const char *path = argc > 1 && strcmp(argv[1], "-") != 0 ? argv[1] : NULL;
    if ((path ? read_dataset(&data, path) : make_blobs(&data)) != 0) goto done;

    /* The model: a spec string, like ffn-train's --model. */
    char spec[64];
    snprintf(spec, sizeof spec, "dense:32:relu,dense:%zu", data.classes);
    if (ffn_model_create_from_text(&model, spec, data.features) != FFN_OK ||
        ffn_model_reserve(model, BATCH) != FFN_OK)
        goto done;
    ffn_model_init_params(model, 1); /* same seed, same weights on every rank */

    /* The step: loss, optimizer, and how gradients travel between ranks. */
    ffn_step_config cfg = {.loss = FFN_LOSS_SOFTMAX_CE, .optim = ffn_optim_defaults(FFN_OPT_ADAM),
                           .bucket_bytes = FFN_DEFAULT_BUCKET_BYTES, .max_rows = BATCH, .seed = 1};
    if (ffn_step_create(&step, model, comm, &cfg) != FFN_OK) goto done;
    ffn_step_prepare(step, 0, 1);

    x = malloc(sizeof *x * BATCH * data.features);
    labels = malloc(sizeof *labels * BATCH);
    uint64_t *order = malloc(sizeof *order * data.rows);
    if (!x || !labels || !order) {
        free(order);
        ffn_fail(FFN_ERR_NOMEM, "out of memory");
        goto done;
    }
    const float lr = 0.01f;
    double first_loss = 0, last_loss = 0;
    uint64_t steps = 0;
    for (int epoch = 0; epoch < epochs; epoch++) {
        /* The same shuffle on every rank: (seed, epoch) names the stream. */
        ffn_rng shuffle = ffn_rng_make(1, FFN_STREAM_SHUFFLE + ((uint64_t)epoch << 8));
        ffn_rng_permutation(&shuffle, order, data.rows);
        double loss_sum = 0, correct = 0, rows = 0;
        for (size_t start = 0; start < data.rows; start += BATCH, steps++) {
            size_t n = data.rows - start < BATCH ? data.rows - start : BATCH;
            size_t lo, hi; /* this rank's share of the global batch */
            ffn_comm_slice(comm, n, rank, &lo, &hi);
            for (size_t r = lo; r < hi; r++) {
                size_t row = order[start + r];
                for (size_t j = 0; j < data.features; j++)
                    x[(r - lo) * data.features + j] = data.x[row * data.features + j];
                labels[r - lo] = data.labels[row];
            }
            ffn_step_batch batch = {.x = x, .targets = {.labels = labels}, .rows = hi - lo};
            ffn_step_stats stats;
            ffn_step_begin(step, steps, n);
            ffn_step_micro(step, &batch, 1);
            if (ffn_step_finish(step, steps, (uint64_t)epoch, lr, 0, &stats) != FFN_OK) {
                free(order);
                goto done;
            }
            loss_sum += stats.loss_sum, correct += stats.correct, rows += stats.rows;
        }
        last_loss = loss_sum / rows;
        if (epoch == 0) first_loss = last_loss;
        if (rank == 0) printf("epoch %d: loss %.4f accuracy %.4f\n", epoch + 1, last_loss, correct / rows);
    }
    free(order);
    if (rank == 0) printf("loss %.4f -> %.4f (%d ranks)\n", first_loss, last_loss, ranks);
    rc = 0;
done:
    if (rc != 0 && rank == 0) fprintf(stderr, "train: %s\n", ffn_last_error());
    free(x);
    free(labels);
    free(data.x);
    free(data.labels);
    ffn_step_free(step);
    ffn_model_free(model);
    ffn_comm_finalize(comm);
    return rc;
}
