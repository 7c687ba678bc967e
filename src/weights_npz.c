/* ffn — .npz weights: a zip archive of .npy arrays, as numpy.savez (stored)
 * and numpy.savez_compressed (deflated) write them.
 *
 * Reading goes by the central directory (zip64 sizes and offsets included)
 * and checks every entry's CRC-32. Each entry NAME.npy is an array named NAME:
 * a version 1-3 .npy header whose dict gives 'descr' ('<f4'; '|u1' for the
 * __ffn_spec__ entry), 'fortran_order' (False) and 'shape', then the data.
 * Writing stores the entries uncompressed (version 1.0 headers padded to 64
 * bytes, as numpy does), without zip64: a model over 4 GiB is refused. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "weights_format.h"

#define SPEC_ENTRY "__ffn_spec__"

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const unsigned char *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

/* ---- .npy ---------------------------------------------------------------- */

/* The value after 'key': in the header dict text (NULL when absent). */
static const char *dict_value(const char *dict, const char *key)
{
    char quoted[32];
    snprintf(quoted, sizeof quoted, "'%s'", key);
    const char *at = strstr(dict, quoted);
    if (!at) return NULL;
    at += strlen(quoted);
    while (*at == ' ') at++;
    if (*at != ':') return NULL;
    at++;
    while (*at == ' ') at++;
    return at;
}

/* Parses the .npy bytes [p, p + n) of entry name into a (its bytes point into p). */
static ffn_status parse_npy(const unsigned char *p, size_t n, const char *path, const char *name,
                            ffn_weights_array *a, int *is_bytes)
{
    if (n < 10 || memcmp(p, "\x93NUMPY", 6) != 0)
        return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s.npy: not a .npy array (no \\x93NUMPY magic)", path, name);
    int major = p[6];
    size_t hlen, start;
    if (major == 1) {
        hlen = le16(p + 8);
        start = 10;
    } else if (major == 2 || major == 3) {
        if (n < 12) return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s.npy: truncated header", path, name);
        hlen = le32(p + 8);
        start = 12;
    } else {
        return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s.npy: .npy version %d, expected 1, 2 or 3", path, name, major);
    }
    if (hlen > n - start || hlen > 65536)
        return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s.npy: header of %zu bytes runs past the entry's %zu bytes",
                        path, name, hlen, n);
    char dict[65537];
    memcpy(dict, p + start, hlen);
    dict[hlen] = 0;
    const char *descr = dict_value(dict, "descr"), *fortran = dict_value(dict, "fortran_order"),
               *shape = dict_value(dict, "shape");
    if (!descr || !fortran || !shape || *shape != '(')
        return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s.npy: header lacks 'descr', 'fortran_order' or 'shape'", path,
                        name);
    *is_bytes = strncmp(descr, "'|u1'", 5) == 0;
    if (!*is_bytes && strncmp(descr, "'<f4'", 5) != 0) {
        char got[24] = {0};
        sscanf(descr, "%23[^,}]", got);
        return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s.npy: dtype %s, expected float32 ('<f4'; convert with "
                        ".astype(numpy.float32))", path, name, got);
    }
    if (strncmp(fortran, "False", 5) != 0)
        return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s.npy: fortran_order is not False, expected C order "
                        "(numpy.ascontiguousarray)", path, name);
    a->ndim = 0;
    a->count = 1;
    const char *s = shape + 1;
    for (;;) {
        while (*s == ' ' || *s == ',') s++;
        if (*s == ')') break;
        char *end;
        unsigned long long d = strtoull(s, &end, 10);
        if (end == s || a->ndim == FFN_WEIGHTS_MAX_DIMS || d > ((size_t)1 << 40))
            return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s.npy: shape %.40s is not a tuple of at most %d sizes", path,
                            name, shape, FFN_WEIGHTS_MAX_DIMS);
        a->shape[a->ndim++] = (size_t)d;
        if (d && a->count > SIZE_MAX / d)
            return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s.npy: shape overflows", path, name);
        a->count *= (size_t)d;
        s = end;
    }
    size_t item = *is_bytes ? 1 : 4, data = start + hlen;
    if (a->count > (SIZE_MAX - data) / item || data + a->count * item != n)
        return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s.npy: holds %zu data bytes, expected %zu for its shape "
                        "(truncated?)", path, name, n - data, a->count * item);
    a->bytes = p + data;
    return FFN_OK;
}

