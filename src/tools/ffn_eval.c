/* ffn-eval: evaluate a checkpoint on a dataset, predict with it, export it,
 * or describe it.
 *
 *   [mpirun -np N] ffn-eval --checkpoint FILE --data FILE [--batch-size N] [--json]
 *       loss, accuracy and (for class labels) the confusion matrix; --json: as
 *       one JSON object
 *   [mpirun -np N] ffn-eval --checkpoint FILE --data FILE --predict OUT.csv|.npy|.h5
 *       the predicted class and class probabilities (mse: the outputs) of every
 *       row, in order; /y is not needed (and the class names, when the checkpoint
 *       records them). Raw --data gets the checkpoint's standardization
 *       statistics applied; data standardized otherwise is refused.
 *   ffn-eval --checkpoint FILE --export OUT.npz|OUT.safetensors
 *       the weights under PyTorch nn.Sequential names, with the ffn spec
 * A checkpoint may be a .npz or .safetensors weights file (ffn/weights.h);
 * when it carries no ffn spec, --model SPEC gives it (and --loss NAME the loss,
 * default softmax_ce).
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

#include <cjson/cJSON.h>

#include "ffn/ckpt.h"
#include "ffn/comm.h"
#include "ffn/data.h"
#include "ffn/eval.h"
#include "../files.h"
#include "../gemm.h" /* internal: the products' threads */
#include "ffn/loss.h"
#include "ffn/model.h"
#include "ffn/predict.h"
#include "ffn/version.h"
#include "ffn/weights.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: [mpirun -np N] ffn-eval --checkpoint FILE --data FILE [--batch-size N] [--json]\n"
            "       [mpirun -np N] ffn-eval --checkpoint FILE --data FILE --predict OUT.csv|OUT.npy|OUT.h5\n"
            "       ffn-eval --checkpoint FILE --export OUT.npz|OUT.safetensors\n"
            "       ffn-eval --info FILE\n"
            "       ffn-eval --merge-lora IN.h5 --out OUT.h5\n\n"
            "  --checkpoint FILE  checkpoint written by ffn-train (--checkpoint-dir), or a .npz or\n"
            "                     .safetensors weights file (PyTorch nn.Sequential names)\n"
            "  --data FILE        dataset in ffn's HDF5 layout (see README); --predict needs only /x.\n"
            "                     When the checkpoint records standardization statistics, raw data\n"
            "                     is standardized with them; data standardized otherwise is refused\n"
            "  --batch-size N     rows per forward pass [default: 1024]\n"
            "  --precision P      fp32, or bf16: the matrix products with bf16 operands and fp32\n"
            "                     accumulation (oneDNN, CPUs with AVX512_BF16/AMX) [default: fp32]\n"
            "  --gemm B           auto, openblas or onednn: the library of the products (as ffn-train's)\n"
            "  --json             print the evaluation as one JSON object\n"
            "  --predict OUT      write each row's predicted class and class probabilities (mse: the\n"
            "                     outputs) to OUT; the extension picks CSV, NPY or HDF5; with class\n"
            "                     names in the checkpoint, CSV adds a class_name column (HDF5: an attribute)\n"
            "  --export OUT       write the weights as .npz or .safetensors, with the ffn spec\n"
            "  --model SPEC       the model of a weights file that carries no ffn spec\n"
            "  --loss NAME        its loss when the file names none [default: softmax_ce]\n"
            "  --info FILE        print what a checkpoint holds\n"
            "  --merge-lora FILE  merge the LoRA adapters of a checkpoint into its dense weights\n"
            "  --out FILE         where --merge-lora writes (atomically)\n"
            "  --version          print the version of ffn and of the libraries it runs on\n");
}

/* What --model and --loss say, for weights files that carry no ffn spec. */
static const char *model_hint, *loss_hint;
static ffn_precision precision = FFN_PRECISION_FP32; /* --precision */
static ffn_gemm_backend gemm_backend = FFN_GEMM_AUTO;  /* --gemm */

/* A checkpoint, or a .npz/.safetensors weights file read as one. */
static ffn_status load_checkpoint(ffn_checkpoint *c, const char *path)
{
    if (ffn_weights_format_of(path) != FFN_WEIGHTS_NONE) return ffn_weights_load(c, path, model_hint, loss_hint);
    return ffn_checkpoint_load(c, path);
}

