#!/usr/bin/env bash
# ffn-onnx (src/tools/ffn-onnx.py, through Debian's python3-torch): a trained
# model, as a checkpoint and as ffn-eval --export's .safetensors and .npz,
# becomes an ONNX file that onnx.checker accepts (python3-onnx) and whose graph,
# run by a small NumPy interpreter of its nodes with the weights read back from
# its initializers, gives ffn-eval --predict's probabilities within 1e-5.
# Then the refusals: no spec, a kind without a module, wrong tensors, mse with
# --probabilities, a missing file. Skips (77) without python3-torch or python3-onnx.
source "$(dirname "$0")/lib/common.sh"

for mod in torch onnx; do
    if ! why=$($PY -c "import $mod" 2>&1); then
        echo "skip: python3-$mod is not installed (apt-get install python3-$mod): ${why##*$'\n'}"
        exit 77
    fi
done
FFN_ONNX=$BUILD/ffn-onnx
[[ -x $FFN_ONNX ]] || fail "$FFN_ONNX is missing (configure copies src/tools/ffn-onnx.py there)"

SPEC=dense:12:tanh,dense:10:leaky_relu:slope=0.2,layernorm,dropout:0.1,dense:8:gelu,dense:8:sigmoid,dense:6:relu,dense:3
"$FFN_DATA" synth blobs --rows 700 --features 5 --classes 3 --seed 4 --out blobs.h5 >/dev/null
"$FFN_TRAIN" --train blobs.h5 --model $SPEC --epochs 2 --checkpoint-dir ck --quiet >/dev/null
CK=$(ls ck/ckpt-*.h5 | tail -1)
"$FFN_EVAL" --checkpoint "$CK" --export m.safetensors >/dev/null
"$FFN_EVAL" --checkpoint "$CK" --export m.npz >/dev/null
"$FFN_EVAL" --checkpoint "$CK" --data blobs.h5 --predict pred.npy >/dev/null

"$FFN_ONNX" m.safetensors st.onnx | tee out.txt
grep -q "^onnx: m.safetensors (.*) -> st.onnx (opset 13; x \[batch, 5\] -> logits \[batch, 3\])" out.txt ||
    fail "no summary line: $(cat out.txt)"
"$FFN_ONNX" m.npz npz.onnx >/dev/null
# A checkpoint: ffn-onnx runs ffn-eval --export itself (the one next to it in the build dir).
"$FFN_ONNX" "$CK" ck.onnx --probabilities | tee out.txt
grep -q -- "-> ck.onnx (opset 13; x \[batch, 5\] -> probabilities \[batch, 3\])" out.txt || fail "$(cat out.txt)"

$PY - <<'EOF' || fail "the ONNX graphs do not give ffn's probabilities"
import math, numpy as np, onnx, h5py
from onnx import numpy_helper

def run(model, x):
    """Evaluates the graph's nodes in order with NumPy (float64), for the ops torch.onnx writes for ffn's modules."""
    g = model.graph
    v = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in g.initializer}
    v[g.input[0].name] = x.astype(np.float64)
    erf = np.vectorize(math.erf)
    for n in g.node:
        a = {x.name: x for x in n.attribute}
        i = [v[name] if name else None for name in n.input]
        op = n.op_type
        if op == "Constant":
            y = numpy_helper.to_array(a["value"].t).astype(np.float64)
        elif op == "Gemm":
            A = i[0].T if a.get("transA") and a["transA"].i else i[0]
            B = i[1].T if a.get("transB") and a["transB"].i else i[1]
            alpha = a["alpha"].f if "alpha" in a else 1.0
            beta = a["beta"].f if "beta" in a else 1.0
            y = alpha * A @ B + (beta * i[2] if len(i) > 2 and i[2] is not None else 0)
        elif op == "MatMul": y = i[0] @ i[1]
        elif op == "Add": y = i[0] + i[1]
        elif op == "Sub": y = i[0] - i[1]
        elif op == "Mul": y = i[0] * i[1]
        elif op == "Div": y = i[0] / i[1]
        elif op == "Pow": y = i[0] ** i[1]
        elif op == "Sqrt": y = np.sqrt(i[0])
        elif op == "Erf": y = erf(i[0])
        elif op == "ReduceMean":
            y = i[0].mean(axis=tuple(a["axes"].ints), keepdims=bool(a["keepdims"].i) if "keepdims" in a else True)
        elif op == "Relu": y = np.maximum(i[0], 0)
        elif op == "LeakyRelu": y = np.where(i[0] > 0, i[0], (a["alpha"].f if "alpha" in a else 0.01) * i[0])
        elif op == "Sigmoid": y = 1 / (1 + np.exp(-i[0]))
        elif op == "Tanh": y = np.tanh(i[0])
        elif op == "Softmax":
            ax = a["axis"].i if "axis" in a else -1
            e = np.exp(i[0] - i[0].max(axis=ax, keepdims=True))
            y = e / e.sum(axis=ax, keepdims=True)
        elif op == "Identity": y = i[0]
        else:
            raise SystemExit("the interpreter has no op %s" % op)
        v[n.output[0]] = y
    return v[g.output[0].name]

