#!/usr/bin/env bash
# The report of issue 17: ffn-train's sharding modes side by side, memory and step
# time, with PyTorch's sharded peers (DDP + ZeroRedundancyOptimizer, FSDP) on the
# same model and batch.
#
#   launch/bench-shard.sh [--quick] [--model SPEC] [--input N] [--batch B] [--steps N]
#                         [--ranks "1 2 4"] [--modes "none optimizer grads params"] [--repeats N]
#                         [--keep DIR]
#
# For each rank count (default 1, 2 and 4; more ranks than cores run
# --oversubscribe) and each mode, runs ffn-train --shard MODE for --steps steps
# (default 30; Adam, MSE) on a synthetic regression set made with ffn-data, and
# reads from its output the predicted memory per rank (the 'memory: ... predicted'
# banner), the measured peak RSS per rank (the largest of the ranks, printed at
# the end; node-shared pages that other ranks hold divided among them, as the run
# prints it) and the step time (the fastest of the --log-every intervals after the
# first, from its --metrics file; with --repeats N the fastest of N runs, and the
# largest peak RSS of them). A build whose ffn-train has no --shard runs
# 'none' without the flag and 'optimizer' as --shard-optimizer; a mode ffn-train
# rejects is skipped with its message. Then launch/bench_torch.py runs DDP,
# DDP + ZeroRedundancyOptimizer (ZeRO-1) and FSDP on 2 ranks, gloo, 1 thread each
# (the same model, data and global batch), or prints why one cannot run.
#
# The table: mode, ranks, predicted and measured MiB per rank, 16 B x P / N (the
# model state, fp32 parameters + gradients + Adam's two moments, spread over N
# ranks), the working set (the prediction less the mode's model state below:
# activations, data, buffers, runtime base, and with --shard grads/params the one
# layer's gradients and parameters in flight), measured / (16 B x
# P / N + working set) (the target of --shard params: <= 1.2), measured / (the
# mode's own model state + working set), and step time against mode none at the
# same rank count. About 2-3 minutes on 2 cores (more under load); --quick (10 steps, ranks 1 and
# 2, a short PyTorch run) about 1.5.
#
# Environment: FFN_BUILD_DIR (default build; built by launch/setup.sh when
# ffn-train is missing), PYTHON (default /usr/bin/python3, Debian's).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
quick=0 keep="" repeats=1 spec=dense:4096:gelu,dense:4096:gelu,dense:1024 input=1024 batch=64 steps="" ranks="" modes="none optimizer grads params"
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --model) spec=$2; shift ;;
    --input) input=$2; shift ;;
    --batch) batch=$2; shift ;;
    --steps) steps=$2; shift ;;
    --ranks) ranks=$2; shift ;;
    --modes) modes=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    --keep) keep=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-shard.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for v in "$input" "$batch" "$repeats" ${steps:+"$steps"} $ranks; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "bench-shard.sh: '$v' is not a positive number" >&2; exit 2; }
done
for m in $modes; do
  [[ $m =~ ^(none|optimizer|grads|params)$ ]] || { echo "bench-shard.sh: unknown mode '$m'" >&2; exit 2; }
