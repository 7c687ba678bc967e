#!/usr/bin/env python3
"""Small real tabular datasets bundled with scikit-learn, as ffn HDF5 train/test files.

Called by datasets/tabular.sh. For each dataset: a fixed seeded 80/20 split
(sklearn.model_selection.train_test_split, random_state=0, stratified for the
classification sets), features standardised with the TRAINING split's mean and
std (a constant column keeps std 1, as StandardScaler does), regression targets
likewise standardised with the training split's statistics (so R^2 is unchanged
and one learning rate fits every set). The arrays go through `ffn-data npy`.

  usage: tabular.py OUT_DIR FFN_DATA [NAMES...]   (default: all of them)
Writes OUT_DIR/NAME/{train,test}.h5 and OUT_DIR/NAME/{x,y}_{train,test}.npy
(the same standardised arrays, for the Python peers of launch/defaults-study.sh).
"""
import os
import subprocess
import sys

import numpy as np
from sklearn import datasets
from sklearn.model_selection import train_test_split

# name: (loader, task)
SETS = {
    "iris": (datasets.load_iris, "classification"),
    "wine": (datasets.load_wine, "classification"),
    "breast_cancer": (datasets.load_breast_cancer, "classification"),
    "digits": (datasets.load_digits, "classification"),
    "diabetes": (datasets.load_diabetes, "regression"),
}
# linnerud (20 rows, 3 features) is left out: a 4-row test split measures nothing.


def standardise(train, test):
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    return (train - mean) / std, (test - mean) / std


def prepare(name, out_dir, ffn_data):
    loader, task = SETS[name]
    x, y = loader(return_X_y=True)
    x = x.astype(np.float64)
    strat = y if task == "classification" else None
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=strat)
    xtr, xte = standardise(xtr, xte)
    if task == "classification":
        ytr, yte = ytr.astype(np.int32), yte.astype(np.int32)
    else:
        ytr, yte = standardise(ytr.reshape(-1, 1).astype(np.float64), yte.reshape(-1, 1).astype(np.float64))
        ytr, yte = ytr.astype(np.float32), yte.astype(np.float32)
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    for split, xs, ys in (("train", xtr, ytr), ("test", xte, yte)):
        xp, yp = os.path.join(d, f"x_{split}.npy"), os.path.join(d, f"y_{split}.npy")
        np.save(xp, xs.astype(np.float32))
        np.save(yp, ys)
        subprocess.run([ffn_data, "npy", "--x", xp, "--y", yp, "--out", os.path.join(d, f"{split}.h5")],
                       check=True, stdout=subprocess.DEVNULL)
    print(f"{name}: {task}, {xtr.shape[1]} features, {len(xtr)} train / {len(xte)} test rows -> {d}")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out_dir, ffn_data = sys.argv[1], sys.argv[2]
    names = sys.argv[3:] or list(SETS)
    for n in names:
        if n not in SETS:
            sys.exit(f"tabular.py: unknown dataset {n!r} (one of {', '.join(SETS)})")
        prepare(n, out_dir, ffn_data)


if __name__ == "__main__":
    main()
