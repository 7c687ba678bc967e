/* ffn — a part's share of n items: part p of P takes [n·p/P, n·(p+1)/P).
 *
 * One rule for every split across ranks (a global batch's rows, an
 * evaluation set's rows, a ZeRO slice of the parameters, a bucket summed in
 * shared memory): the shares differ by at most one item, the larger ones go
 * to the higher parts, and concatenating them in part order gives [0, n). */
#ifndef FFN_PARTITION_H
#define FFN_PARTITION_H

#include <stddef.h>

/* [*lo, *hi) of part p in [0, parts); exact for any n (128-bit product). */
void ffn_partition(size_t n, size_t part, size_t parts, size_t *lo, size_t *hi);

#endif
