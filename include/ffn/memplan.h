/* ffn — the memory plan: a run's peak memory per rank, predicted from the
 * model, batch, optimizer and placement before anything large is allocated,
 * and the memory a rank may have (the node's memory shared among its ranks,
 * the job's cgroup limit, RLIMIT_AS).
 *
 * The prediction is the sum of the buffers the run allocates and touches
 * (ffn_alloc zeroes every buffer, so each one is resident from the start),
 * from the same sizes the modules use (ffn_model_plan for the parameters and
 * the activation arena, ffn_optim_state_buffers, the loader's slots and
 * cache rule), plus a constant measured for what MPI, HDF5, OpenBLAS and the
 * C runtime hold (FFN_MEM_BASE_BYTES), plus the largest short-lived buffer.
 * README, "Memory", gives the measured accuracy. */
#ifndef FFN_MEMPLAN_H
#define FFN_MEMPLAN_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/model.h"
#include "ffn/status.h"

/* What MPI (Open MPI 4.1, its shared-memory transport), HDF5, OpenBLAS and the
 * C runtime keep resident in a rank of a small run: measured (README, "Memory"). */
#define FFN_MEM_BASE_BYTES ((uint64_t)32 << 20)
/* Address space the libraries map beyond what they touch (OpenBLAS' buffers,
 * glibc's per-thread malloc arenas, thread stacks, Open MPI's segments):
 * RLIMIT_AS must leave FFN_MEM_AS_MARGIN_BYTES + FFN_MEM_AS_PER_THREAD_BYTES
 * per thread of OpenBLAS' pool above the prediction (measured over the peak
 * RSS of a small run: 384 MiB with a pool of 1 thread, 515-523 MiB with 2,
 * whether one or both run: an idle pool thread maps as much). */
#define FFN_MEM_AS_MARGIN_BYTES ((uint64_t)384 << 20)
#define FFN_MEM_AS_PER_THREAD_BYTES ((uint64_t)128 << 20)

/* The parts of the prediction, in the order the banner prints them. */
typedef enum {
    FFN_MEM_BASE = 0,     /* FFN_MEM_BASE_BYTES */
    FFN_MEM_PARAMS,       /* 4 B per parameter */
    FFN_MEM_GRADS,        /* 4 B per parameter (node-shared when the job's ranks share one node) */
    FFN_MEM_OPTIM,        /* optimizer state: all of it, or the rank's ZeRO slice and its summed gradients */
    FFN_MEM_ACTIVATIONS,  /* the model's arena for the largest batch (training or evaluation), the output gradient */
    FFN_MEM_BF16,         /* --precision bf16: the weights' bf16 copy (2 B per parameter) and the two operand buffers */
    FFN_MEM_DATA,         /* loader slots, the sampler's order, labels held, evaluation buffers */
    FFN_MEM_CACHE,        /* the training set held in memory (the loader's cache rule) */
    FFN_MEM_CHECKPOINT,   /* a --resume / --init-from checkpoint, held through the run */
    FFN_MEM_PRUNE,        /* pruning masks and their scratch */
    FFN_MEM_TEACHER,      /* --teacher: its model (parameters and gradients) and activation arena */
    FFN_MEM_TRANSIENT,    /* the largest short-lived buffer (see ffn_memplan_compute) */
    FFN_MEM_PART_COUNT
} ffn_mem_part;

/* "base", "params", "grads", ... */
const char *ffn_mem_part_name(ffn_mem_part part);

typedef struct {
    /* the model */
    const ffn_layer_spec *layers;
    size_t layer_count, input_dim;
    /* the job */
    int ranks;              /* in the job */
    int local_ranks;        /* on this rank's node */
    int rank;               /* this rank (rank 0 writes checkpoints) */
    /* the run */
    size_t batch_size;      /* global batch (--batch-size) */
    size_t accumulate;      /* --accumulate (only carried into suggestions: the memory is per micro-batch) */
    size_t eval_batch_size; /* --eval-batch-size: the arena is reserved for it too */
    int evaluates;          /* --val or --test: the evaluator's buffers */
    size_t state_buffers;   /* optimizer state floats per parameter (ffn_optim_state_buffers) */
    int shard_optimizer;
    int shard;              /* ffn_shard (step.h); the larger of this and shard_optimizer holds */
    int recompute;          /* --recompute: the blocks share one cache */
    int fp32_caches;        /* --fp32-caches: with bf16, the blocks' caches stay 4 bytes a value */
    int bf16;               /* --precision bf16 */
    int writes_checkpoints; /* --checkpoint-dir */
    int pruning;            /* --prune or inherited masks */
    /* the training set */
    size_t rows, x_row_bytes; /* x_row_bytes: one row of /x as stored (features x 1 or 4 B) */
    size_t features, target_cols; /* target_cols: 0 for int labels */
    size_t cache_budget;    /* bytes of dataset the loader may hold per rank (ffn_loader_cache_budget) */
    /* a start checkpoint held through setup (bytes; counted throughout: the
     * setup's peak holds it beside the model) */
    uint64_t held_bytes;
    /* layer i frozen where frozen_layers[i] (--freeze, --lora's base, a
     * resumed run's; NULL: none); share_frozen: the fixed tensors are held
     * once per node (ffn/share.h) when the node holds several ranks */
    const int *frozen_layers;
    int share_frozen;
    /* --teacher: its layers (on input_dim features) and the state buffers its
     * checkpoint holds while it loads; teacher_layers NULL: none */
    const ffn_layer_spec *teacher_layers;
    size_t teacher_layer_count, teacher_state_buffers;
} ffn_mem_inputs;

