/* Tests for the memory plan: ffn_model_plan against the model it predicts,
 * the bytes per parameter of each placement (16 B replicated with Adam; 8 +
 * 12/N with --shard-optimizer at N ranks: the state's 8/N and the summed
 * gradient slice's 4/N), the transient parts, the limits and their sources
 * (MemTotal, a fake cgroup v1/v2 hierarchy, RLIMIT_AS), and the suggestions. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ffn/memplan.h"
#include "ffn/mem.h"
#include "ffn/model.h"
#include "ffn/share.h"
#include "ffn/step.h"
#include "check.h"
#include "fixtures.h"

static ffn_layer_spec *parse(const char *text, size_t *n)
{
    ffn_layer_spec *s = NULL;
    CHECK(ffn_spec_parse(text, &s, n) == FFN_OK);
    return s;
}

/* ffn_model_plan's parameter count is the model's, for every layer kind. */
static void test_plan_matches_model(void)
{
    const char *specs[] = {"dense:128:relu,dense:10", "dense:32:gelu,dropout:0.1,layernorm,ffn:64,swiglu:48,dense:3",
                           "dense:16:lora=4,dense:5"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        size_t n, params, act;
        ffn_layer_spec *s = parse(specs[i], &n);
        ffn_model *m = NULL;
        CHECK(ffn_model_create(&m, s, n, 20) == FFN_OK);
        CHECK(ffn_model_plan(s, n, 20, 8, 0, 0, &params, &act, NULL) == FFN_OK);
        CHECK_MSG(m && params == ffn_model_param_count(m), "%s: plan %zu, model %zu", specs[i], params,
                  m ? ffn_model_param_count(m) : 0);
        ffn_model_free(m);
        free(s);
    }
    /* dense:8:relu,dense:3 on 4 inputs: per row y 8 + 3 (ReLU needs no z), two scratch rows of the widest (8);
     * the work area is at least one float. */
    size_t n, params, a0, a10, a20;
    ffn_layer_spec *s = parse("dense:8:relu,dense:3", &n);
    CHECK(ffn_model_plan(s, n, 4, 0, 0, 0, &params, &a0, NULL) == FFN_OK);
    CHECK(ffn_model_plan(s, n, 4, 10, 0, 0, &params, &a10, NULL) == FFN_OK);
    CHECK(ffn_model_plan(s, n, 4, 20, 0, 0, &params, &a20, NULL) == FFN_OK);
    CHECK(params == 4 * 8 + 8 + 8 * 3 + 3);
    CHECK(a0 == 1 && a10 == 1 + 10 * 27 && a20 == 1 + 20 * 27);
    free(s);
    /* A spec whose parameters overflow is an error, not a wrong size. */
    s = parse("dense:2147483648,dense:2147483648,dense:2147483648", &n);
    CHECK(ffn_model_plan(s, n, (size_t)1 << 40, 1, 0, 0, &params, &a0, NULL) != FFN_OK);
    free(s);
}

static ffn_mem_inputs inputs(const ffn_layer_spec *s, size_t n, int ranks, int local)
{
    return (ffn_mem_inputs){.layers = s, .layer_count = n, .input_dim = 100, .ranks = ranks, .local_ranks = local,
                            .batch_size = 64, .accumulate = 1, .eval_batch_size = 64, .state_buffers = 2,
                            .rows = 1000, .x_row_bytes = 400, .features = 100};
}

