#!/usr/bin/python3
"""The PyTorch side of launch/bench.sh: the same models, shapes, data, optimizer
and threads as ffn-bench, so that every ffn figure has its PyTorch counterpart.

  bench_torch.py --model mlp|ffn|SPEC --data FILE.h5 --batch B --threads T [--seconds S] [--ranks 2]
                 [--precision fp32|bf16] [--ddp-hook none|fp16] [--shard none|optimizer|fsdp]
  bench_torch.py ... --dist-rank R --dist-world W --dist-init tcp://HOST:PORT   (one DDP rank)

mlp: 784 -> 128 ReLU -> 10, cross-entropy on int labels
ffn: 1024 -> 4096 GELU (exact erf form) -> 1024, MSE on float targets
SPEC: an ffn-train --model of dense layers, e.g. dense:4096:gelu,dense:4096:gelu,dense:1024
(activations relu, gelu, tanh, sigmoid or none; the input is FILE's features), MSE on
float targets, cross-entropy on int labels
Adam (lr 1e-4 as in ffn-bench), one step = zero_grad, forward, loss, backward,
optimizer step and loss.item() (ffn reduces its loss and accuracy every step).
The data: the first rows of FILE (uint8 features times their scale), held in
memory and cycled batch by batch, as ffn-bench step does. --ranks 2 runs
DistributedDataParallel with gloo in two processes (B is the global batch,
B/2 a process), each with T threads. --dist-rank/--dist-world/--dist-init run
one rank of such a job, started by the caller wherever it likes (a network
namespace each: launch/bench-netns.sh), with gloo over TCP. --ddp-hook fp16
registers DDP's fp16_compress_hook (gradients all-reduced in 16 bits): its
bf16_compress_hook cannot run on the CPU in PyTorch 1.13 (it demands CUDA 11+
and NCCL 2.10+, and gloo refuses bf16 tensors: "Invalid scalar type").

--shard (with --ranks 2 or more), the peers of ffn-train --shard: none is DDP;
optimizer is DDP with torch.distributed.optim.ZeroRedundancyOptimizer around
Adam (ZeRO stage 1: each rank steps and keeps 1/N of the optimizer state);
fsdp is FullyShardedDataParallel (FULL_SHARD: parameters, gradients and
optimizer state sharded). PyTorch 1.13's FSDP cannot run on a CPU: it takes
its compute device from torch.cuda.current_device() whatever device_id or
cpu_offload says ("Torch not compiled with CUDA enabled" on a CPU-only build),
and on Python 3.11 torch.distributed.fsdp does not even import (a dataclass
with a mutable default). The fsdp mode tries the import (then again with the
dataclass check relaxed as Python 3.10 had it), then device_id unset,
device_id=cpu and CPUOffload(offload_params=True), and when none runs prints
its RESULT line with status=unavailable and every reason.

Memory: every RESULT line has the peak RSS of each rank (ru_maxrss, MiB; the
largest as peak_rss_mib), the Pss of each at the end (/proc/self/smaps_rollup:
shared pages split among the processes mapping them) and base_rss_mib, the RSS
after torch, the data and the process group were loaded, before the model.

Rates come from the fastest of five timed repeats (the slowest rank's time in
each), as in ffn-bench. Prints one line: RESULT torch name=... key=value ..."""
import argparse
import os
import re
import sys
import time


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="mlp | ffn | an ffn-train SPEC of dense layers")
    p.add_argument("--data", required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--ranks", type=int, default=1)
    p.add_argument("--name", default=None)
    p.add_argument("--dist-rank", type=int, default=None)
    p.add_argument("--dist-world", type=int, default=None)
    p.add_argument("--dist-init", default=None)
    p.add_argument("--ddp-hook", choices=["none", "fp16"], default="none")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: torch.autocast('cpu', dtype=torch.bfloat16) around forward and loss, "
                        "as a user adds it (fp32 master weights, Adam in fp32)")
    p.add_argument("--shard", choices=["none", "optimizer", "fsdp"], default="none",
                   help="with --ranks >= 2: none (DDP), optimizer (DDP + ZeroRedundancyOptimizer), "
                        "fsdp (FullyShardedDataParallel)")
    a = p.parse_args()
    layer = r"dense:[1-9][0-9]*(:(relu|gelu|tanh|sigmoid|none))?"
    if a.model not in ("mlp", "ffn") and not re.fullmatch(f"{layer}(,{layer})*", a.model):
        p.error("--model: mlp, ffn or a SPEC of dense layers, dense:N[:relu|gelu|tanh|sigmoid|none],...")
    return a


