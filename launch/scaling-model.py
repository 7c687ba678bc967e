#!/usr/bin/python3
"""The alpha-beta model of ffn's training step across nodes (README, "Scaling out").

A step on each node: compute C (forward, backward, optimizer, at the node's rows),
and the gradient exchange: S bytes in K buckets, each all-reduced by a ring
across the N nodes (inside a node the ranks sum in shared memory first, and
every local rank carries its slice of each bucket, so the node's link is the
resource). One bucket of s bytes on the ring takes

    t(s) = 2 (N - 1) alpha + 2 (N - 1) / N * s / (eta * B)

(alpha: the per-hop latency of one message; B: the link's rate; eta: the share
of it a bucket's transfer gets). The buckets start while backward still runs:
the exchange thread moves them while the remaining backward W computes, so the
exposed exchange is

    exposed = max(sum of t over the buckets - W, t(last bucket))

and the efficiency of N nodes against one is C / (C + exposed).

alpha and eta are fitted (least squares) to exchanges measured alone on two
nodes (the two network namespaces of launch/bench-netns.sh) at two or more
rates; W is the backward time after the first bucket is ready, measured as the
exchange the step hid (hidden share x exchange alone) where the link was the
limit. Prints the fit, the model against the measurements, and the predicted
efficiency at each N and rate.

  scaling-model.py --bytes S --buckets K --compute-ms C --window-ms W \\
      --measured RATE_GBIT:EXCHANGE_MS [--measured ...] [--nodes 8,64,256] [--rates 10,25]
"""
import argparse
import sys


def ring_ms(nodes, s_bytes, alpha_ms, eta, gbit, algorithm="ring"):
    """One all-reduce of s bytes: the ring's 2 (N - 1) hops, or reduce-scatter by
    recursive halving + all-gather by doubling (Rabenseifner; Open MPI's
    algorithm 3): 2 log2 N hops, the same bytes."""
    import math
    bw = eta * gbit * 1e9 / 8 / 1e3  # bytes per ms
    hops = 2 * (nodes - 1) if algorithm == "ring" else 2 * math.ceil(math.log2(nodes))
    return hops * alpha_ms + 2 * (nodes - 1) / nodes * s_bytes / bw


def fit(points, s_bytes, buckets):
    """alpha (ms) and eta from two-node exchanges: T = 2 K alpha + S / (eta B)."""
    # Linear in (alpha, 1/eta): T = a * (2K) + x * (S / B); least squares over the points.
    rows = [(2.0 * buckets, s_bytes / (g * 1e9 / 8 / 1e3), t) for g, t in points]
    saa = sum(a * a for a, _, _ in rows)
    sab = sum(a * b for a, b, _ in rows)
    sbb = sum(b * b for _, b, _ in rows)
    sat = sum(a * t for a, _, t in rows)
    sbt = sum(b * t for _, b, t in rows)
    det = saa * sbb - sab * sab
    if abs(det) < 1e-12:
        sys.exit("scaling-model.py: give measurements at two or more different rates")
    alpha = (sat * sbb - sbt * sab) / det
    inv_eta = (saa * sbt - sab * sat) / det
    if alpha < 0:  # latency below resolution: fit the bandwidth alone
        alpha = 0.0
        inv_eta = sbt / sbb
    return alpha, 1.0 / inv_eta


def exposed_ms(nodes, s_bytes, buckets, alpha, eta, gbit, window_ms, algorithm):
    per = ring_ms(nodes, s_bytes / buckets, alpha, eta, gbit, algorithm)
    return max(buckets * per - window_ms, per)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bytes", type=float, required=True, help="gradient bytes exchanged per step")
    p.add_argument("--buckets", type=int, required=True, help="buckets per step (bytes / --bucket-mb)")
    p.add_argument("--compute-ms", type=float, required=True, help="the step without the exchange")
    p.add_argument("--window-ms", type=float, required=True, help="backward time that can hide the exchange")
    p.add_argument("--measured", action="append", required=True, help="RATE_GBIT:EXCHANGE_MS on two nodes")
    p.add_argument("--nodes", default="2,8,64,256")
    p.add_argument("--rates", default="10,25")
    a = p.parse_args()
    points = []
    for m in a.measured:
        g, t = m.split(":")
        points.append((float(g), float(t)))
    alpha, eta = fit(points, a.bytes, a.buckets)
    print(f"fit: alpha {1e3 * alpha:.1f} us per hop, eta {eta:.2f} of the link rate "
          f"({a.bytes / 1e6:.1f} MB in {a.buckets} buckets, compute {a.compute_ms:.1f} ms, window {a.window_ms:.1f} ms)")
    for g, t in points:
        print(f"  2 nodes at {g:g} Gbit/s: measured {t:.1f} ms, model {ring_ms(2, a.bytes, alpha, eta, g) + 2 * (a.buckets - 1) * alpha:.1f} ms")
    print()
    rates = [float(x) for x in a.rates.split(",")]
    print("efficiency C / (C + exposed), with the exposed exchange in ms, per algorithm of the buckets' all-reduce:")
    print("| nodes | " + " | ".join(f"{r:g} Gbit/s, ring | {r:g} Gbit/s, halving-doubling" for r in rates) + " |")
    print("| ---: | " + " | ".join("---: | ---:" for _ in rates) + " |")
    for n in (int(x) for x in a.nodes.split(",")):
        cells = []
        for r in rates:
            for algorithm in ("ring", "rabenseifner"):
                ex = exposed_ms(n, a.bytes, a.buckets, alpha, eta, r, a.window_ms, algorithm)
                cells.append(f"{a.compute_ms / (a.compute_ms + ex):.2f} ({ex:.0f} ms)")
        print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