static int info(const char *path)
{
    ffn_checkpoint c;
    if (load_checkpoint(&c, path) != FFN_OK) {
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
    if (c.meta.class_count) {
        printf("class names: %zu (", c.meta.class_count);
        for (size_t k = 0; k < c.meta.class_count && k < 10; k++) printf("%s%zu:%.60s", k ? " " : "", k, c.meta.class_names[k]);
        printf("%s)\n", c.meta.class_count > 10 ? " ..." : "");
    }
    if (c.meta.features)
        printf("standardized inputs: /data/feature_mean, /data/feature_std over %zu features (applied to raw data)\n",
               c.meta.features);
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
    if (load_checkpoint(&c, in) != FFN_OK) {
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
                        .step = c.step, .epoch = c.epoch, .step_in_epoch = c.step_in_epoch, .seed = c.seed,
                        .meta = c.meta};
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

/* Everything a rank needs before it evaluates or predicts: the checkpoint
 * (finite values), its loss, and the dataset (features only for --predict).
 * Collective: every rank learns whether all succeeded. */
typedef struct {
    ffn_checkpoint ckpt;
    int loaded;
    ffn_loss loss;
    ffn_dataset *ds;
} session;

/* The data's standardization against the checkpoint's (its training
 * data's): raw data gets the checkpoint's statistics applied on read, data
 * standardized alike is used as it is, any other is refused; for evaluation,
 * class names other than the checkpoint's are refused too. */
static ffn_status match_statistics(session *s, ffn_comm *comm, const char *ckpt_path, const char *data_path,
                                   int features_only)
{
    const ffn_data_meta *cm = &s->ckpt.meta;
    ffn_data_meta dm;
    ffn_status st = ffn_data_meta_read(data_path, &dm);
    if (st != FFN_OK) return st;
    size_t d = ffn_dataset_get_info(s->ds)->features;
    if (d != s->ckpt.input_dim) { /* the width check that follows says what is wrong */
        ffn_data_meta_free(&dm);
        return FFN_OK;
    }
    if (dm.features && !ffn_data_meta_same_stats(cm, &dm)) {
        st = cm->features ? ffn_fail(FFN_ERR_ARG, "--data %s is standardized with other statistics (/feature_mean, "
                                     "/feature_std) than checkpoint %s's training data; convert it from the raw data "
                                     "with --standardize-like TRAIN.h5, or give the raw data (the checkpoint's "
                                     "statistics are then applied)", data_path, ckpt_path)
                          : ffn_fail(FFN_ERR_ARG, "--data %s is standardized (/feature_mean, /feature_std), but "
                                     "checkpoint %s's model was trained on raw data; give the raw data", data_path,
                                     ckpt_path);
    } else if (!dm.features && cm->features && cm->features == d) {
        st = ffn_dataset_standardize(s->ds, cm->mean, cm->std);
        if (st == FFN_OK && ffn_comm_rank(comm) == 0)
            fprintf(stderr, "ffn-eval: note: --data %s is raw: standardizing it with checkpoint %s's statistics "
                    "(/data/feature_mean, /data/feature_std)\n", data_path, ckpt_path);
    }
    if (st == FFN_OK && !features_only && !ffn_data_meta_same_names(cm, &dm)) {
        st = ffn_fail(FFN_ERR_ARG, "--data %s has other class_names than checkpoint %s's training data (%zu and "
                      "%zu names); its labels would mean other classes", data_path, ckpt_path, dm.class_count,
                      cm->class_count);
    }
    ffn_data_meta_free(&dm);
    return st;
}

static ffn_status open_session(session *s, ffn_comm *comm, const char *ckpt_path, const char *data_path,
                               int features_only)
{
    memset(s, 0, sizeof *s);
    ffn_status st = load_checkpoint(&s->ckpt, ckpt_path);
    s->loaded = st == FFN_OK;
    int kind = s->loaded ? ffn_loss_from_name(s->ckpt.loss) : 0;
    if (st == FFN_OK && kind < 0)
        st = ffn_fail(FFN_ERR_FORMAT, "checkpoint %s: unknown loss '%s'", ckpt_path, s->ckpt.loss);
    s->loss = (ffn_loss)(kind < 0 ? 0 : kind);
    if (st == FFN_OK) st = ffn_checkpoint_check_finite(&s->ckpt, ckpt_path);
    if (st == FFN_OK)
        st = features_only ? ffn_dataset_open_features(&s->ds, data_path) : ffn_dataset_open(&s->ds, data_path);
    if (st == FFN_OK) st = match_statistics(s, comm, ckpt_path, data_path, features_only);
    return ffn_comm_agree(comm, st);
}

static void close_session(session *s)
{
    ffn_dataset_close(s->ds);
    if (s->loaded) ffn_checkpoint_free(&s->ckpt);
}

/* Prints the metrics as one JSON object (rank 0). */
static int print_json(const char *ckpt_path, const ffn_checkpoint *c, const char *data_path, const ffn_eval_result *res,
                      const uint64_t *confusion, size_t classes)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "checkpoint", ckpt_path);
    cJSON_AddNumberToObject(o, "step", (double)c->step);
    cJSON_AddStringToObject(o, "model", c->model_spec);
    cJSON_AddStringToObject(o, "loss_kind", c->loss);
    cJSON_AddStringToObject(o, "data", data_path);
    cJSON_AddNumberToObject(o, "rows", res->rows);
    cJSON_AddNumberToObject(o, "loss", res->loss);
    cJSON_AddNumberToObject(o, "accuracy", res->accuracy);
    if (confusion) {
        cJSON *m = cJSON_AddArrayToObject(o, "confusion");
        for (size_t r = 0; m && r < classes; r++) {
            cJSON *row = cJSON_CreateArray();
            for (size_t k = 0; row && k < classes; k++)
                cJSON_AddItemToArray(row, cJSON_CreateNumber((double)confusion[r * classes + k]));
            cJSON_AddItemToArray(m, row);
        }
    } else {
        cJSON_AddNullToObject(o, "confusion");
    }
    if (c->meta.class_count) {
        cJSON *names = cJSON_AddArrayToObject(o, "class_names");
        for (size_t k = 0; names && k < c->meta.class_count; k++)
            cJSON_AddItemToArray(names, cJSON_CreateString(c->meta.class_names[k]));
    }
    cJSON_AddBoolToObject(o, "standardized", c->meta.features != 0);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text) {
        fprintf(stderr, "ffn-eval: error: out of memory\n");
        return 1;
    }
    printf("%s\n", text);
    free(text);
    return 0;
}

