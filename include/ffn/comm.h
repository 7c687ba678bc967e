/* ffn — everything that crosses ranks: MPI setup, broadcast of the initial
 * parameters, the gradient allreduce, metric reductions and collective error
 * agreement. Nothing else in ffn calls MPI. */
#ifndef FFN_COMM_H
#define FFN_COMM_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/status.h"

typedef struct ffn_comm ffn_comm;

/* MPI_Init_thread (SERIALIZED: the main thread calls MPI, except that across
 * nodes the gradient exchange's own thread makes the buckets' calls between
 * ffn_grad_sync_begin and finish, when the main thread makes none; the data
 * prefetch thread touches HDF5 only), or wraps an MPI already initialised
 * (below SERIALIZED the exchange runs without its thread). Works without
 * mpirun (a singleton run is one rank). */
ffn_status ffn_comm_init(ffn_comm **out, int *argc, char ***argv);
/* Frees and finalises MPI if ffn_comm_init initialised it. */
void ffn_comm_finalize(ffn_comm *c);
/* Ends every rank at once (MPI_Abort): only for tools, on the error path
 * where ranks may not reach the same collective. */
void ffn_comm_abort(ffn_comm *c, int code);

int ffn_comm_rank(const ffn_comm *c);
int ffn_comm_size(const ffn_comm *c);
/* Whether MPI lets one thread other than the main one make this rank's calls
 * (MPI_THREAD_SERIALIZED provided), one at a time. */
int ffn_comm_threads_serialized(const ffn_comm *c);
/* Ranks sharing this node (MPI_Comm_split_type SHARED) and this rank's place among them. */
int ffn_comm_local_rank(const ffn_comm *c);
int ffn_comm_local_size(const ffn_comm *c);
/* Threads for each rank's products by default: the node's cores shared among
 * its ranks, never more than the CPUs this rank may run on (at least 1). */
int ffn_comm_default_threads(const ffn_comm *c);

/* Stall detection: a rank that has not reached the gradient exchange after
 * `seconds` (0: wait forever) makes the exchange return FFN_ERR_STALLED on
 * the ranks that did, with a message naming the missing rank(s) and the step
 * on one of them (the lowest that arrived; the others get an empty message).
 * The job cannot end collectively then: the tool ends it (ffn_comm_abort).
 * On one node the ranks are named from the node's shared slots; across
 * nodes each rank tells rank 0 of its arrival, and rank 0 tells every rank
 * (two small messages a rank a step, only while detection is on). */
void ffn_comm_set_stall_timeout(ffn_comm *c, double seconds);

/* Collective: every rank passes its own status. Returns FFN_OK if all
 * succeeded; otherwise every rank returns the status of the lowest failing
 * rank, with that rank's message as ffn_last_error() (so rank 0 can print
 * the one message). */
ffn_status ffn_comm_agree(ffn_comm *c, ffn_status local);

void ffn_comm_barrier(ffn_comm *c);
ffn_status ffn_comm_bcast_floats(ffn_comm *c, float *buf, size_t n, int root);
/* Collective over this rank's node only: the node's first rank (local rank 0)
 * sends buf [n] (a few bytes: a name) to the others of its node. */
ffn_status ffn_comm_node_bcast_bytes(ffn_comm *c, void *buf, size_t n);
ffn_status ffn_comm_bcast_bytes(ffn_comm *c, void *buf, size_t n, int root);
/* In-place sums, split into calls of at most bucket_bytes. */
ffn_status ffn_comm_sum_floats(ffn_comm *c, float *buf, size_t n);
ffn_status ffn_comm_sum_doubles(ffn_comm *c, double *buf, size_t n);
ffn_status ffn_comm_max_u64(ffn_comm *c, uint64_t *buf, size_t n);
/* All ranks' value of x gathered on every rank (out has size() entries). */
ffn_status ffn_comm_allgather_u64(ffn_comm *c, uint64_t x, uint64_t *out);

/* ---- ZeRO stage 1: the parameter buffer [0, n) is cut into size()
 * contiguous slices, rank r owning [n*r/R, n*(r+1)/R). Each rank keeps the
 * optimizer state of its slice only, receives the summed gradients of its
 * slice (reduce-scatter, see ffn_grad_sync_create_sharded), updates that
 * slice of the parameters, and the slices are then all-gathered. */
void ffn_comm_slice(const ffn_comm *c, size_t n, int rank, size_t *lo, size_t *hi);
/* buf [n] on every rank holds its own slice up to date within [from, to);
 * afterwards every rank holds all of [from, to) (the rest of buf is not
 * touched: ranges that did not change need not travel). In place, in calls of
 * at most bucket_bytes (MPI_Allgatherv). */
ffn_status ffn_comm_allgather_slices(ffn_comm *c, float *buf, size_t n, size_t from, size_t to,
                                     size_t bucket_bytes);
/* Rank root receives into full [n] every rank's slice [hi - lo] (others pass
 * full = NULL); in calls of at most bucket_bytes (MPI_Gatherv). */
