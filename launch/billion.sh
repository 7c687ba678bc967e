#!/usr/bin/env bash
# A model of more than a billion parameters trained on one 24 GiB machine at
# two ranks (issue 17): 784 -> dense:4096:relu, 8 x swiglu:11008, dense:10 on
# Fashion-MNIST, 1.085 G parameters, 17.4 GB of replicated fp32 training state
# (16 B a parameter with Adam) per rank.
#
#   launch/billion.sh [--where node|cgroup|netns] [--steps N] [--batch B] [--lr X]
#                     [--blocks K] [--cgroup-mib M] [--lora R] [--keep DIR]
#
# First the replicated run at -np 2, which the memory check must refuse within
# seconds (naming what would fit); then the sharded run, --shard params:
#   node    both ranks on this machine: the parameters live once in node-shared
#           memory, gradients reduce-scattered through it (default)
#   cgroup  the same inside a cgroup v2 memory limit of --cgroup-mib MiB (default
#           22528, 22 GiB: how Slurm's --mem confines a job)
#   netns   two network namespaces joined by a veth pair ("two nodes"), one rank
#           in each on its own core: parameters all-gathered layer by layer and
#           gradients reduce-scattered through MPI over TCP
# Prints the run's log head, the loss of every step and the memory lines (peak
# RSS, the rank's share, the prediction). Needs root for cgroup and netns.
# --lora R: instead, fine-tunes the model with rank-R adapters from a base
# checkpoint (written first by a one-step SGD run, --shard params): the frozen
# base is held once per node in shared memory (--shard grads), and the end shows
# each rank's Pss beside the base's size, and steps/s.
# Environment: FFN_BUILD_DIR (default build), FFN_DATA_DIR (default
# data/fashion-mnist, made by datasets/fashion-mnist.sh when missing).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
where=node steps=30 batch=32 lr=1e-5 blocks=8 cgroup_mib=22528 keep="" lora=0
while (($#)); do
  case $1 in
    --where) where=$2; shift ;;
    --steps) steps=$2; shift ;;
    --batch) batch=$2; shift ;;
    --lr) lr=$2; shift ;;
    --blocks) blocks=$2; shift ;;
    --cgroup-mib) cgroup_mib=$2; shift ;;
    --lora) lora=$2; shift ;;
    --keep) keep=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "billion.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $where =~ ^(node|cgroup|netns)$ ]] || { echo "billion.sh: --where node, cgroup or netns, got '$where'" >&2; exit 2; }