/* ---- zip reading ------------------------------------------------------------ */

typedef struct {
    uint64_t csize, usize, local;
    uint32_t crc;
    int method;
} zip_entry;

/* The zip64 extended information of a central entry, for the fields set to their maximum. */
static void read_zip64_extra(const unsigned char *x, size_t n, zip_entry *e, int need_u, int need_c, int need_o)
{
    while (n >= 4) {
        size_t id = le16(x), len = le16(x + 2);
        if (len > n - 4) return;
        if (id == 1) {
            const unsigned char *v = x + 4, *end = x + 4 + len;
            if (need_u && v + 8 <= end) e->usize = le64(v), v += 8;
            if (need_c && v + 8 <= end) e->csize = le64(v), v += 8;
            if (need_o && v + 8 <= end) e->local = le64(v);
            return;
        }
        x += 4 + len;
        n -= 4 + len;
    }
}

static ffn_status inflate_entry(const unsigned char *src, size_t n, size_t usize, unsigned char *dst, const char *path,
                                const char *name)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return ffn_fail(FFN_ERR_NOMEM, "%s: cannot start zlib", path);
    ffn_status st = FFN_OK;
    size_t in_done = 0, out_done = 0;
    int rc = Z_OK;
    while (rc == Z_OK) { /* in steps that fit zlib's 32-bit counters */
        z.next_in = (unsigned char *)src + in_done;
        z.avail_in = (uInt)(n - in_done > (1u << 30) ? (1u << 30) : n - in_done);
        z.next_out = dst + out_done;
        z.avail_out = (uInt)(usize - out_done > (1u << 30) ? (1u << 30) : usize - out_done);
        size_t ai = z.avail_in, ao = z.avail_out;
        rc = inflate(&z, Z_NO_FLUSH);
        in_done += ai - z.avail_in;
        out_done += ao - z.avail_out;
        if (rc == Z_OK && ai == z.avail_in && ao == z.avail_out) break;
    }
    if (rc != Z_STREAM_END || out_done != usize)
        st = ffn_fail(FFN_ERR_FORMAT, "%s: entry %s: the deflated data is corrupt or truncated", path, name);
    inflateEnd(&z);
    return st;
}