x = h5py.File("blobs.h5")["x"][:]
p = np.load("pred.npy")
for f in ("st.onnx", "npz.onnx", "ck.onnx"):
    m = onnx.load(f)
    onnx.checker.check_model(m, full_check=True)
    g = m.graph
    assert [t.name for t in g.input] == ["x"], [t.name for t in g.input]
    assert g.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    out = g.output[0].name
    assert out == ("probabilities" if f == "ck.onnx" else "logits"), out
    y = run(m, x)
    if out == "logits":
        e = np.exp(y - y.max(1, keepdims=True))
        y = e / e.sum(1, keepdims=True)
    d = np.abs(y - p["prob"]).max()
    agree = (y.argmax(1) == p["class"]).mean()
    print("%s: onnx.checker ok; ops %s; max |onnx - ffn| probability difference %.3g over %d rows, classes agree %.4f"
          % (f, " ".join(sorted(set(n.op_type for n in g.node))), d, len(x), agree))
    assert d < 1e-5 and agree == 1.0, (d, agree)
EOF
pass "ONNX from .safetensors, .npz and a checkpoint (--probabilities): checker ok, ffn's probabilities within 1e-5"

# Refusals: a message naming the file and what was expected, exit status 1.
refuse() {  # refuse PATTERN ARGS...
    local pat=$1; shift
    if "$FFN_ONNX" "$@" >/dev/null 2>err.txt; then fail "ffn-onnx $* succeeded"; fi
    grep -q -- "$pat" err.txt || fail "ffn-onnx $*: expected '$pat', got: $(cat err.txt)"
    [[ ! -e bad.onnx && ! -e bad.onnx.tmp ]] || fail "ffn-onnx $* left an output behind"
}
$PY - <<'EOF'
import json, numpy as np
z = dict(np.load("m.npz"))
spec = json.loads(bytes(z["__ffn_spec__"]))
def save(name, tensors, **changes):
    s = dict(spec, **changes)
    np.savez(name, **tensors, __ffn_spec__=np.frombuffer(json.dumps(s).encode(), np.uint8))
w = {k: v for k, v in z.items() if not k.startswith("__")}
np.savez("nospec.npz", **w)
save("swiglu.npz", w, model_spec="swiglu:8,dense:3")
save("wrong.npz", w, input_dim=7)
save("mse.npz", w, loss="mse")
EOF
refuse "nospec.npz: no ffn spec" nospec.npz bad.onnx
refuse "model_spec item 1 'swiglu:8': layer kind 'swiglu' has no PyTorch module" swiglu.npz bad.onnx
refuse "wrong.npz: tensors do not fit model_spec .* (input_dim 7): .*0.weight (12, 5) (expected (12, 7))" wrong.npz bad.onnx
refuse "mse.npz: ffn_spec: loss 'mse' has no probabilities" mse.npz bad.onnx --probabilities
refuse "missing.npz: no such file" missing.npz bad.onnx
refuse "must end in .onnx" m.npz bad.txt
refuse "ffn-eval --export failed" blobs.h5 bad.onnx
"$FFN_ONNX" --help | grep -q "usage: ffn-onnx" || fail "--help"
pass "ffn-onnx refuses a file without spec, swiglu, misfit tensors, mse --probabilities, a missing file"
