/* ffn-eval: evaluate a checkpoint on a dataset, or describe a checkpoint.
 *
 *   ffn-eval --checkpoint FILE --data FILE [--batch-size N] [--json]
 *       loss, accuracy and (for class labels) the confusion matrix
 *   ffn-eval --info FILE
 *       what the checkpoint holds: model, tensors and shapes, optimizer, position, config
 *   ffn-eval --merge-lora IN.h5 --out OUT.h5
 *       a checkpoint whose dense weights are W + (alpha/R)·lora_B·lora_A, with no
 *       adapters in its spec (for deployment, or --init-from without adapters)
 *
 * Exit codes: 0 success, 1 a run-time error, 2 a usage error. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/ckpt.h"
#include "ffn/data.h"
#include "ffn/eval.h"
#include "ffn/loss.h"
#include "ffn/model.h"
#include "ffn/version.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ffn-eval --checkpoint FILE --data FILE [--batch-size N]\n"
            "       ffn-eval --info FILE\n"
            "       ffn-eval --merge-lora IN.h5 --out OUT.h5\n\n"
            "  --checkpoint FILE  checkpoint written by ffn-train (--checkpoint-dir)\n"
            "  --data FILE        dataset in ffn's HDF5 layout (see README)\n"
            "  --batch-size N     rows per forward pass [default: 1024]\n"
            "  --info FILE        print what a checkpoint holds\n"
            "  --merge-lora FILE  merge the LoRA adapters of a checkpoint into its dense weights\n"
            "  --out FILE         where --merge-lora writes (atomically)\n");
}

static int info(const char *path)
{
    ffn_checkpoint c;
    if (ffn_checkpoint_load(&c, path) != FFN_OK) {
        fprintf(stderr, "ffn-eval: error: %s\n", ffn_last_error());
        return 1;
    }
    printf("checkpoint: %s\n", path);
    printf("format_version: %d\n", c.format_version);
    printf("model: %zu -> %s\n", c.input_dim, c.model_spec);
    printf("parameters: %zu (%zu trainable when saved)\n", c.param_count, ffn_model_trainable_count(c.model));
    for (size_t i = 0; i < c.layer_count; i++) {
        const ffn_layer *l = ffn_model_layer_const(c.model, i);
        printf("  layer %zu %s%s:", i, ffn_layer_kind_name(l->spec.kind), l->frozen ? " (frozen)" : "");
        if (!l->tensor_count) printf(" no parameters");
        for (size_t k = 0; k < l->tensor_count; k++) {
            const ffn_tensor *t = &l->tensors[k];
            const char *sep = k ? "  " : " ";
            if (t->ndim == 2)
                printf("%s/model/%zu/%s [%zu, %zu]", sep, i, t->name, t->shape[0], t->shape[1]);
            else
                printf("%s/model/%zu/%s [%zu]", sep, i, t->name, t->shape[0]);
            if (!t->trainable && !l->frozen) printf(" (fixed)");
        }
        printf("\n");
    }
    printf("loss: %s\n", c.loss);
    if (c.optimizer) {
        printf("optimizer: %s, %llu steps, state:", c.optimizer, (unsigned long long)c.optimizer_steps);
        for (size_t i = 0; i < c.state_count; i++) printf(" %s", c.state_names[i]);
        printf("\n");
    }
    printf("position: step %llu, epoch %llu, step_in_epoch %llu, seed %llu\n", (unsigned long long)c.step,
           (unsigned long long)c.epoch, (unsigned long long)c.step_in_epoch, (unsigned long long)c.seed);
    if (c.config_json) printf("config: %s\n", c.config_json);
    ffn_checkpoint_free(&c);
    return 0;
}

/* Writes IN's model with every adapter merged into its weights; the optimizer
 * state (laid out for the adapted model) is dropped, the rest kept. */
static int merge_lora(const char *in, const char *out)
{
    ffn_checkpoint c;
    ffn_model *merged = NULL;
    char *spec = NULL;
    int rc = 1;
    if (ffn_checkpoint_load(&c, in) != FFN_OK) {
        fprintf(stderr, "ffn-eval: error: %s\n", ffn_last_error());
        return 1;
    }
    size_t adapters = 0;
    for (size_t i = 0; i < c.layer_count; i++) adapters += ffn_model_layer_const(c.model, i)->spec.lora_rank != 0;
    if (!adapters) {
        fprintf(stderr, "ffn-eval: error: --merge-lora %s: the model %s has no LoRA adapters\n", in, c.model_spec);
        goto done;
    }
    if (ffn_model_merge_lora(&merged, c.model) != FFN_OK || !(spec = ffn_model_spec_text(merged))) {
        fprintf(stderr, "ffn-eval: error: --merge-lora %s: %s\n", in, ffn_last_error());
        goto done;
    }
    ffn_checkpoint m = {.format_version = FFN_CKPT_FORMAT_VERSION, .model_spec = spec, .input_dim = c.input_dim,
                        .loss = c.loss, .config_json = c.config_json, .model = merged,
                        .param_count = ffn_model_param_count(merged), .params = ffn_model_params(merged),
                        .step = c.step, .epoch = c.epoch, .step_in_epoch = c.step_in_epoch, .seed = c.seed};
    if (ffn_checkpoint_save(&m, out) != FFN_OK) {
        fprintf(stderr, "ffn-eval: error: %s\n", ffn_last_error());
        goto done;
    }
    printf("merged %zu adapter%s: %s (%zu parameters) -> %s: %s (%zu parameters)\n", adapters,
           adapters == 1 ? "" : "s", in, c.param_count, out, spec, ffn_model_param_count(merged));
    rc = 0;
done:
    free(spec);
    ffn_model_free(merged);
    ffn_checkpoint_free(&c);
    return rc;
}

