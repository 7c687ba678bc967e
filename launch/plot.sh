#!/usr/bin/env bash
# Draws training curves from ffn-train --metrics files (JSON lines or CSV, told
# apart by their content) with gnuplot: loss in the top panel, accuracy in the
# bottom one, against the step (default) or the epoch; one colour per run, named
# by the file's basename without its extension; train solid, val dashed.
#   usage: launch/plot.sh METRICS... -o OUT.png [--x steps|epochs] [--title T]
#                         [--size WxH] [--dump-data FILE]
#   -o OUT.png        the picture (written whole: a failed plot leaves no OUT.png)
#   --x steps         x = global step: train from the "step" records (--log-every K;
#                     a run without them uses its epoch records), val from the
#                     epoch records, at the epoch's last step (default)
#   --x epochs        x = epoch: train and val both from the epoch records
#   --title T         the title above the two panels (default: none)
#   --size WxH        pixels, default 960x720
#   --dump-data FILE  also write the table given to gnuplot: per run a train block
#                     and a val block ("# run NAME train|val", then "x loss accuracy"
#                     rows, NaN where a record has no value), blocks separated by
#                     two blank lines; with --dump-data, -o may be left out (then
#                     gnuplot is not needed)
# The final "test"/"val" record of a run is not drawn. Needs gnuplot (Debian:
# gnuplot-nox; the pngcairo terminal when it has it, else png) and python3.
set -euo pipefail
prog=plot.sh
die() { echo "$prog: error: $*" >&2; exit 1; }
usage_err() { echo "$prog: error: $* (see --help)" >&2; exit 2; }

inputs=() out="" xaxis=steps title="" size=960x720 dump=""
need_arg() { [[ $# -ge 2 ]] || usage_err "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
    -o | --output) need_arg "$@"; out=$2; shift 2 ;;
    --x) need_arg "$@"; xaxis=$2; shift 2 ;;
    --title) need_arg "$@"; title=$2; shift 2 ;;
    --size) need_arg "$@"; size=$2; shift 2 ;;
    --dump-data) need_arg "$@"; dump=$2; shift 2 ;;
    --) shift; inputs+=("$@"); break ;;
    -?*) usage_err "unknown flag '$1'" ;;
    *) inputs+=("$1"); shift ;;
  esac
done

