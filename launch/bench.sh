#!/usr/bin/env bash
# The benchmark of issue 7: ffn side by side with PyTorch on this machine, every
# figure a ratio measured in the same run with the same threads, shapes and data.
#
#   launch/bench.sh [--quick] [--repeats N] [--keep DIR]
#
# Runs ffn-bench (micro measures: training step from memory, the sgemm bound of
# the same shapes, gradient exchange vs a bare MPI_Allreduce, checkpoint writes),
# ffn-train's own run through `ffn-bench train` (end to end from HDF5: samples/s,
# data wait, peak RSS) and launch/bench_torch.py (PyTorch, and DDP with gloo in
# two processes), then prints one table of ratios. Installs python3-torch when it
# is missing and it can (root, apt); otherwise the PyTorch columns say why they
# are empty. About 3-4 minutes; --quick is a fast pass over the same rows.
#
# Timing: rates are the best of five timed repeats inside each tool (ffn and
# PyTorch alike), and end-to-end runs the best of --repeats runs (default 3):
# this machine is shared, and the fastest repeat is the steadiest measure of
# the code (timeit's advice). The load average is printed with the table.
#
# Environment: FFN_BUILD_DIR (default build; built by launch/setup.sh when
# ffn-bench is missing), PYTHON (default /usr/bin/python3, Debian's).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
quick=0 repeats=3 keep=""
while (($#)); do
  case $1 in
    --quick) quick=1; repeats=1 ;;
    --repeats) repeats=$2; shift ;;
    --keep) keep=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

