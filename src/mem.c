/* ffn — aligned, zeroed allocation. */
#define _DEFAULT_SOURCE /* mmap MAP_ANONYMOUS, madvise */
#include "ffn/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ffn/status.h"

void *ffn_alloc(size_t count, size_t size)
{
    size_t bytes;
    if (ffn_size_mul(count, size, &bytes) != 0) {
        ffn_fail(FFN_ERR_NOMEM, "allocation of %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    /* aligned_alloc needs a size that is a multiple of the alignment. */
    size_t rounded;
    if (ffn_size_add(bytes, FFN_ALIGN - 1, &rounded) != 0) {
        ffn_fail(FFN_ERR_NOMEM, "allocation of %zu bytes overflows", bytes);
        return NULL;
    }
    rounded = rounded / FFN_ALIGN * FFN_ALIGN;
    if (rounded == 0) rounded = FFN_ALIGN;
    void *p = aligned_alloc(FFN_ALIGN, rounded);
    if (!p) {
        ffn_fail(FFN_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    memset(p, 0, rounded);
    return p;
}

float *ffn_alloc_floats(size_t count) { return ffn_alloc(count, sizeof(float)); }

void ffn_free(void *p) { free(p); }

size_t ffn_page_size(void)
{
    long page = sysconf(_SC_PAGESIZE);
    return page > 0 ? (size_t)page : 4096;
}

void *ffn_alloc_pages(size_t bytes)
{
    /* Anonymous private pages: zeroed by the system, taken only when touched. */
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        ffn_fail(FFN_ERR_NOMEM, "out of memory mapping %zu bytes", bytes);
        return NULL;
    }
    return p;
}

void ffn_free_pages(void *p, size_t bytes)
{
    if (p) munmap(p, bytes ? bytes : 1);
}

void ffn_pages_within(size_t lo, size_t hi, size_t *first, size_t *end)
{
    const size_t page = ffn_page_size();
    *first = lo / page * page + (lo % page ? page : 0);
    *end = hi / page * page;
    if (*end < *first) *end = *first;
}

void ffn_pages_release(void *p, size_t bytes)
{
    const uintptr_t page = ffn_page_size();
    uintptr_t lo = ((uintptr_t)p + page - 1) / page * page, hi = ((uintptr_t)p + bytes) / page * page;
    /* MADV_DONTNEED on private anonymous pages: freed now, zero-filled on the next touch. */
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}
