#!/usr/bin/env bash
# ffn-data csv end to end: RFC 4180 quoting, CRLF, headers by name, string
# labels and their class_names attribute, numeric files converted exactly as
# the converter before libcsv did, missing values refused or filled, gzip
# input, malformed rows, and memory that does not grow with the file.
source "$(dirname "$0")/lib/common.sh"
DATA=$(cd "$(dirname "$0")/data/csv" && pwd)
export OPENBLAS_NUM_THREADS=1
# refused CODE PATTERN ARGS...: ffn-data csv ARGS exits CODE with a message matching PATTERN.
refused() {
  local code=$1 pattern=$2; shift 2
  set +e; "$FFN_DATA" csv "$@" >out.txt 2>err.txt; local rc=$?; set -e
  [[ $rc -eq $code ]] || fail "csv $*: exit $rc, expected $code: $(cat err.txt)"
  grep -qF -- "$pattern" err.txt || fail "csv $*: message lacks \"$pattern\": $(cat err.txt)"
  [[ ! -e refused.h5 ]] || fail "csv $*: wrote refused.h5"
}

# Quoting: commas, doubled quotes and a newline inside quoted names, quoted
# numbers, CRLF endings, the label named by the header and not last.
printf 'height,species,"weight, kg"\r\n1.5,"cat, tabby",3\r\n"2","dog ""rex""",4.25\r\n3,"cat, tabby",5\r\n4,"bird\nblue",-6\r\n' >q.csv
"$FFN_DATA" csv q.csv --label-col species --out q.h5 >out.txt
grep -q "4 rows, 2 features, 3 named classes" out.txt || fail "quoted csv summary: $(cat out.txt)"
"$PY" - <<'PY' || fail "quoted csv values"
import h5py, numpy as np
f = h5py.File("q.h5")
names = [s.decode() if isinstance(s, bytes) else s for s in f.attrs["class_names"]]
assert names == ["bird\nblue", "cat, tabby", 'dog "rex"'], names
assert np.array_equal(f["x"][()], np.array([[1.5, 3], [2, 4.25], [3, 5], [4, -6]], np.float32)), f["x"][()]
assert list(f["y"][()]) == [1, 2, 1, 0], f["y"][()]
assert int(f.attrs["num_classes"]) == 3
PY
"$FFN_DATA" info q.h5 >info.txt
grep -qF 'attribute class_names = 0:bird' info.txt && grep -qF "2:dog \"rex\" (3 values)" info.txt || fail "info: $(cat info.txt)"
pass "quoted fields, CRLF, header by name, string labels as class_names (info lists them)"

# Numeric files the converter before libcsv accepted: the same rows, values,
# labels and num_classes (its outputs are kept in old_converter_outputs.json).
"$PY" - "$FFN_DATA" "$DATA" <<'PY' || fail "numeric csv differs from the old converter"
import h5py, json, numpy as np, subprocess, sys
ffn, data = sys.argv[1], sys.argv[2]
old = json.load(open(f"{data}/old_converter_outputs.json"))
for name, o in old.items():
    subprocess.run([ffn, "csv", f"{data}/{o['file']}", "--out", f"old_{name}.h5", *o["args"]], check=True, stdout=subprocess.DEVNULL)
    f = h5py.File(f"old_{name}.h5")
    assert np.array_equal(f["x"][()], np.array(o["x"], np.float32)), (name, f["x"][()])
    if o["num_classes"] is None:
        assert np.array_equal(f["y"][()], np.array(o["y"], np.float32)), (name, f["y"][()])
        assert "num_classes" not in f.attrs
    else:
        assert f["y"].dtype == np.int32 and list(f["y"][()]) == o["y"], (name, f["y"][()])
        assert int(f.attrs["num_classes"]) == o["num_classes"], name
    assert "class_names" not in f.attrs, name
