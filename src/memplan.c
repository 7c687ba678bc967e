/* ffn — the memory plan: the predicted peak memory per rank, the limits a
 * rank runs under, and the flags that would fit (see ffn/memplan.h). */
#include "ffn/memplan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "ffn/ckpt.h"
#include "ffn/partition.h"
#include "ffn/sampler.h"
#include "ffn/share.h"
#include "ffn/step.h"

static const char *const part_names[FFN_MEM_PART_COUNT] = {
    [FFN_MEM_BASE] = "base",         [FFN_MEM_PARAMS] = "params",  [FFN_MEM_GRADS] = "grads",
    [FFN_MEM_OPTIM] = "optimizer",   [FFN_MEM_ACTIVATIONS] = "activations", [FFN_MEM_DATA] = "data",
    [FFN_MEM_BF16] = "bf16 copies", [FFN_MEM_CACHE] = "data cache",  [FFN_MEM_CHECKPOINT] = "start checkpoint", [FFN_MEM_PRUNE] = "pruning",
    [FFN_MEM_TEACHER] = "teacher",
    [FFN_MEM_TRANSIENT] = "transient",
};

const char *ffn_mem_part_name(ffn_mem_part part)
{
    return part < FFN_MEM_PART_COUNT ? part_names[part] : "?";
}

/* The loader's labels rule (data.c): labels up to 64 MiB are held from open. */
#define LABELS_HELD_MAX ((uint64_t)64 << 20)

/* The whole pages of the fixed runs, in the parameters and the bf16 copy (ffn/share.h). */
typedef struct {
    uint64_t params, bf16;
    int bf16_on;
} shared_pages;

static void count_shared_run(void *user, size_t offset, size_t count)
{
    shared_pages *p = user;
    p->params += ffn_share_run_bytes(offset, count, sizeof(float));
    if (p->bf16_on) p->bf16 += ffn_share_run_bytes(offset, count, 2);
}

/* The fixed parameters inside [lo, hi): the optimizer state (and a sharded
 * gradient slice) of those is page-mapped and never written, so takes no memory. */
typedef struct {
    size_t lo, hi;
    uint64_t fixed;
} fixed_in_slice;

static void count_fixed_in_slice(void *user, size_t offset, size_t count)
{
    fixed_in_slice *f = user;
    size_t a = offset > f->lo ? offset : f->lo, b = offset + count < f->hi ? offset + count : f->hi;
    if (a < b) f->fixed += b - a;
}

