/* ffn — fixed tensors held once per node.
 *
 * Under --lora or --freeze the fixed tensors (ffn_model_fixed_runs) never
 * change once training starts, yet every rank of a node held its own copy.
 * ffn_model_share_frozen keeps the addresses (everything indexes the flat
 * parameter buffer) and replaces the pages: the node's first rank copies the
 * whole pages of each run of fixed tensors into one POSIX shared-memory
 * object, and every rank of the node maps them over its own buffer with
 * MAP_SHARED | MAP_FIXED, read-only (a stray write faults instead of changing
 * the other ranks' weights). The partial pages at a run's ends stay private
 * (their values are the same anyway). With --precision bf16 the fixed weights'
 * bf16 copy is shared the same way. The object's name is unlinked once every
 * rank mapped it, so nothing is left in /dev/shm; freeing the model's buffers
 * unmaps the views. */
#ifndef FFN_SHARE_H
#define FFN_SHARE_H

#include <stddef.h>
#include <stdint.h>
#include "ffn/comm.h"
#include "ffn/model.h"

typedef struct {
    uint64_t fixed_bytes;  /* the fixed tensors' parameters (4 B each) */
    uint64_t mapped_bytes; /* this rank's bytes mapped from its node's object (parameters and bf16 copy) */
    int ranks;             /* the job's ranks that mapped their node's object (0: nothing shared) */
    int nodes;             /* the nodes whose ranks share one (each node has its own object) */
    char why_not[256];     /* this node shares nothing although something is fixed: why ("" otherwise) */
} ffn_share_info;

/* Collective (every rank of the job; call it once the parameters are final:
 * initialised or loaded, broadcast, frozen flags set, nothing left that writes
 * a fixed tensor). Nothing happens with one rank on a node, nothing fixed, or
 * FFN_SHARE_FROZEN=0. A node whose object cannot be made (e.g. /dev/shm too
 * small) keeps private copies, said in why_not; an error only where a mapping
 * failed half-way (the run cannot go on safely). */
ffn_status ffn_model_share_frozen(ffn_model *m, ffn_comm *c, ffn_share_info *info);

/* Whether the environment allows sharing (FFN_SHARE_FROZEN unset or not 0). */
int ffn_share_enabled(void);

/* The bytes a rank maps from its node's object for the run [offset, offset +
 * count) of a page-aligned buffer of elem bytes per parameter (4: the
 * parameters, 2: the bf16 copy): its whole pages. */
uint64_t ffn_share_run_bytes(size_t offset, size_t count, size_t elem);

#endif
