#!/usr/bin/env bash
# Run safety (issue 14): a run never destroys, mislabels or hangs on its own
# work. Resume lineage, non-finite state, outputs over inputs, resume
# compatibility, the checkpoint-directory lock, out-of-range counts and a
# stalled rank. Every case checks the exit code, the one message, the time to
# exit and that no file it must not touch changed; a table of the cases is
# printed at the end.
# ctest-timeout: 600
REPO=$(cd "$(dirname "$0")/.." && pwd)
source "$REPO/tests/lib/common.sh"

"$FFN_DATA" synth blobs --rows 300 --features 6 --classes 3 --seed 1 --out good.h5 >/dev/null
"$FFN_DATA" synth blobs --rows 240 --features 6 --classes 3 --seed 2 --out other.h5 >/dev/null
"$FFN_DATA" synth blobs --rows 100 --features 6 --classes 3 --seed 3 --out test.h5 >/dev/null
"$FFN_DATA" synth regression --rows 300 --features 6 --classes 1 --seed 4 --out reg.h5 >/dev/null
"$FFN_DATA" synth blobs --rows 20000 --features 64 --classes 3 --seed 5 --out big.h5 >/dev/null
M=(--model dense:8:relu,dense:3 --batch-size 30 --seed 3 --threads 1 --quiet)
# 300 rows / 30 = 10 steps an epoch; a checkpoint every epoch.
"$FFN_TRAIN" --train good.h5 "${M[@]}" --epochs 3 --checkpoint-dir d1 >/dev/null
ls d1/ckpt-0000000010.h5 d1/ckpt-0000000020.h5 d1/ckpt-0000000030.h5 >/dev/null || fail "setup: $(ls d1)"

sums() { find "$@" -type f ! -name ffn.lock -print0 | sort -z | xargs -0 md5sum; }
printf '%-44s | %4s | %5s | %s\n' "case" "exit" "secs" "message" >table.txt
# check NAME RC TEXT [--keep PATHS] -- CMD...: tests/lib/common.sh's check_case, with
# the files under PATHS (default d1 and the datasets) unchanged.
CASE_WIDTH=44 CASE_TIMEOUT=120
KEEP=()
case_snapshot() { sums "${KEEP[@]}"; }
check() {
  KEEP=(d1 good.h5 other.h5 test.h5)
  if [[ $4 == --keep ]]; then KEEP=($5); set -- "$1" "$2" "$3" "${@:6}"; fi
  check_case "$@"
}
T=("$FFN_TRAIN")

# ---- resume lineage
check "resume behind the directory's newest" 2 "already holds d1/ckpt-0000000030.h5" -- \
  "${T[@]}" --train good.h5 "${M[@]}" --epochs 3 --resume d1/ckpt-0000000010.h5 --checkpoint-dir d1
check "resume with fewer --epochs than done" 2 "past the end of this run" -- \
  "${T[@]}" --train good.h5 "${M[@]}" --epochs 2 --resume latest --checkpoint-dir d1
check "fresh run into a directory with checkpoints" 2 "already holds the checkpoints of a run" -- \
  "${T[@]}" --train good.h5 "${M[@]}" --epochs 3 --checkpoint-dir d1
# A branch goes to a directory of its own, and continues the same run exactly.
"$FFN_TRAIN" --train good.h5 "${M[@]}" --epochs 3 --resume d1/ckpt-0000000010.h5 --checkpoint-dir d2 >/dev/null
"$PY" - <<'PY' || fail "a branch from step 10 does not continue the run bitwise"
import h5py, numpy as np
a, b = h5py.File("d1/ckpt-0000000030.h5"), h5py.File("d2/ckpt-0000000030.h5")
for k in ("model/0/W", "model/0/b", "model/1/W", "model/1/b", "optimizer/m", "optimizer/v"):
    assert np.array_equal(a[k][()], b[k][()]), k
assert b["train"].attrs["step"] == 30 and b["optimizer"].attrs["step_count"] == 30
PY
# --keep never deletes the checkpoint the run resumed from.
"$FFN_TRAIN" --train good.h5 "${M[@]}" --epochs 1 --checkpoint-dir d4 --keep 1 >/dev/null
"$FFN_TRAIN" --train good.h5 "${M[@]}" --epochs 3 --checkpoint-dir d4 --keep 1 --resume latest >/dev/null
[[ $(ls d4 | grep -c '^ckpt-') -eq 2 && -f d4/ckpt-0000000010.h5 && -f d4/ckpt-0000000030.h5 ]] ||
  fail "--keep 1 after a resume left: $(ls d4)"
