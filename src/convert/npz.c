/* ffn-data npz: a .npz archive's x and y arrays to the layout. Members are
 * read as streams through libzip (inflated as they are read for
 * np.savez_compressed), converted by npy_stream.c in blocks of rows, so
 * memory does not grow with the arrays, stored or deflated. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "convert.h"
#include "npz_archive.h"

static const char *const CMD = "npz";

struct npz_archive {
    const char *path;
    zip_t *zip;
    size_t n;
    char **names; /* [n] array names, NULL for members that are not .npy */
};

/* One open member: what an npy_stream's ctx points to. */
typedef struct {
    npz_archive *z;
    zip_uint64_t index;
    zip_file_t *file;
    char label[4352]; /* "data.npz:x.npy" */
} member;

/* A local file header's signature: the start of a zip whose end is gone. */
static int starts_like_zip(const char *path)
{
    unsigned char sig[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(sig, 1, 4, f);
    fclose(f);
    return n == 4 && memcmp(sig, "PK\x03\x04", 4) == 0;
}

int npz_open(npz_archive **out, const char *path, const char *cmd)
{
    *out = NULL;
    int code = 0;
    /* ZIP_CHECKCONS compares the central directory with the local headers:
     * a truncated or patched archive is refused here, before anything is written. */
    zip_t *zip = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &code);
    if (!zip) {
        zip_error_t e;
        zip_error_init_with_code(&e, code);
        int rc;
        if (code == ZIP_ER_NOZIP && starts_like_zip(path))
            rc = data_error(cmd, "%s: a truncated zip archive (its end, the central directory, is missing)", path);
        else if (code == ZIP_ER_NOZIP)
            rc = data_error(cmd, "%s: not a zip archive (an .npz is one, as np.savez writes it)", path);
        else if (code == ZIP_ER_INCONS)
            rc = data_error(cmd, "%s: the zip archive is truncated or inconsistent (%s)", path, zip_error_strerror(&e));
        else rc = data_error(cmd, "%s: cannot open as a zip archive: %s", path, zip_error_strerror(&e));
        zip_error_fini(&e);
        return rc;
    }
    npz_archive *z = calloc(1, sizeof *z);
    zip_int64_t n = zip_get_num_entries(zip, 0);
    if (!z || n < 0 || !(z->names = calloc(n ? (size_t)n : 1, sizeof *z->names))) {
        free(z);
        zip_discard(zip);
        return data_error(cmd, "out of memory");
    }
    z->path = path;
    z->zip = zip;
    z->n = (size_t)n;
    for (size_t i = 0; i < z->n; i++) {
        const char *name = zip_get_name(zip, i, ZIP_FL_ENC_GUESS);
        size_t len = name ? strlen(name) : 0;
        if (len > 4 && strcmp(name + len - 4, ".npy") == 0 && (z->names[i] = malloc(len - 3))) {
            memcpy(z->names[i], name, len - 4);
            z->names[i][len - 4] = '\0';
        }
    }
    *out = z;
    return 0;
}

void npz_close(npz_archive *z)
{
    if (!z) return;
    for (size_t i = 0; i < z->n; i++) free(z->names[i]);
    free(z->names);
    zip_discard(z->zip);
    free(z);
}

size_t npz_count(const npz_archive *z) { return z->n; }
const char *npz_array_name(const npz_archive *z, size_t i) { return z->names[i]; }

const char *npz_method(const npz_archive *z, size_t i)
{
    zip_stat_t st;
    if (zip_stat_index(z->zip, i, 0, &st) != 0 || !(st.valid & ZIP_STAT_COMP_METHOD)) return "unknown";
    return st.comp_method == ZIP_CM_STORE ? "stored" : st.comp_method == ZIP_CM_DEFLATE ? "deflated" : "other compression";
}

size_t npz_find(const npz_archive *z, const char *name)
{
    for (size_t i = 0; i < z->n; i++)
        if (z->names[i] && strcmp(z->names[i], name) == 0) return i;
    return (size_t)-1;
}

const char *npz_list(const npz_archive *z, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < z->n && at < cap; i++) {
        if (!z->names[i]) continue;
        int k = snprintf(buf + at, cap - at, "%s%s", at ? ", " : "", z->names[i]);
        if (k < 0) break;
        at += (size_t)k;
    }
    if (!buf[0]) snprintf(buf, cap, "none");
    return buf;
}

static long long member_read(void *ctx, void *buf, size_t n)
{
    member *m = ctx;
    return zip_fread(m->file, buf, n);
}

static const char *member_error(void *ctx)
{
    member *m = ctx;
    return zip_file_strerror(m->file);
}

/* (Re)opens the member behind s at its first byte. */
static int member_start(member *m, npy_stream *s, const char *cmd)
{
    if (m->file) zip_fclose(m->file);
    m->file = zip_fopen_index(m->z->zip, m->index, 0);
    if (!m->file) return data_error(cmd, "%s: cannot read: %s", m->label, zip_strerror(m->z->zip));
    zip_stat_t st;
    s->data_bytes = -1;
    if (zip_stat_index(m->z->zip, m->index, 0, &st) == 0 && (st.valid & ZIP_STAT_SIZE)) s->data_bytes = (int64_t)st.size;
    return 0;
}

