#!/usr/bin/env bash
# Checkpoints written and read in slices (issue 17): a sharded run (--shard
# optimizer, grads, params) writes the file an unsharded one does, whatever
# the slice size; it resumes bitwise at the same rank count and on the same
# curve at others, sharded or not, and fine-tunes from it; a write failing midway ends every rank with one clear
# error, no hang, no PATH.tmp left and the previous checkpoint kept.
# FFN_CKPT_SLICE_BYTES=200 (50 floats) cuts every tensor of this small model
# (387 parameters) and every optimizer state buffer into several slices, and
# the slices cross the ranks' ZeRO ranges.
source "$(dirname "$0")/lib/common.sh"

"$FFN_DATA" synth blobs --rows 600 --features 10 --classes 3 --noise 2 --seed 21 --out train.h5 >/dev/null
ARGS=(--train train.h5 --model dense:24:relu,layernorm,dense:3 --loss softmax_ce --optimizer adam
      --lr 0.003 --batch-size 32 --seed 9 --quiet --threads 1 --log-every 1)
# 600 / 32 = 19 steps per epoch.
SMALL=200
CASE_WIDTH=54

# same_file A B: every dataset bitwise equal, same names, shapes, dtypes, chunking and
# Fletcher32 in both; the same attributes but the version and the run's flags.
same_file() {
  "$PY" - "$1" "$2" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
def objects(f):
    out = {}
    f.visititems(lambda n, o: out.__setitem__(n, o))
    return out
oa, ob = objects(a), objects(b)
assert sorted(oa) == sorted(ob), (sorted(oa), sorted(ob))
datasets = 0
for n, x in oa.items():
    y = ob[n]
    skip = {"config_json", "ffn_version"}
    assert {k for k in x.attrs if k not in skip} == {k for k in y.attrs if k not in skip}, n
    for k in x.attrs:
        if k not in skip: assert np.array_equal(x.attrs[k], y.attrs[k]), (n, k)
    if isinstance(x, h5py.Dataset):
        datasets += 1
        assert x.shape == y.shape and x.dtype == y.dtype and x.chunks == y.chunks, n
        assert x.fletcher32 and y.fletcher32, n
        assert np.array_equal(x[()], y[()]), n
assert datasets >= 8, datasets
PY
}

# 1. Sharded (every mode) and unsharded at -np 2, default slices and 50-float ones: the same
#    datasets, bitwise (at 2 ranks every mode sums the same two gradients).
mpi 2 "$FFN_TRAIN" "${ARGS[@]}" --epochs 2 --checkpoint-dir plain --metrics plain.csv
FFN_CKPT_SLICE_BYTES=$SMALL mpi 2 "$FFN_TRAIN" "${ARGS[@]}" --epochs 2 --shard-optimizer --checkpoint-dir sharded \
  --metrics sharded.csv
FFN_CKPT_SLICE_BYTES=$SMALL mpi 2 "$FFN_TRAIN" "${ARGS[@]}" --epochs 2 --checkpoint-dir plainsmall
for mode in grads params; do
  FFN_CKPT_SLICE_BYTES=$SMALL mpi 2 "$FFN_TRAIN" "${ARGS[@]}" --epochs 2 --shard $mode --checkpoint-dir $mode
done
for step in 0000000019 0000000038; do
  for dir in sharded plainsmall grads params; do
    same_file plain/ckpt-$step.h5 $dir/ckpt-$step.h5 || fail "step $step: $dir's file differs from the unsharded run's"
  done
done
"$PY" - <<'PY' || fail "the file is not the documented layout"
import h5py
f = h5py.File("sharded/ckpt-0000000038.h5", "r")
assert f["model/0/W"].shape == (24, 10) and f["optimizer/m"].shape == (387,), f["optimizer/m"].shape
assert f["optimizer"].attrs["step_count"] == 38 and f["train"].attrs["step"] == 38
PY
pass "--shard optimizer, grads and params (50-float slices) and unsharded at -np 2 write bitwise the same datasets"

# 2. Resume from the sharded checkpoint of epoch 1.
# 2a. Sharded at -np 2 (small slices: each rank reads its state range in pieces): bitwise.
FFN_CKPT_SLICE_BYTES=$SMALL mpi 2 "$FFN_TRAIN" "${ARGS[@]}" --epochs 1 --shard-optimizer --checkpoint-dir part
FFN_CKPT_SLICE_BYTES=$SMALL mpi 2 "$FFN_TRAIN" "${ARGS[@]}" --epochs 2 --shard-optimizer --checkpoint-dir part \
  --resume latest
same_file sharded/ckpt-0000000038.h5 part/ckpt-0000000038.h5 || fail "sharded resume at -np 2 is not bitwise"
# 2b. At -np 1, sharded (= unsharded there): bitwise against the uninterrupted -np 1 run.
mpi 1 "$FFN_TRAIN" "${ARGS[@]}" --epochs 2 --shard-optimizer --checkpoint-dir one
FFN_CKPT_SLICE_BYTES=$SMALL mpi 1 "$FFN_TRAIN" "${ARGS[@]}" --epochs 1 --shard-optimizer --checkpoint-dir onepart
FFN_CKPT_SLICE_BYTES=$SMALL mpi 1 "$FFN_TRAIN" "${ARGS[@]}" --epochs 2 --shard-optimizer --checkpoint-dir onepart \
  --resume latest
same_file one/ckpt-0000000038.h5 onepart/ckpt-0000000038.h5 || fail "sharded resume at -np 1 is not bitwise"
# 2b'. --shard params at -np 2: each rank reads only its slice of every tensor: bitwise.
FFN_CKPT_SLICE_BYTES=$SMALL mpi 2 "$FFN_TRAIN" "${ARGS[@]}" --epochs 1 --shard params --checkpoint-dir ppart
FFN_CKPT_SLICE_BYTES=$SMALL mpi 2 "$FFN_TRAIN" "${ARGS[@]}" --epochs 2 --shard params --checkpoint-dir ppart \
  --resume latest
