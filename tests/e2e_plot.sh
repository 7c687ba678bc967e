#!/usr/bin/env bash
# launch/plot.sh: two tiny runs with --val and --log-every (one JSON-lines, one CSV
# metrics file) drawn against steps and epochs; the PNG is a valid PNG of the
# requested size with the runs' colours in it; the table given to gnuplot
# (--dump-data) holds exactly the metrics files' values; paths with spaces and
# quotes; the refusals (an -o that is an input, missing/empty/record-less files,
# unknown flags) exit non-zero and leave no picture. Skips (77) without gnuplot.
PLOT=$(cd "$(dirname "$0")/.." && pwd)/launch/plot.sh
source "$(dirname "$0")/lib/common.sh"
command -v "${FFN_GNUPLOT:-gnuplot}" >/dev/null || { echo "SKIP: gnuplot is not installed (apt-get install gnuplot-nox)"; exit 77; }

"$FFN_DATA" synth blobs --rows 700 --classes 3 --features 4 --noise 2 --seed 2 --out all.h5 >/dev/null
"$FFN_DATA" split all.h5 --train-out train.h5 --val-out val.h5 --val-count 200 --seed 2 >/dev/null
# 500 rows / 25 = 20 steps per epoch, 3 epochs, a step record every 4 steps.
BASE=(--train train.h5 --val val.h5 --model dense:16:relu,dense:3 --batch-size 25 --epochs 3 --threads 1 --seed 5
  --progress off)
ARGS=("${BASE[@]}" --log-every 4)
mkdir "runs dir"
"$FFN_TRAIN" "${ARGS[@]}" --lr 0.01 --metrics "runs dir/lr 1e-2.jsonl" >a.txt
"$FFN_TRAIN" "${ARGS[@]}" --lr 0.002 --metrics "runs dir/lr2e-3.csv" >b.txt
A="runs dir/lr 1e-2.jsonl" B="runs dir/lr2e-3.csv"

# check_png FILE W H: a PNG of W x H pixels (IHDR), whose decoded pixels (IDAT inflated and
# unfiltered) are not blank and hold both runs' colours (#1f77b4 and #d62728, the first two).
check_png() {
  "$PY" - "$@" <<'PY'
import struct, sys, zlib
path, want_w, want_h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = open(path, "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "no PNG signature"
pos, chunks = 8, []
while pos < len(data):
    n, typ = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    crc, = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
    assert zlib.crc32(typ + body) == crc, f"bad CRC in {typ}"
    chunks.append((typ, body))
    pos += 12 + n
assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND", "IHDR first, IEND last"
w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
assert (w, h) == (want_w, want_h), f"{w}x{h}, want {want_w}x{want_h}"
assert depth == 8 and ctype in (2, 3, 6) and interlace == 0, f"depth {depth} colour type {ctype}"
bpp = {2: 3, 3: 1, 6: 4}[ctype]
raw = zlib.decompress(b"".join(b for t, b in chunks if t == b"IDAT"))
stride = w * bpp
assert len(raw) == h * (stride + 1), "IDAT size"
prev, pixels = bytearray(stride), set()
for y in range(h):
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + ((a + b) >> 1)) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        else: assert f == 0, f"filter {f}"
    pixels.update(bytes(line[i:i + bpp]) for i in range(0, stride, bpp))
    prev = line
if ctype == 3:
    plte = next(b for t, b in chunks if t == b"PLTE")
    pixels = {plte[3 * p[0]:3 * p[0] + 3] for p in pixels}
rgb = {p[:3] for p in pixels}
assert len(rgb) >= 8, f"only {len(rgb)} colours: blank"
for name, c in (("first run", b"\x1f\x77\xb4"), ("second run", b"\xd6\x27\x28")):
    assert c in rgb, f"no pixel of the {name}'s colour #{c.hex()}"
print(f"{w}x{h}, {len(rgb)} colours")
PY
}

