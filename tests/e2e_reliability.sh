#!/usr/bin/env bash
# Bad input and faults: each gives one clear line (from one rank) naming the
# file and field, a non-zero exit, no hang, and never touches an existing
# checkpoint. Prints a table: case | exit code | seconds | message.
source "$(dirname "$0")/lib/common.sh"
"$PY" - <<'PY'
import h5py, numpy as np
rng = np.random.default_rng(0)
def write(name, x=None, y=None, classes=3, **kw):
    with h5py.File(name, "w") as f:
        if x is not None: f.create_dataset("x", data=x)
        if y is not None: f.create_dataset("y", data=y)
        if classes: f.attrs["num_classes"] = classes
x = rng.normal(size=(300, 6)).astype(np.float32); y = (np.arange(300) % 3).astype(np.int32)
write("good.h5", x, y)
write("nox.h5", None, y)
write("noy.h5", x, None)
write("dtype.h5", x.astype(np.int16), y)
write("rank3.h5", x.reshape(300, 2, 3), y)
write("zero.h5", np.zeros((0, 6), np.float32), np.zeros((0,), np.int32))
write("wide.h5", rng.normal(size=(300, 9)).astype(np.float32), y)
yn = y.copy(); yn[17] = -1; write("neglabel.h5", x, yn)
yb = y.copy(); yb[42] = 3; write("biglabel.h5", x, yb)
xn = x.copy(); xn[123, 2] = np.nan; write("nan.h5", xn, y)
xi = x.copy(); xi[7, 0] = np.inf; write("inf.h5", xi, y)
write("tiny.h5", x[:1], y[:1])
write("mismatch.h5", x, y[:200])
open("text.h5", "w").write("this is not an HDF5 file\n" * 100)
PY
head -c 3000 good.h5 >truncated.h5
A=(--model dense:8:relu,dense:3 --epochs 1 --batch-size 30 --quiet --checkpoint-dir ck --threads 1)
# Failures found once training runs need a directory of their own: a fresh run
# into ck (which holds another run's checkpoint) is refused before that.
A2=(--model dense:8:relu,dense:3 --epochs 1 --batch-size 30 --quiet --checkpoint-dir ck2 --threads 1)
# An existing checkpoint that no failure may touch.
"$FFN_TRAIN" --train good.h5 "${A[@]}" >/dev/null

