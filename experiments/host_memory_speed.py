"""What keeping freed host memory (``dipjax.host_memory``) changes in the step, on both sides.

    python experiments/host_memory_speed.py [--reference-dir DIR] [--sizes 64 128 256]
        [--recipes denoise] [--recipe-sizes 128] [--iters 6] [--warmup 2] [--pairs 2]

Each (recipe, size) is timed by ``bench_reference.py``'s workers, each run in its own process:
dipjax with ``DIPJAX_MALLOC=keep`` (what the command line does) and ``DIPJAX_MALLOC=system``
(glibc's defaults), and, with ``--reference-dir``, the reference with glibc's defaults and with
the same setting through ``GLIBC_TUNABLES`` (no mmapped blocks, no trimming), all alternating
``--pairs`` times so that the machine's drift falls on every variant. Prints s/it (median of the
runs) per variant and the speed-up each side gets from the setting (median of the paired
ratios), and writes ``results.json`` in ``--out``.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import bench_reference  # noqa: E402
from machine import describe, summary_line  # noqa: E402

TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647:glibc.malloc.arena_max=1"


def variants(with_reference: bool) -> dict:
    """{name: (framework, environment changes)}, in the order they run."""
    v = {
        "dipjax keep": ("jax:f32", {"DIPJAX_MALLOC": "keep"}),
        "dipjax system": ("jax:f32", {"DIPJAX_MALLOC": "system"}),
    }
    if with_reference:
        v["reference system"] = ("torch", {})
        v["reference keep"] = ("torch", {"GLIBC_TUNABLES": TUNABLES})
    return v


def main(argv=None):
    ap = bench_reference.parser()
    ap.description = __doc__.splitlines()[0]
    ap.set_defaults(
        out=str(ROOT / "experiments" / "out" / "host_memory_speed"),
        recipes=["denoise"],
        recipe_sizes=[128],
        iters=6,
        warmup=2,
        pairs=2,
    )
    args = ap.parse_args(argv)
    if args.reference_dir and not (pathlib.Path(args.reference_dir) / "models").is_dir():
        sys.exit(f"--reference-dir {args.reference_dir}: no models/ folder there")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    machine = describe(with_torch=bool(args.reference_dir))
    vs = variants(bool(args.reference_dir))
    rows = []
    for recipe, size in bench_reference.jobs(args):
        runs: dict = {name: [] for name in vs}
        for _ in range(args.pairs):
            for name, (fw, env) in vs.items():
                r = bench_reference.worker(fw, recipe, size, args, out, {**base, **env})
                if "error" in r:
                    sys.exit(f"{name}, {recipe} {size}: {r['error']}")
                runs[name].append(r["step_s"])
        row = {"recipe": recipe, "size": size, "step_s_runs": runs}
        for side in ("dipjax", "reference"):
            if f"{side} keep" in runs:
                ratios = [s / k for s, k in zip(runs[f"{side} system"], runs[f"{side} keep"])]
                row[f"{side}_gain"], row[f"{side}_gain_pairs"] = statistics.median(ratios), ratios
        rows.append(row)
        print(json.dumps(row), flush=True)
    names = list(vs)
    lines = [
        f"{summary_line(machine)}; {args.threads} threads; {args.pairs} alternating runs of "
        f"each variant, s/it their median (dipjax: median of 3 rounds of {args.iters} "
        f"iterations after {args.warmup}; reference: median of {args.iters} after "
        f"{args.warmup}); gain: system / keep, median of the paired ratios",
        "",
        "| recipe | size | "
        + " | ".join(f"{n} s/it" for n in names)
        + " | dipjax gain |"
        + (" reference gain |" if args.reference_dir else ""),
        "|---|---|" + "---|" * (len(names) + 1 + bool(args.reference_dir)),
    ]
    for r in rows:
        cells = [f"{statistics.median(r['step_s_runs'][n]):.3f}" for n in names]
        gains = [f"{r[k]:.2f}x" for k in ("dipjax_gain", "reference_gain") if k in r]
        lines.append(f"| {r['recipe']} | {r['size']} | " + " | ".join(cells + gains) + " |")
    table = "\n".join(lines) + "\n"
    (out / "results.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    print("\n" + table)


if __name__ == "__main__":
    main()
