/* Fuzz targets: decoding the fuzzer's bytes into choices.
 *
 * Every read past the end yields zeros, so any input, however short, decodes
 * into one well-defined sequence of choices (and a longer input refines it). */
#ifndef FFN_FUZZ_INPUT_H
#define FFN_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t n;
} fz_input;

static inline uint8_t fz_u8(fz_input *in)
{
    if (in->n == 0) return 0;
    in->n--;
    return *in->p++;
}

static inline uint32_t fz_u32(fz_input *in)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = v << 8 | fz_u8(in);
    return v;
}

static inline uint64_t fz_u64(fz_input *in)
{
    uint64_t hi = fz_u32(in);
    return hi << 32 | fz_u32(in);
}

/* A value in [0, n) (n > 0). */
static inline size_t fz_pick(fz_input *in, size_t n)
{
    return n <= 256 ? fz_u8(in) % n : fz_u32(in) % n;
}

/* Copies up to cap - 1 bytes (length from the input) and terminates them. */
static inline size_t fz_text(fz_input *in, char *buf, size_t cap)
{
    size_t len = fz_u8(in);
    if (len > in->n) len = in->n;
    if (len > cap - 1) len = cap - 1;
    memcpy(buf, in->p, len);
    buf[len] = '\0';
    in->p += len;
    in->n -= len;
    return len;
}

#endif