ffn_status ffn_memplan_compute(const ffn_mem_inputs *in, ffn_mem_plan *out)
{
    memset(out, 0, sizeof *out);
    const int ranks = in->ranks > 0 ? in->ranks : 1, local = in->local_ranks > 0 ? in->local_ranks : 1;
    size_t max_rows = ffn_sampler_max_local(in->batch_size, ranks);
    if (max_rows > in->rows) max_rows = in->rows;
    if (max_rows == 0) max_rows = 1;
    const size_t arena_rows = max_rows > in->eval_batch_size ? max_rows : in->eval_batch_size;
    size_t params, act, operand;
    ffn_status st = ffn_model_plan(in->layers, in->layer_count, in->input_dim, arena_rows, in->recompute,
                                   in->bf16 && !in->fp32_caches, &params, &act, &operand);
    if (st != FFN_OK) return st;
    /* The output width: dense layers set it, every other kind keeps its input's. */
    size_t out_dim = in->input_dim;
    for (size_t i = 0; i < in->layer_count; i++)
        if (in->layers[i].kind == FFN_LAYER_DENSE) out_dim = in->layers[i].units;
    const uint64_t P = params, F = sizeof(float);
    uint64_t *part = out->part;
    part[FFN_MEM_BASE] = FFN_MEM_BASE_BYTES;
    /* ZeRO: rank r owns a slice of at most ceil(P / N) parameters (ffn_comm_slice). */
    const int asked = ffn_shard_asked(in->shard, in->shard_optimizer);
    const int shard = ranks > 1 ? asked : FFN_SHARD_NONE; /* one rank: nothing to split (ffn_step_create) */
    const uint64_t own = shard >= FFN_SHARD_OPTIMIZER ? (P + (uint64_t)ranks - 1) / (uint64_t)ranks : P;
    size_t largest = 0; /* --shard grads/params: one layer's gradients (and parameters) besides the slice */
    if (shard >= FFN_SHARD_GRADS &&
        (st = ffn_model_plan_largest_layer(in->layers, in->layer_count, in->input_dim, &largest)) != FFN_OK)
        return st;
    const uint64_t layer = ranks > 1 ? (uint64_t)largest : 0, page = 2 * 4096; /* a partial page at either end */
    /* The node holds the parameters (and in bf16 their copy) once, each rank its slice's share. */
    const int params_node_shared = ffn_shard_params_once_per_node((ffn_shard)shard, in->pruning, ranks, local);
    /* Across nodes the next layer's parameters come, and the last one's gradients travel, while one
     * computes (the step's communication thread): two layers in flight. */
    const uint64_t in_flight = shard >= FFN_SHARD_PARAMS && !params_node_shared ? 2 * layer : layer;
    part[FFN_MEM_PARAMS] = params_node_shared ? own * F + page
                           : shard >= FFN_SHARD_PARAMS ? (own + in_flight) * F + page : P * F;
    /* This rank's slice (ffn_comm_slice) and the fixed parameters in it. */
    fixed_in_slice fixed = {0, P, 0};
    if (shard >= FFN_SHARD_OPTIMIZER) ffn_partition(P, (size_t)(in->rank > 0 ? in->rank : 0), (size_t)ranks, &fixed.lo, &fixed.hi);
    if (in->frozen_layers &&
        (st = ffn_model_plan_fixed_runs(in->layers, in->layer_count, in->input_dim, in->frozen_layers,
                                        count_fixed_in_slice, &fixed)) != FFN_OK)
        return st;
    const uint64_t own_trained = own > fixed.fixed ? own - fixed.fixed : 0;
    part[FFN_MEM_GRADS] = shard >= FFN_SHARD_GRADS ? (own_trained + in_flight) * F + page : P * F;
    part[FFN_MEM_OPTIM] = (uint64_t)in->state_buffers * own_trained * F + (shard == FFN_SHARD_OPTIMIZER ? own * F : 0);
    part[FFN_MEM_ACTIVATIONS] = (uint64_t)act * F + (uint64_t)max_rows * out_dim * F;
    /* bf16: the weights' copy (the whole parameter buffer's size) and the engine's two operand buffers. */
    part[FFN_MEM_BF16] = in->bf16 ? (params_node_shared ? own + page : shard >= FFN_SHARD_PARAMS ? in_flight + page : P) * 2 +
                                        2 * (uint64_t)operand * 2 : 0;
    /* Two loader slots (row ids, x, targets), the sampler's order, labels held since open, the evaluator. */
    const uint64_t y_row = in->target_cols ? (uint64_t)in->target_cols * F : sizeof(int32_t);
    uint64_t data = 2 * (uint64_t)max_rows * (sizeof(uint64_t) + (uint64_t)in->features * F + y_row);
    data += (uint64_t)in->rows * sizeof(uint64_t);
    const uint64_t labels = in->target_cols ? 0 : (uint64_t)in->rows * sizeof(int32_t);
    const int labels_held = labels && labels <= LABELS_HELD_MAX;
    if (labels_held) data += labels;
    if (in->evaluates) data += (uint64_t)in->eval_batch_size * ((uint64_t)in->input_dim * F + sizeof(int32_t) + out_dim * F);
    part[FFN_MEM_DATA] = data;
    /* The cache rule of ffn_dataset_cache: all of /x as stored, and /y, when they fit the budget. */
    const uint64_t xb = (uint64_t)in->rows * in->x_row_bytes, yb = (uint64_t)in->rows * y_row;
    if (xb + yb <= in->cache_budget) part[FFN_MEM_CACHE] = xb + (labels_held ? 0 : yb);
    part[FFN_MEM_CHECKPOINT] = in->held_bytes;
    part[FFN_MEM_PRUNE] = in->pruning ? P * (1 + F) : 0; /* a byte of mask, a float of scratch per weight (at most) */
    /* Fixed tensors once per node: each rank's share of their whole pages
     * (not with --shard params, where each rank holds a slice of its own). */
    shared_pages frozen = {.bf16_on = in->bf16};
    if (in->share_frozen && local > 1 && !params_node_shared && shard < FFN_SHARD_PARAMS &&
        (st = ffn_model_plan_fixed_runs(in->layers, in->layer_count, in->input_dim, in->frozen_layers,
                                        count_shared_run, &frozen)) != FFN_OK)
        return st;
    part[FFN_MEM_PARAMS] -= frozen.params - frozen.params / (uint64_t)local;
    part[FFN_MEM_BF16] -= frozen.bf16 - frozen.bf16 / (uint64_t)local;
    out->frozen_shared = frozen.params + frozen.bf16;
    /* Until a rank maps the node's copy it holds its own, whole, beside its
     * share of the node's (measured: a LoRA run on a 4 GiB base at 2 ranks
     * peaked 2 GiB above the plan that counted only the other half). */
    const uint64_t unshared = out->frozen_shared;
    /* Short-lived: the model's own gradients until they move into node-shared
     * memory (ffn_step_create), or the slice rank 0 writes a checkpoint through
     * (parameters and optimizer state come a slice at a time, whatever the
     * sharding: ffn_checkpoint_slice_floats, 64 MiB). */
    out->grads_shared = ranks > 1 && local == ranks && shard < FFN_SHARD_GRADS;
    const uint64_t move = out->grads_shared ? P * F : 0;
    const uint64_t slice = ffn_checkpoint_slice_floats();
    const uint64_t gather = in->writes_checkpoints && in->rank == 0 ? (P < slice ? P : slice) * F : 0;
    /* The teacher: its model and an arena for a training batch; while it
     * loads, its checkpoint's model (parameters and gradients) and state too. */
    uint64_t teacher_load = 0;
    if (in->teacher_layers) {
        size_t tp, tact, top;
        st = ffn_model_plan(in->teacher_layers, in->teacher_layer_count, in->input_dim, max_rows, in->recompute,
                            in->bf16 && !in->fp32_caches, &tp, &tact, &top);
        if (st != FFN_OK) return st;
        /* The teacher computes as the student: its own bf16 copies too. */
        part[FFN_MEM_TEACHER] = 2 * (uint64_t)tp * F + (uint64_t)tact * F + (in->bf16 ? tp * 2 + 4 * (uint64_t)top : 0);
        teacher_load = (2 + (uint64_t)in->teacher_state_buffers) * tp * F;
    }
    const uint64_t most = move > gather ? move : gather;
    const uint64_t most3 = most > teacher_load ? most : teacher_load;
    part[FFN_MEM_TRANSIENT] = most3 > unshared ? most3 : unshared;
    out->transient = !part[FFN_MEM_TRANSIENT] ? "" : unshared > most3 ? "frozen base before sharing"
                     : teacher_load > most ? "teacher load" : gather > move ? "checkpoint slice" : "grads move";
    /* MPI_Win_allocate_shared maps every segment of the node's window into every rank. */
    out->address_extra = out->grads_shared ? (uint64_t)(local - 1) * P * F : 0;
    for (int i = 0; i < FFN_MEM_PART_COUNT; i++) out->total += part[i];
    out->params = params;
    out->max_rows = max_rows;
    return FFN_OK;
}