def set_threads(n):
    # Before torch loads: its OpenMP pool and OpenBLAS's own pthreads both obey these.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def load_pool(path, rows, start):
    import h5py
    import numpy as np
    with h5py.File(path, "r") as f:
        n = f["x"].shape[0]
        if start + rows > n:
            start = 0
        x = f["x"][start:start + rows]
        if x.dtype == np.uint8:
            scale = float(f["x"].attrs["scale"])
            offset = float(f["x"].attrs.get("offset", 0.0))
            x = x.astype(np.float32) * np.float32(scale) + np.float32(offset)
        y = f["y"][start:start + rows]
    return x.astype(np.float32), y


def build(kind, torch, features=None, int_labels=False):
    nn = torch.nn
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
        return model, nn.CrossEntropyLoss(), 784
    if kind == "ffn":
        model = nn.Sequential(nn.Linear(1024, 4096), nn.GELU(), nn.Linear(4096, 1024))
        return model, nn.MSELoss(), 1024
    # An ffn-train SPEC of dense layers: dense:N[:ACT], the last one's activation implied by the loss.
    acts = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "none": None, "": None}
    layers, width = [], features
    for item in kind.split(","):
        f = item.split(":")
        if f[0] != "dense" or len(f) not in (2, 3) or not f[1].isdigit() or (len(f) == 3 and f[2] not in acts):
            sys.exit(f"bench_torch.py: --model {kind}: '{item}' is not dense:N[:relu|gelu|tanh|sigmoid|none]")
        layers.append(nn.Linear(width, int(f[1])))
        width = int(f[1])
        if len(f) == 3 and acts[f[2]]:
            layers.append(acts[f[2]]())
    return nn.Sequential(*layers), nn.CrossEntropyLoss() if int_labels else nn.MSELoss(), features


class Unavailable(Exception):
    """FSDP cannot run here: the reasons of every setting tried."""


def fsdp_wrap(make, torch):
    """FullyShardedDataParallel around a fresh model from make(), trying the settings in
    turn; returns (module, setting) or raises Unavailable with every reason."""
    tried = []
    try:
        from torch.distributed import fsdp
    except ValueError as e:
        # PyTorch 1.13 on Python 3.11: torch.distributed._shard's TensorProperties is the
        # default of a dataclass field, refused since 3.11 (unhashable default). Relax that
        # check as 3.10 had it (list, dict and set only) for the import, then put it back.
        tried.append(f"import torch.distributed.fsdp: {type(e).__name__}: {e}")
        import dataclasses
        orig = dataclasses._get_field

        def relaxed(cls, name, a_type, *rest):
            try:
                return orig(cls, name, a_type, *rest)
            except ValueError as err:
                d = cls.__dict__.get(name)
                d = d.default if isinstance(d, dataclasses.Field) else d
                if "mutable default" not in str(err) or isinstance(d, (list, dict, set)):
                    raise
                k = type(d)
                k.__hash__ = object.__hash__
                try:
                    return orig(cls, name, a_type, *rest)
                finally:
                    k.__hash__ = None

        dataclasses._get_field = relaxed
        try:
            from torch.distributed import fsdp
        except Exception as e2:
            tried.append(f"import with the 3.10 dataclass check: {type(e2).__name__}: {e2}")
            raise Unavailable("; ".join(tried))
        finally:
            dataclasses._get_field = orig
        tried.append("imported with the 3.10 dataclass check")
    settings = [("device_id unset", {}), ("device_id=cpu", {"device_id": torch.device("cpu")}),
                ("cpu_offload=CPUOffload(offload_params=True)",
                 {"cpu_offload": fsdp.CPUOffload(offload_params=True)})]
    for what, kw in settings:
        try:
            return fsdp.FullyShardedDataParallel(make(), **kw), what
        except Exception as e:
            tried.append(f"FullyShardedDataParallel({what}): {type(e).__name__}: {e}")
    raise Unavailable("; ".join(tried))


