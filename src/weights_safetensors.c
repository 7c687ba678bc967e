/* ffn — .safetensors weights: an unsigned 64-bit little-endian header length
 * N, N bytes of JSON ({"__metadata__": {string: string}, NAME: {"dtype",
 * "shape", "data_offsets": [begin, end]}, ...}, offsets relative to the data
 * after the header), then the tensors' raw little-endian bytes. ffn reads and
 * writes dtype F32 only; the header is padded with spaces to a multiple of 8
 * bytes, as the safetensors library does, so the data stays aligned. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "weights_format.h"

#define MAX_HEADER ((uint64_t)100 << 20) /* the safetensors library's own limit */
#define SPEC_KEY "ffn_spec"

static ffn_status read_tensor(const cJSON *t, const char *path, const unsigned char *data, size_t data_len,
                              ffn_weights_file *w)
{
    const char *name = t->string;
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    if (!cJSON_IsObject(t) || !cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offsets) ||
        cJSON_GetArraySize(offsets) != 2)
        return ffn_fail(FFN_ERR_FORMAT, "%s: tensor \"%s\": expected {\"dtype\", \"shape\", \"data_offsets\": "
                        "[begin, end]} in the header", path, name);
    if (strcmp(dtype->valuestring, "F32") != 0)
        return ffn_fail(FFN_ERR_FORMAT, "%s: tensor \"%s\": dtype %s, expected F32 (convert with .float() before "
                        "saving)", path, name, dtype->valuestring);
    ffn_weights_array *a = ffn_weights_file_add(w, name);
    if (!a) return ffn_fail(FFN_ERR_NOMEM, "%s: out of memory", path);
    a->count = 1;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape)
    {
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > (double)((size_t)1 << 40) ||
            d->valuedouble != (double)(size_t)d->valuedouble || a->ndim == FFN_WEIGHTS_MAX_DIMS)
            return ffn_fail(FFN_ERR_FORMAT, "%s: tensor \"%s\": shape is not a list of at most %d sizes", path, name,
                            FFN_WEIGHTS_MAX_DIMS);
        size_t v = (size_t)d->valuedouble;
        if (v && a->count > SIZE_MAX / 4 / v) return ffn_fail(FFN_ERR_FORMAT, "%s: tensor \"%s\": shape overflows", path, name);
        a->shape[a->ndim++] = v;
        a->count *= v;
    }
    double begin = cJSON_GetArrayItem(offsets, 0)->valuedouble, end = cJSON_GetArrayItem(offsets, 1)->valuedouble;
    if (!cJSON_IsNumber(cJSON_GetArrayItem(offsets, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(offsets, 1)) ||
        begin < 0 || end < begin || end > (double)data_len || begin != (double)(size_t)begin ||
        end != (double)(size_t)end)
        return ffn_fail(FFN_ERR_FORMAT, "%s: tensor \"%s\": data_offsets [%.0f, %.0f] lie outside the %zu data bytes "
                        "(truncated?)", path, name, begin, end, data_len);
    if ((size_t)end - (size_t)begin != a->count * 4)
        return ffn_fail(FFN_ERR_FORMAT, "%s: tensor \"%s\": data_offsets span %zu bytes, but its shape needs %zu",
                        path, name, (size_t)end - (size_t)begin, a->count * 4);
    a->bytes = data + (size_t)begin;
    return FFN_OK;
}

ffn_status ffn_safetensors_read(const char *path, ffn_weights_file *w)
{
    ffn_status st = ffn_weights_read_contents(w, path);
    if (st != FFN_OK) return st;
    const unsigned char *f = w->contents;
    if (w->size < 8)
        return ffn_fail(FFN_ERR_FORMAT, "%s: %zu bytes, expected at least the 8-byte header length (truncated?)",
                        path, w->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | f[i];
    if (n > MAX_HEADER || n > w->size - 8)
        return ffn_fail(FFN_ERR_FORMAT, "%s: header length %llu exceeds the file's %zu bytes after it (truncated, or "
                        "not safetensors)", path, (unsigned long long)n, w->size - 8);
    cJSON *h = cJSON_ParseWithLength((const char *)f + 8, (size_t)n);
    if (!cJSON_IsObject(h)) {
        cJSON_Delete(h);
        return ffn_fail(FFN_ERR_FORMAT, "%s: the %llu-byte header is not a JSON object (truncated, or not "
                        "safetensors)", path, (unsigned long long)n);
    }
    const unsigned char *data = f + 8 + n;
    size_t data_len = w->size - 8 - (size_t)n;
    const cJSON *t;
    cJSON_ArrayForEach(t, h)
    {
        if (strcmp(t->string, "__metadata__") == 0) {
            const cJSON *spec = cJSON_GetObjectItemCaseSensitive(t, SPEC_KEY);
            if (spec && !cJSON_IsString(spec)) {
                st = ffn_fail(FFN_ERR_FORMAT, "%s: __metadata__.%s is not a string", path, SPEC_KEY);
                break;
            }
            if (spec && !(w->spec_json = strdup(spec->valuestring))) {
                st = ffn_fail(FFN_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            continue;
        }
        if ((st = read_tensor(t, path, data, data_len, w)) != FFN_OK) break;
    }
    cJSON_Delete(h);
    return st;
}

ffn_status ffn_safetensors_write(FILE *f, const char *path, const ffn_weights_array *a, size_t n,
                                 const char *spec_json)
{
    cJSON *h = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(h, "__metadata__");
    int ok = meta && cJSON_AddStringToObject(meta, "format", "pt");
    if (ok && spec_json) ok = cJSON_AddStringToObject(meta, SPEC_KEY, spec_json) != NULL;
    size_t offset = 0;
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *t = cJSON_AddObjectToObject(h, a[i].name);
        double shape[FFN_WEIGHTS_MAX_DIMS], off[2] = {(double)offset, (double)(offset + a[i].count * 4)};
        for (int d = 0; d < a[i].ndim; d++) shape[d] = (double)a[i].shape[d];
        ok = t && cJSON_AddStringToObject(t, "dtype", "F32") &&
             cJSON_AddItemToObject(t, "shape", cJSON_CreateDoubleArray(shape, a[i].ndim)) &&
             cJSON_AddItemToObject(t, "data_offsets", cJSON_CreateDoubleArray(off, 2));
        offset += a[i].count * 4;
    }
    char *text = ok ? cJSON_PrintUnformatted(h) : NULL;
    cJSON_Delete(h);
    if (!text) return ffn_fail(FFN_ERR_NOMEM, "%s: out of memory for the header", path);
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    unsigned char size[8];
    for (int i = 0; i < 8; i++) size[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int failed = fwrite(size, 1, 8, f) != 8 || fwrite(text, 1, len, f) != len;
    for (size_t i = len; i < padded && !failed; i++) failed = fputc(' ', f) == EOF;
    for (size_t i = 0; i < n && !failed; i++)
        failed = a[i].count && fwrite(a[i].data, sizeof(float), a[i].count, f) != a[i].count;
    free(text);
    return failed ? ffn_fail(FFN_ERR_IO, "%s: write failed (disk full?)", path) : FFN_OK;
}