static int evaluate(ffn_comm *comm, const char *ckpt_path, const char *data_path, size_t batch, int json)
{
    int rank = ffn_comm_rank(comm);
    session s;
    ffn_evaluator *ev = NULL;
    uint64_t *confusion = NULL;
    double *sums = NULL;
    char what[4200];
    snprintf(what, sizeof what, "--data %s", data_path);
    ffn_status st = open_session(&s, comm, ckpt_path, data_path, 0);
    ffn_model *m = st == FFN_OK ? s.ckpt.model : NULL; /* the checkpoint's own model holds the parameters */
    size_t classes = 0;
    if (st == FFN_OK) {
        size_t out = ffn_model_output_dim(m);
        classes = ffn_dataset_get_info(s.ds)->has_labels ? (out > 1 ? out : 2) : 0;
        st = ffn_check_dataset_fits(m, s.loss, s.ds, what);
        if (st == FFN_OK) st = ffn_model_set_compute(m, precision, gemm_backend);
        if (st == FFN_OK) st = ffn_evaluator_create(&ev, m, s.loss, batch);
        if (st == FFN_OK && classes &&
            (!(confusion = calloc(classes * classes, sizeof *confusion)) ||
             !(sums = calloc(classes * classes, sizeof *sums))))
            st = ffn_fail(FFN_ERR_NOMEM, "out of memory");
        st = ffn_comm_agree(comm, st);
    }
    ffn_eval_result res;
    if (st == FFN_OK) st = ffn_evaluate(ev, s.ds, comm, &res, confusion, classes);
    if (st == FFN_OK && confusion) { /* each rank counted its own rows */
        for (size_t i = 0; i < classes * classes; i++) sums[i] = (double)confusion[i];
        st = ffn_comm_sum_doubles(comm, sums, classes * classes);
        for (size_t i = 0; i < classes * classes; i++) confusion[i] = (uint64_t)sums[i];
    }
    int rc = 1;
    if (st != FFN_OK) {
        if (rank == 0) fprintf(stderr, "ffn-eval: error: %s\n", ffn_last_error());
    } else if (rank == 0 && json) {
        rc = print_json(ckpt_path, &s.ckpt, data_path, &res, confusion, classes);
    } else if (rank == 0) {
        printf("checkpoint: %s (step %llu)\ndata: %s (%zu rows)\n", ckpt_path, (unsigned long long)s.ckpt.step,
               data_path, ffn_dataset_get_info(s.ds)->rows);
        const ffn_data_meta *names = &s.ckpt.meta;
        if (confusion && names->class_count) {
            printf("classes:");
            for (size_t k = 0; k < classes; k++)
                printf(" %zu:%.40s", k, k < names->class_count ? names->class_names[k] : "?");
            printf("\n");
        }
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
        rc = 0;
    } else {
        rc = 0;
    }
    if (st == FFN_OK && !isfinite(res.loss)) {
        rc = 1;
        if (rank == 0) fprintf(stderr, "ffn-eval: error: --data %s: the loss is not finite\n", data_path);
    }
    free(sums);
    free(confusion);
    ffn_evaluator_free(ev);
    close_session(&s);
    return rc;
}