/* ---- limits ---- */

void ffn_memplan_read_meminfo(const char *meminfo, ffn_mem_limits *l)
{
    FILE *f = fopen(meminfo, "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned long long kib;
        if (sscanf(line, "MemTotal: %llu kB", &kib) == 1) l->node_bytes = (uint64_t)kib << 10;
        else if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) l->available_bytes = (uint64_t)kib << 10;
    }
    fclose(f);
}

/* A limit file's value: 1 and *bytes for a limit, 0 for none ("max", absent,
 * unreadable, or 2^62 and more: v1 writes 2^63 rounded down to a page). */
static int read_limit(const char *path, uint64_t *bytes)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char text[64] = "";
    int ok = fgets(text, sizeof text, f) != NULL;
    fclose(f);
    if (!ok || strncmp(text, "max", 3) == 0) return 0;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || v >= (1ull << 62)) return 0;
    *bytes = v;
    return 1;
}

/* The smallest limit named leaf in dir and its ancestors up to (and with) mount. */
static int walk_up(const char *mount, const char *rel, const char *leaf, uint64_t *bytes, char *file, size_t cap)
{
    char dir[4096];
    int n = snprintf(dir, sizeof dir, "%s%s", mount, strcmp(rel, "/") == 0 ? "" : rel);
    if (n < 0 || (size_t)n >= sizeof dir) return 0;
    size_t mlen = strlen(mount);
    int found = 0;
    for (;;) {
        char path[4200];
        uint64_t v = 0;
        snprintf(path, sizeof path, "%s/%s", dir, leaf);
        if (read_limit(path, &v) && (!found || v < *bytes)) {
            *bytes = v;
            snprintf(file, cap, "%s", path);
            found = 1;
        }
        char *slash = strrchr(dir, '/');
        if (strlen(dir) <= mlen || !slash || (size_t)(slash - dir) < mlen) break;
        *slash = '\0';
    }
    return found;
}

