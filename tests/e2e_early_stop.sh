#!/usr/bin/env bash
# Early stopping and the best model: --early-stop stops at the epoch the
# metrics file's val_loss column says; --keep-best's ckpt-best.h5 holds the
# best epoch's parameters; a run stopped by SIGUSR1 and resumed makes the same
# decisions and ends with the same bits; --log-every records are running means;
# the refusals.
source "$(dirname "$0")/lib/common.sh"

"$FFN_DATA" synth spirals --rows 1300 --noise 0.4 --seed 1 --out all.h5 >/dev/null
"$FFN_DATA" split all.h5 --train-out train.h5 --val-out val.h5 --val-count 1000 --seed 1 >/dev/null
# 300 rows / 16 = 19 steps per epoch; far more epochs than it needs, so it overfits and stops.
ARGS=(--train train.h5 --val val.h5 --loss softmax_ce --optimizer adam --batch-size 16 --epochs 60 --threads 1)
SMALL=(--model dense:128:relu,dense:128:relu,dense:3 --lr 0.01 --seed 3)

# expected_stop CSV PATIENCE: "STOP BEST_EPOCH BEST_LOSS" recomputed from the epoch records' val_loss.
expected_stop() {
  "$PY" - "$1" "$2" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["kind"] == "epoch"]
patience = int(sys.argv[2])
best, best_epoch, stale, stop = float("inf"), 0, 0, None
for r in rows:
    v = float(r["val_loss"])
    if v < best: best, best_epoch, stale = v, int(r["epoch"]), 0
    else: stale += 1
    if stale >= patience: stop = int(r["epoch"]); break
assert stop is not None, "the metrics say it should not have stopped"
assert int(rows[-1]["epoch"]) == stop, f"the last epoch record is {rows[-1]['epoch']}, the val_loss column says {stop}"
print(stop, best_epoch, repr(best))
PY
}
attr() { "$PY" -c "import h5py,sys; print(h5py.File(sys.argv[1])['train'].attrs[sys.argv[2]])" "$1" "$2"; }

# 1. It stops early, at the epoch the metrics file says, exit 0, after the test evaluation.
mpi 2 "$FFN_TRAIN" "${ARGS[@]}" "${SMALL[@]}" --test val.h5 --early-stop 3 --keep-best --checkpoint-dir es \
  --metrics es.csv >es.txt
read -r stop best_epoch best_loss < <(expected_stop es.csv 3) || fail "stop epoch: $(cat es.txt)"
[[ $stop -lt 60 ]] || fail "no early stop in 60 epochs"
grep -q "^early stop: val loss has not improved for 3 epochs (best .* at epoch $best_epoch, .*stopping after epoch $stop\$" es.txt ||
  fail "early-stop line: $(grep early es.txt)"
tail -1 es.txt | grep -q "^test: loss" || fail "no test line after the early stop"
final=$(printf 'es/ckpt-%010d.h5' $((stop * 19)))
[[ -f $final ]] || fail "no final checkpoint $final: $(ls es)"
[[ $(attr "$final" stale_epochs) == 3 && $(attr "$final" best_epoch) == "$best_epoch" ]] ||
  fail "$final: stale_epochs $(attr "$final" stale_epochs), best_epoch $(attr "$final" best_epoch)"
pass "--early-stop 3: stopped after epoch $stop of 60 (best epoch $best_epoch), as the val_loss column says"

# 2. --keep-best: ckpt-best.h5 is the best epoch's model, kept beside the newest --keep 3.
[[ $(attr es/ckpt-best.h5 step) == $((best_epoch * 19)) ]] || fail "ckpt-best.h5 is at step $(attr es/ckpt-best.h5 step)"
[[ $(ls es | grep -c '^ckpt-[0-9]*\.h5$') == 3 ]] || fail "--keep 3 with --keep-best left: $(ls es)"
mpi 2 "$FFN_EVAL" --checkpoint es/ckpt-best.h5 --data val.h5 --json >best.json
"$PY" - "$best_loss" <<'PY' || fail "ckpt-best.h5 does not hold the best epoch's model"
import json, sys
got, want = json.load(open("best.json"))["loss"], float(sys.argv[1])
print(f"ffn-eval of ckpt-best.h5: val loss {got:.9g}, metrics file's best {want:.9g}")
assert abs(got - want) <= 1e-5, (got, want)
PY
pass "--keep-best: ckpt-best.h5 at step $((best_epoch * 19)); its ffn-eval val loss is the best val_loss"

