/* ffn — MPI: setup, error agreement, broadcasts, reductions, bucketed gradient allreduce. */
#define _GNU_SOURCE /* sched_getaffinity */
#include "ffn/comm.h"

#include <errno.h>
#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <stdint.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bf16.h"
#include "clock.h"
#include "ffn/mem.h"
#include "ffn/partition.h"

/* Under LeakSanitizer (FFN_SANITIZE builds), Open MPI's own allocations must
 * not hide or fake ffn's leaks: what MPI_Init_thread allocates is ignored, and
 * the leak check runs just before MPI_Finalize, while MPI's plugins are still
 * loaded (MPI_Finalize unloads them, orphaning memory they still point to).
 * Everything ffn allocated and lost by then is reported; tests/lsan.supp
 * names what MPI's own threads leak during the run. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FFN_LSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(FFN_LSAN)
#define FFN_LSAN 1
#endif
#ifdef FFN_LSAN
#include <sanitizer/lsan_interface.h>
#define lsan_disable() __lsan_disable()
#define lsan_enable() __lsan_enable()
#define lsan_check_now() __lsan_do_leak_check()
#else
#define lsan_disable() ((void)0)
#define lsan_enable() ((void)0)
#define lsan_check_now() ((void)0)
#endif

/* A node-shared buffer (ffn_comm_alloc_shared_floats): one MPI-3 shared
 * window over the node, each rank's segment reachable by all. */
typedef struct {
    MPI_Win win;
    float *mine;   /* this rank's segment */
    size_t n;      /* floats in every segment */
    float **peers; /* [local_size]: every rank's segment, this one included */
} shared_buffer;

/* One cache line per rank of the node (in a shared window, made with the first
 * shared buffer): the rank's barrier count and the per-step sums it brings
 * to the exchange (ffn_grad_sync_finish_sum). */
#define FFN_NODE_STATS_MAX 7
typedef struct {
    uint64_t arrived;                  /* barriers this rank has reached */
    double stats[FFN_NODE_STATS_MAX];
} node_slot;

/* Open MPI's libnbc: 0 its own choice, 1 ring, 2 binomial tree, 3 reduce-scatter +
 * all-gather, 4 recursive doubling. */
#define ALLREDUCE_ALGORITHM_VAR "OMPI_MCA_coll_libnbc_iallreduce_algorithm"
#define ALLREDUCE_ALGORITHM_CVAR "coll_libnbc_iallreduce_algorithm"
enum { ALGORITHM_LIBRARY = 0, ALGORITHM_RING = 1, ALGORITHM_UNKNOWN = 5 };
static const char *const allreduce_algorithm_names[] = {"libnbc's choice", "ring", "binomial tree",
                                                        "reduce-scatter + all-gather", "recursive doubling",
                                                        "the MPI library's choice"};

struct ffn_comm {
    MPI_Comm world, node;
    /* Several nodes with the same number of ranks each (several of them): the
     * ranks of the same local rank, one per node, for the hierarchical
     * exchange; else MPI_COMM_NULL. */
    MPI_Comm cross;
    int *node_ranks;         /* [local_size]: the world rank of each rank of this node */
    int rank, size, local_rank, local_size;
    int we_initialised;
    int thread_level;        /* what MPI provided (MPI_THREAD_*) */
    int allreduce_algorithm; /* the gradient buckets' MPI_Iallreduce algorithm (choose_allreduce_algorithm) */
    int switch_algorithm;    /* 1: set it around the buckets' calls through algorithm_cvar */
    MPI_T_cvar_handle algorithm_cvar;
    int *counts, *displs; /* [size] each: per-rank layout of one slice collective */
    shared_buffer *shared; /* [shared_count] */
    size_t shared_count;
    MPI_Win slots_win;    /* valid while slots is set */
    node_slot **slots;    /* [local_size] */
    uint64_t barriers;    /* node barriers this rank has passed */
    /* Stall detection (ffn_comm_set_stall_timeout): 0 = off. */
    double stall_seconds;
    uint64_t stall_step;  /* the step whose exchange is under way, for messages */
    MPI_Request *arrivals;/* [size]: arrival notes of the exchange under way (see exchange_arrive) */
    uint64_t *arrival_in; /* [size]: their receive buffers */
    uint64_t arrival_out; /* the step this rank announces */
};

/* ---- waiting without taking the CPU a peer needs ---------------------------
 *
 * Open MPI progresses only inside MPI calls, and its blocking calls spin. On a
 * node with more runnable processes than cores (other jobs, or ranks
 * oversubscribed), a rank spinning in a collective for a peer that is not
 * running holds the very core the peer is waiting for; a step then costs
 * whole scheduler time slices. So ranks meet politely before every per-step
 * collective: poll with MPI_Test for SPIN_SECONDS (the peer is usually just
 * behind), then sched_yield between polls, and after YIELD_SECONDS sleep
 * briefly between them. Once every rank has arrived, the collective itself
 * runs blocking (Open MPI's blocking allreduce is faster than its
 * non-blocking one: 0.42 vs 0.60 ms for 4 MiB on two ranks here). */
#define SPIN_SECONDS 50e-6
#define YIELD_SECONDS 2e-3

/* How long a wait has lasted while this process ran. A gap between two polls
 * longer than SUSPENDED_SECONDS means this rank itself was not running
 * (stopped by SIGSTOP, swapped out, a paused VM): that time is not the peers'
 * doing, so the stall clock starts again. Without it a rank stopped in a wait
 * and then continued (Open MPI sends SIGCONT before SIGTERM as it ends the
 * job) blamed the others at once: a second, wrong message beside the true one. */
#define SUSPENDED_SECONDS 1.0

typedef struct {
    double start, last; /* MPI_Wtime */
} wait_clock;

static wait_clock wait_clock_start(void)
{
    double now = MPI_Wtime();
    return (wait_clock){now, now};
}

/* Seconds waited so far; call it at every poll. */
static double wait_clock_read(wait_clock *k)
{
    double now = MPI_Wtime();
    if (now - k->last > SUSPENDED_SECONDS) k->start = now;
    k->last = now;
    return now - k->start;
}

/* One pause of a polite wait that has lasted `waited` seconds. */
static void back_off(double waited)
{
    if (waited < SPIN_SECONDS) return;
    if (waited < YIELD_SECONDS) {
        sched_yield();
    } else {
        struct timespec nap = {0, 50000};
        nanosleep(&nap, NULL);
    }
}

/* Returned by the waits below when stall_seconds passed (never an MPI code). */
#define WAIT_STALLED (-12345)

/* Polls reqs until all complete, or until `stall` seconds (0: forever). */
static int polite_wait_for(int n, MPI_Request *reqs, double stall)
{
    wait_clock clock = wait_clock_start();
    for (;;) {
        int done = 0;
        int rc = MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS || done) return rc;
        double waited = wait_clock_read(&clock);
        if (stall > 0 && waited > stall) return WAIT_STALLED;
        back_off(waited);
    }
}

static int polite_wait(int n, MPI_Request *reqs) { return polite_wait_for(n, reqs, 0); }

/* Returns once every rank of comm has called it (a barrier that waits
 * politely), or WAIT_STALLED after `stall` seconds (0: never). */
static int arrive(MPI_Comm comm, double stall)
{
    MPI_Request req;
    int rc = MPI_Ibarrier(comm, &req);
    return rc == MPI_SUCCESS ? polite_wait_for(1, &req, stall) : rc;
}

static ffn_status mpi_error(int code, const char *what)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    return ffn_fail(FFN_ERR_MPI, "%s failed: %.*s", what, len, text);
}

/* Across nodes the gradient buckets go through MPI_Iallreduce, and Open MPI
 * 4.1's libnbc picks its binomial tree for an in-place call at any size: the
 * whole bucket up the tree and back down, 2 log2(N) S/B, against a ring's
 * 2 (N-1)/N S/B. launch/bench-netns.sh (two network namespaces, the large FFN):
 * ffn-train ran 1.08x (veth), 1.36x (10 Gbit/s) and 1.81x (1 Gbit/s) faster.
 * The ring is set through MPI_T around the buckets' calls only: the small
 * reductions (metrics, flags) keep the tree, whose 2 log2(N) hops beat the
 * ring's 2 (N-1) at scale. A choice in the environment (or mpirun's --mca)
 * is left alone and applies to every call. */
static void choose_allreduce_algorithm(ffn_comm *c)
{
    const char *chosen = getenv(ALLREDUCE_ALGORITHM_VAR);
    int can = 0, provided, index, count;
    if (!chosen) {
        lsan_disable();
        if (MPI_T_init_thread(MPI_THREAD_SERIALIZED, &provided) == MPI_SUCCESS) {
            if (MPI_T_cvar_get_index(ALLREDUCE_ALGORITHM_CVAR, &index) == MPI_SUCCESS &&
                MPI_T_cvar_handle_alloc(index, NULL, &c->algorithm_cvar, &count) == MPI_SUCCESS) {
                can = count == 1;
                if (!can) MPI_T_cvar_handle_free(&c->algorithm_cvar);
            }
            if (!can) MPI_T_finalize();
        }
        lsan_enable();
    }
    /* One collective runs one algorithm on every rank: switch only where all ranks can. */
    int all = can;
    MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, c->world);
    if (all) {
        c->switch_algorithm = 1;
        c->allreduce_algorithm = ALGORITHM_RING;
        return;
    }
    if (can) {
        MPI_T_cvar_handle_free(&c->algorithm_cvar);
        MPI_T_finalize();
    }
    if (chosen && *chosen >= '0' && *chosen <= '4' && !chosen[1]) c->allreduce_algorithm = *chosen - '0';
    else c->allreduce_algorithm = ALGORITHM_UNKNOWN; /* not Open MPI's libnbc, or a value it reads its own way */
}

