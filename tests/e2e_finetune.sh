#!/usr/bin/env bash
# ctest-labels: slow
# (skipped in the sanitizer pass of .ci/run: its time is Fashion-MNIST training; the init-from,
# replace-head and resume paths it uses run under ASan in e2e_checkpoint and e2e_netns)
# Fine-tuning pays: pretrain on Fashion-MNIST classes 0-4, fine-tune on classes
# 5-9 from 100 labelled images per class; the fine-tuned model must beat the
# same model trained from scratch on the same small set with the same budget.
source "$(dirname "$0")/lib/common.sh"
SRC=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [[ ! -r $SRC/train-images-idx3-ubyte.gz ]]; then
  echo "SKIP: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"; exit 77
fi
"$FFN_DATA" idx --images "$SRC/train-images-idx3-ubyte.gz" --labels "$SRC/train-labels-idx1-ubyte.gz" --out train.h5 >/dev/null
"$FFN_DATA" idx --images "$SRC/t10k-images-idx3-ubyte.gz" --labels "$SRC/t10k-labels-idx1-ubyte.gz" --out test.h5 >/dev/null
"$FFN_DATA" subset train.h5 --classes 0-4 --relabel --out pre.h5 >/dev/null
"$FFN_DATA" subset train.h5 --classes 5-9 --per-class 100 --relabel --seed 1 --out small.h5 >/dev/null
"$FFN_DATA" subset test.h5 --classes 5-9 --relabel --out small-test.h5 >/dev/null

COMMON=(--loss softmax_ce --optimizer adam --batch-size 32 --quiet --threads 1)
mpi 2 "$FFN_TRAIN" --train pre.h5 --model dense:128:relu,dense:5 --lr 1e-3 --epochs 2 "${COMMON[@]}" --checkpoint-dir pre >/dev/null
BUDGET=(--epochs 15 --lr 1e-3 --seed 3)
mpi 2 "$FFN_TRAIN" --train small.h5 --test small-test.h5 --init-from "$(ls pre/ckpt-*.h5 | tail -1)" --replace-head 5 "${BUDGET[@]}" "${COMMON[@]}" >ft.txt
mpi 2 "$FFN_TRAIN" --train small.h5 --test small-test.h5 --model dense:128:relu,dense:5 "${BUDGET[@]}" "${COMMON[@]}" >scratch.txt
ft=$(field ft.txt '^test:' accuracy); scratch=$(field scratch.txt '^test:' accuracy)
echo "classes 5-9 from 100 images/class: fine-tuned $ft, from scratch $scratch"
awk -v a="$ft" -v b="$scratch" 'BEGIN { exit !(a > b) }' || fail "fine-tuned ($ft) does not beat scratch ($scratch)"
pass "fine-tuning beats training from scratch ($ft vs $scratch)"
