#!/usr/bin/env bash
# ctest-timeout: 600
# ffn-data npy, npz, libsvm and info on every input format, end to end:
# converted values equal what numpy wrote (or the hand-made sparse rows),
# refusals exit non-zero with one message naming the file and leave no
# output, hostile files (truncated or corrupt zips, huge shapes and indices)
# are refused, and memory does not grow with the file (.npy, stored and
# deflated .npz, LIBSVM under ulimit -v).
source "$(dirname "$0")/lib/common.sh"
export OPENBLAS_NUM_THREADS=1
# refused CODE PATTERN CMD ARGS...: ffn-data CMD ARGS exits CODE with one message matching PATTERN, writing no refused.h5.
refused() {
  local code=$1 pattern=$2 cmd=$3; shift 3
  set +e; "$FFN_DATA" "$cmd" "$@" >out.txt 2>err.txt; local rc=$?; set -e
  [[ $rc -eq $code ]] || fail "$cmd $*: exit $rc, expected $code: $(cat err.txt)"
  grep -qF -- "$pattern" err.txt || fail "$cmd $*: message lacks \"$pattern\": $(cat err.txt)"
  [[ $(grep -c error err.txt) -eq 1 ]] || fail "$cmd $*: not one error line: $(cat err.txt)"
  [[ ! -e refused.h5 && ! -e refused.h5.tmp ]] || fail "$cmd $*: wrote refused.h5"
}

# ---- npy: every supported dtype converts to exactly numpy's values.
"$PY" - <<'PY'
import numpy as np
r = np.random.default_rng(3)
N = 9000  # more than one 4096-row block
np.save("x_u1.npy", r.integers(0, 256, (N, 5)).astype("u1"))
np.save("x_f4.npy", r.standard_normal((N, 5)).astype("f4"))
np.save("x_f8.npy", r.standard_normal((N, 5)))
np.save("y_u1.npy", r.integers(0, 7, N).astype("u1"))
np.save("y_i4.npy", r.integers(0, 3, N).astype("i4"))
np.save("y_i8.npy", r.integers(0, 5, N).astype("i8"))
np.save("t_f4.npy", r.standard_normal((N, 2)).astype("f4"))
np.save("t_f8.npy", r.standard_normal((N, 3)))
np.save("x_fortran.npy", np.asfortranarray(r.standard_normal((N, 5))))
np.save("x_be.npy", r.standard_normal((N, 5)).astype(">f4"))
np.save("y_short.npy", np.zeros(N - 1, "i4"))
PY
for x in u1 f4 f8; do for y in y_u1 y_i4 y_i8 t_f4 t_f8; do
  "$FFN_DATA" npy --x "x_$x.npy" --y "$y.npy" --out "npy_${x}_$y.h5" | grep -q "(9000 rows, 5 features)" || fail "npy $x $y"
done; done
"$PY" - <<'PY' || fail "npy values"
import h5py, numpy as np
for x in ("u1", "f4", "f8"):
    X = np.load(f"x_{x}.npy")
    for y in ("y_u1", "y_i4", "y_i8", "t_f4", "t_f8"):
        Y = np.load(f"{y}.npy")
        f = h5py.File(f"npy_{x}_{y}.h5")
        if x == "u1":
            assert f["x"].dtype == np.uint8 and np.array_equal(f["x"][()], X)
            assert np.float32(f["x"].attrs["scale"]) == np.float32(1 / 255)
        else:
            assert f["x"].dtype == np.float32 and np.array_equal(f["x"][()], X.astype(np.float32)), (x, y)
        if y.startswith("y"):
            assert f["y"].dtype == np.int32 and np.array_equal(f["y"][()], Y), (x, y)
            assert int(f.attrs["num_classes"]) == int(Y.max()) + 1
        else:
            assert np.array_equal(f["y"][()], Y.astype(np.float32)) and "num_classes" not in f.attrs, (x, y)