PY
# A first row whose only non-number is the label is a header when the other labels are numbers...
printf '1,2,label\n3,4,1\n5,6,0\n' >lh.csv
"$FFN_DATA" csv lh.csv --out lh.h5 | grep -q "2 rows, 2 features)" || fail "label-only header"
# ...and a data row when they are names.
printf '1,2,cat\n3,4,1\n5,6,dog\n' >ld.csv
"$FFN_DATA" csv ld.csv --out ld.h5 | grep -q "3 rows, 2 features, 3 named classes" || fail "label names with a numeric one"
printf '1,2,0\n3,4,2\n5,6,1.5\n' >lf.csv
refused 1 "lf.csv: row 3, column 2: label '1.5' is not an integer >= 0" lf.csv --out refused.h5
pass "numeric labels, values and num_classes as the old converter; label-only headers"

# Missing values: refused with row and column, then filled by each mode.
printf 'id,age,score,label\n1,30,1.5,a\n2,,2.5,b\n3,50,NA,a\n4,NaN,4.5,b\n' >m.csv
refused 1 "m.csv: row 3, column 'age' (1): empty cell; fill with --fill-missing mean|zero|VALUE" m.csv --out refused.h5
printf 'id,age,label\n1,30,a\n2,N/A,b\n' >m2.csv
refused 1 "m2.csv: row 3, column 'age' (1): missing value (NA/NaN/null); fill with --fill-missing" m2.csv --out refused.h5
for mode in zero mean -2.5; do
  "$FFN_DATA" csv m.csv --fill-missing "$mode" --out "m_$mode.h5" | grep -q "3 missing cells filled" || fail "fill $mode"
done
"$PY" - <<'PY' || fail "filled values"
import h5py, numpy as np
for mode, age, score in [("zero", 0, 0), ("mean", 40, 17 / 6), ("-2.5", -2.5, -2.5)]:
    x = h5py.File(f"m_{mode}.h5")["x"][()]
    want = np.array([[1, 30, 1.5], [2, age, 2.5], [3, 50, score], [4, age, 4.5]], np.float32)
    assert np.array_equal(x, want), (mode, x, want)
PY
printf 'a,label\n1,x\n2,\n' >ml.csv
refused 1 "ml.csv: row 3, column 'label' (1): missing label" ml.csv --fill-missing zero --out refused.h5
refused 2 "--fill-missing median: expected zero, mean or a finite number" m.csv --fill-missing median --out refused.h5
pass "missing values refused with row and column; filled with zero, mean (40 and 17/6) and a value"

# gzip'd input (found by its magic bytes, whatever the name) converts as the plain file.
gzip -c q.csv >q.csv.gz
cp q.csv.gz q_gzip_named_plain.csv
"$FFN_DATA" csv q.csv.gz --label-col species --out qz.h5 | grep -q "read gzip'd" || fail "gzip summary"
"$FFN_DATA" csv q_gzip_named_plain.csv --label-col species --out qz2.h5 >/dev/null
"$PY" - <<'PY' || fail "gzip differs from plain"
import h5py, numpy as np
a = h5py.File("q.h5")
for name in ("qz.h5", "qz2.h5"):
    b = h5py.File(name)
    assert np.array_equal(a["x"][()], b["x"][()]) and np.array_equal(a["y"][()], b["y"][()])
    assert list(a.attrs["class_names"]) == list(b.attrs["class_names"])
PY
head -c 40 q.csv.gz >trunc.csv.gz
refused 1 "trunc.csv.gz: the gzip stream is truncated" trunc.csv.gz --label-col 1 --out refused.h5
pass "gzip input equals plain; a truncated gzip refused"

