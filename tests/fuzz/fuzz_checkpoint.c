/* libFuzzer target: checkpoint validation (ffn_checkpoint_load) on HDF5 files
 * made from the fuzzer's choices.
 *
 * Each input decodes into a small model (one of a few specs covering every
 * layer kind, input width 1-4), optimizer state (none, adam, sgd momentum,
 * rmsprop) and an optional pruning mask, saved by ffn_checkpoint_save (once
 * per such choice, then reused); then up to 4 mutations (h5_mutate.c): any dataset
 * replaced by one of another dtype, rank, shape, layout or contents, any
 * attribute (format, format_version, model_spec, input_dim, loss, frozen,
 * kind, step, ...) given another type, shape or value (model_spec text comes
 * from the input), objects deleted or turned into groups, a virtual dataset,
 * one corrupted stored byte (caught by Fletcher32).
 *
 * Properties: loading never crashes and fails with a message; an untouched
 * file loads back exactly what was saved. ASAN_OPTIONS in tests/e2e_fuzz.sh
 * cap single allocations, so a file declaring a huge model must fail cleanly
 * (out of memory) rather than exhaust the machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ffn/ckpt.h"
#include "ffn/model.h"
#include "ffn/status.h"
#include "h5_mutate.h"

static char path[512];
static int verbose; /* FFN_FUZZ_VERBOSE=1: print each outcome (for looking at a corpus) */

static void die(const char *what)
{
    fprintf(stderr, "fuzz_checkpoint: %s (last error: %s)\n", what, ffn_last_error());
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    verbose = fz_hdf5_init(path, sizeof path, "ckpt.h5");
    return 0;
}

static const char *const specs[] = {
    "dense:3",
    "dense:4:relu,dense:2",
    "dense:3:leaky_relu:slope=0.2,dropout:0.5,dense:2",
    "layernorm,dense:2",
    "ffn:4,dense:3",
    "swiglu:3,layernorm,dense:2",
    "dense:4:lora=2,dense:2:lora=1:lora_alpha=3",
};

/* Saving is the slow part (HDF5 builds a 1 MiB in-memory image), so each of
 * the 224 starting files is saved by ffn_checkpoint_save once and its bytes
 * reused. */
#define BASE_KINDS (7 * 4 * 4 * 2)
static struct {
    uint8_t *bytes;
    size_t size;
} base[BASE_KINDS];