PY
refused 1 "x_fortran.npy: fortran_order arrays are not supported" npy --x x_fortran.npy --y y_i4.npy --out refused.h5
refused 1 "x_be.npy: dtype >f4 is big-endian; save it little-endian" npy --x x_be.npy --y y_i4.npy --out refused.h5
refused 1 "x_f4.npy has 9000 rows but y_short.npy has 8999" npy --x x_f4.npy --y y_short.npy --out refused.h5
# A header promising more rows than the file holds is refused before anything is written.
"$PY" -c "
import numpy as np
h = np.lib.format.header_data_from_array_1_0(np.zeros((10, 5), 'f4')); h['shape'] = (10**12, 5)
with open('huge.npy', 'wb') as f:
    np.lib.format.write_array_header_1_0(f, h); f.write(b'\0' * 200)"
refused 1 "huge.npy: holds fewer than the 20000000000000 data bytes its header promises" npy --x huge.npy --y y_i4.npy --out refused.h5
pass "npy: u1/f4/f8 x with u1/i4/i8 labels and f4/f8 targets equal numpy's values; fortran order, big-endian, row mismatch, a huge shape refused"

# ---- npz: stored and deflated archives, arrays by name, by flag or the only two.
"$PY" - <<'PY'
import numpy as np, zipfile
r = np.random.default_rng(4)
x = r.standard_normal((6000, 4)).astype("f4"); y = r.integers(0, 3, 6000)
np.savez("stored.npz", x=x, y=y)
np.savez_compressed("deflated.npz", X=x, Y=y)
np.savez("positional.npz", y, x)                 # arr_0 is y (1-D), arr_1 is x
np.savez("named.npz", feats=x, target=y, extra=y)
np.savez("mismatch.npz", x=x, y=y[:-1])
np.savez("badmember.npz", x=x.astype(">f4"), y=y)
raw = open("deflated.npz", "rb").read()
open("truncated.npz", "wb").write(raw[: len(raw) // 2])
b = bytearray(raw); b[len(raw) // 4] ^= 0xFF   # inside X's deflated data
open("corrupt.npz", "wb").write(bytes(b))
# A member whose header promises far more rows than it holds.
h = np.lib.format.header_data_from_array_1_0(np.zeros((10, 4), "f4")); h["shape"] = (10**12, 4)
import io
buf = io.BytesIO(); np.lib.format.write_array_header_1_0(buf, h); buf.write(b"\0" * 160)
with zipfile.ZipFile("hugeshape.npz", "w") as z:
    z.writestr("x.npy", buf.getvalue()); z.writestr("y.npy", open("y_i4.npy", "rb").read())
PY
"$FFN_DATA" npz stored.npz --out npz_stored.h5 | grep -q "x 'x' \[6000, 4\] <f4, y 'y' \[6000\] <i8: by name" || fail "npz stored summary"
"$FFN_DATA" npz deflated.npz --out npz_deflated.h5 | grep -q "x 'X'.*y 'Y'" || fail "npz X/Y"
"$FFN_DATA" npz positional.npz --out npz_positional.h5 | grep -q "x 'arr_1' \[6000, 4\] <f4, y 'arr_0' \[6000\] <i8: the only two arrays" || fail "npz only two"
"$FFN_DATA" npz named.npz --x feats --y target --out npz_named.h5 >/dev/null
"$PY" - <<'PY' || fail "npz values"
import h5py, numpy as np
d = np.load("stored.npz")
for name in ("stored", "deflated", "positional", "named"):
    f = h5py.File(f"npz_{name}.h5")
    assert np.array_equal(f["x"][()], d["x"]) and np.array_equal(f["y"][()], d["y"]), name
    assert int(f.attrs["num_classes"]) == 3
PY
refused 1 "named.npz: no array named x or X (the arrays there: feats, target, extra); name them with --x and --y" npz named.npz --out refused.h5
refused 1 "named.npz: no array 'nope' for --y (the arrays there: feats, target, extra)" npz named.npz --x feats --y nope --out refused.h5
refused 1 "x_f4.npy: not a zip archive" npz x_f4.npy --out refused.h5
refused 1 "truncated.npz: a truncated zip archive (its end, the central directory, is missing)" npz truncated.npz --out refused.h5
refused 1 "corrupt.npz:X.npy:" npz corrupt.npz --out refused.h5
refused 1 "mismatch.npz:x.npy has 6000 rows but mismatch.npz:y.npy has 5999" npz mismatch.npz --out refused.h5
refused 1 "badmember.npz:x.npy: dtype >f4 is big-endian" npz badmember.npz --out refused.h5
refused 1 "hugeshape.npz:x.npy: holds fewer than the 16000000000000 data bytes its header promises" npz hugeshape.npz --out refused.h5
cp stored.npz same.npz
set +e; "$FFN_DATA" npz same.npz --out ./same.npz >out.txt 2>err.txt; rc=$?; set -e
[[ $rc -eq 2 ]] && grep -qF -- "--out ./same.npz is the same file as FILE.npz same.npz" err.txt && cmp -s same.npz stored.npz ||
  fail "npz --out = its input: exit $rc, $(cat err.txt)"
pass "npz: stored and deflated archives equal numpy's arrays (x/y, X/Y, --x/--y, the only two); missing arrays listed; not a zip, truncated, corrupt, row mismatch, bad member, huge shape refused"

# ---- libsvm: hand-made sparse rows densified, labels mapped with their names.
printf '# a comment line\n+1 1:0.5 3:-2 # trailing comment\n-1 2:1.25\n\n+1 qid:7 1:1 2:2 3:3\n-1 5:0.75\n' >a.svm
"$FFN_DATA" libsvm a.svm --out svm_a.h5 | grep -q "(4 rows, 5 features, 2 classes from labels -1..+1)" || fail "libsvm summary"
gzip -c a.svm >a_svm.gz
"$FFN_DATA" libsvm a_svm.gz --out svm_gz.h5 | grep -q "read gzip'd" || fail "libsvm gzip"
printf '3 1:1\n1 2:1\n2 3:1\n3 1:2 3:4\n' >k.svm
"$FFN_DATA" libsvm k.svm --out svm_k.h5 --features 6 >/dev/null
printf '0 0:1.5\n1 2:-1\n0 1:2\n' >z.svm
"$FFN_DATA" libsvm z.svm --zero-based --out svm_z.h5 >/dev/null
printf '0.25 1:1\n-3.5 2:1\n' >r.svm
"$FFN_DATA" libsvm r.svm --regression --out svm_r.h5 >/dev/null
"$PY" - <<'PY' || fail "libsvm values"
import h5py, numpy as np
def names(f): return [s.decode() if isinstance(s, bytes) else s for s in f.attrs["class_names"]]
for n in ("svm_a.h5", "svm_gz.h5"):
    f = h5py.File(n)
    want = np.array([[0.5, 0, -2, 0, 0], [0, 1.25, 0, 0, 0], [1, 2, 3, 0, 0], [0, 0, 0, 0, 0.75]], np.float32)
    assert np.array_equal(f["x"][()], want), f["x"][()]
    assert list(f["y"][()]) == [1, 0, 1, 0] and names(f) == ["-1", "+1"] and int(f.attrs["num_classes"]) == 2
f = h5py.File("svm_k.h5")
assert f["x"].shape == (4, 6) and np.array_equal(f["x"][3], np.array([2, 0, 4, 0, 0, 0], np.float32))
assert list(f["y"][()]) == [2, 0, 1, 2] and names(f) == ["1", "2", "3"]
f = h5py.File("svm_z.h5")
assert np.array_equal(f["x"][()], np.array([[1.5, 0, 0], [0, 0, -1], [0, 2, 0]], np.float32))
assert list(f["y"][()]) == [0, 1, 0] and "class_names" not in f.attrs and int(f.attrs["num_classes"]) == 2
f = h5py.File("svm_r.h5")
assert f["y"].dtype == np.float32 and np.array_equal(f["y"][()], np.array([[0.25], [-3.5]], np.float32))
PY
printf '1 1:1\n1 3:1 2:1\n' >unsorted.svm
refused 1 "unsorted.svm: line 2 (row 2): index 2 after index 3 (indices must increase within a line)" libsvm unsorted.svm --out refused.h5
printf '1 1:1\n\n1 2:1 2:5\n' >dup.svm
refused 1 "dup.svm: line 3 (row 2): duplicate index 2" libsvm dup.svm --out refused.h5
printf '1 1:1\n1 2:x\n' >badval.svm
refused 1 "badval.svm: line 2 (row 2): bad value in '2:x'" libsvm badval.svm --out refused.h5
printf '1 1:1 oops\n' >badtok.svm
refused 1 "badtok.svm: line 1 (row 1): bad token 'oops' (expected INDEX:VALUE)" libsvm badtok.svm --out refused.h5
printf '1 1:1\n2:3 4:1\n' >nolabel.svm
refused 1 "nolabel.svm: line 2 (row 2): missing label" libsvm nolabel.svm --out refused.h5
refused 1 "z.svm: line 1 (row 1): index 0 in a one-based file" libsvm z.svm --out refused.h5
refused 1 "k.svm: line 3 (row 3): index 3 is beyond --features 2 (indices 1..D)" libsvm k.svm --features 2 --out refused.h5
refused 1 "r.svm: line 1 (row 1): label '0.25' is not an integer (use --regression for float targets)" libsvm r.svm --out refused.h5
printf '1 1:1\n1 99999999999999999:1\n' >hugeidx.svm
refused 1 "hugeidx.svm: line 2 (row 2): index 99999999999999999 is beyond the 16777216 features" libsvm hugeidx.svm --out refused.h5
printf '1 1:1\n1 999999999999999999999999:1\n' >overflow.svm
refused 1 "overflow.svm: line 2 (row 2): bad index" libsvm overflow.svm --out refused.h5
head -c 30 a_svm.gz >trunc_svm.gz
refused 1 "trunc_svm.gz: the gzip stream is truncated" libsvm trunc_svm.gz --out refused.h5
refused 2 "--zero-based and --one-based exclude each other" libsvm a.svm --zero-based --one-based --out refused.h5
cp a.svm same.svm
set +e; "$FFN_DATA" libsvm same.svm --out same.svm >out.txt 2>err.txt; rc=$?; set -e
[[ $rc -eq 2 ]] && grep -qF -- "--out same.svm is the same file as FILE same.svm" err.txt && cmp -s same.svm a.svm ||
  fail "libsvm --out = its input: exit $rc, $(cat err.txt)"
pass "libsvm: sparse rows densified exactly (plain, gzip'd, --features, zero-based, regression); -1/+1 and 1..K as classes with class_names; bad lines refused with file, line and row"

# ---- info on every format: the fields, without converting.
info() { "$FFN_DATA" info "$1" >info.txt 2>&1 || fail "info $1: $(cat info.txt)"; for want in "${@:2}"; do grep -qF -- "$want" info.txt || fail "info $1 lacks '$want': $(cat info.txt)"; done; }
info x_f4.npy "format: npy" "shape: [9000, 5] <f4" "rows: 9000" "columns: 5 (as x: float32"
"$PY" -c "import numpy as np; np.save('lab.npy', np.array([0, 2, 2, 1, 2], 'i8'))"
info lab.npy "shape: [5] <i8" "labels: 0..2, num_classes 3" "class counts: 0:1 1:1 2:3"
info deflated.npz "format: npz" "arrays: X, Y" "array 'X' (deflated):" "shape: [6000, 4] <f4" "array 'Y' (deflated):"
info stored.npz "array 'x' (stored):"
info a.svm "format: LIBSVM (assumed from the content" "rows: 4" "columns: 5 (densified features; indices one-based" \
  "nonzeros: 7" "labels: 2 classes, from -1..+1 mapped to 0..1" "class counts: -1:2 +1:2"
cp a.svm a_svm_named.txt
info a_svm_named.txt "format: LIBSVM (assumed from the content" "extension .txt"
info z.svm "indices zero-based: an index 0 is present"
info r.svm "float targets (convert with --regression)"
printf 'a,b,label\n1,2,cat\n3,,dog\n5,6,cat\n' | gzip >c.csv.gz
info c.csv.gz "format: CSV (assumed from the content: comma-separated fields" "gzip'd" "rows: 3 (data rows; a header row besides)" \
  "columns: 3" "label column: 'label' (2" "2 named classes" "class counts: cat:2 dog:1" "missing cells: 1"
"$PY" -c "
import gzip, struct
open('lab.idx', 'wb').write(struct.pack('>BBBBI', 0, 0, 8, 1, 6) + bytes([1, 0, 1, 9, 1, 0]))
with gzip.open('img.idx.gz', 'wb') as f: f.write(struct.pack('>BBBBIII', 0, 0, 8, 3, 2, 3, 4) + bytes(24))
open('short.idx', 'wb').write(struct.pack('>BBBBI', 0, 0, 8, 1, 6) + bytes([1, 0]))"
info lab.idx "format: IDX (by its magic 00 00 08 01)" "dims: [6]" "class counts: 0:2 1:3 9:1"
info img.idx.gz "IDX" "gzip'd" "dims: [2, 3, 4]" "rows: 2" "columns: 12"
refused 1 "short.idx: holds 2 data bytes, its header promises 6 (truncated)" info short.idx
head -c 300 /dev/urandom >noise.bin; printf '\0' >>noise.bin
refused 1 "noise.bin: not an ffn dataset (HDF5), .npy, .npz, IDX, CSV or LIBSVM file" info noise.bin
refused 1 "truncated.npz: a truncated zip archive" info truncated.npz
info svm_a.h5 "rows: 4" "features: 5" "attribute class_names = 0:-1 1:+1"
pass "info: npy, npz, LIBSVM (by content, whatever the extension), CSV (gzip'd), IDX and HDF5 fields; truncated and unknown files refused"

# ---- Bounded memory: files far larger than the headroom convert under ulimit -v.
if [[ -n ${ASAN_OPTIONS:-} ]]; then
  # AddressSanitizer reserves terabytes of address space for its shadow memory,
  # so ulimit -v cannot measure a sanitizer build; the plain build runs this part.
  pass "bounded memory: not measured in a sanitizer build (ulimit -v and ASan's shadow memory do not mix)"
else
# baseline CMD...: the smallest limit (1 MB steps) under which ffn-data CMD converts a small file.
baseline() {
  local lo=16 hi=8192 mid
  until ((hi - lo <= 1)); do
    mid=$(((lo + hi) / 2))
    # (a probe below the baseline may crash in a library loader: stderr is dropped)
    if (ulimit -v $((mid * 1024)); timeout 60 "$FFN_DATA" "$@" >/dev/null 2>&1) 2>/dev/null; then hi=$mid; else lo=$mid; fi
  done
  ((hi < 8192)) || fail "$* does not run even under 8 GB"
  echo "$hi"
}
"$PY" - <<'PY'
import numpy as np, zipfile
r = np.random.default_rng(5)
np.save("small_x.npy", r.standard_normal((10, 6))); np.save("small_y.npy", np.arange(10) % 3)
np.savez_compressed("small.npz", x=np.load("small_x.npy"), y=np.load("small_y.npy"))
# 2.5 M rows of 6 f8 features (120 MB) and i8 labels (20 MB): the old npy
# converter held all of it, plus a float32 copy of x.
N = 2_500_000
x = np.lib.format.open_memmap("big_x.npy", "w+", "f8", (N, 6))
for at in range(0, N, 500_000):
    x[at:at + 500_000] = np.arange(at * 6, (at + 500_000) * 6).reshape(-1, 6) % 1000 / 8
x.flush(); del x
np.save("big_y.npy", np.arange(N) % 7)
# The same arrays in an archive, stored and deflated (numpy streams members in).
for name, mode in (("big_stored.npz", zipfile.ZIP_STORED), ("big_deflated.npz", zipfile.ZIP_DEFLATED)):
    with zipfile.ZipFile(name, "w", mode, allowZip64=True) as z:
        z.write("big_x.npy", "x.npy"); z.write("big_y.npy", "y.npy")
PY
printf '%s\n' "+1 1:0.5 3:2" "-1 2:1 6:4" >small.svm
awk 'BEGIN { srand(9); for (i = 0; i < 1500000; i++) printf "%s 1:%d 2:%.5f 4:%.5f 7:%.5f 9:%.5f 12:%.5f\n", (i % 2 ? "+1" : "-1"), i, rand(), rand(), rand(), rand(), rand() }' >big.svm
npy_base=$(baseline npy --x small_x.npy --y small_y.npy --out small_npy.h5)
npz_base=$(baseline npz small.npz --out small_npz.h5)
svm_base=$(baseline libsvm small.svm --out small_svm.h5)
npy_mb=$((($(stat -c %s big_x.npy) + $(stat -c %s big_y.npy)) / 1048576))
((npy_mb >= 130)) || fail "big .npy files are only $npy_mb MB"
limit=$((npy_base + 40))
(ulimit -v $((limit * 1024)); timeout 300 "$FFN_DATA" npy --x big_x.npy --y big_y.npy --out big_npy.h5 >out.txt 2>err.txt) ||
  fail "$npy_mb MB of .npy did not convert under ulimit -v $limit MB (baseline $npy_base MB): $(cat err.txt)"
msg="$npy_mb MB of .npy under ulimit -v $limit MB (10 rows need $npy_base MB)"
for kind in stored deflated; do
  mb=$(($(stat -c %s big_$kind.npz) / 1048576)); limit=$((npz_base + 40))
  (ulimit -v $((limit * 1024)); timeout 300 "$FFN_DATA" npz big_$kind.npz --out big_$kind.h5 >out.txt 2>err.txt) ||
    fail "a $mb MB $kind .npz did not convert under ulimit -v $limit MB (baseline $npz_base MB): $(cat err.txt)"
  msg="$msg; a $mb MB $kind .npz ($npy_mb MB of arrays) under $limit MB"
done
svm_mb=$(($(stat -c %s big.svm) / 1048576)); limit=$((svm_base + 40))
((svm_mb >= 60)) || fail "big.svm is only $svm_mb MB"
(ulimit -v $((limit * 1024)); timeout 300 "$FFN_DATA" libsvm big.svm --out big_svm.h5 >out.txt 2>err.txt) ||
  fail "a $svm_mb MB LIBSVM file did not convert under ulimit -v $limit MB (baseline $svm_base MB): $(cat err.txt)"
msg="$msg; a $svm_mb MB LIBSVM file under $limit MB (baseline $svm_base MB)"
"$PY" - <<'PY' || fail "big file values"
import h5py, numpy as np
X = np.load("big_x.npy", mmap_mode="r"); Y = np.load("big_y.npy", mmap_mode="r")
for name in ("big_npy.h5", "big_stored.h5", "big_deflated.h5"):
    f = h5py.File(name)
    assert f["x"].shape == X.shape and f["y"].shape == Y.shape, name
    for at in (0, 4095, 4096, 1234567, X.shape[0] - 1):
        assert np.array_equal(f["x"][at], X[at].astype(np.float32)) and f["y"][at] == Y[at], (name, at)
    assert np.array_equal(f["y"][-100000:], Y[-100000:])
f = h5py.File("big_svm.h5")
assert f["x"].shape == (1500000, 12) and f["x"][1234567, 0] == 1234567 and f["x"][5, 2] == 0
assert f["y"][0] == 0 and f["y"][1499999] == 1
PY
pass "bounded memory: $msg"
fi
