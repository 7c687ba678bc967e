/* ffn-data npy: NumPy .npy arrays (format 1.0-3.0, little-endian, C order) to
 * the layout, streamed in blocks of rows (npy_stream.c): memory does not grow
 * with the arrays. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "convert.h"
#include "npy_stream.h"

static const char *const CMD = "npy";

static long long file_read(void *ctx, void *buf, size_t n)
{
    size_t got = fread(buf, 1, n, ctx);
    return got == 0 && ferror((FILE *)ctx) ? -1 : (long long)got;
}

/* Opens path as a stream whose data size is known (the file's size). */
static int file_open(npy_stream *s, const char *path, const char *cmd)
{
    memset(s, 0, sizeof *s);
    s->name = path;
    s->read = file_read;
    s->data_bytes = -1;
    FILE *f = fopen(path, "rb");
    if (!f) return data_error(cmd, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode)) s->data_bytes = (int64_t)sb.st_size;
    s->ctx = f;
    return 0;
}

static void file_close(npy_stream *s)
{
    if (s->ctx) fclose(s->ctx);
    s->ctx = NULL;
}

static int file_reopen(npy_stream *s, void *arg, const char *cmd)
{
    (void)arg;
    const char *path = s->name;
    file_close(s);
    return file_open(s, path, cmd);
}

int npy_file_open(npy_stream *s, const char *path, const char *cmd)
{
    int rc = file_open(s, path, cmd);
    if (!rc && (rc = npy_header_read(s, cmd))) file_close(s);
    return rc;
}

void npy_file_close(npy_stream *s) { file_close(s); }

int cmd_npy(int argc, char **argv)
{
    static const char *const known[] = {"--x", "--y", "--out", "--help!", NULL};
    static const char usage[] = "usage: ffn-data npy --x X.npy --y Y.npy --out OUT.h5\n"
                                "X: [N, D] u1 (kept as uint8, scale 1/255), f4 or f8. Y: [N] integer labels (u1, i4, i8)\n"
                                "or [N, K] f4/f8 float targets. Both are read in blocks of rows (bounded memory).\n";
    args a;
    int rc;
    if (args_parse(&a, argc, argv, known, usage, CMD, &rc)) return rc;
    const char *xp = arg_str(&a, "--x"), *yp = arg_str(&a, "--y"), *out = arg_str(&a, "--out");
    if (!xp || !yp || !out) return usage_error(CMD, "--x, --y and --out are required");
    const named_path inputs[] = {{"--x", xp, NULL}, {"--y", yp, NULL}}, output = {"--out", out, NULL};
    if ((rc = check_outputs(CMD, inputs, 2, &output, 1))) return rc;
    npy_stream X, Y;
    if ((rc = npy_file_open(&X, xp, CMD))) return rc;
    if ((rc = npy_file_open(&Y, yp, CMD))) {
        file_close(&X);
        return rc;
    }
    rc = npy_convert(&X, &Y, file_reopen, NULL, out, xp, CMD);
    if (!rc) printf("ffn-data npy: %s (%zu rows, %zu features)\n", out, X.shape[0], X.shape[1]);
    file_close(&X);
    file_close(&Y);
    return rc;
}
