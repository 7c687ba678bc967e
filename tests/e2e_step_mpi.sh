#!/usr/bin/env bash
# The training step module across ranks: tests/test_step.c under mpiexec -n 2
# and -n 3 (each rank trains on its share of one global batch and checks the
# step against references computed on the whole batch alone; a read failure
# on the last rank and a stop request on rank 0 must reach every rank).
source "$(dirname "$0")/lib/common.sh"

for np in 2 3; do
  mpi $np "$BUILD/tests/test_step" >out$np.txt 2>&1 || { cat out$np.txt; fail "test_step on $np ranks"; }
  [[ $(grep -c "checks, 0 failed" out$np.txt) -eq $np ]] || { cat out$np.txt; fail "not every rank of $np passed"; }
  pass "test_step on $np ranks: $(grep -m1 -o '[0-9]* checks' out$np.txt) on each"
done