int ffn_memplan_cgroup_limit(const char *cgroup_file, const char *mountinfo, uint64_t *bytes, char *file,
                             size_t cap)
{
    /* This process's cgroup: v2 ("0::PATH") and v1's memory hierarchy ("N:...memory...:PATH"). */
    char v2_path[4096] = "", v1_path[4096] = "", line[8192];
    int have_v2 = 0, have_v1 = 0;
    FILE *f = fopen(cgroup_file, "r");
    if (!f) return 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c1 = *c2 = '\0';
        const char *controllers = c1 + 1, *path = c2 + 1;
        if (strcmp(line, "0") == 0 && controllers[0] == '\0') {
            snprintf(v2_path, sizeof v2_path, "%s", path);
            have_v2 = 1;
        } else {
            char list[1024];
            snprintf(list, sizeof list, "%s", controllers);
            for (char *save, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
                if (strcmp(t, "memory") == 0) {
                    snprintf(v1_path, sizeof v1_path, "%s", path);
                    have_v1 = 1;
                }
        }
    }
    fclose(f);
    if (!have_v1 && !have_v2) return 0;
    /* Where the hierarchies are mounted: mountinfo's root (field 4) and mount point (5). */
    if (!(f = fopen(mountinfo, "r"))) return 0;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        char root[4096], point[4096];
        if (sscanf(line, "%*s %*s %*s %4095s %4095s", root, point) != 2) continue;
        const char *sep = strstr(line, " - ");
        if (!sep) continue;
        char fstype[64], source[256], options[2048] = "";
        if (sscanf(sep + 3, "%63s %255s %2047s", fstype, source, options) < 2) continue;
        const char *path, *leaf;
        if (strcmp(fstype, "cgroup2") == 0 && have_v2) {
            path = v2_path;
            leaf = "memory.max";
        } else if (strcmp(fstype, "cgroup") == 0 && have_v1) {
            int memory = 0;
            for (char *save, *t = strtok_r(options, ",", &save); t; t = strtok_r(NULL, ",", &save))
                memory |= strcmp(t, "memory") == 0;
            if (!memory) continue;
            path = v1_path;
            leaf = "memory.limit_in_bytes";
        } else {
            continue;
        }
        /* The process's path is relative to the hierarchy's root; the mount shows the part under root. */
        size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
        if (rl && (strncmp(path, root, rl) != 0 || (path[rl] != '/' && path[rl] != '\0'))) continue;
        const char *rel = path[rl] ? path + rl : "/";
        uint64_t v = 0;
        char which[4200];
        if (walk_up(point, rel, leaf, &v, which, sizeof which) && (!found || v < *bytes)) {
            *bytes = v;
            snprintf(file, cap, "%s", which);
            found = 1;
        }
    }
    fclose(f);
    return found;
}

void ffn_memplan_detect(ffn_mem_limits *l)
{
    memset(l, 0, sizeof *l);
    l->cgroup_ranks = 1;
    ffn_memplan_read_meminfo("/proc/meminfo", l);
    if (!ffn_memplan_cgroup_limit("/proc/self/cgroup", "/proc/self/mountinfo", &l->cgroup_bytes, l->cgroup_file,
                                  sizeof l->cgroup_file))
        l->cgroup_bytes = 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) l->rlimit_as = (uint64_t)rl.rlim_cur;
}