/* Adam replicated: params + grads + 2 states = 16 B per parameter; sharded at N ranks 8 + 12/N. */
static void test_bytes_per_param(void)
{
    size_t n1, n2;
    ffn_layer_spec *small = parse("dense:1000:relu,dense:10", &n1), *big = parse("dense:2000:relu,dense:10", &n2);
    ffn_mem_plan a, b;
    for (int ranks = 1; ranks <= 8; ranks *= 2) {
        for (int shard = 0; shard <= (ranks > 1); shard++) {
            ffn_mem_inputs ia = inputs(small, n1, ranks, 1), ib = inputs(big, n2, ranks, 1);
            ia.shard_optimizer = ib.shard_optimizer = shard;
            CHECK(ffn_memplan_compute(&ia, &a) == FFN_OK && ffn_memplan_compute(&ib, &b) == FFN_OK);
            const double P = (double)a.params;
            const double per = shard ? 8.0 + 12.0 / ranks : 16.0;
            /* slices are ceil(P / N): within one parameter's 12 B */
            CHECK_NEAR((double)(a.part[FFN_MEM_PARAMS] + a.part[FFN_MEM_GRADS] + a.part[FFN_MEM_OPTIM]), per * P, 12.0);
            CHECK(a.part[FFN_MEM_BASE] == FFN_MEM_BASE_BYTES);
            CHECK(a.part[FFN_MEM_TRANSIENT] == 0); /* one rank per node: no shared-gradient move, no checkpoints */
            /* The model's growth costs exactly its bytes per parameter (activations grow by the wider layer too). */
            double dP = (double)(b.params - a.params);
            double grew = (double)(b.total - a.total) - (double)(b.part[FFN_MEM_ACTIVATIONS] - a.part[FFN_MEM_ACTIVATIONS]);
            CHECK_NEAR(grew, per * dP, 24.0);
        }
    }
    /* SGD without momentum keeps no state: 8 B per parameter. */
    ffn_mem_inputs i = inputs(small, n1, 1, 1);
    i.state_buffers = 0;
    CHECK(ffn_memplan_compute(&i, &a) == FFN_OK && a.part[FFN_MEM_OPTIM] == 0);
    free(small);
    free(big);
}

/* Ranks sharing one node: the gradients move into node-shared memory (the
 * model's own buffer is alive until then); rank 0 of a run that writes
 * checkpoints holds one slice of them at a time, sharded or not. */