# check_dump DUMP XAXIS METRICS...: the dump's blocks are, per file, the train then val
# series read independently from the metrics file (JSON or CSV), value for value.
check_dump() {
  "$PY" - "$@" <<'PY'
import csv, json, math, os, sys
dump, xaxis, files = sys.argv[1], sys.argv[2], sys.argv[3:]
def load(path):
    if path.endswith(".csv"):
        return [{k: (None if v == "nan" else v) for k, v in r.items()} for r in csv.DictReader(open(path))]
    return [json.loads(l) for l in open(path)]
def num(v): return float("nan") if v is None else float(v)
blocks = open(dump).read().split("\n\n\n")
assert len(blocks) == 2 * len(files), f"{len(blocks)} blocks for {len(files)} files"
for i, path in enumerate(files):
    recs = load(path)
    steps = [r for r in recs if r["kind"] == "step"]
    epochs = [r for r in recs if r["kind"] == "epoch"]
    assert steps and epochs and recs[-1]["kind"] == "val"
    x = "step" if xaxis == "steps" else "epoch"
    want = {"train": [(r[x], r["loss"], r["accuracy"]) for r in (steps if xaxis == "steps" else epochs)],
            "val": [(r[x], r["val_loss"], r["val_accuracy"]) for r in epochs]}
    name = os.path.splitext(os.path.basename(path))[0]
    for j, part in enumerate(("train", "val")):
        lines = blocks[2 * i + j].strip("\n").split("\n")
        assert lines[0] == f"# run {name} {part}", f"block header {lines[0]!r}"
        rows = [l.split(" ") for l in lines[1:] if not l.startswith("#")]
        assert len(rows) == len(want[part]), f"{path} {part}: {len(rows)} rows, want {len(want[part])}"
        for got, exp in zip(rows, want[part]):
            got, exp = [float(v) for v in got], [num(v) for v in exp]
            assert got == exp, f"{path} {part}: {got} != {exp}"
    print(f"{path}: {len(want['train'])} train + {len(want['val'])} val rows match ({xaxis})")
PY
}

# 1. Steps (the default), JSON and CSV together, an output path with spaces, a title with a quote.
mkdir "out dir"
"$PLOT" "$A" "$B" -o "out dir/steps plot.png" --title "blobs: it's lr 1e-2 vs 2e-3" --size 640x480 \
  --dump-data "out dir/steps.txt" >plot.txt
grep -q "wrote out dir/steps plot.png" plot.txt || fail "plot message: $(cat plot.txt)"
check_png "out dir/steps plot.png" 640 480 || fail "steps PNG"
check_dump "out dir/steps.txt" steps "$A" "$B" || fail "steps data"
# 20 steps/epoch x 3 / every 4 = 15 step records; 3 epoch records.
[[ $(grep -c '"kind":"step"' "$A") -eq 15 && $(grep -c '^step,' "$B") -eq 15 ]] || fail "not 15 step records"
pass "steps: JSON + CSV, PNG 640x480 with both runs' colours, the data is the metrics'"

# 2. Epochs, the default size.
"$PLOT" "$B" "$A" --x epochs -o epochs.png --dump-data epochs.txt >/dev/null
check_png epochs.png 960 720 || fail "epochs PNG"
check_dump epochs.txt epochs "$B" "$A" || fail "epochs data"
# One run alone, and the same run's CSV and JSON records agree with each other (to CSV's 9 digits).
"$FFN_TRAIN" "${ARGS[@]}" --lr 0.01 --metrics "again.csv" >/dev/null
"$PLOT" again.csv --dump-data again.txt
"$PLOT" "$A" --dump-data a.txt
"$PY" - again.txt a.txt <<'PY' || fail "JSON and CSV of the same run differ"
import sys
rows = [[l.split(" ") for l in open(p).read().split("\n") if l and not l.startswith("#")] for p in sys.argv[1:]]
assert len(rows[0]) == len(rows[1]) > 0
for a, b in zip(*rows):
    assert all(abs(float(x) - float(y)) <= 1e-8 * max(1, abs(float(y))) for x, y in zip(a, b)), (a, b)
PY
pass "epochs: PNG 960x720, data; the same run as CSV and JSON gives the same table"