void ffn_memplan_format_bytes(char *out, size_t cap, double bytes)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int u = 0;
    while (bytes >= 1024 && u < 5) {
        bytes /= 1024;
        u++;
    }
    snprintf(out, cap, u ? "%.2f %s" : "%.0f %s", bytes, unit[u]);
}

uint64_t ffn_memplan_as_margin(const ffn_mem_limits *l)
{
    return FFN_MEM_AS_MARGIN_BYTES + (uint64_t)(l->threads > 0 ? l->threads : 1) * FFN_MEM_AS_PER_THREAD_BYTES;
}

uint64_t ffn_memplan_rank_limit(const ffn_mem_limits *l, int local_ranks, uint64_t address_extra, char *which,
                                size_t cap)
{
    char a[32], b[32];
    if (local_ranks < 1) local_ranks = 1;
    if (l->override_bytes) {
        snprintf(which, cap, "--memory-limit %llu MiB", (unsigned long long)(l->override_bytes >> 20));
        return l->override_bytes;
    }
    uint64_t best = UINT64_MAX;
    snprintf(which, cap, "no limit known");
    if (l->node_bytes) {
        best = l->node_bytes / (uint64_t)local_ranks;
        ffn_memplan_format_bytes(a, sizeof a, (double)l->node_bytes);
        snprintf(which, cap, "node memory: MemTotal %s (/proc/meminfo) / %d rank%s on this node", a, local_ranks,
                 local_ranks == 1 ? "" : "s");
    }
    if (l->cgroup_bytes) {
        int n = l->cgroup_ranks < 1 ? 1 : l->cgroup_ranks > local_ranks ? local_ranks : l->cgroup_ranks;
        uint64_t v = l->cgroup_bytes / (uint64_t)n;
        if (v < best) {
            best = v;
            ffn_memplan_format_bytes(a, sizeof a, (double)l->cgroup_bytes);
            snprintf(which, cap, "cgroup %s: %s / %d rank%s of this job under it", l->cgroup_file, a, n,
                     n == 1 ? "" : "s");
        }
    }
    if (l->rlimit_as) {
        const uint64_t margin = ffn_memplan_as_margin(l) + address_extra;
        uint64_t v = l->rlimit_as > margin ? l->rlimit_as - margin : 0;
        if (v < best) {
            best = v;
            ffn_memplan_format_bytes(a, sizeof a, (double)l->rlimit_as);
            ffn_memplan_format_bytes(b, sizeof b, (double)margin);
            snprintf(which, cap, "RLIMIT_AS %s (getrlimit, per process; less %s of address space mapped beyond what "
                     "is touched: libraries, %d BLAS thread%s%s)", a, b, l->threads, l->threads == 1 ? "" : "s",
                     address_extra ? ", the node's shared gradient window" : "");
        }
    }
    return best;
}

void ffn_memplan_describe(const ffn_mem_plan *p, char *out, size_t cap)
{
    char t[32], v[32];
    ffn_memplan_format_bytes(t, sizeof t, (double)p->total);
    size_t n = (size_t)snprintf(out, cap, "%s per rank predicted (", t);
    const char *sep = "";
    for (int i = 0; i < FFN_MEM_PART_COUNT && n < cap; i++) {
        if (!p->part[i]) continue;
        ffn_memplan_format_bytes(v, sizeof v, (double)p->part[i]);
        const char *note = i == FFN_MEM_GRADS && p->grads_shared ? "node-shared"
                           : (i == FFN_MEM_PARAMS || i == FFN_MEM_BF16) && p->frozen_shared ? "frozen part node-shared"
                           : i == FFN_MEM_TRANSIENT && p->transient ? p->transient : "";
        n += (size_t)snprintf(out + n, cap - n, "%s%s %s%s%s", sep, part_names[i], v, *note ? " " : "", note);
        sep = ", ";
    }
    if (n < cap) snprintf(out + n, cap - n, ")");
}

