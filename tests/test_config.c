/* Configuration files: ffn-train --config FILE.json and --config CKPT.h5, the
 * command line overriding the file, typed keys, suggestions for unknown flags
 * and keys, and --print-config. */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ffn/ckpt.h"
#include "ffn/config.h"
#include "ffn/model.h"
#include "check.h"
#include "fixtures.h"

static char dir[] = "/tmp/ffn-test-config.XXXXXX";

static const char *in_dir(const char *name)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

/* Parses "ffn-train ARGS..." (NULL-terminated) into cfg from the defaults. */
static ffn_status parse(ffn_train_config *cfg, int *help, ...)
{
    char *argv[32] = {"ffn-train"};
    int argc = 1;
    va_list args;
    va_start(args, help);
    for (char *arg; argc < 31 && (arg = va_arg(args, char *));) argv[argc++] = arg;
    va_end(args);
    argv[argc] = NULL;
    ffn_config_defaults(cfg);
    int unused;
    return ffn_config_parse(cfg, argc, argv, help ? help : &unused);
}

static int error_is(const char *expected)
{
    int same = strcmp(ffn_last_error(), expected) == 0;
    if (!same) fprintf(stderr, "  got:      %s\n  expected: %s\n", ffn_last_error(), expected);
    return same;
}

static void test_file_sets_values(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s", in_dir("run.json"));
    CHECK(write_text_file(path, "{\"train\": \"t.h5\", \"lr\": 0.01, \"epochs\": 3, \"quiet\": true, \"optimizer\": \"sgd\",\n"
                                " \"momentum\": 0.9, \"nesterov\": true, \"val\": null, \"checkpoint-every\": \"5steps\"}\n") == 0);
    ffn_train_config cfg;
    CHECK(parse(&cfg, NULL, "--config", path, NULL) == FFN_OK);
    CHECK(strcmp(cfg.train_path, "t.h5") == 0);
    CHECK(cfg.lr == 0.01f && cfg.epochs == 3 && cfg.quiet == 1 && cfg.optimizer == FFN_OPT_SGD);
    CHECK(cfg.momentum == 0.9f && cfg.nesterov == 1 && cfg.val_path == NULL);
    CHECK(ffn_config_validate(&cfg) == FFN_OK && cfg.checkpoint_every_steps == 5);
    ffn_config_release(&cfg);

    /* The command line overrides the file, before or after --config. */
    CHECK(parse(&cfg, NULL, "--epochs", "7", "--config", path, "--lr=0.5", NULL) == FFN_OK);
    CHECK(cfg.epochs == 7 && cfg.lr == 0.5f && strcmp(cfg.train_path, "t.h5") == 0);
    ffn_config_release(&cfg);
    CHECK(parse(&cfg, NULL, "--config=" "/nonexistent/x.json", NULL) == FFN_ERR_ARG);
    CHECK(strstr(ffn_last_error(), "--config /nonexistent/x.json: cannot open") != NULL);
    ffn_config_release(&cfg);

    /* --print-config: reported to the caller, values merged. */
    int help = 0;
    CHECK(parse(&cfg, &help, "--print-config", "--config", path, "--seed", "5", NULL) == FFN_OK);
    CHECK(help == FFN_CONFIG_PRINT && cfg.seed == 5 && cfg.epochs == 3);
    char *json = ffn_config_to_json_pretty(&cfg);
    cJSON *back = cJSON_Parse(json);
    CHECK(back && cJSON_GetObjectItem(back, "seed")->valuedouble == 5);
    CHECK(back && cJSON_GetObjectItem(back, "lr")->valuedouble == 0.01); /* floats as typed */
    cJSON_Delete(back);
    free(json);
    ffn_config_release(&cfg);
    CHECK(parse(&cfg, NULL, "--config", path, "--config", path, NULL) == FFN_ERR_ARG);
    CHECK(error_is("--config: given twice (give one file; flags on the command line override it)"));
    ffn_config_release(&cfg);
}