static int write_bytes(const char *p, const uint8_t *bytes, size_t size)
{
    FILE *f = fopen(p, "wb");
    if (!f) return -1;
    int ok = fwrite(bytes, 1, size, f) == size;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static void keep_bytes(int key, const char *p)
{
    FILE *f = fopen(p, "rb");
    if (!f) die("cannot reopen the saved checkpoint");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    base[key].bytes = malloc((size_t)n);
    if (!base[key].bytes || fread(base[key].bytes, 1, (size_t)n, f) != (size_t)n) die("cannot read the saved checkpoint");
    base[key].size = (size_t)n;
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_input in = {data, size};
    int spec_i = (int)fz_pick(&in, sizeof specs / sizeof specs[0]);
    size_t input_dim = 1 + fz_pick(&in, 4);
    int opt = (int)fz_pick(&in, 4);
    int with_mask = fz_pick(&in, 3) == 0;
    int key = ((spec_i * 4 + (int)input_dim - 1) * 4 + opt) * 2 + with_mask;
    ffn_model *m = NULL;
    if (ffn_model_create_from_text(&m, specs[spec_i], input_dim) != FFN_OK) die("a harness spec does not build");
    ffn_model_init_params(m, (uint64_t)key);

    ffn_checkpoint c;
    memset(&c, 0, sizeof c);
    c.model_spec = ffn_model_spec_text(m);
    c.input_dim = input_dim;
    c.loss = "softmax_ce";
    c.config_json = "{\"seed\": 1}";
    c.model = m;
    c.param_count = ffn_model_param_count(m);
    c.params = ffn_model_params(m);
    static const char *const opts[][3] = {
        {NULL, NULL, NULL}, {"adam", "m", "v"}, {"sgd", "momentum", NULL}, {"rmsprop", "square_avg", NULL}};
    c.optimizer = (char *)opts[opt][0];
    for (int i = 1; i < 3 && opts[opt][i]; i++) {
        c.state_names[c.state_count] = (char *)opts[opt][i];
        c.state[c.state_count] = calloc(c.param_count + 1, sizeof(float));
        if (!c.state[c.state_count]) die("out of memory in the harness");
        for (size_t k = 0; k < c.param_count; k++) c.state[c.state_count][k] = (float)(k % 5) * 0.25f;
        c.state_count++;
    }
    c.optimizer_steps = 3 + (uint64_t)key % 5;
    c.step = 10 + (uint64_t)key;
    c.epoch = (uint64_t)key % 3;
    c.step_in_epoch = (uint64_t)key % 5;
    c.seed = 42 + (uint64_t)key;
    if (with_mask) {
        c.mask = malloc(c.param_count + 1);
        if (!c.mask) die("out of memory in the harness");
        memset(c.mask, 1, c.param_count);
        for (size_t k = 0; k < ffn_model_tensor_count(m); k++) {
            const ffn_tensor *t = ffn_model_tensor(m, k);
            if (strcmp(t->name, "W") == 0)
                for (size_t j = 0; j < t->count; j++) c.mask[t->offset + j] = (j + (size_t)key) % 3 != 0;
        }
    }

    if (!base[key].bytes) {
        if (ffn_checkpoint_save(&c, path) != FFN_OK) die("saving a valid checkpoint failed");
        keep_bytes(key, path);
    } else if (write_bytes(path, base[key].bytes, base[key].size) != 0) {
        die("cannot write the starting checkpoint");
    }
    static const char *const attrs[] = {"format", "format_version", "ffn_version", "model_spec",
                                        "input_dim", "loss", "config_json", "frozen", "kind",
                                        "step_count", "step", "epoch", "step_in_epoch", "seed"};
    int mutations = fz_mutate_file(&in, path, attrs, sizeof attrs / sizeof attrs[0], 4);

    ffn_checkpoint back;
    ffn_clear_error();
    ffn_status st = ffn_checkpoint_load(&back, path);
    if (verbose) fprintf(stderr, "fuzz_checkpoint: %d mutations, load: %s\n", mutations, st == FFN_OK ? "ok" : ffn_last_error());
    if (st != FFN_OK) {
        if (!*ffn_last_error()) die("a failed load left no message");
        if (mutations == 0) die("an untouched checkpoint does not load");
    } else {
        if (!back.model || back.param_count != ffn_model_param_count(back.model) || !back.params)
            die("a loaded checkpoint has no model or parameters");
        if (mutations == 0) {
            if (back.param_count != c.param_count || memcmp(back.params, c.params, c.param_count * sizeof(float)) ||
                back.step != c.step || back.epoch != c.epoch || back.step_in_epoch != c.step_in_epoch ||
                back.seed != c.seed || back.state_count != c.state_count || strcmp(back.model_spec, c.model_spec))
                die("an untouched checkpoint loads back different contents");
            for (size_t i = 0; i < c.state_count; i++)
                if (memcmp(back.state[i], c.state[i], c.param_count * sizeof(float)))
                    die("an untouched checkpoint loads back different optimizer state");
        }
        if (back.mask)
            for (size_t k = 0; k < back.param_count; k++)
                if (back.mask[k] > 1) die("a loaded mask holds a value other than 0 and 1");
        ffn_checkpoint_free(&back);
    }

    for (size_t i = 0; i < c.state_count; i++) free(c.state[i]);
    free(c.mask);
    free(c.model_spec);
    ffn_model_free(m);
    fz_clean_tmpdir();
    return 0;
}
