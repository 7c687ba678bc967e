/* ffn — shares of a range across parts. */
#include "ffn/partition.h"

void ffn_partition(size_t n, size_t part, size_t parts, size_t *lo, size_t *hi)
{
    *lo = (size_t)((unsigned __int128)n * part / parts);
    *hi = (size_t)((unsigned __int128)n * (part + 1) / parts);
}
