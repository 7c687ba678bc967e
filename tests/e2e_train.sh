#!/usr/bin/env bash
# ffn-train end to end on one rank: learning on generated data, the flags,
# --help, the parseable final line, metrics files, and usage errors.
source "$(dirname "$0")/lib/common.sh"

"$FFN_DATA" synth moons --rows 2000 --seed 1 --out moons-train.h5 >/dev/null
"$FFN_DATA" synth moons --rows 1000 --seed 2 --out moons-test.h5 >/dev/null

# The issue's two-layer binary classifier: 2 -> 4 ReLU -> 1 (sigmoid in the bce loss).
"$FFN_TRAIN" --train moons-train.h5 --test moons-test.h5 --model dense:4:relu,dense:1 --loss bce \
  --optimizer adam --lr 0.02 --batch-size 32 --epochs 40 --seed 3 --metrics m.jsonl >out.txt
last=$(tail -1 out.txt)
[[ $last =~ ^test:\ loss\ [0-9.]+\ accuracy\ [0-9.]+$ ]] || fail "last line is not 'test: loss X accuracy Y': $last"
acc=$(field out.txt '^test:' accuracy)
ge "$acc" 0.97 || fail "moons 2-4-1 test accuracy $acc < 0.97"
pass "moons 2->4 relu->1 bce: test accuracy $acc"
[[ $(grep -c '"kind":"epoch"' m.jsonl) -eq 40 ]] || fail "metrics: expected 40 epoch records"
"$PY" - <<'PY' || fail "metrics JSON lines do not parse or lack fields"
import json
recs = [json.loads(l) for l in open("m.jsonl")]
ep = [r for r in recs if r["kind"] == "epoch"]
assert all(k in ep[0] for k in ("loss", "accuracy", "lr", "samples_per_s", "elapsed_s")), ep[0]
assert ep[-1]["loss"] < ep[0]["loss"], (ep[0]["loss"], ep[-1]["loss"])
assert recs[-1]["kind"] == "test"
PY
pass "metrics JSON lines"

# Every optimizer and loss learns the blobs set (3 classes, 5 features).
"$FFN_DATA" synth blobs --rows 1500 --features 5 --classes 3 --seed 4 --out blobs.h5 >/dev/null
for opt in "sgd --lr 0.1 --momentum 0.9 --nesterov" "adam --lr 0.01" "adamw --lr 0.01 --weight-decay 0.01" "rmsprop --lr 0.005"; do
  for loss in softmax_ce mse; do
    "$FFN_TRAIN" --train blobs.h5 --model dense:16:tanh,dense:3 --loss $loss --optimizer $opt \
      --batch-size 50 --epochs 15 --lr-schedule cosine --warmup-steps 10 --clip-norm 5 --quiet >o.txt
    acc=$(field o.txt '^train:' accuracy)
    ge "$acc" 0.9 || fail "blobs with --optimizer $opt --loss $loss: accuracy $acc < 0.9"
  done
done
pass "sgd/adam/adamw/rmsprop x softmax_ce/mse learn blobs"

# Reproducible: the same seed gives the same bits (CSV metrics compared whole).
for i in 1 2; do
  "$FFN_TRAIN" --train blobs.h5 --model dense:8:relu,dense:3 --epochs 2 --seed 7 --metrics r$i.csv --log-every 1 --quiet >/dev/null
done
cut -d, -f1-8 r1.csv >a; cut -d, -f1-8 r2.csv >b
cmp -s a b || fail "two runs with the same seed differ"
pass "same seed, same loss curve"

# The vector sets (FFN_KERNELS): named on the banner, and every one of them
# gives the same loss curve bit for bit (ReLU, bias sums and each optimizer's
# update round alike on AVX-512, AVX2 and plain x86-64; GELU is test_act_kernels').
for opt in "adam --weight-decay 0.01" "adamw" "sgd --momentum 0.9 --nesterov" "rmsprop"; do
  "$FFN_TRAIN" --train blobs.h5 --model dense:8:relu,dense:3 --epochs 2 --seed 7 --optimizer $opt --lr 0.01 \
    --metrics k0.csv --log-every 1 >k0.txt
  want=$(head -1 k0.txt | sed -n 's/.*; element-wise loops on \(.*\)$/\1/p')
  [[ -n $want ]] || fail "the banner does not name the vector set: $(head -1 k0.txt)"
  cut -d, -f1-8 k0.csv >a
  for set in avx2 portable; do
    FFN_KERNELS=$set "$FFN_TRAIN" --train blobs.h5 --model dense:8:relu,dense:3 --epochs 2 --seed 7 \
      --optimizer $opt --lr 0.01 --metrics k1.csv --log-every 1 >k1.txt
    got=$(head -1 k1.txt | sed -n 's/.*; element-wise loops on \(.*\)$/\1/p')
    [[ $set != portable || $got == portable ]] || fail "FFN_KERNELS=portable: the banner says '$got'"
    cut -d, -f1-8 k1.csv >b
    cmp -s a b || fail "--optimizer $opt: the loss curve on $got differs from $want's"
  done
done
pass "the loss curves of adam, adamw, sgd and rmsprop bitwise equal on every vector set (here $want)"

# --help documents every flag with its default.
"$FFN_TRAIN" --help >help.txt
for flag in train val test model loss optimizer lr batch-size epochs seed checkpoint-dir resume init-from \
            replace-head freeze threads metrics check-replicas; do
  grep -q -- "--$flag" help.txt || fail "--help does not mention --$flag"
done
grep -q -- '--lr X.*default: 0.001' help.txt || fail "--help does not give --lr's default"
pass "--help"

# Usage errors: exit 2 and one message naming the flag.
expect_usage() {
  local want=$1; shift
  set +e; "$FFN_TRAIN" "$@" >/dev/null 2>err.txt; local rc=$?; set -e
  [[ $rc -eq 2 ]] || fail "ffn-train $* exited $rc, expected 2"
  grep -q -- "$want" err.txt || fail "ffn-train $*: message lacks '$want': $(cat err.txt)"
}
expect_usage "unknown flag '--bogus'" --train blobs.h5 --bogus 1
expect_usage "--lr: expected a positive number, got '-1'" --train blobs.h5 --lr -1
expect_usage "--batch-size: expected a positive integer, got '0'" --train blobs.h5 --batch-size 0
expect_usage "--epochs: missing value" --train blobs.h5 --epochs
expect_usage "--lr: expected a finite number, got 'abc'" --train blobs.h5 --lr abc
expect_usage "--loss: expected mse, bce or softmax_ce" --train blobs.h5 --loss hinge
expect_usage "--train: missing" --epochs 1
expect_usage "model spec item 2" --train blobs.h5 --model dense:8:relu,dense:x
expect_usage "unknown activation 'relux'" --train blobs.h5 --model dense:8:relux,dense:3
expect_usage "last layer's activation must be identity" --train blobs.h5 --model dense:8,dense:3:softmax
pass "usage errors exit 2 with a clear message"

# Data errors: exit 1 naming the file.
set +e; "$FFN_TRAIN" --train missing.h5 >/dev/null 2>err.txt; rc=$?; set -e
[[ $rc -eq 1 ]] && grep -q "missing.h5" err.txt || fail "missing file: rc $rc, $(cat err.txt)"
set +e; "$FFN_TRAIN" --train blobs.h5 --model dense:8,dense:2 >/dev/null 2>err.txt; rc=$?; set -e
[[ $rc -eq 1 ]] && grep -q "blobs.h5" err.txt && grep -q "3 classes" err.txt || fail "class count mismatch: rc $rc, $(cat err.txt)"
pass "data errors exit 1 naming the file"
