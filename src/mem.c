/* ffn — aligned, zeroed allocation. */
#include "ffn/mem.h"

#include <stdlib.h>
#include <string.h>

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
