#!/usr/bin/python3
"""ffn-onnx: an ffn model as an ONNX file, through PyTorch (Debian's python3-torch).

usage: ffn-onnx IN OUT.onnx [--probabilities] [--ffn-eval PATH] [--opset N]

IN is a weights file written by `ffn-eval --export` (.safetensors or .npz, with
the ffn spec as metadata) or a checkpoint (any other name), which is exported
first by running `ffn-eval --checkpoint IN --export` into a temporary file.
The model is rebuilt as the torch nn.Sequential that --export names (README:
"Use a trained model"), its weights loaded, and written with torch.onnx.export:
input "x" [batch, input_dim] float32, output "logits" [batch, outputs], the
batch axis dynamic. --probabilities appends the loss's output activation
(softmax for softmax_ce, sigmoid for bce) and names the output "probabilities".
OUT.onnx is written as OUT.onnx.tmp and renamed. Exit status 0, or 1 with a
message naming the file, the field and what was expected; 2 for bad usage.
"""
import argparse
import math
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

PROG = "ffn-onnx"


class Fail(Exception):
    """An error for the user: printed as 'ffn-onnx: MESSAGE', exit status 1."""


def read_safetensors(path):
    """(tensors as float32 numpy arrays, metadata dict) of a .safetensors file, read by hand."""
    import numpy as np
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise Fail("%s: not a safetensors file (expected an 8-byte header length, got %d bytes)" % (path, len(raw)))
    n = struct.unpack("<Q", raw[:8])[0]
    if n > len(raw) - 8:
        raise Fail("%s: header length %d is past the end of the file (%d bytes)" % (path, n, len(raw)))
    try:
        header = json.loads(raw[8:8 + n])
    except ValueError as e:
        raise Fail("%s: header is not JSON (%s)" % (path, e))
    if not isinstance(header, dict):
        raise Fail("%s: header is not a JSON object" % path)
    meta = header.pop("__metadata__", None) or {}
    data = raw[8 + n:]
    tensors = {}
    for name, t in header.items():
        if not isinstance(t, dict) or t.get("dtype") != "F32":
            raise Fail("%s: tensor '%s': dtype %r (expected F32)" % (path, name, t.get("dtype") if isinstance(t, dict) else t))
        a, b = t["data_offsets"]
        shape = t["shape"]
        count = 1
        for s in shape:
            count *= s
        if not (0 <= a <= b <= len(data)) or b - a != 4 * count:
            raise Fail("%s: tensor '%s': data_offsets [%d, %d] do not hold shape %s in float32 (data is %d bytes)"
                       % (path, name, a, b, shape, len(data)))
        tensors[name] = np.frombuffer(data[a:b], "<f4").reshape(shape).copy()
    return tensors, meta.get("ffn_spec")


def read_npz(path):
    """(tensors, the ffn spec's JSON text or None) of a .npz file."""
    import numpy as np
    try:
        z = np.load(path, allow_pickle=False)
        entries = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile, npy format and OS errors alike
        raise Fail("%s: not a readable npz file (%s)" % (path, e))
    spec = entries.pop("__ffn_spec__", None)
    if spec is not None:
        spec = bytes(spec.astype("u1")).decode("utf-8", "replace")
    tensors = {}
    for name, v in entries.items():
        if v.dtype != np.float32:
            raise Fail("%s: tensor '%s': dtype %s (expected float32, <f4)" % (path, name, v.dtype))
        tensors[name] = v
    return tensors, spec


def parse_spec(path, text):
    """The ffn spec JSON object, checked for the fields this needs."""
    if text is None:
        raise Fail("%s: no ffn spec (expected safetensors __metadata__[\"ffn_spec\"] or npz entry __ffn_spec__, "
                   "as ffn-eval --export writes)" % path)
    try:
        spec = json.loads(text)
    except ValueError as e:
        raise Fail("%s: ffn_spec is not JSON (%s)" % (path, e))
    if not isinstance(spec, dict) or spec.get("format") != "ffn-weights":
        raise Fail("%s: ffn_spec: format %r (expected \"ffn-weights\")"
                   % (path, spec.get("format") if isinstance(spec, dict) else spec))
    if not isinstance(spec.get("model_spec"), str) or not spec["model_spec"]:
        raise Fail("%s: ffn_spec: model_spec %r (expected a model spec such as \"dense:128:relu,dense:10\")"
                   % (path, spec.get("model_spec")))
    d = spec.get("input_dim")
    if not isinstance(d, int) or isinstance(d, bool) or d < 1:
        raise Fail("%s: ffn_spec: input_dim %r (expected a positive integer)" % (path, d))
    return spec


ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax")


