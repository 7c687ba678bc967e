/* ffn — status codes and the per-thread error message.
 *
 * Library functions that can fail return ffn_status and leave a one-line message
 * (naming the file, field and expected value where there is one) for the caller,
 * who decides how to end. The library never exits or aborts. */
#ifndef FFN_STATUS_H
#define FFN_STATUS_H

#include <stddef.h>

typedef enum {
    FFN_OK = 0,
    FFN_ERR_ARG,      /* bad argument, flag or spec */
    FFN_ERR_NOMEM,    /* allocation failed or size overflowed */
    FFN_ERR_IO,       /* open/read/write failed */
    FFN_ERR_FORMAT,   /* file content does not match the expected layout */
    FFN_ERR_NUMERIC,  /* NaN/Inf where finite values are required */
    FFN_ERR_MPI,      /* a collective failed or another rank reported failure */
    FFN_ERR_STOPPED,  /* a signal asked the run to stop (not a failure) */
    FFN_ERR_STALLED   /* a rank did not reach a collective in time: the job cannot end collectively */
} ffn_status;

/* Sets the calling thread's message (printf-style) and returns code, so that
 * `return ffn_fail(FFN_ERR_ARG, "...")` reads naturally. */
ffn_status ffn_fail(ffn_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The last message set on this thread ("" when none). */
const char *ffn_last_error(void);
void ffn_clear_error(void);
const char *ffn_status_name(ffn_status code);

/* Overflow-checked size arithmetic for sizes that come from files or flags.
 * Return 0 and set *out on success, -1 on overflow. */
int ffn_size_mul(size_t a, size_t b, size_t *out);
int ffn_size_add(size_t a, size_t b, size_t *out);

#endif
