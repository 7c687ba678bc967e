#!/usr/bin/env bash
# ctest-labels: valgrind
# ctest-timeout: 600
# Valgrind memcheck of a short training and of the tools around it: ffn-train
# on one rank without mpirun (a few steps with validation and checkpoints, then
# a resume, then two error paths), ffn-eval and ffn-data info. Fails on any
# memcheck error and on any definite leak (--errors-for-leak-kinds=definite);
# tests/valgrind.supp holds only Open MPI's own known reports, each commented.
# Skips (77) without valgrind, and on sanitizer builds (valgrind cannot run
# ASan binaries).
SUPP=$(cd "$(dirname "$0")" && pwd)/valgrind.supp
source "$(dirname "$0")/lib/common.sh"
if ! command -v valgrind >/dev/null; then
  echo "SKIP: valgrind is not installed (apt-get install valgrind, or launch/setup.sh --test-deps)"
  exit 77
fi
if grep -qE '^FFN_(SANITIZE|FUZZ):BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
  echo "SKIP: $BUILD is a sanitizer build; valgrind runs the plain build"
  exit 77
fi
VG=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --num-callers=40 --suppressions="$SUPP")

# vg NAME EXPECTED_RC CMD...: CMD under memcheck must exit EXPECTED_RC with no error.
vg() {
  local name=$1 want=$2; shift 2
  set +e
  timeout -k 5 240 "${VG[@]}" --log-file="vg-$name.txt" "$@" >"out-$name.txt" 2>&1
  local rc=$?
  set -e
  if [[ $rc -ne $want ]] || ! grep -q "ERROR SUMMARY: 0 errors" "vg-$name.txt"; then
    cat "vg-$name.txt" "out-$name.txt" >&2
    fail "$name: exit $rc (expected $want) under valgrind memcheck"
  fi
  pass "$name: $(grep -o 'ERROR SUMMARY: .*' "vg-$name.txt" | tail -1)"
}

"$FFN_DATA" synth blobs --rows 120 --features 5 --classes 3 --seed 1 --out train.h5 >/dev/null
"$FFN_DATA" synth blobs --rows 60 --features 5 --classes 3 --seed 2 --out val.h5 >/dev/null
"$PY" -c "
import h5py, numpy as np
x = np.ones((40, 5), np.float32); x[7, 2] = np.nan
with h5py.File('nan.h5', 'w') as f:
    f['x'] = x; f['y'] = np.zeros(40, np.int32); f.attrs['num_classes'] = 3
"
T=(--model dense:8:relu,dense:3 --optimizer adam --batch-size 20 --threads 1 --quiet --checkpoint-dir ck)
vg train 0 "$FFN_TRAIN" --train train.h5 --val val.h5 "${T[@]}" --max-steps 4 --checkpoint-every 2
vg resume 0 "$FFN_TRAIN" --train train.h5 --val val.h5 "${T[@]}" --max-steps 6 --resume latest
ls ck/ckpt-0000000006.h5 >/dev/null || fail "the resumed run wrote no checkpoint at step 6"
vg nan-features 1 "$FFN_TRAIN" --train nan.h5 "${T[@]}" --no-shuffle --max-steps 4 --checkpoint-dir ck-nan
vg wrong-model 2 "$FFN_TRAIN" --train train.h5 --model dense:4,dense:3 --resume ck/ckpt-0000000006.h5 --quiet --threads 1
# --config: the strings of a file and of a checkpoint's config_json live as long as the run, then are freed.
echo '{"train": "train.h5", "model": "dense:8:relu,dense:3", "batch-size": 20, "threads": 1, "quiet": true}' >run.json
vg config-file 0 "$FFN_TRAIN" --config run.json --max-steps 2
vg config-ckpt 0 "$FFN_TRAIN" --config ck/ckpt-0000000006.h5 --checkpoint-dir ck-replay --max-steps 2
echo '{"train": "train.h5", "epoch": 2}' >bad.json
vg config-bad-key 2 "$FFN_TRAIN" --config bad.json
vg eval 0 "$FFN_EVAL" --checkpoint ck/ckpt-0000000006.h5 --data val.h5
vg eval-info 0 "$FFN_EVAL" --info ck/ckpt-0000000006.h5
vg data-info 0 "$FFN_DATA" info train.h5
pass "valgrind memcheck: no errors, no definite leaks outside Open MPI"
