/* .npz and .safetensors weights: bitwise round trips of a model, the PyTorch
 * names, and malformed files refused with a message naming what is wrong. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ffn/loss.h"
#include "ffn/weights.h"
#include "../src/weights_format.h"

static char dir[] = "/tmp/ffn-test-weights.XXXXXX";

static const char *path_in_dir(const char *name)
{
    static char buf[4][256];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 256, "%s/%s", dir, name);
    return p;
}

static int contains(const char *text, const char *part)
{
    int ok = strstr(text, part) != NULL;
    if (!ok) fprintf(stderr, "expected \"%s\" in: %s\n", part, text);
    return ok;
}

static void round_trip(const char *name)
{
    ffn_model *m = NULL;
    CHECK(ffn_model_create_from_text(&m, "dense:7:relu,dropout:0.1,layernorm,dense:4:leaky_relu:slope=0.2,dense:3", 5) == FFN_OK);
    ffn_model_init_params(m, 42);
    float *p = ffn_model_params(m);
    p[1] = -0.0f;      /* signs, denormals and extremes travel bit for bit */
    p[2] = 1e-40f;
    p[3] = 3.4e38f;
    const char *path = path_in_dir(name);
    CHECK_MSG(ffn_weights_save(m, "bce", path) == FFN_OK, "%s", ffn_last_error());
    ffn_checkpoint c;
    CHECK_MSG(ffn_weights_load(&c, path, NULL, NULL) == FFN_OK, "%s", ffn_last_error());
    if (c.model) {
        CHECK(c.param_count == ffn_model_param_count(m));
        CHECK(memcmp(c.params, p, c.param_count * sizeof(float)) == 0);
        CHECK(strcmp(c.loss, "bce") == 0);
        CHECK(c.input_dim == 5);
        CHECK(c.optimizer == NULL && c.step == 0);
        char *spec = ffn_model_spec_text(m);
        CHECK(strcmp(c.model_spec, spec) == 0);
        free(spec);
        ffn_checkpoint_free(&c);
    }
    /* Saving again over the file gives the same bytes (deterministic). */
    char again[300];
    snprintf(again, sizeof again, "%s.again.%s", path, strrchr(name, '.') + 1);
    CHECK(ffn_weights_save(m, "bce", again) == FFN_OK);
    FILE *a = fopen(path, "rb"), *b = fopen(again, "rb");
    int same = a && b;
    for (int x = 0, y = 0; same && (x != EOF || y != EOF);) same = (x = fgetc(a)) == (y = fgetc(b));
    CHECK(same);
    if (a) fclose(a);
    if (b) fclose(b);
    CHECK(access(path_in_dir("m.tmp"), F_OK) != 0);
    ffn_model_free(m);
}

static void names(void)
{
    ffn_model *m = NULL;
    CHECK(ffn_model_create_from_text(&m, "dense:7:relu,dropout:0.1,layernorm,dense:4:tanh,dense:3", 5) == FFN_OK);
    char **n = NULL;
    size_t count = 0;
    CHECK(ffn_weights_torch_names(m, &n, &count) == FFN_OK);
    const char *want[] = {"0.weight", "0.bias", "3.weight", "3.bias", "4.weight", "4.bias", "6.weight", "6.bias"};
    CHECK(count == 8);
    for (size_t i = 0; i < count && i < 8; i++) CHECK_MSG(strcmp(n[i], want[i]) == 0, "%zu: %s", i, n[i]);
    ffn_weights_names_free(n, count);
    ffn_model_free(m);
    CHECK(ffn_model_create_from_text(&m, "ffn:8,dense:2", 5) == FFN_OK);
    CHECK(ffn_weights_save(m, NULL, path_in_dir("ffn.safetensors")) == FFN_ERR_ARG);
    CHECK(contains(ffn_last_error(), "layer 0 (ffn) has no PyTorch nn.Sequential module"));
    ffn_model_free(m);
    CHECK(ffn_model_create_from_text(&m, "dense:4:lora=2,dense:2", 5) == FFN_OK);
    CHECK(ffn_weights_save(m, NULL, path_in_dir("lora.npz")) == FFN_ERR_ARG);
    CHECK(contains(ffn_last_error(), "--merge-lora"));
    ffn_model_free(m);
}

/* A file without ffn spec, written by the container writers directly. */
static void write_plain(const char *path, int npz, const char *const *names_, const size_t (*shapes)[2],
                        const int *ndims, size_t n)
{
    static float zeros[64];
    ffn_weights_array a[8];
    memset(a, 0, sizeof a);
    for (size_t i = 0; i < n; i++) {
        a[i].name = (char *)names_[i];
        a[i].ndim = ndims[i];
        a[i].shape[0] = shapes[i][0];
        a[i].shape[1] = shapes[i][1];
        a[i].count = shapes[i][0] * (ndims[i] == 2 ? shapes[i][1] : 1);
        a[i].data = zeros;
    }
    FILE *f = fopen(path, "wb");
    CHECK((npz ? ffn_npz_write(f, path, a, n, NULL) : ffn_safetensors_write(f, path, a, n, NULL)) == FFN_OK);
    fclose(f);
}