static int evaluate(const char *ckpt_path, const char *data_path, size_t batch)
{
    ffn_checkpoint c;
    ffn_dataset *ds = NULL;
    ffn_evaluator *ev = NULL;
    uint64_t *confusion = NULL;
    int rc = 1;
    if (ffn_checkpoint_load(&c, ckpt_path) != FFN_OK) {
        fprintf(stderr, "ffn-eval: error: %s\n", ffn_last_error());
        return 1;
    }
    int loss_kind = ffn_loss_from_name(c.loss);
    char what[4200];
    snprintf(what, sizeof what, "--data %s", data_path);
    ffn_model *m = c.model; /* the checkpoint's own model holds the parameters */
    size_t out = ffn_model_output_dim(m);
    if (loss_kind < 0) {
        fprintf(stderr, "ffn-eval: error: checkpoint %s: unknown loss '%s'\n", ckpt_path, c.loss);
        goto done;
    }
    if (ffn_checkpoint_check_finite(&c, ckpt_path) != FFN_OK || ffn_dataset_open(&ds, data_path) != FFN_OK ||
        ffn_check_dataset_fits(m, (ffn_loss)loss_kind, ds, what) != FFN_OK ||
        ffn_evaluator_create(&ev, m, (ffn_loss)loss_kind, batch) != FFN_OK) {
        fprintf(stderr, "ffn-eval: error: %s\n", ffn_last_error());
        goto done;
    }
    const ffn_dataset_info *di = ffn_dataset_get_info(ds);
    size_t classes = di->has_labels ? (out > 1 ? out : 2) : 0;
    if (classes && !(confusion = calloc(classes * classes, sizeof *confusion))) {
        fprintf(stderr, "ffn-eval: error: out of memory\n");
        goto done;
    }
    ffn_eval_result res;
    if (ffn_evaluate(ev, ds, NULL, &res, confusion, classes) != FFN_OK) {
        fprintf(stderr, "ffn-eval: error: %s\n", ffn_last_error());
        goto done;
    }
    printf("checkpoint: %s (step %llu)\ndata: %s (%zu rows)\n", ckpt_path, (unsigned long long)c.step,
           data_path, di->rows);
    if (confusion) {
        printf("confusion matrix (rows: true class, columns: predicted):\n      ");
        for (size_t k = 0; k < classes; k++) printf(" %6zu", k);
        printf("\n");
        for (size_t r = 0; r < classes; r++) {
            printf("  %3zu ", r);
            for (size_t k = 0; k < classes; k++) printf(" %6llu", (unsigned long long)confusion[r * classes + k]);
            printf("\n");
        }
    }
    printf("eval: loss %.4f accuracy %.4f\n", res.loss, res.accuracy);
    rc = isfinite(res.loss) ? 0 : 1;
    if (rc) fprintf(stderr, "ffn-eval: error: --data %s: the loss is not finite\n", data_path);
done:
    free(confusion);
    ffn_evaluator_free(ev);
    ffn_dataset_close(ds);
    ffn_checkpoint_free(&c);
    return rc;
}

int main(int argc, char **argv)
{
    const char *ckpt = NULL, *data = NULL, *info_path = NULL, *merge_in = NULL, *out_path = NULL;
    size_t batch = 1024;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            ffn_version_print(stdout, "ffn-eval");
            return 0;
        }
        const char **target = strcmp(a, "--checkpoint") == 0 ? &ckpt
                              : strcmp(a, "--data") == 0     ? &data
                              : strcmp(a, "--info") == 0     ? &info_path
                              : strcmp(a, "--merge-lora") == 0 ? &merge_in
                              : strcmp(a, "--out") == 0      ? &out_path
                                                             : NULL;
        int is_batch = strcmp(a, "--batch-size") == 0;
        if (!target && !is_batch) {
            fprintf(stderr, "ffn-eval: error: unknown argument '%s' (see --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ffn-eval: error: %s: missing value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (target) {
            *target = v;
        } else {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(v, &end, 10);
            if (errno || *end || v[0] == '-' || n == 0 || n > (1u << 24)) {
                fprintf(stderr, "ffn-eval: error: --batch-size: expected an integer in [1, 16777216], got '%s'\n", v);
                return 2;
            }
            batch = (size_t)n;
        }
    }
    if (info_path) return info(info_path);
    if (merge_in || out_path) {
        if (!merge_in || !out_path) {
            fprintf(stderr, "ffn-eval: error: --merge-lora IN.h5 and --out OUT.h5 go together\n");
            return 2;
        }
        return merge_lora(merge_in, out_path);
    }
    if (!ckpt || !data) {
        fprintf(stderr, "ffn-eval: error: give --checkpoint FILE and --data FILE, or --info FILE\n");
        usage(stderr);
        return 2;
    }
    return evaluate(ckpt, data, batch);
}