printf '%-44s | %4s | %5s | %s\n' "--keep 1 while resuming" "0" "-" "the resume source and the newest kept" >>table.txt
# A file whose step and optimizer step count disagree (as older versions could write) is refused at start.
cp d1/ckpt-0000000030.h5 mixed.h5
"$PY" -c "import h5py; f = h5py.File('mixed.h5', 'r+'); f['optimizer'].attrs.modify('step_count', 20)"
check "resume from a file mixing two steps' states" 1 "/train step 30 but /optimizer step_count 20" -- \
  "${T[@]}" --train good.h5 "${M[@]}" --epochs 4 --resume mixed.h5 --checkpoint-dir d3
pass "lineage: behind-newest, past-the-end and mixed directories refused; a branch continues bitwise; --keep spares the source"

# ---- non-finite state
check "diverging run (sgd lr 1e30, relu, mse)" 1 "non-finite" --keep "good.h5" -- \
  "${T[@]}" --train reg.h5 --test reg.h5 --model dense:16:relu,dense:1 --loss mse --optimizer sgd --lr 1e30 \
  --epochs 3 --batch-size 30 --threads 1 --quiet --checkpoint-dir d5
grep -q "test: loss" out.txt && fail "a diverged run printed a test loss: $(cat out.txt)"
"$PY" - <<'PY' || fail "a non-finite checkpoint was written"
import glob, h5py, numpy as np
for p in glob.glob("d5/ckpt-*.h5"):
    f = h5py.File(p)
    f.visititems(lambda n, o: None if not isinstance(o, h5py.Dataset) or np.all(np.isfinite(o[()])) else
                 (_ for _ in ()).throw(AssertionError(p + ":" + n)))
PY
# --resume latest falls back over a corrupted newest and a non-finite one.
cp -r d1 d6
"$PY" - <<'PY'
import h5py, numpy as np
f = h5py.File("d6/ckpt-0000000030.h5", "r")
off = f["model/1/W"].id.get_chunk_info(0).byte_offset
f.close()
with open("d6/ckpt-0000000030.h5", "r+b") as g:
    g.seek(off + 8); b = g.read(1); g.seek(off + 8); g.write(bytes([b[0] ^ 0xFF]))
with h5py.File("d6/ckpt-0000000020.h5", "r+") as f:
    w = f["model/0/W"]; v = w[()]; v[0, 0] = np.inf; w[...] = v
PY
check "--resume latest: newest corrupted, next non-finite" 0 "moved aside" --keep "good.h5" -- \
  "${T[@]}" --train good.h5 "${M[@]}" --epochs 4 --resume latest --checkpoint-dir d6
grep -q "resuming from d6/ckpt-0000000010.h5" out.txt || true
[[ -f d6/ckpt-0000000030.h5.bad && -f d6/ckpt-0000000020.h5.bad && -f d6/ckpt-0000000040.h5 ]] ||
  fail "fallback: $(ls d6)"
[[ $(grep -c "unusable" err.txt) -eq 2 ]] || fail "fallback: expected two warnings: $(cat err.txt)"
cp d6/ckpt-0000000020.h5.bad nonfinite.h5
check "ffn-eval on a non-finite checkpoint" 1 "non-finite" -- "$FFN_EVAL" --checkpoint nonfinite.h5 --data good.h5
pass "non-finite: no such checkpoint written, no test line; resume latest falls back; ffn-eval refuses"

# ---- outputs over inputs
check "--metrics is --train, spelled otherwise" 2 "is the same file as --train" -- \
  "${T[@]}" --train good.h5 "${M[@]}" --epochs 1 --metrics ./../"$(basename "$PWD")"/good.h5
ln test.h5 hard.h5
check "--metrics is a hard link of --test" 2 "is the same file as --test" -- \
  "${T[@]}" --train good.h5 --test test.h5 "${M[@]}" --epochs 1 --metrics hard.h5
mkdir d7 && cp test.h5 d7/ckpt-0000000010.h5
check "--val named as a checkpoint in --checkpoint-dir" 2 "is one of --checkpoint-dir d7's checkpoints" --keep "d7" -- \
  "${T[@]}" --train good.h5 --val d7/ckpt-0000000010.h5 "${M[@]}" --epochs 1 --checkpoint-dir d7
pass "outputs over inputs refused by file identity"

# ---- resume compatibility
check "resume with another --batch-size" 2 "--batch-size 30, but this one has --batch-size 20" -- \
  "${T[@]}" --train good.h5 "${M[@]}" --batch-size 20 --epochs 4 --resume d1/ckpt-0000000030.h5 --checkpoint-dir d8
check "resume on another training set" 2 "trained on 300 rows with 3 classes, but --train other.h5 has 240" -- \
  "${T[@]}" --train other.h5 "${M[@]}" --epochs 4 --resume d1/ckpt-0000000030.h5 --checkpoint-dir d8
check "... with --allow-data-change" 0 "training goes on at step 30" -- \
  "${T[@]}" --train other.h5 "${M[@]}" --epochs 4 --resume d1/ckpt-0000000030.h5 --checkpoint-dir d9 --allow-data-change
