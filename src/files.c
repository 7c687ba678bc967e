/* ffn — file identity (see ffn/files.h). */
#define _GNU_SOURCE /* realpath */
#include "files.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The absolute path p would have once created: its directory's real path and
 * its last component. 0 when the directory cannot be resolved. */
static int resolve(const char *p, char *out, size_t cap)
{
    const char *slash = strrchr(p, '/');
    char dir[PATH_MAX], real[PATH_MAX];
    const char *base = slash ? slash + 1 : p;
    if (slash) {
        size_t n = (size_t)(slash - p);
        if (n >= sizeof dir) return 0;
        memcpy(dir, p, n);
        dir[n ? n : 1] = '\0';
        if (n == 0) dir[0] = '/';
    } else {
        strcpy(dir, ".");
    }
    if (!realpath(dir, real)) return 0;
    size_t need = strlen(real) + 1 + strlen(base) + 1;
    if (need > cap) return 0;
    strcpy(out, real);
    if (strcmp(real, "/") != 0) strcat(out, "/");
    strcat(out, base);
    return 1;
}

int ffn_same_file(const char *a, const char *b)
{
    if (!a || !b) return 0;
    struct stat sa, sb;
    int ea = stat(a, &sa) == 0, eb = stat(b, &sb) == 0;
    if (ea && eb) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    if (ea != eb) return 0; /* one exists, the other not: different files */
    char ra[PATH_MAX], rb[PATH_MAX];
    return resolve(a, ra, sizeof ra) && resolve(b, rb, sizeof rb) && strcmp(ra, rb) == 0;
}
