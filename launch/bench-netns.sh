#!/usr/bin/env bash
# The gradient exchange across two "nodes" on one machine: two network namespaces joined by a
# veth pair (one rank in each, pinned to its own core, Open MPI's TCP transport between them),
# the link shaped with tc's htb on both ends, and ffn-train run end to end on the large FFN
# (1024 -> 4096 GELU -> 1024, mse, global batch 256: 33.6 MB of gradients a step) with each of
# Open MPI libnbc's MPI_Iallreduce algorithms. Prints samples/s (best of --repeats) and the
# gradient wait per rate and algorithm, with the load average. Needs root and iproute2.
#
#   launch/bench-netns.sh [--rates "none 10gbit 1gbit"] [--algorithms "2 default 3"] [--steps N] [--repeats R]
#
# Algorithms: default = ffn's own choice (the ring for the gradient buckets, set through MPI_T;
# the small reductions keep Open MPI's), or a number given to every call with mpirun's
# --mca coll_libnbc_iallreduce_algorithm N: 1 ring, 2 binomial tree (what Open MPI 4.1 picks by
# itself for ffn's in-place calls), 3 reduce-scatter + all-gather, 0 Open MPI's own choice.
# FFN_BUILD_DIR: the build to run [build].
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rates="none 10gbit 1gbit" algorithms="2 default 3" steps=30 repeats=2
while (($#)); do
  case $1 in
    --rates) rates=$2; shift 2 ;;
    --algorithms) algorithms=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
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
cd "$work"
# mpirun's "ssh": the host names a namespace; each namespace's processes run on their own core
# (mpirun binds every rank to core 0 there: each daemon thinks it owns the machine).
cat >rsh.sh <<EOF
#!/bin/sh
while [ "\${1#-}" != "\$1" ]; do shift; done
host=\$1; shift
case \$host in
  $NET.1) ns=$NSA core=0 ;;
  $NET.2) ns=$NSB core=$(($(nproc) > 1 ? 1 : 0)) ;;
  *) exit 255 ;;
esac
exec ip netns exec "\$ns" taskset -c \$core /bin/sh -c "\$*"
EOF
chmod +x rsh.sh
printf '%s slots=1\n%s slots=1\n' $NET.1 $NET.2 >hosts
"$build/ffn-data" synth regression --rows $((256 * steps)) --features 1024 --classes 1024 --seed 7 --out ffn.h5 >/dev/null

shape() { # RATE: htb on both ends of the veth (none: unshaped)
  local ns dev
  for ns in "$NSA:$VA" "$NSB:$VB"; do
    dev=${ns#*:} ns=${ns%%:*}
    ip -n "$ns" link set "$dev" up
    tc -n "$ns" qdisc del dev "$dev" root 2>/dev/null || true
    [[ $1 == none ]] && continue
    tc -n "$ns" qdisc add dev "$dev" root handle 1: htb default 10
    # quantum: htb derives rate/10 by default, above its limit at these rates.
    tc -n "$ns" class add dev "$dev" parent 1: classid 1:10 htb rate "$1" ceil "$1" quantum 200000
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