static void test_file_errors(void)
{
    static const struct {
        const char *json, *message; /* message after "PATH: " */
    } cases[] = {
        {"{\"epochs\": true}", "key 'epochs': expected an integer (or its digits as a string), got true"},
        {"{\"epochs\": 2.5}", "key 'epochs': expected a positive integer, got '2.5'"},
        {"{\"epochs\": \"3x\"}", "key 'epochs': expected a positive integer, got '3x'"},
        {"{\"lr\": \"0.1\"}", "key 'lr': expected a number, got \"0.1\""},
        {"{\"threads\": [1]}", "key 'threads': expected an integer, got [1]"},
        {"{\"lr\": -1}", "key 'lr': expected a positive number, got '-1'"},
        {"{\"train\": 5}", "key 'train': expected a string (FILE) or null, got 5"},
        {"{\"train\": \"\"}", "key 'train': expected a non-empty value, got ''"},
        {"{\"quiet\": \"yes\"}", "key 'quiet': expected true or false, got \"yes\""},
        {"{\"loss\": \"hinge\"}", "key 'loss': expected mse, bce or softmax_ce, got 'hinge'"},
        {"{\"loss\": 1}", "key 'loss': expected a string: mse, bce or softmax_ce, got 1"},
        {"{\"epoch\": 3}", "unknown key 'epoch' (did you mean 'epochs'?)"},
        {"{\"learning-rate\": 3}", "unknown key 'learning-rate' (keys are ffn-train's flags without --; see --help)"},
        {"{\"lr\": 0.1, \"lr\": 0.2}", "key 'lr' given twice"},
        {"[1, 2]", "expected a JSON object of flag names and values, like --print-config writes"},
        {"{\"lr\": 0.1,\n \"epochs\" 3}", "not valid JSON (line 2, column 11)"},
        {"{\"lr\": 0.1} x", "not valid JSON (line 1, column 13)"},
    };
    char path[256], expected[512];
    snprintf(path, sizeof path, "%s", in_dir("bad.json"));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(write_text_file(path, cases[i].json) == 0);
        ffn_train_config cfg;
        CHECK_MSG(parse(&cfg, NULL, "--config", path, NULL) == FFN_ERR_ARG, "%s", cases[i].json);
        snprintf(expected, sizeof expected, "%s: %s", path, cases[i].message);
        CHECK_MSG(error_is(expected), "%s", cases[i].json);
        ffn_config_release(&cfg);
    }
}

/* Values are range-checked as stored (float), and printed so that they read
 * back as the same bits: a configuration reruns exactly. */
static void test_values_round_trip(void)
{
    ffn_train_config cfg;
    CHECK(parse(&cfg, NULL, "--beta2", "91e-62", NULL) == FFN_ERR_ARG); /* 0 as a float */
    CHECK(error_is("--beta2: expected a number in (0, 1), got '91e-62'"));
    ffn_config_release(&cfg);
    CHECK(parse(&cfg, NULL, "--beta1", "0.99999999999", NULL) == FFN_ERR_ARG); /* 1 as a float */
    ffn_config_release(&cfg);
    const char *lrs[] = {"0.0012345678", "3e-45", "0.1", "123456.789"};
    for (size_t i = 0; i < sizeof lrs / sizeof lrs[0]; i++) {
        CHECK(parse(&cfg, NULL, "--train", "t.h5", "--lr", lrs[i], NULL) == FFN_OK);
        float lr = cfg.lr;
        char *json = ffn_config_to_json(&cfg);
        ffn_config_release(&cfg);
        const char *path = in_dir("round.json");
        CHECK(write_text_file(path, json) == 0);
        free(json);
        CHECK(parse(&cfg, NULL, "--config", path, NULL) == FFN_OK);
        CHECK_MSG(cfg.lr == lr, "--lr %s: %.9g after the round trip, expected %.9g", lrs[i], (double)cfg.lr, (double)lr);
        ffn_config_release(&cfg);
    }
}

static void test_did_you_mean(void)
{
    ffn_train_config cfg;
    CHECK(parse(&cfg, NULL, "--epoch", "3", NULL) == FFN_ERR_ARG);
    CHECK(error_is("unknown flag '--epoch' (did you mean --epochs?)"));
    CHECK(parse(&cfg, NULL, "--batchsize=3", NULL) == FFN_ERR_ARG);
    CHECK(error_is("unknown flag '--batchsize' (did you mean --batch-size?)"));
    CHECK(parse(&cfg, NULL, "--print-conifg", NULL) == FFN_ERR_ARG);
    CHECK(error_is("unknown flag '--print-conifg' (did you mean --print-config?)"));
    CHECK(parse(&cfg, NULL, "--warmup", "3", NULL) == FFN_ERR_ARG); /* a prefix */
    CHECK(error_is("unknown flag '--warmup' (did you mean --warmup-steps?)"));
    CHECK(parse(&cfg, NULL, "--frobnicate", NULL) == FFN_ERR_ARG);
    CHECK(error_is("unknown flag '--frobnicate' (see --help)"));
    /* A value that looks like --config is a value, not the flag. */
    CHECK(parse(&cfg, NULL, "--model", "--config", NULL) == FFN_OK && strcmp(cfg.model_spec, "--config") == 0);
}

/* A checkpoint whose config_json is json. */
static void write_checkpoint(const char *path, const char *json) { CHECK(write_small_checkpoint(path, json, 0) == FFN_OK); }

