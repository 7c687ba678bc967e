#!/usr/bin/env python3
"""The defaults study (issue 19): ffn's initialisers against scikit-learn's MLP,
PyTorch's nn.Linear defaults and Keras' defaults (emulated in PyTorch), on the
small tabular sets of datasets/tabular.sh, same architecture and recipe.

Every run: one hidden layer of HIDDEN ReLU units, Adam (lr LR, betas 0.9/0.999,
eps 1e-8), batch BATCH, EPOCHS epochs, reshuffled every epoch, no weight decay
(scikit-learn's alpha=0: ffn's Adam has none), softmax cross-entropy for the
classification sets, mean squared error on the standardised target for diabetes.

Variants (W = weights, b = biases; "hidden/output" where the two layers differ):
  ffn he_uniform       ffn's default before issue 19: W hidden U(+-sqrt(6/fan_in)), output Xavier; b = 0
  ffn lecun_uniform    W hidden U(+-sqrt(3/fan_in)), output Xavier; b = 0
  ffn xavier_uniform   W U(+-sqrt(6/(fan_in+fan_out))) in both layers; b = 0 (Keras' default)
  ffn torch_bound      W U(+-1/sqrt(fan_in)) in both layers (PyTorch's weights, given to ffn
                       as init=uniform:init_param=1/sqrt(fan_in)); b = 0
  ffn default          the build's default (no init= in the spec): xavier_uniform since issue 19
  sklearn              MLPClassifier / MLPRegressor: W and b U(+-sqrt(6/(fan_in+fan_out))) (relu)
  torch default        nn.Linear as constructed: W and b U(+-1/sqrt(fan_in))
  torch default, b=0   the same weights, zero biases (does PyTorch's bias init matter?)
  keras-like (torch)   Keras Dense defaults: glorot_uniform W, zero b (Keras is not
                       installable here; emulated in PyTorch)
  torch he_uniform     ffn's old default reproduced in PyTorch (a cross-check across frameworks)

Reported: test accuracy (classification) or test R^2 (regression), mean +- std over
seeds, and the mean training loss of epoch EPOCHS/10 (how fast it learns); the log
(stderr) and the JSON lines also give the test loss (cross-entropy or MSE), which
separates variants that the accuracy of a 30-row test set cannot.

  usage: defaults_study.py DATA_DIR FFN_TRAIN [--seeds 1,2,3,4,5] [--epochs 100]
         [--batch 32] [--lr 1e-3] [--hidden 100] [--sets iris,wine,...] [--only ffn,sklearn,torch]
         [--jsonl FILE]
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import warnings

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
CLASSIFICATION = {"iris", "wine", "breast_cancer", "digits"}


def load(data_dir, name):
    d = os.path.join(data_dir, name)
    return [np.load(os.path.join(d, f)) for f in ("x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy")]


def r2(y, pred):
    y, pred = y.reshape(-1), pred.reshape(-1)
    return 1.0 - float(np.mean((y - pred) ** 2)) / float(np.var(y))


def run_ffn(args, name, data, seed, init):
    xtr, ytr, xte, yte = data
    fan_in, classes = xtr.shape[1], (int(ytr.max()) + 1 if name in CLASSIFICATION else 1)
    if init == "default":
        hid, out = "", ""
    elif init == "torch_bound":
        hid = f":init=uniform:init_param={1 / math.sqrt(fan_in):.9g}"
        out = f":init=uniform:init_param={1 / math.sqrt(args.hidden):.9g}"
    elif init == "xavier_uniform":
        hid, out = ":init=xavier_uniform", ":init=xavier_uniform"
    else:
        hid, out = f":init={init}", ""
    model = f"dense:{args.hidden}:{args.act}{hid},dense:{classes}{out}"
    d = os.path.join(args.data_dir, name)
    cmd = [args.ffn_train, "--train", os.path.join(d, "train.h5"), "--test", os.path.join(d, "test.h5"),
           "--model", model, "--loss", "softmax_ce" if name in CLASSIFICATION else "mse",
           "--optimizer", "adam", "--lr", str(args.lr), "--batch-size", str(args.batch),
           "--epochs", str(args.epochs), "--seed", str(seed), "--threads", "1", "--progress", "off"]
    out_txt = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    early = args.epochs // 10
    m = re.search(rf"^epoch {early}/{args.epochs}\s+train loss ([-0-9.e+naif]+)", out_txt, re.M)
    t = re.search(r"^test: loss ([-0-9.e+naif]+) accuracy ([-0-9.e+naif]+)", out_txt, re.M)
    loss_early, test_loss, test_acc = float(m.group(1)), float(t.group(1)), float(t.group(2))
    score = test_acc if name in CLASSIFICATION else 1.0 - test_loss / float(np.var(yte))
    return score, loss_early, test_loss


def run_sklearn(args, name, data, seed):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    xtr, ytr, xte, yte = data
    cls = MLPClassifier if name in CLASSIFICATION else MLPRegressor
    if args.act != "relu":
        raise SystemExit("defaults_study.py: scikit-learn's MLP has no %s (use --only ffn,torch)" % args.act)
    m = cls(hidden_layer_sizes=(args.hidden,), activation="relu", solver="adam", alpha=0.0,
            batch_size=args.batch, learning_rate_init=args.lr, max_iter=args.epochs, shuffle=True,
            random_state=seed, tol=0.0, n_iter_no_change=args.epochs + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m.fit(xtr, ytr if name in CLASSIFICATION else ytr.reshape(-1))
    # scikit-learn's regression loss is half the squared error; ffn's mse is the mean squared error
    early = m.loss_curve_[args.epochs // 10 - 1] * (1 if name in CLASSIFICATION else 2)
    if name in CLASSIFICATION:
        from sklearn.metrics import log_loss
        return float(np.mean(m.predict(xte) == yte)), early, log_loss(yte, m.predict_proba(xte), labels=m.classes_)
    pred = m.predict(xte)
    return r2(yte, pred), early, float(np.mean((yte.reshape(-1) - pred) ** 2))


def run_torch(args, name, data, seed, variant):
    import torch
    torch.set_num_threads(1)
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    classes = int(ytr.max()) + 1 if name in CLASSIFICATION else 1
    l1, l2 = torch.nn.Linear(xtr.shape[1], args.hidden), torch.nn.Linear(args.hidden, classes)
    with torch.no_grad():
        if variant == "default_zero_bias":
            l1.bias.zero_(); l2.bias.zero_()
        elif variant == "keras":
            for l in (l1, l2):
                torch.nn.init.xavier_uniform_(l.weight); l.bias.zero_()
        elif variant == "he_uniform":
            torch.nn.init.kaiming_uniform_(l1.weight, nonlinearity="relu")  # sqrt(6/fan_in)
            torch.nn.init.xavier_uniform_(l2.weight)
            l1.bias.zero_(); l2.bias.zero_()
    act = torch.nn.ReLU() if args.act == "relu" else torch.nn.GELU()  # exact erf GELU, as ffn's
    model = torch.nn.Sequential(l1, act, l2)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    lossf = torch.nn.CrossEntropyLoss() if name in CLASSIFICATION else torch.nn.MSELoss()
    X = torch.from_numpy(xtr)
    Y = torch.from_numpy(ytr.astype(np.int64)) if name in CLASSIFICATION else torch.from_numpy(ytr)
    n, early, gen = len(X), None, torch.Generator().manual_seed(seed)
    for epoch in range(1, args.epochs + 1):
        perm, total = torch.randperm(n, generator=gen), 0.0
        for at in range(0, n, args.batch):
            idx = perm[at:at + args.batch]
            opt.zero_grad()
            loss = lossf(model(X[idx]), Y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if epoch == args.epochs // 10:
            early = total / n
    with torch.no_grad():
        out = model(torch.from_numpy(xte))
        yt = torch.from_numpy(yte.astype(np.int64)) if name in CLASSIFICATION else torch.from_numpy(yte)
        test_loss = float(lossf(out, yt))
        out = out.numpy()
    if name in CLASSIFICATION:
        return float(np.mean(out.argmax(1) == yte)), early, test_loss
    return r2(yte, out), early, test_loss


VARIANTS = [
    ("ffn he_uniform (old default)", "ffn", "he_uniform"),
    ("ffn lecun_uniform", "ffn", "lecun_uniform"),
    ("ffn xavier_uniform", "ffn", "xavier_uniform"),
    ("ffn torch_bound", "ffn", "torch_bound"),
    ("ffn default (this build)", "ffn", "default"),
    ("sklearn MLP", "sklearn", "sklearn"),
    ("torch default", "torch", "default"),
    ("torch default, b=0", "torch", "default_zero_bias"),
    ("keras-like (torch)", "torch", "keras"),
    ("torch he_uniform", "torch", "he_uniform"),
]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir"); p.add_argument("ffn_train")
    p.add_argument("--seeds", default="1,2,3,4,5"); p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch", type=int, default=32); p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--act", default="relu", choices=["relu", "gelu"])
    p.add_argument("--sets", default="iris,wine,breast_cancer,digits,diabetes")
    p.add_argument("--only", default="ffn,sklearn,torch"); p.add_argument("--variants", default="")
    p.add_argument("--jsonl", default="")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    sets = args.sets.split(",")
    kinds = set(args.only.split(","))
    variants = [v for v in VARIANTS if v[1] in kinds and (not args.variants or v[2] in args.variants.split(","))]
    log = open(args.jsonl, "w") if args.jsonl else None
    table = {}
    for name in sets:
        data = load(args.data_dir, name)
        for label, kind, what in variants:
            scores, earlies, tests = [], [], []
            for seed in seeds:
                if kind == "ffn":
                    s, e, t = run_ffn(args, name, data, seed, what)
                elif kind == "sklearn":
                    s, e, t = run_sklearn(args, name, data, seed)
                else:
                    s, e, t = run_torch(args, name, data, seed, what)
                scores.append(s); earlies.append(e); tests.append(t)
                if log:
                    log.write(json.dumps({"set": name, "variant": label, "seed": seed, "score": s,
                                          "loss_early": e, "test_loss": t}) + "\n"); log.flush()
            table[(name, label)] = (np.mean(scores), np.std(scores), np.mean(earlies), np.mean(tests))
            print(f"{name:14s} {label:30s} {np.mean(scores):.4f} ± {np.std(scores):.4f}  "
                  f"loss@{args.epochs // 10}: {np.mean(earlies):.4f}  test loss {np.mean(tests):.4f}",
                  file=sys.stderr, flush=True)
    metric = {n: ("acc" if n in CLASSIFICATION else "R²") for n in sets}
    print(f"\nhidden {args.hidden} {args.act}, Adam lr {args.lr:g}, batch {args.batch}, {args.epochs} epochs, "
          f"seeds {args.seeds}; each cell: test score mean ± std (train loss after epoch {args.epochs // 10})\n")
    print("| variant | " + " | ".join(f"{n} ({metric[n]})" for n in sets) + " |")
    print("| --- |" + " ---: |" * len(sets))
    for label, _, _ in variants:
        cells = [f"{table[(n, label)][0]:.4f} ± {table[(n, label)][1]:.4f} ({table[(n, label)][2]:.3f})" for n in sets]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\ntest loss (cross-entropy; MSE of the standardised target for regression), mean over seeds\n")
    print("| variant | " + " | ".join(sets) + " |")
    print("| --- |" + " ---: |" * len(sets))
    for label, _, _ in variants:
        print(f"| {label} | " + " | ".join(f"{table[(n, label)][3]:.4f}" for n in sets) + " |")


if __name__ == "__main__":
    main()
