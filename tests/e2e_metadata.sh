#!/usr/bin/env bash
# Metadata that travels from data to model to prediction (issue 19):
# --standardize (train statistics, applied to the --val-out split),
# --standardize-like and ffn-data standardize; the statistics and class names
# recorded in the checkpoint; predictions on raw data identical to predictions
# on the standardized copy; class names in the prediction CSV/HDF5; refusal
# of mismatched statistics (exit code, message, no output); split, subset and
# shard keep names and statistics; 20 000 class names round trip.
# ctest-timeout: 600
source "$(dirname "$0")/lib/common.sh"

# 600 rows, 5 features on very different scales (one constant), 3 string labels.
$PY - <<'EOF'
import numpy as np
rng = np.random.default_rng(7)
n = 600
c = rng.integers(0, 3, n)
centers = np.array([[0, 0, 0], [3, 3, 0], [0, 3, 3]], float)
z = centers[c] + rng.normal(scale=0.7, size=(n, 3))
x = np.column_stack([z[:, 0] * 1000 + 5e4, z[:, 1] * 0.001, z[:, 2] - 40, np.full(n, 2.5), rng.normal(size=n)])
names = np.array(["Iris setosa", "iris, \"versicolor\"", "virginica"])
with open("d.csv", "w") as f:
    f.write("a,b,c,const,noise,species\n")
    for row, k in zip(x, c):
        label = names[k]
        label = '"' + label.replace('"', '""') + '"' if ("," in label or '"' in label) else label
        f.write(",".join("%.9g" % v for v in row) + "," + label + "\n")
EOF

"$FFN_DATA" csv d.csv --out tr.h5 --val-out va.h5 --val-fraction 0.25 --seed 3 --standardize >conv.txt 2>&1
"$FFN_DATA" csv d.csv --out rtr.h5 --val-out rva.h5 --val-fraction 0.25 --seed 3 >/dev/null
[[ ! -e tr.h5.raw.tmp && ! -e va.h5.raw.tmp && ! -e tr.h5.train.raw.tmp ]] || fail "temporaries left behind: $(ls)"
grep -qF "standardized 5 features with the statistics of its training rows: tr.h5 and va.h5" conv.txt ||
    fail "conversion summary: $(cat conv.txt)"
grep -qF "ffn-data csv: tr.h5 (600 rows, 5 features, 3 named classes)" conv.txt && ! grep -q "raw.tmp" conv.txt ||
    fail "the messages name the temporaries: $(cat conv.txt)"
$PY - <<'EOF' || fail "standardized values"
import h5py, numpy as np
t, v, rt, rv = (h5py.File(p) for p in ("tr.h5", "va.h5", "rtr.h5", "rva.h5"))
assert t["x"].shape == (450, 5) and v["x"].shape == (150, 5), (t["x"].shape, v["x"].shape)
raw = rt["x"][:].astype(np.float64)
mean, std = raw.mean(axis=0), raw.std(axis=0)
std[std == 0] = 1
assert t["feature_mean"].dtype == np.float64 and t["feature_mean"].shape == (5,)
assert np.allclose(t["feature_mean"][:], mean, rtol=1e-12, atol=1e-12), (t["feature_mean"][:], mean)
assert np.allclose(t["feature_std"][:], std, rtol=1e-12), (t["feature_std"][:], std)
assert t["feature_std"][3] == 1.0 and t["feature_mean"][3] == 2.5
x = t["x"][:].astype(np.float64)
assert np.allclose(x.mean(axis=0), 0, atol=1e-6) and np.allclose(x.std(axis=0)[[0, 1, 2, 4]], 1, atol=1e-5), x.std(axis=0)
assert (x[:, 3] == 0).all()
# Both files hold the training statistics; val's x is (raw - train mean) / train std.
m, s = t["feature_mean"][:], t["feature_std"][:]
assert (v["feature_mean"][:] == m).all() and (v["feature_std"][:] == s).all()
assert (v["x"][:] == ((rv["x"][:].astype(np.float64) - m) / s).astype(np.float32)).all()
assert (t["x"][:] == ((rt["x"][:].astype(np.float64) - m) / s).astype(np.float32)).all()
assert (t["y"][:] == rt["y"][:]).all() and (v["y"][:] == rv["y"][:]).all()
names = [n.decode() if isinstance(n, bytes) else n for n in t.attrs["class_names"]]
assert names == ["Iris setosa", "iris, \"versicolor\"", "virginica"], names
assert [n.decode() if isinstance(n, bytes) else n for n in v.attrs["class_names"]] == names
assert "feature_mean" not in rt and "feature_mean" not in rv
EOF
pass "--standardize: train x has mean 0 / std 1 per column (constant column: std 1), val uses train's statistics"

