#!/usr/bin/env bash
# Compression: distillation from a teacher checkpoint runs end to end (and
# its KL part is exactly 0 when the teacher is the student); magnitude
# pruning reaches its sparsity exactly, per layer and globally, on the cubic
# schedule, pruned weights stay 0 through more training, and the masks survive
# checkpoints (resume bitwise, init-from).
source "$(dirname "$0")/lib/common.sh"

"$FFN_DATA" synth blobs --rows 1500 --features 10 --classes 3 --noise 2 --seed 21 --out all.h5 >/dev/null
"$FFN_DATA" split all.h5 --train-out train.h5 --val-out test.h5 --val-count 300 --seed 1 >/dev/null
BASE=(--train train.h5 --test test.h5 --loss softmax_ce --optimizer adam --lr 0.003 --seed 9 --threads 1
      --batch-size 32 --quiet)
# 1200 rows / 32 = 38 steps per epoch.

# 1. Distillation: a teacher, then a small student taught by it at 2 ranks.
"$FFN_TRAIN" "${BASE[@]}" --model dense:64:relu,dense:32:relu,dense:3 --epochs 3 --checkpoint-dir teacher >/dev/null
T=teacher/ckpt-0000000114.h5
LOUD=()
for a in "${BASE[@]}"; do [[ $a == --quiet ]] || LOUD+=("$a"); done
mpi 2 "$FFN_TRAIN" "${LOUD[@]}" --model dense:4:relu,dense:3 --epochs 2 --teacher $T --distill-temperature 3 \
  --distill-alpha 0.7 --checkpoint-dir student >student.txt
grep -q "distillation: teacher $T (10 -> dense:64:relu,dense:32:relu,dense:3" student.txt || fail "no distillation banner: $(cat student.txt)"
grep -qE "epoch 2/2 .* kl [0-9.]+" student.txt || fail "no KL in the epoch line: $(cat student.txt)"
acc=$(field student.txt '^test:' accuracy)
ge "$acc" 0.8 || fail "distilled student test accuracy $acc"
pass "distillation at 2 ranks: student test accuracy $acc"

# Teacher == student (init-from the teacher, alpha 1): the loss is T^2 KL = 0 at every step, the
# gradient is 0, so the weights do not move.
"$FFN_TRAIN" "${BASE[@]}" --init-from $T --teacher $T --distill-alpha 1 --epochs 1 --log-every 1 \
  --metrics self.csv --checkpoint-dir self >/dev/null
"$PY" - <<'PY' || fail "teacher == student: KL not 0"
import csv, h5py, numpy as np
losses = [float(r["loss"]) for r in csv.DictReader(open("self.csv")) if r["kind"] == "step"]
assert len(losses) == 38 and max(abs(x) for x in losses) == 0.0, losses[:5]
a, b = h5py.File("teacher/ckpt-0000000114.h5"), h5py.File("self/ckpt-0000000038.h5")
for i in range(3):
    assert np.array_equal(a[f"model/{i}/W"][()], b[f"model/{i}/W"][()]), i
print("38 steps, every loss exactly 0, weights unchanged")
PY
pass "teacher == student: KL exactly 0"

# Refusals: a teacher of another output width; distillation with another loss.
"$FFN_DATA" synth blobs --rows 200 --features 10 --classes 5 --noise 2 --seed 23 --out five.h5 >/dev/null
set +e; "$FFN_TRAIN" --train five.h5 --model dense:8:relu,dense:5 --teacher $T --epochs 1 >/dev/null 2>err.txt; rc=$?; set -e
[[ $rc -eq 2 ]] && grep -q "the teacher has 3 outputs, the model trained has 5" err.txt || fail "output mismatch: rc $rc $(cat err.txt)"
set +e; "$FFN_TRAIN" --train train.h5 --loss mse --teacher $T --epochs 1 >/dev/null 2>err.txt; rc=$?; set -e
[[ $rc -eq 2 ]] && grep -q "distillation needs --loss softmax_ce" err.txt || fail "loss check: rc $rc $(cat err.txt)"
pass "distillation refuses a mismatched teacher or loss"