/* ---- suggestions: one row per way to use less memory ----
 *
 * Each row's attempt changes a copy of the inputs towards less memory (it may
 * change the ranks on a node, which changes the limit), stopping at the first
 * variant that fits or at the row's last one; it writes the flags of the
 * variant it stopped at and returns 1 when that fits, 0 when it does not, -1
 * when the row does not apply (nothing changed). Rows are tried alone first,
 * then, when none fits alone, one after another on the same copy. Later modes
 * (--shard grads/params, --precision bf16, --recompute) are rows of their own. */

typedef struct {
    const ffn_mem_limits *limits;
    uint64_t total;       /* the prediction of the variant last tried */
} trial;

static int fits(const ffn_mem_inputs *in, trial *t)
{
    ffn_mem_plan p;
    char which[16];
    if (ffn_memplan_compute(in, &p) != FFN_OK) return 0;
    t->total = p.total;
    return p.total <= ffn_memplan_rank_limit(t->limits, in->local_ranks, p.address_extra, which, sizeof which);
}

/* The least sharding that fits: the optimizer state, then also the
 * gradients, then also the parameters (each costs more communication). */
static int try_shard(ffn_mem_inputs *in, trial *t, char *text, size_t cap)
{
    const int now = ffn_shard_asked(in->shard, in->shard_optimizer);
    if (now >= FFN_SHARD_PARAMS || in->ranks < 2) return -1;
    int ok = 0;
    for (int mode = now + 1; !ok && mode <= FFN_SHARD_PARAMS; mode++) {
        if (mode == FFN_SHARD_OPTIMIZER && !in->state_buffers) continue;
        in->shard = mode;
        in->shard_optimizer = 1;
        ok = fits(in, t);
    }
    snprintf(text, cap, "--shard %s", ffn_names_name(&ffn_shard_names, in->shard));
    return ok;
}

/* The largest --eval-batch-size (halving, down to the training rows per rank)
 * that fits: the arena serves evaluation too. */
static int try_eval_batch(ffn_mem_inputs *in, trial *t, char *text, size_t cap)
{
    size_t rows = ffn_sampler_max_local(in->batch_size, in->ranks > 0 ? in->ranks : 1);
    if (in->eval_batch_size <= 1 || in->eval_batch_size <= rows) return -1;
    int ok = 0;
    while (!ok && in->eval_batch_size > 1 && in->eval_batch_size > rows) {
        in->eval_batch_size /= 2;
        ok = fits(in, t);
    }
    snprintf(text, cap, "--eval-batch-size %zu", in->eval_batch_size);
    return ok;
}

/* A smaller --batch-size with a larger --accumulate: the same optimizer step
 * in less activation memory. */
static int try_smaller_batch(ffn_mem_inputs *in, trial *t, char *text, size_t cap)
{
    const size_t ranks = (size_t)(in->ranks > 0 ? in->ranks : 1);
    size_t k = in->accumulate ? in->accumulate : 1;
    if (in->batch_size / 2 < ranks || in->batch_size % 2) return -1;
    int ok = 0;
    while (!ok && in->batch_size / 2 >= ranks && in->batch_size % 2 == 0) {
        in->batch_size /= 2;
        k *= 2;
        ok = fits(in, t);
    }
    in->accumulate = k;
    snprintf(text, cap, "--batch-size %zu --accumulate %zu", in->batch_size, k);
    return ok;
}

static int try_no_cache(ffn_mem_inputs *in, trial *t, char *text, size_t cap)
{
    ffn_mem_plan p;
    if (!in->cache_budget || ffn_memplan_compute(in, &p) != FFN_OK || !p.part[FFN_MEM_CACHE]) return -1;
    in->cache_budget = 0;
    snprintf(text, cap, "FFN_DATA_CACHE_MB=0 (batches read from the file)");
    return fits(in, t);
}

/* Fewer ranks on each node (the same ranks over more nodes): each gets more of the node. */
static int try_fewer_per_node(ffn_mem_inputs *in, trial *t, char *text, size_t cap)
{
    if (in->local_ranks <= 1) return -1;
    int ok = 0;
    while (!ok && in->local_ranks > 1) {
        in->local_ranks--;
        ok = fits(in, t);
    }
    snprintf(text, cap, "%d rank%s per node", in->local_ranks, in->local_ranks == 1 ? "" : "s");
    return ok;
}

