#!/usr/bin/env bash
# The frozen base held once per node (ffn/share.h): a LoRA fine-tune at -np 2
# on one node, with and without FFN_SHARE_FROZEN=0:
#  1. the checkpoints are bitwise equal (fp32, and bf16 where it runs natively);
#  2. the banner says the base is held once per node in shared memory, and the
#     ranks' proportional set sizes (Pss, which divides a shared page among the
#     processes mapping it) summed are smaller by about one copy of the base;
#  3. --shard grads shares too; --shard params and pruning keep per-rank copies
#     and say why; nothing is left in /dev/shm.
# Before that, tests/test_share.c on two ranks: the pages are one read-only
# shared mapping and writing one faults.
source "$(dirname "$0")/lib/common.sh"

# The mechanism alone: tests/test_share.c on two ranks (read-only shared pages, a write faults).
mpi 2 "$BUILD/tests/test_share" >unit.txt 2>&1 || { cat unit.txt; fail "test_share on 2 ranks"; }
[[ $(grep -c "checks, 0 failed" unit.txt) -eq 2 ]] || { cat unit.txt; fail "not every rank of test_share passed"; }
pass "test_share on 2 ranks: $(grep -m1 -o '[0-9]* checks' unit.txt) on each"

"$FFN_DATA" synth blobs --rows 600 --features 64 --classes 4 --noise 2 --seed 41 --out train.h5 >/dev/null
# The base: 64 -> 2048 -> 2048 -> 2048 -> 4, about 8.5M parameters (32 MiB), after one step.
"$FFN_TRAIN" --train train.h5 --model dense:2048:relu,dense:2048:relu,dense:2048:relu,dense:4 --loss softmax_ce \
  --optimizer sgd --lr 0.001 --batch-size 32 --epochs 1 --max-steps 1 --threads 1 --quiet --checkpoint-dir pre \
  >/dev/null
PRE=pre/ckpt-0000000001.h5
LORA=(--train train.h5 --init-from $PRE --replace-head 4 --lora 4 --optimizer sgd --lr 0.01 --batch-size 32
      --epochs 1 --max-steps 8 --seed 5 --threads 1)
shm_before=$(ls /dev/shm | grep -c '^ffn-frozen-' || true)

run() { # run NAME SHARE [ARGS...]: a LoRA run at -np 2 into NAME/ and NAME.txt
  local name=$1 share=$2; shift 2
  FFN_SHARE_FROZEN=$share mpi 2 -x FFN_SHARE_FROZEN "$FFN_TRAIN" "${LORA[@]}" --checkpoint-dir "$name" "$@" \
    >"$name.txt" 2>&1 || fail "$name: $(cat "$name.txt")"
}
run shared 1
run private 0
same_params shared/ckpt-0000000008.h5 private/ckpt-0000000008.h5 ||
  fail "sharing the frozen base changed the result"
grep -q "^frozen base: 32.[0-9]* MiB held once per node in shared memory (2 ranks on 1 node; 3[12].[0-9]* MiB of pages" \
  shared.txt || fail "banner: $(grep -E 'frozen|memory' shared.txt)"
grep -q "^frozen base: 32.[0-9]* MiB held by every rank (not shared: FFN_SHARE_FROZEN=0)" private.txt ||
  fail "banner without sharing: $(grep frozen private.txt)"
grep -q "params [0-9.]* MiB frozen part node-shared" shared.txt || fail "plan: $(grep '^memory:' shared.txt)"

# The data's Pss (anonymous and shared memory) summed over the two ranks, in MiB, from the
# summary line: the libraries' file pages are left out, their share moves with whatever other
# processes (a parallel test) map them at that moment.
pss_sum() { grep '^memory: Pss now' "$1" | sed -E 's/.*; data ([0-9.]+) (MiB|GiB) summed.*/\1 \2/' |
  awk '{ print $2 == "GiB" ? $1 * 1024 : $1 }'; }
a=$(pss_sum shared.txt); b=$(pss_sum private.txt)
[[ -n $a && -n $b ]] || fail "no Pss line: $(grep '^memory' shared.txt private.txt)"
# One copy of the 32 MiB base less over the node (not two): at least 24 MiB saved.
ge "$(awk -v a="$a" -v b="$b" 'BEGIN { print b - a }')" 24 ||
  fail "Pss summed $a MiB shared vs $b MiB per rank: the base is not held once per node"
pass "LoRA at -np 2: bitwise the same with the base node-shared; Pss summed over the ranks $a MiB vs $b MiB"

# bf16: the fixed weights' bf16 copy is shared too, and the results stay bitwise.
if "$FFN_TRAIN" --train train.h5 --model dense:8,dense:4 --epochs 1 --max-steps 1 --precision bf16 --quiet \
  >/dev/null 2>&1; then
  run shared16 1 --precision bf16
  run private16 0 --precision bf16
  same_params shared16/ckpt-0000000008.h5 private16/ckpt-0000000008.h5 ||
    fail "sharing the frozen base (and its bf16 copy) changed a bf16 run"
  # 32 MiB of parameters and 16 MiB of their bf16 copy mapped.
  grep -q "^frozen base: .*(2 ranks on 1 node; 4[89].[0-9]* MiB of pages mapped" shared16.txt ||
    fail "bf16 banner: $(grep frozen shared16.txt)"
  pass "--precision bf16: the bf16 copy of the base is shared too, results bitwise the same"
else
  echo "skip: no native bf16 here"
fi

# --shard grads (fixed tensors never gathered) shares too, bitwise; --shard params keeps slices.
run sharded 1 --shard grads
run sharded0 0 --shard grads
same_params sharded/ckpt-0000000008.h5 sharded0/ckpt-0000000008.h5 || fail "--shard grads: sharing changed the result"
grep -q "^frozen base: .* held once per node in shared memory" sharded.txt || fail "--shard grads: $(grep frozen sharded.txt)"
run sliced 1 --shard params
grep -q "^frozen base: .* held once per node with the other parameters (node-shared, --shard params)" sliced.txt ||
  fail "--shard params: $(grep -E 'frozen|error' sliced.txt)"
# --shard optimizer on one node holds every parameter once per node, the frozen ones with them.
run zero1 1 --shard optimizer
same_params zero1/ckpt-0000000008.h5 sharded0/ckpt-0000000008.h5 || fail "--shard optimizer: another result"
grep -q "^frozen base: .* held once per node with the other parameters (node-shared, --shard optimizer)" zero1.txt ||
  fail "--shard optimizer: $(grep -E 'frozen|error' zero1.txt)"
pass "--shard grads: shared and bitwise the same; --shard optimizer and params hold the base once per node with the other parameters (said in the banner)"

# Pruning may zero fixed weights: no sharing, and the banner says so.
run pruned 1 --prune 0.5 --prune-start-step 2
grep -q "^frozen base: .* held by every rank (not shared: pruning" pruned.txt ||
  fail "pruning: $(grep -E 'frozen|error' pruned.txt)"
shm_after=$(ls /dev/shm | grep -c '^ffn-frozen-' || true)
[[ $shm_after -le $shm_before ]] || fail "left in /dev/shm: $(ls /dev/shm | grep '^ffn-frozen-')"
pass "pruning keeps per-rank copies (said in the banner); nothing left in /dev/shm"