def spec_modules(path, model_spec, input_dim):
    """The nn.Sequential modules of an ffn model spec, as ffn-eval --export names them
    (include/ffn/weights.h): dense -> nn.Linear (+ its activation unless identity),
    dropout -> nn.Dropout, layernorm -> nn.LayerNorm(in, eps=1e-5). Other kinds are refused."""
    import torch.nn as nn
    modules, width = [], input_dim
    for i, item in enumerate(model_spec.split(",")):
        where = "%s: ffn_spec: model_spec item %d '%s'" % (path, i + 1, item)
        fields = item.split(":")
        kind, rest = fields[0], fields[1:]
        if kind == "dense":
            try:
                units = int(rest[0])
                assert units >= 1
            except (IndexError, ValueError, AssertionError):
                raise Fail("%s: expected dense:UNITS[:ACTIVATION][:option=value...]" % where)
            act, slope = "identity", 0.01
            for f in rest[1:]:
                key, eq, value = f.partition("=")
                if not eq:
                    if f not in ACTIVATIONS:
                        raise Fail("%s: activation '%s' (expected %s)" % (where, f, ", ".join(ACTIVATIONS)))
                    act = f
                elif key == "slope":
                    slope = float(value)
                elif key in ("lora", "lora_alpha"):
                    raise Fail("%s: LoRA adapters have no nn.Linear form (merge them first: ffn-eval --merge-lora)"
                               % where)
                elif key not in ("init", "init_param"):  # initialisation only: nothing to export
                    raise Fail("%s: option '%s' (expected slope, init or init_param)" % (where, key))
            modules.append(nn.Linear(width, units))
            width = units
            if act != "identity":
                modules.append({"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU,
                                "leaky_relu": lambda: nn.LeakyReLU(slope),
                                "softmax": lambda: nn.Softmax(dim=-1)}[act]())
        elif kind == "dropout":
            try:
                rate = float(rest[0]) if rest else 0.0
            except ValueError:
                raise Fail("%s: expected dropout:RATE" % where)
            modules.append(nn.Dropout(rate))
        elif kind == "layernorm":
            modules.append(nn.LayerNorm(width, eps=1e-5))
        else:
            raise Fail("%s: layer kind '%s' has no PyTorch module (expected dense, dropout or layernorm; "
                       "the ffn and swiglu blocks cannot be exported)" % (where, kind))
    return modules, width


def standardize_module(path, spec):
    """The training data's standardization as the graph's first step, when the ffn spec records
    it (ffn-eval --export of a checkpoint trained on --standardize data): x -> (x - mean) / std,
    computed in float64 and rounded to float32 as ffn does, so the ONNX model takes RAW inputs."""
    if "feature_mean" not in spec and "feature_std" not in spec:
        return None
    import torch
    mean, std, d = spec.get("feature_mean"), spec.get("feature_std"), spec["input_dim"]
    ok = (isinstance(mean, list) and isinstance(std, list) and len(mean) == d and len(std) == d and
          all(isinstance(v, (int, float)) and math.isfinite(v) for v in mean) and
          all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in std))
    if not ok:
        raise Fail("%s: ffn_spec: feature_mean/feature_std are not %d finite numbers each (std > 0)" % (path, d))

    class Standardize(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float64))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float64))

        def forward(self, x):
            return ((x.double() - self.mean) / self.std).float()

    return Standardize()


