#!/usr/bin/python3
"""The PyTorch side of launch/bench.sh: the same models, shapes, data, optimizer
and threads as ffn-bench, so that every ffn figure has its PyTorch counterpart.

  bench_torch.py --model mlp|ffn --data FILE.h5 --batch B --threads T [--seconds S] [--ranks 2]
                 [--precision fp32|bf16] [--ddp-hook none|fp16]
  bench_torch.py ... --dist-rank R --dist-world W --dist-init tcp://HOST:PORT   (one DDP rank)

mlp: 784 -> 128 ReLU -> 10, cross-entropy on int labels
ffn: 1024 -> 4096 GELU (exact erf form) -> 1024, MSE on float targets
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

Rates come from the fastest of five timed repeats (the slowest rank's time in
each), as in ffn-bench. Prints one line: RESULT torch name=... key=value ..."""
import argparse
import os
import sys
import time


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["mlp", "ffn"], required=True)
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
    return p.parse_args()


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


def build(kind, torch):
    nn = torch.nn
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
        return model, nn.CrossEntropyLoss(), 784
    model = nn.Sequential(nn.Linear(1024, 4096), nn.GELU(), nn.Linear(4096, 1024))
    return model, nn.MSELoss(), 1024


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
    model, lossf, _ = build(args.model, torch)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
        if args.ddp_hook == "fp16":
            from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
            model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    local = args.batch // world
    # Up to 16 batches (64 MiB at most) cycled from memory, this rank's own rows, as ffn-bench.
    import h5py
    with h5py.File(args.data, "r") as f:
        rows, features = f["x"].shape
    pool_batches = max(1, min(16, (64 << 20) // (local * features * 4), rows // (local * world)))
    x, y = load_pool(args.data, pool_batches * local, rank * pool_batches * local)
    xs = torch.from_numpy(x)
    ys = torch.from_numpy(y.astype(np.int64) if args.model == "mlp" else y.astype(np.float32))
    batches = [(xs[i * local:(i + 1) * local], ys[i * local:(i + 1) * local]) for i in range(pool_batches)]
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
    params = sum(p.numel() for p in model.parameters())
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
              f"cpu_step_ms={1e3 * cpu:.4f} torch={torch.__version__} openblas_core={blas}", flush=True)
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
