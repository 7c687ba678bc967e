/* Checkpoints in slices (ckpt.h), one process:
 *  - a save whose values come through the fetch callback, in 3-float slices,
 *    writes the datasets an in-memory save does, and asks for every value once,
 *    in order, never more than a slice at a time;
 *  - the header load reads no values; ranged reads of the parameters (across
 *    tensor and row boundaries) and of the optimizer state return exactly the
 *    range and write nothing outside it;
 *  - a ranged read into a page-mapped buffer touches only the pages of its
 *    range (--shard params keeps the rest free);
 *  - a non-finite value fails a save that checks, and the ranged read;
 *    ffn_checkpoint_verify reads the whole file through. */
#define _DEFAULT_SOURCE /* mincore */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <hdf5.h>

#include "ffn/ckpt.h"
#include "ffn/mem.h"
#include "ffn/model.h"
#include "check.h"
#include "fixtures.h"

typedef struct {
    const float *params, *state[2];
    size_t next[3];   /* the next element each buffer should be asked for */
    size_t calls, most;
} source;

static ffn_status fetch(void *user, int buffer, size_t lo, size_t count, float *out)
{
    source *s = user;
    CHECK(buffer >= -1 && buffer <= 1 && out);
    CHECK_MSG(lo == s->next[buffer + 1], "buffer %d asked from %zu, expected %zu", buffer, lo, s->next[buffer + 1]);
    s->next[buffer + 1] = lo + count;
    s->calls++;
    if (count > s->most) s->most = count;
    memcpy(out, (buffer < 0 ? s->params : s->state[buffer]) + lo, count * sizeof *out);
    return FFN_OK;
}

/* A checkpoint of m with values from params and state (or NULL: fetched from src). */
static ffn_checkpoint describe(ffn_model *m, char *spec, float *params, float *m1, float *v1, source *src)
{
    ffn_checkpoint c;
    memset(&c, 0, sizeof c);
    c.model_spec = spec;
    c.input_dim = ffn_model_input_dim(m);
    c.loss = "softmax_ce";
    c.model = m;
    c.param_count = ffn_model_param_count(m);
    c.params = params;
    c.optimizer = "adam";
    c.state_count = 2;
    c.state_names[0] = "m";
    c.state_names[1] = "v";
    c.state[0] = m1;
    c.state[1] = v1;
    c.fetch = fetch;
    c.fetch_user = src;
    c.step = c.optimizer_steps = 7;
    return c;
}

static void test_save_and_ranges(void)
{
    ffn_model *m;
    CHECK(ffn_model_create_from_text(&m, "dense:7:relu,layernorm,dense:3", 5) == FFN_OK);
    const size_t P = ffn_model_param_count(m);
    char *spec = ffn_model_spec_text(m);
    float *p = ffn_model_params(m), *m1 = ffn_alloc_floats(P), *v1 = ffn_alloc_floats(P);
    for (size_t i = 0; i < P; i++) {
        p[i] = (float)i * 0.5f - 3.0f;
        m1[i] = (float)i * 0.25f;
        v1[i] = 1000.0f + (float)i;
    }
    ffn_checkpoint held = describe(m, spec, p, m1, v1, NULL);
    CHECK(ffn_checkpoint_save(&held, tmp_path("held.h5")) == FFN_OK);

    source src = {.params = p, .state = {m1, v1}};
    ffn_checkpoint fetched = describe(m, spec, NULL, NULL, NULL, &src);
    fetched.check_finite = 1;
    setenv("FFN_CKPT_SLICE_BYTES", "12", 1);
    CHECK(ffn_checkpoint_slice_floats() == 3);
    CHECK(ffn_checkpoint_save(&fetched, tmp_path("fetched.h5")) == FFN_OK);
    CHECK(src.next[0] == P && src.next[1] == P && src.next[2] == P && src.most == 3 && src.calls >= 3 * (P / 3));

    /* The same datasets, value for value. */
    ffn_checkpoint a, b;
    CHECK(ffn_checkpoint_load(&a, tmp_path("held.h5")) == FFN_OK);
    CHECK(ffn_checkpoint_load(&b, tmp_path("fetched.h5")) == FFN_OK);
    CHECK(a.param_count == P && b.param_count == P && b.state_count == 2);
    CHECK(memcmp(a.params, p, P * sizeof(float)) == 0 && memcmp(b.params, p, P * sizeof(float)) == 0);
    CHECK(memcmp(b.state[0], m1, P * sizeof(float)) == 0 && memcmp(b.state[1], v1, P * sizeof(float)) == 0);
    ffn_checkpoint_free(&a);
    ffn_checkpoint_free(&b);

    /* The header: no values; then every range of the parameters and of v. */
    ffn_checkpoint h;
    CHECK(ffn_checkpoint_load_header(&h, tmp_path("fetched.h5")) == FFN_OK);
    CHECK(!h.params && h.state_count == 2 && !h.state[0] && !h.state[1] && strcmp(h.state_names[1], "v") == 0);
    float *out = ffn_alloc_floats(P + 2);
    int bad = 0;
    for (size_t lo = 0; lo <= P; lo += 3) {
        for (size_t hi = lo; hi <= P; hi += 5) {
            for (int buffer = -1; buffer <= 1; buffer += 2) {
                for (size_t i = 0; i < P + 2; i++) out[i] = -7.0f;
                ffn_status st = buffer < 0 ? ffn_checkpoint_read_params(&h, tmp_path("fetched.h5"), lo, hi, out)
                                           : ffn_checkpoint_read_state(&h, tmp_path("fetched.h5"), 1, lo, hi, out);
                const float *want = buffer < 0 ? p : v1;
                int ok = st == FFN_OK && memcmp(out, want + lo, (hi - lo) * sizeof(float)) == 0;
                for (size_t i = hi - lo; i < P + 2; i++) ok &= out[i] == -7.0f;
                if (!ok && bad++ < 5) fprintf(stderr, "range [%zu, %zu) of buffer %d read wrong\n", lo, hi, buffer);
            }
        }
    }
    CHECK(bad == 0);
    CHECK(ffn_checkpoint_read_params(&h, tmp_path("fetched.h5"), 2, P + 1, out) == FFN_ERR_ARG);
    CHECK(ffn_checkpoint_verify(tmp_path("fetched.h5")) == FFN_OK);

    /* Non-finite: the checking save refuses (no file), the ranged read and verify fail on it. */
    m1[P - 2] = NAN;
    memset(src.next, 0, sizeof src.next);
    CHECK(ffn_checkpoint_save(&fetched, tmp_path("nan.h5")) == FFN_ERR_NUMERIC);
    CHECK(strstr(ffn_last_error(), "/optimizer/m holds a non-finite value") != NULL);
    CHECK(access(tmp_path("nan.h5"), F_OK) != 0 && access(tmp_path("nan.h5.tmp"), F_OK) != 0);
    CHECK(ffn_checkpoint_save(&held, tmp_path("nan.h5")) == FFN_OK); /* not asked to check */
    CHECK(ffn_checkpoint_read_state(&h, tmp_path("nan.h5"), 0, 0, P - 2, out) == FFN_OK);
    CHECK(ffn_checkpoint_read_state(&h, tmp_path("nan.h5"), 0, 0, P, out) == FFN_ERR_NUMERIC);
    CHECK(ffn_checkpoint_verify(tmp_path("nan.h5")) == FFN_ERR_NUMERIC);
    unsetenv("FFN_CKPT_SLICE_BYTES");

    ffn_checkpoint_free(&h);
    ffn_free(out);
    ffn_free(m1);
    ffn_free(v1);
    free(spec);
    ffn_model_free(m);
}

