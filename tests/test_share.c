/* Tests for ffn_model_share_frozen (ffn/share.h), alone (nothing happens)
 * and under mpiexec -n 2 on one node (tests/e2e_share_frozen.sh): the values
 * stay bitwise, the fixed runs' whole pages are one read-only shared mapping
 * of an unlinked /dev/shm object, a write there faults instead of reaching the
 * other rank, trainable tensors stay private and writable, and forward gives
 * the same outputs. */
#define _GNU_SOURCE /* sigsetjmp */
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/comm.h"
#include "ffn/mem.h"
#include "ffn/model.h"
#include "ffn/share.h"
#include "check.h"

static sigjmp_buf fault_jump;

static void on_fault(int sig)
{
    (void)sig;
    siglongjmp(fault_jump, 1);
}

/* Whether writing *p faults (the value is written back unchanged otherwise). */
static int write_faults(volatile float *p)
{
    struct sigaction sa = {.sa_handler = on_fault}, old_segv, old_bus;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    int faulted = 1;
    if (sigsetjmp(fault_jump, 1) == 0) {
        *p = *p;
        faulted = 0;
    }
    sigaction(SIGSEGV, &old_segv, NULL);
    sigaction(SIGBUS, &old_bus, NULL);
    return faulted;
}

/* The /proc/self/maps line of the mapping holding addr (into line), or 0. */
static int mapping_of(const void *addr, char *line, size_t cap)
{
    FILE *f = fopen("/proc/self/maps", "r");
    int found = 0;
    while (f && !found && fgets(line, (int)cap, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)addr >= lo && (uintptr_t)addr < hi) found = 1;
    }
    if (f) fclose(f);
    return found;
}

static void first_run(void *user, size_t offset, size_t count)
{
    size_t *run = user;
    if (run[1]) return;
    run[0] = offset;
    run[1] = count;
}

static void test_share(ffn_comm *comm)
{
    /* An adapted layer (W, b fixed), a frozen one, a head that trains. */
    ffn_model *m = NULL;
    CHECK(ffn_model_create_from_text(&m, "dense:300:relu:lora=2,dense:300:tanh,dense:3", 200) == FFN_OK);
    if (!m) return;
    ffn_model_init_params(m, 11);
    ffn_model_set_frozen(m, 1, 1);
    const size_t n = ffn_model_param_count(m), rows = 4;
    float *before = malloc(n * sizeof *before), *x = malloc(rows * 200 * sizeof *x), *y0 = malloc(rows * 3 * sizeof *y0);
    CHECK(before && x && y0 && ffn_model_reserve(m, rows) == FFN_OK);
    for (size_t i = 0; i < rows * 200; i++) x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    memcpy(before, ffn_model_params_const(m), n * sizeof *before);
    memcpy(y0, ffn_model_forward(m, x, rows), rows * 3 * sizeof *y0);

    ffn_share_info info;
    CHECK(ffn_model_share_frozen(m, comm, &info) == FFN_OK);
    const int local = ffn_comm_local_size(comm);
    CHECK(memcmp(before, ffn_model_params_const(m), n * sizeof *before) == 0);
    CHECK(memcmp(y0, ffn_model_forward(m, x, rows), rows * 3 * sizeof *y0) == 0);
    /* Fixed: layer 0's W [300, 200] and b, then layer 1 (the adapters between them train). */
    CHECK(info.fixed_bytes == 4 * (uint64_t)(300 * 200 + 300 + 300 * 300 + 300));
    size_t run[2] = {0, 0};
    ffn_model_fixed_runs(m, first_run, run);
    size_t first, end;
    ffn_pages_within(run[0] * 4, (run[0] + run[1]) * 4, &first, &end);
    CHECK(end > first);
    float *page = (float *)((char *)ffn_model_params_const(m) + first);
    char line[512] = "";
    CHECK(mapping_of(page, line, sizeof line));
    const ffn_tensor *head = ffn_model_find_tensor(m, 2, "W");
    if (local > 1) {
        CHECK_MSG(info.ranks == ffn_comm_size(comm) && info.nodes == 1 && info.mapped_bytes > 0,
                  "ranks %d nodes %d mapped %llu (%s)", info.ranks, info.nodes,
                  (unsigned long long)info.mapped_bytes, info.why_not);
        /* One read-only shared view of the object, already unlinked. */
        CHECK_MSG(strstr(line, " r--s ") && strstr(line, "/dev/shm/ffn-frozen-") && strstr(line, "(deleted)"), "%s",
                  line);
        CHECK(write_faults(page));
        CHECK(page[0] == before[first / 4]);
    } else {
        CHECK(info.ranks == 0 && info.mapped_bytes == 0);
        CHECK_MSG(strstr(line, " rw-p "), "%s", line);
        CHECK(!write_faults(page));
    }
    /* Trainable tensors stay private and writable. */
    CHECK(head && !write_faults(head->data));
    CHECK(mapping_of(head->data, line, sizeof line) && strstr(line, " rw-p "));
    ffn_comm_barrier(comm);
    ffn_model_free(m); /* unmaps the views with the buffer */
    free(before);
    free(x);
    free(y0);
}

int main(int argc, char **argv)
{
    ffn_comm *comm;
    if (ffn_comm_init(&comm, &argc, &argv) != FFN_OK) {
        fprintf(stderr, "test_share: %s\n", ffn_last_error());
        return 1;
    }
    test_share(comm);
    char name[32];
    snprintf(name, sizeof name, "test_share rank %d", ffn_comm_rank(comm));
    int rc = check_done(name);
    ffn_comm_finalize(comm);
    return rc;
}
