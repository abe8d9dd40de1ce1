"""The super-resolution operator's cost: the Lanczos downsampler as matrix products against the
two strided depthwise convolutions, forward pass and input gradient together.

    python experiments/downsampler_speed.py [--sizes 128 512] [--factor 4] [--rounds 9]

A (1, size, size, 3) image through ``Downsampler(factor, "lanczos2")`` both ways (the
convolutions are what ``Downsampler`` runs on feature maps of more than ``MATRIX_CHANNELS``
channels), jitted, timed in interleaved rounds (median ms), with the largest difference between
the two results.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from dipjax.ops.downsampler import Downsampler  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args(argv)
    d = Downsampler(args.factor, "lanczos2")
    ways = {"matrix products": d.__call__, "depthwise convolutions": d._by_convolutions}
    print(f"lanczos2 x{args.factor}, forward + input gradient; jax {jax.__version__}\n")
    print("| size | " + " | ".join(f"{w} ms" for w in ways) + " | largest difference |")
    print("|---" * (len(ways) + 2) + "|")
    for n in args.sizes:
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(1, n, n, 3)).astype(np.float32)
        g = rng.normal(size=(1, n // args.factor, n // args.factor, 3)).astype(np.float32)
        fns = {
            w: jax.jit(lambda x, g, f=f: (lambda y, pull: (y, pull(g)))(*jax.vjp(f, x)))
            for w, f in ways.items()
        }
        outs = [jax.block_until_ready(f(x, g)) for f in fns.values()]
        diff = max(
            float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1]))
        )
        times = {w: [] for w in fns}
        for _ in range(args.rounds):
            for w, f in fns.items():
                t = time.perf_counter()
                jax.block_until_ready(f(x, g))
                times[w].append(time.perf_counter() - t)
        cells = " | ".join(f"{statistics.median(ts) * 1e3:.2f}" for ts in times.values())
        print(f"| {n} | {cells} | {diff:.1e} |")


if __name__ == "__main__":
    main()
