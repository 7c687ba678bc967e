/* ffn — name <-> value lookup and the lists of names in messages. */
#include "ffn/names.h"

#include <stdio.h>
#include <string.h>

static const char *name_at(const ffn_names *t, size_t v)
{
    return *(const char *const *)((const char *)t->first + v * t->stride);
}

int ffn_names_find(const ffn_names *t, const char *name)
{
    if (!name) return -1;
    for (size_t v = 0; v < t->count; v++) {
        const char *n = name_at(t, v);
        if (n && strcmp(n, name) == 0) return (int)v;
    }
    for (size_t i = 0; i < t->alias_count; i++)
        if (strcmp(t->aliases[i].name, name) == 0) return t->aliases[i].value;
    return -1;
}

const char *ffn_names_name(const ffn_names *t, int v)
{
    const char *n = v >= 0 && (size_t)v < t->count ? name_at(t, (size_t)v) : NULL;
    return n ? n : "unknown";
}

const char *ffn_names_list(const ffn_names *t, char *buf, size_t cap)
{
    if (cap == 0) return buf;
    buf[0] = '\0';
    size_t total = 0, len = 0;
    for (size_t v = 0; v < t->count; v++) total += name_at(t, v) != NULL;
    for (size_t v = 0, shown = 0; v < t->count; v++) {
        const char *n = name_at(t, v);
        if (!n) continue;
        const char *sep = shown == 0 ? "" : shown + 1 == total ? " or " : ", ";
        shown++;
        int w = snprintf(buf + len, cap - len, "%s%s", sep, n);
        if (w < 0 || (size_t)w >= cap - len) {
            buf[len] = '\0'; /* cut after the last whole name */
            break;
        }
        len += (size_t)w;
    }
    return buf;
}
