/* ffn-data idx: MNIST-style IDX files (gzip or raw) to the dataset layout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "convert.h"
#include "ffn/mem.h"
#include "ffn/status.h"

static const char *const CMD = "idx";

/* Reads a whole IDX file of unsigned bytes: magic 0x00 0x00 0x08 ndims, then
 * ndims big-endian uint32 sizes. dims[0] is the item count; *item the product
 * of the others. */
static int read_idx(const char *path, int want_dims, size_t *count, size_t *item, uint8_t **data)
{
    gzFile f = gzopen(path, "rb"); /* gzread passes plain files through */
    if (!f) return data_error(CMD, "%s: cannot open", path);
    unsigned char head[4], d[4];
    int rc = 0;
    if (gzread(f, head, 4) != 4) {
        rc = data_error(CMD, "%s: too short for an IDX header", path);
        goto out;
    }
    if (head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] != want_dims) {
        rc = data_error(CMD, "%s: bad IDX magic %02x %02x %02x %02x, expected 00 00 08 %02x (unsigned bytes, %d dims)",
                        path, head[0], head[1], head[2], head[3], want_dims, want_dims);
        goto out;
    }
    size_t n = 1, first = 0;
    for (int k = 0; k < want_dims; k++) {
        if (gzread(f, d, 4) != 4) {
            rc = data_error(CMD, "%s: truncated IDX header", path);
            goto out;
        }
        size_t v = ((size_t)d[0] << 24) | ((size_t)d[1] << 16) | ((size_t)d[2] << 8) | d[3];
        if (v == 0 || ffn_size_mul(n, v, &n) != 0 || n > ((size_t)1 << 36)) {
            rc = data_error(CMD, "%s: IDX dimension %d is %zu (zero or too large)", path, k, v);
            goto out;
        }
        if (k == 0) first = v;
    }
    *count = first;
    *item = n / first;
    *data = ffn_alloc(n, 1);
    if (!*data) {
        rc = data_error(CMD, "%s: out of memory for %zu bytes", path, n);
        goto out;
    }
    size_t got = 0;
    while (got < n) {
        unsigned chunk = n - got > (1u << 30) ? (1u << 30) : (unsigned)(n - got);
        int r = gzread(f, *data + got, chunk);
        if (r <= 0) break;
        got += (size_t)r;
    }
    if (got != n) {
        ffn_free(*data);
        *data = NULL;
        rc = data_error(CMD, "%s: holds %zu of the %zu bytes its header promises (truncated?)", path, got, n);
    }
out:
    gzclose(f);
    return rc;
}

int cmd_idx(int argc, char **argv)
{
    static const char *const known[] = {"--images", "--labels", "--out", "--val-out", "--val-count",
                                        "--val-fraction", "--seed", "--help!", NULL};
    static const char usage[] = "usage: ffn-data idx --images FILE --labels FILE --out OUT.h5\n"
                                "                    [--val-out VAL.h5 (--val-count N | --val-fraction F)] [--seed S]\n"
                                "IDX image/label files (gzip or raw) to x uint8 [N, D] (scale 1/255), y int32 [N].\n"
                                "With --val-out, a seeded random choice of rows goes to VAL.h5; both keep file order.\n";
    args a;
    int rc;
    if (args_parse(&a, argc, argv, known, usage, CMD, &rc)) return rc;
    const char *images = arg_str(&a, "--images"), *labels = arg_str(&a, "--labels"), *out = arg_str(&a, "--out");
    const char *val_out = arg_str(&a, "--val-out");
    if (!images || !labels || !out) return usage_error(CMD, "--images, --labels and --out are required");
    split_flags split;
    if ((rc = split_flags_parse(&split, &a, CMD))) return rc;
    if (val_out && !arg_has(&a, "--val-count") && !arg_has(&a, "--val-fraction"))
        return usage_error(CMD, "--val-out needs --val-count N or --val-fraction F");
    if (!val_out && (arg_has(&a, "--val-count") || arg_has(&a, "--val-fraction")))
        return usage_error(CMD, "--val-count/--val-fraction need --val-out");
    const named_path inputs[] = {{"--images", images, NULL}, {"--labels", labels, NULL}};
    const named_path outputs[] = {{"--out", out, NULL}, {"--val-out", val_out, NULL}};
    if ((rc = check_outputs(CMD, inputs, 2, outputs, 2))) return rc;

    table t = {0};
    size_t n_img = 0, d = 0, n_lab = 0, one = 0;
    uint8_t *lab = NULL;
    if ((rc = read_idx(images, 3, &n_img, &d, &t.xu))) return rc;
    if ((rc = read_idx(labels, 1, &n_lab, &one, &lab))) {
        table_free(&t);
        return rc;
    }
    if (n_img != n_lab) {
        rc = data_error(CMD, "%s has %zu images but %s has %zu labels", images, n_img, labels, n_lab);
        goto done;
    }
    t.rows = n_img;
    t.cols = d;
    t.x_uint8 = 1;
    t.scale = 1.0f / 255.0f;
    t.has_labels = 1;
    t.labels = ffn_alloc(t.rows, sizeof(int32_t));
    if (!t.labels) {
        rc = data_error(CMD, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < t.rows; i++) {
        t.labels[i] = lab[i];
        if ((size_t)lab[i] + 1 > t.num_classes) t.num_classes = (size_t)lab[i] + 1;
    }
    if (!val_out) rc = table_write(&t, out, NULL, 0, NULL, 0, images);
    else rc = table_write_split(&t, &split, out, val_out, images, CMD);
    if (!rc) printf("ffn-data idx: wrote %s%s%s\n", out, val_out ? " and " : "", val_out ? val_out : "");
done:
    ffn_free(lab);
    table_free(&t);
    return rc;
}
