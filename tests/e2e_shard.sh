#!/usr/bin/env bash
# --shard optimizer, grads and params (ZeRO-1/2/3) train the same model as the
# unsharded run: at 1, 2 and 4 ranks (4 oversubscribed, with ranks that have no
# rows in some micro-batches, gradient accumulation, dropout, a recomputed
# block and a validation set whose batches differ between ranks) each of 50
# steps' loss is within 1e-6 (relative) of the unsharded run's, on one node through
# node-shared memory and through MPI collectives (FFN_SHARD_NODE_SHARED=0, the
# path across nodes; with the communication thread prefetching and without,
# FFN_SHARD_PREFETCH=0). The memory plan predicts each mode's peak within 20%,
# and the sharded modes hold less; the flags they cannot run with are refused.
source "$(dirname "$0")/lib/common.sh"

"$FFN_DATA" synth blobs --rows 600 --features 24 --classes 5 --seed 2 --out train.h5 \
  --val-out val.h5 --val-fraction 0.17 >/dev/null 2>&1 ||
  { "$FFN_DATA" synth blobs --rows 600 --features 24 --classes 5 --seed 2 --out train.h5 >/dev/null &&
    "$FFN_DATA" synth blobs --rows 101 --features 24 --classes 5 --seed 9 --out val.h5 >/dev/null; }

MODEL="dense:32:gelu,swiglu:48,dropout:0.1,dense:16:tanh,dense:5"
run() { # run NAME NP [flags...]: trains, per-step losses into NAME.csv
  local name=$1 np=$2; shift 2
  mpi "$np" "$FFN_TRAIN" --train train.h5 --val val.h5 --model "$MODEL" --batch-size 6 --accumulate 2 \
    --max-steps 50 --epochs 2 --seed 5 --log-every 1 --metrics "$name.csv" --threads 1 "$@" >"$name.out" 2>&1 ||
    { cat "$name.out"; fail "$name: ffn-train failed"; }
}
# close A B TOL: every step's loss of A.csv within TOL (relative) of B.csv's, as many steps.
close() {
  "$PY" - "$1.csv" "$2.csv" "$3" <<'PY'
import csv, sys
def losses(f):
    return [float(r["loss"]) for r in csv.DictReader(open(f)) if r["kind"] == "step"]
a, b, tol = losses(sys.argv[1]), losses(sys.argv[2]), float(sys.argv[3])
assert len(a) == len(b) >= 50, (len(a), len(b))
worst = max(abs(x - y) / abs(y) for x, y in zip(a, b))
assert worst <= tol, f"worst relative difference {worst:.3g} > {tol}"
print(f"{worst:.2g}")
PY
}

for np in 1 2 4; do
  run none$np $np
  for mode in optimizer grads params; do
    run $mode$np $np --shard $mode
    worst=$(close $mode$np none$np 1e-6)
    pass "--shard $mode at -np $np: losses within $worst of unsharded"
  done
  if ((np > 1)); then
    grep -q "parameters: once per node in node-shared memory, each rank updating its slice" optimizer$np.out ||
      { cat optimizer$np.out; fail "--shard optimizer on one node did not hold the parameters once per node"; }
    grep -q "each rank's optimizer sums its slice over the node's gradients" optimizer$np.out ||
      { cat optimizer$np.out; fail "--shard optimizer on one node: the optimizer did not sum its slice"; }
    # --clip-norm needs the slice's sums before the update: the reduce-scatter stays.
    run clip$np $np --clip-norm 0.05
    run optimizer-clip$np $np --clip-norm 0.05 --shard optimizer
    grep -q "each rank's optimizer sums" optimizer-clip$np.out && { cat optimizer-clip$np.out; fail "--clip-norm: summed in the update"; }
    worst=$(close optimizer-clip$np clip$np 1e-6)
    pass "--shard optimizer --clip-norm at -np $np: losses within $worst of unsharded"
    FFN_SHARD_NODE_SHARED=0 run params-mpi$np $np --shard params
    grep -q "a communication thread" params-mpi$np.out || { cat params-mpi$np.out; fail "the MPI path's prefetch did not run"; }
    FFN_SHARD_NODE_SHARED=0 FFN_SHARD_PREFETCH=0 run params-mpi-sync$np $np --shard params
    grep -q "before forward and backward (MPI_Allgatherv)" params-mpi-sync$np.out || { cat params-mpi-sync$np.out; fail "the MPI path without prefetch did not run"; }
    worst=$(close params-mpi-sync$np none$np 1e-6)
    pass "--shard params through MPI, gathers on this thread, at -np $np: losses within $worst"
    grep -q "node-shared memory, each rank updating" params$np.out || { cat params$np.out; fail "the node-shared path did not run"; }
    worst=$(close params-mpi$np none$np 1e-6)
    pass "--shard params through MPI at -np $np: losses within $worst"
  fi
