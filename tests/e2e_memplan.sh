#!/usr/bin/env bash
# The memory plan: the banner's prediction, the peak RSS beside it at the end
# (within a sane factor on a model whose parameters dominate, at 1 and 2
# ranks), the refusal of a model too large for RLIMIT_AS (ulimit -v) within
# seconds, naming RLIMIT_AS, exit 1, nothing written to --checkpoint-dir, and
# the flags it suggests actually fitting. The cgroup case is e2e_memplan_cgroup.
source "$(dirname "$0")/lib/common.sh"

# A sanitizer build (CI's second pass) keeps shadow memory and a quarantine beside every buffer and
# reserves terabytes of address space: the ratios and RLIMIT_AS are checked in the plain build only.
SANITIZED=${ASAN_OPTIONS:+1}
# within FILE LABEL: measured/predicted in [0.8, 1.2] (any value under a sanitizer).
within() {
  local r; r=$(ratio "$1")
  [[ -n $r ]] || fail "$2: no peak RSS line: $(grep ^memory "$1")"
  [[ -n $SANITIZED ]] || { ge "$r" 0.8 && ge 1.2 "$r"; } || fail "$2: measured/predicted $r outside [0.8, 1.2]: $(grep ^memory "$1")"
  echo "$r"
}
"$FFN_DATA" synth blobs --rows 800 --features 64 --classes 10 --seed 3 --out train.h5 >/dev/null
BASE=(--train train.h5 --epochs 1 --threads 1 --seed 1 --batch-size 32 --eval-batch-size 32)
# ratio FILE: measured/predicted from the end line of a run's output.
ratio() { sed -nE 's/^memory: peak RSS .*measured\/predicted ([0-9.]+)\)$/\1/p' "$1"; }
# predicted_mib FILE: the banner's prediction in MiB.
predicted_mib() {
  sed -nE 's/^memory: ([0-9.]+) (KiB|MiB|GiB) per rank predicted .*/\1 \2/p' "$1" |
    awk '{ f = $2 == "GiB" ? 1024 : $2 == "KiB" ? 1 / 1024 : 1; printf "%d\n", $1 * f }'
}

# 1. The banner line and the end line; parameters dominate (4.3 M parameters, 66 MiB at 16 B each).
MID=dense:2048:relu,dense:2048:relu,dense:10
"$FFN_TRAIN" "${BASE[@]}" --model $MID --max-steps 5 >one.txt
grep -qE '^memory: [0-9.]+ MiB per rank predicted \(base 32.00 MiB, params 16\.[0-9]+ MiB, grads 16\.[0-9]+ MiB, optimizer 33\.[0-9]+ MiB, activations .*\); limit .* per rank \(node memory: MemTotal .* \(/proc/meminfo\) / 1 rank on this node\)$' one.txt ||
  fail "banner: no memory line with its parts: $(grep ^memory one.txt)"
grep -qE '^memory: peak RSS [0-9.]+ MiB per rank \(VmHWM; predicted [0-9.]+ MiB, measured/predicted [0-9.]+\)$' one.txt ||
  fail "1 rank: no peak RSS line: $(grep ^memory one.txt)"
r=$(within one.txt "1 rank")
pass "1 rank: the banner's plan and the peak RSS beside it (measured/predicted $r)"

# 2 ranks on one node: gradients node-shared (and the model's own copy until they move), sharded state.
for mode in "" --shard-optimizer; do
  mpi 2 "$FFN_TRAIN" "${BASE[@]}" --model $MID --max-steps 5 $mode >two.txt
  grep -qE '^memory: .*grads [0-9.]+ MiB node-shared, .*transient [0-9.]+ MiB grads move\); limit .* / 2 ranks on this node' two.txt ||
    fail "2 ranks$mode: $(grep ^memory two.txt)"
  grep -q 'VmHWM, the largest of the ranks' two.txt || fail "2 ranks$mode: $(grep ^memory two.txt)"
  r=$(within two.txt "2 ranks$mode")
  pass "2 ranks${mode:+ $mode}: measured/predicted $r"
