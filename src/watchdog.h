/* ffn — a watchdog for calls that must not hang (internal).
 *
 * HDF5 1.10 can loop forever on some corrupt files while it reads their
 * metadata (found by fuzzing: a damaged virtual-dataset mapping sends
 * H5Dopen2 into an endless global-heap walk; h5dump hangs on the same file).
 * No HDF5 call can be interrupted safely, so the open of a dataset or a
 * checkpoint runs under a watchdog thread: if it has not finished within
 * FFN_OPEN_TIMEOUT seconds (default 600; 0 turns the watchdog off), the
 * process prints one line naming the file and exits with status 1. A value
 * that is not a whole number of seconds up to a week fails the open with a
 * message naming the variable, rather than running with a limit nobody
 * chose. Under
 * mpirun the other ranks are then stopped by Open MPI, so a job ends instead
 * of burning its allocation. */
#ifndef FFN_WATCHDOG_H
#define FFN_WATCHDOG_H

#include "ffn/status.h"

typedef struct ffn_watchdog ffn_watchdog;

/* Starts the watchdog for the work on `path` described by `what` (e.g.
 * "opening the dataset") in *out: NULL when it is off or cannot start (the
 * work then runs unguarded). FFN_ERR_ARG, with a message, when
 * FFN_OPEN_TIMEOUT is junk: the caller does not start the work. */
ffn_status ffn_watchdog_start(ffn_watchdog **out, const char *path, const char *what);
/* The work finished in time: stops and frees the watchdog (NULL is fine). */
void ffn_watchdog_stop(ffn_watchdog *w);

#endif
