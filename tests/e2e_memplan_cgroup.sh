#!/usr/bin/env bash
# The memory plan inside a memory cgroup made for the test (v2 memory.max, or
# v1 memory.limit_in_bytes where the memory controller is on v1, as Slurm's
# --mem sets one): the limit is the cgroup's, divided among the job's ranks
# under it, named with its file; a model too large is refused within seconds
# (exit 1, one message, no OOM kill); a small one runs. Skips (77) where no
# memory cgroup can be created (not root, read-only /sys/fs/cgroup).
source "$(dirname "$0")/lib/common.sh"

CG="" LIMIT_FILE=""
cleanup() { [[ -n $CG ]] && rmdir "$CG" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
# mounts: "FSTYPE POINT ROOT OPTIONS" of each cgroup mount (the fields after mountinfo's " - ").
mounts=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 1), $5, $4, $(i + 3); break } }' /proc/self/mountinfo)
# v2: a cgroup2 mount whose root offers the memory controller to its children.
v2=$(awk '$1 == "cgroup2" && $3 == "/" { print $2; exit }' <<<"$mounts")
if [[ -n $v2 ]] && grep -qw memory "$v2/cgroup.subtree_control" 2>/dev/null && mkdir "$v2/ffn-e2e-$$" 2>/dev/null; then
  CG=$v2/ffn-e2e-$$ LIMIT_FILE=$CG/memory.max
else
  v1=$(awk '$1 == "cgroup" && $3 == "/" && $4 ~ /(^|,)memory(,|$)/ { print $2; exit }' <<<"$mounts")
  if [[ -n $v1 ]] && mkdir "$v1/ffn-e2e-$$" 2>/dev/null; then
    CG=$v1/ffn-e2e-$$ LIMIT_FILE=$CG/memory.limit_in_bytes
  fi
fi
if [[ -z $CG ]] || ! echo $((1 << 30)) >"$LIMIT_FILE" 2>/dev/null; then
  echo "SKIP: no memory cgroup can be created here (v2 with the memory controller, or v1's memory hierarchy)"
  exit 77
fi
echo "cgroup: $LIMIT_FILE = $(cat "$LIMIT_FILE")"
# Each run is a shell moved into the test's cgroup (echo $$ > cgroup.procs) that execs mpirun: the ranks follow.

"$FFN_DATA" synth blobs --rows 800 --features 64 --classes 10 --seed 3 --out train.h5 >/dev/null
BASE=(--train train.h5 --epochs 1 --threads 1 --seed 1 --batch-size 32 --eval-batch-size 32)

# 135 M parameters: 2.3 GiB per rank replicated, far above the cgroup's 1 GiB / 2 ranks.
CASE_TIMEOUT=30
check_case "cgroup 1 GiB, 2 ranks, 135 M parameters" 1 "cgroup $LIMIT_FILE: 1.00 GiB / 2 ranks of this job under it" -- \
  bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" "$MPIRUN" -np 2 "$FFN_TRAIN" "${BASE[@]}" \
  --model dense:4096:relu,swiglu:11008,dense:10 --checkpoint-dir ck
grep -q "more than the 512.00 MiB this rank may have" err.txt || fail "$(cat err.txt)"
[[ ! -e ck ]] || fail "the refused run created --checkpoint-dir"
secs=$(awk -F'|' 'END { print $3 + 0 }' table.txt)
pass "refused inside the cgroup in $secs s, naming $LIMIT_FILE"

# A model that fits runs under the same cgroup, the banner naming the limit.
timeout -k 5 120 bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" "$MPIRUN" -np 2 "$FFN_TRAIN" "${BASE[@]}" \
  --model dense:256:relu,dense:10 --max-steps 5 >ok.txt || fail "a small model did not run in the cgroup"
grep -q "limit 512.00 MiB per rank (cgroup $LIMIT_FILE: 1.00 GiB / 2 ranks of this job under it)" ok.txt ||
  fail "banner: $(grep ^memory ok.txt)"
grep -q '^memory: peak RSS' ok.txt || fail "no peak RSS line"
pass "a small model runs in the cgroup: $(grep '^memory: peak' ok.txt)"
cat table.txt