/* Sets libnbc's MPI_Iallreduce algorithm for the calls that follow (see above). */
static void use_allreduce_algorithm(ffn_comm *c, int algorithm)
{
    if (c->switch_algorithm) MPI_T_cvar_write(c->algorithm_cvar, &algorithm);
}

ffn_status ffn_comm_init(ffn_comm **out, int *argc, char ***argv)
{
    *out = NULL;
    ffn_comm *c = calloc(1, sizeof *c);
    if (!c) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised) {
        /* Open MPI's shared-memory transport copies large messages through its
         * FIFOs faster here than with CMA's single copy (process_vm_readv): a
         * 33.6 MB gradient allreduce on two ranks took 17 ms against 60-88 ms.
         * A setting in the environment or on mpirun's command line wins. */
        setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
        /* SERIALIZED: across nodes the gradient buckets' MPI calls run on the
         * exchange thread while backward computes (see "the exchange thread"
         * below), never at the same time as a call of the main thread. */
        int provided;
        lsan_disable();
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
        lsan_enable();
        if (rc != MPI_SUCCESS) {
            free(c);
            return ffn_fail(FFN_ERR_MPI, "MPI_Init_thread failed (code %d)", rc);
        }
        c->we_initialised = 1;
        c->thread_level = provided;
    } else {
        MPI_Query_thread(&c->thread_level);
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &c->world);
    /* Errors come back as codes so that ffn can report them and agree on them. */
    MPI_Comm_set_errhandler(c->world, MPI_ERRORS_RETURN);
    MPI_Comm_rank(c->world, &c->rank);
    MPI_Comm_size(c->world, &c->size);
    MPI_Comm_split_type(c->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &c->node);
    MPI_Comm_rank(c->node, &c->local_rank);
    MPI_Comm_size(c->node, &c->local_size);
    /* Only a job across nodes exchanges gradients through MPI_Iallreduce (every rank sees the same). */
    if (c->local_size != c->size) choose_allreduce_algorithm(c);
    c->cross = MPI_COMM_NULL;
    c->node_ranks = calloc((size_t)c->local_size, sizeof *c->node_ranks);
    if (c->node_ranks) MPI_Allgather(&c->rank, 1, MPI_INT, c->node_ranks, 1, MPI_INT, c->node);
    if (c->local_size != c->size) {
        /* The hierarchical exchange needs every node to hold the same number of ranks
         * (local rank j of every node carries slice j of each bucket); every rank
         * learns the same answer. FFN_EXCHANGE_HIERARCHY=0 keeps the flat exchange. */
        int range[2] = {-c->local_size, c->local_size};
        MPI_Allreduce(MPI_IN_PLACE, range, 2, MPI_INT, MPI_MAX, c->world);
        const char *env = getenv("FFN_EXCHANGE_HIERARCHY");
        int want = !(env && strcmp(env, "0") == 0);
        MPI_Allreduce(MPI_IN_PLACE, &want, 1, MPI_INT, MPI_MIN, c->world);
        if (want && -range[0] == range[1] && range[1] > 1)
            MPI_Comm_split(c->world, c->local_rank, c->rank, &c->cross);
    }
    c->counts = calloc((size_t)c->size, sizeof *c->counts);
    c->displs = calloc((size_t)c->size, sizeof *c->displs);
    if (!c->counts || !c->displs || !c->node_ranks) {
        ffn_comm_finalize(c);
        return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    }
    *out = c;
    return FFN_OK;
}

void ffn_comm_finalize(ffn_comm *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->shared_count; i++) {
        MPI_Win_unlock_all(c->shared[i].win);
        MPI_Win_free(&c->shared[i].win);
        free(c->shared[i].peers);
    }
    free(c->shared);
    if (c->slots) {
        MPI_Win_unlock_all(c->slots_win);
        MPI_Win_free(&c->slots_win);
        free(c->slots);
    }
    free(c->counts);
    free(c->displs);
    free(c->node_ranks);
    if (c->cross != MPI_COMM_NULL) MPI_Comm_free(&c->cross);
    free(c->arrivals);
    free(c->arrival_in);
    MPI_Comm_free(&c->node);
    MPI_Comm_free(&c->world);
    if (c->switch_algorithm) {
        MPI_T_cvar_handle_free(&c->algorithm_cvar);
        MPI_T_finalize();
    }
    int we_initialised = c->we_initialised;
    free(c);
    if (we_initialised) {
        lsan_check_now(); /* see the top of the file */
        MPI_Finalize();
    }
}

void ffn_comm_abort(ffn_comm *c, int code)
{
    MPI_Abort(c ? c->world : MPI_COMM_WORLD, code);
}

int ffn_comm_rank(const ffn_comm *c) { return c->rank; }
int ffn_comm_size(const ffn_comm *c) { return c->size; }
int ffn_comm_local_rank(const ffn_comm *c) { return c->local_rank; }
int ffn_comm_local_size(const ffn_comm *c) { return c->local_size; }
int ffn_comm_threads_serialized(const ffn_comm *c) { return c->thread_level >= MPI_THREAD_SERIALIZED; }

int ffn_comm_default_threads(const ffn_comm *c)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    int threads = (int)(cores / c->local_size);
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0 && threads > CPU_COUNT(&set)) threads = CPU_COUNT(&set);
    return threads > 0 ? threads : 1;
}

ffn_status ffn_comm_agree(ffn_comm *c, ffn_status local)
{
    if (c->size == 1) return local;
    int mine = local != FFN_OK ? c->rank : INT_MAX, first = INT_MAX;
    int rc = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, c->world);
    if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Allreduce (error agreement)");
    if (first == INT_MAX) return FFN_OK;
    /* Every rank learns the first failing rank's status and message. */
    struct {
        int status;
        char message[1000];
    } report;
    memset(&report, 0, sizeof report);
    if (c->rank == first) {
        report.status = (int)local;
        strncpy(report.message, ffn_last_error(), sizeof report.message - 1);
    }
    rc = MPI_Bcast(&report, (int)sizeof report, MPI_BYTE, first, c->world);
    if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Bcast (error report)");
    if (first == 0)
        ffn_fail((ffn_status)report.status, "%s", report.message);
    else
        ffn_fail((ffn_status)report.status, "rank %d: %s", first, report.message);
    return (ffn_status)report.status;
}

void ffn_comm_barrier(ffn_comm *c) { MPI_Barrier(c->world); }

/* MPI counts are int: move big buffers in pieces. */
#define MAX_CHUNK_BYTES ((size_t)1 << 30)

ffn_status ffn_comm_bcast_bytes(ffn_comm *c, void *buf, size_t n, int root)
{
    if (c->size == 1) return FFN_OK;
    for (size_t done = 0; done < n;) {
        size_t len = n - done < MAX_CHUNK_BYTES ? n - done : MAX_CHUNK_BYTES;
        int rc = MPI_Bcast((char *)buf + done, (int)len, MPI_BYTE, root, c->world);
        if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Bcast");
        done += len;
    }
    return FFN_OK;
}

ffn_status ffn_comm_node_bcast_bytes(ffn_comm *c, void *buf, size_t n)
{
    if (c->local_size == 1) return FFN_OK;
    if (n > MAX_CHUNK_BYTES) return ffn_fail(FFN_ERR_ARG, "node broadcast of %zu bytes: too large", n);
    int rc = MPI_Bcast(buf, (int)n, MPI_BYTE, 0, c->node);
    return rc == MPI_SUCCESS ? FFN_OK : mpi_error(rc, "MPI_Bcast");
}

ffn_status ffn_comm_bcast_floats(ffn_comm *c, float *buf, size_t n, int root)
{
    return ffn_comm_bcast_bytes(c, buf, n * sizeof *buf, root);
}

static ffn_status sum_in_place(ffn_comm *c, void *buf, size_t n, size_t elem, MPI_Datatype type,
                               MPI_Op op)
{
    if (c->size == 1) return FFN_OK;
    size_t per_call = FFN_DEFAULT_BUCKET_BYTES / elem;
    if (n * elem <= ((size_t)64 << 10)) {
        /* Small (the step's metrics, flags): one non-blocking call, waited for politely. */
        MPI_Request req;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, type, op, c->world, &req);
        if (rc == MPI_SUCCESS) rc = polite_wait(1, &req);
        return rc == MPI_SUCCESS ? FFN_OK : mpi_error(rc, "MPI_Iallreduce");
    }
    int rc = arrive(c->world, 0);
    if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Ibarrier");
    for (size_t done = 0; done < n;) {
        size_t len = n - done < per_call ? n - done : per_call;
        rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + done * elem, (int)len, type, op, c->world);
        if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Allreduce");
        done += len;
    }
    return FFN_OK;
}

ffn_status ffn_comm_sum_floats(ffn_comm *c, float *buf, size_t n)
{
    return sum_in_place(c, buf, n, sizeof *buf, MPI_FLOAT, MPI_SUM);
}

ffn_status ffn_comm_sum_doubles(ffn_comm *c, double *buf, size_t n)
{
    return sum_in_place(c, buf, n, sizeof *buf, MPI_DOUBLE, MPI_SUM);
}

