/* ffn — aligned, zeroed allocation of the flat float buffers. */
#ifndef FFN_MEM_H
#define FFN_MEM_H

#include <stddef.h>

#define FFN_ALIGN 64

/* Zeroed, 64-byte aligned; count*size checked for overflow. NULL on failure
 * (with ffn_last_error set). Free with ffn_free. */
void *ffn_alloc(size_t count, size_t size);
float *ffn_alloc_floats(size_t count);
void ffn_free(void *p);

#endif