/* More nodes of as many ranks each, the optimizer state sharded over all of them. */
static int try_more_nodes(ffn_mem_inputs *in, trial *t, char *text, size_t cap)
{
    if (!in->state_buffers) return -1;
    const int local = in->local_ranks > 0 ? in->local_ranks : 1, nodes = (in->ranks + local - 1) / local;
    const char *shard = in->shard_optimizer || in->shard ? "" : "--shard optimizer on ";
    in->shard_optimizer = 1;
    int ok = 0, n = nodes;
    while (!ok && n < 1024) {
        n = n < 2 ? 2 : n * 2;
        in->ranks = n * local;
        ok = fits(in, t);
    }
    snprintf(text, cap, "%s%d ranks (%d node%s of %d)", shard, in->ranks, n, n == 1 ? "" : "s", local);
    return ok;
}

/* --recompute: the blocks' caches held once. */
static int try_recompute(ffn_mem_inputs *in, trial *t, char *text, size_t cap)
{
    size_t blocks = 0;
    for (size_t i = 0; i < in->layer_count; i++)
        blocks += ffn_layer_kind_recomputes(in->layers[i].kind);
    if (in->recompute || blocks == 0) return -1;
    in->recompute = 1;
    snprintf(text, cap, "--recompute");
    return fits(in, t);
}

static int (*const suggestions[])(ffn_mem_inputs *in, trial *t, char *text, size_t cap) = {
    try_shard, try_recompute, try_eval_batch, try_smaller_batch, try_no_cache, try_fewer_per_node,
    try_more_nodes,
};
#define SUGGESTION_COUNT (sizeof suggestions / sizeof suggestions[0])

void ffn_memplan_suggest(const ffn_mem_inputs *in, const ffn_mem_limits *l, char *out, size_t cap)
{
    size_t n = 0;
    char text[256], total[32];
    out[0] = '\0';
    for (size_t i = 0; i < SUGGESTION_COUNT && n < cap; i++) {
        ffn_mem_inputs variant = *in;
        trial t = {.limits = l};
        if (suggestions[i](&variant, &t, text, sizeof text) != 1) continue;
        ffn_memplan_format_bytes(total, sizeof total, (double)t.total);
        n += (size_t)snprintf(out + n, cap - n, "%s%s (%s per rank)", n ? "; or " : "", text, total);
    }
    if (n) return;
    /* None alone: the rows together, in table order, until the variant fits. */
    ffn_mem_inputs variant = *in;
    trial t = {.limits = l};
    char flags[1024] = "";
    size_t m = 0;
    for (size_t i = 0; i < SUGGESTION_COUNT && m < sizeof flags; i++) {
        int ok = suggestions[i](&variant, &t, text, sizeof text);
        if (ok < 0) continue;
        m += (size_t)snprintf(flags + m, sizeof flags - m, "%s%s", m ? " with " : "", text);
        if (ok == 1) {
            ffn_memplan_format_bytes(total, sizeof total, (double)t.total);
            snprintf(out, cap, "%s (%s per rank)", flags, total);
            return;
        }
    }
}

/* ---- what was used ---- */

/* A "Name: N kB" line of /proc/self/smaps_rollup, in bytes (0: missing). */
static uint64_t smaps_rollup_field(const char *name)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    size_t len = strlen(name);
    unsigned long long kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, name, len) == 0 && line[len] == ':' && sscanf(line + len + 1, "%llu", &kib) == 1) break;
    if (f) fclose(f);
    return (uint64_t)kib << 10;
}

uint64_t ffn_memplan_pss(void) { return smaps_rollup_field("Pss"); }
uint64_t ffn_memplan_pss_data(void) { return smaps_rollup_field("Pss_Anon") + smaps_rollup_field("Pss_Shmem"); }
uint64_t ffn_memplan_rss(void) { return smaps_rollup_field("Rss"); }

uint64_t ffn_memplan_peak_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %llu kB", &kib) == 1) break;
    if (f) fclose(f);
    if (kib) return (uint64_t)kib << 10;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) return (uint64_t)ru.ru_maxrss << 10; /* KiB on Linux */
    return 0;
}
