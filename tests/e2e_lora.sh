#!/usr/bin/env bash
# The new layer kinds through ffn-train, and LoRA fine-tuning:
#  1. dropout, layernorm, ffn and swiglu blocks: -np 1, 2 and 4 follow the same
#     loss curve (dropout's masks come from the global row ids, not the rank),
#     dropout really drops, and a resumed run is bitwise the uninterrupted one;
#  2. --lora on a checkpoint at -np 2: only adapters and the replaced head
#     train and are exchanged, the base weights stay bitwise, the run resumes,
#     ffn-eval --merge-lora writes an adapter-free checkpoint computing the same
#     function (checked by an independent numpy forward), and misuse is refused.
source "$(dirname "$0")/lib/common.sh"

"$FFN_DATA" synth blobs --rows 1200 --features 10 --classes 3 --noise 2 --seed 31 --out train.h5 >/dev/null
"$FFN_DATA" synth blobs --rows 600 --features 10 --classes 5 --noise 2 --seed 32 --out five.h5 >/dev/null
SPEC=dense:24:relu,dropout:0.2,layernorm,ffn:32,swiglu:16,dropout:0.1,dense:3
ARGS=(--train train.h5 --loss softmax_ce --optimizer adam --lr 0.003 --batch-size 32 --seed 7 --quiet
      --threads 1 --log-every 1)
# 1200 / 32 = 38 steps per epoch (the last has 16 rows).
for np in 1 2 4; do
  mpi $np "$FFN_TRAIN" "${ARGS[@]}" --model "$SPEC" --epochs 2 --metrics np$np.csv --checkpoint-dir ck$np >/dev/null
done
"$FFN_TRAIN" "${ARGS[@]}" --model "${SPEC//dropout:0.2/dropout:0}" --epochs 2 --metrics nodrop.csv >/dev/null
"$PY" - <<'PY' || fail "the new layers' loss curves differ across rank counts"
import csv, numpy as np
def curve(f): return np.array([float(r["loss"]) for r in csv.DictReader(open(f)) if r["kind"] == "step"])
ref = curve("np1.csv")
assert len(ref) == 76, len(ref)
for n in (2, 4):
    c = curve(f"np{n}.csv")
    rel = np.max(np.abs(c - ref) / np.abs(ref))
    print(f"-np {n}: max relative loss difference {rel:.2e} over 76 steps (bound 1e-4)")
    assert len(c) == len(ref) and rel < 1e-4
d = np.max(np.abs(curve("nodrop.csv") - ref) / np.abs(ref))
print(f"dropout 0.2 vs 0: curves differ by up to {d:.2e} (relative)")
assert d > 1e-3, "dropout changed nothing"
PY
pass "dropout, layernorm, ffn, swiglu: -np 1/2/4 follow the same curve"

mpi 2 "$FFN_TRAIN" "${ARGS[@]}" --model "$SPEC" --epochs 1 --checkpoint-dir part >/dev/null
mpi 2 "$FFN_TRAIN" "${ARGS[@]}" --model "$SPEC" --epochs 2 --checkpoint-dir part --resume latest >/dev/null
"$PY" - <<'PY' || fail "resumed run with dropout is not bitwise the uninterrupted one"
import h5py, numpy as np
a, b = h5py.File("ck2/ckpt-0000000076.h5"), h5py.File("part/ckpt-0000000076.h5")
names = []
a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
assert "model/3/W1" in names and "model/4/W3" in names and "model/2/gamma" in names, names
for n in names:
    assert np.array_equal(a[n][()], b[n][()]), n
PY
pass "resume with dropout: bitwise identical (masks from seed, step and row)"

# 2. LoRA fine-tuning of a pretrained checkpoint at -np 2.
"$FFN_TRAIN" "${ARGS[@]}" --model dense:24:relu,dense:12:tanh,dense:3 --epochs 2 --checkpoint-dir pre >/dev/null
PRE=pre/ckpt-0000000076.h5
LORA=(--train five.h5 --init-from $PRE --replace-head 5 --lora 2 --lora-alpha 4 --lr 0.01 --batch-size 32
      --seed 3 --threads 1 --checkpoint-dir lora)
mpi 2 "$FFN_TRAIN" "${LORA[@]}" --epochs 2 >lora.txt
# Trainable: lora_A [2, 10] + lora_B [24, 2] + lora_A [2, 24] + lora_B [12, 2] + head 12*5 + 5 = 205.
grep -q "^trainable: 205 of 769 parameters (26.66%); gradient exchange 820 bytes" lora.txt ||
  fail "trainable/exchange line: $(grep trainable lora.txt)"
grep -q "^gradient exchange: 820 bytes per step measured" lora.txt || fail "measured exchange: $(grep exchange lora.txt)"
acc=$(field lora.txt '^train:' accuracy)
ge "$acc" 0.8 || fail "LoRA fine-tuning reached train accuracy $acc only"
"$PY" - <<'PY' || fail "LoRA fine-tuning changed the base or did not train the adapters"
import h5py, numpy as np
a, b = h5py.File("pre/ckpt-0000000076.h5"), h5py.File("lora/ckpt-0000000038.h5")
for i in (0, 1):
    for k in ("W", "b"):
        assert np.array_equal(a[f"model/{i}/{k}"][()], b[f"model/{i}/{k}"][()]), f"base {i}/{k} moved"
    assert b[f"model/{i}/lora_A"].shape == (2, (10, 24)[i])
    assert np.any(b[f"model/{i}/lora_B"][()] != 0), "lora_B did not train"
