/* Regression tests for hostile HDF5 files found by the libFuzzer targets
 * (tests/fuzz): each must give a clean error naming the file and field, never
 * a crash or an out-of-bounds write (this test runs under ASan in CI).
 *
 *  - A checkpoint string attribute (format, model_spec, loss, optimizer kind)
 *    holding an array of strings instead of one: H5Aread wrote every element
 *    into a one-string buffer (a stack overflow for variable-length strings,
 *    a heap overflow for fixed-length ones). Found while writing fuzz_checkpoint. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "ffn/ckpt.h"
#include "ffn/model.h"
#include "check.h"
#include "fixtures.h"

/* A valid checkpoint of a small model, with adam state. */
static void write_checkpoint(const char *path) { CHECK(write_small_checkpoint(path, NULL, 1) == FFN_OK); }

/* Replaces attribute name of object obj_path with an array of count strings,
 * variable-length or fixed-length (each value long enough to overflow). */
static void set_string_array(const char *path, const char *obj_path, const char *name, int count, int vlen)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t o = H5Oopen(f, obj_path, H5P_DEFAULT);
    CHECK(f >= 0 && o >= 0);
    if (H5Aexists(o, name) > 0) H5Adelete(o, name);
    hsize_t n[1] = {(hsize_t)count};
    hid_t s = H5Screate_simple(1, n, NULL), t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, vlen ? H5T_VARIABLE : 40);
    hid_t a = H5Acreate2(o, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(a >= 0);
    const char *long_value = "ffn-checkpoint and then much more text than one value";
    if (vlen) {
        const char *values[4] = {"ffn-checkpoint", long_value, long_value, long_value};
        CHECK(H5Awrite(a, t, values) >= 0);
    } else {
        char values[4][40];
        for (int i = 0; i < 4; i++) memcpy(values[i], long_value, sizeof values[i]); /* unterminated: fills it */
        CHECK(H5Awrite(a, t, values) >= 0);
    }
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(s);
    H5Oclose(o);
    H5Fclose(f);
}

static void expect_load_fail(const char *path, const char *field)
{
    ffn_checkpoint c;
    ffn_status st = ffn_checkpoint_load(&c, path);
    const char *m = ffn_last_error();
    CHECK_MSG(st == FFN_ERR_FORMAT, "%s: status %s, expected FFN_ERR_FORMAT (%s)", path, ffn_status_name(st), m);
    CHECK_MSG(strstr(m, path) && strstr(m, field), "message lacks the file or '%s': %s", field, m);
    if (st == FFN_OK) ffn_checkpoint_free(&c);
}

static void test_string_attribute_arrays(void)
{
    static const struct {
        const char *obj, *name;
    } attrs[] = {{"/", "format"}, {"/", "model_spec"}, {"/", "loss"}, {"/", "config_json"}, {"/optimizer", "kind"}};
    const char *good = tmp_path("good.h5"), *bad = tmp_path("bad.h5");
    write_checkpoint(good);
    ffn_checkpoint c;
    CHECK(ffn_checkpoint_load(&c, good) == FFN_OK);
    ffn_checkpoint_free(&c);
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        for (int vlen = 0; vlen < 2; vlen++) {
            for (int count = 2; count <= 4; count += 2) {
                write_checkpoint(bad);
                set_string_array(bad, attrs[i].obj, attrs[i].name, count, vlen);
                expect_load_fail(bad, attrs[i].name);
            }
        }
    }
    unlink(good);
    unlink(bad);
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (tmp_dir_make("hostile") != 0) return 1;
    test_string_attribute_arrays();
    tmp_dir_remove();
    return check_done("test_hostile_files");
}