ffn_status ffn_comm_gather_slices(ffn_comm *c, const float *slice, float *full, size_t n, int root,
                                  size_t bucket_bytes);

/* Rank root receives into out [to - from] the part of [from, to) each rank
 * holds in its slice [hi - lo] of a buffer of n (others pass out = NULL). */
ffn_status ffn_comm_gather_range(ffn_comm *c, const float *slice, size_t n, size_t from, size_t to, float *out,
                                 int root, size_t bucket_bytes);
/* range [to - from]: elements [from, to) of a buffer of n, summed over the
 * ranks; afterwards each rank's own slice of it (ffn_comm_slice) holds the
 * sum, the rest is left as it was. tmp holds at least min(bucket_bytes, slice)
 * floats. In calls of at most bucket_bytes (MPI_Reduce_scatter). */
ffn_status ffn_comm_reduce_scatter_range(ffn_comm *c, float *range, size_t n, size_t from, size_t to, float *tmp,
                                         size_t bucket_bytes);

/* Collective, one node only (else NULL on every rank): n floats in one
 * node-shared window, laid out so that rank r's segment is its slice
 * ffn_comm_slice(n, r): the node holds the buffer once, each rank writes its
 * slice and reads all of it. Returns the start of the whole buffer. Zeroed;
 * freed by ffn_comm_finalize. */
float *ffn_comm_alloc_node_slices(ffn_comm *c, size_t n);
/* The same for n 16-bit values (a bf16 copy laid out as the parameters). */
uint16_t *ffn_comm_alloc_node_slices_u16(ffn_comm *c, size_t n);
/* Collective over the node: a barrier through shared memory (after a node-shared
 * allocation); everything written before it is visible after it. */
ffn_status ffn_comm_node_sync(ffn_comm *c);
/* One node: range [to - from], elements [from, to) of a buffer of n, summed over the ranks; this rank's slice
 * (ffn_comm_slice) of it written (add 0) or added (add 1) to slice [hi - lo],
 * through scratch, a buffer from ffn_comm_alloc_shared_floats: in place when
 * range lies in this rank's segment of it (every rank's at the same place of
 * its own: no copy), else copied through the segment in chunks of its length. */
ffn_status ffn_comm_reduce_scatter_shared(ffn_comm *c, float *scratch, const float *range, size_t n, size_t from,
                                          size_t to, float *slice, int add);

/* Collective: rank root receives every rank's send [n] (n may differ between
 * ranks; below 2^31) concatenated in rank order into recv (others pass NULL). */
ffn_status ffn_comm_gather_floats(ffn_comm *c, const float *send, size_t n, float *recv, int root);

/* Collective. n floats in node-shared memory (an MPI-3 shared window): every
 * rank of the node can read and write every rank's buffer. Meant for the
 * gradient buffer (ffn_model_use_grad_buffer): a gradient sync created on it
 * sums the ranks' gradients in place, each rank adding up its share once and
 * writing the sums to all, several times faster than MPI_Allreduce through
 * Open MPI's shared-memory FIFOs. Zeroed, 64-byte aligned, freed by
 * ffn_comm_finalize. Across nodes only when every node holds the same number
 * (> 1) of ranks (then the exchange is hierarchical: each node sums in its
 * window, local rank j all-reduces slice j of each bucket with the other
 * nodes' rank j, and the sums come back through the window; not for the
 * sharded variant; FFN_EXCHANGE_HIERARCHY=0 keeps the flat exchange). NULL
 * (nothing allocated, on every rank) with one rank, with one rank a node on
 * several nodes, or when the window cannot be made: keep the ordinary
 * buffer then. */
float *ffn_comm_alloc_shared_floats(ffn_comm *c, size_t n);

/* Gradient exchange in contiguous buckets. Backward reports gradient ranges
 * as they become final (from the end of the buffer towards the start); they
 * are cut into buckets of bucket_bytes. Ranges never reported (frozen layers)
 * are never sent. Across nodes a bucket's MPI_Iallreduce starts as soon as it
 * is full, while backward runs, on the exchange thread, which also progresses
 * the buckets in flight while backward computes (FFN_EXCHANGE_THREAD=0: they
 * start on the calling thread and progress only in its MPI calls), and
 * finish() waits for them all. Within one
 * node finish() sends them: every rank first arrives (waiting politely, see
 * comm.c), then the buckets are summed in place when grads is a node-shared
 * buffer (ffn_comm_alloc_shared_floats), or all-reduced blocking otherwise;
 * starting them earlier overlaps nothing there, since Open MPI moves
 * shared-memory data only inside MPI calls and backward's sgemm makes none. */
typedef struct ffn_grad_sync ffn_grad_sync;
ffn_status ffn_grad_sync_create(ffn_grad_sync **out, ffn_comm *c, float *grads, size_t n,
                                size_t bucket_bytes);
/* The sharded (ZeRO) variant: each bucket is reduce-scattered
 * (MPI_Ireduce_scatter) instead of all-reduced, and finish() leaves the summed
 * gradients of this rank's slice (ffn_comm_slice) in slice [hi - lo]; grads
 * then holds only this rank's own contribution. */