/* 1 (with a message) when out names one of the inputs: the checkpoint, the
 * dataset or a file the dataset reads through a virtual /x. */
static int output_over_input(int rank, const char *flag, const char *out, const char *ckpt_path,
                             const char *data_path)
{
    const char *hit = ffn_same_file(out, ckpt_path) ? ckpt_path : data_path && ffn_same_file(out, data_path) ? data_path : NULL;
    if (hit && rank == 0) fprintf(stderr, "ffn-eval: error: %s %s is the input %s; expected a new file\n", flag, out, hit);
    return hit != NULL;
}

static int predict(ffn_comm *comm, const char *ckpt_path, const char *data_path, size_t batch, const char *out)
{
    int rank = ffn_comm_rank(comm);
    if (output_over_input(rank, "--predict", out, ckpt_path, data_path)) return 2;
    if (ffn_predict_format_of(out) < 0) {
        if (rank == 0) fprintf(stderr, "ffn-eval: error: --predict %s: expected a name ending in .csv, .npy or .h5\n", out);
        return 2;
    }
    session s;
    ffn_status st = open_session(&s, comm, ckpt_path, data_path, 1);
    for (size_t i = 0; st == FFN_OK && i < ffn_dataset_source_count(s.ds); i++)
        if (ffn_same_file(out, ffn_dataset_source(s.ds, i)))
            st = ffn_fail(FFN_ERR_ARG, "--predict %s is %s, which --data %s reads; expected a new file", out,
                          ffn_dataset_source(s.ds, i), data_path);
    if (st == FFN_OK) st = ffn_model_set_compute(s.ckpt.model, precision, gemm_backend);
    if (st == FFN_OK)
        st = ffn_predict(s.ckpt.model, s.loss, s.ds, comm, batch, out,
                         (ffn_predict_source){.checkpoint = ckpt_path, .data = data_path,
                                              .class_names = (const char *const *)s.ckpt.meta.class_names,
                                              .class_count = s.ckpt.meta.class_count});
    if (st != FFN_OK) {
        if (rank == 0) fprintf(stderr, "ffn-eval: error: %s\n", ffn_last_error());
    } else if (rank == 0) {
        printf("predictions: %s (%zu rows; %s)\n", out, ffn_dataset_get_info(s.ds)->rows,
               s.loss == FFN_LOSS_MSE ? "the outputs" : "class and probabilities");
    }
    close_session(&s);
    return st == FFN_OK ? 0 : st == FFN_ERR_ARG ? 2 : 1;
}

static int export_weights(const char *ckpt_path, const char *out)
{
    if (ffn_weights_format_of(out) == FFN_WEIGHTS_NONE) {
        fprintf(stderr, "ffn-eval: error: --export %s: expected a name ending in .npz or .safetensors\n", out);
        return 2;
    }
    if (output_over_input(0, "--export", out, ckpt_path, NULL)) return 2;
    ffn_checkpoint c;
    if (load_checkpoint(&c, ckpt_path) != FFN_OK) {
        fprintf(stderr, "ffn-eval: error: %s\n", ffn_last_error());
        return 1;
    }
    ffn_status st = ffn_weights_save_meta(c.model, c.loss, &c.meta, out);
    if (st != FFN_OK) fprintf(stderr, "ffn-eval: error: --export %s\n", ffn_last_error());
    else printf("exported: %s (%s, %zu parameters) -> %s\n", ckpt_path, c.model_spec, c.param_count, out);
    ffn_checkpoint_free(&c);
    return st == FFN_OK ? 0 : st == FFN_ERR_ARG ? 2 : 1;
}