static void plain_files(int npz)
{
    const char *ext = npz ? "npz" : "safetensors";
    char path[300];
    ffn_checkpoint c;
    const char *nm[] = {"0.weight", "0.bias", "2.weight", "2.bias", "9.weight"};
    const size_t good[][2] = {{6, 5}, {6, 0}, {2, 6}, {2, 0}, {1, 1}};
    const int nd[] = {2, 1, 2, 1, 2};
    snprintf(path, sizeof path, "%s/plain.%s", dir, ext);
    write_plain(path, npz, nm, good, nd, 4);
    CHECK(ffn_weights_load(&c, path, NULL, NULL) == FFN_ERR_ARG);
    CHECK(contains(ffn_last_error(), "carries no ffn spec") && contains(ffn_last_error(), "--model"));
    CHECK_MSG(ffn_weights_load(&c, path, "dense:6:relu,dense:2", "mse") == FFN_OK, "%s", ffn_last_error());
    if (c.model) {
        CHECK(c.input_dim == 5 && strcmp(c.loss, "mse") == 0);
        ffn_checkpoint_free(&c);
    }
    /* The spec disagrees: an activation module shifts the names. */
    CHECK(ffn_weights_load(&c, path, "dense:6,dense:2", NULL) == FFN_ERR_FORMAT);
    CHECK(contains(ffn_last_error(), "tensor \"1.weight\" is missing"));
    /* A shape that disagrees. */
    const size_t bad[][2] = {{6, 5}, {7, 0}, {2, 6}, {2, 0}};
    write_plain(path, npz, nm, bad, nd, 4);
    CHECK(ffn_weights_load(&c, path, "dense:6:relu,dense:2", NULL) == FFN_ERR_FORMAT);
    CHECK(contains(ffn_last_error(), "tensor \"0.bias\" has shape [7], expected [6]"));
    /* A name missing, and one too many. */
    write_plain(path, npz, nm, good, nd, 3);
    CHECK(ffn_weights_load(&c, path, "dense:6:relu,dense:2", NULL) == FFN_ERR_FORMAT);
    CHECK(contains(ffn_last_error(), "tensor \"2.bias\" is missing"));
    write_plain(path, npz, nm, good, nd, 5);
    CHECK(ffn_weights_load(&c, path, "dense:6:relu,dense:2", NULL) == FFN_ERR_FORMAT);
    CHECK(contains(ffn_last_error(), "tensor \"9.weight\" is not one of the model's"));
}

static void truncate_file(const char *path, long keep)
{
    CHECK(truncate(path, keep) == 0);
}

static void malformed(void)
{
    ffn_model *m = NULL;
    CHECK(ffn_model_create_from_text(&m, "dense:6:relu,dense:2", 5) == FFN_OK);
    ffn_model_init_params(m, 1);
    ffn_checkpoint c;
    const char *st = path_in_dir("cut.safetensors"), *npz = path_in_dir("cut.npz");
    CHECK(ffn_weights_save(m, NULL, st) == FFN_OK);
    truncate_file(st, 5);
    CHECK(ffn_weights_load(&c, st, NULL, NULL) == FFN_ERR_FORMAT);
    CHECK(contains(ffn_last_error(), "expected at least the 8-byte header length"));
    CHECK(ffn_weights_save(m, NULL, st) == FFN_OK);
    truncate_file(st, 40); /* inside the JSON header */
    CHECK(ffn_weights_load(&c, st, NULL, NULL) == FFN_ERR_FORMAT);
    CHECK(contains(ffn_last_error(), "header length"));
    CHECK(ffn_weights_save(m, NULL, st) == FFN_OK);
    FILE *f = fopen(st, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    truncate_file(st, size - 4); /* the data cut short */
    CHECK(ffn_weights_load(&c, st, NULL, NULL) == FFN_ERR_FORMAT);
    CHECK(contains(ffn_last_error(), "data_offsets"));

    CHECK(ffn_weights_save(m, NULL, npz) == FFN_OK);
    truncate_file(npz, 100);
    CHECK(ffn_weights_load(&c, npz, NULL, NULL) == FFN_ERR_FORMAT);
    CHECK(contains(ffn_last_error(), "not a zip archive"));
    /* One flipped byte in an entry's data: its CRC-32 says so. */
    CHECK(ffn_weights_save(m, NULL, npz) == FFN_OK);
    f = fopen(npz, "r+b");
    fseek(f, 150, SEEK_SET);
    int byte = fgetc(f);
    fseek(f, 150, SEEK_SET);
    fputc(byte ^ 0x40, f);
    fclose(f);
    CHECK(ffn_weights_load(&c, npz, NULL, NULL) == FFN_ERR_FORMAT);
    CHECK(contains(ffn_last_error(), "CRC-32"));
    /* Not finite. */
    ffn_model_params(m)[0] = 1.0f / 0.0f;
    CHECK(ffn_weights_save(m, NULL, npz) == FFN_OK);
    CHECK(ffn_weights_load(&c, npz, NULL, NULL) == FFN_ERR_NUMERIC);
    CHECK(ffn_weights_save(m, NULL, path_in_dir("m.h5")) == FFN_ERR_ARG);
    ffn_model_free(m);
}

int main(void)
{
    if (!mkdtemp(dir)) return 1;
    round_trip("m.npz");
    round_trip("m.safetensors");
    names();
    plain_files(1);
    plain_files(0);
    malformed();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_done("test_weights");
}
