/* ffn — fixed tensors held once per node (see ffn/share.h). */
#define _GNU_SOURCE /* posix_fallocate, MAP_FIXED, shm_open */
#include "ffn/share.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ffn/mem.h"

int ffn_share_enabled(void)
{
    const char *env = getenv("FFN_SHARE_FROZEN");
    return !env || strcmp(env, "0") != 0;
}

uint64_t ffn_share_run_bytes(size_t offset, size_t count, size_t elem)
{
    size_t first, end;
    ffn_pages_within(offset * elem, (offset + count) * elem, &first, &end);
    return end - first;
}

/* The runs of fixed tensors, [offset, offset + count) each. */
typedef struct {
    size_t (*runs)[2];
    size_t count, cap;
    int failed; /* out of memory collecting */
} run_list;

static void add_run(void *user, size_t offset, size_t count)
{
    run_list *l = user;
    if (l->failed) return;
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        void *grown = realloc(l->runs, cap * sizeof *l->runs);
        if (!grown) {
            l->failed = 1;
            return;
        }
        l->runs = grown;
        l->cap = cap;
    }
    l->runs[l->count][0] = offset;
    l->runs[l->count][1] = count;
    l->count++;
}

/* One stretch of whole pages of a buffer and where it lies in the object. */
typedef struct {
    char *addr;
    size_t bytes;
    off_t at;
} segment;

/* The whole pages of each run in buf (elem bytes per parameter), appended
 * to segs at object offset *size onwards. */
static size_t plan_segments(const run_list *runs, void *buf, size_t elem, segment *segs, size_t n, size_t *size)
{
    for (size_t i = 0; i < runs->count; i++) {
        size_t first, end;
        ffn_pages_within(runs->runs[i][0] * elem, (runs->runs[i][0] + runs->runs[i][1]) * elem, &first, &end);
        if (end == first) continue;
        segs[n++] = (segment){(char *)buf + first, end - first, (off_t)*size};
        *size += end - first;
    }
    return n;
}

/* The node's first rank: the object named name, sized and filled with its
 * own pages of every segment. Returns the descriptor, or -1 with why set (and
 * nothing left behind). */
static int create_object(const char *name, const segment *segs, size_t n, size_t size, char *why, size_t cap)
{
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        snprintf(why, cap, "shm_open %s: %s", name, strerror(errno));
        return -1;
    }
    /* Reserve the pages now: tmpfs out of room would otherwise be a SIGBUS on the copy. */
    int rc = ftruncate(fd, (off_t)size) != 0 ? errno : posix_fallocate(fd, 0, (off_t)size);
    char *obj = MAP_FAILED;
    if (rc == 0) {
        obj = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (obj == MAP_FAILED) rc = errno;
    }
    if (rc != 0) {
        snprintf(why, cap, "/dev/shm cannot hold %zu bytes (%s)", size, strerror(rc));
        close(fd);
        shm_unlink(name);
        return -1;
    }
    for (size_t i = 0; i < n; i++) memcpy(obj + segs[i].at, segs[i].addr, segs[i].bytes);
    munmap(obj, size);
    return fd;
}

/* bf16 copy mapped from another rank: the partial pages at each run's ends
 * stayed private and are converted here. */
static void convert_run_edges(ffn_model *m, const run_list *runs)
{
    for (size_t i = 0; i < runs->count; i++) {
        size_t lo = runs->runs[i][0], hi = lo + runs->runs[i][1], first, end;
        ffn_pages_within(lo * 2, hi * 2, &first, &end);
        if (end == first) {
            ffn_model_bf16_refresh_range(m, lo, hi - lo);
            continue;
        }
        ffn_model_bf16_refresh_range(m, lo, first / 2 - lo);
        ffn_model_bf16_refresh_range(m, end / 2, hi - end / 2);
    }
}

