#!/usr/bin/env bash
# The defaults study of issue 19 (README, "Defaults"): on scikit-learn's bundled
# tabular sets (datasets/tabular.sh), one hidden layer of 100 ReLU units, Adam,
# the same lr, batch and epochs for every framework, several seeds: ffn with each
# candidate initialiser against scikit-learn's MLPClassifier/MLPRegressor,
# PyTorch's nn.Linear defaults and Keras' defaults (glorot_uniform, zero bias;
# emulated in PyTorch, Keras is not packaged for Debian). Prints the markdown
# table the README quotes; per-run records go to OUT_DIR/study.jsonl.
# Details and variants: launch/defaults_study.py --help.
#   usage: launch/defaults-study.sh [BUILD_DIR (default build)] [defaults_study.py flags...]
#   env:   FFN_DATA_DIR (default data/tabular), OUT_DIR (default runs/defaults-study)
# One rank, one BLAS/torch thread per run; about 2 minutes on one core.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
shift $(( $# > 0 ? 1 : 0 ))
data=${FFN_DATA_DIR:-$here/data/tabular}
out=${OUT_DIR:-$here/runs/defaults-study}
mkdir -p "$out"
for n in iris wine breast_cancer digits diabetes; do
  [[ -s $data/$n/train.h5 && -s $data/$n/x_train.npy ]] || { bash "$here/datasets/tabular.sh" "$data" "$build/ffn-data"; break; }
done
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
exec /usr/bin/python3 "$here/launch/defaults_study.py" "$data" "$build/ffn-train" --jsonl "$out/study.jsonl" "$@"
