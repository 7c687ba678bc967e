/* ffn — the names of an enumeration: lookup both ways and the "a, b or c"
 * list that messages print, all from one table.
 *
 * The names may stand alone (an array of strings indexed by the enum) or be a
 * field of a table of structs indexed by the enum (stride = the struct's
 * size), so a registry's entries carry their own names and no parallel list
 * can drift from them. NULL names are skipped: a value with no name is never
 * found, printed or listed. Aliases are accepted on input only. */
#ifndef FFN_NAMES_H
#define FFN_NAMES_H

#include <stddef.h>

typedef struct {
    const char *name;
    int value;
} ffn_name_alias;

typedef struct {
    const char *const *first; /* the name of value 0 */
    size_t stride;            /* bytes from the name of value v to that of v + 1 */
    size_t count;             /* values 0 .. count-1 */
    const ffn_name_alias *aliases;
    size_t alias_count;
} ffn_names;

/* A table over an array of names, or over the field `name` of an array of structs. */
#define FFN_NAMES_OF_ARRAY(array) \
    {&(array)[0], sizeof(array)[0], sizeof(array) / sizeof(array)[0], NULL, 0}
#define FFN_NAMES_OF_FIELD(table, field) \
    {&(table)[0].field, sizeof(table)[0], sizeof(table) / sizeof(table)[0], NULL, 0}
/* The same over an array of names, with an array of ffn_name_alias. */
#define FFN_NAMES_OF_ARRAY_WITH_ALIASES(array, aliases) \
    {&(array)[0], sizeof(array)[0], sizeof(array) / sizeof(array)[0], (aliases), sizeof(aliases) / sizeof(aliases)[0]}

/* The value named name (a name or an alias), or -1 (also for NULL). */
int ffn_names_find(const ffn_names *t, const char *name);
/* The name of value v, or "unknown" when v has none. */
const char *ffn_names_name(const ffn_names *t, int v);
/* Writes the names as "a, b, c or d" ("a or b", "a", "" for none) into buf
 * (cut at cap, always terminated) and returns buf, for use in a message. */
const char *ffn_names_list(const ffn_names *t, char *buf, size_t cap);

/* Room for any list the library prints. */
#define FFN_NAMES_LIST_MAX 256

#endif