build=${FFN_BUILD_DIR:-$here/build}
[[ $build = /* ]] || build=$here/$build
data=${FFN_DATA_DIR:-$here/data/fashion-mnist}
[[ -s $data/train.h5 ]] || bash "$here/datasets/fashion-mnist.sh" "$data" "$build/ffn-data" >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=${keep:-$(mktemp -d /tmp/ffn-billion.XXXXXX)}
mkdir -p "$work"
cleanup() { :; }
trap 'cleanup; [[ -n $keep ]] || rm -rf "$work"' EXIT

model="dense:4096:relu"
for ((i = 0; i < blocks; i++)); do model+=",swiglu:11008"; done
model+=",dense:10"
args=(--train "$data/train.h5" --model "$model" --batch-size "$batch" --max-steps "$steps" --seed 1 --lr "$lr"
      --clip-norm 1 --threads 1 --log-every 1 --metrics "$work/loss.csv")
echo "billion.sh: $(date -u +%FT%TZ), commit $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?'), load $(cut -d' ' -f1-3 /proc/loadavg), where=$where"

# Where the ranks run: this machine, a memory cgroup, or two network-namespace nodes.
run_cmd=(mpirun -np 2)
case $where in
  cgroup)
    # v2 (a cgroup2 mount offering the memory controller) or v1's memory hierarchy: Slurm uses either.
    v2=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") print $5; break } }' /proc/self/mountinfo | head -1)
    v1=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup" && $(i + 3) ~ /(^|,)memory(,|$)/) print $5; break } }' /proc/self/mountinfo | head -1)
    cg="" limit=""
    if [[ -n $v2 ]] && grep -qw memory "$v2/cgroup.subtree_control" 2>/dev/null && mkdir "$v2/ffn-billion-$$" 2>/dev/null; then
      cg=$v2/ffn-billion-$$ limit=$cg/memory.max
    elif [[ -n $v1 ]] && mkdir "$v1/ffn-billion-$$" 2>/dev/null; then
      cg=$v1/ffn-billion-$$ limit=$cg/memory.limit_in_bytes
    fi
    cleanup() { [[ -n $cg && -d $cg ]] && rmdir "$cg" 2>/dev/null || true; }
    [[ -n $cg ]] && echo $((cgroup_mib << 20)) >"$limit" ||
      { echo "billion.sh: no memory cgroup can be made here (needs root, and cgroup v2 with memory or v1's memory)" >&2; exit 1; }
    echo "cgroup: $limit = $(cat "$limit") bytes"
    run_cmd=(bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg" mpirun -np 2) ;;
  netns)
    source "$here/launch/netns-pair.sh"
    NSA=ffnbA$$ NSB=ffnbB$$ VA=vbA$$ VB=vbB$$ NET=10.213.$(($$ % 200 + 20))
    cleanup() { netns_pair_down "$NSA" "$NSB" "$VA"; }
    netns_pair_up "$NSA" "$NSB" "$VA" "$VB" "$NET"
    netns_pair_rsh "$work/rsh.sh" "$NET" "$NSA" "$NSB"
    printf '%s slots=1\n%s slots=1\n' "$NET.1" "$NET.2" >"$work/hosts"
    run_cmd=(ip netns exec "$NSA" mpirun -np 2 --hostfile "$work/hosts" --mca plm_rsh_agent "$work/rsh.sh"
             --bind-to none --mca btl self,tcp --mca btl_tcp_if_include "$NET.0/24"
             --mca oob_tcp_if_include "$NET.0/24")
    # Each namespace looks like a node of its own, but both share this machine's memory: each rank
    # gets half of it (a real node would give each its own MemTotal).
    args+=(--memory-limit $(($(awk '/^MemTotal/ { print $2 }' /proc/meminfo) / 1024 / 2)))
    echo "two namespaces share this machine's memory: --memory-limit ${args[-1]} (MiB, half of MemTotal) for each rank" ;;
esac

if ((lora)); then
  # The base: one SGD step (no optimizer state to write), checkpointed in slices.
  timeout -k 5 3600 "${run_cmd[@]}" "$build/ffn-train" --train "$data/train.h5" --model "$model" --batch-size "$batch" \
    --max-steps 1 --seed 1 --optimizer sgd --lr 1e-3 --threads 1 --shard params --checkpoint-dir "$work/base" \
    >"$work/base.txt" 2>&1 || { cat "$work/base.txt"; echo "billion.sh: the base run failed" >&2; exit 1; }
  base=$(ls "$work"/base/ckpt-*.h5 | tail -1)
  echo "base checkpoint: $base ($(du -h "$base" | cut -f1))"
  timeout -k 5 3600 "${run_cmd[@]}" "$build/ffn-train" --train "$data/train.h5" --init-from "$base" --lora "$lora" \
    --batch-size "$batch" --max-steps "$steps" --seed 1 --lr 1e-3 --threads 1 --shard grads --log-every 1 \
    --metrics "$work/loss.csv" >"$work/lora.txt" 2>&1 || { cat "$work/lora.txt"; echo "billion.sh: the LoRA run failed" >&2; exit 1; }
  echo "--- the LoRA run's log (head)"
  head -12 "$work/lora.txt"
  echo "--- loss of each step"
  awk -F, '$1 == "step" { printf "%s %s\n", $3, $4 }' "$work/loss.csv" | paste -sd' ' | fold -w 120
  echo "--- the end"
  grep -E '^(done|memory: peak|memory: Pss|frozen base)' "$work/lora.txt"
  exit 0
fi

# 1. Replicated: refused before allocating anything, where the sharded run runs.
t0=$(date +%s.%N)
set +e
timeout -k 5 120 "${run_cmd[@]}" "$build/ffn-train" "${args[@]}" >"$work/replicated.txt" 2>&1
rc=$?
set -e
secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "replicated at -np 2: exit $rc after $secs s: $(grep -m1 'error' "$work/replicated.txt" || tail -1 "$work/replicated.txt")"

# 2. Sharded.
timeout -k 5 3600 "${run_cmd[@]}" "$build/ffn-train" "${args[@]}" --shard params >"$work/sharded.txt" 2>&1 ||
  { cat "$work/sharded.txt"; echo "billion.sh: the sharded run failed" >&2; exit 1; }
echo "--- the sharded run's log (head)"
head -8 "$work/sharded.txt"
echo "--- loss of each step"
awk -F, '$1 == "step" { printf "%s %s\n", $3, $4 }' "$work/loss.csv" | paste -sd' ' | fold -w 120
echo "--- the end"
grep -E '^(done|memory: peak|memory: Pss|gathers)' "$work/sharded.txt"
"${PYTHON:-/usr/bin/python3}" - "$work/loss.csv" <<'PY' || true
import csv, sys
l = [float(r["loss"]) for r in csv.DictReader(open(sys.argv[1])) if r["kind"] == "step"]
k = max(1, len(l) // 3)
print(f"mean loss of the first {k} steps {sum(l[:k]) / k:.4f}, of the last {k} {sum(l[-k:]) / k:.4f}")
PY