# 3. Stopped by SIGUSR1 mid-run (while the metric is not improving), resumed: same stop, same bits.
BIG=(--model dense:1024:relu,dense:1024:relu,dense:3 --lr 0.003 --seed 5 --early-stop 4 --keep-best --log-every 1)
"$FFN_TRAIN" "${BIG[@]}" "${ARGS[@]}" --checkpoint-dir full --metrics full.csv >full.txt
read -r stop best_epoch best_loss < <(expected_stop full.csv 4) || fail "stop epoch: $(cat full.txt)"
[[ $stop -ge 7 && $stop -lt 60 ]] || fail "the uninterrupted run stopped after epoch $stop: no room for a signal"
# Freeze the run once epoch stop-2 (at least one epoch without improvement) is recorded, then signal it.
"$FFN_TRAIN" "${BIG[@]}" "${ARGS[@]}" --checkpoint-dir sig --metrics sig.csv >sig.txt 2>sigerr.txt &
pid=$!
for _ in $(seq 6000); do grep -q "^epoch,$((stop - 2))," sig.csv 2>/dev/null && break; sleep 0.01; done
kill -STOP $pid && kill -USR1 $pid && kill -CONT $pid
set +e; wait $pid; rc=$?; set -e
[[ $rc -eq 75 ]] || fail "SIGUSR1: exit $rc, expected 75 (the run may have ended first): $(cat sigerr.txt)"
sigckpt=$(ls sig/ckpt-[0-9]*.h5 | tail -1)
[[ $(attr "$sigckpt" stale_epochs) -ge 1 ]] || fail "$sigckpt: stale_epochs $(attr "$sigckpt" stale_epochs), expected >= 1"
"$FFN_TRAIN" "${BIG[@]}" "${ARGS[@]}" --checkpoint-dir sig --resume latest >resumed.txt
grep -q "stopping after epoch $stop\$" resumed.txt || fail "the resumed run did not stop after epoch $stop: $(grep early resumed.txt)"
"$PY" - "$(printf 'ckpt-%010d.h5' $((stop * 19)))" <<'PY' || fail "the resumed run differs from the uninterrupted one"
import sys, h5py, numpy as np
for name in (sys.argv[1], "ckpt-best.h5"):
    a, b = h5py.File("full/" + name), h5py.File("sig/" + name)
    names = []
    a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
    assert names, "no datasets"
    for n in names:
        assert np.array_equal(a[n][()], b[n][()]), (name, n)
    for k in ("step", "epoch", "best_metric", "best_step", "best_epoch", "stale_epochs"):
        assert a["train"].attrs[k] == b["train"].attrs[k], (name, k, a["train"].attrs[k], b["train"].attrs[k])
PY
pass "SIGUSR1 at $(basename "$sigckpt") (stale_epochs $(attr "$sigckpt" stale_epochs)), resumed: stops after epoch $stop, final and best checkpoints bitwise equal"
# Resuming the finished run again trains nothing and says why.
"$FFN_TRAIN" "${BIG[@]}" "${ARGS[@]}" --checkpoint-dir sig --resume latest >again.txt
grep -q "^done: 0 steps" again.txt && grep -q "stopping after epoch $stop\$" again.txt || fail "resume of a stopped run: $(cat again.txt)"
pass "resuming an early-stopped run trains nothing"

# 4. --log-every: each record is the mean since the previous one (19 = one epoch: its record equals the epoch's loss).
"$FFN_TRAIN" "${ARGS[@]}" "${SMALL[@]}" --epochs 3 --log-every 19 --metrics log.csv --quiet
"$PY" <<'PY' || fail "--log-every records are not the running mean"
import csv
rows = list(csv.DictReader(open("log.csv")))
steps = {int(r["epoch"]): r for r in rows if r["kind"] == "step"}
epochs = {int(r["epoch"]): r for r in rows if r["kind"] == "epoch"}
assert sorted(steps) == [1, 2, 3], sorted(steps)
for e in epochs:
    for k in ("loss", "accuracy"):
        a, b = float(steps[e][k]), float(epochs[e][k])
        assert abs(a - b) <= 1e-6 * abs(b), (e, k, a, b)
PY
pass "--log-every records: the mean training loss and accuracy since the previous record"

# 5. Refusals (exit 2, one line naming the flag).
set +e
"$FFN_TRAIN" --train train.h5 --early-stop 3 2>err1.txt; rc1=$?
"$FFN_TRAIN" --train train.h5 --val val.h5 --keep-best 2>err2.txt; rc2=$?
"$FFN_TRAIN" "${BIG[@]}" "${ARGS[@]}" --early-stop 5 --checkpoint-dir sig --resume latest 2>err3.txt; rc3=$?
"$FFN_TRAIN" "${ARGS[@]}" --early-stop 3 --early-stop-metric f1 2>err4.txt; rc4=$?
set -e
[[ $rc1 -eq 2 ]] && grep -q -- "--early-stop 3: needs --val" err1.txt || fail "--early-stop without --val: $rc1 $(cat err1.txt)"
[[ $rc2 -eq 2 ]] && grep -q -- "--keep-best: needs --val" err2.txt || fail "--keep-best without --checkpoint-dir: $rc2 $(cat err2.txt)"
[[ $rc3 -eq 2 ]] && grep -q -- "has --early-stop 4, but this one has --early-stop 5" err3.txt ||
  fail "changed --early-stop on resume: $rc3 $(cat err3.txt)"
[[ $rc4 -eq 2 ]] && grep -q -- "--early-stop-metric: expected loss | accuracy" err4.txt || fail "--early-stop-metric f1: $rc4 $(cat err4.txt)"
pass "refused: --early-stop without --val, --keep-best without --checkpoint-dir, another --early-stop on resume, an unknown metric"
