#!/usr/bin/env bash
# The bf16-vs-fp32 accuracy study of the README ("Mixed precision (bf16)"): the
# Fashion-MNIST recipe (launch/recipe-fmnist-090.sh) once per seed and precision,
# then a table of test accuracy per run and the mean of each precision.
#   usage: launch/precision-study.sh [BUILD_DIR (default build)] [SEEDS (default "1 2 3")]
#   env:   NP ranks (default 2), OUT directory for the logs (default a new /tmp dir)
# About 2-3 minutes a run on 2 cores (6 runs).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
seeds=${2:-1 2 3}
out=${OUT:-$(mktemp -d /tmp/ffn-precision.XXXXXX)}
mkdir -p "$out"
for seed in $seeds; do
  for p in fp32 bf16; do
    SEED=$seed bash "$here/launch/recipe-fmnist-090.sh" "$build" --precision "$p" --threads 1 >"$out/$p-$seed.txt" 2>&1 ||
      { echo "precision-study: the $p run of seed $seed failed (log: $out/$p-$seed.txt)" >&2; exit 1; }
  done
done
echo "| seed | fp32 accuracy | bf16 accuracy | fp32 s | bf16 s |"
echo "| --- | ---: | ---: | ---: | ---: |"
for seed in $seeds; do
  acc() { sed -n 's/^test: loss [^ ]* accuracy \([0-9.]*\).*/\1/p' "$out/$1-$seed.txt"; }
  secs() { sed -n 's/^recipe: \([0-9]*\) s.*/\1/p' "$out/$1-$seed.txt"; }
  echo "| $seed | $(acc fp32) | $(acc bf16) | $(secs fp32) | $(secs bf16) |"
done
for p in fp32 bf16; do
  cat "$out/$p"-*.txt | sed -n 's/^test: loss [^ ]* accuracy \([0-9.]*\).*/\1/p' |
    awk -v p="$p" '{ s += $1; n++ } END { printf "%s mean accuracy over %d seeds: %.4f\n", p, n, s / n }'
done
echo "(logs in $out)"