done

# 2. RLIMIT_AS: 270 M parameters (4.1 GiB replicated with Adam) under ulimit -v 2.5 GiB, refused before
#    anything is allocated or written, at 1 rank and under mpirun at 2.
if [[ -n $SANITIZED ]]; then
  echo "SKIP (sanitizer build): RLIMIT_AS (AddressSanitizer cannot run under ulimit -v)"
else
BIG=dense:4096:relu,swiglu:11008,swiglu:11008,dense:10
LIMITED=(bash -c 'ulimit -v 2621440 && exec "$@"' limited)
case_snapshot() { ls -d ck 2>/dev/null || true; }
CASE_TIMEOUT=30
check_case "RLIMIT_AS, 1 rank" 1 "RLIMIT_AS 2.50 GiB (getrlimit" -- "${LIMITED[@]}" "$FFN_TRAIN" "${BASE[@]}" --model $BIG --checkpoint-dir ck
grep -qE 'memory: the run needs [0-9.]+ GiB per rank .* more than the [0-9.]+ (MiB|GiB) this rank may have \(RLIMIT_AS' err.txt || fail "$(cat err.txt)"
[[ ! -e ck ]] || fail "the refused run created --checkpoint-dir"
check_case "RLIMIT_AS, 2 ranks" 1 "RLIMIT_AS 2.50 GiB (getrlimit" -- "${LIMITED[@]}" "$MPIRUN" -np 2 "$FFN_TRAIN" "${BASE[@]}" --model $BIG --checkpoint-dir ck
[[ ! -e ck ]] || fail "the refused run created --checkpoint-dir"
secs=$(awk -F'|' 'END { print $3 + 0 }' table.txt)
ge 20 "$secs" || fail "the refusal took $secs s"
pass "a model too large for RLIMIT_AS is refused in $secs s, naming it, nothing written"
fi

# 3. The suggestions are computed: with a limit between the replicated and the sharded plans at 2 ranks,
#    the refusal suggests --shard-optimizer, which then runs under that limit; --memory-limit off skips.
mpi 2 "$FFN_TRAIN" "${BASE[@]}" --model $MID --max-steps 1 --memory-limit off >rep.txt
mpi 2 "$FFN_TRAIN" "${BASE[@]}" --model $MID --max-steps 1 --memory-limit off --shard-optimizer >shard.txt
grep -q '^memory: .*; not checked (--memory-limit off)$' rep.txt || fail "$(grep ^memory rep.txt)"
rep=$(predicted_mib rep.txt) shard=$(predicted_mib shard.txt)
[[ $shard -lt $rep ]] || fail "sharded plan $shard MiB not below the replicated $rep MiB"
limit=$(( (rep + shard + 1) / 2 ))
check_case "--memory-limit between the plans" 1 "would fit: --shard optimizer (" -- \
  "$MPIRUN" -np 2 "$FFN_TRAIN" "${BASE[@]}" --model $MID --max-steps 1 --memory-limit $limit
grep -q "more than the .* this rank may have (--memory-limit $limit MiB)" err.txt || fail "$(cat err.txt)"
mpi 2 "$FFN_TRAIN" "${BASE[@]}" --model $MID --max-steps 1 --memory-limit $limit --shard-optimizer >ok.txt ||
  fail "the suggested --shard-optimizer did not run under --memory-limit $limit"
grep -q "limit .* per rank (--memory-limit $limit MiB)" ok.txt || fail "$(grep ^memory ok.txt)"
check_case "--memory-limit 12x" 2 "--memory-limit: expected a whole number of MiB in [1, 2^40] or off, got '12x'" -- \
  "$FFN_TRAIN" "${BASE[@]}" --memory-limit 12x
pass "the refusal's suggestion (--shard-optimizer) fits: $rep MiB replicated, $shard MiB sharded, limit $limit MiB"
cat table.txt