"$FFN_DATA" info tr.h5 >info.txt
grep -qF "standardized: yes, /feature_mean and /feature_std over 5 features" info.txt || fail "info: $(cat info.txt)"
grep -qF "class names: 3 (0:Iris setosa 1:iris, \"versicolor\" 2:virginica)" info.txt || fail "info: $(cat info.txt)"
"$FFN_DATA" info rtr.h5 | grep -qF "standardized: no" || fail "info of raw data"
pass "info shows the class names and whether x is standardized"

# --standardize-like and ffn-data standardize give the same floats as --standardize.
"$FFN_DATA" csv d.csv --out like.h5 --standardize-like tr.h5 >/dev/null
"$FFN_DATA" standardize rva.h5 --out sva.h5 --like tr.h5 >/dev/null
"$FFN_DATA" standardize rva.h5 --out own.h5 >/dev/null  # its own statistics: other ones
$PY - <<'EOF' || fail "--standardize-like / standardize"
import h5py, numpy as np
t, l, d = h5py.File("tr.h5"), h5py.File("like.h5"), h5py.File("rtr.h5")
m, s = t["feature_mean"][:], t["feature_std"][:]
assert (l["feature_mean"][:] == m).all() and (l["feature_std"][:] == s).all()
assert l["x"].shape == (600, 5)
assert (h5py.File("sva.h5")["x"][:] == h5py.File("va.h5")["x"][:]).all()
o = h5py.File("own.h5")
assert not (o["feature_mean"][:] == m).all()
EOF
pass "--standardize-like TRAIN.h5 and ffn-data standardize --like apply TRAIN.h5's statistics exactly"

# Train on 2 ranks; the checkpoint records the statistics and the class names.
mpi 2 "$FFN_TRAIN" --train tr.h5 --val va.h5 --model dense:16:relu,dense:3 --epochs 6 --lr 0.01 --checkpoint-dir ck \
    --quiet >train.txt 2>&1 || fail "training: $(cat train.txt)"
CK=$(ls ck/ckpt-*.h5 | tail -1)
$PY - "$CK" <<'EOF' || fail "checkpoint /data"
import sys, h5py
c, t = h5py.File(sys.argv[1]), h5py.File("tr.h5")
assert (c["data/feature_mean"][:] == t["feature_mean"][:]).all() and (c["data/feature_std"][:] == t["feature_std"][:]).all()
names = [n.decode() if isinstance(n, bytes) else n for n in c["data/class_names"][:]]
assert names == ["Iris setosa", "iris, \"versicolor\"", "virginica"], names
EOF
pass "ffn-train (2 ranks) records the training statistics and class names in the checkpoint (/data)"

