"""Why dipjax unrolls its chunk of steps on the CPU: seconds per step of the same jitted step
run (a) one call per step, (b) by a rolled ``lax.scan``, (c) by a fully unrolled scan.

    python experiments/cpu_scan_unroll.py [--preset superres-fast] [--chunks 5 10]

Uses the preset's generator on the packaged image; prints compile time and the median seconds
per step over --repeats timed calls after a warm-up call.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from dipjax import api, build  # noqa: E402
from dipjax.ops.conv import codegen_options  # noqa: E402
from dipjax.presets import get_preset  # noqa: E402
from dipjax.step import make_runner  # noqa: E402


def timed(fn, state, batch, n, repeats):
    out = fn(state, batch)
    jax.block_until_ready(out)
    state, times = out[0], []
    for _ in range(repeats):
        t = time.perf_counter()
        state, m = fn(state, batch)
        jax.block_until_ready(m)
        times.append((time.perf_counter() - t) / n)
    return statistics.median(times), state


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="superres-fast")
    ap.add_argument("--chunks", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    p = get_preset(args.preset)
    prob = api.prepare(p.task, p, api.default_image(), degrade=True)  # all 256x256
    su = build.setup([prob], p, [(0, 0)])
    state, batch, step = su.state, su.batch, su.step
    print(
        f"preset {p.name}, image {prob.out_hw}, backend {jax.default_backend()}, "
        f"jax {jax.__version__}"
    )
    t = time.perf_counter()
    one = jax.jit(step, donate_argnums=0).lower(state, batch).compile(codegen_options())
    c = time.perf_counter() - t
    s, state = timed(one, state, batch, 1, args.repeats * 5)
    print(f"one call per step      compile {c:6.1f} s   {s * 1e3:7.1f} ms/step")
    for n in args.chunks:
        for unroll in (False, True):
            t = time.perf_counter()
            lowered = make_runner(step, n, unroll=unroll).lower(state, batch)
            run = lowered.compile(codegen_options())
            c = time.perf_counter() - t
            s, state = timed(run, state, batch, n, args.repeats)
            kind = "unrolled" if unroll else "rolled  "
            print(f"scan {kind} x{n:<4d}   compile {c:6.1f} s   {s * 1e3:7.1f} ms/step")


if __name__ == "__main__":
    main()
