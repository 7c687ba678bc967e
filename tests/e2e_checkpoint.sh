#!/usr/bin/env bash
# Checkpoints: exact resume (bitwise at the same rank count, same curve at
# another), cadence, --keep, --resume latest, stop on a signal then resume,
# fine-tuning flags, and refusal of corrupted or incompatible files.
source "$(dirname "$0")/lib/common.sh"

"$FFN_DATA" synth blobs --rows 1200 --features 10 --classes 3 --noise 2 --seed 21 --out train.h5 >/dev/null
ARGS=(--train train.h5 --model dense:24:relu,dense:12:tanh,dense:3 --loss softmax_ce --optimizer adam
      --lr 0.003 --batch-size 32 --seed 9 --quiet --threads 1 --log-every 1)
# 1200 / 32 = 38 steps per epoch (the last has 16 rows).

# 1. Uninterrupted 2 epochs vs 1 epoch + resume for 1, at 2 ranks: bitwise.
mpi 2 "$FFN_TRAIN" "${ARGS[@]}" --epochs 2 --checkpoint-dir full --metrics full.csv
mpi 2 "$FFN_TRAIN" "${ARGS[@]}" --epochs 1 --checkpoint-dir part
[[ -f part/ckpt-0000000038.h5 ]] || fail "no checkpoint after epoch 1"
mpi 2 "$FFN_TRAIN" "${ARGS[@]}" --epochs 2 --checkpoint-dir part --resume latest --metrics resumed.csv
same_params full/ckpt-0000000076.h5 part/ckpt-0000000076.h5 || fail "resumed run is not bitwise identical"
pass "resume at the same rank count: bitwise identical parameters and optimizer state"

# 2. Resume the 2-rank checkpoint at 1 and 3 ranks: same global batches, same curve.
for np in 1 3; do
  mpi $np "$FFN_TRAIN" "${ARGS[@]}" --epochs 2 --resume part/ckpt-0000000038.h5 --checkpoint-dir r$np --metrics r$np.csv
done
"$PY" - <<'PY' || fail "resume at another rank count diverged"
import csv, numpy as np
def curve(f): return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(open(f)) if r["kind"] == "step"}
full = curve("full.csv")
for f in ("r1.csv", "r3.csv"):
    c = curve(f)
    assert sorted(c) == list(range(39, 77)), sorted(c)[:3]
    rel = max(abs(c[s] - full[s]) / abs(full[s]) for s in c)
    print(f"{f}: max relative loss difference {rel:.2e} over steps 39-76")
    assert rel < 1e-4
PY
pass "resume at 1 and 3 ranks follows the uninterrupted curve"

# 3. Cadence and --keep.
"$FFN_TRAIN" "${ARGS[@]}" --epochs 2 --checkpoint-dir every --checkpoint-every 10steps --keep 2
ls every | grep "^ckpt-" | sort >list.txt
printf 'ckpt-0000000070.h5\nckpt-0000000076.h5\n' | cmp -s - list.txt || fail "--keep 2 left: $(cat list.txt)"
pass "--checkpoint-every 10steps --keep 2"

# 4. Stopped by a signal mid-run, then resumed: the same bits as the uninterrupted run.
# Wide enough to run for seconds: the signal must land mid-run.
"$FFN_DATA" synth blobs --rows 20000 --features 64 --classes 3 --noise 2 --seed 22 --out big.h5 >/dev/null
BIG=(--train big.h5 --model dense:512:relu,dense:512:relu,dense:3 --loss softmax_ce --lr 0.001 --batch-size 16 --seed 4 --quiet --threads 1 --epochs 2 --log-every 50)
mpi 2 "$FFN_TRAIN" "${BIG[@]}" --checkpoint-dir sigfull >/dev/null
# wait_steps FILE: until the metrics file shows some progress (so the signal lands mid-run).
wait_steps() { for _ in $(seq 200); do [[ $(grep -c '"step"' "$1" 2>/dev/null || true) -ge 3 ]] && return 0; sleep 0.05; done; return 1; }
timeout -k 5 120 "$MPIRUN" -np 2 "$FFN_TRAIN" "${BIG[@]}" --checkpoint-dir sig --metrics sig.jsonl >sig.txt 2>sigerr.txt &
pid=$!
wait_steps sig.jsonl || fail "the run to be signalled made no progress"
pkill -USR1 -P $pid -x mpirun || pkill -USR1 -P $pid  # mpirun forwards SIGUSR1 to every rank
set +e; wait $pid; rc=$?; set -e
[[ $rc -eq 75 ]] || fail "SIGUSR1: exit code $rc, expected 75 ($(cat sigerr.txt))"
grep -q "stopped by a signal after step" sigerr.txt || fail "SIGUSR1 message: $(cat sigerr.txt)"
ls sig/ckpt-*.h5 >/dev/null || fail "no checkpoint written on SIGUSR1"
mpi 2 "$FFN_TRAIN" "${BIG[@]}" --checkpoint-dir sig --resume latest >/dev/null
same_params sigfull/ckpt-0000002500.h5 sig/ckpt-0000002500.h5 || fail "run stopped by SIGUSR1 and resumed differs"
pass "SIGUSR1: $(grep -m1 stopped sigerr.txt); resumed run bitwise equal"
# SIGTERM on a one-rank run (no mpirun).
"$FFN_TRAIN" "${BIG[@]}" --checkpoint-dir term --metrics term.jsonl >/dev/null 2>termerr.txt &
pid=$!
wait_steps term.jsonl || fail "the run to be terminated made no progress"
kill -TERM $pid
set +e; wait $pid; rc=$?; set -e
[[ $rc -eq 75 ]] && ls term/ckpt-*.h5 >/dev/null || fail "SIGTERM: exit $rc, $(cat termerr.txt)"
pass "SIGTERM: exit 75 with a checkpoint"