/* --config CKPT.h5 gives back the configuration the checkpoint recorded, but
 * for the keys that would resume it or write over its outputs. */
static void test_checkpoint_replay(void)
{
    ffn_train_config original;
    char *argv[] = {"ffn-train", "--train", "a.h5", "--val", "b.h5", "--model", "dense:16:gelu,dense:4",
                    "--optimizer", "adamw", "--lr", "0.0031", "--beta2", "0.98", "--weight-decay", "0.05",
                    "--lr-schedule", "cosine", "--min-lr", "1e-5", "--batch-size", "48", "--epochs", "4",
                    "--seed", "18446744073709551615", "--no-shuffle", "--bucket-mb", "1.5", "--checkpoint-dir", "runs/a",
                    "--checkpoint-every", "7steps", "--resume", "latest", "--allow-data-change", "--metrics",
                    "m.csv", "--progress", "off", "--quiet", "--clip-norm", "0.25", "--prune", "0.3"};
    int argc = (int)(sizeof argv / sizeof argv[0]), help;
    ffn_config_defaults(&original);
    CHECK(ffn_config_parse(&original, argc, argv, &help) == FFN_OK);
    char *recorded = ffn_config_to_json(&original);
    char path[256];
    snprintf(path, sizeof path, "%s", in_dir("ckpt-0000000007.h5"));
    write_checkpoint(path, recorded);

    char *json = NULL;
    CHECK(ffn_checkpoint_read_config(path, &json) == FFN_OK && json && strcmp(json, recorded) == 0);
    free(json);

    ffn_train_config replay;
    CHECK(parse(&replay, NULL, "--config", path, NULL) == FFN_OK);
    CHECK(replay.resume == NULL && replay.allow_data_change == 0 && replay.checkpoint_dir == NULL &&
          replay.metrics_path == NULL);
    char expected_note[512];
    snprintf(expected_note, sizeof expected_note,
             "--config %s: not replayed (give them on the command line): --checkpoint-dir \"runs/a\", "
             "--resume \"latest\", --allow-data-change true, --metrics \"m.csv\"", path);
    CHECK_MSG(replay.config_note && strcmp(replay.config_note, expected_note) == 0, "%s",
              replay.config_note ? replay.config_note : "(none)");
    /* Every other key is the recorded one. */
    char *replayed = ffn_config_to_json(&replay);
    cJSON *a = cJSON_Parse(recorded), *b = cJSON_Parse(replayed);
    CHECK(a && b);
    static const char *const skipped[] = {"resume", "allow-data-change", "checkpoint-dir", "metrics"};
    for (size_t i = 0; i < 4; i++) {
        cJSON_DeleteItemFromObject(a, skipped[i]);
        cJSON_DeleteItemFromObject(b, skipped[i]);
    }
    CHECK(cJSON_GetArraySize(a) > 40);
    CHECK_MSG(cJSON_Compare(a, b, 1), "recorded %s\nreplayed %s", recorded, replayed);
    cJSON_Delete(a);
    cJSON_Delete(b);
    free(replayed);
    /* Bit for bit in the fields that are numbers. */
    CHECK(strstr(recorded, "\"seed\":\"18446744073709551615\"") != NULL); /* exact beyond 2^53 */
    CHECK(replay.lr == original.lr && replay.beta2 == original.beta2 && replay.min_lr == original.min_lr &&
          replay.bucket_mb == original.bucket_mb && replay.seed == original.seed && replay.prune == original.prune);
    ffn_config_release(&replay);

    /* A new --checkpoint-dir on the line goes with the replay. */
    CHECK(parse(&replay, NULL, "--checkpoint-dir", "again", "--config", path, NULL) == FFN_OK);
    CHECK(strcmp(replay.checkpoint_dir, "again") == 0 && strcmp(replay.train_path, "a.h5") == 0);
    CHECK(ffn_config_validate(&replay) == FFN_OK);
    ffn_config_release(&replay);

    /* A file that is HDF5 but no checkpoint. */
    write_checkpoint(in_dir("empty-config.h5"), NULL); /* saved as {} */
    CHECK(parse(&replay, NULL, "--config", in_dir("empty-config.h5"), NULL) == FFN_OK && replay.train_path == NULL);
    ffn_config_release(&replay);
    free(recorded);
}

int main(void)
{
    if (!mkdtemp(dir)) return 1;
    test_file_sets_values();
    test_file_errors();
    test_did_you_mean();
    test_values_round_trip();
    test_checkpoint_replay();
    char command[300];
    snprintf(command, sizeof command, "rm -rf %s", dir);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_done("test_config");
}
