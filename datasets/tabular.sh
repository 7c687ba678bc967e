#!/usr/bin/env bash
# Small real tabular datasets from scikit-learn's own package (no download):
# iris, wine, breast_cancer, digits (classification) and diabetes (regression),
# each as OUT_DIR/NAME/{train,test}.h5 with a fixed seeded 80/20 split and
# features (and regression targets) standardised with the training split's
# statistics. Details: datasets/tabular.py. Needs python3-sklearn.
#   usage: datasets/tabular.sh [OUT_DIR (default data/tabular)] [FFN_DATA (default build/ffn-data)] [NAMES...]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/data/tabular}
ffn_data=${2:-$here/build/ffn-data}
shift $(( $# > 2 ? 2 : $# ))
[[ -x $ffn_data ]] || { echo "tabular.sh: $ffn_data not found (build first)" >&2; exit 1; }
/usr/bin/python3 -c 'import sklearn' 2>/dev/null || { echo "tabular.sh: needs scikit-learn (apt-get install python3-sklearn)" >&2; exit 1; }
exec /usr/bin/python3 "$here/datasets/tabular.py" "$out" "$ffn_data" "$@"