same_file params/ckpt-0000000038.h5 ppart/ckpt-0000000038.h5 || fail "--shard params resume at -np 2 is not bitwise"
# 2c. The -np 2 sharded checkpoint at another rank count: sharded at 1 and 3, unsharded and
#     --shard params at 3.
FFN_CKPT_SLICE_BYTES=$SMALL mpi 1 "$FFN_TRAIN" "${ARGS[@]}" --epochs 2 --shard-optimizer \
  --resume sharded/ckpt-0000000019.h5 --checkpoint-dir x1 --metrics x1.csv
FFN_CKPT_SLICE_BYTES=$SMALL mpi 3 "$FFN_TRAIN" "${ARGS[@]}" --epochs 2 --shard-optimizer \
  --resume sharded/ckpt-0000000019.h5 --checkpoint-dir x3 --metrics x3.csv
mpi 3 "$FFN_TRAIN" "${ARGS[@]}" --epochs 2 --resume sharded/ckpt-0000000019.h5 --checkpoint-dir u3 --metrics u3.csv
FFN_CKPT_SLICE_BYTES=$SMALL mpi 3 "$FFN_TRAIN" "${ARGS[@]}" --epochs 2 --shard params \
  --resume sharded/ckpt-0000000019.h5 --checkpoint-dir p3 --metrics p3.csv
"$PY" - <<'PY' || fail "resume at another rank count diverged"
import csv
def curve(f): return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(open(f)) if r["kind"] == "step"}
full = curve("sharded.csv")
for f in ("x1.csv", "x3.csv", "u3.csv", "p3.csv"):
    c = curve(f)
    assert sorted(c) == list(range(20, 39)), sorted(c)[:3]
    rel = max(abs(c[s] - full[s]) / abs(full[s]) for s in c)
    print(f"{f}: max relative loss difference {rel:.2e} over steps 20-38")
    assert rel < 1e-4
PY
pass "sharded checkpoints resumed: bitwise at -np 2 (optimizer, params) and -np 1; same curve at 1 and 3 sharded, 3 unsharded, 3 --shard params"

# 3. --init-from reads the tensors in slices too (--shard params: each rank its part of each):
#    the frozen layer is bitwise the source's.
for mode in optimizer params; do
  FFN_CKPT_SLICE_BYTES=$SMALL mpi 2 "$FFN_TRAIN" --train train.h5 --init-from sharded/ckpt-0000000038.h5 --freeze 0 \
    --shard $mode --epochs 1 --batch-size 32 --threads 1 --quiet --checkpoint-dir ft-$mode >/dev/null
  "$PY" - ft-$mode <<'PY' || fail "--init-from in slices (--shard $mode) did not carry layer 0"
import sys, h5py, numpy as np
a, b = h5py.File("sharded/ckpt-0000000038.h5", "r"), h5py.File(sys.argv[1] + "/ckpt-0000000019.h5", "r")
for t in ("W", "b"): assert np.array_equal(a["model/0/" + t][()], b["model/0/" + t][()]), t
assert not np.array_equal(a["model/2/W"][()], b["model/2/W"][()])
PY
done
pass "--init-from a sharded checkpoint at -np 2 (--shard optimizer and params)"

# 4. Failures while saving, sharded at -np 2: one clear error, every rank ends, nothing half-written.
# 4a. A write failing midway: a save is 27 slices of 50 floats (the tensors 5+1+1+1+2+1, m and v 8
#     each); the 2nd checkpoint's 16th is /optimizer/m's 5th, [200, 250), across the ranks' ranges.
#     With --shard params, the 2nd checkpoint's 3rd: /model/0/W's [100, 150), gathered from both ranks.
for fault in optimizer:$((27 + 16)) params:$((27 + 3)); do
  mode=${fault%:*}
  FFN_CKPT_SLICE_BYTES=$SMALL FFN_DEBUG_FAIL_SAVE_SLICE=${fault#*:} \
    check_case "write fails midway (-np 2, --shard $mode)" 1 "write failed (disk full); the previous checkpoint is kept" -- \
    "$MPIRUN" -np 2 "$FFN_TRAIN" "${ARGS[@]}" --epochs 3 --shard $mode --checkpoint-dir fail-$mode
  ls fail-$mode | grep -q '^ckpt-0000000019.h5$' && [[ ! -e fail-$mode/ckpt-0000000038.h5 ]] ||
    fail "midway failure (--shard $mode): expected only epoch 1's file: $(ls fail-$mode)"
  [[ -z $(ls fail-$mode/*.tmp 2>/dev/null) ]] || fail "midway failure (--shard $mode): a temporary file was left: $(ls fail-$mode)"
  same_file sharded/ckpt-0000000019.h5 fail-$mode/ckpt-0000000019.h5 ||
    fail "midway failure (--shard $mode): the earlier checkpoint is not the run's"
done
# 4b. PATH.tmp cannot be created (a directory stands there).
mkdir -p blocked/ckpt-0000000019.h5.tmp
check_case "PATH.tmp cannot be created (-np 2, --shard optimizer)" 1 "cannot create blocked/ckpt-0000000019.h5.tmp" -- \
  "$MPIRUN" -np 2 "$FFN_TRAIN" "${ARGS[@]}" --epochs 1 --shard-optimizer --checkpoint-dir blocked
[[ -z $(ls blocked | grep '^ckpt-.*\.h5$' || true) ]] || fail "blocked: a checkpoint appeared: $(ls blocked)"
cat table.txt
pass "failed saves end every rank with the writer's message"
