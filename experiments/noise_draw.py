"""The input perturbation's Gaussian noise drawn by ``jax.random.normal`` against
``dipjax.threefry.normal`` (the same numbers, the hash unrolled): alone, and inside a preset's step.

    python experiments/noise_draw.py [--sizes 64 128 256] [--depth 32] [--rounds 20]
        [--step --preset denoise --side 128 --sgld 0 --library eigen --step-rounds 12] [--tiny]

1. Draws alone: for each size S, ``fold_in(key, i)`` then a (1, S, S, depth) float32 draw,
   jitted, each way; timed in interleaved rounds (one call each per round, a new ``i`` each
   call), median and fastest ms, and whether the two gave the same numbers.
2. ``--step``: one fit of the preset (``--sgld S`` > 0: with SGLD's noise, a draw the size of the
   weights each step) on the packaged image's top-centre side x side crop; its
   one-step chunk compiled twice (the layers' variants by the fixed rules, convolutions by
   ``--library``), once with the step's draws by ``jax.random.normal``, once as dipjax draws
   them; timed in interleaved rounds (``step_variants.interleaved``: a warm-up step, then two
   timed), median and fastest ms per step, and the paired ratios.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time
from unittest import mock

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from dipjax import threefry  # noqa: E402
from dipjax.ops import conv, conv_choice  # noqa: E402
from dipjax.step import make_runner  # noqa: E402

DRAWS = {"jax.random.normal": jax.random.normal, "dipjax.threefry.normal": threefry.normal}


def draws_alone(sizes, depth, rounds):
    key = jax.random.key(0)
    print(f"\n| size | draw | median ms | fastest ms |  ({rounds} interleaved rounds)")
    print("|---|---|---|---|")
    for s in sizes:
        shape = (1, s, s, depth)
        fns = {
            n: jax.jit(lambda k, i, d=d: d(jax.random.fold_in(k, i), shape))
            for n, d in DRAWS.items()
        }
        first = [np.asarray(f(key, 1)) for f in fns.values()]
        same = all(np.array_equal(first[0], x) for x in first[1:])
        times = {n: [] for n in fns}
        for r in range(rounds):
            for n, f in fns.items():
                t = time.perf_counter()
                jax.block_until_ready(f(key, r))
                times[n].append(time.perf_counter() - t)
        for n, ts in times.items():
            print(f"| {s} | {n} | {statistics.median(ts) * 1e3:.2f} | {min(ts) * 1e3:.2f} |")
        print(f"| {s} | same numbers | {same} | |")


def in_step(preset, side, library, rounds, tiny, sgld):
    from step_variants import interleaved, one_fit_setup

    conv_choice.use_file(None)
    p, prob, su = one_fit_setup(preset, side, tiny, **({"sgld": sgld} if sgld else {}))
    print(f"\n{p.name}, image {prob.out_hw}, SGLD {p.sgld}, convolutions by {library}")
    runs = {}
    for name, draw in DRAWS.items():
        t = time.perf_counter()
        with mock.patch.object(threefry, "normal", draw):
            lowered = make_runner(su.step, 1).lower(su.state, su.batch)
        runs[name] = lowered.compile(conv.compiler_options(library))
        print(f"{name}: compiled in {time.perf_counter() - t:.1f} s", flush=True)
    times = interleaved(runs, su.state, su.batch, rounds)
    print(f"\n| step's draws | median ms | fastest ms |  ({rounds} interleaved rounds)")
    print("|---|---|---|")
    for n, ts in times.items():
        print(f"| {n} | {statistics.median(ts) * 1e3:.1f} | {min(ts) * 1e3:.1f} |")
    old, new = times.values()
    ratios = [a / b for a, b in zip(old, new)]
    print(
        f"paired speed-up (jax.random.normal / dipjax): median {statistics.median(ratios):.3f}, "
        f"rounds {' '.join(f'{x:.2f}' for x in ratios)}"
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[64, 128, 256])
    ap.add_argument("--depth", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--step", action="store_true")
    ap.add_argument("--preset", default="denoise")
    ap.add_argument("--side", type=int, default=128)
    ap.add_argument("--sgld", type=float, default=0.0)
    ap.add_argument("--library", choices=conv.LIBRARIES, default="eigen")
    ap.add_argument("--step-rounds", type=int, default=12)
    ap.add_argument("--tiny", action="store_true", help="the preset with a tiny generator (smoke)")
    args = ap.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.default_backend()}, {jax.device_count()} device(s)")
    if args.sizes:
        draws_alone(args.sizes, args.depth, args.rounds)
    if args.step:
        in_step(args.preset, args.side, args.library, args.step_rounds, args.tiny, args.sgld)


if __name__ == "__main__":
    main()
