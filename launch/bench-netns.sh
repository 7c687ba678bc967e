#!/usr/bin/env bash
# The gradient exchange across two "nodes" on one machine: two network namespaces joined by a
# veth pair (one rank in each, pinned to its own core, Open MPI's TCP transport between them),
# the link shaped with tc's htb on both ends, and ffn-train run end to end on the large FFN
# (1024 -> 4096 GELU -> 1024, mse, global batch 256: 33.6 MB of gradients a step) with each of
# Open MPI libnbc's MPI_Iallreduce algorithms. Prints samples/s (best of --repeats) and the
# gradient wait per rate and algorithm, with the load average. Needs root and iproute2.
#
#   launch/bench-netns.sh [--rates "none 10gbit 1gbit"] [--algorithms "2 default 3"] [--steps N] [--repeats R]
#   launch/bench-netns.sh --overlap [--rates "10gbit 1gbit"] [--models "SPEC;SPEC"] [--repeats R] [--seconds S]
#   launch/bench-netns.sh --peers [--rates "10gbit 1gbit"] [--repeats R] [--seconds S]
#   any of them with --mtu BYTES: the veth pair's MTU (default the kernel's 1500; 9000 are the
#   jumbo frames of many cluster networks: a sixth of the packets for the same bytes)
#
# --peers: ffn against PyTorch DDP (gloo over TCP, one process a namespace on the same cores,
# threads limited before torch loads), step from memory (ffn-bench step / launch/bench_torch.py),
# samples/s, best of --repeats: the large FFN (1024-4096 GELU-1024, mse, global batch 256) and the
# MLP (784-128-10, softmax_ce, global batch 32 and 256), fp32 gradients on both sides; then the
# FFN with 16-bit gradients on the wire: ffn --grad-dtype bf16 against DDP's fp16_compress_hook
# (its bf16 hook cannot run on the CPU in PyTorch 1.13).
#
# --overlap: how much of the exchange hides behind backward. For each rate and model (input 1024,
# mse, global batch 256; default the large FFN and 1024-4096-4096-1024), ffn-bench step with the
# exchange thread off (FFN_EXCHANGE_THREAD=0: buckets progress only in the main thread's MPI
# calls), on (the default), and on with the optimizer's update after the whole exchange
# (FFN_UPDATE_PER_BUCKET=0; by default each bucket is updated as its sums arrive): the step; the
# gradient wait (the time blocked in finish, the slower rank's); the exposed exchange (the step
# less the same step without the exchange: it also counts what the exchange's TCP processing
# takes from backward and the update on these shared cores, and what the per-bucket update
# moves out of the wait into itself); the exchange alone (on gradients already computed) against
# the ring's bound S/B (two ranks) at the link's rate; the ring's traffic alone (ring_traffic_ms:
# the same bytes sent to the next rank and received from the one before, no sums, nothing
# waiting on anything: what this link, TCP and the ranks' cores can move at best, the floor of
# any ring whatever its algorithm) against the same bound; and the hidden share 1 - exposed /
# exchange alone. The step, wait and exposed time of the run with the fastest step of --repeats,
# the fastest exchange alone. The emulated link shares the machine's two cores with the ranks:
# under load it delivers less.
#
# Algorithms: default = ffn's own choice (the ring for the gradient buckets, set through MPI_T;
# the small reductions keep Open MPI's), or a number given to every call with mpirun's
# --mca coll_libnbc_iallreduce_algorithm N: 1 ring, 2 binomial tree (what Open MPI 4.1 picks by
# itself for ffn's in-place calls), 3 reduce-scatter + all-gather, 0 Open MPI's own choice.
# FFN_BUILD_DIR: the build to run [build].
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rates="none 10gbit 1gbit" algorithms="2 default 3" steps=30 repeats=2 overlap=0 peers=0 seconds=6 mtu=""
models="dense:4096:gelu,dense:1024;dense:4096:gelu,dense:4096:gelu,dense:1024"
while (($#)); do
  case $1 in
    --rates) rates=$2; shift 2 ;;
    --algorithms) algorithms=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --overlap) overlap=1; shift ;;
    --peers) peers=1; shift ;;
    --models) models=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --mtu) mtu=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-netns.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