ffn_status ffn_comm_max_u64(ffn_comm *c, uint64_t *buf, size_t n)
{
    return sum_in_place(c, buf, n, sizeof *buf, MPI_UINT64_T, MPI_MAX);
}

ffn_status ffn_comm_allgather_u64(ffn_comm *c, uint64_t x, uint64_t *out)
{
    if (c->size == 1) {
        out[0] = x;
        return FFN_OK;
    }
    int rc = MPI_Allgather(&x, 1, MPI_UINT64_T, out, 1, MPI_UINT64_T, c->world);
    return rc == MPI_SUCCESS ? FFN_OK : mpi_error(rc, "MPI_Allgather");
}

/* ---- ZeRO slices ------------------------------------------------------------ */

void ffn_comm_slice(const ffn_comm *c, size_t n, int rank, size_t *lo, size_t *hi)
{
    ffn_partition(n, (size_t)rank, (size_t)c->size, lo, hi);
}

/* counts[q], displs[q]: rank q's part of the chunk [lo, hi), relative to lo. */
static void chunk_layout(const ffn_comm *c, size_t n, size_t lo, size_t hi, int *counts, int *displs)
{
    for (int q = 0; q < c->size; q++) {
        size_t a, b;
        ffn_comm_slice(c, n, q, &a, &b);
        if (a < lo) a = lo;
        if (b > hi) b = hi;
        if (b < a) b = a;
        counts[q] = (int)(b - a);
        if (displs) displs[q] = (int)(a - lo);
    }
}

static size_t chunk_floats(size_t bucket_bytes)
{
    size_t per = bucket_bytes / sizeof(float);
    if (per == 0) per = 1;
    if (per > INT_MAX) per = INT_MAX;
    return per;
}

ffn_status ffn_comm_allgather_slices(ffn_comm *c, float *buf, size_t n, size_t from, size_t to,
                                     size_t bucket_bytes)
{
    if (c->size == 1 || from >= to) return FFN_OK;
    if (to > n) to = n;
    int arrived = arrive(c->world, 0);
    if (arrived != MPI_SUCCESS) return mpi_error(arrived, "MPI_Ibarrier");
    size_t per = chunk_floats(bucket_bytes);
    for (size_t lo = from; lo < to; lo += per) {
        size_t hi = to - lo < per ? to : lo + per;
        chunk_layout(c, n, lo, hi, c->counts, c->displs);
        int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf + lo, c->counts, c->displs, MPI_FLOAT,
                                c->world);
        if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Allgatherv (parameter slices)");
    }
    return FFN_OK;
}

ffn_status ffn_comm_gather_slices(ffn_comm *c, const float *slice, float *full, size_t n, int root,
                                  size_t bucket_bytes)
{
    return ffn_comm_gather_range(c, slice, n, 0, n, full, root, bucket_bytes);
}

ffn_status ffn_comm_gather_range(ffn_comm *c, const float *slice, size_t n, size_t from, size_t to, float *out,
                                 int root, size_t bucket_bytes)
{
    size_t own_lo, own_hi;
    ffn_comm_slice(c, n, c->rank, &own_lo, &own_hi);
    if (to > n) to = n;
    if (c->size == 1) {
        if (to > from) memcpy(out, slice + from, (to - from) * sizeof *out);
        return FFN_OK;
    }
    size_t per = chunk_floats(bucket_bytes);
    for (size_t lo = from; lo < to; lo += per) {
        size_t hi = to - lo < per ? to : lo + per;
        chunk_layout(c, n, lo, hi, c->counts, c->displs);
        size_t at = own_lo > lo ? own_lo : lo;
        if (at > own_hi) at = own_hi;
        int rc = MPI_Gatherv(slice + (at - own_lo), c->counts[c->rank], MPI_FLOAT,
                             c->rank == root ? out + (lo - from) : NULL, c->counts, c->displs, MPI_FLOAT, root,
                             c->world);
        if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Gatherv (slices to one rank)");
    }
    return FFN_OK;
}

ffn_status ffn_comm_reduce_scatter_range(ffn_comm *c, float *range, size_t n, size_t from, size_t to, float *tmp,
                                         size_t bucket_bytes)
{
    if (c->size == 1 || from >= to) return FFN_OK;
    if (to > n) to = n;
    size_t per = chunk_floats(bucket_bytes);
    for (size_t lo = from; lo < to; lo += per) {
        size_t hi = to - lo < per ? to : lo + per;
        chunk_layout(c, n, lo, hi, c->counts, c->displs);
        /* The slices of a chunk are contiguous in rank order, as
         * MPI_Reduce_scatter lays them out; this rank's sum lands in tmp and
         * goes back into its own place. */
        float *chunk = range + (lo - from);
        int rc = MPI_Reduce_scatter(chunk, tmp, c->counts, MPI_FLOAT, MPI_SUM, c->world);
        if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Reduce_scatter (gradient slices)");
        if (c->counts[c->rank]) memcpy(chunk + c->displs[c->rank], tmp, (size_t)c->counts[c->rank] * sizeof *chunk);
    }
    return FFN_OK;
}

/* Every rank's own count first (they may differ), then the data. */
ffn_status ffn_comm_gather_floats(ffn_comm *c, const float *send, size_t n, float *recv, int root)
{
    if (n > INT_MAX) return ffn_fail(FFN_ERR_ARG, "gather of %zu floats: more than MPI's int count", n);
    if (c->size == 1) {
        if (n) memcpy(recv, send, n * sizeof *recv);
        return FFN_OK;
    }
    int count = (int)n;
    int rc = MPI_Gather(&count, 1, MPI_INT, c->counts, 1, MPI_INT, root, c->world);
    if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Gather (counts)");
    if (c->rank == root) {
        long long at = 0;
        for (int r = 0; r < c->size; r++) {
            if (at > INT_MAX) return ffn_fail(FFN_ERR_ARG, "gather of %lld floats: more than MPI's int displacement", at);
            c->displs[r] = (int)at;
            at += c->counts[r];
        }
    }
    rc = MPI_Gatherv(send, count, MPI_FLOAT, recv, c->counts, c->displs, MPI_FLOAT, root, c->world);
    return rc == MPI_SUCCESS ? FFN_OK : mpi_error(rc, "MPI_Gatherv (rows)");
}

/* ---- node-shared buffers ------------------------------------------------------ */

/* The node barrier's slots, once (collective: every rank is here). */
static void ensure_slots(ffn_comm *c)
{
    if (c->slots) return;
    MPI_Info info;
    int ok, all_ok = 0, rc;
    node_slot *mine = NULL;
    c->slots = calloc((size_t)c->local_size, sizeof *c->slots);
    ok = c->slots != NULL;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, c->world);
    if (all_ok) {
        MPI_Info_create(&info);
        MPI_Info_set(info, "alloc_shared_noncontig", "true");
        rc = MPI_Win_allocate_shared(64, 1, info, c->node, &mine, &c->slots_win);
        MPI_Info_free(&info);
        ok = rc == MPI_SUCCESS;
        MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, c->world);
        if (!all_ok && ok) MPI_Win_free(&c->slots_win);
    }
    if (!all_ok) {
        free(c->slots);
        c->slots = NULL;
    } else {
        for (int q = 0; q < c->local_size; q++) {
            MPI_Aint size;
            int unit;
            MPI_Win_shared_query(c->slots_win, q, &size, &unit, &c->slots[q]);
        }
        MPI_Win_lock_all(MPI_MODE_NOCHECK, c->slots_win);
        memset(mine, 0, sizeof *mine);
        MPI_Barrier(c->world); /* every slot zeroed before any barrier uses it */
    }
}

/* Collective over the node: b's window of bytes on this rank (each segment on
 * pages of its own when noncontig, else one contiguous window) and every
 * rank's segment in b->peers. 1 on every rank, or 0 on every rank with
 * b->peers freed. */
static int allocate_window(ffn_comm *c, size_t bytes, int noncontig, shared_buffer *b)
{
    MPI_Info info = MPI_INFO_NULL;
    if (noncontig) {
        MPI_Info_create(&info);
        MPI_Info_set(info, "alloc_shared_noncontig", "true");
    }
    int rc = MPI_Win_allocate_shared((MPI_Aint)bytes, sizeof(float), info, c->node, &b->mine, &b->win);
    if (noncontig) MPI_Info_free(&info);
    int ok = rc == MPI_SUCCESS, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, c->world);
    if (!all_ok) {
        if (ok) MPI_Win_free(&b->win);
        free(b->peers);
        b->peers = NULL;
        return 0;
    }
    for (int q = 0; q < c->local_size; q++) {
        MPI_Aint size;
        int unit;
        MPI_Win_shared_query(b->win, q, &size, &unit, &b->peers[q]);
    }
    return 1;
}

float *ffn_comm_alloc_shared_floats(ffn_comm *c, size_t n)
{
    if (c->size == 1 || n == 0 || (c->local_size != c->size && c->cross == MPI_COMM_NULL)) return NULL;
    /* Every rank is here (collective): agree on the outcome at each step. */
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    shared_buffer b = {.n = n};
    int ok = bytes / sizeof(float) >= n && bytes <= (size_t)PTRDIFF_MAX;
    shared_buffer *grown = realloc(c->shared, (c->shared_count + 1) * sizeof *grown);
    if (grown) c->shared = grown;
    b.peers = calloc((size_t)c->local_size, sizeof *b.peers);
    ok = ok && grown && b.peers;
    int all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, c->world);
    if (!all_ok) {
        free(b.peers);
        return NULL;
    }
    if (!allocate_window(c, bytes, 1, &b)) return NULL; /* each segment on its own pages */
    MPI_Win_lock_all(MPI_MODE_NOCHECK, b.win); /* passive target, synced at each exchange */
    memset(b.mine, 0, bytes);
    c->shared[c->shared_count++] = b;
    ensure_slots(c);
    return b.mine;
}

