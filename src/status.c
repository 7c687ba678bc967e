/* ffn — per-thread error message and overflow-checked size arithmetic. */
#include "ffn/status.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_message[1024];

ffn_status ffn_fail(ffn_status code, const char *fmt, ...)
{
    /* Format aside first: callers often wrap the previous message
     * (ffn_fail(st, "--model: %s", ffn_last_error())). */
    char text[sizeof last_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    memcpy(last_message, text, sizeof text);
    return code;
}

const char *ffn_last_error(void) { return last_message; }

void ffn_clear_error(void) { last_message[0] = '\0'; }

const char *ffn_status_name(ffn_status code)
{
    switch (code) {
    case FFN_OK: return "ok";
    case FFN_ERR_ARG: return "bad argument";
    case FFN_ERR_NOMEM: return "out of memory";
    case FFN_ERR_IO: return "i/o error";
    case FFN_ERR_FORMAT: return "bad file format";
    case FFN_ERR_NUMERIC: return "non-finite value";
    case FFN_ERR_MPI: return "mpi error";
    case FFN_ERR_STOPPED: return "stopped by signal";
    case FFN_ERR_STALLED: return "a rank stalled";
    }
    return "unknown status";
}

int ffn_size_mul(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}

int ffn_size_add(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a) return -1;
    *out = a + b;
    return 0;
}
