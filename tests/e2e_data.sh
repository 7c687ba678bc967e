#!/usr/bin/env bash
# ffn-data end to end: every converter and operation, checked against an
# independent reader (h5py) and for clean failures.
source "$(dirname "$0")/lib/common.sh"

# IDX: a tiny file written here (3 images of 2x2, labels 0 1 2), raw and gzip'd.
printf '\x00\x00\x08\x03\x00\x00\x00\x03\x00\x00\x00\x02\x00\x00\x00\x02\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\xff' >img.idx
printf '\x00\x00\x08\x01\x00\x00\x00\x03\x00\x01\x02' >lab.idx
gzip -k lab.idx
"$FFN_DATA" idx --images img.idx --labels lab.idx.gz --out idx.h5 >/dev/null
"$PY" - <<'PY' || fail "tiny IDX conversion"
import h5py, numpy as np
f = h5py.File("idx.h5")
assert f["x"].dtype == np.uint8 and f["x"].shape == (3, 4), (f["x"].dtype, f["x"].shape)
assert list(f["x"][2]) == [8, 9, 10, 255] and list(f["y"][()]) == [0, 1, 2]
assert abs(f["x"].attrs["scale"] - 1 / 255) < 1e-9 and f.attrs["num_classes"] == 3
PY
pass "idx (raw images, gzip'd labels)"
printf '\x00\x00\x08\x02\x00\x00\x00\x03' >bad.idx
set +e; "$FFN_DATA" idx --images bad.idx --labels lab.idx --out nope.h5 >/dev/null 2>err.txt; rc=$?; set -e
[[ $rc -eq 1 ]] && grep -q "bad.idx: bad IDX magic" err.txt && [[ ! -e nope.h5 && ! -e nope.h5.tmp ]] || fail "bad IDX: rc $rc, $(cat err.txt)"
set +e; "$FFN_DATA" idx --images missing.gz --labels lab.idx --out nope.h5 >/dev/null 2>err.txt; rc=$?; set -e
[[ $rc -eq 1 ]] && grep -q "missing.gz" err.txt || fail "missing IDX: rc $rc, $(cat err.txt)"
pass "bad IDX magic and missing file: exit 1 naming the file, no output"

# Real Fashion-MNIST test set, when installed.
SRC=/usr/share/datasets/fashion-mnist
if [[ -r $SRC/t10k-images-idx3-ubyte.gz ]]; then
  "$FFN_DATA" idx --images $SRC/t10k-images-idx3-ubyte.gz --labels $SRC/t10k-labels-idx1-ubyte.gz --out fm.h5 \
    --val-out fmv.h5 --val-count 1000 --seed 3 >/dev/null
  "$FFN_DATA" info fm.h5 >info.txt
  grep -q "rows: 9000" info.txt && grep -q "features: 784" info.txt && grep -q "num_classes 10" info.txt || fail "info: $(cat info.txt)"
  "$PY" - <<'PY' || fail "Fashion-MNIST split"
import h5py, numpy as np, gzip
a, b = h5py.File("fm.h5"), h5py.File("fmv.h5")
y = np.concatenate([a["y"][()], b["y"][()]])
assert a["x"].shape == (9000, 784) and b["x"].shape == (1000, 784)
assert np.all(np.bincount(y) == 1000), np.bincount(y)
raw = np.frombuffer(gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 784)
rows = {r.tobytes() for r in raw}
assert all(r.tobytes() in rows for r in a["x"][:50]) and all(r.tobytes() in rows for r in b["x"][:50])
PY
  pass "Fashion-MNIST t10k: 9000 + 1000 rows, 1000 per class, rows identical to the IDX"
else
  echo "note: Fashion-MNIST not installed; real-data conversion not checked"
fi