/* Pages of buf [bytes] resident now, as a map (1 each). */
static unsigned char *resident(void *buf, size_t bytes)
{
    size_t page = ffn_page_size(), pages = (bytes + page - 1) / page;
    unsigned char *v = calloc(pages, 1);
    if (v && mincore(buf, bytes, v) != 0) {
        free(v);
        return NULL;
    }
    return v;
}

static void test_untouched_pages(void)
{
    ffn_model *m, *into;
    CHECK(ffn_model_create_from_text(&m, "dense:1024:relu,dense:64", 64) == FFN_OK);
    const size_t P = ffn_model_param_count(m);
    ffn_model_init_params(m, 3);
    char *spec = ffn_model_spec_text(m);
    ffn_checkpoint c = describe(m, spec, ffn_model_params(m), NULL, NULL, NULL);
    c.optimizer = NULL;
    c.state_count = 0;
    CHECK(ffn_checkpoint_save(&c, tmp_path("big.h5")) == FFN_OK);
    ffn_checkpoint h;
    CHECK(ffn_checkpoint_load_header(&h, tmp_path("big.h5")) == FFN_OK);
    CHECK(ffn_model_create_from_text(&into, spec, 64) == FFN_OK);
    /* Rank 1 of 3 under --shard params: its third, across W1's rows and into b1. */
    size_t lo = P / 3, hi = 2 * P / 3;
    float *buf = ffn_model_params(into);
    CHECK(ffn_checkpoint_read_params(&h, tmp_path("big.h5"), lo, hi, buf + lo) == FFN_OK);
    CHECK(memcmp(buf + lo, ffn_model_params(m) + lo, (hi - lo) * sizeof(float)) == 0);
    size_t page = ffn_page_size(), bytes = P * sizeof(float);
    unsigned char *v = resident(buf, bytes);
    CHECK(v != NULL);
    size_t outside = 0, inside = 0;
    for (size_t i = 0; v && i < (bytes + page - 1) / page; i++) {
        size_t first = i * page / sizeof(float), last = ((i + 1) * page - 1) / sizeof(float);
        if (last < lo || first >= hi) outside += v[i] & 1;
        else if (first >= lo && last < hi) inside += !(v[i] & 1);
    }
    CHECK_MSG(outside == 0, "%zu pages outside [%zu, %zu) were touched", outside, lo, hi);
    CHECK_MSG(inside == 0, "%zu pages inside the range are not resident", inside);
    free(v);
    ffn_checkpoint_free(&h);
    ffn_model_free(into);
    free(spec);
    ffn_model_free(m);
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (tmp_dir_make("ckpt-slices") != 0) return 1;
    test_save_and_ranges();
    test_untouched_pages();
    tmp_dir_remove();
    return check_done("test_ckpt_slices");
}
