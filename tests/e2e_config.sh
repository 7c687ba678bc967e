#!/usr/bin/env bash
# Configuration files: a run from --config FILE.json is bitwise the run of the
# same flags on the command line; --config CKPT.h5 reruns the recorded run
# bitwise (also one that was resumed) into a new --checkpoint-dir, without
# replaying --resume/--checkpoint-dir/--metrics; --print-config writes JSON
# that --config reads back; unknown flags and keys get a suggestion.
source "$(dirname "$0")/lib/common.sh"

"$FFN_DATA" synth blobs --rows 600 --features 8 --classes 3 --noise 2 --seed 5 --out train.h5 >/dev/null
"$FFN_DATA" synth blobs --rows 200 --features 8 --classes 3 --noise 2 --seed 6 --out val.h5 >/dev/null
ARGS=(--train train.h5 --val val.h5 --model dense:16:relu,dense:3 --optimizer adamw --lr 0.003 --beta2 0.98
      --weight-decay 0.02 --lr-schedule cosine --min-lr 1e-5 --batch-size 40 --epochs 2 --seed 7 --threads 1 --quiet)
# 600 / 40 = 15 steps per epoch.

# 1. The same flags from a file: the same bits.
mpi 2 "$FFN_TRAIN" "${ARGS[@]}" --checkpoint-dir line
cat >run.json <<'JSON'
{
  "train": "train.h5", "val": "val.h5", "model": "dense:16:relu,dense:3",
  "optimizer": "adamw", "lr": 0.003, "beta2": 0.98, "weight-decay": 0.02,
  "lr-schedule": "cosine", "min-lr": 1e-5, "batch-size": 40, "epochs": 2,
  "seed": 7, "threads": 1, "quiet": true, "test": null
}
JSON
mpi 2 "$FFN_TRAIN" --config run.json --checkpoint-dir file
same_params line/ckpt-0000000030.h5 file/ckpt-0000000030.h5 || fail "--config run.json differs from the same flags"
pass "--config FILE.json: bitwise the run of the same flags on the command line"

# The command line overrides the file on either side of --config.
"$FFN_TRAIN" --epochs 1 --config run.json --checkpoint-dir over1
"$FFN_TRAIN" --config run.json --epochs=1 --checkpoint-dir over2
[[ -f over1/ckpt-0000000015.h5 && ! -f over1/ckpt-0000000030.h5 ]] || fail "--epochs before --config was not applied"
same_params over1/ckpt-0000000015.h5 over2/ckpt-0000000015.h5 || fail "--epochs before and after --config differ"
pass "flags before or after --config override the file"

# 2. --config CKPT.h5 reruns the recorded run into a new directory, bit for bit.
mpi 2 "$FFN_TRAIN" --config line/ckpt-0000000030.h5 --checkpoint-dir replay 2>replay.err
grep -q "not replayed (give them on the command line): --checkpoint-dir \"line\"" replay.err ||
  fail "no note on the keys not replayed: $(cat replay.err)"
same_params line/ckpt-0000000030.h5 replay/ckpt-0000000030.h5 || fail "--config CKPT.h5 did not rerun the same bits"
"$PY" - <<'PY' || fail "the replay recorded another configuration"
import h5py, json
a = json.loads(h5py.File("line/ckpt-0000000030.h5").attrs["config_json"])
b = json.loads(h5py.File("replay/ckpt-0000000030.h5").attrs["config_json"])
assert a.pop("checkpoint-dir") == "line" and b.pop("checkpoint-dir") == "replay"
assert a == b, {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)}
PY
pass "--config CKPT.h5 into a new --checkpoint-dir: the same parameters, optimizer state and configuration"