[[ -f d9/ckpt-0000000038.h5 ]] || fail "--allow-data-change: expected 8 steps of the new epoch: $(ls d9)"
check "resume adding --prune" 2 "--prune 0, but this one has --prune 0.5" -- \
  "${T[@]}" --train good.h5 "${M[@]}" --epochs 4 --resume d1/ckpt-0000000030.h5 --prune 0.5 --checkpoint-dir d8
check "resume adding --lora" 2 "--lora 0, but this one has --lora 2" -- \
  "${T[@]}" --train good.h5 "${M[@]}" --epochs 4 --resume d1/ckpt-0000000030.h5 --lora 2 --checkpoint-dir d8
pass "resume keeps its batch, data and what trains"

# ---- counts out of range
check "--batch-size 2^64-1" 2 "--batch-size: expected an integer in [1, 1073741824]" -- \
  "${T[@]}" --train good.h5 --batch-size 18446744073709551615
check "--accumulate 2^64-1" 2 "--accumulate: expected an integer in [1, 1048576]" -- \
  "${T[@]}" --train good.h5 --accumulate 18446744073709551615
check "--epochs 2^62" 2 "--epochs: expected an integer in [1, 1099511627776]" -- \
  "${T[@]}" --train good.h5 --epochs 4611686018427387904
check "init_param=1e39" 2 "init_param must be a positive number" -- \
  "${T[@]}" --train good.h5 --model dense:8:init=uniform:init_param=1e39,dense:3
pass "counts and numbers beyond range refused with the flag named"

# ---- two runs, one directory: the lock
# The data's absolute path tells this test's ranks from those of tests running beside it.
LONG=(--train "$WORK/big.h5" --model dense:512:relu,dense:512:relu,dense:3 --batch-size 16 --epochs 50 --threads 1 --quiet)
mpi 2 "$FFN_TRAIN" "${LONG[@]}" --checkpoint-dir dl >/dev/null 2>long.err &
job=$!
for _ in $(seq 300); do [[ -s dl/ffn.lock ]] && break; sleep 0.1; done
check "second run into a live run's directory" 1 "in use by another run (host=" --keep "good.h5" -- \
  "${T[@]}" --train good.h5 "${M[@]}" --epochs 1 --checkpoint-dir dl
grep -q "pid=" err.txt || fail "lock: the holder's pid is not named: $(cat err.txt)"
check "launch/local.sh into a live run's directory" 1 "in use" --keep "good.h5" -- \
  env FFN_BIN="$FFN_TRAIN" bash "$REPO/launch/local.sh" -n 1 -- --train good.h5 "${M[@]}" --epochs 1 --checkpoint-dir dl
# ---- a stalled rank (the live run above): SIGSTOP one rank; the job ends, naming it.
pkill -USR1 -f "^$FFN_TRAIN --train $WORK/big.h5 .*--checkpoint-dir dl" || true
wait "$job" || true
stall() { # NP WHICH(head|tail) EXPECTED_RANK
  mpi "$1" "$FFN_TRAIN" "${LONG[@]}" --stall-timeout 3 >/dev/null 2>stall.err &
  local j=$! v=""
  for _ in $(seq 300); do
    [[ $(pgrep -fc "^$FFN_TRAIN --train $WORK/big.h5 .*--stall-timeout 3" || true) -ge $1 ]] &&
      { sleep 1.5; v=$(pgrep -f "^$FFN_TRAIN --train $WORK/big.h5 .*--stall-timeout 3" | "$2" -1); break; }
    sleep 0.1
  done
  [[ -n $v ]] || fail "stall: no rank to stop"
  local t0; t0=$(date +%s.%N)
  kill -STOP "$v"
  set +e; wait "$j"; local rc=$?; set -e
  kill -KILL "$v" 2>/dev/null || true
  local secs; secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
  local msg; msg=$(grep -m1 "did not reach" stall.err || true)
  printf '%-44s | %4s | %5s | %s\n' "rank $3 of $1 stopped (SIGSTOP), --stall-timeout 3" "$rc" "$secs" "$msg" >>table.txt
  [[ $rc -eq 1 ]] || fail "stall: exit $rc, expected 1: $(cat stall.err)"
  [[ $msg == *"rank $3 did not reach the gradient exchange of step"* ]] || fail "stall: $(cat stall.err)"
  [[ $(grep -c "did not reach" stall.err) -eq 1 ]] || fail "stall: more than one message: $(cat stall.err)"
  awk -v s="$secs" 'BEGIN { exit !(s < 20) }' || fail "stall: the job took $secs s to end"
}
stall 2 tail 1
stall 3 head 0
pass "a second run into a live directory is refused naming the holder; a stalled rank ends the job, named"

cat table.txt