# Predictions on the raw data equal those on the standardized copy, byte for byte.
"$FFN_EVAL" --checkpoint "$CK" --data rva.h5 --predict praw.csv >/dev/null 2>note.txt
grep -qF "is raw: standardizing it with checkpoint" note.txt || fail "no note on the applied statistics: $(cat note.txt)"
"$FFN_EVAL" --checkpoint "$CK" --data va.h5 --predict pstd.csv >/dev/null
cmp praw.csv pstd.csv || fail "predictions on raw and standardized data differ"
mpi 2 "$FFN_EVAL" --checkpoint "$CK" --data rva.h5 --predict praw.h5 >/dev/null 2>&1
"$FFN_EVAL" --checkpoint "$CK" --data va.h5 --predict pstd.h5 >/dev/null
"$FFN_EVAL" --checkpoint "$CK" --data rva.h5 >eraw.txt 2>/dev/null
"$FFN_EVAL" --checkpoint "$CK" --data va.h5 >estd.txt
[[ $(grep '^eval:' eraw.txt) == "$(grep '^eval:' estd.txt)" ]] || fail "evaluation differs: $(cat eraw.txt estd.txt)"
grep -qF "classes: 0:Iris setosa 1:iris, \"versicolor\" 2:virginica" estd.txt || fail "no class names: $(cat estd.txt)"
"$FFN_EVAL" --checkpoint "$CK" --data va.h5 --json >e.json
$PY - <<'EOF' || fail "prediction files"
import csv, json, h5py, numpy as np
rows = list(csv.reader(open("praw.csv")))
assert rows[0] == ["class", "class_name", "prob_0", "prob_1", "prob_2"], rows[0]
names = ["Iris setosa", "iris, \"versicolor\"", "virginica"]
cls = np.array([int(r[0]) for r in rows[1:]])
assert len(cls) == 150 and all(r[1] == names[int(r[0])] for r in rows[1:])
# The predicted names are the CSV's label strings: compare with the true labels' names.
truth = [names[k] for k in h5py.File("rva.h5")["y"][:]]
acc = np.mean([r[1] == t for r, t in zip(rows[1:], truth)])
assert acc > 0.9, acc
a, b = h5py.File("praw.h5"), h5py.File("pstd.h5")
assert (a["class"][:] == cls).all() and (a["class"][:] == b["class"][:]).all() and (a["prob"][:] == b["prob"][:]).all()
assert [n.decode() if isinstance(n, bytes) else n for n in a.attrs["class_names"]] == names
o = json.load(open("e.json"))
assert o["class_names"] == names and o["standardized"] is True, o
print("accuracy by name %.3f" % acc)
EOF
pass "predictions on RAW data (checkpoint's statistics applied) equal those on the standardized copy; class_name column"

# Refusals: one message, an exit code, no output written.
case_snapshot() { ls | grep -v "\.txt$"; md5sum tr.h5 va.h5 rva.h5 2>/dev/null; }
check_case "predict, data with other statistics" 2 "standardized with other statistics" -- \
    "$FFN_EVAL" --checkpoint "$CK" --data own.h5 --predict bad.csv
[[ ! -e bad.csv ]] || fail "bad.csv written"
check_case "eval, data with other statistics" 1 "standardized with other statistics" -- \
    "$FFN_EVAL" --checkpoint "$CK" --data own.h5
check_case "train, raw --val for standardized --train" 2 "--val rva.h5 is raw (no /feature_mean, /feature_std), but --train tr.h5 is standardized" -- \
    "$FFN_TRAIN" --train tr.h5 --val rva.h5 --model dense:4,dense:3 --epochs 1 --checkpoint-dir bad_ck
[[ ! -e bad_ck ]] || [[ -z $(ls bad_ck) ]] || fail "a refused run wrote checkpoints"
check_case "train, standardized --test for raw --train" 2 "--test va.h5 is standardized (/feature_mean, /feature_std), but --train rtr.h5 is raw" -- \
    "$FFN_TRAIN" --train rtr.h5 --test va.h5 --model dense:4,dense:3 --epochs 1
check_case "train, --val with other statistics" 2 "is standardized with other statistics" -- \
    "$FFN_TRAIN" --train tr.h5 --val own.h5 --model dense:4,dense:3 --epochs 1
"$FFN_DATA" subset va.h5 --classes 0,2 --relabel --out va_two.h5 >/dev/null
check_case "train, --val with other class names" 2 "--val va_two.h5 has other class_names than --train tr.h5" -- \
    "$FFN_TRAIN" --train tr.h5 --val va_two.h5 --model dense:4,dense:3 --epochs 1
check_case "distillation from a teacher trained on other inputs" 2 "--train rtr.h5 is raw (no /feature_mean, /feature_std), but --teacher $CK's training data is standardized" -- \
    "$FFN_TRAIN" --train rtr.h5 --teacher "$CK" --model dense:4,dense:3 --epochs 1