ffn_status ffn_npz_read(const char *path, ffn_weights_file *w)
{
    ffn_status st = ffn_weights_read_contents(w, path);
    if (st != FFN_OK) return st;
    const unsigned char *f = w->contents;
    size_t size = w->size, eocd = SIZE_MAX;
    for (size_t back = 22; back <= size && back <= 22 + 65535; back++)
        if (le32(f + size - back) == 0x06054b50) {
            eocd = size - back;
            break;
        }
    if (eocd == SIZE_MAX)
        return ffn_fail(FFN_ERR_FORMAT, "%s: not a zip archive (no end of central directory; truncated?)", path);
    uint64_t entries = le16(f + eocd + 10), cd_size = le32(f + eocd + 12), cd_at = le32(f + eocd + 16);
    if ((entries == 0xFFFF || cd_size == 0xFFFFFFFF || cd_at == 0xFFFFFFFF) && eocd >= 20 &&
        le32(f + eocd - 20) == 0x07064b50) {
        uint64_t z64 = le64(f + eocd - 20 + 8);
        if (z64 > size - 56 || le32(f + z64) != 0x06064b50)
            return ffn_fail(FFN_ERR_FORMAT, "%s: the zip64 end of central directory is missing", path);
        entries = le64(f + z64 + 32);
        cd_size = le64(f + z64 + 40);
        cd_at = le64(f + z64 + 48);
    }
    if (cd_at > size || cd_size > size - cd_at)
        return ffn_fail(FFN_ERR_FORMAT, "%s: the zip central directory lies outside the file (truncated?)", path);
    size_t at = (size_t)cd_at, end = (size_t)(cd_at + cd_size);
    for (uint64_t i = 0; i < entries; i++) {
        if (at + 46 > end || le32(f + at) != 0x02014b50)
            return ffn_fail(FFN_ERR_FORMAT, "%s: zip central directory entry %llu is damaged", path,
                            (unsigned long long)i);
        zip_entry e = {.method = le16(f + at + 10), .crc = le32(f + at + 16), .csize = le32(f + at + 20),
                       .usize = le32(f + at + 24), .local = le32(f + at + 42)};
        size_t nlen = le16(f + at + 28), xlen = le16(f + at + 30), clen = le16(f + at + 32);
        if (at + 46 + nlen + xlen + clen > end)
            return ffn_fail(FFN_ERR_FORMAT, "%s: zip central directory entry %llu runs past the directory", path,
                            (unsigned long long)i);
        char name[512];
        if (nlen >= sizeof name) return ffn_fail(FFN_ERR_FORMAT, "%s: a zip entry name is over 511 bytes", path);
        memcpy(name, f + at + 46, nlen);
        name[nlen] = 0;
        read_zip64_extra(f + at + 46 + nlen, xlen, &e, e.usize == 0xFFFFFFFF, e.csize == 0xFFFFFFFF,
                         e.local == 0xFFFFFFFF);
        if (le16(f + at + 8) & 1) return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s is encrypted", path, name);
        at += 46 + nlen + xlen + clen;
        if (nlen < 5 || strcmp(name + nlen - 4, ".npy") != 0)
            return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s is not a .npy array (expected NAME.npy entries only)",
                            path, name);
        if (e.local > size - 30 || le32(f + e.local) != 0x04034b50)
            return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s: local header missing (truncated?)", path, name);
        uint64_t data = e.local + 30 + le16(f + e.local + 26) + le16(f + e.local + 28);
        if (data > size || e.csize > size - data)
            return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s: its %llu bytes run past the end of the file (truncated?)",
                            path, name, (unsigned long long)e.csize);
        if (e.method != 0 && e.method != 8)
            return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s: zip method %d, expected stored (0) or deflated (8)", path,
                            name, e.method);
        if (e.usize > FFN_WEIGHTS_MAX_FILE)
            return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s: %llu bytes uncompressed is too large", path, name,
                            (unsigned long long)e.usize);
        name[nlen - 4] = 0; /* the array's name */
        ffn_weights_array *a = ffn_weights_file_add(w, name);
        if (!a) return ffn_fail(FFN_ERR_NOMEM, "%s: out of memory", path);
        const unsigned char *npy = f + data;
        if (e.method == 8) {
            if (!(a->owned = malloc(e.usize ? e.usize : 1))) return ffn_fail(FFN_ERR_NOMEM, "%s: out of memory", path);
            if ((st = inflate_entry(f + data, e.csize, e.usize, a->owned, path, a->name)) != FFN_OK) return st;
            npy = a->owned;
        } else if (e.csize != e.usize) {
            return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s.npy: stored with %llu bytes but %llu uncompressed", path,
                            a->name, (unsigned long long)e.csize, (unsigned long long)e.usize);
        }
        uLong crc = crc32_z(0L, Z_NULL, 0);
        crc = crc32_z(crc, npy, e.usize);
        if ((uint32_t)crc != e.crc)
            return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s.npy: CRC-32 %08x, expected %08x (corrupt)", path, a->name,
                            (unsigned)crc, (unsigned)e.crc);
        int is_bytes = 0;
        if ((st = parse_npy(npy, e.usize, path, a->name, a, &is_bytes)) != FFN_OK) return st;
        if (strcmp(a->name, SPEC_ENTRY) == 0) {
            if (!is_bytes || a->ndim != 1)
                return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s.npy: expected uint8 [n] (the spec's JSON)", path,
                                SPEC_ENTRY);
            if (!(w->spec_json = malloc(a->count + 1))) return ffn_fail(FFN_ERR_NOMEM, "%s: out of memory", path);
            memcpy(w->spec_json, a->bytes, a->count);
            w->spec_json[a->count] = 0;
            free(a->name);
            free(a->owned);
            w->count--;
        } else if (is_bytes) {
            return ffn_fail(FFN_ERR_FORMAT, "%s: entry %s.npy: dtype uint8, expected float32 ('<f4')", path, a->name);
        }
    }
    return FFN_OK;
}

/* ---- writing ---------------------------------------------------------------- */

typedef struct {
    FILE *f;
    uint64_t at;
    int failed;
} sink;