build=${FFN_BUILD_DIR:-$here/build}
[[ -x $build/ffn-train ]] || { echo "bench-netns.sh: no $build/ffn-train (bash launch/setup.sh)" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "bench-netns.sh: network namespaces need root" >&2; exit 2; }
work=$(mktemp -d /tmp/ffn-bench-netns.XXXXXX)
NSA=ffn-bench-a-$$ NSB=ffn-bench-b-$$ VA=fba$$ VB=fbb$$ NET=10.78.0
source "$here/launch/netns-pair.sh"
cleanup() {
  set +e
  netns_pair_down "$NSA" "$NSB" "$VA"
  rm -rf "$work"
}
trap cleanup EXIT
netns_pair_up "$NSA" "$NSB" "$VA" "$VB" $NET
if [[ -n $mtu ]]; then
  ip -n "$NSA" link set "$VA" mtu "$mtu" && ip -n "$NSB" link set "$VB" mtu "$mtu"
fi
echo "bench-netns.sh: veth MTU $(ip -n "$NSA" -o link show "$VA" | sed -n 's/.* mtu \([0-9]*\).*/\1/p')"
cd "$work"
netns_pair_rsh rsh.sh "$NET" "$NSA" "$NSB"
printf '%s slots=1\n%s slots=1\n' $NET.1 $NET.2 >hosts
((overlap)) || "$build/ffn-data" synth regression --rows $((256 * steps)) --features 1024 --classes 1024 --seed 7 --out ffn.h5 >/dev/null

