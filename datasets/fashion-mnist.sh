#!/usr/bin/env bash
# Converts Debian's Fashion-MNIST (package dataset-fashion-mnist: IDX, gzip) to
# ffn's HDF5 layout in OUTDIR:
#   train.h5        the 60000 training images (what the published baselines train on)
#   test.h5         the 10000 test images
#   train-55k.h5    55000 of the training images, and
#   val.h5          the other 5000 (a seeded random split), for runs that want a
#                   validation set kept apart from training (--train train-55k.h5 --val val.h5)
# Pixels stay uint8 with scale 1/255, a quarter of the bytes of float32.
#   usage: datasets/fashion-mnist.sh [OUTDIR (default data/fashion-mnist)] [FFN_DATA binary]
set -euo pipefail
case ${1:-} in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
  -*) echo "fashion-mnist.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
out=${1:-data/fashion-mnist}
ffn_data=${2:-${FFN_DATA:-$here/build/ffn-data}}
src=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
  [[ -r $src/$f ]] || { echo "fashion-mnist.sh: $src/$f is missing (apt-get install dataset-fashion-mnist)" >&2; exit 1; }
done
mkdir -p "$out"
if [[ -s $out/train.h5 && -s $out/test.h5 && -s $out/train-55k.h5 && -s $out/val.h5 ]]; then
  echo "fashion-mnist.sh: $out/{train,test,train-55k,val}.h5 already there"
  exit 0
fi
"$ffn_data" idx --images "$src/train-images-idx3-ubyte.gz" --labels "$src/train-labels-idx1-ubyte.gz" --out "$out/train.h5"
"$ffn_data" idx --images "$src/t10k-images-idx3-ubyte.gz" --labels "$src/t10k-labels-idx1-ubyte.gz" --out "$out/test.h5"
"$ffn_data" split "$out/train.h5" --train-out "$out/train-55k.h5" --val-out "$out/val.h5" --val-count 5000 --seed 0
echo "fashion-mnist.sh: wrote $out/train.h5 (60000), $out/test.h5 (10000), $out/train-55k.h5 + $out/val.h5 (55000 + 5000)"