done

run rec2 2 --recompute
run rec-params2 2 --recompute --shard params
worst=$(close rec-params2 rec2 1e-6)
pass "--recompute --shard params: losses within $worst"

if "$FFN_TRAIN" --train train.h5 --model "$MODEL" --precision bf16 --max-steps 1 --quiet >/dev/null 2>&1; then
  run bf16 2 --precision bf16
  run bf16-optimizer 2 --precision bf16 --shard optimizer
  grep -q "node-shared memory with their bf16 copy" bf16-optimizer.out ||
    { cat bf16-optimizer.out; fail "bf16 --shard optimizer: the bf16 copy is not node-shared"; }
  worst=$(close bf16-optimizer bf16 1e-6)
  pass "bf16 --shard optimizer (parameters and their bf16 copy once per node): losses within $worst"
  run bf16-grads 2 --precision bf16 --shard grads
  run bf16-params 2 --precision bf16 --shard params
  FFN_SHARD_NODE_SHARED=0 run bf16-params-mpi 2 --precision bf16 --shard params
  worst=$(close bf16-grads bf16 1e-6)
  pass "bf16 --shard grads: losses within $worst"
  worst=$(close bf16-params bf16 1e-6)
  worst_mpi=$(close bf16-params-mpi bf16 1e-6)
  pass "bf16 --shard params: losses within $worst (node-shared), $worst_mpi (MPI)"
else
  pass "bf16 cases skipped: $("$FFN_TRAIN" --train train.h5 --model "$MODEL" --precision bf16 --max-steps 1 2>&1 | tail -1)"
fi

# Memory: a model large enough for the parameters to dominate (8.4 M parameters, 134 MB of
# replicated training state). The plan's prediction holds within 20% in each mode, and each
# mode holds less than the one before.
"$FFN_DATA" synth blobs --rows 64 --features 2048 --classes 8 --seed 3 --out wide.h5 >/dev/null
prev=""
for mode in none optimizer grads params; do
  mpi 2 "$FFN_TRAIN" --train wide.h5 --model "dense:2048:relu,dense:2048:relu,dense:8" --batch-size 16 \
    --max-steps 3 --seed 1 --threads 1 --shard $mode >mem-$mode.out 2>&1 || { cat mem-$mode.out; fail "memory run $mode"; }
  ratio=$(grep -o "measured/predicted [0-9.]*" mem-$mode.out | tail -1 | cut -d' ' -f2)
  ge "$ratio" 0.8 && ge 1.2 "$ratio" || { cat mem-$mode.out; fail "$mode: measured/predicted $ratio outside [0.8, 1.2]"; }
  # The rank's own part: node-shared pages divided among the ranks that map them, when any.
  peak=$(grep -o "[0-9.]* MiB with node-shared pages divided" mem-$mode.out | grep -o "^[0-9.]*" || true)
  [[ -n $peak ]] || peak=$(grep -o "peak RSS [0-9.]* MiB" mem-$mode.out | grep -o "[0-9.]*")
  [[ -z $prev ]] || ge "$prev" "$peak" || { cat mem-$mode.out; fail "$mode holds more than the mode before ($peak > $prev MiB)"; }
  pass "--shard $mode at -np 2: peak $peak MiB per rank, measured/predicted $ratio"
  prev=$peak
done

CASE_WIDTH=48
check_case "--shard params with --prune" 2 "--shard params: not with --prune" -- \
  "$FFN_TRAIN" --train train.h5 --model "$MODEL" --shard params --prune 0.5
check_case "--shard grads with --grad-dtype bf16" 2 "not with --grad-dtype bf16" -- \
  "$FFN_TRAIN" --train train.h5 --model "$MODEL" --shard grads --grad-dtype bf16
check_case "--shard params with --check-replicas" 2 "--check-replicas: with --shard params" -- \
  "$FFN_TRAIN" --train train.h5 --model "$MODEL" --shard params --check-replicas 1
check_case "--shard with an unknown mode" 2 "expected none, optimizer, grads or params" -- \
  "$FFN_TRAIN" --train train.h5 --model "$MODEL" --shard everything
cat table.txt
pass "refusals"