# 5. Fine-tuning: new head, frozen first layer.
"$FFN_DATA" synth blobs --rows 600 --features 10 --classes 5 --noise 2 --seed 23 --out five.h5 >/dev/null
"$FFN_TRAIN" --train five.h5 --init-from full/ckpt-0000000076.h5 --replace-head 5 --freeze 0 --epochs 2 \
  --batch-size 32 --checkpoint-dir ft --quiet >/dev/null
"$PY" - <<'PY' || fail "fine-tuning did not keep layer 0 / replace the head"
import h5py, numpy as np
a, b = h5py.File("full/ckpt-0000000076.h5"), h5py.File("ft/ckpt-0000000038.h5")
assert np.array_equal(a["model/0/W"][()], b["model/0/W"][()]), "frozen layer 0 changed"
assert not np.array_equal(a["model/1/W"][()], b["model/1/W"][()]), "layer 1 did not train"
assert b["model/2/W"].shape == (5, 12), b["model/2/W"].shape
assert b["train"].attrs["step"] == 38
PY
pass "--init-from --replace-head 5 --freeze 0"
set +e; "$FFN_TRAIN" --train five.h5 --init-from full/ckpt-0000000076.h5 --epochs 1 >/dev/null 2>err.txt; rc=$?; set -e
[[ $rc -ne 0 ]] && grep -q "labels go up to 5 classes, but the model outputs 3" err.txt || fail "head mismatch: rc $rc $(cat err.txt)"
set +e; "$FFN_TRAIN" --train five.h5 --init-from full/ckpt-0000000076.h5 --model dense:20:relu,dense:5 --epochs 1 >/dev/null 2>err.txt; rc=$?; set -e
grep -q "layer 0's W is \[20, 10\] in the model but \[24, 10\] in the checkpoint" err.txt || fail "shape mismatch message: $(cat err.txt)"
pass "shape mismatches name the layer and both shapes"

# 6. ffn-eval reads the checkpoint and agrees with training's own evaluation.
"$FFN_EVAL" --checkpoint full/ckpt-0000000076.h5 --data train.h5 >eval.txt
grep -q "confusion matrix" eval.txt || fail "ffn-eval printed no confusion matrix"
"$FFN_EVAL" --info full/ckpt-0000000076.h5 | grep -q "optimizer: adam, 76 steps" || fail "ffn-eval --info"
pass "ffn-eval: $(tail -1 eval.txt)"

# 7. Corrupted and incompatible checkpoints are refused with the dataset named.
cp full/ckpt-0000000076.h5 bad.h5
"$PY" - <<'PY'
import h5py
f = h5py.File("bad.h5", "r")
off = f["model/1/W"].id.get_chunk_info(0).byte_offset
f.close()
with open("bad.h5", "r+b") as g:
    g.seek(off + 40); b = g.read(1); g.seek(off + 40); g.write(bytes([b[0] ^ 0xFF]))
PY
set +e; "$FFN_TRAIN" "${ARGS[@]}" --epochs 3 --resume bad.h5 >/dev/null 2>err.txt; rc=$?; set -e
[[ $rc -eq 1 ]] && grep -q "/model/1/W failed its checksum" err.txt || fail "corrupt checkpoint: rc $rc $(cat err.txt)"
cp full/ckpt-0000000076.h5 newer.h5
"$PY" -c "import h5py; f = h5py.File('newer.h5', 'r+'); f.attrs.modify('format_version', 99)"
set +e; "$FFN_EVAL" --info newer.h5 >/dev/null 2>err.txt; rc=$?; set -e
[[ $rc -eq 1 ]] && grep -q "format_version 99 is newer" err.txt || fail "newer format: $(cat err.txt)"
set +e; "$FFN_TRAIN" "${ARGS[@]}" --epochs 3 --resume full/ckpt-0000000076.h5 --optimizer sgd >/dev/null 2>err.txt; rc=$?; set -e
grep -q "optimizer is adam, but --optimizer is sgd" err.txt || fail "optimizer mismatch: $(cat err.txt)"
pass "corrupted, newer and incompatible checkpoints refused"
