#!/usr/bin/env bash
# Distillation and pruning on Fashion-MNIST: the figures of the README's
# "Results on Fashion-MNIST" tables.
#   usage: launch/compress-fmnist.sh [BUILD_DIR (default build)] [OUT_DIR (default runs/compress)]
#   env:   NP ranks (default 2), FFN_DATA_DIR (default data/fashion-mnist), MPIRUN (default mpirun)
# 1. the teacher / dense model: launch/recipe-fmnist-090.sh (seed 1), checkpoint kept;
# 2. distillation: a 784-32-10 student on labels alone and distilled (T 2, alpha 0.5, as chosen
#    on the validation split), seeds 1-3;
# 3. pruning: 4 epochs of fine-tuning from the dense model at 0/50/80/90% sparsity, per layer
#    and global, the sparsity rising over the first 2 epochs.
# Prints one line per run and the summary in OUT_DIR/summary.txt. About 2.5 minutes on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
out=${2:-$here/runs/compress}
data=${FFN_DATA_DIR:-$here/data/fashion-mnist}
np=${NP:-2}
mkdir -p "$out"
root=()
[[ $(id -u) -eq 0 ]] && root=(--allow-run-as-root)
(( np > $(nproc) )) && root+=(--oversubscribe)
train=("${MPIRUN:-mpirun}" "${root[@]}" -np "$np" "$build/ffn-train" --threads 1 --progress off
       --train "$data/train.h5" --test "$data/test.h5")
acc() { sed -n 's/^test: .*accuracy \([0-9.]*\).*/\1/p' "$1"; }
say() { echo "$*" | tee -a "$out/summary.txt"; }
: >"$out/summary.txt"

teacher=$(ls "$out"/teacher/ckpt-*.h5 2>/dev/null | tail -1 || true)
if [[ -z $teacher ]]; then
  FFN_DATA_DIR=$data NP=$np bash "$here/launch/recipe-fmnist-090.sh" "$build" --checkpoint-dir "$out/teacher" --keep 1 \
    >"$out/teacher.txt" 2>&1
  teacher=$(ls "$out"/teacher/ckpt-*.h5 | tail -1)
fi
say "teacher $teacher: test accuracy $(acc "$out/teacher.txt" 2>/dev/null || echo '?')"

student=(--model dense:32:relu,dense:10 --loss softmax_ce --optimizer adam --lr 1e-3 --batch-size 64 --epochs 30)
for seed in 1 2 3; do
  "${train[@]}" "${student[@]}" --seed $seed >"$out/student-labels-$seed.txt" 2>&1
  "${train[@]}" "${student[@]}" --seed $seed --teacher "$teacher" --distill-temperature 2 --distill-alpha 0.5 \
    >"$out/student-distilled-$seed.txt" 2>&1
  say "student 784-32-10 seed $seed: labels only $(acc "$out/student-labels-$seed.txt"), distilled $(acc "$out/student-distilled-$seed.txt")"
done

dense=(--model dense:512:relu,dropout:0.2,dense:256:relu,dropout:0.2,dense:10 --loss softmax_ce --optimizer adamw
       --weight-decay 0.01 --lr 1e-4 --batch-size 128 --epochs 4 --seed 1 --init-from "$teacher")
"${train[@]}" "${dense[@]}" >"$out/prune-0.txt" 2>&1
say "dense, fine-tuned 4 epochs: $(acc "$out/prune-0.txt")"
for scope in layer global; do
  for s in 0.5 0.8 0.9; do
    "${train[@]}" "${dense[@]}" --prune $s --prune-scope $scope --prune-end-step 938 --prune-every 47 \
      >"$out/prune-$scope-$s.txt" 2>&1
    say "pruned to $s ($scope), fine-tuned 4 epochs: $(acc "$out/prune-$scope-$s.txt")"
  done
done