"$FFN_DATA" standardize rtr.h5 --out tr_other.h5 --like own.h5 >/dev/null
check_case "resume on data with other statistics" 2 "--resume: --train tr_other.h5 is standardized with other statistics than --resume" -- \
    "$FFN_TRAIN" --train tr_other.h5 --resume "$CK" --epochs 8 --checkpoint-dir ck
check_case "--standardize-like a raw file" 1 "--standardize-like rtr.h5 carries no standardization statistics" -- \
    "$FFN_DATA" csv d.csv --out bad.h5 --standardize-like rtr.h5
"$FFN_DATA" synth blobs --rows 50 --features 3 --classes 2 --out three.h5 --standardize >/dev/null
check_case "--standardize-like with another feature count" 1 "--standardize-like three.h5 has statistics for 3 features, but bad.h5 has 5" -- \
    "$FFN_DATA" csv d.csv --out bad.h5 --standardize-like three.h5
[[ ! -e bad.h5 && ! -e bad.h5.raw.tmp ]] || fail "a refused conversion left files: $(ls)"
check_case "--standardize with --standardize-like" 2 "exclude each other" -- \
    "$FFN_DATA" csv d.csv --out bad.h5 --standardize --standardize-like tr.h5
check_case "standardize twice" 1 "tr.h5 is standardized already" -- "$FFN_DATA" standardize tr.h5 --out bad.h5
check_case "--out over the input" 2 "an output never replaces an input" -- \
    "$FFN_DATA" csv d.csv --out d.csv --standardize
cat table.txt
pass "mismatched statistics refused with one message, exit code and nothing written"

# split, subset and shard keep class names and statistics.
"$FFN_DATA" split tr.h5 --train-out s1.h5 --val-out s2.h5 --val-count 50 >/dev/null
"$FFN_DATA" subset tr.h5 --out sub.h5 --classes 0,2 --relabel >/dev/null
"$FFN_DATA" subset tr.h5 --out sub_keep.h5 --classes 1 >/dev/null
"$FFN_DATA" shard tr.h5 --shards 3 --out sh/p >/dev/null
$PY - <<'EOF' || fail "split/subset/shard metadata"
import h5py, numpy as np
def names(f): return [n.decode() if isinstance(n, bytes) else n for n in f.attrs["class_names"]]
t = h5py.File("tr.h5")
for p in ("s1.h5", "s2.h5", "sub.h5", "sub_keep.h5", "sh/p.h5", "sh/p-00001-of-00003.h5"):
    f = h5py.File(p)
    assert (f["feature_mean"][:] == t["feature_mean"][:]).all() and (f["feature_std"][:] == t["feature_std"][:]).all(), p
assert names(h5py.File("s1.h5")) == names(t) and names(h5py.File("sh/p.h5")) == names(t)
assert names(h5py.File("sub.h5")) == ["Iris setosa", "virginica"], names(h5py.File("sub.h5"))
assert sorted(set(h5py.File("sub.h5")["y"][:])) == [0, 1]
assert names(h5py.File("sub_keep.h5")) == names(t)
assert (h5py.File("sh/p.h5")["x"][:] == t["x"][:]).all()
EOF
mpi 2 "$FFN_EVAL" --checkpoint "$CK" --data sh/p.h5 >/dev/null 2>&1 || fail "the shards' joining file does not evaluate"
pass "split, subset (--relabel renumbers the names) and shard keep class names and statistics"

# 20 000 distinct class names: more than HDF5's 64 KiB compact attribute limit.
$PY - <<'EOF'
import random
random.seed(1)
with open("many.csv", "w") as f:
    f.write("x,label\n")
    for i in range(20000):
        f.write("%d,class number %05d\n" % (i % 7, (i * 7919) % 20000))