# Malformed rows name the row.
printf 'a,b,c\n1,2,0\n3,4,1\n5,6\n7,8,0\n' >short.csv
refused 1 "short.csv: row 4: 2 fields, expected 3 like the header" short.csv --out refused.h5
printf '1,2,0\n3,4,1,9\n' >long.csv
refused 1 "long.csv: row 2: 4 fields, expected 3 like row 1" long.csv --out refused.h5
printf 'a,b,c\n1,2,0\n3,4"x,1\n' >quote.csv
refused 1 "quote.csv: row 3: error parsing data" quote.csv --out refused.h5
printf 'a,b,c\n1,2,0\n3,4,"open\n' >open.csv
refused 1 "open.csv: row 3:" open.csv --out refused.h5
printf 'a,b,c\n1,inf,0\n' >inf.csv
refused 1 "inf.csv: row 2, column 'b' (1): 'inf' is not a finite number" inf.csv --out refused.h5
refused 2 "--label-col nope: no such column" q.csv --label-col nope --out refused.h5
refused 2 "--label-col species names a column, but --no-header" q.csv --label-col species --no-header --out refused.h5
awk 'BEGIN { print "a,label"; for (i = 0; i <= 65536; i++) print i ",c" i }' >many.csv
refused 1 "many.csv: row 65538, column 'label' (1): more than 65536 distinct class names" many.csv --out refused.h5
pass "wrong field counts, bad quoting, inf, unknown columns and too many class names refused with the row"

# Bounded memory: a ~60 MB CSV converts under an address-space limit 40 MB
# above what a 10-row conversion needs, so memory cannot grow with the file
# (the old converter held every value as a double, ~80 MB here, then as floats).
if [[ -n ${ASAN_OPTIONS:-} ]]; then
  # AddressSanitizer reserves terabytes of address space for its shadow memory,
  # so ulimit -v cannot measure a sanitizer build; the plain build runs this part.
  pass "bounded memory: not measured in a sanitizer build (ulimit -v and ASan's shadow memory do not mix)"
else
awk 'BEGIN { print "a,b,c,d,e,f,g,h,label"; for (i = 0; i < 10; i++) print i ",1,2,3,4,5,6,7,cat" }' >small.csv
lo=16 hi=8192  # MB: the smallest limit (1 MB steps) under which small.csv converts
until ((hi - lo <= 1)); do
  mid=$(((lo + hi) / 2))
  # (a probe below the baseline may crash in a library loader: stderr is dropped)
  if (ulimit -v $((mid * 1024)); timeout 60 "$FFN_DATA" csv small.csv --out small.h5 >/dev/null 2>&1) 2>/dev/null; then hi=$mid; else lo=$mid; fi
done
baseline=$hi
((baseline < 8192)) || fail "small.csv does not convert even under 8 GB"
awk 'BEGIN { srand(7); print "a,b,c,d,e,f,g,h,label"
  for (i = 0; i < 1100000; i++) printf "%d,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%s\n", i, rand(), rand(), rand(), rand(), rand(), rand(), rand(), (i % 3 ? "cat" : "dog") }' >big.csv
size=$(($(stat -c %s big.csv) / 1048576))
((size >= 55)) || fail "big.csv is only $size MB"
limit=$((baseline + 40))
(ulimit -v $((limit * 1024)); timeout 300 "$FFN_DATA" csv big.csv --out big.h5 >out.txt 2>err.txt) ||
  fail "a $size MB CSV did not convert under ulimit -v $limit MB (baseline $baseline MB): $(cat err.txt)"
"$PY" - <<'PY' || fail "big csv values"
import h5py, numpy as np
f = h5py.File("big.h5")
x, y = f["x"], f["y"]
assert x.shape == (1100000, 8) and y.shape == (1100000,)
assert x[0, 0] == 0 and x[1099999, 0] == 1099999 and x[123456, 0] == 123456
assert list(y[:4]) == [1, 0, 0, 1] and y[1099999] == 0  # cat 0, dog 1: i % 3 == 0 is dog
assert [s.decode() if isinstance(s, bytes) else s for s in f.attrs["class_names"]] == ["cat", "dog"]
PY
pass "bounded memory: a $size MB CSV converts under ulimit -v $limit MB (a 10-row file needs $baseline MB)"
fi
