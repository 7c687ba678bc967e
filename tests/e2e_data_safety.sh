#!/usr/bin/env bash
# A run never destroys or mislabels its own work (issue 14, the data side):
#  - every output of every ffn-data command (and the PATH.tmp it is written
#    through) is checked by file identity against the command's inputs, an
#    input's virtual sources and its other outputs before anything is written:
#    the same file spelled differently, a symlink or a hard link is refused
#    with exit 2 and one message naming both flags and the file;
#  - messages name the real counts;
#  - bce refuses float targets outside [0, 1], naming the file, /y, row and value;
#  - junk in FFN_DATA_CACHE_MB and FFN_OPEN_TIMEOUT is refused, naming the variable.
# Every input is byte-identical afterwards (md5sum). Prints a table:
# case | exit | seconds | message.
source "$(dirname "$0")/lib/common.sh"

"$FFN_DATA" synth moons --rows 2000 --seed 1 --out in.h5 >/dev/null
"$PY" - <<'PY'
import h5py, numpy as np
rng = np.random.default_rng(0)
# IDX files (raw, uncompressed): 50 images of 4x4 and their labels.
imgs = rng.integers(0, 256, size=(50, 4, 4), dtype=np.uint8)
labs = (np.arange(50) % 3).astype(np.uint8)
open("images.idx", "wb").write(bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in imgs.shape) + imgs.tobytes())
open("labels.idx", "wb").write(bytes([0, 0, 8, 1]) + (50).to_bytes(4, "big") + labs.tobytes())
# CSV and .npy inputs.
x = rng.normal(size=(40, 3)).astype(np.float32)
with open("data.csv", "w") as f:
    for r in range(40): f.write(",".join("%g" % v for v in x[r]) + ",%d\n" % (r % 2))
np.save("x.npy", x); np.save("y.npy", (np.arange(40) % 2).astype(np.int32))
# Float targets: probabilities in [0, 1], and the same with one target of 1.5 at row 17.
p = rng.uniform(size=(300, 1)).astype(np.float32)
for name, t in (("probs.h5", p), ("over.h5", np.where(np.arange(300)[:, None] == 17, 1.5, p).astype(np.float32))):
    with h5py.File(name, "w") as f:
        f.create_dataset("x", data=rng.normal(size=(300, 4)).astype(np.float32))
        f.create_dataset("y", data=t)
PY
"$FFN_DATA" synth regression --rows 300 --features 4 --classes 1 --out signed.h5 >/dev/null # tanh + noise: below 0 too
"$FFN_DATA" shard in.h5 --shards 2 --out P >/dev/null # P.h5 joins P-00000-of-00002.h5 and P-00001-of-00002.h5
mkdir -p d sub
cp in.h5 d/in.h5
cp in.h5 x.h5.tmp
ln -s in.h5 link.h5
ln in.h5 hard.h5
# Every file a case reads: none may change.
INPUTS=(in.h5 images.idx labels.idx data.csv x.npy y.npy probs.h5 over.h5 signed.h5 P.h5 P-00000-of-00002.h5
        P-00001-of-00002.h5 d/in.h5 x.h5.tmp)

printf '%-48s | %4s | %5s | %s\n' "case" "exit" "secs" "message" >table.txt
# Every case: exit code, message (one error line; ffn-data may print it on stdout) and
# every input unchanged (tests/lib/common.sh: check_case).
CASE_WIDTH=48 CASE_TEXT_IN="err.txt out.txt"
case_snapshot() { md5sum "${INPUTS[@]}"; }
check() { check_case "$@"; }
gone() { for f in "$@"; do [[ ! -e $f ]] || fail "a refused command wrote $f"; done; }
D=("$FFN_DATA")
SAME="an output never replaces an input"

# ---- ffn-data: outputs over inputs ----
check "split: --train-out = --val-out" 2 "--val-out A.h5 is the same file as --train-out A.h5" -- \
  "${D[@]}" split in.h5 --train-out A.h5 --val-out A.h5 --val-count 100
gone A.h5
check "split: --train-out = IN.h5" 2 "--train-out in.h5 is the same file as IN.h5 in.h5; $SAME" -- \
  "${D[@]}" split in.h5 --train-out in.h5 --val-out B.h5 --val-count 100
gone B.h5
check "split: --val-out = IN.h5" 2 "--val-out in.h5 is the same file as IN.h5 in.h5" -- \
  "${D[@]}" split in.h5 --train-out B.h5 --val-out in.h5 --val-count 100