EOF
"$FFN_DATA" csv many.csv --out many.h5 >/dev/null
"$FFN_DATA" split many.h5 --train-out m1.h5 --val-out m2.h5 --val-count 10 >/dev/null
"$FFN_DATA" info many.h5 | grep -qF "class names: 20000 (0:class number 00000 1:class number 00001" || fail "info of many.h5"
"$FFN_TRAIN" --train many.h5 --model dense:20000 --epochs 1 --batch-size 2000 --checkpoint-dir mck --quiet >/dev/null
MCK=$(ls mck/ckpt-*.h5 | tail -1)
"$FFN_EVAL" --checkpoint "$MCK" --data m2.h5 --predict many.csv.out.csv >/dev/null
$PY - "$MCK" <<'EOF' || fail "20 000 names"
import sys, csv, h5py
want = ["class number %05d" % i for i in range(20000)]
def names(a): return [n.decode() if isinstance(n, bytes) else n for n in a]
# Beyond 4000 names (an attribute's 64 KiB in HDF5's earliest format) they are a string dataset.
for path in ("many.h5", "m1.h5"):
    f = h5py.File(path)
    assert "class_names" not in f.attrs, path
    assert names(f["class_names"][:]) == want, path
assert names(h5py.File(sys.argv[1])["data/class_names"][:]) == want
rows = list(csv.reader(open("many.csv.out.csv")))
assert len(rows) == 11 and all(r[1] == want[int(r[0])] for r in rows[1:])
EOF
pass "20 000 class names: csv, split, checkpoint and predictions keep them all"

# Exports: the statistics and class names travel in the weights file's ffn spec; ffn-onnx
# puts the standardization into the graph, so the ONNX model takes raw inputs.
"$FFN_EVAL" --checkpoint "$CK" --export m.safetensors >/dev/null
$PY - <<'EOF2' || fail "safetensors metadata"
import json, struct, h5py
raw = open("m.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
spec = json.loads(json.loads(raw[8:8 + n])["__metadata__"]["ffn_spec"])
t = h5py.File("tr.h5")
assert spec["feature_mean"] == list(t["feature_mean"][:]) and spec["feature_std"] == list(t["feature_std"][:]), spec
assert spec["class_names"] == ["Iris setosa", "iris, \"versicolor\"", "virginica"]
EOF2
pass "ffn-eval --export writes feature_mean, feature_std and class_names into the ffn spec (exact values)"
if $PY -c "import torch, onnx" 2>/dev/null; then
    "$BUILD/ffn-onnx" "$CK" m.onnx | grep -qF "raw x, standardized in the graph" || fail "ffn-onnx summary"
    $PY - <<'EOF2' || fail "the ONNX graph on raw inputs"
import csv, numpy as np, onnx, h5py
from onnx import numpy_helper
g = onnx.load("m.onnx").graph
v = {t.name: numpy_helper.to_array(t) for t in g.initializer}
v[g.input[0].name] = h5py.File("rva.h5")["x"][:]
for n in g.node:
    i = [v[name] for name in n.input]
    a = {x.name: x for x in n.attribute}
    op = n.op_type
    if op == "Cast": y = i[0].astype(np.float64 if a["to"].i == onnx.TensorProto.DOUBLE else np.float32)
    elif op == "Sub": y = i[0] - i[1]
    elif op == "Div": y = i[0] / i[1]
    elif op == "Gemm": y = i[0].astype(np.float64) @ i[1].T.astype(np.float64) + i[2]
    elif op == "Relu": y = np.maximum(i[0], 0)
    elif op == "Constant": y = numpy_helper.to_array(a["value"].t)
    else: raise SystemExit("unexpected op " + op)
    v[n.output[0]] = y
logits = v[g.output[0].name]
rows = list(csv.reader(open("praw.csv")))[1:]
prob = np.array([[float(p) for p in r[2:]] for r in rows])
soft = np.exp(logits - logits.max(axis=1, keepdims=True))
soft /= soft.sum(axis=1, keepdims=True)
assert np.abs(soft - prob).max() < 1e-5, np.abs(soft - prob).max()
assert (logits.argmax(axis=1) == np.array([int(r[0]) for r in rows])).all()
EOF2
    pass "ffn-onnx: the graph standardizes raw x first and gives ffn-eval's probabilities on the raw data"
else
    echo "skip: ffn-onnx check (python3-torch or python3-onnx missing)"
fi