static void test_transients(void)
{
    size_t n;
    ffn_layer_spec *s = parse("dense:1000:relu,dense:10", &n);
    ffn_mem_plan p;
    ffn_mem_inputs in = inputs(s, n, 2, 2);
    CHECK(ffn_memplan_compute(&in, &p) == FFN_OK);
    CHECK(p.grads_shared && p.part[FFN_MEM_TRANSIENT] == 4 * (uint64_t)p.params);
    CHECK(p.address_extra == 4 * (uint64_t)p.params); /* the peer's segment is mapped */
    in.shard_optimizer = 1;
    in.writes_checkpoints = 1;
    /* A model under one slice (64 MiB): the slice is the whole parameter count, as large as the move. */
    CHECK(ffn_memplan_compute(&in, &p) == FFN_OK);
    CHECK(p.part[FFN_MEM_TRANSIENT] == 4 * (uint64_t)p.params);
    /* One rank a node: no move, only the slice; never the whole optimizer state (8 B per parameter here). */
    ffn_mem_inputs alone = inputs(s, n, 2, 1);
    alone.shard_optimizer = 1;
    alone.writes_checkpoints = 1;
    CHECK(ffn_memplan_compute(&alone, &p) == FFN_OK);
    CHECK(strcmp(p.transient, "checkpoint slice") == 0 && p.part[FFN_MEM_TRANSIENT] == 4 * (uint64_t)p.params);
    /* Slices smaller than the model (FFN_CKPT_SLICE_BYTES): the plan holds one slice. */
    setenv("FFN_CKPT_SLICE_BYTES", "65536", 1);
    CHECK(ffn_memplan_compute(&alone, &p) == FFN_OK);
    CHECK(strcmp(p.transient, "checkpoint slice") == 0 && p.part[FFN_MEM_TRANSIENT] == 65536);
    alone.shard_optimizer = 0; /* the same slice unsharded: one path */
    CHECK(ffn_memplan_compute(&alone, &p) == FFN_OK && p.part[FFN_MEM_TRANSIENT] == 65536);
    unsetenv("FFN_CKPT_SLICE_BYTES");
    in.rank = 1;
    CHECK(ffn_memplan_compute(&in, &p) == FFN_OK);
    CHECK(strcmp(p.transient, "grads move") == 0 && p.part[FFN_MEM_TRANSIENT] == 4 * (uint64_t)p.params);
    alone.rank = 1; /* only rank 0 writes */
    CHECK(ffn_memplan_compute(&alone, &p) == FFN_OK && p.part[FFN_MEM_TRANSIENT] == 0);
    /* A teacher (dense:50:relu,dense:10 on the 100 inputs: 5560 parameters): its model and arena for the
     * 64 rows per rank, and its checkpoint with Adam's state while it loads (16 B per parameter). */
    size_t tn, tp, tact;
    ffn_layer_spec *t = parse("dense:50:relu,dense:10", &tn);
    CHECK(ffn_model_plan(t, tn, 100, 64, 0, 0, &tp, &tact, NULL) == FFN_OK && tp == 5560);
    in = inputs(s, n, 1, 1);
    in.teacher_layers = t;
    in.teacher_layer_count = tn;
    in.teacher_state_buffers = 2;
    CHECK(ffn_memplan_compute(&in, &p) == FFN_OK);
    CHECK(p.part[FFN_MEM_TEACHER] == 8 * (uint64_t)tp + 4 * (uint64_t)tact);
    CHECK(strcmp(p.transient, "teacher load") == 0 && p.part[FFN_MEM_TRANSIENT] == 16 * (uint64_t)tp);
    free(t);
    /* The cache: the whole training set when it fits the budget, else nothing. */
    in = inputs(s, n, 1, 1);
    in.cache_budget = 1000 * 400 + 1000 * 4;
    CHECK(ffn_memplan_compute(&in, &p) == FFN_OK && p.part[FFN_MEM_CACHE] == 1000 * 400); /* labels held from open */
    in.cache_budget--;
    CHECK(ffn_memplan_compute(&in, &p) == FFN_OK && p.part[FFN_MEM_CACHE] == 0);
    char line[1024];
    ffn_memplan_describe(&p, line, sizeof line);
    CHECK_MSG(strstr(line, "per rank predicted (base ") && strstr(line, "params ") && !strstr(line, "data cache"),
              "%s", line);
    free(s);
}

/* Runs of fixed tensors, [offset, count] each, up to 16. */
typedef struct {
    size_t runs[16][2];
    size_t count;
} runs_seen;

static void note_run(void *user, size_t offset, size_t count)
{
    runs_seen *r = user;
    if (r->count < 16) {
        r->runs[r->count][0] = offset;
        r->runs[r->count][1] = count;
    }
    r->count++;
}

/* Fixed tensors held once per node (ffn/share.h): the plan finds the runs the
 * model has, and each rank counts half of their whole pages at 2 ranks a
 * node, so a LoRA run that fits only thanks to sharing is not refused. */