/* A barrier of the node's ranks through shared memory: each rank publishes how
 * many barriers it has reached (a release store; everything it wrote before is
 * then visible to a rank that reads the count with acquire) and waits, politely,
 * until every rank has reached as many. No MPI call: about a microsecond when
 * every rank is running. Needs c->slots. */
/* The stall message: the ranks that did not arrive, named by the one rank
 * that reports (the lowest that did arrive); the others get an empty message
 * (ffn-train prints only non-empty ones). */
static ffn_status stalled(const ffn_comm *c, const int *missing, int count, int reporter)
{
    if (c->rank != reporter) return ffn_fail(FFN_ERR_STALLED, "%s", "");
    char list[512] = "";
    size_t len = 0;
    for (int i = 0; i < count && len + 16 < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", i ? (i + 1 == count ? " and " : ", ") : "",
                                missing[i]);
    if (count == 0) snprintf(list, sizeof list, "(unknown)");
    return ffn_fail(FFN_ERR_STALLED,
                    "rank%s %s did not reach the gradient exchange of step %llu within %g s (stopped, or stuck in "
                    "I/O?); ending the job (--stall-timeout)",
                    count == 1 ? "" : "s", list, (unsigned long long)c->stall_step, c->stall_seconds);
}

/* 0 once every rank of the node arrived; -1 (with the stall message set)
 * when some did not within stall_seconds (named by their world ranks). */
static int node_barrier(ffn_comm *c)
{
    uint64_t target = ++c->barriers;
    __atomic_store_n(&c->slots[c->local_rank]->arrived, target, __ATOMIC_RELEASE);
    wait_clock clock = wait_clock_start();
    for (int q = 0; q < c->local_size; q++) {
        if (q == c->local_rank) continue;
        while (__atomic_load_n(&c->slots[q]->arrived, __ATOMIC_ACQUIRE) < target) {
            double waited = wait_clock_read(&clock);
            if (c->stall_seconds > 0 && waited > c->stall_seconds) {
                int missing[64], count = 0, reporter = -1;
                for (int k = 0; k < c->local_size; k++) {
                    int in = __atomic_load_n(&c->slots[k]->arrived, __ATOMIC_ACQUIRE) >= target;
                    if (in && reporter < 0) reporter = c->node_ranks[k];
                    if (!in && count < 64) missing[count++] = c->node_ranks[k];
                }
                stalled(c, missing, count, reporter);
                return -1;
            }
            back_off(waited);
        }
    }
    return 0;
}

static const shared_buffer *find_shared(const ffn_comm *c, const float *p, size_t n)
{
    for (size_t i = 0; i < c->shared_count; i++)
        if (c->shared[i].mine == p && n <= c->shared[i].n) return &c->shared[i];
    return NULL;
}

/* ---- node-shared slices (--shard grads/params on one node) ---------------- */

/* ffn_comm_alloc_node_slices for n elements of elem bytes each. */
static void *node_slices(ffn_comm *c, size_t n, size_t elem)
{
    if (c->size == 1 || n == 0 || c->local_size != c->size) return NULL;
    size_t lo, hi;
    ffn_comm_slice(c, n, c->rank, &lo, &hi);
    shared_buffer b = {.n = (hi - lo) * elem / sizeof(float)};
    shared_buffer *grown = realloc(c->shared, (c->shared_count + 1) * sizeof *grown);
    if (grown) c->shared = grown;
    b.peers = calloc((size_t)c->local_size, sizeof *b.peers);
    int ok = grown && b.peers, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, c->world);
    if (!all_ok) {
        free(b.peers);
        return NULL;
    }
    /* One contiguous window (the default layout): rank q's segment is its
     * slice, so the node holds the buffer once and every rank reads all of it. */
    if (!allocate_window(c, (hi - lo) * elem, 0, &b)) return NULL;
    /* The node's rank q is world rank node_ranks[q]: its segment must sit at its slice. */
    ok = 1;
    for (int q = 0; q < c->local_size && ok; q++) {
        size_t qlo, qhi;
        ffn_comm_slice(c, n, c->node_ranks[q], &qlo, &qhi);
        ok = qhi == qlo || (char *)b.peers[q] == (char *)b.peers[0] + qlo * elem;
        if (c->node_ranks[q] == 0) ok = ok && qlo == 0;
    }
    ensure_slots(c);
    ok = ok && c->slots;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, c->world);
    if (!all_ok) {
        MPI_Win_free(&b.win);
        free(b.peers);
        return NULL;
    }
    MPI_Win_lock_all(MPI_MODE_NOCHECK, b.win);
    c->shared[c->shared_count++] = b;
    float *base = b.peers[0];
    for (int q = 0; q < c->local_size; q++)
        if (c->node_ranks[q] == 0) base = b.peers[q];
    return base;
}

float *ffn_comm_alloc_node_slices(ffn_comm *c, size_t n) { return node_slices(c, n, sizeof(float)); }

uint16_t *ffn_comm_alloc_node_slices_u16(ffn_comm *c, size_t n) { return node_slices(c, n, sizeof(uint16_t)); }

ffn_status ffn_comm_node_sync(ffn_comm *c)
{
    if (c->size == 1) return FFN_OK;
    if (!c->slots) return ffn_fail(FFN_ERR_ARG, "node barrier without node-shared memory");
    return node_barrier(c) == 0 ? FFN_OK : FFN_ERR_STALLED;
}

ffn_status ffn_comm_reduce_scatter_shared(ffn_comm *c, float *scratch, const float *range, size_t n, size_t from,
                                          size_t to, float *slice, int add)
{
    const shared_buffer *b = find_shared(c, scratch, 1);
    if (!b || !c->slots) return ffn_fail(FFN_ERR_ARG, "reduce-scatter through a buffer that is not node-shared");
    size_t own_lo, own_hi;
    ffn_comm_slice(c, n, c->rank, &own_lo, &own_hi);
    /* range inside this rank's segment: every rank's is at the same place of its
     * own (no copy, one round); elsewhere it goes through the segment in chunks. */
    const int in_place = range >= b->mine && range + (to - from) <= b->mine + b->n;
    const size_t per = in_place ? to - from : b->n, at = in_place ? (size_t)(range - b->mine) : 0;
    for (size_t lo = from; lo < to; lo += per) {
        const size_t hi = to - lo < per ? to : lo + per;
        if (!in_place) memcpy(b->mine, range + (lo - from), (hi - lo) * sizeof *range);
        if (node_barrier(c) != 0) return FFN_ERR_STALLED; /* every rank's part is in */
        const size_t a = lo > own_lo ? lo : own_lo, z = hi < own_hi ? hi : own_hi;
        if (a < z) {
            /* This rank's part, summed over the node's ranks in rank order: the
             * same order whoever sums it. */
            float *out = slice + (a - own_lo);
            const size_t len = z - a;
            for (int q = 0; q < c->local_size; q++) {
                const float *in = b->peers[q] + at + (a - lo);
                if (q == 0 && !add)
                    memcpy(out, in, len * sizeof *out);
                else
                    for (size_t i = 0; i < len; i++) out[i] += in[i];
            }
        }
        if (node_barrier(c) != 0) return FFN_ERR_STALLED; /* read before anyone writes there again */
    }
    return FFN_OK;
}

/* ---- bucketed gradient exchange ----------------------------------------- */

struct ffn_grad_sync {
    ffn_comm *comm;
    float *grads;         /* [n]: the flat gradients, summed in place (not owned) */
    size_t n, bucket_floats;
    size_t pending_lo, pending_hi; /* ready, not yet started: [lo, hi) */
    MPI_Request *requests; /* [request_cap]: the buckets in flight */
    size_t request_count, request_cap;
    double wait_seconds;
    uint64_t bytes;
    ffn_status error;
    /* sharded (reduce-scatter) mode: */
    float *slice;         /* [own_hi - own_lo], or NULL for allreduce */
    size_t own_lo, own_hi;
    int *counts;          /* [request_cap * size]: each request's recvcounts, kept until it completes */
    /* One node (shared memory): buckets are planned during backward and sent
     * in finish(), blocking, once every rank has arrived (see below). */
    int deferred;
    size_t *plan;         /* [request_cap * 2]: the buckets' [lo, hi), in start order */
    size_t planned;
    const shared_buffer *shm; /* grads is a node-shared buffer: sum in place (below) */
    int sum_by_caller;    /* sharded, shm: finish() only waits for every rank's gradients; the caller
                           * sums its slice over the segments (ffn_grad_sync_leave_sum) */
    /* Across nodes, several ranks a node, grads node-shared: the hierarchical
     * exchange (hierarchical_exchange), buckets planned as in deferred mode. */
    const shared_buffer *hier;
    /* Across nodes, the exchange thread (see "the exchange thread" below): ready()
     * queues buckets in plan, the thread starts them (posted of them so far) and
     * progresses them while backward computes. 0: buckets start in ready() and
     * progress only inside the main thread's MPI calls. */
    int threaded;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;  /* to the thread: a bucket queued, flush or quit */
    pthread_cond_t idle;  /* to finish(): the flush is done */
    size_t posted;
    int flush, quit;
    int main_waits;       /* from the flush to the next begin(): the main thread owns MPI */
    double poll_seconds;  /* the thread's pause between progress calls while backward runs */
    /* --grad-dtype bf16 across nodes (ffn_grad_sync_set_wire_bf16): the buckets
     * travel and are summed in bf16; NULL: fp32. */
    ffn_bf16 *wire;       /* [n] */
    MPI_Op wire_sum;
    size_t *wire_ranges;  /* [request_cap * 2]: the flat exchange's buckets in flight, converted back once done */
    size_t wire_count;
    int wire_local_only;  /* asked for, but every rank is on one node: no network to save */
    /* The flat all-reduce across nodes: every bucket started this step, [lo,
     * hi) in start order, for ffn_grad_sync_finish_each. The first `retired`
     * are complete; the rest are requests[0 .. request_count), in that order. */
    size_t *ranges;       /* [request_cap * 2] */
    size_t range_count, retired;
    int ranges_lost;      /* more this step than ranges holds: finish_each reports [0, n) at the end */
};