done
[[ -n $steps ]] || steps=$((quick ? 10 : 30))
[[ -n $ranks ]] || ranks=$( ((quick)) && echo "1 2" || echo "1 2 4")
out=${spec##*,}; out=${out#*:}; out=${out%%:*}
[[ $out =~ ^[1-9][0-9]*$ ]] || { echo "bench-shard.sh: --model must end in a layer of known width (dense:N...), not '${spec##*,}'" >&2; exit 2; }

build=${FFN_BUILD_DIR:-build}
[[ $build = /* ]] || build=$here/$build
if [[ ! -x $build/ffn-train || ! -x $build/ffn-data ]]; then
  echo "bench-shard.sh: building into $build (launch/setup.sh)"
  FFN_BUILD_DIR=$build bash launch/setup.sh >/dev/null
fi
TRAIN=$build/ffn-train
PY=${PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

work=${keep:-$(mktemp -d /tmp/ffn-bench-shard.XXXXXX)}
mkdir -p "$work"
[[ -n $keep ]] || trap 'rm -rf "$work"' EXIT
data=$work/train.h5
rows=$((batch * steps > 1024 ? batch * steps : 1024)) # one epoch: no epoch's end inside the timed steps
"$build/ffn-data" synth regression --rows $rows --features "$input" --classes "$out" --seed 1 --out "$data" >/dev/null

# Does this ffn-train take --shard MODE, or only --shard-optimizer (before issue 17)?
has_shard=0
help=$("$TRAIN" --help 2>&1 || true)
grep -Eq -- '^ *--shard[ =]' <<<"$help" && has_shard=1
every=5; ((steps >= 2 * every)) || every=1
LIMIT=(timeout -k 10 240) # a stuck run fails its row, never the report
cores=$(nproc)

# ---- parsing ffn-train's output
# mib NUMBER UNIT: the size in MiB
mib() { awk -v v="$1" -v u="$2" 'BEGIN{m = u == "B" ? 1 / 1048576 : u == "KiB" ? 1 / 1024 : u == "MiB" ? 1 : u == "GiB" ? 1024 : u == "TiB" ? 1048576 : -1; if (m < 0) print ""; else printf "%.2f", v * m}'; }
# part LINE NAME: the MiB of one part of the 'memory: X per rank predicted (base ..., params ...)' banner
part() { local s; s=$(grep -o "[(,] \{0,1\}$2 [0-9.]* [KMGT]*i*B" <<<"$1" | head -1 | awk '{print $(NF-1), $NF}') || true; [[ -n $s ]] && mib $s || echo 0; }
# best_step_ms METRICS: the fastest interval between --log-every records after the first, ms per step
best_step_ms() {
  awk -F, -v k=$every 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    $c["kind"] == "step" { n++; if (n > 1) { d = ($c["elapsed_s"] - prev) / k * 1000; if (best == "" || d < best) best = d } prev = $c["elapsed_s"] }
    END { if (best != "") printf "%.1f", best }' "$1" 2>/dev/null || true
}

# parse_run OUT METRICS: "predicted RSS working-set step-ms" in MiB and ms ("-" where missing);
# sets params from the model line
parse_run() {
  local banner pred state ws rss p ms sps
  banner=$(grep -m1 '^memory: .* per rank predicted' "$1" || true)
  pred=$(sed -n 's/^memory: \([0-9.]*\) \([KMGT]*i*B\) per rank predicted.*/\1 \2/p' <<<"$banner")
  pred=$([[ -n $pred ]] && mib $pred || true)
  state=$(awk -v a="$(part "$banner" params)" -v b="$(part "$banner" grads)" -v c="$(part "$banner" optimizer)" 'BEGIN{printf "%.2f", a + b + c}')
  ws=$([[ -n $pred ]] && awk -v t="$pred" -v s="$state" 'BEGIN{printf "%.2f", t - s}' || true)
  # The rank's own part: node-shared pages other ranks hold divided among them, when the run says so.
  rss=$(sed -n 's/^memory: peak RSS .*; \([0-9.]*\) \([KMGT]*i*B\) with node-shared pages divided.*/\1 \2/p' "$1" | head -1)
  [[ -n $rss ]] || rss=$(sed -n 's/^memory: peak RSS \([0-9.]*\) \([KMGT]*i*B\) per rank.*/\1 \2/p' "$1" | head -1)
  rss=$([[ -n $rss ]] && mib $rss || true)
  ms=$(best_step_ms "$2")
  if [[ -z $ms ]]; then # no metrics: the whole run's rate, its first steps included
    sps=$(sed -n 's/^done: .*, \([0-9.]*\) samples\/s,.*/\1/p' "$1")
    ms=$([[ -n $sps ]] && awk -v b="$batch" -v s="$sps" 'BEGIN{if (s > 0) printf "%.1f", 1000 * b / s}' || true)
  fi
  echo "${pred:--} ${rss:--} ${ws:--} ${ms:--}"
}

# ---- the ffn-train runs: one line per (mode, ranks) in $work/ffn.txt
: >"$work/ffn.txt"
params=""
for n in $ranks; do
  launcher=()
  if ((n > 1)); then
    launcher=(mpirun -np "$n")
    ((n > cores)) && launcher+=(--oversubscribe)
  fi
  for m in $modes; do
    flag=()
    if ((has_shard)); then flag=(--shard "$m")
    elif [[ $m == optimizer ]]; then flag=(--shard-optimizer)
    elif [[ $m != none ]]; then
      echo "$m $n skip ffn-train here has no --shard (only --shard-optimizer)" >>"$work/ffn.txt"
      continue
    fi
    tag=$m-$n
    cmd=("${launcher[@]}" "$TRAIN" --train "$data" --model "$spec" --loss mse --optimizer adam --lr 1e-4
         --batch-size "$batch" --max-steps "$steps" --progress off --log-every "$every"
         "${flag[@]}")
    echo "+ ${cmd[*]}" >>"$work/commands.txt"
    echo "bench-shard.sh: $m, $n rank(s)" >&2
    best="" rc=0
    for ((r = 1; r <= repeats; r++)); do
      rm -f "$work/$tag.$r.csv"
      "${LIMIT[@]}" "${cmd[@]}" --metrics "$work/$tag.$r.csv" >"$work/$tag.$r.out" 2>&1 || rc=$?
      if ((rc)) || ! grep -q '^done:' "$work/$tag.$r.out"; then break; fi
      read -r pred rss ws ms <<<"$(parse_run "$work/$tag.$r.out" "$work/$tag.$r.csv")"
      # the fastest run's step time; the memory of the run that used the most
      if [[ -z $best ]]; then best="$pred $rss $ws $ms"; continue; fi
      read -r bp br bw bm <<<"$best"
      awk -v a="$ms" -v b="$bm" 'BEGIN{exit !(a != "-" && (b == "-" || a < b))}' && bm=$ms
      awk -v a="$rss" -v b="$br" 'BEGIN{exit !(a != "-" && (b == "-" || a > b))}' && br=$rss
      best="$bp $br $bw $bm"
    done
    if [[ -z $best ]]; then
      out1=$work/$tag.$r.out
      why=$(grep -m1 -i 'error\|unknown\|invalid\|not \|cannot\|needs' "$out1" || tail -1 "$out1")
      ((rc == 124 || rc == 137)) && why="timed out after ${LIMIT[2]} s"
      echo "$m $n skip ffn-train exit $rc: ${why:-no output}" >>"$work/ffn.txt"
      continue
    fi
    p=$(sed -n 's/^model: .*, \([0-9]*\) parameters,.*/\1/p' "$work/$tag.1.out" | head -1)
    [[ -n $p ]] && params=$p
    echo "$m $n ok $best" >>"$work/ffn.txt"
  done
done

# ---- PyTorch on 2 ranks: DDP, DDP + ZeroRedundancyOptimizer, FSDP
: >"$work/torch.txt"
torch_why=""
if ! "$PY" -c 'import torch, h5py' 2>/dev/null; then
  torch_why="PyTorch or h5py not available to $PY (apt-get install python3-torch python3-h5py)"
elif [[ ! $spec =~ ^dense:[0-9]+(:[a-z]+)?(,dense:[0-9]+(:[a-z]+)?)*$ ]]; then
  torch_why="bench_torch.py builds dense layers only, not --model $spec"
elif ((batch % 2)); then
  torch_why="--batch $batch does not split over 2 ranks"
else
  for m in none optimizer fsdp; do
    echo "bench-shard.sh: PyTorch --shard $m, 2 ranks" >&2
    cmd=("$PY" launch/bench_torch.py --model "$spec" --data "$data" --batch "$batch" --threads 1 --ranks 2
         --seconds $((quick ? 1 : 3)) --shard "$m" --name "torch-$m")
    echo "+ ${cmd[*]}" >>"$work/commands.txt"
    line=$("${LIMIT[@]}" "${cmd[@]}" 2>>"$work/torch-stderr.txt" | grep '^RESULT' | tail -1) || true
    echo "${line:-RESULT torch name=torch-$m shard=$m status=failed reason=\"no RESULT line; see $work/torch-stderr.txt\"}" >>"$work/torch.txt"
  done
fi

# ---- the table
get() { sed -n "s/.* $2=\([^ \"]*\).*/\1/p" <<<"$1" | head -1; }
num() { [[ -n $1 ]] && awk -v v="$1" 'BEGIN{exit !(v == v + 0)}'; }
div() { if num "$1" && num "$2" && awk -v b="$2" 'BEGIN{exit !(b != 0)}'; then awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a / b}'; else echo "-"; fi; }
fmt() { if num "$1"; then awk -v v="$1" -v d="${2:-0}" 'BEGIN{printf "%.*f", d, v}'; else echo "${1:--}"; fi; }
row() { printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$@"; }
# state_mib MODE N: the model state a rank of MODE keeps, fp32 P x (params 4 + grads 4 + Adam 8) B
state_mib() {
  [[ -n $params ]] || { echo ""; return; }
  awk -v p="$params" -v n="$2" -v m="$1" 'BEGIN{
    b = m == "none" ? 16 * p : m == "optimizer" ? 8 * p + 8 * p / n : m == "grads" ? 4 * p + 12 * p / n : 16 * p / n
    printf "%.2f", b / 1048576 }'
}
declare -A none_ms
while read -r m n st pred rss ws ms; do
  [[ $m == none && $st == ok ]] && none_ms[$n]=$ms
done <"$work/ffn.txt"

echo
echo "ffn sharding: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')); load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "model: $input -> $spec, ${params:-?} parameters (16 B x P = $(fmt "$(state_mib none 1)" 1) MiB), MSE, Adam, fp32; global batch $batch, $steps steps a run"
echo "ffn-train: $($TRAIN --version 2>/dev/null | head -1); $( ((has_shard)) && echo "--shard MODE" || echo "no --shard MODE here: none without the flag, optimizer as --shard-optimizer")"
echo "step ms: ffn-train the fastest $every-step interval after the first (best of $repeats run(s)); PyTorch the fastest of 5 timed repeats (2 ranks x 1 thread, gloo)"
echo
row "mode" "ranks" "predicted MiB/rank" "peak RSS MiB/rank" "16 B x P / N MiB" "working set MiB" "RSS / (16BxP/N + ws)" "RSS / (mode's state + ws)" "step ms" "step vs none"
row "---" "---:" "---:" "---:" "---:" "---:" "---:" "---:" "---:" "---:"
while read -r m n st rest; do
  if [[ $st == skip ]]; then
    row "$m" "$n" "skipped: $rest" "-" "-" "-" "-" "-" "-" "-"
    continue
  fi
  read -r pred rss ws ms <<<"$rest"
  st_m=$(state_mib "$m" "$n")
  # The working set: the prediction less the mode's model state (activations, data, the runtime,
  # and with --shard grads/params the one layer's gradients and parameters in flight).
  num "$pred" && num "$st_m" && ws=$(awk -v t="$pred" -v s="$st_m" 'BEGIN{printf "%.2f", t - s}')
  s16=$(awk -v p="${params:-0}" -v n="$n" 'BEGIN{printf "%.2f", 16 * p / n / 1048576}')
  r16=$(num "$ws" && div "$rss" "$(awk -v a="$s16" -v b="$ws" 'BEGIN{print a + b}')" || echo -)
  rm_=$(num "$ws" && num "$st_m" && div "$rss" "$(awk -v a="$st_m" -v b="$ws" 'BEGIN{print a + b}')" || echo -)
  row "$m" "$n" "$(fmt "$pred" 1)" "$(fmt "$rss" 1)" "$(fmt "$s16" 1)" "$(fmt "$ws" 1)" "$r16" "$rm_" "$(fmt "$ms" 1)" "$(div "$ms" "${none_ms[$n]:-}")"
done <"$work/ffn.txt"

echo
echo "PyTorch $( "$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo "-") peers, 2 ranks x 1 thread, gloo, the same model, data and global batch $batch (Pss: shared pages split among the processes; base: RSS with torch, data and gloo loaded, before the model):"
echo
row "peer" "ranks" "ffn mode" "peak RSS MiB/rank" "Pss MiB at end, ranks" "base RSS MiB" "step ms" "step vs DDP" "ffn step ms, same mode, 2 ranks" "ffn peak RSS MiB/rank"
row "---" "---:" "---" "---:" "---:" "---:" "---:" "---:" "---:" "---:"
if [[ -n $torch_why ]]; then
  row "PyTorch" "2" "-" "skipped: $torch_why" "-" "-" "-" "-" "-" "-"
else
  ddp_ms=$(get "$(grep ' shard=none ' "$work/torch.txt" || true)" step_ms)
  while read -r line; do
    m=$(get "$line" shard)
    case $m in none) peer="DDP" fm=none ;; optimizer) peer="DDP + ZeroRedundancyOptimizer (ZeRO-1)" fm=optimizer ;; *) peer="FSDP (FULL_SHARD)" fm=params ;; esac
    f=$(awk -v m="$fm" '$1 == m && $2 == 2 && $3 == "ok"' "$work/ffn.txt")
    f_ms=$(awk '{print $7}' <<<"$f") f_rss=$(awk '{print $5}' <<<"$f")
    status=$(get "$line" status)
    if [[ -n $status ]]; then
      why=$(sed -n 's/.* reason="\(.*\)".*/\1/p' <<<"$line")
      row "$peer" "2" "$fm" "$status: torch $(get "$line" torch), Python $(get "$line" python), CUDA $(get "$line" cuda): $why" "-" "-" "-" "-" "$(fmt "$f_ms" 1)" "$(fmt "$f_rss" 1)"
    else
      ms=$(get "$line" step_ms)
      row "$peer" "2" "$fm" "$(fmt "$(get "$line" peak_rss_mib)" 1)" "$(get "$line" pss_mib_ranks)" "$(fmt "$(get "$line" base_rss_mib)" 1)" "$(fmt "$ms" 1)" "$(div "$ms" "$ddp_ms")" "$(fmt "$f_ms" 1)" "$(fmt "$f_rss" 1)"
    fi
  done <"$work/torch.txt"
fi
echo
echo "(16 B x P / N: the target of --shard params is RSS <= 1.2 x (16 B x P / N + working set); mode's state: none 16P, optimizer 8P + 8P/N, grads 4P + 12P/N, params 16P/N bytes; $([[ -n $keep ]] && echo "every run's output and command: $keep" || echo "--keep DIR keeps every run's output and command"))"