def find_ffn_eval(given):
    if given:
        return given
    here = os.path.dirname(os.path.realpath(sys.argv[0]))
    for cand in (os.path.join(here, "ffn-eval"), shutil.which("ffn-eval")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise Fail("ffn-eval not found next to %s or on PATH (give it with --ffn-eval PATH)" % here)


def export_checkpoint(ffn_eval, checkpoint, tmpdir):
    out = os.path.join(tmpdir, "model.safetensors")
    try:
        r = subprocess.run([ffn_eval, "--checkpoint", checkpoint, "--export", out], capture_output=True, text=True)
    except OSError as e:
        raise Fail("cannot run %s: %s" % (ffn_eval, e))
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip()
        raise Fail("%s: ffn-eval --export failed (exit %d): %s" % (checkpoint, r.returncode, msg))
    return out


def main(argv):
    ap = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write an ffn model as an ONNX file (through PyTorch's torch.onnx.export).",
        epilog="IN: a .safetensors or .npz file written by `ffn-eval --export`, or a checkpoint (exported first\n"
               "with ffn-eval). ONNX graph: input \"x\" [batch, input_dim] float32, output \"logits\"\n"
               "(\"probabilities\" with --probabilities) [batch, outputs]; batch is a dynamic axis.")
    ap.add_argument("input", metavar="IN", help="weights file (.safetensors, .npz) or ffn checkpoint")
    ap.add_argument("output", metavar="OUT.onnx", help="the ONNX file to write")
    ap.add_argument("--probabilities", action="store_true",
                    help="append the loss's output activation: softmax (softmax_ce) or sigmoid (bce)")
    ap.add_argument("--ffn-eval", metavar="PATH", help="ffn-eval to export a checkpoint with "
                    "[default: the one next to this program, else on PATH]")
    ap.add_argument("--opset", type=int, default=13, help="ONNX opset version [default: 13]")
    args = ap.parse_args(argv)

    if not os.path.isfile(args.input):
        raise Fail("%s: no such file" % args.input)
    if not args.output.endswith(".onnx"):
        raise Fail("%s: the output must end in .onnx" % args.output)
    if os.path.exists(args.output) and os.path.samefile(args.input, args.output):
        raise Fail("%s: the output is the input" % args.output)
    try:
        import numpy  # noqa: F401
        import torch
    except ImportError as e:
        raise Fail("needs PyTorch and NumPy (Debian: apt-get install python3-torch): %s" % e)

    with tempfile.TemporaryDirectory(prefix="ffn-onnx.") as tmp:
        path = args.input
        ext = os.path.splitext(path)[1].lower()
        if ext not in (".safetensors", ".npz"):
            path = export_checkpoint(find_ffn_eval(args.ffn_eval), args.input, tmp)
            ext = ".safetensors"
        tensors, spec_text = read_safetensors(path) if ext == ".safetensors" else read_npz(path)
        src = args.input  # messages name the user's file
        spec = parse_spec(src, spec_text)
        modules, outputs = spec_modules(src, spec["model_spec"], spec["input_dim"])
        net = torch.nn.Sequential(*modules)
        expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in tensors.items()}
        if expected != got:
            missing = [k for k in expected if k not in got]
            extra = [k for k in got if k not in expected]
            wrong = ["%s %s (expected %s)" % (k, got[k], expected[k]) for k in expected
                     if k in got and got[k] != expected[k]]
            raise Fail("%s: tensors do not fit model_spec '%s' (input_dim %d): missing %s; unexpected %s; shapes %s"
                       % (src, spec["model_spec"], spec["input_dim"], missing or "none", extra or "none",
                          wrong or "fine"))
        net.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
        standardized = standardize_module(src, spec)
        if standardized is not None:
            net = torch.nn.Sequential(standardized, net)
        loss = spec.get("loss")
        out_name = "logits"
        if args.probabilities:
            if loss == "softmax_ce":
                net.append(torch.nn.Softmax(dim=-1))
            elif loss == "bce":
                net.append(torch.nn.Sigmoid())
            else:
                raise Fail("%s: ffn_spec: loss %r has no probabilities (expected softmax_ce or bce for "
                           "--probabilities)" % (src, loss))
            out_name = "probabilities"
        net.eval()
        params = sum(v.size for v in tensors.values())
        tmp_out = args.output + ".tmp"
        try:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(net, torch.zeros(1, spec["input_dim"]), tmp_out, opset_version=args.opset,
                                  input_names=["x"], output_names=[out_name], do_constant_folding=True,
                                  dynamic_axes={"x": {0: "batch"}, out_name: {0: "batch"}})
            os.replace(tmp_out, args.output)
        except Exception as e:
            if os.path.exists(tmp_out):
                os.unlink(tmp_out)
            raise Fail("%s: torch.onnx.export failed (opset %d): %s" % (args.output, args.opset, e))
    print("onnx: %s (%s, %d parameters, loss %s) -> %s (opset %d; x [batch, %d] -> %s [batch, %d]%s)"
          % (args.input, spec["model_spec"], params, loss, args.output, args.opset, spec["input_dim"], out_name,
             outputs, "; raw x, standardized in the graph" if "feature_mean" in spec else ""))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Fail as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        sys.exit(1)