# htb's burst: a millisecond of the rate. htb's default (derived from the timer) is far too
# small at these rates: a single TCP stream across the pair got 7.16 Gbit/s through "10gbit"
# (9.51-9.57 with a burst of 1-4 MB; 0.92 against 0.95 Gbit/s at 1gbit), so the emulated link
# did not deliver its rate.
burst_of() { # RATE (e.g. 10gbit, 500mbit): bytes
  local n=${1%%[a-zA-Z]*} unit=${1##*[0-9]}
  case $unit in
    gbit) echo $((n * 1000000000 / 8 / 1000)) ;;
    mbit) echo $((n * 1000000 / 8 / 1000)) ;;
    kbit) echo $((n * 1000 / 8 / 1000)) ;;
    *) echo 0 ;;
  esac
}
shape() { # RATE: htb on both ends of the veth (none: unshaped)
  local ns dev burst=$(burst_of "$1")
  ((burst >= 16384)) || burst=16384
  for ns in "$NSA:$VA" "$NSB:$VB"; do
    dev=${ns#*:} ns=${ns%%:*}
    ip -n "$ns" link set "$dev" up
    tc -n "$ns" qdisc del dev "$dev" root 2>/dev/null || true
    [[ $1 == none ]] && continue
    tc -n "$ns" qdisc add dev "$dev" root handle 1: htb default 10
    # quantum: htb derives rate/10 by default, above its limit at these rates.
    tc -n "$ns" class add dev "$dev" parent 1: classid 1:10 htb rate "$1" ceil "$1" quantum 200000 \
      burst "$burst" cburst "$burst"
  done
}
run() { # ALGORITHM: samples/s and gradient wait of one run, or "failed"
  local out mca=""
  [[ $1 == default ]] || mca="--mca coll_libnbc_iallreduce_algorithm $1"
  out=$(FFN_MPIRUN_ARGS="--mca plm_rsh_agent $work/rsh.sh --bind-to none $mca" \
    timeout -k 5 600 ip netns exec "$NSA" "$here/launch/mpirun-hosts.sh" -f hosts -N 1 -t 1 -i $NET.0/24 -- \
    --train "$work/ffn.h5" --model dense:4096:gelu,dense:1024 --loss mse --batch-size 256 --epochs 1 \
    --seed 1 --threads 1 2>&1) || { echo "failed"; return; }
  sed -n 's/^done: .* steps in .* s, \([0-9]*\) samples\/s, .*gradient wait \([0-9.]*\)%.*/\1 \2/p' <<<"$out" | tail -1
}
step_result() { # ARGS...: the RESULT line of one ffn-bench step across the namespaces (FFN_EXCHANGE_THREAD and FFN_UPDATE_PER_BUCKET passed on)
  FFN_EXCHANGE_THREAD=${FFN_EXCHANGE_THREAD:-1} FFN_UPDATE_PER_BUCKET=${FFN_UPDATE_PER_BUCKET:-1} \
    FFN_MPIRUN_ARGS="--mca plm_rsh_agent $work/rsh.sh --bind-to none -x FFN_EXCHANGE_THREAD -x FFN_UPDATE_PER_BUCKET" FFN_BIN=$build/ffn-bench \
    timeout -k 5 600 ip netns exec "$NSA" "$here/launch/mpirun-hosts.sh" -f hosts -N 1 -t 1 -i $NET.0/24 -- \
    step --threads 1 --seconds "$seconds" "$@" 2>&1 | grep '^RESULT step' | tail -1 || true
}
bench() { # MODEL THREAD PER_BUCKET: "step_ms wait_ms exchange_ms grad_mib exposed_ms ring_traffic_ms" of one ffn-bench step run, or "failed"
  local line
  line=$(FFN_EXCHANGE_THREAD=$2 FFN_UPDATE_PER_BUCKET=$3 step_result --model "$1" --input 1024 --loss mse --batch 256)
  sed -n 's/^RESULT step .* step_ms=\([0-9.]*\) .* exchange_ms=\([0-9.]*\) exposed_ms=\([-0-9.]*\) .* ring_traffic_ms=\([0-9.]*\) wait_ms=\([0-9.]*\) .* grad_mb=\([0-9.]*\) .*/\1 \5 \2 \6 \3 \4/p' <<<"$line" |
    grep . || echo failed
}
ffn_step() { # ARGS...: samples/s of ffn-bench step on the two namespaces, or "failed"
  sed -n 's/^RESULT step .* samples_per_s=\([0-9.]*\) .*/\1/p' <<<"$(step_result "$@")" | grep . || echo failed
}
torch_rank() { # NS DEVICE CORE RANK PORT ARGS...: one DDP rank of launch/bench_torch.py in namespace NS
  local ns=$1 dev=$2 core=$3 rank=$4 port=$5
  shift 5
  ip netns exec "$ns" env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 GLOO_SOCKET_IFNAME="$dev" \
    taskset -c "$core" timeout -k 5 300 "$PY" "$here/launch/bench_torch.py" --threads 1 --seconds "$seconds" \
    --dist-rank "$rank" --dist-world 2 --dist-init "tcp://$NET.1:$port" "$@"
}
ddp() { # ARGS...: samples/s of PyTorch DDP gloo, one rank per namespace, or "failed"
  local port=$((29500 + RANDOM % 1000)) out
  torch_rank "$NSB" "$VB" "$core_b" 1 $port "$@" >/dev/null 2>&1 &
  local peer=$!
  out=$(torch_rank "$NSA" "$VA" 0 0 $port "$@" 2>&1) || true
  wait "$peer" || true
  sed -n 's/^RESULT torch .* samples_per_s=\([0-9.]*\) .*/\1/p' <<<"$out" | tail -1 | grep . || echo failed
}
if ((peers)); then
  PY=${PYTHON:-/usr/bin/python3}
  core_b=$(($(nproc) > 1 ? 1 : 0))
  "$build/ffn-data" synth regression --rows 4096 --features 1024 --classes 1024 --seed 7 --out ffn.h5 >/dev/null
  "$build/ffn-data" synth blobs --rows 8192 --features 784 --classes 10 --seed 7 --out mlp.h5 >/dev/null
  best() { # CMD...: the highest samples/s of --repeats runs
    local b=0 v
    for _ in $(seq "$repeats"); do
      v=$("$@" </dev/null) # mpirun and python would read the workload list from stdin
      [[ $v =~ ^[0-9.]+$ ]] && awk -v a="$v" -v b="$b" 'BEGIN{exit !(a > b)}' && b=$v
    done
    echo "$b"
  }
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; one rank x 1 thread a namespace, step from memory, best of $repeats"
  echo "| link | workload | ffn samples/s | DDP gloo samples/s | ffn / DDP |"
  echo "| --- | --- | ---: | ---: | ---: |"
  for rate in $rates; do
    shape "$rate"
    while IFS='|' read -r what fargs targs; do
      read -r -a fa <<<"${fargs//\$work/$work}"
      read -r -a ta <<<"${targs//\$work/$work}"
      f=$(best ffn_step "${fa[@]}")
      d=$(best ddp "${ta[@]}")
      awk -v r="$rate" -v w="$what" -v f="$f" -v d="$d" 'BEGIN {
        printf "| %s | %s | %.0f | %.0f | %s |\n", r, w, f, d, (d > 0 ? sprintf("%.2f", f / d) : "-") }'
    done <<EOF2