static ffn_status start_exchange_thread(ffn_grad_sync *s);

ffn_status ffn_grad_sync_create(ffn_grad_sync **out, ffn_comm *c, float *grads, size_t n,
                                size_t bucket_bytes)
{
    *out = NULL;
    ffn_grad_sync *s = calloc(1, sizeof *s);
    if (!s) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    s->comm = c;
    s->grads = grads;
    s->n = n;
    s->bucket_floats = bucket_bytes / sizeof(float);
    if (s->bucket_floats == 0) s->bucket_floats = 1;
    if (s->bucket_floats > INT_MAX) s->bucket_floats = INT_MAX;
    /* Every ready range starts at most ceil(count / bucket) + 1 buckets. */
    s->request_cap = 2 * (n / s->bucket_floats + 1) + 256;
    s->requests = calloc(s->request_cap, sizeof *s->requests);
    s->plan = calloc(s->request_cap * 2, sizeof *s->plan);
    s->ranges = calloc(s->request_cap * 2, sizeof *s->ranges);
    if (!s->requests || !s->plan || !s->ranges) {
        free(s->requests);
        free(s->plan);
        free(s->ranges);
        free(s);
        return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    }
    /* Within one node, starting a bucket early overlaps nothing: Open MPI moves
     * shared-memory data only inside MPI calls, and backward's sgemm makes
     * none, so an early MPI_Iallreduce just runs later, slower than a
     * blocking one (and every core is busy computing anyway). Across nodes
     * early starts can use the network while backward computes. */
    s->deferred = c->local_size == c->size;
    s->shm = s->deferred ? find_shared(c, grads, n) : NULL;
    if (!s->deferred) {
        ffn_status st = start_exchange_thread(s);
        if (st != FFN_OK) {
            ffn_grad_sync_free(s);
            return st;
        }
    }
    *out = s;
    return FFN_OK;
}

ffn_status ffn_grad_sync_create_sharded(ffn_grad_sync **out, ffn_comm *c, float *grads, size_t n,
                                        size_t bucket_bytes, float *slice)
{
    ffn_status st = ffn_grad_sync_create(out, c, grads, n, bucket_bytes);
    if (st != FFN_OK) return st;
    ffn_grad_sync *s = *out;
    s->slice = slice;
    ffn_comm_slice(c, n, c->rank, &s->own_lo, &s->own_hi);
    s->counts = calloc(s->request_cap * (size_t)c->size, sizeof *s->counts);
    if (!s->counts) {
        ffn_grad_sync_free(s);
        *out = NULL;
        return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    }
    return FFN_OK;
}

void ffn_grad_sync_use_buffer(ffn_grad_sync *s, float *grads)
{
    s->grads = grads;
    s->shm = s->deferred ? find_shared(s->comm, grads, s->n) : NULL;
    s->hier = !s->deferred && !s->slice && s->comm->cross != MPI_COMM_NULL ? find_shared(s->comm, grads, s->n)
                                                                           : NULL;
}

void ffn_grad_sync_free(ffn_grad_sync *s)
{
    if (!s) return;
    if (s->threaded) {
        pthread_mutex_lock(&s->lock);
        s->quit = 1;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
        pthread_cond_destroy(&s->wake);
        pthread_cond_destroy(&s->idle);
        pthread_mutex_destroy(&s->lock);
    }
    if (s->wire) {
        MPI_Op_free(&s->wire_sum);
        ffn_free(s->wire);
        free(s->wire_ranges);
    }
    free(s->counts);
    free(s->requests);
    free(s->plan);
    free(s->ranges);
    free(s);
}

/* The sum of two bf16 vectors, rounded back to bf16 at each step of the
 * collective (as gloo and NCCL sum 16-bit gradients). */
static void bf16_sum(void *in, void *inout, int *len, MPI_Datatype *type)
{
    (void)type;
    const ffn_bf16 *a = in;
    ffn_bf16 *b = inout;
    for (int i = 0; i < *len; i++) b[i] = ffn_bf16_from_float(ffn_float_from_bf16(a[i]) + ffn_float_from_bf16(b[i]));
}

ffn_status ffn_grad_sync_set_wire_bf16(ffn_grad_sync *s)
{
    if (s->slice)
        return ffn_fail(FFN_ERR_ARG, "--grad-dtype bf16 runs with the all-reduce exchange; with --shard-optimizer "
                                     "(reduce-scatter) it is not supported yet");
    if (s->deferred || s->comm->size == 1) { /* one node: summed in shared memory, no network to halve */
        s->wire_local_only = 1;
        return FFN_OK;
    }
    if (s->wire) return FFN_OK;
    s->wire = ffn_alloc(s->n ? s->n : 1, sizeof *s->wire);
    s->wire_ranges = calloc(s->request_cap * 2, sizeof *s->wire_ranges);
    if (!s->wire || !s->wire_ranges || MPI_Op_create(bf16_sum, 1, &s->wire_sum) != MPI_SUCCESS) {
        ffn_free(s->wire);
        free(s->wire_ranges);
        s->wire = NULL;
        s->wire_ranges = NULL;
        return ffn_fail(FFN_ERR_NOMEM, "out of memory for the bf16 gradient buffer");
    }
    return FFN_OK;
}

/* The flat exchange's bf16 buckets, once complete, back into the fp32 gradients. */
static void wire_unpack(ffn_grad_sync *s)
{
    for (size_t i = 0; i < s->wire_count; i++) {
        size_t lo = s->wire_ranges[2 * i], hi = s->wire_ranges[2 * i + 1];
        ffn_floats_from_bf16(s->grads + lo, s->wire + lo, hi - lo);
    }
    s->wire_count = 0;
}

void ffn_grad_sync_begin(ffn_grad_sync *s, uint64_t step)
{
    if (s->threaded) pthread_mutex_lock(&s->lock); /* the thread is idle: nothing queued or in flight */
    s->comm->stall_step = step;
    s->pending_lo = s->pending_hi = 0;
    s->request_count = 0;
    s->range_count = s->retired = 0;
    s->ranges_lost = 0;
    s->planned = 0;
    s->posted = 0;
    s->main_waits = 0;
    s->error = FFN_OK;
    if (s->threaded) pthread_mutex_unlock(&s->lock);
}

#define TAG_ARRIVE 7301

/* Across nodes with stall detection on: each rank tells rank 0 that it has
 * reached the exchange, and rank 0 tells every rank, so that at a stall rank
 * 0 knows who is missing and every other rank knows whether rank 0 is. Two
 * small messages a rank a step (2(N-1) on rank 0). Returns the requests posted. */
static int exchange_arrive(ffn_comm *c)
{
    int n = 0;
    c->arrival_out = c->stall_step;
    if (c->rank == 0) {
        for (int q = 1; q < c->size; q++) {
            MPI_Irecv(&c->arrival_in[q], 1, MPI_UINT64_T, q, TAG_ARRIVE, c->world, &c->arrivals[n++]);
            MPI_Isend(&c->arrival_out, 1, MPI_UINT64_T, q, TAG_ARRIVE, c->world, &c->arrivals[n++]);
        }
    } else {
        MPI_Irecv(&c->arrival_in[0], 1, MPI_UINT64_T, 0, TAG_ARRIVE, c->world, &c->arrivals[n++]);
        MPI_Isend(&c->arrival_out, 1, MPI_UINT64_T, 0, TAG_ARRIVE, c->world, &c->arrivals[n++]);
    }
    return n;
}

/* After a stall: who did not announce their arrival (see exchange_arrive). */
static ffn_status name_the_missing(ffn_comm *c)
{
    int *missing = malloc((size_t)c->size * sizeof *missing), count = 0;
    if (!missing) return ffn_fail(FFN_ERR_STALLED, "a rank stalled at the gradient exchange");
    ffn_status st;
    if (c->rank == 0) {
        for (int q = 1; q < c->size; q++) { /* requests 2(q-1): the receive from q */
            int done = 0;
            MPI_Test(&c->arrivals[2 * (q - 1)], &done, MPI_STATUS_IGNORE);
            if (!done) missing[count++] = q;
        }
        st = stalled(c, missing, count, 0);
    } else {
        int done = 0;
        MPI_Test(&c->arrivals[0], &done, MPI_STATUS_IGNORE);
        missing[0] = 0;
        /* Rank 0 names the missing when it can; when it is the one missing, rank 1 does. */
        st = done ? stalled(c, NULL, 0, 0) : stalled(c, missing, 1, 1);
    }
    free(missing);
    return st;
}