typedef struct {
    uint64_t part[FFN_MEM_PART_COUNT];
    uint64_t total;
    size_t params, max_rows;
    int grads_shared;       /* the gradient buffer lives in node-shared memory */
    uint64_t frozen_shared; /* bytes of fixed tensors (and their bf16 copy) held once per node, each rank
                               counting its share of them in params (and bf16 copies) */
    uint64_t address_extra; /* address space mapped but not touched: the node's other ranks' gradient segments */
    const char *transient;  /* what the transient part is: "grads move", "checkpoint slice", "teacher load" */
} ffn_mem_plan;

/* The peak resident memory of one rank: the sum of every part. Fixed tensors
 * held once per node (share_frozen) count 1/local_ranks of their whole pages
 * in each rank (proportional set size: the node's memory divided among its
 * ranks, which is what the limit is). The transient part is the largest of
 * the model's own gradient buffer, alive until the gradients move to
 * node-shared memory (ranks sharing one node); the private copy of the fixed
 * tensors each rank holds until it maps the node's; on rank 0 writing
 * checkpoints, the one slice of parameters or optimizer state it writes at a
 * time (at most 64 MiB, ffn_checkpoint_slice_floats); and a --teacher's
 * checkpoint while it loads. */
ffn_status ffn_memplan_compute(const ffn_mem_inputs *in, ffn_mem_plan *out);

/* ---- what a rank may have ---- */

typedef struct {
    uint64_t node_bytes;      /* MemTotal (0: unknown) */
    uint64_t available_bytes; /* MemAvailable (0: unknown) */
    uint64_t cgroup_bytes;    /* the smallest memory limit of this process's cgroup and its ancestors; 0: none */
    char cgroup_file[512];    /* the file that set it */
    int cgroup_ranks;         /* the job's ranks on this node under that cgroup (>= 1) */
    uint64_t rlimit_as;       /* RLIMIT_AS soft limit; 0: unlimited */
    int threads;              /* OpenBLAS' thread pool (openblas_get_num_threads before ffn-train sets its count) */
    uint64_t override_bytes;  /* --memory-limit MiB; 0: none */
} ffn_mem_limits;

/* MemTotal and MemAvailable from meminfo (a /proc/meminfo path). */
void ffn_memplan_read_meminfo(const char *meminfo, ffn_mem_limits *l);
/* The smallest memory limit on the cgroup of this process and its ancestors,
 * from cgroup_file (/proc/self/cgroup) and mountinfo (/proc/self/mountinfo):
 * cgroup v2 memory.max, v1 memory.limit_in_bytes; "max" and values of 2^62 and
 * more are no limit. Returns 1 and sets *bytes and file (the limiting file) when
 * there is a limit, else 0. */
int ffn_memplan_cgroup_limit(const char *cgroup_file, const char *mountinfo, uint64_t *bytes, char *file,
                             size_t cap);
/* Everything above for this process (RLIMIT_AS from getrlimit). */
void ffn_memplan_detect(ffn_mem_limits *l);

/* The bytes of resident memory one rank may have with local_ranks ranks on
 * its node: the smallest of MemTotal / local_ranks, the cgroup limit / its
 * ranks, and RLIMIT_AS less the libraries' margin (FFN_MEM_AS_*) and
 * address_extra (ffn_mem_plan); --memory-limit alone when set; UINT64_MAX
 * when nothing is known. which: one phrase naming the limit and its source. */
uint64_t ffn_memplan_rank_limit(const ffn_mem_limits *l, int local_ranks, uint64_t address_extra, char *which,
                                size_t cap);
/* The margin RLIMIT_AS must leave for l->threads OpenBLAS threads. */
uint64_t ffn_memplan_as_margin(const ffn_mem_limits *l);

/* "1.50 GiB" */
void ffn_memplan_format_bytes(char *out, size_t cap, double bytes);
/* The banner's line (without "\n"): the total and its nonzero parts. */
void ffn_memplan_describe(const ffn_mem_plan *p, char *out, size_t cap);
/* Flags that would bring the prediction under the limit with l, each tried
 * alone from the table in memplan.c (each with its predicted total), as
 * "--shard-optimizer (7.51 GiB per rank), ..."; "" when none does. */
void ffn_memplan_suggest(const ffn_mem_inputs *in, const ffn_mem_limits *l, char *out, size_t cap);

/* The peak resident set of this process so far: VmHWM from /proc/self/status
 * (getrusage's ru_maxrss where that is missing), in bytes. */
uint64_t ffn_memplan_peak_rss(void);
/* This process's proportional set size now (Pss of /proc/self/smaps_rollup:
 * each shared page divided among the processes mapping it), in bytes; 0 where
 * the kernel does not say. */
uint64_t ffn_memplan_pss(void);
/* The part of it that is the process's data: anonymous and shared memory
 * (Pss_Anon + Pss_Shmem), without the libraries' file pages, whose share
 * moves with whatever else maps them; 0 where the kernel does not say. */
uint64_t ffn_memplan_pss_data(void);
/* This process's resident set size now (Rss of /proc/self/smaps_rollup), in bytes; 0 likewise. */
uint64_t ffn_memplan_rss(void);

#endif
