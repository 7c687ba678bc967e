/* libFuzzer target: the command-line / configuration parser of ffn-train.
 *
 * The input is split at NUL bytes and newlines into argv[1..] (argv[0] is
 * "ffn-train"). ffn_config_parse, then ffn_config_validate, must accept or
 * give a clean error with a message; an accepted configuration must render as
 * JSON (the copy kept in checkpoints and metrics files) that cJSON reads back,
 * and its --freeze list must parse against models of 1 to 8 layers or be refused
 * with a message.
 *
 * An input that starts with '{' is a config file's text instead
 * (ffn_config_apply_json; as a checkpoint's when its length is odd). Either
 * way the accepted configuration's JSON must apply again to the defaults and
 * render the same JSON (what --config of a checkpoint relies on), and nothing
 * may leak (ffn_config_release frees what the file brought). Arguments naming
 * /dev, /proc or /sys are skipped: --config would read a device. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/config.h"
#include "ffn/status.h"

#define MAX_INPUT 4096
#define MAX_ARGS 64

static void die(const char *what, int argc, char **argv)
{
    fprintf(stderr, "fuzz_config: %s (last error: %s)\n  argv:", what, ffn_last_error());
    for (int i = 0; i < argc; i++) fprintf(stderr, " '%s'", argv[i]);
    fprintf(stderr, "\n");
    abort();
}

/* The configuration's JSON must apply to the defaults and give itself back. */
static void check_json_round_trip(const char *json, int argc, char **argv)
{
    ffn_train_config again;
    ffn_config_defaults(&again);
    ffn_clear_error();
    if (ffn_config_apply_json(&again, json, "fuzz.json", 0) != FFN_OK) die("the configuration's JSON does not apply again", argc, argv);
    char *twice = ffn_config_to_json(&again);
    if (!twice || strcmp(json, twice) != 0) die("the configuration's JSON changes when applied again", argc, argv);
    free(twice);
    ffn_config_release(&again);
}

/* A config file's text: apply, validate, round trip. */
static int fuzz_json_text(char *text, size_t size)
{
    char *argv[] = {"(config text)", text};
    ffn_train_config cfg;
    ffn_config_defaults(&cfg);
    ffn_clear_error();
    ffn_status st = ffn_config_apply_json(&cfg, text, "fuzz.json", (int)(size & 1));
    if (st != FFN_OK && !*ffn_last_error()) die("a config text refused without a message", 2, argv);
    if (st == FFN_OK) {
        char *json = ffn_config_to_json(&cfg);
        if (!json) die("ffn_config_to_json returned NULL", 2, argv);
        check_json_round_trip(json, 2, argv);
        free(json);
        ffn_clear_error();
        if (ffn_config_validate(&cfg) != FFN_OK && !*ffn_last_error()) die("validate failed without a message", 2, argv);
    }
    ffn_config_release(&cfg);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT) return 0;
    char buf[MAX_INPUT + 1];
    memcpy(buf, data, size);
    buf[size] = '\0';
    if (size > 0 && buf[0] == '{') return fuzz_json_text(buf, size);
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    argv[argc++] = "ffn-train";
    char *start = buf;
    for (size_t i = 0; i <= size && argc < MAX_ARGS; i++) {
        if (i == size || buf[i] == '\0' || buf[i] == '\n') {
            buf[i] = '\0';
            argv[argc++] = start;
            start = buf + i + 1;
        }
    }
    argv[argc] = NULL;
    for (int i = 1; i < argc; i++)
        if (strstr(argv[i], "/dev") || strstr(argv[i], "/proc") || strstr(argv[i], "/sys")) return 0;

    ffn_train_config cfg;
    ffn_config_defaults(&cfg);
    int help = -1;
    ffn_clear_error();
    ffn_status st = ffn_config_parse(&cfg, argc, argv, &help);
    if (help != 0 && help != FFN_CONFIG_HELP && help != FFN_CONFIG_VERSION && help != FFN_CONFIG_PRINT)
        die("parse left *help unset", argc, argv);
    if (st != FFN_OK) {
        if (!*ffn_last_error()) die("parse failed without a message", argc, argv);
        ffn_config_release(&cfg);
        return 0;
    }
    if (help && help != FFN_CONFIG_PRINT) {
        ffn_config_release(&cfg);
        return 0;
    }
    char *json = ffn_config_to_json(&cfg);
    if (!json) die("ffn_config_to_json returned NULL", argc, argv);
    cJSON *back = cJSON_Parse(json);
    if (!back || !cJSON_IsObject(back)) die("the configuration's JSON does not parse", argc, argv);
    cJSON_Delete(back);
    check_json_round_trip(json, argc, argv);
    free(json);
    char *pretty = ffn_config_to_json_pretty(&cfg);
    if (!pretty) die("ffn_config_to_json_pretty returned NULL", argc, argv);
    free(pretty);
    st = ffn_config_validate(&cfg);
    if (st != FFN_OK) {
        if (!*ffn_last_error()) die("validate failed without a message", argc, argv);
        ffn_config_release(&cfg);
        return 0;
    }

    if (cfg.freeze) {
        int frozen[8];
        for (size_t n = 1; n <= 8; n++) {
            ffn_clear_error();
            if (ffn_config_parse_layers(cfg.freeze, n, frozen) != FFN_OK && !*ffn_last_error())
                die("--freeze refused without a message", argc, argv);
        }
    }
    ffn_config_release(&cfg);
    return 0;
}