/* Every request in flight has completed: its bucket's range is done. */
static void retire_all(ffn_grad_sync *s)
{
    s->request_count = 0;
    s->retired = s->range_count;
}

/* The exchange's error from a wait's result (the first one kept). */
static void note_wait_result(ffn_grad_sync *s, int rc)
{
    if (rc == WAIT_STALLED) {
        if (s->error == FFN_OK) s->error = name_the_missing(s->comm);
    } else if (rc != MPI_SUCCESS && s->error == FFN_OK) {
        s->error = mpi_error(rc, "gradient allreduce");
    }
}

static void wait_all(ffn_grad_sync *s)
{
    ffn_comm *c = s->comm;
    double t0 = MPI_Wtime();
    int arrivals = c->stall_seconds > 0 && c->arrivals ? exchange_arrive(c) : 0;
    int rc = s->request_count ? polite_wait_for((int)s->request_count, s->requests, c->stall_seconds) : MPI_SUCCESS;
    if (rc == MPI_SUCCESS && arrivals) rc = polite_wait_for(arrivals, c->arrivals, c->stall_seconds);
    note_wait_result(s, rc);
    if (!s->threaded) s->wait_seconds += MPI_Wtime() - t0; /* else finish() counts its own wait */
    retire_all(s);
    if (s->wire) wire_unpack(s);
}

void ffn_comm_set_stall_timeout(ffn_comm *c, double seconds)
{
    c->stall_seconds = seconds > 0 ? seconds : 0;
    if (c->stall_seconds > 0 && !c->arrivals && c->size > 1) {
        c->arrivals = calloc(2 * (size_t)c->size, sizeof *c->arrivals);
        c->arrival_in = calloc((size_t)c->size, sizeof *c->arrival_in);
        if (!c->arrivals || !c->arrival_in) { /* then only the node barrier names the missing */
            free(c->arrivals);
            free(c->arrival_in);
            c->arrivals = NULL;
            c->arrival_in = NULL;
        }
    }
}

/* One bucket, blocking (deferred mode): allreduce, or reduce-scatter into the slice. */
static int send_bucket_now(ffn_grad_sync *s, size_t lo, size_t hi)
{
    if (s->slice) {
        int *counts = s->counts; /* the first request's row: free in deferred mode */
        chunk_layout(s->comm, s->n, lo, hi, counts, NULL);
        size_t from = s->own_lo > lo ? s->own_lo : lo;
        if (from > s->own_hi) from = s->own_hi;
        return MPI_Reduce_scatter(s->grads + lo, s->slice + (from - s->own_lo), counts, MPI_FLOAT, MPI_SUM,
                                  s->comm->world);
    }
    return MPI_Allreduce(MPI_IN_PLACE, s->grads + lo, (int)(hi - lo), MPI_FLOAT, MPI_SUM, s->comm->world);
}

/* The exchange through a node-shared gradient buffer. Every rank's gradients
 * lie in its segment of one shared window; once all have arrived, rank r adds
 * up its share of every bucket straight from all the segments (in rank order,
 * so every rank gets the same bits) and writes the sums into all of them (or,
 * sharded, into its own slice); a second arrival and the sums are everywhere.
 * Each rank reads and writes each gradient byte about once, where Open MPI's
 * allreduce copies through its FIFOs several times: 33.6 MB on two ranks took
 * 2.8 ms here against 12.9 ms for MPI_Allreduce in 4 MB buckets. */
enum { SUM_BLOCK = 2048 }; /* floats */

static void shared_sum(ffn_grad_sync *s, size_t lo, size_t hi)
{
    const shared_buffer *b = s->shm;
    const int p = s->comm->local_size, r = s->comm->local_rank;
    if (s->slice) { /* only this rank's ZeRO slice, into the slice buffer */
        if (lo < s->own_lo) lo = s->own_lo;
        if (hi > s->own_hi) hi = s->own_hi;
        if (lo >= hi) return;
        float *out = s->slice - s->own_lo;
        /* In blocks that stay in L1 between the ranks' passes: each byte of
         * the slice written to memory once. */
        for (size_t at = lo; at < hi; at += SUM_BLOCK) {
            const size_t end = hi - at < SUM_BLOCK ? hi : at + SUM_BLOCK;
            memcpy(out + at, b->peers[0] + at, (end - at) * sizeof *out);
            for (int q = 1; q < p; q++) {
                const float *g = b->peers[q];
                for (size_t i = at; i < end; i++) out[i] += g[i];
            }
        }
        return;
    }
    size_t a, z;
    ffn_partition(hi - lo, (size_t)r, (size_t)p, &a, &z);
    a += lo;
    z += lo;
    /* In blocks that stay in L1 between the summing pass and the writing one. */
    enum { BLOCK = SUM_BLOCK };
    for (size_t at = a; at < z; at += BLOCK) {
        size_t end = z - at < BLOCK ? z : at + BLOCK;
        float *first = b->peers[0];
        for (int q = 1; q < p; q++) {
            const float *g = b->peers[q];
            for (size_t i = at; i < end; i++) first[i] += g[i];
        }
        for (int q = 1; q < p; q++) memcpy(b->peers[q] + at, first + at, (end - at) * sizeof *first);
    }
}

/* The hierarchical exchange: several ranks on each of several nodes, the
 * gradients in a node-shared window. Once the node's ranks have all arrived,
 * local rank j sums slice j of every bucket over the node's segments (in
 * local-rank order, as shared_sum does), all-reduces that slice with the
 * ranks of local rank j on the other nodes (MPI_Iallreduce on the cross
 * communicator, libnbc's ring where ffn sets it: every local rank carries its
 * own slice, so all of them use the network at once), and writes the result
 * into every segment of the node; a second arrival and the sums are
 * everywhere. A node sends each gradient byte across the network once in
 * total instead of once per rank. Returns -1 on a stall (message set). */
static int hierarchical_exchange(ffn_grad_sync *s)
{
    ffn_comm *c = s->comm;
    const shared_buffer *b = s->hier;
    const int p = c->local_size, r = c->local_rank;
    if (node_barrier(c) != 0) return -1; /* every local rank's gradients written */
    float *first = b->peers[0];
    size_t count = 0;
    for (size_t i = 0; i < s->planned; i++) {
        size_t lo = s->plan[2 * i], hi = s->plan[2 * i + 1], a, z;
        ffn_partition(hi - lo, (size_t)r, (size_t)p, &a, &z);
        a += lo;
        z += lo;
        for (int q = 1; q < p; q++) {
            const float *g = b->peers[q];
            for (size_t k = a; k < z; k++) first[k] += g[k];
        }
        if (z == a) continue;
        use_allreduce_algorithm(c, ALGORITHM_RING);
        int rc;
        if (s->wire) { /* --grad-dtype bf16: the slice crosses the network in bf16 */
            ffn_bf16_from_floats(s->wire + a, first + a, z - a);
            rc = MPI_Iallreduce(MPI_IN_PLACE, s->wire + a, (int)(z - a), MPI_UINT16_T, s->wire_sum, c->cross,
                                &s->requests[count]);
        } else {
            rc = MPI_Iallreduce(MPI_IN_PLACE, first + a, (int)(z - a), MPI_FLOAT, MPI_SUM, c->cross,
                                &s->requests[count]);
        }
        use_allreduce_algorithm(c, ALGORITHM_LIBRARY);
        if (rc != MPI_SUCCESS) {
            if (s->error == FFN_OK) s->error = mpi_error(rc, "MPI_Iallreduce (across nodes)");
            break;
        }
        count++;
    }
    int rc = count ? polite_wait_for((int)count, s->requests, c->stall_seconds) : MPI_SUCCESS;
    if (rc == WAIT_STALLED) {
        stalled(c, NULL, 0, 0);
        return -1;
    }
    if (rc != MPI_SUCCESS && s->error == FFN_OK) s->error = mpi_error(rc, "gradient allreduce across nodes");
    for (size_t i = 0; i < s->planned; i++) {
        size_t lo = s->plan[2 * i], hi = s->plan[2 * i + 1], a, z;
        ffn_partition(hi - lo, (size_t)r, (size_t)p, &a, &z);
        if (s->wire)
            ffn_floats_from_bf16(first + lo + a, s->wire + lo + a, z - a);
        for (int q = 1; q < p; q++) memcpy(b->peers[q] + lo + a, first + lo + a, (z - a) * sizeof *first);
    }
    s->planned = 0;
    return node_barrier(c) != 0 ? -1 : 0; /* every sum written, every read done */
}

/* ---- the exchange thread ------------------------------------------------------
 *
 * Open MPI moves a non-blocking collective's data only inside MPI calls, and
 * backward's GEMMs make none: with buckets started in ready() and one
 * MPI_Testall a layer, next to nothing of the exchange ran while backward
 * computed. Across nodes a thread of the rank therefore owns the buckets' MPI
 * calls from begin() to finish(): ready() only queues a bucket; the thread
 * starts it at once (same buckets, same order, same algorithm: the same bits)
 * and then calls MPI_Testall every poll_seconds while backward runs, sleeping
 * in between (a rank often has one core: a thread spinning in MPI would take
 * it from the GEMMs), so each libnbc round and each TCP fragment moves within
 * a fraction of a millisecond of being possible. finish() hands it the flush:
 * the thread starts what is left and hands MPI back, and the main thread, idle
 * anyway once backward is done, completes the buckets itself (wait_all, with
 * stall detection) without a thread switch at each poll. MPI runs SERIALIZED:
 * the main thread calls MPI only outside [begin, flush] (from the flush to the
 * next begin() the thread makes none), and every handover goes through the
 * mutex. FFN_EXCHANGE_THREAD=0 turns it off. */