printf '%-34s | %4s | %5s | %s\n' "case" "exit" "secs" "message" >table.txt
# Every case: the existing checkpoint stays as it was (tests/lib/common.sh: check_case).
CASE_WIDTH=34
case_snapshot() { cat ck/*.h5 | md5sum; }
check() { check_case "$@"; }
T=("$FFN_TRAIN")
check "missing file" 1 "nothere.h5" -- "${T[@]}" --train nothere.h5 "${A[@]}"
check "not an HDF5 file" 1 "text.h5" -- "${T[@]}" --train text.h5 "${A[@]}"
check "truncated HDF5 file" 1 "truncated.h5" -- "${T[@]}" --train truncated.h5 "${A[@]}"
check "/x missing" 1 "/x" -- "${T[@]}" --train nox.h5 "${A[@]}"
check "/y missing" 1 "/y" -- "${T[@]}" --train noy.h5 "${A[@]}"
check "wrong dtype (int16 /x)" 1 "/x" -- "${T[@]}" --train dtype.h5 "${A[@]}"
check "wrong rank (3-D /x)" 1 "/x" -- "${T[@]}" --train rank3.h5 "${A[@]}"
check "zero rows" 1 "zero.h5" -- "${T[@]}" --train zero.h5 "${A[@]}"
check "rows of /x and /y differ" 1 "mismatch.h5" -- "${T[@]}" --train mismatch.h5 "${A[@]}"
check "val wider than the model input" 1 "9 features, expected 6" -- "${T[@]}" --train good.h5 --val wide.h5 "${A[@]}"
check "label negative" 1 "neglabel.h5" -- "${T[@]}" --train neglabel.h5 "${A[@]}"
check "label >= num_classes" 1 "biglabel.h5" -- "${T[@]}" --train biglabel.h5 "${A[@]}"
check "fresh run into a used checkpoint dir" 2 "already holds the checkpoints of a run" -- "${T[@]}" --train good.h5 "${A[@]}"
check "NaN in features" 1 "nan.h5" -- "${T[@]}" --train nan.h5 "${A2[@]}" --no-shuffle
check "Inf in features" 1 "inf.h5" -- "${T[@]}" --train inf.h5 "${A2[@]}" --no-shuffle
check "fewer samples than ranks (-np 2)" 1 "fewer than the 2 ranks" -- "$MPIRUN" -np 2 "${T[@]}" --train tiny.h5 "${A[@]}"
check "unknown flag" 2 "unknown flag '--lr-max'" -- "${T[@]}" --train good.h5 --lr-max 3
check "missing value" 2 "--seed: missing value" -- "${T[@]}" --train good.h5 --seed
check "non-numeric value" 2 "--batch-size: expected a positive integer, got 'ten'" -- "${T[@]}" --train good.h5 --batch-size ten
check "negative lr" 2 "--lr: expected a positive number, got '-0.1'" -- "${T[@]}" --train good.h5 --lr -0.1
check "zero batch" 2 "--batch-size: expected a positive integer, got '0'" -- "${T[@]}" --train good.h5 --batch-size 0
check "out-of-range beta1" 2 "--beta1: expected a number in (0, 1)" -- "${T[@]}" --train good.h5 --beta1 1.5
check "huge batch (overflow)" 2 "--batch-size" -- "${T[@]}" --train good.h5 --batch-size 99999999999999999999999
check "model spec does not parse" 2 "model spec item 1" -- "${T[@]}" --train good.h5 --model dense:-3
check "unwritable checkpoint dir" 1 "/proc/ffn-ck" -- "${T[@]}" --train good.h5 --model dense:3 --checkpoint-dir /proc/ffn-ck
# Checkpoint problems.
cp ck/*.h5 other.h5
"$PY" -c "import h5py; f = h5py.File('other.h5', 'r+'); f.attrs.modify('format_version', 7)"
check "checkpoint newer format version" 1 "format_version 7 is newer" -- "${T[@]}" --train good.h5 --resume other.h5 --epochs 2 --quiet
check "checkpoint from another model" 2 "differs from the checkpoint's" -- "${T[@]}" --train good.h5 --resume "$(ls ck/*.h5)" --model dense:5,dense:3 --epochs 2
check "checkpoint not HDF5" 1 "text.h5: not an HDF5 file" -- "${T[@]}" --train good.h5 --resume text.h5
# Faults.
check "loss goes non-finite (lr 1e30)" 1 "training loss is" -- "${T[@]}" --train good.h5 --model dense:8:relu,dense:3 --optimizer sgd --lr 1e30 --epochs 3 --quiet --checkpoint-dir ck2 --checkpoint-every 1000
grep -q "first non-finite values in layer" err.txt || fail "non-finite: no layer named: $(cat err.txt)"
check "read error on rank 1 only (-np 2)" 1 "rank 1: " -- env FFN_DEBUG_FAIL_READ=1:3 "$MPIRUN" -np 2 "${T[@]}" --train good.h5 "${A2[@]}" --checkpoint-every 1000
check "read error on rank 2 of 3" 1 "rank 2: " -- env FFN_DEBUG_FAIL_READ=2:5 "$MPIRUN" -np 3 "${T[@]}" --train good.h5 "${A2[@]}" --checkpoint-every 1000

# One rank SIGKILLed mid-training: the job ends within 10 s.
"$PY" -c "
import h5py, numpy as np
r = np.random.default_rng(1)
with h5py.File('big.h5', 'w') as f:
    f.create_dataset('x', data=r.normal(size=(20000, 64)).astype(np.float32))
    f.create_dataset('y', data=(np.arange(20000) % 3).astype(np.int32))
"
timeout -k 5 100 "$MPIRUN" -np 2 "$FFN_TRAIN" --train "$WORK/big.h5" --model dense:128:relu,dense:3 --epochs 50 --batch-size 8 --quiet --threads 1 >/dev/null 2>kill.txt &
job=$!
# Both ranks up and training (on a loaded machine start-up can take seconds).
victim=""
for _ in $(seq 300); do
  # (this test's own ranks: other tests running beside it train on a big.h5 of their own)
  [[ $(pgrep -fc "^$FFN_TRAIN --train $WORK/big.h5" || true) -ge 2 ]] && { sleep 1; victim=$(pgrep -f "^$FFN_TRAIN --train $WORK/big.h5" | tail -1); break; }
  sleep 0.1
done
[[ -n $victim ]] || fail "no rank to kill"
t0=$(date +%s.%N); kill -KILL "$victim"
set +e; wait $job; rc=$?; set -e
secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
printf '%-34s | %4s | %5s | %s\n' "one rank SIGKILLed (-np 2)" "$rc" "$secs" "$(grep -m1 -i 'signal\|killed\|exited' kill.txt)" >>table.txt
[[ $rc -ne 0 ]] || fail "SIGKILL of one rank: exit 0"
awk -v s="$secs" 'BEGIN { exit !(s < 10) }' || fail "SIGKILL of one rank: the job took $secs s to end"

# Killed while writing a checkpoint: the previous one stays loadable and resumes.
set +e
FFN_DEBUG_KILL_IN_SAVE=2 "$FFN_TRAIN" --train good.h5 --model dense:8:relu,dense:3 --epochs 3 --batch-size 30 --quiet --checkpoint-dir crash >/dev/null 2>&1
rc=$?
set -e
[[ $rc -eq 137 ]] || fail "kill during save: exit $rc, expected 137 (SIGKILL)"
ls crash/ckpt-0000000010.h5 >/dev/null && ls crash/*.tmp >/dev/null || fail "kill during save: expected epoch 1's checkpoint and a leftover .tmp: $(ls crash)"
[[ ! -e crash/ckpt-0000000020.h5 ]] || fail "a half-written checkpoint appeared under its real name"
"$FFN_TRAIN" --train good.h5 --model dense:8:relu,dense:3 --epochs 3 --batch-size 30 --quiet --checkpoint-dir crash --resume latest >out.txt
grep -q "^train: loss" out.txt && [[ -f crash/ckpt-0000000030.h5 ]] || fail "resume after a crash during save failed"
printf '%-34s | %4s | %5s | %s\n' "killed while writing a checkpoint" "137" "-" "previous checkpoint (step 10) kept; resume latest finishes" >>table.txt

# Disk full while writing a checkpoint (a 400 KiB tmpfs, where mounting is allowed).
mkdir -p full
if mount -t tmpfs -o size=400k ffn-test-full full 2>/dev/null; then
  trap 'umount "$WORK/full" 2>/dev/null; rm -rf "$WORK"' EXIT
  check "disk full while checkpointing" 1 "disk full" -- "${T[@]}" --train good.h5 --model dense:128:relu,dense:128:relu,dense:3 --epochs 3 --batch-size 30 --quiet --checkpoint-dir full --keep 0
  ls full/ckpt-*.h5 >/dev/null || fail "disk full: the earlier checkpoint is gone"
  [[ -z $(ls full/*.tmp 2>/dev/null) ]] || fail "disk full: a temporary file was left behind"
  "$FFN_EVAL" --info "$(ls full/ckpt-*.h5 | head -1)" >/dev/null || fail "disk full: the kept checkpoint does not load"
else
  echo "note: cannot mount a tmpfs here; disk-full case not run"
fi
cat table.txt
pass "bad input and faults"