static void test_frozen_shared(void)
{
    size_t n;
    /* A LoRA'd layer (W, b fixed; adapters train), a frozen layer, a trained head. */
    ffn_layer_spec *s = parse("dense:1000:relu:lora=4,dense:1000:relu,dense:10", &n);
    const int frozen[3] = {0, 1, 0};
    ffn_model *m = NULL;
    CHECK(ffn_model_create(&m, s, n, 100) == FFN_OK);
    ffn_model_set_frozen(m, 1, 1);
    runs_seen built = {0}, planned = {0};
    ffn_model_fixed_runs(m, note_run, &built);
    CHECK(ffn_model_plan_fixed_runs(s, n, 100, frozen, note_run, &planned) == FFN_OK);
    /* Two runs: layer 0's W and b, then layer 1 whole (the adapters between them train). */
    CHECK_MSG(built.count == 2 && planned.count == 2 && memcmp(built.runs, planned.runs, sizeof built.runs) == 0,
              "runs: model %zu, plan %zu", built.count, planned.count);
    CHECK(built.runs[0][0] == 0 && built.runs[0][1] == 100 * 1000 + 1000);
    CHECK(built.runs[1][1] == 1000 * 1000 + 1000);
    uint64_t pages = 0, pages_bf16 = 0;
    for (size_t i = 0; i < built.count; i++) {
        pages += ffn_share_run_bytes(built.runs[i][0], built.runs[i][1], 4);
        pages_bf16 += ffn_share_run_bytes(built.runs[i][0], built.runs[i][1], 2);
    }
    const uint64_t page = ffn_page_size();
    CHECK(pages % page == 0 && pages > 4 * (uint64_t)(101000 + 1001000) - 4 * page);
    ffn_model_free(m);

    ffn_mem_plan alone, shared;
    ffn_mem_inputs in = inputs(s, n, 2, 2);
    in.frozen_layers = frozen;
    CHECK(ffn_memplan_compute(&in, &alone) == FFN_OK && alone.frozen_shared == 0);
    in.share_frozen = 1;
    CHECK(ffn_memplan_compute(&in, &shared) == FFN_OK);
    CHECK(shared.frozen_shared == pages);
    CHECK(shared.part[FFN_MEM_PARAMS] == alone.part[FFN_MEM_PARAMS] - (pages - pages / 2));
    CHECK(shared.total == alone.total - (pages - pages / 2)); /* the grads move stays the largest transient */
    char line[1024];
    ffn_memplan_describe(&shared, line, sizeof line);
    CHECK_MSG(strstr(line, "frozen part node-shared"), "%s", line);
    /* A limit between the two: refused alone, fits shared. */
    ffn_mem_limits lim = {.override_bytes = alone.total - (pages - pages / 2) / 2, .threads = 1};
    char which[256];
    uint64_t limit = ffn_memplan_rank_limit(&lim, 2, shared.address_extra, which, sizeof which);
    CHECK(alone.total > limit && shared.total <= limit);
    /* bf16: the fixed weights' copy too. */
    in.bf16 = 1;
    CHECK(ffn_memplan_compute(&in, &shared) == FFN_OK && shared.frozen_shared == pages + pages_bf16);
    in.share_frozen = 0;
    CHECK(ffn_memplan_compute(&in, &alone) == FFN_OK);
    CHECK(shared.part[FFN_MEM_BF16] == alone.part[FFN_MEM_BF16] - (pages_bf16 - pages_bf16 / 2));
    /* Across nodes (gradients not node-shared): the whole private copy before the mapping is the
     * transient, beside the rank's share of the node's copy. */
    in = inputs(s, n, 4, 2);
    in.frozen_layers = frozen;
    in.share_frozen = 1;
    CHECK(ffn_memplan_compute(&in, &shared) == FFN_OK);
    CHECK_MSG(strcmp(shared.transient, "frozen base before sharing") == 0 &&
              shared.part[FFN_MEM_TRANSIENT] == pages, "%s", shared.transient);
    /* --shard params: each rank holds a slice of its own, nothing shared. */
    in.shard = FFN_SHARD_PARAMS;
    CHECK(ffn_memplan_compute(&in, &shared) == FFN_OK && shared.frozen_shared == 0);
    /* One rank a node: nothing shared. */
    in = inputs(s, n, 2, 1);
    in.frozen_layers = frozen;
    in.share_frozen = 1;
    CHECK(ffn_memplan_compute(&in, &shared) == FFN_OK && shared.frozen_shared == 0);
    free(s);
}

/* A fake hierarchy: the smallest limit up the process's cgroup wins, "max"
 * and v1's 2^63-ish are none; a v1 mount whose root is a container's cgroup. */