gone B.h5
check "split: later output's .tmp = earlier output" 2 "--val-out T.h5's temporary T.h5.tmp is the same file as --train-out T.h5.tmp" -- \
  "${D[@]}" split in.h5 --train-out T.h5.tmp --val-out T.h5 --val-count 100
gone T.h5 T.h5.tmp
check "split: --train-out = a virtual source of IN" 2 "--train-out P-00001-of-00002.h5 is the same file as ./P-00001-of-00002.h5, a virtual source of IN.h5 P.h5" -- \
  "${D[@]}" split P.h5 --train-out P-00001-of-00002.h5 --val-out V.h5 --val-count 10
gone V.h5
check "subset: --out = IN.h5" 2 "--out in.h5 is the same file as IN.h5 in.h5" -- \
  "${D[@]}" subset in.h5 --out in.h5
check "subset: --out ../d/in.h5 spelled differently" 2 "--out sub/../d/./in.h5 is the same file as IN.h5 d/in.h5" -- \
  "${D[@]}" subset d/in.h5 --out sub/../d/./in.h5
check "subset: --out is a symlink to IN" 2 "--out link.h5 is the same file as IN.h5 in.h5" -- \
  "${D[@]}" subset in.h5 --out link.h5
[[ -L link.h5 ]] || fail "the symlink was replaced"
check "subset: --out is a hard link to IN" 2 "--out hard.h5 is the same file as IN.h5 in.h5" -- \
  "${D[@]}" subset in.h5 --out hard.h5
check "subset: IN is --out's temporary (OUT.tmp)" 2 "--out x.h5's temporary x.h5.tmp is the same file as IN.h5 x.h5.tmp" -- \
  "${D[@]}" subset x.h5.tmp --out x.h5
gone x.h5
check "idx: --out = --images" 2 "--out images.idx is the same file as --images images.idx" -- \
  "${D[@]}" idx --images images.idx --labels labels.idx --out images.idx
check "idx: --val-out = --labels (other spelling)" 2 "--val-out ./labels.idx is the same file as --labels labels.idx" -- \
  "${D[@]}" idx --images images.idx --labels labels.idx --out I.h5 --val-out ./labels.idx --val-count 5
gone I.h5
check "idx: --out = --val-out" 2 "--val-out I.h5 is the same file as --out I.h5" -- \
  "${D[@]}" idx --images images.idx --labels labels.idx --out I.h5 --val-out I.h5 --val-count 5
gone I.h5
check "csv: --out = FILE" 2 "--out data.csv is the same file as FILE data.csv" -- \
  "${D[@]}" csv data.csv --out data.csv
check "npy: --out = --y" 2 "--out y.npy is the same file as --y y.npy" -- \
  "${D[@]}" npy --x x.npy --y y.npy --out y.npy
check "shard: PREFIX.h5 = IN.h5" 2 "--out in's joining file in.h5 is the same file as IN.h5 in.h5" -- \
  "${D[@]}" shard in.h5 --shards 2 --out in
gone in-00000-of-00002.h5
check "shard: a shard file = IN.h5" 2 "--out P's shard P-00000-of-00002.h5 is the same file as IN.h5 P-00000-of-00002.h5" -- \
  "${D[@]}" shard P-00000-of-00002.h5 --shards 2 --out P
check "shard: PREFIX.h5 = IN (joined) re-sharded" 2 "--out P's joining file P.h5 is the same file as IN.h5 P.h5" -- \
  "${D[@]}" shard P.h5 --shards 2 --out P
# Writing over an earlier output is fine: only inputs are protected.
"$FFN_DATA" synth xor --rows 50 --out out.h5 >/dev/null
check "synth: --out onto an existing dataset (allowed)" 0 "out.h5 (60 rows of moons)" -- \
  "${D[@]}" synth moons --rows 60 --out out.h5
check "subset: --out a new file (allowed)" 0 "kept.h5 (2000 rows" -- "${D[@]}" subset in.h5 --out kept.h5

# ---- counts in messages ----
check "shard: more shards than rows names the rows" 2 "--shards 5000 is more than the 2000 rows of in.h5" -- \
  "${D[@]}" shard in.h5 --shards 5000 --out Q
check "split: a split larger than the file" 2 "5000 of the 2000 rows of in.h5; expected between 1 and 1999" -- \
  "${D[@]}" split in.h5 --train-out a.h5 --val-out b.h5 --val-count 5000

