#!/usr/bin/python3
"""The alpha-beta model of ffn's training step across nodes (README, "Scaling out").

A step on each node: compute C (forward, backward, optimizer, at the node's rows),
and the gradient exchange: S bytes in K buckets, each all-reduced by a ring
across the N nodes (inside a node the ranks sum in shared memory first, and
every local rank carries its slice of each bucket, so the node's link is the
resource). One bucket of s bytes on the ring takes

    t(s) = 2 (N - 1) alpha + 2 (N - 1) / N * s / min(eta * B, R)

(alpha: the per-hop latency of one message; B: the link's rate; eta: the share
of it a bucket's transfer gets; R: the most the rank itself can push, where the
protocol's copies run on its core). The buckets start while backward still runs:
the exchange thread moves them while the remaining backward W computes, so the
exposed exchange is

    exposed = max(sum of t over the buckets - W, t(last bucket))

and the efficiency of N nodes against one is C / (C + exposed).

eta and R are fitted to exchanges measured alone on two nodes (the two network
namespaces of launch/bench-netns.sh): eta at the slowest rate, R at the fastest;
alpha is given (bucket-sized transfers cannot resolve it); W is the backward time after the first bucket is ready, measured as the
exchange the step hid (hidden share x exchange alone) where the link was the
limit. Prints the fit, the model against the measurements, and the predicted
efficiency at each N and rate.

  scaling-model.py --bytes S --buckets K --compute-ms C --window-ms W \\
      --measured RATE_GBIT:EXCHANGE_MS [--measured ...] [--alpha-us A] [--nodes 8,64,256] [--rates 10,25]
"""
import argparse
import sys


def ring_ms(nodes, s_bytes, m, gbit, algorithm="ring", capped=True):
    """One all-reduce of s bytes on N nodes: the ring's 2 (N - 1) hops, or
    reduce-scatter by recursive halving + all-gather by doubling (Rabenseifner;
    Open MPI's algorithm 3): 2 log2 N hops; the same bytes, 2 (N - 1) / N s, at
    the link's effective rate eta * B, or the rank's own ceiling R when lower
    (capped: the veth's TCP copies run on the rank's core)."""
    import math
    rate = m["eta"] * gbit * 1e9 / 8 / 1e3  # bytes per ms
    if capped:
        rate = min(rate, m["cap"])
    hops = 2 * (nodes - 1) if algorithm == "ring" else 2 * math.ceil(math.log2(nodes))
    return hops * m["alpha"] + 2 * (nodes - 1) / nodes * s_bytes / rate


def fit(points, s_bytes, buckets, alpha_ms):
    """eta from the slowest link (bound by it), R from the fastest (where the
    measured time exceeds the link's): T = 2 K alpha + S / min(eta B, R) on two nodes."""
    points = sorted(points)
    g, t = points[0]
    eta = s_bytes / ((t - 2 * buckets * alpha_ms) * g * 1e9 / 8 / 1e3)
    g, t = points[-1]
    cap = s_bytes / (t - 2 * buckets * alpha_ms)  # bytes per ms
    cap = min(cap, eta * g * 1e9 / 8 / 1e3) if cap > eta * g * 1e9 / 8 / 1e3 else cap
    return {"alpha": alpha_ms, "eta": min(eta, 1.0), "cap": cap}


def exposed_ms(nodes, s_bytes, buckets, m, gbit, window_ms, algorithm, capped):
    per = ring_ms(nodes, s_bytes / buckets, m, gbit, algorithm, capped)
    return max(buckets * per - window_ms, per)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bytes", type=float, required=True, help="gradient bytes exchanged per step")
    p.add_argument("--buckets", type=int, required=True, help="buckets per step (bytes / --bucket-mb)")
    p.add_argument("--compute-ms", type=float, required=True, help="the step without the exchange")
    p.add_argument("--window-ms", type=float, required=True, help="backward time that can hide the exchange")
    p.add_argument("--measured", action="append", required=True, help="RATE_GBIT:EXCHANGE_MS on two nodes")
    p.add_argument("--alpha-us", type=float, default=30.0,
                   help="latency of one hop of a bucket (default 30 us: TCP on 10/25 GbE; too small to fit "
                        "from bucket-sized transfers)")
    p.add_argument("--nodes", default="2,8,64,256")
    p.add_argument("--rates", default="10,25")
    a = p.parse_args()
    points = []
    for m in a.measured:
        g, t = m.split(":")
        points.append((float(g), float(t)))
    m = fit(points, a.bytes, a.buckets, a.alpha_us / 1e3)
    print(f"fit: eta {m['eta']:.2f} of the link rate; the rank's own ceiling R {m['cap'] * 8e3 / 1e9:.1f} Gbit/s "
          f"(alpha {a.alpha_us:g} us given; {a.bytes / 1e6:.1f} MB in {a.buckets} buckets, compute "
          f"{a.compute_ms:.1f} ms, window {a.window_ms:.1f} ms)")
    for g, t in sorted(points):
        print(f"  2 nodes at {g:g} Gbit/s: measured {t:.1f} ms, model {a.buckets * ring_ms(2, a.bytes / a.buckets, m, g):.1f} ms")
    rates = [float(x) for x in a.rates.split(",")]
    for capped in (True, False):
        print()
        print("efficiency C / (C + exposed), exposed exchange in ms; " +
              ("with the rank's ceiling R (TCP copies on its core, as on the veth)" if capped else
               "at the link's rate (a NIC that moves the bytes itself)") + ":")
        print("| nodes | " + " | ".join(f"{r:g} Gbit/s, ring | {r:g} Gbit/s, halving-doubling" for r in rates) + " |")
        print("| ---: | " + " | ".join("---: | ---:" for _ in rates) + " |")
        for n in (int(x) for x in a.nodes.split(",")):
            cells = []
            for r in rates:
                for algorithm in ("ring", "rabenseifner"):
                    ex = exposed_ms(n, a.bytes, a.buckets, m, r, a.window_ms, algorithm, capped)
                    cells.append(f"{a.compute_ms / (a.compute_ms + ex):.2f} ({ex:.0f} ms)")
            print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