# 3. A run without --log-every is drawn from its epoch records against steps.
"$FFN_TRAIN" "${BASE[@]}" --lr 0.01 --metrics nosteps.jsonl >/dev/null
grep -q '"kind":"step"' nosteps.jsonl && fail "nosteps.jsonl has step records"
"$PLOT" nosteps.jsonl -o nosteps.png --dump-data nosteps.txt >/dev/null
[[ $(sed -n '2,/^$/p' nosteps.txt | grep -c '^[0-9]') -eq 3 ]] || fail "nosteps: $(cat nosteps.txt)"
head -3 nosteps.txt | grep -q '^20 ' || fail "nosteps: first row at step 20: $(cat nosteps.txt)"
pass "a run without step records: its epoch records"

# 4. Refusals: non-zero, a message, no picture, inputs untouched.
sum_before=$(cat "$A" "$B" | cksum)
refuse() { # refuse RC PATTERN ARGS...: plot.sh ARGS exits RC with PATTERN on stderr
  local rc=$1 pat=$2; shift 2
  local got=0
  "$PLOT" "$@" >out.txt 2>err.txt || got=$?
  [[ $got -eq $rc ]] || fail "plot.sh $*: exit $got, want $rc: $(cat out.txt err.txt)"
  grep -q -- "$pat" err.txt || fail "plot.sh $*: message: $(cat err.txt)"
}
refuse 1 "is one of the inputs" "$A" "$B" -o "runs dir/../runs dir/lr2e-3.csv"
ln -s "runs dir/lr 1e-2.jsonl" link.jsonl
refuse 1 "is one of the inputs" "$A" -o link.jsonl
refuse 1 "is one of the inputs" "$A" -o x.png --dump-data "./$A"
[[ $(cat "$A" "$B" | cksum) == "$sum_before" ]] || fail "an input changed"
refuse 1 "missing.jsonl: no such file" "$A" missing.jsonl -o x.png
: >empty.csv
refuse 1 "empty.csv: empty" "$A" empty.csv -o x.png
grep '"kind":"val"' "$A" >final-only.jsonl
refuse 1 "final-only.jsonl: no step or epoch records" final-only.jsonl -o x.png
echo "not metrics" >junk.txt
refuse 1 "junk.txt: neither JSON-lines nor CSV" junk.txt -o x.png
{ head -2 "$A"; echo '{"kind":"step","epoch":1,'; } >broken.jsonl
refuse 1 "broken.jsonl:3: not a JSON metrics record" broken.jsonl -o x.png
refuse 2 "unknown flag '--colour'" "$A" -o x.png --colour red
refuse 2 "--x must be steps or epochs" "$A" -o x.png --x time
refuse 2 "--size must be WxH" "$A" -o x.png --size 640
refuse 2 "each side must be 200 to 10000" "$A" -o x.png --size 20x20
refuse 2 "-o OUT.png is required" "$A"
refuse 2 "no metrics file given" -o x.png
refuse 2 "-o needs a value" "$A" -o
refuse 1 "is a directory" "$A" -o "out dir"
refuse 1 "does not exist" "$A" -o "nowhere/x.png"
[[ ! -e x.png ]] || fail "a refused plot wrote x.png"
# gnuplot failing leaves no picture (nor a half one) behind.
printf '#!/bin/sh\necho "broken gnuplot" >&2\nexit 1\n' >fake-gnuplot && chmod +x fake-gnuplot
FFN_GNUPLOT=$PWD/fake-gnuplot refuse 1 "gnuplot failed" "$A" -o x.png
[[ -z $(find . -maxdepth 1 -name 'x.png*') ]] || fail "a failed gnuplot left $(ls x.png*)"
FFN_GNUPLOT=/nonexistent/gnuplot refuse 1 "gnuplot is not installed" "$A" -o x.png
"$PLOT" --help | grep -q "usage: launch/plot.sh METRICS" || fail "--help"
pass "refusals: -o/--dump-data an input (also via .. and a symlink), missing, empty, record-less, junk and broken files, flags; no picture left"