# ---- bce targets out of range ----
TR=(--model dense:8:relu,dense:1 --loss bce --epochs 1 --batch-size 30 --quiet --threads 1)
check "bce: a target of 1.5 (row 17)" 1 "--train over.h5: /y row 17 column 0 has target 1.5, but bce needs targets in [0, 1]" -- \
  "$FFN_TRAIN" --train over.h5 "${TR[@]}" --checkpoint-dir ck1
check "bce: negative targets" 1 "--train signed.h5: /y row" -- "$FFN_TRAIN" --train signed.h5 "${TR[@]}" --checkpoint-dir ck2
grep -qF "has target -" err.txt || fail "bce negative: the negative value is not named: $(cat err.txt)"
check "bce: --val targets out of range" 1 "--val over.h5: /y row 17 column 0 has target 1.5" -- \
  "$FFN_TRAIN" --train probs.h5 --val over.h5 "${TR[@]}" --checkpoint-dir ck3
check "bce: targets in [0, 1] train (allowed)" 0 "" -- "$FFN_TRAIN" --train probs.h5 "${TR[@]}" --checkpoint-dir ck4
check "ffn-eval: bce checkpoint on targets out of range" 1 "--data over.h5: /y row 17 column 0 has target 1.5" -- \
  "$FFN_EVAL" --checkpoint "$(ls ck4/*.h5 | tail -1)" --data over.h5
check "mse: the same targets (allowed)" 0 "" -- \
  "$FFN_TRAIN" --train signed.h5 --model dense:8:relu,dense:1 --loss mse --epochs 1 --quiet --threads 1 --checkpoint-dir ck5

# ---- junk in the environment ----
TM=(--train in.h5 --model dense:4:relu,dense:2 --epochs 1 --batch-size 50 --quiet --threads 1)
check "FFN_DATA_CACHE_MB=lots" 2 "FFN_DATA_CACHE_MB is 'lots', expected a whole number of MiB from 0 to 16777216" -- \
  env FFN_DATA_CACHE_MB=lots "$FFN_TRAIN" "${TM[@]}" --checkpoint-dir ck6
check "FFN_DATA_CACHE_MB=1.5 (-np 2)" 2 "FFN_DATA_CACHE_MB is '1.5'" -- \
  env FFN_DATA_CACHE_MB=1.5 "$MPIRUN" -np 2 -x FFN_DATA_CACHE_MB "$FFN_TRAIN" "${TM[@]}" --checkpoint-dir ck7
check "FFN_DATA_CACHE_MB=-1" 2 "FFN_DATA_CACHE_MB is '-1'" -- env FFN_DATA_CACHE_MB=-1 "$FFN_TRAIN" "${TM[@]}" --checkpoint-dir ck8
check "FFN_DATA_CACHE_MB=0 (allowed)" 0 "" -- env FFN_DATA_CACHE_MB=0 "$FFN_TRAIN" "${TM[@]}" --checkpoint-dir ck9
check "FFN_OPEN_TIMEOUT=soon (ffn-train)" 2 "FFN_OPEN_TIMEOUT is 'soon', expected a whole number of seconds from 0 to 604800" -- \
  env FFN_OPEN_TIMEOUT=soon "$FFN_TRAIN" "${TM[@]}" --checkpoint-dir ck10
check "FFN_OPEN_TIMEOUT=-5 (ffn-data info)" 1 "FFN_OPEN_TIMEOUT is '-5'" -- env FFN_OPEN_TIMEOUT=-5 "${D[@]}" info in.h5
check "FFN_OPEN_TIMEOUT=10s (ffn-eval)" 1 "FFN_OPEN_TIMEOUT is '10s'" -- \
  env FFN_OPEN_TIMEOUT=10s "$FFN_EVAL" --checkpoint "$(ls ck4/*.h5 | tail -1)" --data probs.h5
check "FFN_OPEN_TIMEOUT=5 (allowed)" 0 "" -- env FFN_OPEN_TIMEOUT=5 "${D[@]}" info in.h5
for d in ck1 ck2 ck3 ck6 ck7 ck8 ck10; do [[ -z $(ls "$d" 2>/dev/null) ]] || fail "a refused run wrote into $d"; done
cat table.txt
pass "data safety: outputs never over inputs, true counts, bce targets, environment"