def memory_mib():
    """(peak RSS, current RSS, Pss) of this process in MiB."""
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    rss = pss = float("nan")
    for path, key in (("/proc/self/status", "VmRSS:"), ("/proc/self/smaps_rollup", "Pss:")):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        v = float(line.split()[1]) / 1024.0
                        if key == "Pss:":
                            pss = v
                        else:
                            rss = v
                        break
        except OSError:
            pass
    return peak, rss, pss


def run(args, rank, world):
    set_threads(args.threads)
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    if world > 1:
        import datetime
        import torch.distributed as dist
        # A file rendezvous (no port to race for), or the caller's TCP address for ranks
        # it started apart; a stuck peer fails in 2 minutes, never hangs.
        init = args.dist_init or "file://" + args.store
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=120))
    local = args.batch // world
    # Up to 16 batches (64 MiB at most) cycled from memory, this rank's own rows, as ffn-bench.
    import h5py
    with h5py.File(args.data, "r") as f:
        rows, features = f["x"].shape
    pool_batches = max(1, min(16, (64 << 20) // (local * features * 4), rows // (local * world)))
    x, y = load_pool(args.data, pool_batches * local, rank * pool_batches * local)
    int_labels = args.model == "mlp" or (args.model != "ffn" and y.ndim == 1 and y.dtype.kind in "iu")
    xs = torch.from_numpy(x)
    ys = torch.from_numpy(y.astype(np.int64) if int_labels else y.astype(np.float32))
    batches = [(xs[i * local:(i + 1) * local], ys[i * local:(i + 1) * local]) for i in range(pool_batches)]
    base_rss = memory_mib()[1]

    params = [0]

    def make():
        torch.manual_seed(1)
        m = build(args.model, torch, features, int_labels)[0]
        params[0] = sum(p.numel() for p in m.parameters())
        return m

    lossf = torch.nn.CrossEntropyLoss() if int_labels else torch.nn.MSELoss()
    shard = args.shard if world > 1 else "none"
    setting = ""
    if shard == "fsdp":
        try:
            model, setting = fsdp_wrap(make, torch)
        except Unavailable as e:
            if rank == 0:
                import platform
                why = str(e).replace('"', "'").replace("\n", " ")
                print(f"RESULT torch name={args.name or args.model} model={args.model} batch={args.batch} ranks={world} "
                      f"threads={args.threads} shard=fsdp status=unavailable torch={torch.__version__} "
                      f"python={platform.python_version()} cuda={torch.cuda.is_available()} reason=\"{why}\"",
                      flush=True)
            return
    else:
        model = make()
        if world > 1:
            model = torch.nn.parallel.DistributedDataParallel(model)
            if args.ddp_hook == "fp16":
                from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
                model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    if shard == "optimizer":
        from torch.distributed.optim import ZeroRedundancyOptimizer
        opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.Adam, lr=1e-4)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    at = [0]
    bf16 = args.precision == "bf16"

    def step():
        bx, by = batches[at[0] % pool_batches]
        at[0] += 1
        opt.zero_grad(set_to_none=True)
        if bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = lossf(model(bx), by)
        else:
            loss = lossf(model(bx), by)
        loss.backward()
        opt.step()
        return loss.item()

    def slowest(t):
        if world == 1:
            return t
        v = torch.tensor([t], dtype=torch.float64)
        dist.all_reduce(v, op=dist.ReduceOp.MAX)
        return float(v[0])

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    step()
    one = slowest(time.perf_counter() - t0)
    calls = max(3, min(1000000, int(args.seconds / 5 / one))) if one > 0 else 3
    if world > 1:
        c = torch.tensor([calls])
        dist.broadcast(c, 0)
        calls = int(c[0])
    reps, cpu = [], float("inf")
    for _ in range(5):
        if world > 1:
            dist.barrier()
        s, c = time.perf_counter(), time.process_time()
        for _ in range(calls):
            step()
        cpu = min(cpu, (time.process_time() - c) / calls)
        reps.append(slowest((time.perf_counter() - s) / calls))
    reps.sort()
    med, best = reps[2], reps[0]
    params = params[0]
    peak, _, pss = memory_mib()
    mem = [(peak, pss, base_rss)]
    if world > 1:
        v = torch.tensor([peak, pss, base_rss], dtype=torch.float64)
        all_v = [torch.zeros(3, dtype=torch.float64) for _ in range(world)]
        dist.all_gather(all_v, v)
        mem = [tuple(float(t) for t in r) for r in all_v]
    if rank == 0:
        blas = "unknown"
        try:
            import ctypes
            for lib in ("libopenblas.so.0", "libblas.so.3"):
                try:
                    h = ctypes.CDLL(lib)
                    h.openblas_get_corename.restype = ctypes.c_char_p
                    blas = h.openblas_get_corename().decode()
                    break
                except (OSError, AttributeError):
                    continue
        except Exception:
            pass
        print(f"RESULT torch name={args.name or args.model} model={args.model} batch={args.batch} ranks={world} "
              f"threads={args.threads} precision={args.precision} ddp_hook={args.ddp_hook} params={params} step_ms={1e3 * best:.4f} median_step_ms={1e3 * med:.4f} "
              f"samples_per_s={args.batch / best:.1f} gflops={6.0 * params * local / best / 1e9:.3f} "
              f"cpu_step_ms={1e3 * cpu:.4f} shard={shard}{' fsdp_setting=' + setting.replace(' ', '_') if setting else ''} "
              f"peak_rss_mib={max(m[0] for m in mem):.1f} "
              f"rss_mib_ranks={'/'.join(f'{m[0]:.1f}' for m in mem)} pss_mib_ranks={'/'.join(f'{m[1]:.1f}' for m in mem)} "
              f"base_rss_mib={max(m[2] for m in mem):.1f} "
              f"torch={torch.__version__} openblas_core={blas}", flush=True)
    # A DDP child's group is torn down by ddp_child, after a last barrier.


def ddp_child(rank, args, world):
    run(args, rank, world)
    # Tear gloo down while every rank is here, then leave without the
    # interpreter's own teardown: PyTorch 1.13's ProcessGroupGloo destructor can
    # deadlock at exit (its worker thread waits for the GIL the exiting thread
    # holds), which hung a run after its result was printed.
    import torch.distributed as dist
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main():
    args = parse()
    if args.dist_rank is not None:
        if args.dist_world is None or args.dist_init is None or args.batch % args.dist_world:
            sys.exit("bench_torch.py: --dist-rank needs --dist-world W (dividing --batch) and --dist-init URL")
        ddp_child(args.dist_rank, args, args.dist_world)
        return
    if args.batch % args.ranks:
        sys.exit("bench_torch.py: --batch must be a multiple of --ranks")
    if args.ranks == 1:
        run(args, 0, 1)
        return
    set_threads(args.threads)
    import tempfile
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory(prefix="ffn-bench-ddp.") as d:
        args.store = os.path.join(d, "store")
        mp.spawn(ddp_child, args=(args, args.ranks), nprocs=args.ranks, join=True)


if __name__ == "__main__":
    main()