int npz_member_open(npz_archive *z, size_t i, npy_stream *s, const char *cmd)
{
    memset(s, 0, sizeof *s);
    member *m = calloc(1, sizeof *m);
    if (!m) return data_error(cmd, "out of memory");
    m->z = z;
    m->index = i;
    snprintf(m->label, sizeof m->label, "%s:%s.npy", z->path, z->names[i] ? z->names[i] : "?");
    *s = (npy_stream){.name = m->label, .ctx = m, .read = member_read, .error = member_error, .check_end = 1};
    int rc = member_start(m, s, cmd);
    if (!rc) rc = npy_header_read(s, cmd);
    if (rc) npz_member_close(s);
    return rc;
}

void npz_member_close(npy_stream *s)
{
    member *m = s->ctx;
    if (m && m->file) zip_fclose(m->file);
    free(m);
    s->ctx = NULL;
}

static int member_reopen(npy_stream *s, void *arg, const char *cmd)
{
    (void)arg;
    return member_start(s->ctx, s, cmd);
}

/* The member that --x/--y names, else x/X (y/Y). */
static int pick(npz_archive *z, const char *flag, const char *given, const char *lower, const char *upper,
                size_t *out)
{
    char list[1024];
    if (given) {
        *out = npz_find(z, given);
        if (*out == (size_t)-1)
            return data_error(CMD, "%s: no array '%s' for %s (the arrays there: %s)", z->path, given, flag,
                              npz_list(z, list, sizeof list));
        return 0;
    }
    *out = npz_find(z, lower);
    if (*out == (size_t)-1) *out = npz_find(z, upper);
    return 0;
}

int cmd_npz(int argc, char **argv)
{
    static const char *const known[] = {"--x", "--y", "--out", "--help!", NULL};
    static const char usage[] =
        "usage: ffn-data npz FILE.npz --out OUT.h5 [--x NAME] [--y NAME]\n"
        "An archive of np.savez or np.savez_compressed. x: the array named x or X (or --x NAME), [N, D] u1\n"
        "(kept as uint8, scale 1/255), f4 or f8; y: y or Y (or --y NAME), [N] integer labels (u1, i4, i8)\n"
        "or [N, K] f4/f8 targets. An archive of exactly two arrays needs no names: y is the 1-D one\n"
        "(else the second). Members are read in blocks of rows, stored or deflated (bounded memory).\n";
    args a;
    int rc;
    if (args_parse(&a, argc, argv, known, usage, CMD, &rc)) return rc;
    if (a.npos != 1) {
        fputs(usage, stdout);
        return usage_error(CMD, "give one FILE.npz");
    }
    const char *path = a.positional[0], *out = arg_str(&a, "--out");
    if (!out) return usage_error(CMD, "--out is required");
    const named_path input = {"FILE.npz", path, NULL}, output = {"--out", out, NULL};
    if ((rc = check_outputs(CMD, &input, 1, &output, 1))) return rc;
    npz_archive *z;
    if ((rc = npz_open(&z, path, CMD))) return rc;
    size_t xi, yi;
    const char *how = "by name";
    rc = pick(z, "--x", arg_str(&a, "--x"), "x", "X", &xi);
    if (!rc) rc = pick(z, "--y", arg_str(&a, "--y"), "y", "Y", &yi);
    npy_stream X = {0}, Y = {0};
    if (!rc && (xi == (size_t)-1 || yi == (size_t)-1)) {
        /* No names: exactly two arrays are x and y (y the 1-D one, else the second). */
        size_t arrays[2], n = 0;
        for (size_t i = 0; i < npz_count(z); i++)
            if (npz_array_name(z, i) && n++ < 2) arrays[n - 1] = i;
        char list[1024];
        if (n != 2 || (xi != (size_t)-1 && xi != arrays[0] && xi != arrays[1]) ||
            (yi != (size_t)-1 && yi != arrays[0] && yi != arrays[1])) {
            rc = data_error(CMD, "%s: no array named %s (the arrays there: %s); name them with --x and --y", path,
                            xi == (size_t)-1 ? "x or X" : "y or Y", npz_list(z, list, sizeof list));
        } else {
            how = "the only two arrays";
            if (xi == (size_t)-1 && yi == (size_t)-1) {
                /* Peek at the first one's header: a 1-D first array is y. */
                if (!(rc = npz_member_open(z, arrays[0], &X, CMD))) {
                    int first_is_y = X.ndim == 1;
                    npz_member_close(&X);
                    xi = arrays[first_is_y ? 1 : 0];
                    yi = arrays[first_is_y ? 0 : 1];
                }
            } else if (xi == (size_t)-1) {
                xi = yi == arrays[0] ? arrays[1] : arrays[0];
            } else {
                yi = xi == arrays[0] ? arrays[1] : arrays[0];
            }
        }
    }
    if (!rc && xi == yi) rc = usage_error(CMD, "x and y are the same array '%s'", npz_array_name(z, xi));
    int xo = 0, yo = 0;
    if (!rc) xo = !(rc = npz_member_open(z, xi, &X, CMD));
    if (!rc) yo = !(rc = npz_member_open(z, yi, &Y, CMD));
    if (!rc) rc = npy_convert(&X, &Y, member_reopen, NULL, out, path, CMD);
    if (!rc) {
        char xd[64], yd[64];
        printf("ffn-data npz: %s (%zu rows, %zu features; x '%s' %s, y '%s' %s: %s)\n", out, X.shape[0], X.shape[1],
               npz_array_name(z, xi), npy_describe(&X, xd, sizeof xd), npz_array_name(z, yi),
               npy_describe(&Y, yd, sizeof yd), how);
    }
    if (xo) npz_member_close(&X);
    if (yo) npz_member_close(&Y);
    npz_close(z);
    return rc;
}
