"""One 3x3 convolution layer split into its three products, per variant, against PyTorch's.

    python experiments/conv_parts.py [--size 128] [--channels 132] [--out-channels 128]
        [--variants xla crop strips-2048 dot] [--rounds 7]

The layer is the denoising net's largest: a 3x3, stride-1, unpadded convolution (what follows
each reflection pad) of a (1, size + 2, size + 2, channels) map. For every variant of
``dipjax.ops.conv.conv_variant`` its forward pass, input gradient and weight gradient are jitted
apart (each gradient without the other) and timed; with PyTorch installed, ``conv2d`` on the same
arrays (NCHW), forward alone and forward plus backward. All calls are timed in interleaved
rounds (median ms), so that the machine's slow moments fall on all of them.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from dipjax.ops import conv  # noqa: E402


def jax_calls(x, w, g, variants) -> dict:
    """{name: call} for each variant's forward pass, input gradient and weight gradient."""
    calls = {}
    for v in variants:
        f = lambda a, b, v=v: conv.conv_variant(a, b, 1, 0, v)
        parts = {
            "forward": (jax.jit(f), (x, w)),
            "input gradient": (
                jax.jit(lambda a, b, g, f=f: jax.vjp(lambda a_: f(a_, b), a)[1](g)[0]),
                (x, w, g),
            ),
            "weight gradient": (
                jax.jit(lambda a, b, g, f=f: jax.vjp(lambda b_: f(a, b_), b)[1](g)[0]),
                (x, w, g),
            ),
        }
        for part, (fn, args) in parts.items():
            calls[f"{v} {part}"] = lambda fn=fn, args=args: jax.block_until_ready(fn(*args))
    return calls


def torch_calls(x, w, g) -> dict:
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(os.cpu_count())
    tx = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    tw = torch.tensor(w.transpose(3, 2, 0, 1).copy(), requires_grad=True)
    tg = torch.tensor(g.transpose(0, 3, 1, 2).copy())

    def forward():
        with torch.no_grad():
            torch.nn.functional.conv2d(tx, tw)

    def both():
        tx.grad = tw.grad = None
        torch.nn.functional.conv2d(tx, tw).backward(tg)

    return {f"PyTorch {torch.__version__} forward": forward, "PyTorch forward + backward": both}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--channels", type=int, default=132)
    ap.add_argument("--out-channels", type=int, default=128)
    ap.add_argument("--variants", nargs="+", default=["xla", "crop", "strips-2048", "dot"])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    n, c, o = args.size, args.channels, args.out_channels
    x = rng.normal(size=(1, n + 2, n + 2, c)).astype(np.float32)
    w = (rng.normal(size=(3, 3, c, o)) / np.sqrt(9 * c)).astype(np.float32)
    g = rng.normal(size=(1, n, n, o)).astype(np.float32)
    calls = {**jax_calls(x, w, g, args.variants), **torch_calls(x, w, g)}
    for call in calls.values():
        call()
    times = {k: [] for k in calls}
    for _ in range(args.rounds):
        for k, call in calls.items():
            t = time.perf_counter()
            call()
            times[k].append(time.perf_counter() - t)
    gflop = 2 * n * n * 9 * c * o / 1e9
    print(
        f"3x3 convolution, (1, {n + 2}, {n + 2}, {c}) -> (1, {n}, {n}, {o}), unpadded; "
        f"jax {jax.__version__}, {os.cpu_count()} CPUs; median of {args.rounds} interleaved "
        f"rounds\n\n| product | ms | GFLOP/s |\n|---|---|---|"
    )
    for k, ts in times.items():
        ms = statistics.median(ts) * 1e3
        flops = 3 * gflop if k.endswith("backward") else gflop
        print(f"| {k} | {ms:.1f} | {flops / ms * 1e3:.0f} |")


if __name__ == "__main__":
    main()
