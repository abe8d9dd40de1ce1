"""Where a fit step's time goes: per convolution layer, and per kind of operation in the step.

    python experiments/profile_step.py [--preset denoise] [--size 128] [--fits 1]
        [--impls xla fast dot] [--repeats 5] [--no-layers] [--out experiments/out/profile_step]

1. Layers: every convolution of the preset's generator at this image size (shapes recorded while
   the net is traced), forward plus both gradients, timed alone under each implementation of
   ``dipjax.ops.conv`` (median of --repeats jitted calls), with GFLOP/s.
2. Step: the whole jitted step (``--fits`` K > 1: vmapped over K fits) under each implementation,
   wall time per step, then one traced run with ``jax.profiler``: the time of every XLA
   operation, grouped as convolution, dot (matrix product), copy/transpose,
   concatenate/pad/slice, reduction and other elementwise, from the optimized HLO. On a CPU the
   profiler records operations per worker thread; a convolution split over both threads is
   recorded once, so the groups' sum can exceed or fall short of the wall time.
Writes profile.json and prints tables.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import math
import pathlib
import re
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from dipjax import build, tasks  # noqa: E402
from dipjax.nets import layers  # noqa: E402
from dipjax.ops import conv  # noqa: E402
from dipjax.presets import get_preset  # noqa: E402

sys.path.insert(0, str(ROOT / "experiments"))
from bench_batching import timed_runner  # noqa: E402


def timed(fn, *args, repeats=5):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def conv_layers(net, z):
    """(input shape, k, stride, padding, out channels) of every Conv2d call."""
    calls = []

    def record(f, args, kwargs, ctx):
        if isinstance(ctx.module, layers.Conv2d) and ctx.method_name == "__call__":
            m = ctx.module
            calls.append((tuple(args[0].shape), m.kernel_size, m.stride, m.padding, m.features))
        return f(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda: net.init(jax.random.key(0), z))
    return calls


def layer_table(calls, impls, repeats):
    rows = []
    for shape, k, s, p, o in calls:
        x = jnp.ones(shape, jnp.float32)
        w = jnp.full((k, k, shape[-1], o), 0.01, jnp.float32)
        ho, wo = (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1
        flops = 3 * 2 * shape[0] * ho * wo * k * k * shape[-1] * o
        row = {"input": shape, "k": k, "stride": s, "padding": p, "out": o, "gflop": flops / 1e9}
        for impl in impls:

            def loss(x, w, impl=impl):
                with conv.conv_impl(impl):
                    y = conv.conv2d(x, w, s, p)
                return jnp.sum(y * y)

            row[impl] = timed(jax.jit(jax.grad(loss, argnums=(0, 1))), x, w, repeats=repeats)
        rows.append(row)
    return rows


def hlo_kinds(hlo: str) -> dict:
    """instruction name -> group, from the optimized HLO text."""
    bodies = dict(re.findall(r"\n%?([\w.\-]+) [^\n]*\{\n(.*?)\n\}", hlo, re.S))
    kinds = {}
    for name, line in re.findall(r"\n\s+%?([\w.\-]+) = ([^\n]*)", hlo):
        called = re.search(r"calls=%?([\w.\-]+)", line)
        text = bodies.get(called.group(1), "") if called else ""
        ops = set(re.findall(r"= [\w\[\]{},:]+ (\w[\w-]*)\(", text + "\n = x " + line))
        if "convolution" in ops:
            kind = "convolution"
        elif "dot" in ops:
            kind = "dot"
        elif ops & {"copy", "transpose"} and not ops - {
            "copy",
            "transpose",
            "bitcast",
            "parameter",
            "fusion",
        }:
            kind = "copy/transpose"
        elif ops & {"concatenate", "pad", "slice", "dynamic-slice", "dynamic-update-slice"}:
            kind = "concatenate/pad/slice"
        elif ops & {"reduce", "reduce-window"}:
            kind = "reduction"
        else:
            kind = "elementwise/other"
        kinds[name] = kind
    return kinds


def profile_groups(run, state, batch, runs=3):
    """Milliseconds per step of each operation group, from one jax.profiler trace."""
    from jax.profiler import ProfileData

    kinds = hlo_kinds(run.as_text())
    with tempfile.TemporaryDirectory() as d:
        jax.profiler.start_trace(d)
        for _ in range(runs):
            state, m = run(state, batch)
            jax.block_until_ready(m)
        jax.profiler.stop_trace()
        (path,) = glob.glob(f"{d}/**/*.xplane.pb", recursive=True)
        data = ProfileData.from_file(path)
    groups = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            for ev in line.events:
                if ev.name in kinds:
                    groups[kinds[ev.name]] += ev.duration_ns / 1e6 / runs
    return dict(groups), state


def step_rows(preset, size, fits, impls, repeats):
    image = np.random.default_rng(0).random((size, size, 3)).astype(np.float32)
    problem = tasks.Problem("denoise", tasks.Measure(), image, (size, size))
    p = preset.replace(crop=0)
    su = build.setup(
        [problem], p, [(0, s) for s in range(fits)], stack=fits > 1, devices=jax.devices()[:1]
    )
    net, step, batch, axes = su.net, su.step, su.batch, su.axes
    rows = []
    for impl in impls:
        state = jax.tree_util.tree_map(jnp.copy, su.state)  # each run donates its state
        _, step_s, run, state = timed_runner(step, state, batch, 1, axes, repeats, impl)
        cost = run.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        groups, state = profile_groups(run, state, batch)
        rows.append(
            {
                "impl": impl,
                "step_s": step_s,
                "fits": fits,
                "gflop": cost.get("flops", math.nan) / 1e9,
                "groups_ms": groups,
            }
        )
    return rows, conv_layers(net, batch["z"] if fits == 1 else batch["z"][0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="denoise")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--fits", type=int, default=1, help="K vmapped fits")
    ap.add_argument("--impls", nargs="+", default=["xla", "fast", "dot"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-layers", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "out" / "profile_step"))
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    preset = get_preset(args.preset)
    print(
        f"{preset.name} generator, {args.size} px, {args.fits} fit(s); "
        f"{jax.devices()[0].device_kind}, jax {jax.__version__}",
        flush=True,
    )
    steps, calls = step_rows(preset, args.size, args.fits, args.impls, args.repeats)
    kinds = sorted({k for r in steps for k in r["groups_ms"]})
    print("\n| convolutions | step ms | GFLOP/s | " + " | ".join(f"{k} ms" for k in kinds) + " |")
    print("|---" * (3 + len(kinds)) + "|")
    for r in steps:
        print(
            f"| {r['impl']} | {r['step_s'] * 1e3:.1f} | {r['gflop'] / r['step_s']:.0f} | "
            + " | ".join(f"{r['groups_ms'].get(k, 0):.1f}" for k in kinds)
            + " |"
        )
    layers_rows = [] if args.no_layers else layer_table(calls, args.impls, args.repeats)
    if layers_rows:
        print(
            "\n| input | k | stride | out | "
            + " | ".join(f"{i} ms (GFLOP/s)" for i in args.impls)
            + " |"
        )
        print("|---" * (4 + len(args.impls)) + "|")
        for r in layers_rows:
            print(
                f"| {'x'.join(map(str, r['input'][1:]))} | {r['k']} | {r['stride']} | "
                f"{r['out']} | "
                + " | ".join(f"{r[i] * 1e3:.2f} ({r['gflop'] / r[i]:.0f})" for i in args.impls)
                + " |"
            )
        totals = {i: sum(r[i] for r in layers_rows) * 1e3 for i in args.impls}
        print("sum over layers, ms: " + ", ".join(f"{i} {v:.1f}" for i, v in totals.items()))
    (out / "profile.json").write_text(
        json.dumps(
            {"settings": vars(args), "steps": steps, "layers": layers_rows}, indent=1, default=str
        )
    )


if __name__ == "__main__":
    main()