#define EXCHANGE_POLL_SECONDS 200e-6

static void *exchange_thread_main(void *arg);

static ffn_status start_exchange_thread(ffn_grad_sync *s)
{
    const char *env = getenv("FFN_EXCHANGE_THREAD");
    if (env && strcmp(env, "0") != 0 && strcmp(env, "1") != 0)
        return ffn_fail(FFN_ERR_ARG, "FFN_EXCHANGE_THREAD is '%s', expected 1 (a thread progresses the gradient "
                        "exchange across nodes while backward runs, the default) or 0 (only the main thread's MPI "
                        "calls do)", env);
    if ((env && env[0] == '0') || !ffn_comm_threads_serialized(s->comm)) return FFN_OK;
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0) return FFN_OK;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int ok = pthread_mutex_init(&s->lock, NULL) == 0;
    ok = ok && pthread_cond_init(&s->wake, &attr) == 0;
    ok = ok && pthread_cond_init(&s->idle, NULL) == 0;
    pthread_condattr_destroy(&attr);
    s->poll_seconds = EXCHANGE_POLL_SECONDS;
    s->threaded = 1; /* before the thread reads it */
    if (!ok || pthread_create(&s->thread, NULL, exchange_thread_main, s) != 0) {
        s->threaded = 0;
        return ffn_fail(FFN_ERR_NOMEM, "cannot start the gradient exchange thread");
    }
    return FFN_OK;
}

static void post_bucket(ffn_grad_sync *s, size_t lo, size_t hi);

