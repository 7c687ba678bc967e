#!/usr/bin/env bash
# Round trips with real PyTorch (Debian's python3-torch): a torch nn.Sequential
# saved as .safetensors (written by hand when the safetensors package is
# missing) and as .npz (numpy.savez_compressed: deflated entries) gives the
# same outputs in ffn-eval and starts ffn-train --init-from; ffn's --export
# loads into torch and gives ffn's outputs. Prints the largest differences.
source "$(dirname "$0")/lib/common.sh"

if ! why=$($PY -c 'import torch' 2>&1); then
    echo "skip: python3-torch is not installed (apt-get install python3-torch): ${why##*$'\n'}"
    exit 77
fi

SPEC=dense:16:relu,dense:8:gelu,dense:3
$PY - <<'EOF'
import json, struct, numpy as np, torch, h5py
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.GELU(),
                          torch.nn.Linear(8, 3))
rng = np.random.default_rng(1)
x = rng.normal(size=(257, 5)).astype(np.float32)
with h5py.File("data.h5", "w") as f:
    f["x"] = x
with torch.no_grad():
    np.save("torch_out.npy", net(torch.from_numpy(x)).numpy())
state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
np.savez_compressed("torch.npz", **state)
try:
    from safetensors.numpy import save_file
    save_file(state, "torch.safetensors")
except ImportError:  # the format by hand: u64 header length, JSON header, raw little-endian data
    header, blobs, at = {}, [], 0
    for k, v in state.items():
        b = np.ascontiguousarray(v, dtype="<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open("torch.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
EOF

for f in torch.safetensors torch.npz; do
    if "$FFN_EVAL" --checkpoint $f --data data.h5 --predict out.npy 2>err.txt; then fail "$f without --model loaded"; fi
    grep -q "carries no ffn spec" err.txt || fail "no message: $(cat err.txt)"
    "$FFN_EVAL" --checkpoint $f --model $SPEC --loss mse --data data.h5 --predict "ffn_${f#torch.}.npy" >/dev/null
done
$PY - <<'EOF' || fail "ffn's outputs differ from torch's"
import numpy as np
t = np.load("torch_out.npy")
for f in ("ffn_safetensors.npy", "ffn_npz.npy"):
    d = np.abs(np.load(f) - t).max()
    print("torch -> %s: max |ffn - torch| output difference %.3g" % (f, d))
    assert d <= 1e-5, d
EOF
pass "torch nn.Sequential as .safetensors and .npz: ffn-eval's outputs equal torch's within 1e-5"

# --init-from a torch file: the run starts from its weights (an lr of 1e-30 keeps them).
$PY -c "
import h5py, numpy as np
with h5py.File('data.h5', 'a') as f: f['y'] = (np.arange(257) % 3).astype(np.int32)"
"$FFN_TRAIN" --train data.h5 --init-from torch.safetensors --model $SPEC --epochs 1 --lr 1e-30 --optimizer sgd \
    --checkpoint-dir init >train.txt
grep -q "initialising from: torch.safetensors" train.txt || fail "no init line: $(cat train.txt)"
"$FFN_EVAL" --checkpoint "$(ls init/ckpt-*.h5 | tail -1)" --export init.npz >/dev/null
$PY - <<'EOF' || fail "--init-from did not start from torch's weights"
import numpy as np
a, b = np.load("init.npz"), np.load("torch.npz")
assert sorted(k for k in a if not k.startswith("__")) == sorted(b)
d = max(np.abs(a[k] - b[k]).max() for k in b)
print("--init-from torch.safetensors, then --export: max weight difference %.3g" % d)
assert d == 0
EOF
pass "ffn-train --init-from torch.safetensors starts from torch's weights"

# ffn -> torch: a trained ffn model exported, loaded into torch.
"$FFN_DATA" synth blobs --rows 600 --features 5 --classes 3 --seed 4 --out blobs.h5 >/dev/null
"$FFN_TRAIN" --train blobs.h5 --model dense:12:tanh,dense:6:leaky_relu,dense:3 --epochs 2 --checkpoint-dir ck \
    --quiet >/dev/null
CK=$(ls ck/ckpt-*.h5 | tail -1)
"$FFN_EVAL" --checkpoint "$CK" --export ffn.safetensors >/dev/null
"$FFN_EVAL" --checkpoint "$CK" --export ffn.npz >/dev/null
"$FFN_EVAL" --checkpoint "$CK" --data blobs.h5 --predict ffn_pred.npy >/dev/null
$PY - <<'EOF' || fail "torch's outputs from ffn's export differ"
import json, struct, numpy as np, torch, h5py
def read_safetensors(path):  # the format by hand, so the test needs no safetensors package
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    return {k: torch.from_numpy(np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], "<f4")
                                .reshape(v["shape"]).copy()) for k, v in header.items()}, meta
state, meta = read_safetensors("ffn.safetensors")
spec = json.loads(meta["ffn_spec"])
assert spec["model_spec"] == "dense:12:tanh,dense:6:leaky_relu,dense:3" and spec["input_dim"] == 5
net = torch.nn.Sequential(torch.nn.Linear(5, 12), torch.nn.Tanh(), torch.nn.Linear(12, 6), torch.nn.LeakyReLU(0.01),
                          torch.nn.Linear(6, 3))
net.load_state_dict(state)
z = np.load("ffn.npz")
net2 = torch.nn.Sequential(*[m.__class__(*([m.in_features, m.out_features] if isinstance(m, torch.nn.Linear) else []))
                             for m in net])
net2.load_state_dict({k: torch.from_numpy(z[k]) for k in z if not k.startswith("__")})
x = torch.from_numpy(h5py.File("blobs.h5")["x"][:])
p = np.load("ffn_pred.npy")
with torch.no_grad():
    for name, m in (("safetensors", net), ("npz", net2)):
        prob = torch.softmax(m(x), dim=1).numpy()
        d = np.abs(prob - p["prob"]).max()
        agree = (prob.argmax(1) == p["class"]).mean()
        print("ffn --export %s -> torch: max |torch - ffn| probability difference %.3g, classes agree %.4f"
              % (name, d, agree))
        assert d <= 1e-5 and agree == 1.0
EOF
pass "ffn --export .safetensors and .npz load into torch nn.Sequential and give ffn's outputs"
