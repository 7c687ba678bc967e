#!/usr/bin/env bash
# ffn-eval --predict: predictions agree with ffn-eval's accuracy, features-only
# data predicts, 1 and 3 ranks write byte-identical files, and the CSV, NPY and
# HDF5 outputs read back with numpy/h5py agree; --json; outputs over inputs refused.
source "$(dirname "$0")/lib/common.sh"

"$FFN_DATA" synth blobs --rows 1500 --features 5 --classes 3 --seed 4 --out blobs.h5 >/dev/null
"$FFN_TRAIN" --train blobs.h5 --model dense:16:relu,dense:3 --epochs 3 --checkpoint-dir ck --quiet >/dev/null
CK=$(ls ck/ckpt-*.h5 | tail -1)

# Metrics, as text and as JSON.
"$FFN_EVAL" --checkpoint "$CK" --data blobs.h5 >eval.txt
ACC=$(field eval.txt '^eval:' accuracy)
"$FFN_EVAL" --checkpoint "$CK" --data blobs.h5 --json >eval.json
$PY - "$ACC" <<'EOF' || fail "--json does not hold the metrics"
import json, sys
o = json.load(open("eval.json"))
assert o["rows"] == 1500 and abs(o["accuracy"] - float(sys.argv[1])) < 1e-4, o
assert len(o["confusion"]) == 3 and sum(map(sum, o["confusion"])) == 1500
assert o["checkpoint"].endswith(".h5") and o["data"] == "blobs.h5" and "loss" in o
EOF
pass "--json: one object with rows, loss, accuracy, confusion matrix"

# A features-only copy of the data (no /y).
$PY - <<'EOF'
import h5py
with h5py.File("blobs.h5") as s, h5py.File("features.h5", "w") as d:
    d["x"] = s["x"][:]
EOF
if "$FFN_EVAL" --checkpoint "$CK" --data features.h5 >noy.txt 2>&1; then fail "evaluation without /y succeeded"; fi

for ext in csv npy h5; do
    "$FFN_EVAL" --checkpoint "$CK" --data blobs.h5 --predict "p1.$ext" --batch-size 64 >/dev/null
    mpi 3 "$FFN_EVAL" --checkpoint "$CK" --data blobs.h5 --predict "p3.$ext" --batch-size 64 >/dev/null
    cmp "p1.$ext" "p3.$ext" || fail "--predict p.$ext differs between 1 and 3 ranks"
    "$FFN_EVAL" --checkpoint "$CK" --data features.h5 --predict "f.$ext" --batch-size 64 >/dev/null
    # (the HDF5 file records the data file's name: compared below)
    [[ $ext == h5 ]] || cmp "p1.$ext" "f.$ext" || fail "--predict on features only differs from the labelled data's"
    [[ ! -e "p1.$ext.tmp" ]] || fail "p1.$ext.tmp left behind"
done
pass "-np 1 and -np 3 give byte-identical CSV, NPY and HDF5; features-only data predicts the same"

$PY - "$ACC" <<'EOF' || fail "the outputs disagree"
import sys, numpy as np, h5py
y = h5py.File("blobs.h5")["y"][:]
csv = np.loadtxt("p1.csv", delimiter=",", skiprows=1, dtype=np.float64)
npy = np.load("p1.npy")
h5 = h5py.File("p1.h5")
assert open("p1.csv").readline().strip() == "class,prob_0,prob_1,prob_2"
cls = npy["class"]
assert len(cls) == 1500 and (csv[:, 0].astype(int) == cls).all() and (h5["class"][:] == cls).all()
assert (csv[:, 1:].astype(np.float32) == npy["prob"]).all() and (h5["prob"][:] == npy["prob"]).all()
f = h5py.File("f.h5")
assert (f["class"][:] == cls).all() and (f["prob"][:] == npy["prob"]).all() and f.attrs["data"] == b"features.h5"
assert np.allclose(npy["prob"].sum(axis=1), 1, atol=1e-5)
assert (cls == npy["prob"].argmax(axis=1)).all()
acc = (cls == y).mean()
print("accuracy from predictions %.4f, ffn-eval %s" % (acc, sys.argv[1]))
assert abs(acc - float(sys.argv[1])) < 1e-4
EOF
pass "CSV, NPY and HDF5 agree; predicted classes give ffn-eval's accuracy"

# Regression: the outputs themselves.
"$FFN_DATA" synth regression --rows 300 --features 4 --seed 3 --out reg.h5 >/dev/null 2>&1 ||
    "$FFN_DATA" synth regression --rows 300 --seed 3 --out reg.h5 >/dev/null
"$FFN_TRAIN" --train reg.h5 --loss mse --model dense:8:tanh,dense:1 --epochs 1 --checkpoint-dir rk --quiet >/dev/null
"$FFN_EVAL" --checkpoint "$(ls rk/ckpt-*.h5 | tail -1)" --data reg.h5 --predict r.npy >/dev/null
mpi 2 "$FFN_EVAL" --checkpoint "$(ls rk/ckpt-*.h5 | tail -1)" --data reg.h5 --predict r2.npy --batch-size 7 >/dev/null
"$FFN_EVAL" --checkpoint "$(ls rk/ckpt-*.h5 | tail -1)" --data reg.h5 --predict r.h5 >/dev/null
$PY -c "
import numpy as np, h5py
a = np.load('r.npy'); b = np.load('r2.npy')
assert a.dtype == np.float32 and a.shape == (300, 1), a.shape
assert np.allclose(a, b, atol=1e-6) and (a == h5py.File('r.h5')['output'][:]).all()" || fail "mse outputs"
pass "mse: the outputs, [N, K] float32"

# Outputs never over inputs; bad names refused.
cp "$CK" keep.h5
if "$FFN_EVAL" --checkpoint keep.h5 --data blobs.h5 --predict blobs.h5 2>err.txt; then fail "--predict over --data"; fi
grep -q "is the input" err.txt || fail "no message: $(cat err.txt)"
cmp "$CK" keep.h5
ln -s keep.h5 alias.h5
if "$FFN_EVAL" --checkpoint keep.h5 --data blobs.h5 --predict alias.h5 2>err.txt; then fail "--predict over the checkpoint"; fi
if "$FFN_EVAL" --checkpoint keep.h5 --data blobs.h5 --predict out.txt 2>err.txt; then fail "--predict out.txt"; fi
grep -q "expected a name ending in .csv, .npy or .h5" err.txt || fail "no message: $(cat err.txt)"
pass "--predict refuses its inputs and unknown extensions"