build=${FFN_BUILD_DIR:-build}
[[ $build = /* ]] || build=$here/$build
if [[ ! -x $build/ffn-bench || ! -x $build/ffn-train ]]; then
  echo "bench.sh: building into $build (launch/setup.sh)"
  FFN_BUILD_DIR=$build bash launch/setup.sh >/dev/null
fi
BENCH=$build/ffn-bench
PY=${PYTHON:-/usr/bin/python3}

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun -np 2)

work=${keep:-$(mktemp -d /tmp/ffn-bench.XXXXXX)}
mkdir -p "$work"
[[ -n $keep ]] || trap 'rm -rf "$work"' EXIT
log=$work/results.txt
: >"$log"

# ---- PyTorch: installed, installable, or skipped with the reason
torch=1 torch_why=""
if ! "$PY" -c 'import torch' 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "bench.sh: installing python3-torch (Debian's, CPU) for the PyTorch columns"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq python3-torch >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq python3-torch >/dev/null 2>&1; } || true
  fi
  if ! "$PY" -c 'import torch' 2>/dev/null; then
    torch=0
    torch_why="PyTorch not available to $PY (apt-get install python3-torch needs root and the Debian archive); PyTorch columns skipped"
    echo "bench.sh: $torch_why" >&2
  fi
fi
if ((torch)) && ! "$PY" -c 'import h5py' 2>/dev/null; then
  torch=0 torch_why="h5py missing for $PY (apt-get install python3-h5py); PyTorch columns skipped"
  echo "bench.sh: $torch_why" >&2
fi

# ---- data: Fashion-MNIST for the small MLP when it can be had, synthetic otherwise
mlp_data=$work/mlp.h5 mlp_what=""
if [[ -s $here/data/fashion-mnist/train.h5 ]]; then
  mlp_data=$here/data/fashion-mnist/train.h5 mlp_what="Fashion-MNIST train.h5 (60000 x 784 uint8)"
elif [[ -x $build/ffn-data && -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]] &&
     bash datasets/fashion-mnist.sh "$work/fmnist" "$build/ffn-data" >/dev/null 2>&1; then
  mlp_data=$work/fmnist/train.h5 mlp_what="Fashion-MNIST train.h5 (60000 x 784 uint8)"
else
  "$build/ffn-data" synth blobs --rows 60000 --features 784 --classes 10 --seed 1 --out "$mlp_data" >/dev/null
  mlp_what="synthetic 60000 x 784 float32, 10 classes (Fashion-MNIST not available)"
fi
ffn_rows=$((quick ? 2048 : 4096))
ffn_data=$work/ffn.h5
"$build/ffn-data" synth regression --rows $ffn_rows --features 1024 --classes 1024 --seed 1 --out "$ffn_data" >/dev/null

secs=$((quick ? 1 : 2))
MLP=dense:128:relu,dense:10 FFN=dense:4096:gelu,dense:1024
LIMIT=(timeout -k 10 300) # a stuck run fails its rows, never the benchmark
run() {
  echo "+ $*" >>"$work/commands.txt"
  "${LIMIT[@]}" "$@" 2>>"$work/stderr.txt" | tee -a "$log" | grep '^RESULT' | tail -1 || true
}
# best_of N CMD...: runs CMD N times, keeps the RESULT line with the highest samples_per_s
best_of() {
  local n=$1; shift
  local best="" bv=-1 line v
  for ((i = 0; i < n; i++)); do
    echo "+ $*" >>"$work/commands.txt"
    line=$("${LIMIT[@]}" "$@" 2>>"$work/stderr.txt" | tee -a "$work/train-output.txt" | grep '^RESULT' | tail -1) || true
    v=$(sed -n 's/.* samples_per_s=\([0-9.]*\).*/\1/p' <<<"$line")
    if [[ -n $v ]] && awk -v a="$v" -v b="$bv" 'BEGIN{exit !(a>b)}'; then best=$line bv=$v; fi
  done
  echo "$best" | tee -a "$log" >/dev/null
  echo "$best"
}
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench.sh: $(nproc) cores, load average $load_start at start; results in $work" >&2

# Each ffn measure is followed by its PyTorch counterpart, so both see the same machine.
TP=("$PY" launch/bench_torch.py --seconds $secs)
torch_run() { if ((torch)); then run "${TP[@]}" "$@"; fi; }
# ---- 1/2. one rank: the training step from memory, the sgemm bound of the same shapes, PyTorch
R_mlp32=$(run "$BENCH" step --name mlp32 --model $MLP --input 784 --loss softmax_ce --batch 32 --threads 1 --data "$mlp_data" --seconds $secs)
T_mlp32=$(torch_run --model mlp --data "$mlp_data" --batch 32 --threads 1)
R_mlp256=$(run "$BENCH" step --name mlp256 --model $MLP --input 784 --loss softmax_ce --batch 256 --threads 1 --data "$mlp_data" --seconds $secs)
T_mlp256=$(torch_run --model mlp --data "$mlp_data" --batch 256 --threads 1)
R_ffn1=$(run "$BENCH" step --name ffn-t1 --model $FFN --input 1024 --loss mse --batch 256 --threads 1 --data "$ffn_data" --seconds $secs)
T_ffn1=$(torch_run --model ffn --data "$ffn_data" --batch 256 --threads 1)
# bf16 (--precision bf16: oneDNN's bf16 matmul) beside PyTorch's autocast bf16, where this build and CPU run it
R_ffn1b="" T_ffn1b="" R_mlp32b="" T_mlp32b="" R2_ffnb=""
bf16_why=$("$build/ffn-train" --train "$mlp_data" --model $MLP --precision bf16 --max-steps 1 --threads 1 --quiet 2>&1 >/dev/null | sed -n 's/.*--precision bf16: //p' | head -1) || true
if [[ -z $bf16_why ]]; then
  R_ffn1b=$(run "$BENCH" step --name ffn-t1-bf16 --model $FFN --input 1024 --loss mse --batch 256 --threads 1 --data "$ffn_data" --seconds $secs --precision bf16)
  T_ffn1b=$(torch_run --model ffn --data "$ffn_data" --batch 256 --threads 1 --precision bf16)
  R_mlp32b=$(run "$BENCH" step --name mlp32-bf16 --model $MLP --input 784 --loss softmax_ce --batch 32 --threads 1 --data "$mlp_data" --seconds $secs --precision bf16)
  T_mlp32b=$(torch_run --model mlp --data "$mlp_data" --batch 32 --threads 1 --precision bf16)
else
  echo "bench.sh: bf16 rows skipped: $bf16_why" >&2
fi
R_ffn2=$(run "$BENCH" step --name ffn-t2 --model $FFN --input 1024 --loss mse --batch 256 --threads 2 --data "$ffn_data" --seconds $secs)
T_ffn2=$(torch_run --model ffn --data "$ffn_data" --batch 256 --threads 2)
# ---- 3/4. two ranks: the step, the step without exchange, the exchange alone, a bare MPI_Allreduce; DDP gloo
R2_mlp32=$(run "${MPIRUN[@]}" "$BENCH" step --name mlp32-2r --model $MLP --input 784 --loss softmax_ce --batch 32 --threads 1 --data "$mlp_data" --seconds $secs)
D_mlp32=$(torch_run --model mlp --data "$mlp_data" --batch 32 --threads 1 --ranks 2)
R2_mlp256=$(run "${MPIRUN[@]}" "$BENCH" step --name mlp256-2r --model $MLP --input 784 --loss softmax_ce --batch 256 --threads 1 --data "$mlp_data" --seconds $secs)
D_mlp256=$(torch_run --model mlp --data "$mlp_data" --batch 256 --threads 1 --ranks 2)
R2_ffn=$(run "${MPIRUN[@]}" "$BENCH" step --name ffn-2r --model $FFN --input 1024 --loss mse --batch 256 --threads 1 --data "$ffn_data" --seconds $secs)
D_ffn=$(torch_run --model ffn --data "$ffn_data" --batch 256 --threads 1 --ranks 2)
[[ -n $bf16_why ]] || R2_ffnb=$(run "${MPIRUN[@]}" "$BENCH" step --name ffn-2r-bf16 --model $FFN --input 1024 --loss mse --batch 256 --threads 1 --data "$ffn_data" --seconds $secs --precision bf16)
# ... and with --shard optimizer: on one node the parameters and their bf16 copy once, each rank updating half
R2_ffnbo=""
[[ -n $bf16_why ]] || R2_ffnbo=$(run "${MPIRUN[@]}" "$BENCH" step --name ffn-2r-bf16-shard --model $FFN --input 1024 --loss mse --batch 256 --threads 1 --data "$ffn_data" --seconds $secs --precision bf16 --shard optimizer)

# ---- two ranks against one: the same step runs again, 1 and 2 ranks taking turns, and each
# side's fastest run counts. One run each swung the ratio 1.52-1.72 (this machine's memory
# bandwidth is shared with other guests); alternating gives both sides the same spread.
faster() { # faster LINE1 LINE2: the RESULT line with the higher samples_per_s (an empty one loses)
  local a b
  a=$(sed -n 's/.* samples_per_s=\([0-9.]*\).*/\1/p' <<<"$1")
  b=$(sed -n 's/.* samples_per_s=\([0-9.]*\).*/\1/p' <<<"$2")
  if [[ -n $b ]] && { [[ -z $a ]] || awk -v a="$a" -v b="$b" 'BEGIN{exit !(b > a)}'; }; then echo "$2"; else echo "$1"; fi
}
pairs=$((quick ? 1 : 3))
S1_ffn=$R_ffn1 S2_ffn=$R2_ffn S1_ffnb=$R_ffn1b S2_ffnb=$R2_ffnb S2_ffnbo=$R2_ffnbo
FS=(step --model $FFN --input 1024 --loss mse --batch 256 --threads 1 --data "$ffn_data" --seconds $secs)
for ((i = 1; i < pairs; i++)); do
  S1_ffn=$(faster "$S1_ffn" "$(run "$BENCH" "${FS[@]}" --name ffn-t1)")
  S2_ffn=$(faster "$S2_ffn" "$(run "${MPIRUN[@]}" "$BENCH" "${FS[@]}" --name ffn-2r)")
  [[ -n $bf16_why ]] && continue
  S1_ffnb=$(faster "$S1_ffnb" "$(run "$BENCH" "${FS[@]}" --name ffn-t1-bf16 --precision bf16)")
  S2_ffnb=$(faster "$S2_ffnb" "$(run "${MPIRUN[@]}" "$BENCH" "${FS[@]}" --name ffn-2r-bf16 --precision bf16)")
  S2_ffnbo=$(faster "$S2_ffnbo" "$(run "${MPIRUN[@]}" "$BENCH" "${FS[@]}" --name ffn-2r-bf16-shard --precision bf16 --shard optimizer)")
done

# ---- end to end: ffn-train's run from HDF5 (ffn-bench train = ffn_train_run + peak RSS)
TR=(train --loss softmax_ce --optimizer adam --lr 1e-3 --model $MLP --train "$mlp_data" --progress off --quiet)
ep=(--epochs 1); ((quick)) && ep=(--max-steps 300)
E_mlp32=$(best_of "$repeats" "$BENCH" "${TR[@]}" --batch-size 32 --threads 1 "${ep[@]}")
E2_mlp32=$(best_of "$repeats" "${MPIRUN[@]}" "$BENCH" "${TR[@]}" --batch-size 32 --threads 1 "${ep[@]}")
E2_mlp256=$(best_of "$repeats" "${MPIRUN[@]}" "$BENCH" "${TR[@]}" --batch-size 256 --threads 1 --epochs 2)
E_stream=$(FFN_DATA_CACHE_MB=0 best_of 1 "$BENCH" "${TR[@]}" --batch-size 32 --threads 1 --max-steps 3000)
E_stream_h5=$(FFN_DATA_CACHE_MB=0 FFN_DATA_DIRECT=0 best_of 1 "$BENCH" "${TR[@]}" --batch-size 32 --threads 1 --max-steps 300)
TF=(train --loss mse --optimizer adam --lr 1e-4 --model $FFN --train "$ffn_data" --progress off --quiet --batch-size 256 --epochs 1)
E_ffn1=$(best_of "$repeats" "$BENCH" "${TF[@]}" --threads 1)
E2_ffn=$(best_of "$repeats" "${MPIRUN[@]}" "$BENCH" "${TF[@]}" --threads 1)
E_ffn1b=""
[[ -n $bf16_why ]] || E_ffn1b=$(best_of "$repeats" "$BENCH" "${TF[@]}" --threads 1 --precision bf16)

# ---- OpenBLAS's own kernel for this CPU, where the environment pins another (OPENBLAS_CORETYPE)
N_mlp32="" NT_mlp32="" N_mlp256="" N2_mlp256="" ND_mlp256=""
if [[ -n ${OPENBLAS_CORETYPE:-} ]]; then
  N_mlp32=$(run env -u OPENBLAS_CORETYPE "$BENCH" step --name mlp32-native --model $MLP --input 784 --loss softmax_ce --batch 32 --threads 1 --data "$mlp_data" --seconds $secs)
  NT_mlp32=$(if ((torch)); then run env -u OPENBLAS_CORETYPE "${TP[@]}" --model mlp --data "$mlp_data" --batch 32 --threads 1; fi)
  N_mlp256=$(run env -u OPENBLAS_CORETYPE "$BENCH" step --name mlp256-native --model $MLP --input 784 --loss softmax_ce --batch 256 --threads 1 --data "$mlp_data" --seconds $secs)
  N2_mlp256=$(run env -u OPENBLAS_CORETYPE "${MPIRUN[@]}" "$BENCH" step --name mlp256-2r-native --model $MLP --input 784 --loss softmax_ce --batch 256 --threads 1 --data "$mlp_data" --seconds $secs)
  ND_mlp256=$(if ((torch)); then run env -u OPENBLAS_CORETYPE "${TP[@]}" --model mlp --data "$mlp_data" --batch 256 --threads 1 --ranks 2; fi)
fi

# ---- 6. checkpoint write (large FFN with Adam state) vs raw write + fsync
C_ck=$(run "$BENCH" ckpt --model $FFN --input 1024 --dir "$work")

# ---- the table
get() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1" | head -1; }
num() { [[ -n $1 ]] && awk -v v="$1" 'BEGIN{exit !(v == v + 0)}'; }
div() { if num "$1" && num "$2" && awk -v b="$2" 'BEGIN{exit !(b != 0)}'; then awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a / b}'; else echo "-"; fi; }
fmt() { if num "$1"; then awk -v v="$1" -v d="${2:-0}" 'BEGIN{printf "%.*f", d, v}'; else echo "${1:--}"; fi; }
pct() { if num "$1"; then awk -v v="$1" 'BEGIN{printf "%.1f%%", 100 * v}'; else echo "-"; fi; }
met() { # met VALUE OP TARGET
  if ! num "$1"; then echo "n/a"; return; fi
  if awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN{exit !((op == ">=" && a >= b) || (op == "<=" && a <= b) || (op == "<" && a < b))}'; then echo "yes"; else echo "**no**"; fi
}
row() { printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$@"; }
# cpu_ratio FFN_RESULT TORCH_RESULT: PyTorch's CPU ms per step over ffn's (higher is better for ffn)
cpu_ratio() { div "$(get "$2" cpu_step_ms)" "$(get "$1" cpu_step_ms)"; }

echo
echo "ffn benchmark: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')); OpenBLAS kernel $(get "$R_mlp32" corename), ffn kernels $(get "$R_mlp32" kernels); torch $(get "$T_mlp32" torch) on OpenBLAS $(get "$T_mlp32" openblas_core)"
echo "fp32: ffn's products in $(get "$R_mlp32" gemm | tr _ ' ') (--gemm auto; the OpenBLAS-kernel rows at the end: $(get "$N_mlp256" gemm | tr _ ' '))"
[[ -n $bf16_why ]] || echo "bf16: ffn's products in $(get "$R_ffn1b" gemm | tr _ ' '); PyTorch torch.autocast('cpu', dtype=torch.bfloat16)"
echo "load average $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (other jobs share this machine: wall-clock figures carry their load; the CPU-time ratio is the code's own)"
echo "data: MLP on $mlp_what; FFN on synthetic $ffn_rows x 1024 float32 -> 1024 targets; Adam; step rates: fastest of 5 timed repeats, ffn-train: best of $repeats runs"
((torch)) || echo "note: $torch_why"
echo
row "measure" "ffn" "reference" "ratio" "ratio, CPU time" "target" "met"
row "---" "---:" "---:" "---:" "---:" "---" "---"
# 1a/2: small MLP, one rank, one thread
for b in 32 256; do
  R=R_mlp$b T=T_mlp$b
  r=$(div "$(get "${!R}" samples_per_s)" "$(get "${!T}" samples_per_s)")
  if [[ $b == 32 ]]; then tg=">= 2" m=$(met "$r" '>=' 2); else tg="-" m=""; fi
  row "MLP 784-128-10 b$b, 1 rank x 1 thread: step samples/s vs PyTorch" "$(fmt "$(get "${!R}" samples_per_s)")" "$(fmt "$(get "${!T}" samples_per_s)")" "$r" "$(cpu_ratio "${!R}" "${!T}")" "$tg" "$m"
  row "  GFLOP/s (6 x params x samples) vs sgemm alone on the same shapes" "$(fmt "$(get "${!R}" gflops)" 1)" "$(fmt "$(get "${!R}" sgemm_gflops)" 1)" "$(fmt "$(get "${!R}" of_bound)" 2)" "$(div "$(get "${!R}" cpu_bound_ms)" "$(get "${!R}" cpu_step_ms)")" "-" ""
done
r=$(div "$(get "$E_mlp32" samples_per_s)" "$(get "$T_mlp32" samples_per_s)")
row "MLP b32, 1 rank x 1 thread: ffn-train end to end (HDF5) vs PyTorch step" "$(fmt "$(get "$E_mlp32" samples_per_s)")" "$(fmt "$(get "$T_mlp32" samples_per_s)")" "$r" "-" ">= 2" "$(met "$r" '>=' 2)"
# 1b: large FFN
for t in 1 2; do
  R=R_ffn$t T=T_ffn$t s=""; [[ $t == 2 ]] && s=s
  fb=$(get "${!R}" of_bound)
  row "FFN 1024-4096-1024 b256, 1 rank x $t thread$s: GFLOP/s vs sgemm bound" "$(fmt "$(get "${!R}" gflops)" 1)" "$(fmt "$(get "${!R}" sgemm_gflops)" 1)" "$(fmt "$fb" 2)" "$(div "$(get "${!R}" cpu_bound_ms)" "$(get "${!R}" cpu_step_ms)")" ">= 0.85" "$(met "$fb" '>=' 0.85)"
  r=$(div "$(get "${!R}" samples_per_s)" "$(get "${!T}" samples_per_s)")
  row "  samples/s vs PyTorch ($t thread$s)" "$(fmt "$(get "${!R}" samples_per_s)" 1)" "$(fmt "$(get "${!T}" samples_per_s)" 1)" "$r" "$(cpu_ratio "${!R}" "${!T}")" ">= 1" "$(met "$r" '>=' 1)"
done
# bf16: PyTorch at its best is its autocast bf16 on the FFN (faster than its fp32 there)
if [[ -z $bf16_why ]]; then
  fb=$(get "$R_ffn1b" of_bound)
  row "FFN b256 bf16, 1 rank x 1 thread: GFLOP/s vs oneDNN bf16 matmul bound (same shapes)" "$(fmt "$(get "$R_ffn1b" gflops)" 1)" "$(fmt "$(get "$R_ffn1b" sgemm_gflops)" 1)" "$(fmt "$fb" 2)" "$(div "$(get "$R_ffn1b" cpu_bound_ms)" "$(get "$R_ffn1b" cpu_step_ms)")" ">= 0.8" "$(met "$fb" '>=' 0.8)"
  r=$(div "$(get "$R_ffn1b" samples_per_s)" "$(get "$T_ffn1b" samples_per_s)")
  row "  samples/s vs PyTorch autocast bf16 (1 thread)" "$(fmt "$(get "$R_ffn1b" samples_per_s)" 1)" "$(fmt "$(get "$T_ffn1b" samples_per_s)" 1)" "$r" "$(cpu_ratio "$R_ffn1b" "$T_ffn1b")" ">= 1.5" "$(met "$r" '>=' 1.5)"
  row "  ffn bf16 vs ffn fp32; PyTorch bf16 vs PyTorch fp32 (samples/s ratios)" "$(div "$(get "$R_ffn1b" samples_per_s)" "$(get "$R_ffn1" samples_per_s)")" "$(div "$(get "$T_ffn1b" samples_per_s)" "$(get "$T_ffn1" samples_per_s)")" "-" "-" "-" ""
  r=$(div "$(get "$S2_ffnb" samples_per_s)" "$(get "$S1_ffnb" samples_per_s)")
  row "  bf16, 2 ranks x 1 thread vs 1 rank x 1 thread (step from memory, fastest of $pairs alternated runs each)" "$(fmt "$(get "$S2_ffnb" samples_per_s)" 1)" "$(fmt "$(get "$S1_ffnb" samples_per_s)" 1)" "$r" "$(div "$(get "$S1_ffnb" cpu_step_ms)" "$(get "$S2_ffnb" cpu_step_ms)")" ">= 1.8" "$(met "$r" '>=' 1.8)"
  r=$(div "$(get "$S2_ffnbo" samples_per_s)" "$(get "$S1_ffnb" samples_per_s)")
  row "  the same with --shard optimizer (one node: parameters once, each rank updates half)" "$(fmt "$(get "$S2_ffnbo" samples_per_s)" 1)" "$(fmt "$(get "$S1_ffnb" samples_per_s)" 1)" "$r" "$(div "$(get "$S1_ffnb" cpu_step_ms)" "$(get "$S2_ffnbo" cpu_step_ms)")" ">= 1.8" "$(met "$r" '>=' 1.8)"
  r=$(div "$(get "$R_mlp32b" samples_per_s)" "$(get "$R_mlp32" samples_per_s)")
  row "MLP b32 bf16 vs fp32, 1 rank x 1 thread: step samples/s" "$(fmt "$(get "$R_mlp32b" samples_per_s)")" "$(fmt "$(get "$R_mlp32" samples_per_s)")" "$r" "$(cpu_ratio "$R_mlp32b" "$R_mlp32")" ">= 1" "$(met "$r" '>=' 1)"
  row "  PyTorch MLP b32 autocast bf16 vs its fp32" "$(fmt "$(get "$T_mlp32b" samples_per_s)")" "$(fmt "$(get "$T_mlp32" samples_per_s)")" "$(div "$(get "$T_mlp32b" samples_per_s)" "$(get "$T_mlp32" samples_per_s)")" "-" "-" ""
  x=$(get "$E_ffn1b" peak_rss_mb)
  row "peak RSS MB, FFN ffn-train 1 rank: bf16 vs fp32" "$(fmt "$x" 1)" "$(fmt "$(get "$E_ffn1" peak_rss_mb)" 1)" "$(div "$x" "$(get "$E_ffn1" peak_rss_mb)")" "-" "-" ""
  row "  ffn-train end to end samples/s, FFN 1 rank: bf16 vs fp32" "$(fmt "$(get "$E_ffn1b" samples_per_s)" 1)" "$(fmt "$(get "$E_ffn1" samples_per_s)" 1)" "$(div "$(get "$E_ffn1b" samples_per_s)" "$(get "$E_ffn1" samples_per_s)")" "-" "-" ""
else
  row "bf16 rows" "skipped: $bf16_why" "-" "-" "-" "-" ""
fi
# 3: two ranks
for b in 32 256; do
  E=E2_mlp$b D=D_mlp$b M=R2_mlp$b
  r=$(div "$(get "${!E}" samples_per_s)" "$(get "${!D}" samples_per_s)")
  row "MLP b$b (global), 2 ranks x 1 thread: ffn-train end to end vs PyTorch DDP gloo" "$(fmt "$(get "${!E}" samples_per_s)")" "$(fmt "$(get "${!D}" samples_per_s)")" "$r" "-" ">= 5" "$(met "$r" '>=' 5)"
  r=$(div "$(get "${!M}" samples_per_s)" "$(get "${!D}" samples_per_s)")
  row "  step from memory (ffn-bench) vs PyTorch DDP gloo" "$(fmt "$(get "${!M}" samples_per_s)")" "$(fmt "$(get "${!D}" samples_per_s)")" "$r" "$(cpu_ratio "${!M}" "${!D}")" ">= 5" "$(met "$r" '>=' 5)"
done
r=$(div "$(get "$S2_ffn" samples_per_s)" "$(get "$S1_ffn" samples_per_s)")
row "FFN b256: 2 ranks x 1 thread vs 1 rank x 1 thread (step from memory, fastest of $pairs alternated runs each)" "$(fmt "$(get "$S2_ffn" samples_per_s)" 1)" "$(fmt "$(get "$S1_ffn" samples_per_s)" 1)" "$r" "$(div "$(get "$S1_ffn" cpu_step_ms)" "$(get "$S2_ffn" cpu_step_ms)")" ">= 1.8" "$(met "$r" '>=' 1.8)"
r=$(div "$(get "$E2_ffn" samples_per_s)" "$(get "$E_ffn1" samples_per_s)")
row "  the same, ffn-train end to end" "$(fmt "$(get "$E2_ffn" samples_per_s)" 1)" "$(fmt "$(get "$E_ffn1" samples_per_s)" 1)" "$r" "-" ">= 1.8" "$(met "$r" '>=' 1.8)"
row "  2 ranks x 1 thread vs 1 rank x 2 threads (the same two cores)" "$(fmt "$(get "$R2_ffn" samples_per_s)" 1)" "$(fmt "$(get "$R_ffn2" samples_per_s)" 1)" "$(div "$(get "$R2_ffn" samples_per_s)" "$(get "$R_ffn2" samples_per_s)")" "-" "-" ""
row "  2 ranks vs PyTorch DDP gloo" "$(fmt "$(get "$R2_ffn" samples_per_s)" 1)" "$(fmt "$(get "$D_ffn" samples_per_s)" 1)" "$(div "$(get "$R2_ffn" samples_per_s)" "$(get "$D_ffn" samples_per_s)")" "$(cpu_ratio "$R2_ffn" "$D_ffn")" "-" ""
# 4: gradient exchange
for v in R2_mlp32 R2_ffn; do
  x=$(get "${!v}" exchange_vs_bare)
  row "gradient exchange ms ($(get "${!v}" grad_mb) MB, $(get "${!v}" name), $(get "${!v}" exchange)) vs bare MPI_Allreduce ms" "$(fmt "$(get "${!v}" exchange_ms)" 2)" "$(fmt "$(get "${!v}" bare_allreduce_ms)" 2)" "$(fmt "$x" 2)" "-" "<= 1.05" "$(met "$x" '<=' 1.05)"
  if [[ $(get "${!v}" exchange) == shared-memory ]]; then
    row "  share of the exchange hidden behind backward" "none, by design: summed in place once every rank's backward is done" "-" "-" "-" "-" ""
  else
    row "  share of the exchange hidden behind backward" "$(pct "$(get "${!v}" hidden)")" "-" "-" "-" "-" ""
  fi
done
# 5: data
for v in E_mlp32 E2_mlp32 E_ffn1; do
  w=$(get "${!v}" data_wait)
  what="MLP b32"; [[ $v == E_ffn1 ]] && what="FFN b256"
  row "data wait, ffn-train $(get "${!v}" ranks) rank(s), $what (dataset held in memory)" "$(pct "$w")" "-" "-" "-" "< 5%" "$(met "$w" '<' 0.05)"
done
w=$(get "$E_stream" data_wait)
row "data wait reading every batch from the file (FFN_DATA_CACHE_MB=0: pread at row offsets), MLP b32, 1 rank" "$(pct "$w")" "-" "-" "-" "< 5%" "$(met "$w" '<' 0.05)"
row "  samples/s so, vs through HDF5's row selections (FFN_DATA_DIRECT=0)" "$(fmt "$(get "$E_stream" samples_per_s)")" "$(fmt "$(get "$E_stream_h5" samples_per_s)")" "$(div "$(get "$E_stream" samples_per_s)" "$(get "$E_stream_h5" samples_per_s)")" "-" "-" ""
row "  data wait through HDF5's row selections" "$(pct "$(get "$E_stream_h5" data_wait)")" "-" "-" "-" "-" ""
# 6: checkpoint
mb=$(awk -v b="$(get "$C_ck" bytes)" 'BEGIN{if (b > 0) printf "%.1f", b / 1048576; else print "-"}')
row "checkpoint write MB/s ($mb MB, FFN + Adam state) vs raw write + fsync" "$(fmt "$(get "$C_ck" ckpt_mb_s)")" "$(fmt "$(get "$C_ck" raw_mb_s)")" "$(fmt "$(get "$C_ck" ratio)" 2)" "-" "-" ""
# 7: memory
for v in E_ffn1 E_mlp32; do
  x=$(get "${!v}" rss_ratio)
  what=MLP; [[ $v == E_ffn1 ]] && what=FFN
  row "peak RSS MB vs state + activations + data held, $what, 1 rank" "$(fmt "$(get "${!v}" peak_rss_mb)" 1)" "$(fmt "$(get "${!v}" accounted_mb)" 1)" "$(fmt "$x" 2)" "-" "<= 1.3" "$(met "$x" '<=' 1.3)"
done
for v in E_ffn1 E_mlp32; do
  x=$(get "${!v}" rss_over_runtime_ratio)
  what=MLP; [[ $v == E_ffn1 ]] && what=FFN
  row "  the same, less the runtime's $(fmt "$(get "${!v}" runtime_rss_mb)" 1) MB (MPI, OpenBLAS, HDF5 loaded), $what" "$(fmt "$(awk -v a="$(get "${!v}" peak_rss_mb)" -v b="$(get "${!v}" runtime_rss_mb)" 'BEGIN{print a - b}')" 1)" "$(fmt "$(get "${!v}" accounted_mb)" 1)" "$(fmt "$x" 2)" "-" "<= 1.3" "$(met "$x" '<=' 1.3)"
done
# OpenBLAS's kernel choice
if [[ -n $N_mlp256 ]]; then
  env_core=$(get "$R_mlp256" corename) own_core=$(get "$N_mlp256" corename)
  row "MLP b256, 1 rank: OpenBLAS's own kernel for this CPU ($own_core) vs OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE, samples/s" "$(fmt "$(get "$N_mlp256" samples_per_s)")" "$(fmt "$(get "$R_mlp256" samples_per_s)")" "$(div "$(get "$N_mlp256" samples_per_s)" "$(get "$R_mlp256" samples_per_s)")" "-" "-" ""
  row "  sgemm alone on the same shapes, GFLOP/s" "$(fmt "$(get "$N_mlp256" sgemm_gflops)" 1)" "$(fmt "$(get "$R_mlp256" sgemm_gflops)" 1)" "$(div "$(get "$N_mlp256" sgemm_gflops)" "$(get "$R_mlp256" sgemm_gflops)")" "-" "-" ""
  r=$(div "$(get "$N_mlp32" samples_per_s)" "$(get "$NT_mlp32" samples_per_s)")
  row "  MLP b32 step samples/s vs PyTorch, both on $own_core" "$(fmt "$(get "$N_mlp32" samples_per_s)")" "$(fmt "$(get "$NT_mlp32" samples_per_s)")" "$r" "$(cpu_ratio "$N_mlp32" "$NT_mlp32")" ">= 2" "$(met "$r" '>=' 2)"
  r=$(div "$(get "$N2_mlp256" samples_per_s)" "$(get "$ND_mlp256" samples_per_s)")
  row "  MLP b256 (global), 2 ranks: step samples/s vs PyTorch DDP gloo, both on $own_core" "$(fmt "$(get "$N2_mlp256" samples_per_s)")" "$(fmt "$(get "$ND_mlp256" samples_per_s)")" "$r" "$(cpu_ratio "$N2_mlp256" "$ND_mlp256")" ">= 5" "$(met "$r" '>=' 5)"
fi
echo
echo "(the runtime alone, MPI + OpenBLAS + HDF5 before any ffn buffer, is $(fmt "$(get "$E_mlp32" runtime_rss_mb)" 1) MB of each RSS; every line the tools printed is in $log when --keep is given)"
