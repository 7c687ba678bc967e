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

/* Page-mapped buffers (the model's flat parameter, gradient and bf16 buffers):
 * zeroed and page-aligned, and a range of their pages can be handed back to
 * the system while the addresses stay valid, so a rank that owns a slice of a
 * buffer (--shard params) keeps one flat index space but pays memory only for
 * the pages it touches. NULL on failure (with ffn_last_error set). Free with
 * ffn_free_pages and the same byte count. */
void *ffn_alloc_pages(size_t bytes);
void ffn_free_pages(void *p, size_t bytes);
/* The whole pages inside [p, p + bytes) are handed back: they take no memory
 * and read as zeros until written again. The partial pages at either end are
 * left as they are. */
void ffn_pages_release(void *p, size_t bytes);
/* The system's page size in bytes. */
size_t ffn_page_size(void);
/* The whole pages inside bytes [lo, hi) of a page-aligned buffer, as byte
 * offsets [*first, *end) (*first == *end: none). */
void ffn_pages_within(size_t lo, size_t hi, size_t *first, size_t *end);

#endif