ffn_status ffn_grad_sync_create_sharded(ffn_grad_sync **out, ffn_comm *c, float *grads, size_t n,
                                        size_t bucket_bytes, float *slice);
/* Points the exchange at another gradient buffer of the same length (after
 * ffn_model_use_grad_buffer moved the gradients, e.g. into shared memory). */
void ffn_grad_sync_use_buffer(ffn_grad_sync *s, float *grads);
/* The sharded exchange on one node, gradients node-shared: finish_sum()
 * only waits until every rank's gradients are written (and sums the stats);
 * the caller sums its slice over the node's segments itself
 * (ffn_grad_sync_node_segments, in rank order), e.g. inside the optimizer's
 * pass, then passes a node barrier (ffn_comm_node_sync) before any rank
 * writes gradients again. Returns 1 when that is how this exchange runs, 0
 * when it cannot (across nodes, not sharded, no shared memory): unchanged. */
int ffn_grad_sync_leave_sum(ffn_grad_sync *s);
/* The node's gradient segments, [count] (local rank order), or NULL. */
const float *const *ffn_grad_sync_node_segments(const ffn_grad_sync *s, int *count);
/* --grad-dtype bf16: across nodes the buckets are converted to bf16, all-reduced
 * and summed in bf16 (half the bytes on the network, each partial sum rounded
 * to bf16) and converted back; within one node nothing changes (the sum runs
 * in shared memory). Refused with the sharded (reduce-scatter) exchange. */
ffn_status ffn_grad_sync_set_wire_bf16(ffn_grad_sync *s);
void ffn_grad_sync_free(ffn_grad_sync *s);
/* Starts the exchange of optimizer step `step` (named in stall messages). */
void ffn_grad_sync_begin(ffn_grad_sync *s, uint64_t step);
/* The ffn_grad_ready_fn of ffn_model_backward (user = the ffn_grad_sync). */
void ffn_grad_sync_ready(void *sync, size_t offset, size_t count);
ffn_status ffn_grad_sync_finish(ffn_grad_sync *s);
/* finish(), and stats[0..k) summed over the ranks as ffn_comm_sum_doubles
 * would: with a node-shared gradient buffer the sums travel with the
 * exchange (no collective of their own, one rendezvous less a step). */
ffn_status ffn_grad_sync_finish_sum(ffn_grad_sync *s, double *stats, size_t k);
/* Across nodes on the flat all-reduce (not sharded, not hierarchical),
 * finish can hand each bucket over as soon as its sums are in, so that the
 * caller's work on it (the optimizer's update) runs while later buckets are
 * still on the network: flush_sum() starts every bucket still pending and
 * sums stats[0..k) over the ranks (ffn_comm_sum_doubles: the step's
 * statistics, which say whether to update at all), and finish_each()
 * completes the buckets in the order they started, calling done(ctx, lo,
 * hi) on each complete range of the gradients; done may call progress()
 * between pieces of its work so that the buckets behind keep moving. done
 * NULL: finish_each just completes the exchange (e.g. when the step fails).
 * The wait counts the time blocked in both, not the time in done. streams()
 * says whether this exchange can run so; flush_sum() refuses otherwise. */
typedef void (*ffn_grad_done_fn)(void *ctx, size_t lo, size_t hi);
int ffn_grad_sync_streams(const ffn_grad_sync *s);
ffn_status ffn_grad_sync_flush_sum(ffn_grad_sync *s, double *stats, size_t k);
ffn_status ffn_grad_sync_finish_each(ffn_grad_sync *s, ffn_grad_done_fn done, void *ctx);
void ffn_grad_sync_progress(ffn_grad_sync *s);
/* How the sums travel: "shared-memory", "MPI_Allreduce" (one node, blocking
 * in finish), "MPI_Iallreduce, ALGORITHM, progressed by ..." (across nodes,
 * started during backward; by the exchange thread or the main thread), the
 * reduce-scatter variants when sharded, or "none (one rank)". */
const char *ffn_grad_sync_method(const ffn_grad_sync *s);
/* How finely backward should hand over a large weight's gradients
 * (ffn_model_set_grad_piece): a bucket's floats where the exchange sends
 * while backward computes (across nodes, not hierarchical), else 0. On the
 * 1024-4096-4096-1024 FFN at 10 Gbit/s (launch/bench-netns.sh --overlap) the
 * mean gradient wait fell from 45 to 33 ms with the exchange thread and from
 * 98 to 46 ms without it (4 runs each, alternating); pieces of two buckets
 * hid less than pieces of one. */
size_t ffn_grad_sync_piece_floats(const ffn_grad_sync *s);
/* Seconds spent blocked in finish() and the bytes sent, since creation. */
double ffn_grad_sync_wait_seconds(const ffn_grad_sync *s);
uint64_t ffn_grad_sync_bytes(const ffn_grad_sync *s);

#define FFN_DEFAULT_BUCKET_BYTES (4u << 20)

#endif