# 2. One-shot pruning of the teacher to 75% per layer, fine-tuned 1 epoch at 2 ranks with the
#    sharded optimizer, then 1 more epoch without --prune: masks and zeros are kept.
mpi 2 "$FFN_TRAIN" "${BASE[@]}" --init-from $T --prune 0.75 --epochs 1 --shard-optimizer --checkpoint-dir p1 >/dev/null
"$FFN_TRAIN" "${BASE[@]}" --init-from p1/ckpt-0000000038.h5 --epochs 1 --checkpoint-dir p2 >/dev/null
"$PY" - <<'PY' || fail "layer pruning"
import h5py, numpy as np
for f in ("p1/ckpt-0000000038.h5", "p2/ckpt-0000000038.h5"):
    h = h5py.File(f)
    for i in range(3):
        w, m = h[f"model/{i}/W"][()], h[f"masks/{i}/W"][()]
        assert m.dtype == np.uint8 and m.shape == w.shape and h[f"masks/{i}/W"].fletcher32
        assert int((m == 0).sum()) == round(0.75 * w.size), (f, i, int((m == 0).sum()), w.size)
        assert np.all(w[m == 0] == 0) and np.all(w[m == 1] != 0), (f, i)
a, b = h5py.File("p1/ckpt-0000000038.h5"), h5py.File("p2/ckpt-0000000038.h5")
for i in range(3):
    assert np.array_equal(a[f"masks/{i}/W"][()], b[f"masks/{i}/W"][()])
    assert not np.array_equal(a[f"model/{i}/W"][()], b[f"model/{i}/W"][()]), "did not train"
print("75% of every layer's weights exactly 0, kept through another epoch")
PY
pass "--prune 0.75 per layer: exact, and kept through fine-tuning from the checkpoint"

# 3. Global scope, gradual (cubic from step 10 to 60, every 10): the sparsity at each checkpoint
#    follows the schedule, and a run resumed from step 40 is bitwise the uninterrupted one.
P=(--model dense:24:relu,dense:12:tanh,dense:3 --prune 0.9 --prune-scope global --prune-start-step 10
   --prune-end-step 60 --prune-every 10 --epochs 3)
mpi 2 "$FFN_TRAIN" "${BASE[@]}" "${P[@]}" --checkpoint-dir g --checkpoint-every 10 --keep 0 >/dev/null
mpi 2 "$FFN_TRAIN" "${BASE[@]}" "${P[@]}" --max-steps 40 --checkpoint-dir gpart >/dev/null
mpi 2 "$FFN_TRAIN" "${BASE[@]}" "${P[@]}" --resume gpart/ckpt-0000000040.h5 --checkpoint-dir gres >/dev/null
"$PY" - <<'PY' || fail "gradual global pruning"
import glob, h5py, numpy as np
total = 10 * 24 + 24 * 12 + 12 * 3
for f in sorted(glob.glob("g/ckpt-*.h5")):
    h = h5py.File(f)
    t = int(h["train"].attrs["step"])
    zeros = sum(int((h[f"masks/{i}/W"][()] == 0).sum()) for i in range(3))
    last = min(max(t // 10 * 10, 10), 60) # the last mask update at or before t
    s = 0.9 * (1 - (1 - (last - 10) / 50) ** 3)
    assert zeros == round(s * total), (t, zeros, s * total)
    assert sum(int((h[f"model/{i}/W"][()] == 0).sum()) for i in range(3)) >= zeros
a, b = h5py.File("g/ckpt-0000000114.h5"), h5py.File("gres/ckpt-0000000114.h5")
names = []
a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
for n in names:
    assert np.array_equal(a[n][()], b[n][()]), n
print(f"sparsity on the cubic schedule at {len(glob.glob('g/ckpt-*.h5'))} checkpoints; resumed run bitwise equal")
PY
pass "--prune 0.9 --prune-scope global, cubic from step 10 to 60; masks resume bitwise"