FFN b256, fp32 gradients|--model dense:4096:gelu,dense:1024 --input 1024 --loss mse --batch 256 --data $work/ffn.h5|--model ffn --batch 256 --data $work/ffn.h5
FFN b256, 16-bit gradients (ffn bf16, DDP fp16 hook)|--model dense:4096:gelu,dense:1024 --input 1024 --loss mse --batch 256 --data $work/ffn.h5 --grad-dtype bf16|--model ffn --batch 256 --data $work/ffn.h5 --ddp-hook fp16
MLP b32|--model dense:128:relu,dense:10 --input 784 --loss softmax_ce --batch 32 --data $work/mlp.h5|--model mlp --batch 32 --data $work/mlp.h5
MLP b256|--model dense:128:relu,dense:10 --input 784 --loss softmax_ce --batch 256 --data $work/mlp.h5|--model mlp --batch 256 --data $work/mlp.h5
EOF2
  done
  exit 0
fi
if ((overlap)); then
  # The bound of the exchange alone: 2(N-1)/N S/B = S/B for two ranks at the nominal rate.
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; ffn-bench step, 1 rank x 1 thread per namespace, global batch 256, best of $repeats (step and exchange alone each)"
  echo "| link | model | exchange thread | step ms | gradient wait ms (% of step) | exposed ms (% of step) | exchange alone ms | ring bound ms | exchange / bound | ring traffic ms | traffic / bound | hidden |"
  echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  IFS=';' read -r -a model_list <<<"$models"
  for rate in $rates; do
    shape "$rate"
    nominal=$(awk -v b="$(burst_of "$rate")" 'BEGIN { printf "%.3f", b * 8 / 1e6 }') # Gbit/s (burst = 1 ms of it)
    for m in "${model_list[@]}"; do
      for mode in off on after; do
        t=$([[ $mode == off ]] && echo 0 || echo 1) per_bucket=$([[ $mode == after ]] && echo 0 || echo 1)
        best="" exbest="" trbest=""
        for _ in $(seq "$repeats"); do
          read -r st wt ex mib xp tr <<<"$(bench "$m" $t $per_bucket)" || true
          [[ $st =~ ^[0-9.]+$ ]] || continue
          if [[ -z $best ]] || awk "BEGIN{exit !($st < ${best%% *})}"; then best="$st $wt $mib $xp"; fi
          if [[ -z $exbest ]] || awk "BEGIN{exit !($ex < $exbest)}"; then exbest=$ex; fi
          if [[ -z $trbest ]] || awk "BEGIN{exit !($tr < $trbest)}"; then trbest=$tr; fi
        done
        read -r st wt mib xp <<<"${best:-- - - -}"
        awk -v r="$rate" -v m="$m" -v mode="$mode" -v st="$st" -v wt="$wt" -v ex="$exbest" -v mib="$mib" -v xp="$xp" -v tr="$trbest" -v nom="$nominal" 'BEGIN {
          label = mode == "after" ? "on, update after the exchange" : mode
          if (st == "-") { printf "| %s | %s | %s | failed | | | | | | | | |\n", r, m, label; exit }
          if (xp < 0) xp = 0
          h = 1 - xp / ex; if (h < 0) h = 0
          b = "-"; vs = "-"; tvs = "-" # unshaped: no rate, no bound
          if (nom > 0) {
            bound = mib * 1048576 * 8 / (nom * 1e9) * 1e3; b = sprintf("%.1f", bound)
            vs = sprintf("%.2f", ex / bound); tvs = sprintf("%.2f", tr / bound)
          }
          printf "| %s | %s | %s | %.1f | %.1f (%.0f%%) | %.1f (%.0f%%) | %.1f | %s | %s | %.1f | %s | %.2f |\n", r, m, label, st, wt,
            100 * wt / st, xp, 100 * xp / st, ex, b, vs, tr, tvs, h }'
      done
    done
  done
  exit 0
fi
declare -A names=([0]=choice [1]=ring [2]=binomial [3]="redscat+allgather" [4]="rec.doubling" [default]="ffn's default")
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $steps steps of 256 samples a run, best of $repeats"
printf '%-8s' rate
for a in $algorithms; do printf ' | %24s' "${names[$a]:-?} ($a)"; done
echo
for rate in $rates; do
  shape "$rate"
  printf '%-8s' "$rate"
  for a in $algorithms; do
    best=0 wait=-
    for _ in $(seq "$repeats"); do
      read -r sps gw <<<"$(run "$a")" || true
      [[ $sps =~ ^[0-9]+$ ]] && ((sps > best)) && best=$sps wait=$gw
    done
    printf ' | %12s samples/s %5s%%' "$best" "$wait"
  done
  echo
done
echo "(samples/s of ffn-train end to end; the percentage is its gradient wait, the exchange time not hidden behind backward)"