static void *exchange_thread_main(void *arg)
{
    ffn_grad_sync *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->quit) {
        if (s->posted < s->planned) { /* start every queued bucket, in order */
            size_t lo = s->plan[2 * s->posted], hi = s->plan[2 * s->posted + 1];
            s->posted++;
            pthread_mutex_unlock(&s->lock);
            post_bucket(s, lo, hi);
            pthread_mutex_lock(&s->lock);
        } else if (s->flush) { /* finish(): every bucket is started; the main thread completes them */
            s->flush = 0;
            s->main_waits = 1;
            pthread_cond_signal(&s->idle);
        } else if (s->request_count && !s->main_waits) { /* backward runs: progress, then pause */
            pthread_mutex_unlock(&s->lock);
            int done = 0;
            MPI_Testall((int)s->request_count, s->requests, &done, MPI_STATUSES_IGNORE);
            if (done) retire_all(s);
            pthread_mutex_lock(&s->lock);
            if (s->request_count && s->posted == s->planned && !s->flush && !s->quit) {
                struct timespec until;
                clock_gettime(CLOCK_MONOTONIC, &until);
                until.tv_nsec += (long)(s->poll_seconds * 1e9);
                if (until.tv_nsec >= 1000000000L) {
                    until.tv_sec++;
                    until.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&s->wake, &s->lock, &until);
            }
        } else {
            pthread_cond_wait(&s->wake, &s->lock);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void flush_thread(ffn_grad_sync *s);

/* From ready() (the main thread): one more bucket for the thread to start. */
static void queue_bucket(ffn_grad_sync *s, size_t lo, size_t hi)
{
    if (s->planned == s->request_cap) { /* never expected: complete what is queued first */
        flush_thread(s);
        pthread_mutex_lock(&s->lock);
        s->main_waits = 0; /* the thread progresses the next ones again */
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_lock(&s->lock);
    s->plan[2 * s->planned] = lo;
    s->plan[2 * s->planned + 1] = hi;
    s->planned++;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    s->bytes += (hi - lo) * (s->wire ? sizeof(ffn_bf16) : sizeof(float));
}

/* From finish(): the thread starts what is queued and hands MPI back to
 * this thread (no MPI call from the thread until the next begin()). */
static void hand_back_mpi(ffn_grad_sync *s)
{
    pthread_mutex_lock(&s->lock);
    s->flush = 1;
    pthread_cond_signal(&s->wake);
    while (s->flush) pthread_cond_wait(&s->idle, &s->lock);
    s->planned = s->posted = 0;
    pthread_mutex_unlock(&s->lock);
}

/* The thread hands MPI back; this thread completes it all. */
static void flush_thread(ffn_grad_sync *s)
{
    hand_back_mpi(s);
    wait_all(s);
}

static void start_bucket(ffn_grad_sync *s, size_t lo, size_t hi)
{
    if (s->deferred || s->hier) {
        if (s->planned == s->request_cap) { /* never expected: send what is planned so far */
            if (s->hier) hierarchical_exchange(s);
            for (size_t i = 0; !s->hier && i < s->planned; i++) send_bucket_now(s, s->plan[2 * i], s->plan[2 * i + 1]);
            s->planned = 0;
        }
        s->plan[2 * s->planned] = lo;
        s->plan[2 * s->planned + 1] = hi;
        s->planned++;
        /* hierarchical: what this rank sends across nodes, its slice */
        s->bytes += (hi - lo) * (s->wire ? sizeof(ffn_bf16) : sizeof(float)) /
                    (s->hier ? (size_t)s->comm->local_size : 1);
        return;
    }
    if (s->threaded) {
        queue_bucket(s, lo, hi);
        return;
    }
    post_bucket(s, lo, hi);
}

/* Starts one bucket's non-blocking collective (on the exchange thread when there is one). */
static void post_bucket(ffn_grad_sync *s, size_t lo, size_t hi)
{
    if (s->request_count == s->request_cap) wait_all(s); /* never expected; stay correct */
    int rc;
    if (s->slice) {
        /* The bucket's parts go to the ranks owning them, in rank order (slices ascend). */
        int *counts = s->counts + s->request_count * (size_t)s->comm->size;
        chunk_layout(s->comm, s->n, lo, hi, counts, NULL);
        size_t from = s->own_lo > lo ? s->own_lo : lo;
        if (from > s->own_hi) from = s->own_hi;
        rc = MPI_Ireduce_scatter(s->grads + lo, s->slice + (from - s->own_lo), counts, MPI_FLOAT, MPI_SUM,
                                 s->comm->world, &s->requests[s->request_count]);
    } else if (s->wire) { /* --grad-dtype bf16: converted, sent and summed in bf16, converted back in wait_all */
        ffn_bf16_from_floats(s->wire + lo, s->grads + lo, hi - lo);
        s->wire_ranges[2 * s->wire_count] = lo;
        s->wire_ranges[2 * s->wire_count + 1] = hi;
        s->wire_count++;
        use_allreduce_algorithm(s->comm, ALGORITHM_RING);
        rc = MPI_Iallreduce(MPI_IN_PLACE, s->wire + lo, (int)(hi - lo), MPI_UINT16_T, s->wire_sum, s->comm->world,
                            &s->requests[s->request_count]);
        use_allreduce_algorithm(s->comm, ALGORITHM_LIBRARY);
    } else {
        use_allreduce_algorithm(s->comm, ALGORITHM_RING);
        rc = MPI_Iallreduce(MPI_IN_PLACE, s->grads + lo, (int)(hi - lo), MPI_FLOAT, MPI_SUM,
                            s->comm->world, &s->requests[s->request_count]);
        use_allreduce_algorithm(s->comm, ALGORITHM_LIBRARY);
    }
    if (rc != MPI_SUCCESS) {
        if (s->error == FFN_OK) s->error = mpi_error(rc, "MPI_Iallreduce");
        return;
    }
    s->request_count++;
    if (!s->slice) {
        if (s->range_count < s->request_cap) {
            s->ranges[2 * s->range_count] = lo;
            s->ranges[2 * s->range_count + 1] = hi;
            s->range_count++;
        } else {
            s->ranges_lost = 1;
        }
    }
    if (!s->threaded) s->bytes += (hi - lo) * (s->wire ? sizeof(ffn_bf16) : sizeof(float)); /* else counted as queued */
}

/* Starts whole buckets from the top of the pending range; with flush, the rest too. */
static void start_pending(ffn_grad_sync *s, int flush)
{
    while (s->pending_hi - s->pending_lo >= s->bucket_floats) {
        start_bucket(s, s->pending_hi - s->bucket_floats, s->pending_hi);
        s->pending_hi -= s->bucket_floats;
    }
    if (flush && s->pending_hi > s->pending_lo) start_bucket(s, s->pending_lo, s->pending_hi);
    if (flush) s->pending_hi = s->pending_lo;
}

void ffn_grad_sync_ready(void *sync, size_t offset, size_t count)
{
    ffn_grad_sync *s = sync;
    if (s->comm->size == 1 || count == 0) return;
    if (s->pending_hi != s->pending_lo && offset + count != s->pending_lo)
        start_pending(s, 1); /* a gap (frozen layer): the pending range is complete */
    if (s->pending_hi == s->pending_lo) s->pending_hi = offset + count;
    s->pending_lo = offset;
    start_pending(s, 0);
    /* Open MPI progresses non-blocking collectives only inside MPI calls: the
     * exchange thread makes them, or else this one call a layer. */
    if (!s->threaded && s->request_count) {
        int done;
        MPI_Testall((int)s->request_count, s->requests, &done, MPI_STATUSES_IGNORE);
        if (done) retire_all(s);
    }
}

ffn_status ffn_grad_sync_finish(ffn_grad_sync *s)
{
    if (s->comm->size == 1) {
        if (s->slice) memcpy(s->slice, s->grads, s->n * sizeof *s->grads);
        return FFN_OK;
    }
    start_pending(s, 1);
    if (s->shm && s->comm->slots) {
        double t0 = MPI_Wtime();
        if (node_barrier(s->comm) != 0) return FFN_ERR_STALLED; /* every rank's gradients written */
        for (size_t i = 0; i < s->planned && !s->sum_by_caller; i++) shared_sum(s, s->plan[2 * i], s->plan[2 * i + 1]);
        /* every sum written, every read done (the caller's barrier, when it sums) */
        if (!s->sum_by_caller && node_barrier(s->comm) != 0) return FFN_ERR_STALLED;
        s->planned = 0;
        s->wait_seconds += MPI_Wtime() - t0;
        return s->error;
    }
    if (s->deferred) {
        double t0 = MPI_Wtime();
        ffn_comm *c = s->comm;
        /* Every rank arrives first: through the node's slots when there are
         * (they name a rank that never does), else a polite barrier. */
        int rc = MPI_SUCCESS;
        if (c->slots) {
            if (node_barrier(c) != 0) return FFN_ERR_STALLED;
        } else {
            rc = arrive(c->world, c->stall_seconds);
            if (rc == WAIT_STALLED) return stalled(c, NULL, 0, 0);
        }
        for (size_t i = 0; rc == MPI_SUCCESS && i < s->planned; i++)
            rc = send_bucket_now(s, s->plan[2 * i], s->plan[2 * i + 1]);
        if (rc != MPI_SUCCESS && s->error == FFN_OK)
            s->error = mpi_error(rc, s->slice ? "gradient reduce-scatter" : "gradient allreduce");
        s->planned = 0;
        s->wait_seconds += MPI_Wtime() - t0;
        return s->error;
    }
    if (s->hier) {
        double t0 = MPI_Wtime();
        if (hierarchical_exchange(s) != 0) return FFN_ERR_STALLED;
        s->wait_seconds += MPI_Wtime() - t0;
        return s->error;
    }
    if (s->threaded) {
        double t0 = ffn_clock_seconds();
        flush_thread(s);
        s->wait_seconds += ffn_clock_seconds() - t0;
        return s->error;
    }
    wait_all(s);
    return s->error;
}

int ffn_grad_sync_streams(const ffn_grad_sync *s)
{
    return s->comm->size > 1 && !s->deferred && !s->hier && !s->slice; /* shm only ever when deferred */
}

ffn_status ffn_grad_sync_flush_sum(ffn_grad_sync *s, double *stats, size_t k)
{
    if (!ffn_grad_sync_streams(s)) return ffn_fail(FFN_ERR_ARG, "ffn_grad_sync_flush_sum: not a streamed exchange");
    const double t0 = ffn_clock_seconds();
    start_pending(s, 1);
    if (s->threaded) hand_back_mpi(s);
    /* Behind the buckets on the network: its time is the exchange's too. */
    ffn_status st = s->error != FFN_OK ? s->error : ffn_comm_sum_doubles(s->comm, stats, k);
    s->wait_seconds += ffn_clock_seconds() - t0;
    return st;
}

void ffn_grad_sync_progress(ffn_grad_sync *s)
{
    int done;
    /* Not retired here even when all are done: finish_each maps requests to ranges by position. */
    if (s->request_count) MPI_Testall((int)s->request_count, s->requests, &done, MPI_STATUSES_IGNORE);
}

ffn_status ffn_grad_sync_finish_each(ffn_grad_sync *s, ffn_grad_done_fn done, void *ctx)
{
    ffn_comm *c = s->comm;
    double t0 = MPI_Wtime(), waited = 0;
    int arrivals = c->stall_seconds > 0 && c->arrivals ? exchange_arrive(c) : 0;
    int rc = MPI_SUCCESS;
    waited += MPI_Wtime() - t0;
    /* The retired buckets first (complete already), then each in flight as it completes. */
    for (size_t i = 0; i < s->range_count && !s->ranges_lost; i++) {
        if (i >= s->retired) {
            t0 = MPI_Wtime();
            rc = polite_wait_for(1, &s->requests[i - s->retired], c->stall_seconds);
            waited += MPI_Wtime() - t0;
            if (rc != MPI_SUCCESS) break;
        }
        const size_t lo = s->ranges[2 * i], hi = s->ranges[2 * i + 1];
        if (s->wire) ffn_floats_from_bf16(s->grads + lo, s->wire + lo, hi - lo);
        if (done && s->error == FFN_OK) done(ctx, lo, hi);
    }
    t0 = MPI_Wtime();
    if (s->ranges_lost && s->request_count) /* never expected: all of it, then [0, n) */
        rc = polite_wait_for((int)s->request_count, s->requests, c->stall_seconds);
    if (rc == MPI_SUCCESS && arrivals) rc = polite_wait_for(arrivals, c->arrivals, c->stall_seconds);
    waited += MPI_Wtime() - t0;
    if (rc == MPI_SUCCESS && s->ranges_lost) {
        if (s->wire) wire_unpack(s);
        if (done && s->error == FFN_OK) done(ctx, 0, s->n);
    }
    note_wait_result(s, rc);
    s->wait_seconds += waited;
    retire_all(s);
    s->wire_count = 0;
    return s->error;
}

ffn_status ffn_grad_sync_finish_sum(ffn_grad_sync *s, double *stats, size_t k)
{
    ffn_comm *c = s->comm;
    if (!s->shm || !c->slots || k > FFN_NODE_STATS_MAX) {
        ffn_status st = ffn_grad_sync_finish(s);
        return st != FFN_OK ? st : ffn_comm_sum_doubles(c, stats, k);
    }
    /* The sums ride on the exchange's first barrier: each rank's are in its
     * slot before it arrives, and are read (in rank order, the same bits on
     * every rank) before the second, after which a slot may change again. */
    start_pending(s, 1);
    double t0 = MPI_Wtime();
    memcpy(c->slots[c->local_rank]->stats, stats, k * sizeof *stats);
    if (node_barrier(c) != 0) return FFN_ERR_STALLED;
    for (size_t j = 0; j < k; j++) {
        double sum = 0;
        for (int q = 0; q < c->local_size; q++) sum += c->slots[q]->stats[j];
        stats[j] = sum;
    }
    /* The caller's node barrier after its sums is the second one: no slot or
     * segment changes before it. */
    if (s->sum_by_caller) {
        s->planned = 0;
        s->wait_seconds += MPI_Wtime() - t0;
        return s->error;
    }
    for (size_t i = 0; i < s->planned; i++) shared_sum(s, s->plan[2 * i], s->plan[2 * i + 1]);
    if (node_barrier(c) != 0) return FFN_ERR_STALLED;
    s->planned = 0;
    s->wait_seconds += MPI_Wtime() - t0;
    return s->error;
}

int ffn_grad_sync_leave_sum(ffn_grad_sync *s)
{
    s->sum_by_caller = s->slice && s->shm && s->comm->slots && s->comm->size > 1;
    return s->sum_by_caller;
}

const float *const *ffn_grad_sync_node_segments(const ffn_grad_sync *s, int *count)
{
    *count = s->shm ? s->comm->local_size : 0;
    return s->shm ? (const float *const *)s->shm->peers : NULL;
}

size_t ffn_grad_sync_piece_floats(const ffn_grad_sync *s)
{
    /* One node and the hierarchical exchange send in finish(): pieces would gain nothing. */
    if (s->comm->size == 1 || s->deferred || s->hier) return 0;
    return s->bucket_floats;
}

double ffn_grad_sync_wait_seconds(const ffn_grad_sync *s) { return s->wait_seconds; }

const char *ffn_grad_sync_method(const ffn_grad_sync *s)
{
    if (s->comm->size == 1) return "none (one rank)";
    if (s->sum_by_caller) return "shared-memory: each rank's optimizer sums its slice over the node's gradients";
    if (s->shm) return s->wire_local_only ? "shared-memory; --grad-dtype bf16 applies across nodes only" : "shared-memory";
    if (s->hier) {
        static _Thread_local char hier_text[160];
        snprintf(hier_text, sizeof hier_text,
                 "hierarchical: shared-memory within each node, MPI_Iallreduce, %s, across nodes%s, %d slices a "
                 "bucket; at finish",
                 allreduce_algorithm_names[s->comm->allreduce_algorithm], s->wire ? " in bf16" : "",
                 s->comm->local_size);
        return hier_text;
    }
    if (s->slice)
        return s->deferred ? "MPI_Reduce_scatter"
                           : s->threaded ? "MPI_Ireduce_scatter, progressed by an exchange thread during backward"
                                         : "MPI_Ireduce_scatter, progressed by the main thread";
    if (s->deferred) return "MPI_Allreduce";
    static _Thread_local char text[96];
    snprintf(text, sizeof text, "MPI_Iallreduce, %s, %s%s", allreduce_algorithm_names[s->comm->allreduce_algorithm],
             s->threaded ? "progressed by an exchange thread during backward" : "progressed by the main thread",
             s->wire ? ", gradients in bf16" : "");
    return text;
}
uint64_t ffn_grad_sync_bytes(const ffn_grad_sync *s) { return s->bytes; }