((${#inputs[@]})) || usage_err "no metrics file given"
[[ -n $out || -n $dump ]] || usage_err "-o OUT.png is required"
[[ $xaxis == steps || $xaxis == epochs ]] || usage_err "--x must be steps or epochs, not '$xaxis'"
[[ $size =~ ^([0-9]{1,5})x([0-9]{1,5})$ ]] || usage_err "--size must be WxH in pixels, e.g. 960x720, not '$size'"
width=$((10#${BASH_REMATCH[1]})) height=$((10#${BASH_REMATCH[2]}))
((width >= 200 && height >= 200 && width <= 10000 && height <= 10000)) ||
  usage_err "--size $size: each side must be 200 to 10000 pixels"

for f in "${inputs[@]}"; do
  [[ -e $f ]] || die "$f: no such file"
  [[ -f $f && -r $f ]] || die "$f: not a readable file"
done
# Outputs never overwrite inputs (nor each other).
for o in ${out:+"$out"} ${dump:+"$dump"}; do
  [[ -d $o ]] && die "$o: is a directory"
  for f in "${inputs[@]}"; do
    [[ $o -ef $f ]] && die "$o is one of the inputs ($f): refusing to write over it"
  done
  [[ -d $(dirname -- "$o") ]] || die "$o: directory $(dirname -- "$o") does not exist"
done
[[ -n $out && -n $dump && $out -ef $dump ]] && die "-o and --dump-data name the same file"
[[ -n $out && -n $dump && $out == "$dump" ]] && die "-o and --dump-data name the same file"

py=${FFN_PYTHON:-/usr/bin/python3}
[[ -x $py ]] || py=$(command -v python3) || die "python3 is needed (apt-get install python3)"
gnuplot=${FFN_GNUPLOT:-gnuplot}
if [[ -n $out ]]; then
  command -v "$gnuplot" >/dev/null || die "gnuplot is not installed (apt-get install gnuplot-nox)"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ffn-plot.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Metrics -> gnuplot table (data.txt) and the run names (names.txt, one a line).
"$py" - "$xaxis" "$work/data.txt" "$work/names.txt" "${inputs[@]}" <<'PY'
import csv, json, math, os, sys

xaxis, data_path, names_path, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
FIELDS = ["kind", "epoch", "step", "loss", "accuracy", "val_loss", "val_accuracy"]

def die(msg):
    print(f"plot.sh: error: {msg}", file=sys.stderr)
    sys.exit(1)

def num(v, where, key, required):
    """A finite or NaN float from a JSON number or a CSV cell; None when absent."""
    if v is None or v == "":
        if required: die(f"{where}: no '{key}'")
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        die(f"{where}: '{key}' is not a number: {v!r}")
    try:
        x = float(v)
    except ValueError:
        die(f"{where}: '{key}' is not a number: {v!r}")
    return None if math.isnan(x) else x

def records(path):
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        die(f"{path}: cannot read: {e}")
    lines = text.splitlines()
    first = next((l for l in lines if l.strip()), "")
    if first.lstrip().startswith("{"):
        for i, line in enumerate(lines, 1):
            if not line.strip(): continue
            try:
                o = json.loads(line)
            except json.JSONDecodeError as e:
                die(f"{path}:{i}: not a JSON metrics record: {e}")
            if not isinstance(o, dict): die(f"{path}:{i}: not a JSON object")
            yield f"{path}:{i}", o
    elif first.startswith("kind,"):
        reader = csv.DictReader(lines)
        missing = [k for k in FIELDS if k not in reader.fieldnames]
        if missing: die(f"{path}: CSV header lacks {', '.join(missing)}")
        for i, row in enumerate(reader, 2):
            if None in row or None in row.values(): die(f"{path}:{i}: wrong number of CSV fields")
            yield f"{path}:{i}", row
    elif not first:
        die(f"{path}: empty: no metrics records")
    else:
        die(f"{path}: neither JSON-lines nor CSV metrics (first line: {first[:60]!r})")

def fmt(v):
    return "NaN" if v is None else repr(v)

def fmt_x(v):  # steps and epochs are whole numbers
    return str(int(v)) if v.is_integer() else repr(v)

runs = []
for path in files:
    steps, epochs = [], []
    for where, r in records(path):
        kind = r.get("kind")
        if kind not in ("step", "epoch"): continue  # the final test/val evaluation
        rec = {k: num(r.get(k), where, k, k in ("epoch", "step", "loss")) for k in FIELDS[1:]}
        (steps if kind == "step" else epochs).append(rec)
    if not steps and not epochs:
        die(f"{path}: no step or epoch records")
    name = os.path.splitext(os.path.basename(path))[0]
    if xaxis == "steps":
        train = [(r["step"], r["loss"], r["accuracy"]) for r in (steps or epochs)]
        val = [(r["step"], r["val_loss"], r["val_accuracy"]) for r in epochs]
    else:
        if not epochs: die(f"{path}: no epoch records to draw against epochs (try --x steps)")
        train = [(r["epoch"], r["loss"], r["accuracy"]) for r in epochs]
        val = [(r["epoch"], r["val_loss"], r["val_accuracy"]) for r in epochs]
    val = [v for v in val if v[1] is not None or v[2] is not None]
    runs.append((name, train, val))

with open(data_path, "w") as out:
    blocks = []
    for name, train, val in runs:
        for part, rows in (("train", train), ("val", val)):
            body = "".join(f"{fmt_x(x)} {fmt(l)} {fmt(a)}\n" for x, l, a in rows)
            blocks.append(f"# run {name} {part}\n# x loss accuracy\n{body}")
    out.write("\n\n".join(blocks))
with open(names_path, "w") as out:
    for name, train, val in runs:
        counts = [len(train), len(val), sum(a is not None for _, _, a in train), sum(a is not None for _, _, a in val)]
        out.write("\t".join([name.replace("\n", " ").replace("\t", " ")] + [str(c) for c in counts]) + "\n")
PY

if [[ -n $dump ]]; then
  cp -- "$work/data.txt" "$work/dump.tmp"
  mv -f -- "$work/dump.tmp" "$dump"
fi
[[ -n $out ]] || exit 0

# A gnuplot string literal: single quotes, a quote doubled.
gq() { local s=${1//\'/\'\'}; printf "'%s'" "$s"; }

term=png
"$gnuplot" -e 'set terminal' </dev/null 2>&1 | grep -qw pngcairo && term=pngcairo
if [[ $term == pngcairo ]]; then
  termline="set terminal pngcairo size $width,$height noenhanced font 'sans,10'"
else
  termline="set terminal png size $width,$height noenhanced"
fi
colours=('#1f77b4' '#d62728' '#2ca02c' '#ff7f0e' '#9467bd' '#8c564b' '#e377c2' '#17becf' '#7f7f7f' '#bcbd22')
xlabel=step
[[ $xaxis == epochs ]] && xlabel=epoch

# Plot commands per panel: column 2 (loss) or 3 (accuracy). Blocks: run i train = 2i, val = 2i+1.
plot_cmd() {
  local col=$1 with_titles=$2 i=0 name ntrain nval tacc vacc c parts=() style
  while IFS=$'\t' read -r name ntrain nval tacc vacc; do
    # Accuracy panel: only the series that have accuracy values (an mse run has none).
    ((col == 3)) && ntrain=$tacc nval=$vacc
    c=${colours[i % ${#colours[@]}]}
    style="lines"
    [[ $xaxis == epochs || $ntrain -lt 2 ]] && style="linespoints pt 7 ps 0.6"
    if ((ntrain)); then
      parts+=("data index $((2 * i)) using 1:$col with $style lw 2 dt 1 lc rgb '$c' $(
        ((with_titles)) && printf 'title %s' "$(gq "$name")" || printf notitle)")
    fi
    if ((nval)); then
      parts+=("data index $((2 * i + 1)) using 1:$col with linespoints pt 7 ps 0.6 lw 2 dt 2 lc rgb '$c' notitle")
    fi
    i=$((i + 1))
  done <"$work/names.txt"
  if ((with_titles)); then
    parts+=("keyentry with lines lw 2 dt 1 lc rgb 'black' title 'train'")
    parts+=("keyentry with lines lw 2 dt 2 lc rgb 'black' title 'val'")
  fi
  if ((${#parts[@]} == 0)); then
    echo "set label 1 'no accuracy in these metrics' at graph 0.5, 0.5 center"
    echo "set xrange [0:1]; set yrange [0:1]"
    echo "plot NaN notitle"
    return
  fi
  local IFS=,
  echo "plot ${parts[*]}"
}

{
  echo "$termline"
  echo "set output $(gq "$work/plot.png")"
  echo "data = $(gq "$work/data.txt")"
  echo "set datafile missing 'NaN'"
  echo "set grid lc rgb '#dddddd'"
  echo "set key inside right top opaque box lw 0.5"
  echo "set lmargin 10"
  echo "set autoscale xfix"
  echo "set offsets graph 0.02, graph 0.02, 0, 0"
  # Whole epochs on the epoch axis while they fit.
  if [[ $xaxis == epochs ]] && awk '!/^#/ && NF && $1 > 25 { exit 1 }' "$work/data.txt"; then echo "set xtics 1"; fi
  if [[ -n $title ]]; then
    echo "set multiplot layout 2,1 title $(gq "$title") font ',12'"
  else
    echo "set multiplot layout 2,1"
  fi
  echo "set ylabel 'loss'"
  echo "set xlabel ''"
  plot_cmd 2 1
  echo "set ylabel 'accuracy'"
  echo "set xlabel '$xlabel'"
  echo "unset key"
  plot_cmd 3 0
  echo "unset multiplot"
  echo "set output"
} >"$work/plot.gp"

if ! "$gnuplot" "$work/plot.gp" >"$work/gnuplot.log" 2>&1 || [[ ! -s $work/plot.png ]]; then
  cat "$work/gnuplot.log" >&2
  die "gnuplot failed (its script: see above)"
fi
# gnuplot warns, e.g. about an axis with no valid points (a run without accuracy); pass that on.
grep -v '^$' "$work/gnuplot.log" >&2 || true
mv -f -- "$work/plot.png" "$out.tmp.$$" 2>/dev/null || cp -- "$work/plot.png" "$out.tmp.$$"
mv -f -- "$out.tmp.$$" "$out"
echo "$prog: wrote $out ($xlabel, ${#inputs[@]} run$( ((${#inputs[@]} == 1)) || echo s))"
