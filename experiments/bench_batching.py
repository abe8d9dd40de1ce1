"""Throughput of K vmapped fits against K sequential single fits, on this machine.

    python experiments/bench_batching.py [--preset denoise] [--sizes 64 128] [--ks 1 2 4 8]
        [--chunk 1] [--repeats 3] [--convs fast dot batched] [--out experiments/out/bench_batching]

For each image size: one single fit's step (the product's compiled chunk of --chunk steps) is
timed, then one vmapped step over K fits (each its own weights, input and BatchNorm
statistics). Sequential fits cost K single fits, so their throughput is 1 / (single step time)
fit-iterations per second at every K; the vmapped throughput is K / (vmapped step time). Times
are medians of --repeats calls after one warm-up call; compile time is reported apart. The
single fit uses the product's default convolutions; the vmapped step is timed with each
convolution implementation of --convs (``dipjax.ops.conv``). Writes results.json, table.md and
throughput.png under --out and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from dipjax import api, build  # noqa: E402
from dipjax.ops.conv import codegen_options, conv_impl  # noqa: E402
from dipjax.presets import get_preset  # noqa: E402
from dipjax.step import make_runner  # noqa: E402


def timed_runner(step, state, batch, n, axes, repeats, conv="auto", options=None):
    """Compile ``n`` steps traced with convolutions ``conv`` (XLA compiler ``options``, a dict;
    by default the product's, ``dipjax.ops.conv.codegen_options()``), time them; returns
    (compile seconds, median seconds per step, the compiled runner, the state after the calls)."""

    def traced(s, b):
        with conv_impl(conv):
            return step(s, b)

    t = time.perf_counter()
    if options is None:
        options = codegen_options()
    run = make_runner(traced, n, axes).lower(state, batch).compile(options)
    compile_s = time.perf_counter() - t
    state, m = run(state, batch)  # warm-up
    jax.block_until_ready(m)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        state, m = run(state, batch)
        jax.block_until_ready(m)
        times.append((time.perf_counter() - t) / n)
    return compile_s, statistics.median(times), run, state


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="denoise", help="generator and step settings")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--chunk", type=int, default=1, help="steps per compiled call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--convs",
        nargs="+",
        default=["fast", "dot", "batched"],
        help="convolution implementations to time the vmapped step with",
    )
    ap.add_argument("--tiny", action="store_true", help="the preset with a tiny generator (smoke)")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "out" / "bench_batching"))
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    preset = get_preset(args.preset)
    if args.tiny:
        from bench_reference import with_tiny_net

        preset = with_tiny_net(preset)
    dev = jax.devices()[0]
    machine = {
        "device": dev.device_kind,
        "platform": dev.platform,
        "cpus": os.cpu_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
    }
    print(json.dumps(machine), flush=True)
    rows = []
    for size in args.sizes:
        image = api.default_image()[:size, :size]
        problem = api.prepare("denoise", preset.replace(crop=0), image, degrade=True)
        one = build.setup([problem], preset, [(0, 0)])
        c1, t1, _, _ = timed_runner(one.step, one.state, one.batch, args.chunk, None, args.repeats)
        for k in args.ks:
            su = build.setup(
                [problem], preset, [(0, s) for s in range(k)], stack=True, devices=jax.devices()[:1]
            )
            for conv in args.convs:
                fresh = jax.tree_util.tree_map(jnp.copy, su.state)  # each run donates its state
                ck, tk, _, _ = timed_runner(
                    su.step, fresh, su.batch, args.chunk, su.axes, args.repeats, conv
                )
                row = {
                    "size": size,
                    "k": k,
                    "conv": conv,
                    "single_step_s": t1,
                    "single_compile_s": c1,
                    "vmap_step_s": tk,
                    "vmap_compile_s": ck,
                    "sequential_fit_it_per_s": 1.0 / t1,
                    "vmap_fit_it_per_s": k / tk,
                    "speedup": (k / tk) * t1,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    head = (
        f"{args.preset}{' with a tiny net' if args.tiny else ''} generator, chunk {args.chunk}, "
        f"median of {args.repeats} calls after "
        f"a warm-up; {machine['device']} ({machine['platform']}, {machine['cpus']} CPUs), "
        f"jax {machine['jax']}"
    )
    lines = [
        head,
        "",
        "| size | K | vmapped convs | sequential fit-it/s | vmapped fit-it/s "
        "| vmapped / sequential | single step ms | vmapped step ms "
        "| compile s (single / vmapped) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['k']} | {r['conv']} | "
            f"{r['sequential_fit_it_per_s']:.2f} | "
            f"{r['vmap_fit_it_per_s']:.2f} | {r['speedup']:.2f}x | "
            f"{r['single_step_s'] * 1e3:.1f} | {r['vmap_step_s'] * 1e3:.1f} | "
            f"{r['single_compile_s']:.1f} / {r['vmap_compile_s']:.1f} |"
        )
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    (out / "results.json").write_text(
        json.dumps({"machine": machine, "settings": vars(args), "rows": rows}, indent=1)
    )
    plot(rows, out / "throughput.png")
    print("\n" + table)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, size in enumerate(sorted({r["size"] for r in rows})):
        for j, conv in enumerate(sorted({r["conv"] for r in rows})):
            sel = [r for r in rows if r["size"] == size and r["conv"] == conv]
            ax.plot(
                [r["k"] for r in sel],
                [r["vmap_fit_it_per_s"] for r in sel],
                "os^v"[j % 4] + "-",
                color=f"C{i}",
                label=f"{size} px vmapped, {conv}",
            )
        sel = [r for r in rows if r["size"] == size and r["conv"] == rows[0]["conv"]]
        ax.plot(
            [r["k"] for r in sel],
            [r["sequential_fit_it_per_s"] for r in sel],
            "--",
            color=f"C{i}",
            label=f"{size} px sequential",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("fits K")
    ax.set_ylabel("fit-iterations per second")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