assert b["model/2/W"].shape == (5, 12)
assert b.attrs["model_spec"] == "dense:24:relu:lora=2:lora_alpha=4,dense:12:tanh:lora=2:lora_alpha=4,dense:5", b.attrs["model_spec"]
PY
pass "--lora 2 at -np 2: 205 trainable parameters, 820 bytes exchanged per step, base weights bitwise unchanged (train accuracy $acc)"

# The LoRA run resumes (at another rank count) with its base still fixed; the
# LoRA flags may stay on the command line (the cluster launchers keep them).
mpi 1 "$FFN_TRAIN" --train five.h5 --resume lora/ckpt-0000000038.h5 --lora 2 --lora-alpha 4 --lr 0.01 \
  --batch-size 32 --seed 3 --threads 1 --epochs 3 --checkpoint-dir lora --quiet >/dev/null
"$PY" - <<'PY' || fail "resumed LoRA run moved the base weights"
import h5py, numpy as np
a, b = h5py.File("pre/ckpt-0000000076.h5"), h5py.File("lora/ckpt-0000000057.h5")
for i in (0, 1):
    assert np.array_equal(a[f"model/{i}/W"][()], b[f"model/{i}/W"][()])
PY
pass "a LoRA run resumes with its base fixed"

# Merging: same evaluation, and an independent numpy forward of both files agrees.
"$FFN_EVAL" --merge-lora lora/ckpt-0000000057.h5 --out merged.h5 >merge.txt || fail "merge: $(cat merge.txt)"
"$FFN_EVAL" --checkpoint lora/ckpt-0000000057.h5 --data five.h5 | tail -1 >e1.txt
"$FFN_EVAL" --checkpoint merged.h5 --data five.h5 | tail -1 >e2.txt
cmp -s e1.txt e2.txt || fail "merged evaluation differs: $(cat e1.txt) vs $(cat e2.txt)"
"$PY" - <<'PY' || fail "merged checkpoint does not compute what the adapted one does"
import h5py, numpy as np
x = h5py.File("five.h5")["x"][()].astype(np.float64)
if x.dtype != np.float64: pass
def act(name, z):
    return np.maximum(z, 0) if name == "relu" else np.tanh(z) if name == "tanh" else z
def forward(f, lora):
    a, acts = x, ("relu", "tanh", None)
    for i in range(3):
        g = f[f"model/{i}"]
        z = a @ g["W"][()].T.astype(np.float64) + g["b"][()]
        if lora and "lora_A" in g:
            z += (4 / 2) * (a @ g["lora_A"][()].T) @ g["lora_B"][()].T
        a = act(acts[i], z)
    return a
m = h5py.File("merged.h5")
assert m.attrs["model_spec"] == "dense:24:relu,dense:12:tanh,dense:5", m.attrs["model_spec"]
assert "lora_A" not in m["model/0"] and "optimizer" not in m
y1, y2 = forward(h5py.File("lora/ckpt-0000000057.h5"), True), forward(m, False)
d = np.max(np.abs(y1 - y2)) / np.max(np.abs(y1))
print(f"merged vs adapted logits: max difference {d:.2e} of the largest logit (bound 1e-5)")
assert d < 1e-5
PY
pass "ffn-eval --merge-lora: $(cat e2.txt), same as the adapted checkpoint"

# Misuse is refused with a clear message.
set +e
"$FFN_TRAIN" --train five.h5 --lora 2 --epochs 1 >/dev/null 2>err1.txt; rc1=$?
"$FFN_TRAIN" --train five.h5 --init-from $PRE --replace-head 5 --lora 2 --lora-layers 2 --epochs 1 >/dev/null 2>err2.txt; rc2=$?
"$FFN_TRAIN" --train five.h5 --init-from lora/ckpt-0000000057.h5 --model dense:24:relu,dense:12:tanh,dense:5 --epochs 1 >/dev/null 2>err3.txt; rc3=$?
"$FFN_EVAL" --merge-lora $PRE --out x.h5 >/dev/null 2>err4.txt; rc4=$?
set -e
[[ $rc1 -eq 2 ]] && grep -q -- "--lora: only with --init-from" err1.txt || fail "--lora alone: rc $rc1 $(cat err1.txt)"
[[ $rc2 -eq 2 ]] && grep -q "layer 2 is the replaced head" err2.txt || fail "--lora-layers head: rc $rc2 $(cat err2.txt)"
[[ $rc3 -ne 0 ]] && grep -q "layer 0 has lora_A, which the model lacks (merge the adapters first" err3.txt ||
  fail "adapters dropped silently: rc $rc3 $(cat err3.txt)"
[[ $rc4 -eq 1 ]] && grep -q "has no LoRA adapters" err4.txt || fail "merge without adapters: rc $rc4 $(cat err4.txt)"
pass "misuse of --lora and --merge-lora refused"