ffn_status ffn_model_share_frozen(ffn_model *m, ffn_comm *c, ffn_share_info *info)
{
    static unsigned objects_made; /* a process may share several models over its life */
    memset(info, 0, sizeof *info);
    run_list runs = {0};
    ffn_model_fixed_runs(m, add_run, &runs);
    float *params;
    void *bf16;
    ffn_model_page_buffers(m, &params, &bf16);
    for (size_t i = 0; i < runs.count; i++) info->fixed_bytes += (uint64_t)runs.runs[i][1] * sizeof(float);
    segment *segs = runs.count ? calloc(2 * runs.count, sizeof *segs) : NULL;
    ffn_status st = runs.failed || (runs.count && !segs) ? ffn_fail(FFN_ERR_NOMEM, "out of memory") : FFN_OK;
    size_t n = 0, size = 0;
    if (st == FFN_OK) {
        n = plan_segments(&runs, params, sizeof(float), segs, 0, &size);
        if (bf16) n = plan_segments(&runs, bf16, 2, segs, n, &size);
    }
    /* One rank out of memory must not leave the others of its node in the broadcast below. */
    if ((st = ffn_comm_agree(c, st)) != FFN_OK) {
        free(segs);
        free(runs.runs);
        return st;
    }
    /* The same model on every rank: the whole node goes on or skips alike. */
    const int local = ffn_comm_local_rank(c), first_rank = local == 0;
    int mapped = 0, fd = -1;
    char name[64] = "";
    if (st == FFN_OK && size && ffn_comm_local_size(c) > 1) {
        if (first_rank && !ffn_share_enabled()) {
            snprintf(info->why_not, sizeof info->why_not, "FFN_SHARE_FROZEN=0");
        } else if (first_rank) {
            /* Unique on the node: this process's id, and a count within it. */
            snprintf(name, sizeof name, "/ffn-frozen-%ld-%u", (long)getpid(), objects_made++);
            if (bf16) ffn_model_bf16_fix(m, 1); /* the copy the object takes is final */
            if ((fd = create_object(name, segs, n, size, info->why_not, sizeof info->why_not)) < 0) name[0] = '\0';
        }
        st = ffn_comm_node_bcast_bytes(c, name, sizeof name);
        if (st == FFN_OK && name[0] && !first_rank && (fd = shm_open(name, O_RDONLY, 0)) < 0)
            snprintf(info->why_not, sizeof info->why_not, "shm_open %s: %s", name, strerror(errno));
        /* A rank that cannot open it keeps its private pages: the same values. */
        for (size_t i = 0; st == FFN_OK && fd >= 0 && i < n; i++) {
            void *at = mmap(segs[i].addr, segs[i].bytes, PROT_READ, MAP_SHARED | MAP_FIXED, fd, segs[i].at);
            if (at == MAP_FAILED)
                st = ffn_fail(FFN_ERR_NOMEM, "mapping the node-shared frozen parameters failed half-way (%s); "
                              "FFN_SHARE_FROZEN=0 keeps them per rank", strerror(errno));
            else info->mapped_bytes += segs[i].bytes;
        }
        mapped = st == FFN_OK && fd >= 0;
        if (fd >= 0) close(fd); /* the mappings keep the object */
        if (mapped && bf16 && !first_rank) {
            convert_run_edges(m, &runs);
            ffn_model_bf16_fix(m, 0);
        }
    }
    free(segs);
    free(runs.runs);
    /* Every rank has mapped (or given up) once all agree: the name can go. */
    st = ffn_comm_agree(c, st);
    if (first_rank && name[0]) shm_unlink(name);
    if (st != FFN_OK) return st;
    double counts[2] = {mapped, mapped && first_rank};
    if ((st = ffn_comm_sum_doubles(c, counts, 2)) != FFN_OK) return st;
    info->ranks = (int)counts[0];
    info->nodes = (int)counts[1];
    if (!mapped) info->mapped_bytes = 0;
    return FFN_OK;
}