# CSV with a header and a named label column; without a header; regression targets.
printf 'a,b,label,c\n1,2,0,3\n4,5,2,6.5\n7,8,1,9\n' >h.csv
"$FFN_DATA" csv h.csv --label-col label --out csv.h5 >/dev/null
printf '1,2,0\n3,4,1\n' >n.csv
"$FFN_DATA" csv n.csv --out csvn.h5 >/dev/null
"$FFN_DATA" csv n.csv --regression 2 --out csvr.h5 >/dev/null
"$PY" - <<'PY' || fail "csv conversion"
import h5py, numpy as np
f = h5py.File("csv.h5")
assert np.allclose(f["x"][()], [[1, 2, 3], [4, 5, 6.5], [7, 8, 9]]) and list(f["y"][()]) == [0, 2, 1]
g = h5py.File("csvn.h5"); assert np.allclose(g["x"][()], [[1, 2], [3, 4]]) and list(g["y"][()]) == [0, 1]
r = h5py.File("csvr.h5"); assert r["y"].dtype == np.float32 and np.allclose(r["y"][()], [[2, 0], [4, 1]])
PY
printf '1,2,0\n3,x,1\n' >bad.csv
set +e; "$FFN_DATA" csv bad.csv --out b.h5 >/dev/null 2>err.txt; rc=$?; set -e
[[ $rc -eq 1 ]] && grep -q "bad.csv: row 2, column 1: 'x' is not a number" err.txt || fail "bad csv: $(cat err.txt)"
pass "csv (header + named label, no header, regression; bad cell named)"

# NumPy .npy.
"$PY" -c "
import numpy as np
np.save('x.npy', np.arange(12, dtype=np.float64).reshape(4, 3)); np.save('y.npy', np.array([1, 0, 1, 2], np.int64))
np.save('xu.npy', np.arange(8, dtype=np.uint8).reshape(4, 2)); np.save('t.npy', np.ones((4, 2), np.float32))
"
"$FFN_DATA" npy --x x.npy --y y.npy --out npy.h5 >/dev/null
"$FFN_DATA" npy --x xu.npy --y t.npy --out npyu.h5 >/dev/null
"$PY" - <<'PY' || fail "npy conversion"
import h5py, numpy as np
f = h5py.File("npy.h5"); assert np.allclose(f["x"][()], np.arange(12).reshape(4, 3)) and list(f["y"][()]) == [1, 0, 1, 2]
g = h5py.File("npyu.h5"); assert g["x"].dtype == np.uint8 and g["y"].shape == (4, 2)
PY
pass "npy (float64 + int64 labels; uint8 + float targets)"

# split, subset, shard.
"$FFN_DATA" synth blobs --rows 1001 --features 4 --classes 5 --seed 1 --out s.h5 >/dev/null
"$FFN_DATA" split s.h5 --train-out st.h5 --val-out sv.h5 --val-fraction 0.2 --seed 2 >/dev/null
"$FFN_DATA" subset s.h5 --classes 1,3-4 --per-class 20 --relabel --seed 4 --out sub.h5 >/dev/null
"$FFN_DATA" shard s.h5 --shards 4 --out sh/s >/dev/null
mv sh moved   # the shard set moves as a whole: virtual sources are relative
"$FFN_DATA" info moved/s.h5 >vinfo.txt
grep -q "x is virtual, 4 sources" vinfo.txt || fail "shard info: $(cat vinfo.txt)"
"$PY" - <<'PY' || fail "split/subset/shard"
import h5py, numpy as np
s = h5py.File("s.h5"); x, y = s["x"][()], s["y"][()]
t, v = h5py.File("st.h5"), h5py.File("sv.h5")
assert len(t["y"]) + len(v["y"]) == 1001 and len(v["y"]) == 200
both = np.concatenate([t["x"][()], v["x"][()]])
assert sorted(map(bytes, both)) == sorted(map(bytes, x))
u = h5py.File("sub.h5"); assert u.attrs["num_classes"] == 3 and np.all(np.bincount(u["y"][()]) == 20)
vds = h5py.File("moved/s.h5")
assert np.array_equal(vds["x"][()], x) and np.array_equal(vds["y"][()], y)
sizes = [len(h5py.File(f"moved/s-{i:05d}-of-00004.h5")["y"]) for i in range(4)]
assert sum(sizes) == 1001 and max(sizes) - min(sizes) <= 1, sizes
PY
pass "split 801+200, subset 3 classes x 20 relabelled, 4 shards joined by a movable virtual dataset"
rm moved/s-00002-of-00004.h5
set +e; "$FFN_DATA" info moved/s.h5 >/dev/null 2>err.txt; rc=$?; set -e
[[ $rc -eq 1 ]] && grep -q "s-00002-of-00004.h5" err.txt || fail "missing shard: rc $rc $(cat err.txt)"
pass "a missing shard is named, not read as zeros"
