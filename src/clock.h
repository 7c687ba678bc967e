/* ffn — the two clocks ffn measures with: wall time that never jumps
 * (CLOCK_MONOTONIC) for rates and waits, and this process's CPU time (all its
 * threads) for measures on a shared, noisy machine. */
#ifndef FFN_CLOCK_H
#define FFN_CLOCK_H

/* Seconds from an arbitrary fixed origin; only differences mean anything. */
double ffn_clock_seconds(void);
/* CPU seconds used by every thread of this process so far. */
double ffn_clock_cpu_seconds(void);

#endif