/* The value table t names v, or -1 after a message naming the flag and the choices. */
static int named_value(const char *flag, const char *v, const ffn_names *t)
{
    int k = ffn_names_find(t, v);
    if (k < 0) {
        char list[FFN_NAMES_LIST_MAX];
        fprintf(stderr, "ffn-eval: error: %s: expected %s, got '%s'\n", flag, ffn_names_list(t, list, sizeof list), v);
    }
    return k;
}

static int run(ffn_comm *comm, int argc, char **argv)
{
    const char *ckpt = NULL, *data = NULL, *info_path = NULL, *merge_in = NULL, *out_path = NULL;
    const char *predict_path = NULL, *export_path = NULL, *precision_name = NULL, *gemm_name = NULL;
    int json = 0;
    size_t batch = 1024;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            if (ffn_comm_rank(comm) == 0) ffn_version_print(stdout, "ffn-eval");
            return 0;
        }
        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        const char **target = strcmp(a, "--checkpoint") == 0 ? &ckpt
                              : strcmp(a, "--data") == 0     ? &data
                              : strcmp(a, "--info") == 0     ? &info_path
                              : strcmp(a, "--merge-lora") == 0 ? &merge_in
                              : strcmp(a, "--out") == 0      ? &out_path
                              : strcmp(a, "--predict") == 0  ? &predict_path
                              : strcmp(a, "--export") == 0   ? &export_path
                              : strcmp(a, "--model") == 0    ? &model_hint
                              : strcmp(a, "--loss") == 0     ? &loss_hint
                              : strcmp(a, "--precision") == 0 ? &precision_name
                              : strcmp(a, "--gemm") == 0     ? &gemm_name
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
    int named;
    if (precision_name) {
        if ((named = named_value("--precision", precision_name, &ffn_precision_names)) < 0) return 2;
        precision = (ffn_precision)named;
    }
    if (gemm_name) {
        if ((named = named_value("--gemm", gemm_name, &ffn_gemm_backend_names)) < 0) return 2;
        gemm_backend = (ffn_gemm_backend)named;
    }
    if (loss_hint && ffn_loss_from_name(loss_hint) < 0) {
        char kinds[256];
        fprintf(stderr, "ffn-eval: error: --loss: expected %s, got '%s'\n",
                ffn_names_list(&ffn_loss_names, kinds, sizeof kinds), loss_hint);
        return 2;
    }
    if ((info_path || merge_in || out_path || export_path) && ffn_comm_rank(comm) != 0)
        return 0; /* one process's work: rank 0 does it */
    if (info_path) return info(info_path);
    if (merge_in || out_path) {
        if (!merge_in || !out_path) {
            fprintf(stderr, "ffn-eval: error: --merge-lora IN.h5 and --out OUT.h5 go together\n");
            return 2;
        }
        return merge_lora(merge_in, out_path);
    }
    if (export_path) {
        if (!ckpt) {
            fprintf(stderr, "ffn-eval: error: --export OUT needs --checkpoint FILE\n");
            return 2;
        }
        return export_weights(ckpt, export_path);
    }
    if (!ckpt || !data) {
        fprintf(stderr, "ffn-eval: error: give --checkpoint FILE and --data FILE, or --info FILE\n");
        usage(stderr);
        return 2;
    }
    if (predict_path) return predict(comm, ckpt, data, batch, predict_path);
    return evaluate(comm, ckpt, data, batch, json);
}

int main(int argc, char **argv)
{
    /* A singleton without mpirun; under mpirun every rank evaluates or
     * predicts its share of the rows, and the other actions run on rank 0. */
    ffn_comm *comm = NULL;
    if (ffn_comm_init(&comm, &argc, &argv) != FFN_OK) {
        fprintf(stderr, "ffn-eval: error: %s\n", ffn_last_error());
        return 1;
    }
    /* The node's cores shared among its ranks, for OpenBLAS and oneDNN alike
     * (as ffn-train's default): ranks never oversubscribe the node. */
    ffn_gemm_set_threads(ffn_comm_default_threads(comm));
    int rc = run(comm, argc, argv);
    ffn_comm_finalize(comm);
    return rc;
}