# A resumed run's checkpoint reruns the whole run from the start: --resume is not replayed.
# (A constant schedule: a cosine one spans the --epochs of each phase.)
"$FFN_TRAIN" "${ARGS[@]}" --lr-schedule constant --checkpoint-dir whole
"$FFN_TRAIN" "${ARGS[@]}" --lr-schedule constant --epochs 1 --checkpoint-dir part
"$FFN_TRAIN" "${ARGS[@]}" --lr-schedule constant --checkpoint-dir part --resume latest --metrics part.csv
before=$(md5sum part.csv part/*)
"$FFN_TRAIN" --config part/ckpt-0000000030.h5 --checkpoint-dir rerun 2>rerun.err
[[ $(md5sum part.csv part/*) == "$before" ]] || fail "the rerun wrote over the recorded run's metrics or checkpoints"
grep -q -- '--resume "latest"' rerun.err || fail "--resume dropped without a note: $(cat rerun.err)"
grep -q -- '--metrics "part.csv"' rerun.err || fail "--metrics dropped without a note: $(cat rerun.err)"
same_params whole/ckpt-0000000030.h5 rerun/ckpt-0000000030.h5 || fail "rerun of a resumed run differs"
pass "--config of a resumed run's checkpoint reruns it from step 0 (bitwise), naming --resume and --metrics as not replayed"

# 3. --print-config: JSON with the merged values; no --train needed; --config reads it back.
"$FFN_TRAIN" --config run.json --lr 0.5 --print-config >printed.json
"$PY" - <<'PY' || fail "--print-config output"
import json
c = json.load(open("printed.json"))
assert c["lr"] == 0.5 and c["epochs"] == 2 and c["beta2"] == 0.98 and c["min-lr"] == 1e-5, c
assert c["train"] == "train.h5" and c["test"] is None and c["quiet"] is True and c["optimizer"] == "adamw", c
assert c["checkpoint-every"] == "1epochs" and "config" not in c and "print-config" not in c, c
PY
"$FFN_TRAIN" --config printed.json --print-config >printed2.json
cmp -s printed.json printed2.json || fail "--print-config of --config printed.json differs: $(diff printed.json printed2.json)"
"$FFN_TRAIN" --print-config --epochs 3 | "$PY" -c 'import json, sys; c = json.load(sys.stdin); assert c["epochs"] == 3 and c["train"] is None'
pass "--print-config: the merged configuration as JSON (without --train), read back by --config unchanged"

# 4. Suggestions and refusals: exit 2, one line naming the flag or the file and key.
expect_usage() { # expect_usage MESSAGE ARGS...
  local want=$1 rc=0; shift
  "$FFN_TRAIN" "$@" >out.txt 2>err.txt || rc=$?
  [[ $rc == 2 ]] || fail "ffn-train $*: exit $rc (expected 2)"
  grep -qF -- "$want" err.txt || fail "ffn-train $*: expected '$want', got: $(cat err.txt)"
}
expect_usage "ffn-train: error: unknown flag '--epoch' (did you mean --epochs?)" --train train.h5 --epoch 3
expect_usage "unknown flag '--learnrate' (see --help)" --train train.h5 --learnrate 3
echo '{"train": "train.h5", "optimiser": "sgd"}' >typo.json
expect_usage "typo.json: unknown key 'optimiser' (did you mean 'optimizer'?)" --config typo.json
echo '{"train": "train.h5", "epochs": 2.5, "quiet": 1}' >typed.json
expect_usage "typed.json: key 'epochs': expected a positive integer, got '2.5'" --config typed.json
echo '{"train": "train.h5", "quiet": 1}' >typed.json
expect_usage "typed.json: key 'quiet': expected true or false, got 1" --config typed.json
echo '{"train": "train.h5", "lr": -2}' >range.json
expect_usage "range.json: key 'lr': expected a positive number, got '-2'" --config range.json
expect_usage "--config nothere.json: cannot open" --config nothere.json
expect_usage "checkpoint train.h5: attribute 'format' is missing" --config train.h5
pass "did-you-mean for flags and keys; typed and ranged keys refused naming the file and key"