static void test_cgroup(void)
{
    char cmd[512], mountinfo[4096], file[600];
    uint64_t bytes = 0;
    snprintf(cmd, sizeof cmd, "mkdir -p %s/v2/job/step %s/v1/memory/task", tmp_dir(), tmp_dir());
    CHECK(system(cmd) == 0);
    CHECK(write_text_file(tmp_path("v2/memory.max"), "max\n") == 0);
    CHECK(write_text_file(tmp_path("v2/job/memory.max"), "2147483648\n") == 0);
    CHECK(write_text_file(tmp_path("v2/job/step/memory.max"), "max\n") == 0);
    CHECK(write_text_file(tmp_path("cgroup-v2"), "0::/job/step\n") == 0);
    snprintf(mountinfo, sizeof mountinfo,
             "30 20 0:26 / %s/v2 rw,nosuid shared:4 - cgroup2 cgroup2 rw\n"
             "31 20 0:27 /docker/abc %s/v1/memory rw - cgroup cgroup rw,memory\n",
             tmp_dir(), tmp_dir());
    CHECK(write_text_file(tmp_path("mountinfo"), mountinfo) == 0);
    CHECK(ffn_memplan_cgroup_limit(tmp_path("cgroup-v2"), tmp_path("mountinfo"), &bytes, file, sizeof file) == 1);
    CHECK(bytes == (uint64_t)2 << 30);
    CHECK_MSG(strcmp(file, tmp_path("v2/job/memory.max")) == 0, "%s", file);
    /* No limit anywhere. */
    CHECK(write_text_file(tmp_path("v2/job/memory.max"), "max\n") == 0);
    CHECK(ffn_memplan_cgroup_limit(tmp_path("cgroup-v2"), tmp_path("mountinfo"), &bytes, file, sizeof file) == 0);
    /* v1: the mount shows /docker/abc at its point; the process is in /docker/abc/task. */
    CHECK(write_text_file(tmp_path("v1/memory/memory.limit_in_bytes"), "536870912\n") == 0); /* the container's, seen at the mount */
    CHECK(write_text_file(tmp_path("cgroup-v1"), "5:cpu,cpuacct:/x\n4:memory:/docker/abc/task\n0::/\n") == 0);
    CHECK(write_text_file(tmp_path("v1/memory/task/memory.limit_in_bytes"), "9223372036854771712\n") == 0);
    CHECK(ffn_memplan_cgroup_limit(tmp_path("cgroup-v1"), tmp_path("mountinfo"), &bytes, file, sizeof file) == 1);
    CHECK(bytes == (uint64_t)512 << 20);
    CHECK_MSG(strcmp(file, tmp_path("v1/memory/memory.limit_in_bytes")) == 0, "%s", file);
    /* Missing files: no limit, no crash. */
    CHECK(ffn_memplan_cgroup_limit(tmp_path("none"), tmp_path("mountinfo"), &bytes, file, sizeof file) == 0);
    /* This process: whatever it finds names a file that exists. */
    ffn_mem_limits l;
    ffn_memplan_detect(&l);
    CHECK(l.node_bytes > 0);
    struct stat st;
    CHECK(!l.cgroup_bytes || stat(l.cgroup_file, &st) == 0);
}

