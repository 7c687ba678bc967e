/* Example: predictions of a trained model, through libffn's public API.
 *
 *   predict CHECKPOINT DATASET [SHOW]
 *
 * Loads a checkpoint written by ffn-train, runs its model over every row of a
 * dataset in ffn's HDF5 layout and prints, for the first SHOW rows (default
 * 5), the predicted class and its probability (or the outputs, for float
 * targets), then the accuracy over all rows when the dataset has labels:
 *
 *   row 0: class 3 p=0.912 label 3
 *   ...
 *   accuracy 0.8750 (875 of 1000 rows)
 *
 * Build: cc predict.c $(pkg-config --cflags --libs ffn), or with CMake
 * find_package(ffn) and target_link_libraries(predict ffn::ffn). */
#include <stdio.h>
#include <stdlib.h>

#include <ffn/ffn.h>

enum { BATCH = 256 };

static int fail(const char *what)
{
    fprintf(stderr, "predict: %s: %s\n", what, ffn_last_error());
    return 1;
}

/* The predicted class of one row of outputs: the largest (one output: > 0.5
 * after the sigmoid). */
static size_t predicted_class(const float *p, size_t cols)
{
    if (cols == 1) return p[0] > 0.5f;
    size_t best = 0;
    for (size_t j = 1; j < cols; j++)
        if (p[j] > p[best]) best = j;
    return best;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: predict CHECKPOINT DATASET [SHOW]   (ffn %s)\n", ffn_version());
        return 2;
    }
    size_t show = argc > 3 ? strtoul(argv[3], NULL, 10) : 5;

    ffn_checkpoint ckpt;
    if (ffn_checkpoint_load(&ckpt, argv[1]) != FFN_OK) return fail("checkpoint");
    ffn_model *model = ckpt.model; /* built from the file's spec, owned by ckpt */
    ffn_dataset *data = NULL;
    if (ffn_dataset_open(&data, argv[2]) != FFN_OK) {
        ffn_checkpoint_free(&ckpt);
        return fail("dataset");
    }
    const ffn_dataset_info *info = ffn_dataset_get_info(data);
    size_t in = ffn_model_input_dim(model), out = ffn_model_output_dim(model);
    if (info->features != in) {
        fprintf(stderr, "predict: the dataset has %zu features, the model takes %zu\n", info->features, in);
        ffn_dataset_close(data);
        ffn_checkpoint_free(&ckpt);
        return 1;
    }
    /* Outputs are logits; the loss the model was trained with says how they
     * become probabilities (softmax, sigmoid, or none for mse). */
    int loss = ffn_loss_from_name(ckpt.loss);
    ffn_act to_probabilities = loss >= 0 ? ffn_loss_output_act((ffn_loss)loss, out) : FFN_ACT_IDENTITY;

    float *x = malloc(sizeof *x * BATCH * in), *prob = malloc(sizeof *prob * BATCH * out);
    int32_t *labels = malloc(sizeof *labels * BATCH);
    float *values = malloc(sizeof *values * BATCH * info->target_cols);
    int rc = 0;
    if (!x || !prob || !labels || !values || ffn_model_reserve(model, BATCH) != FFN_OK) {
        rc = fail("memory");
        goto done;
    }
    size_t correct = 0;
    for (size_t start = 0; start < info->rows; start += BATCH) {
        size_t n = info->rows - start < BATCH ? info->rows - start : BATCH;
        if (ffn_dataset_read_range(data, start, n, x, info->has_labels ? labels : NULL,
                                   info->has_labels ? NULL : values) != FFN_OK) {
            rc = fail("reading rows");
            goto done;
        }
        const float *logits = ffn_model_forward(model, x, n);
        ffn_act_forward(to_probabilities, 0.0f, logits, prob, n, out);
        for (size_t r = 0; r < n; r++) {
            const float *p = prob + r * out;
            size_t row = start + r;
            if (info->has_labels) {
                size_t cls = predicted_class(p, out);
                correct += cls == (size_t)labels[r];
                if (row < show)
                    printf("row %zu: class %zu p=%.3f label %d\n", row, cls, out == 1 ? (cls ? p[0] : 1 - p[0]) : p[cls],
                           labels[r]);
            } else if (row < show) {
                printf("row %zu:", row);
                for (size_t j = 0; j < out; j++) printf(" %.4f", p[j]);
                printf("\n");
            }
        }
    }
    if (info->has_labels)
        printf("accuracy %.4f (%zu of %zu rows)\n", info->rows ? (double)correct / (double)info->rows : 0.0,
               correct, info->rows);
done:
    free(x);
    free(prob);
    free(labels);
    free(values);
    ffn_dataset_close(data);
    ffn_checkpoint_free(&ckpt);
    return rc;
}
