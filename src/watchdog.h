/* ffn — a watchdog for calls that must not hang (internal).
 *
 * HDF5 1.10 can loop forever on some corrupt files while it reads their
 * metadata (found by fuzzing: a damaged virtual-dataset mapping sends
 * H5Dopen2 into an endless global-heap walk; h5dump hangs on the same file).
 * No HDF5 call can be interrupted safely, so the open of a dataset or a
 * checkpoint runs under a watchdog thread: if it has not finished within
 * FFN_OPEN_TIMEOUT seconds (default 600; 0 turns the watchdog off), the
 * process prints one line naming the file and exits with status 1. Under
 * mpirun the other ranks are then stopped by Open MPI, so a job ends instead
 * of burning its allocation. */
#ifndef FFN_WATCHDOG_H
#define FFN_WATCHDOG_H

typedef struct ffn_watchdog ffn_watchdog;

/* Starts the watchdog for the work on `path` described by `what` (e.g.
 * "opening the dataset"). NULL when it is off or cannot start (the work then
 * runs unguarded). */
ffn_watchdog *ffn_watchdog_start(const char *path, const char *what);
/* The work finished in time: stops and frees the watchdog (NULL is fine). */
void ffn_watchdog_stop(ffn_watchdog *w);

#endif