static void test_limits(void)
{
    char which[700];
    ffn_mem_limits l = {.node_bytes = (uint64_t)16 << 30, .threads = 1, .cgroup_ranks = 1};
    CHECK(ffn_memplan_rank_limit(&l, 4, 0, which, sizeof which) == (uint64_t)4 << 30);
    CHECK(strstr(which, "MemTotal 16.00 GiB (/proc/meminfo) / 4 ranks") != NULL);
    l.cgroup_bytes = (uint64_t)6 << 30;
    l.cgroup_ranks = 4;
    snprintf(l.cgroup_file, sizeof l.cgroup_file, "/sys/fs/cgroup/job/memory.max");
    CHECK(ffn_memplan_rank_limit(&l, 4, 0, which, sizeof which) == (uint64_t)3 << 29);
    CHECK_MSG(strstr(which, "cgroup /sys/fs/cgroup/job/memory.max: 6.00 GiB / 4 ranks") != NULL, "%s", which);
    l.rlimit_as = (uint64_t)3 << 29; /* 1.5 GiB, less the margin */
    const uint64_t margin = FFN_MEM_AS_MARGIN_BYTES + FFN_MEM_AS_PER_THREAD_BYTES;
    CHECK(ffn_memplan_as_margin(&l) == margin);
    CHECK(ffn_memplan_rank_limit(&l, 4, 0, which, sizeof which) == ((uint64_t)3 << 29) - margin);
    CHECK_MSG(strncmp(which, "RLIMIT_AS 1.50 GiB (getrlimit", 29) == 0, "%s", which);
    CHECK(ffn_memplan_rank_limit(&l, 4, (uint64_t)1 << 28, which, sizeof which) ==
          ((uint64_t)3 << 29) - margin - ((uint64_t)1 << 28));
    CHECK(strstr(which, "the node's shared gradient window") != NULL);
    l.override_bytes = (uint64_t)100 << 20;
    CHECK(ffn_memplan_rank_limit(&l, 4, 0, which, sizeof which) == (uint64_t)100 << 20);
    CHECK(strcmp(which, "--memory-limit 100 MiB") == 0);
    ffn_mem_limits none = {0};
    CHECK(ffn_memplan_rank_limit(&none, 1, 0, which, sizeof which) == UINT64_MAX);
    ffn_memplan_read_meminfo(tmp_path("absent"), &none);
    CHECK(none.node_bytes == 0);
    CHECK(write_text_file(tmp_path("meminfo"), "MemTotal:       24684092 kB\nMemFree: 1 kB\nMemAvailable:   24261352 kB\n") == 0);
    ffn_memplan_read_meminfo(tmp_path("meminfo"), &none);
    CHECK(none.node_bytes == (uint64_t)24684092 << 10 && none.available_bytes == (uint64_t)24261352 << 10);
}

/* The suggestions are computed: sharding when it brings the plan under; a
 * smaller evaluation batch; more nodes when nothing else does. */
static void test_suggestions(void)
{
    size_t n;
    ffn_layer_spec *s = parse("dense:4000:relu,dense:10", &n);
    ffn_mem_plan rep, sh;
    ffn_mem_inputs in = inputs(s, n, 2, 1);
    CHECK(ffn_memplan_compute(&in, &rep) == FFN_OK);
    in.shard_optimizer = 1;
    CHECK(ffn_memplan_compute(&in, &sh) == FFN_OK);
    in.shard_optimizer = 0;
    ffn_mem_limits l = {.override_bytes = (rep.total + sh.total) / 2};
    char out[2048];
    ffn_memplan_suggest(&in, &l, out, sizeof out);
    CHECK_MSG(strncmp(out, "--shard optimizer (", 19) == 0, "%s", out);
    /* A limit below what sharding over 2 ranks gives: only more ranks do. */
    l.override_bytes = sh.total - (sh.part[FFN_MEM_OPTIM] / 4);
    ffn_memplan_suggest(&in, &l, out, sizeof out);
    CHECK_MSG(strstr(out, "--shard optimizer on ") && strstr(out, "nodes of 1"), "%s", out);
    /* The evaluation batch: an arena reserved for 4096 rows. */
    in.eval_batch_size = 4096;
    CHECK(ffn_memplan_compute(&in, &rep) == FFN_OK);
    l.override_bytes = rep.total - rep.part[FFN_MEM_ACTIVATIONS] / 2 + rep.part[FFN_MEM_ACTIVATIONS] / 8;
    ffn_memplan_suggest(&in, &l, out, sizeof out);
    CHECK_MSG(strstr(out, "--eval-batch-size 2048 (") != NULL, "%s", out);
    /* Nothing fits: an empty list. */
    l.override_bytes = 1;
    ffn_memplan_suggest(&in, &l, out, sizeof out);
    CHECK_MSG(out[0] == '\0', "%s", out);
    free(s);
}

int main(void)
{
    if (tmp_dir_make("memplan") != 0) return 1;
    test_plan_matches_model();
    test_bytes_per_param();
    test_transients();
    test_frozen_shared();
    test_cgroup();
    test_limits();
    test_suggestions();
    CHECK(ffn_memplan_peak_rss() > 0);
    tmp_dir_remove();
    return check_done("test_memplan");
}
