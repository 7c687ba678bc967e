/* libFuzzer target: the command-line / configuration parser of ffn-train.
 *
 * The input is split at NUL bytes and newlines into argv[1..] (argv[0] is
 * "ffn-train"). ffn_config_parse, then ffn_config_validate, must accept or
 * give a clean error with a message; an accepted configuration must render as
 * JSON (the copy kept in checkpoints and metrics files) that cJSON reads back,
 * and its --freeze list must parse against models of 1 to 8 layers or be refused
 * with a message. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT) return 0;
    char buf[MAX_INPUT + 1];
    memcpy(buf, data, size);
    buf[size] = '\0';
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

    ffn_train_config cfg;
    ffn_config_defaults(&cfg);
    int help = -1;
    ffn_clear_error();
    ffn_status st = ffn_config_parse(&cfg, argc, argv, &help);
    if (help != 0 && help != FFN_CONFIG_HELP && help != FFN_CONFIG_VERSION) die("parse left *help unset", argc, argv);
    if (st != FFN_OK) {
        if (!*ffn_last_error()) die("parse failed without a message", argc, argv);
        return 0;
    }
    if (help) return 0;
    st = ffn_config_validate(&cfg);
    if (st != FFN_OK) {
        if (!*ffn_last_error()) die("validate failed without a message", argc, argv);
        return 0;
    }
    char *json = ffn_config_to_json(&cfg);
    if (!json) die("ffn_config_to_json returned NULL", argc, argv);
    cJSON *back = cJSON_Parse(json);
    if (!back || !cJSON_IsObject(back)) die("the configuration's JSON does not parse", argc, argv);
    cJSON_Delete(back);
    free(json);

    if (cfg.freeze) {
        int frozen[8];
        for (size_t n = 1; n <= 8; n++) {
            ffn_clear_error();
            if (ffn_config_parse_layers(cfg.freeze, n, frozen) != FFN_OK && !*ffn_last_error())
                die("--freeze refused without a message", argc, argv);
        }
    }
    return 0;
}