static void put(sink *s, const void *p, size_t n)
{
    if (!s->failed && n && fwrite(p, 1, n, s->f) != n) s->failed = 1;
    s->at += n;
}
static void put16(sink *s, uint32_t v)
{
    unsigned char b[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    put(s, b, 2);
}
static void put32(sink *s, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    put(s, b, 4);
}

/* The .npy header of an array (version 1.0, padded so that the data starts at a multiple of 64). */
static size_t npy_header(char *out, size_t cap, const char *descr, const size_t *shape, int ndim)
{
    char dims[256] = "";
    size_t used = 0;
    for (int d = 0; d < ndim; d++)
        used += (size_t)snprintf(dims + used, sizeof dims - used, "%zu%s", shape[d], ndim == 1 ? "," : d + 1 < ndim ? ", " : "");
    int n = snprintf(out + 10, cap - 10, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, dims);
    size_t total = 10 + (size_t)n + 1;
    size_t padded = (total + 63) / 64 * 64;
    memset(out + 10 + n, ' ', padded - total);
    out[padded - 1] = '\n';
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (char)((padded - 10) & 0xFF);
    out[9] = (char)((padded - 10) >> 8);
    return padded;
}

typedef struct {
    char name[520];
    uint32_t crc, size, local;
} written_entry;

static void write_entry(sink *s, written_entry *e, const char *name, const char *header, size_t hlen,
                        const void *data, size_t dlen)
{
    uLong crc = crc32_z(0L, Z_NULL, 0);
    crc = crc32_z(crc, (const unsigned char *)header, hlen);
    crc = crc32_z(crc, data, dlen);
    snprintf(e->name, sizeof e->name, "%s.npy", name);
    e->crc = (uint32_t)crc;
    e->size = (uint32_t)(hlen + dlen);
    e->local = (uint32_t)s->at;
    put32(s, 0x04034b50);
    put16(s, 20), put16(s, 0), put16(s, 0); /* version, flags, stored */
    put16(s, 0), put16(s, 0x21);             /* time, date (1980-01-01) */
    put32(s, e->crc), put32(s, e->size), put32(s, e->size);
    put16(s, (uint32_t)strlen(e->name)), put16(s, 0);
    put(s, e->name, strlen(e->name));
    put(s, header, hlen);
    put(s, data, dlen);
}

ffn_status ffn_npz_write(FILE *f, const char *path, const ffn_weights_array *a, size_t n, const char *spec_json)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) total += 128 + (uint64_t)a[i].count * 4;
    if (total + (spec_json ? strlen(spec_json) : 0) >= 0xFFFFFFFFull || n + 1 >= 0xFFFF)
        return ffn_fail(FFN_ERR_ARG, "%s: the model is over 4 GiB or 65534 tensors, which .npz without zip64 cannot "
                        "hold here; use .safetensors", path);
    written_entry *entries = calloc(n + 1, sizeof *entries);
    if (!entries) return ffn_fail(FFN_ERR_NOMEM, "%s: out of memory", path);
    sink s = {f, 0, 0};
    char header[512];
    for (size_t i = 0; i < n; i++) {
        size_t hlen = npy_header(header, sizeof header, "<f4", a[i].shape, a[i].ndim);
        write_entry(&s, &entries[i], a[i].name, header, hlen, a[i].data, a[i].count * sizeof(float));
    }
    size_t count = n;
    if (spec_json) {
        size_t len = strlen(spec_json);
        size_t hlen = npy_header(header, sizeof header, "|u1", &len, 1);
        write_entry(&s, &entries[count++], SPEC_ENTRY, header, hlen, spec_json, len);
    }
    uint64_t cd_at = s.at;
    for (size_t i = 0; i < count; i++) {
        put32(&s, 0x02014b50);
        put16(&s, 20), put16(&s, 20), put16(&s, 0), put16(&s, 0); /* made by, needed, flags, stored */
        put16(&s, 0), put16(&s, 0x21);
        put32(&s, entries[i].crc), put32(&s, entries[i].size), put32(&s, entries[i].size);
        put16(&s, (uint32_t)strlen(entries[i].name)), put16(&s, 0), put16(&s, 0); /* name, extra, comment */
        put16(&s, 0), put16(&s, 0), put32(&s, 0);                               /* disk, attributes */
        put32(&s, entries[i].local);
        put(&s, entries[i].name, strlen(entries[i].name));
    }
    uint64_t cd_size = s.at - cd_at;
    put32(&s, 0x06054b50);
    put16(&s, 0), put16(&s, 0), put16(&s, (uint32_t)count), put16(&s, (uint32_t)count);
    put32(&s, (uint32_t)cd_size), put32(&s, (uint32_t)cd_at), put16(&s, 0);
    free(entries);
    return s.failed ? ffn_fail(FFN_ERR_IO, "%s: write failed (disk full?)", path) : FFN_OK;
}
