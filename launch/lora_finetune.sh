#!/usr/bin/env bash
# LoRA against full fine-tuning on the classes 5-9 task of tests/e2e_finetune.sh:
# pretrain 784->128 relu->5 on Fashion-MNIST classes 0-4, then fine-tune on 100
# images per class of classes 5-9 with a new 5-way head (--replace-head 5), and
# test on the 5000 test images of classes 5-9.
#
# Hyper-parameters are chosen on a validation set kept apart from everything
# else (classes 5-9 of a 5000-image split of the training images; the
# pretraining and fine-tuning images come from the other 55000), never on the
# test set. Each chosen configuration is then run with three seeds.
#   usage: launch/lora_finetune.sh [BUILD_DIR (default build)] [WORK_DIR (default a temp dir)]
# Prints one line per run and a summary table (markdown) at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
work=${2:-$(mktemp -d /tmp/ffn-lora.XXXXXX)}
src=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
np=${NP:-2}
mkdir -p "$work" && cd "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
D=$build/ffn-data T=$build/ffn-train

if [[ ! -s test5.h5 ]]; then
  "$D" idx --images "$src/train-images-idx3-ubyte.gz" --labels "$src/train-labels-idx1-ubyte.gz" --out all.h5 >/dev/null
  "$D" idx --images "$src/t10k-images-idx3-ubyte.gz" --labels "$src/t10k-labels-idx1-ubyte.gz" --out test.h5 >/dev/null
  "$D" split all.h5 --train-out train.h5 --val-out val.h5 --val-count 5000 --seed 0 >/dev/null
  "$D" subset train.h5 --classes 0-4 --relabel --out pre.h5 >/dev/null
  "$D" subset train.h5 --classes 5-9 --per-class 100 --relabel --seed 1 --out small.h5 >/dev/null
  "$D" subset val.h5 --classes 5-9 --relabel --out val5.h5 >/dev/null
  "$D" subset test.h5 --classes 5-9 --relabel --out test5.h5 >/dev/null
fi
COMMON=(--loss softmax_ce --optimizer adam --batch-size 32 --threads 1)
if [[ ! -d pre ]]; then
  mpirun -np "$np" "$T" --train pre.h5 --model dense:128:relu,dense:5 --lr 1e-3 --epochs 2 --seed 1 "${COMMON[@]}" \
    --quiet --checkpoint-dir pre >/dev/null
fi
PRE=$(ls pre/ckpt-*.h5 | tail -1)

# run NAME SPLIT SEED FLAGS...: fine-tunes for 15 epochs; prints accuracy on SPLIT.
run() {
  local name=$1 split=$2 seed=$3; shift 3
  local out=runs/$name.$split.s$seed.txt
  mkdir -p runs
  [[ -s $out ]] || mpirun -np "$np" "$T" --train small.h5 --test "$split.h5" --init-from "$PRE" --replace-head 5 \
    --epochs 15 --seed "$seed" "${COMMON[@]}" "$@" >"$out"
  local acc trainable bytes
  acc=$(grep '^test:' "$out" | sed -E 's/.*accuracy ([0-9.]+).*/\1/')
  trainable=$(grep '^trainable:' "$out" | sed -E 's/^trainable: ([0-9]+) .*/\1/')
  bytes=$(grep 'bytes per step measured' "$out" | sed -E 's/.*: ([0-9]+) bytes.*/\1/')
  echo "$name $split seed $seed: accuracy $acc, trainable $trainable, exchanged ${bytes:-0} B/step"
}

# 1. Selection on val5: full fine-tuning's lr; LoRA's rank, alpha and lr.
for lr in 3e-4 1e-3 3e-3 1e-2; do run full-lr$lr val5 3 --lr $lr; done
for r in 1 2 4; do
  for a in $r $((2 * r)); do
    for lr in 1e-3 3e-3 1e-2 3e-2; do run lora-r$r-a$a-lr$lr val5 3 --lr $lr --lora $r --lora-alpha $a; done
  done
done
for lr in 1e-3 3e-3 1e-2 3e-2; do run head-lr$lr val5 3 --lr $lr --freeze 0; done
# best PREFIX: the run named PREFIX* with the highest validation accuracy.
best() { for f in runs/"$1"*.val5.s3.txt; do
           echo "$(grep '^test:' "$f" | sed -E 's/.*accuracy ([0-9.]+).*/\1/') $(basename "$f" .val5.s3.txt)"; done |
         sort -k1,1gr | head -1 | cut -d' ' -f2; }
flags_of() { # NAME -> its flags
  local n=$1 lr=${1##*-lr}
  case $n in
    full-*) echo "--lr $lr" ;;
    head-*) echo "--lr $lr --freeze 0" ;;
    lora-*) local r a; r=$(sed -E 's/lora-r([0-9]+)-.*/\1/' <<<"$n"); a=$(sed -E 's/.*-a([0-9]+)-.*/\1/' <<<"$n")
            echo "--lr $lr --lora $r --lora-alpha $a" ;;
  esac
}
sel_full=$(best full-); sel_head=$(best head-)
sel_lora4=$(best lora-r4-); sel_lora2=$(best lora-r2-); sel_lora1=$(best lora-r1-)
echo "chosen on val5: $sel_full, $sel_head, $sel_lora1, $sel_lora2, $sel_lora4"

# 2. The chosen configurations on the test set, three seeds each.
echo
echo "| fine-tuning | flags | trainable parameters | of full | bytes exchanged / step | test accuracy (seeds 3, 4, 5) | mean |"
echo "| --- | --- | ---: | ---: | ---: | --- | ---: |"
full_trainable=""
for sel in $sel_full $sel_lora4 $sel_lora2 $sel_lora1 $sel_head; do
  accs=() line=""
  for seed in 3 4 5; do
    # shellcheck disable=SC2046
    line=$(run "$sel" test5 $seed $(flags_of "$sel"))
    accs+=("$(sed -E 's/.*accuracy ([0-9.]+),.*/\1/' <<<"$line")")
  done
  trainable=$(sed -E 's/.*trainable ([0-9]+),.*/\1/' <<<"$line")
  bytes=$(sed -E 's/.*exchanged ([0-9]+) B.*/\1/' <<<"$line")
  [[ -n $full_trainable ]] || full_trainable=$trainable
  mean=$(printf '%s\n' "${accs[@]}" | awk '{ s += $1 } END { printf "%.4f", s / NR }')
  frac=$(awk -v a="$trainable" -v b="$full_trainable" 'BEGIN { printf "%.2f%%", 100 * a / b }')
  echo "| $sel | $(flags_of "$sel") | $trainable | $frac | $bytes | ${accs[*]} | $mean |"
done
