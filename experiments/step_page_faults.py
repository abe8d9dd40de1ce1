"""Page faults and system time of a fit step, under each way of keeping freed host memory.

    python experiments/step_page_faults.py [--preset denoise] [--side 256] [--steps 8]
        [--pairs 2] [--settings keep system ...] [--warmup 6] [--by-step]

Each setting runs the preset's one-step chunk (on the packaged image's top-centre side x side
crop) in its own process, ``--pairs`` times, alternating, so that the machine's drift falls on
all of them:
- ``keep``: what the command line does (``dipjax.host_memory.keep_freed_memory``: no mmapped
  blocks, no trimming, every thread on the main heap);
- ``keep, thread arenas``: the same without the last part (what it did before 2026-12-03:
  ``DIPJAX_MALLOC=system`` with ``GLIBC_TUNABLES`` no mmapped blocks, no trimming), so that a
  thread of XLA's pool allocates from an arena of its own;
- ``system``: glibc's defaults (``DIPJAX_MALLOC=system``).
Per setting, after --warmup steps: milliseconds per step, minor page faults per step, user and
system CPU seconds per step (medians over --steps steps and then over the runs) and the
process's peak resident memory. ``--by-step`` also prints each run's faults step by step: how
long the heap takes to settle (a step that grows it faults the new pages in), which is how many
warm-up steps a benchmark of the step needs.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Untimed steps by default; the tables in docs/speed.md were taken so, though the heap can go
# on growing for 20 steps (--by-step shows when)
WARMUP = 6
TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647"
SETTINGS = {
    "keep": {"DIPJAX_MALLOC": "keep"},
    "keep, thread arenas": {"DIPJAX_MALLOC": "system", "GLIBC_TUNABLES": TUNABLES},
    "system": {"DIPJAX_MALLOC": "system"},
}


def worker(preset: str, side: int, steps: int, tiny: bool, warmup: int = WARMUP) -> dict:
    """Time ``steps`` steps in this process (the memory setting is the environment's)."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "experiments"))
    from dipjax import host_memory

    host_memory.keep_freed_memory()  # a no-op unless DIPJAX_MALLOC=keep
    import jax
    from step_variants import one_fit_setup

    from dipjax.ops import conv_choice
    from dipjax.step import make_runner

    _, _, su = one_fit_setup(preset, side, tiny)
    lowered, options = conv_choice.traced(
        lambda: make_runner(su.step, 1, None).lower(su.state, su.batch)
    )
    run = lowered.compile(options)
    state = su.state
    for _ in range(warmup):
        state, m = run(state, su.batch)
        jax.block_until_ready(m)
    rows = []
    for _ in range(steps):
        r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        state, m = run(state, su.batch)
        jax.block_until_ready(m)
        wall, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
        faults = r1.ru_minflt - r0.ru_minflt
        rows.append((wall, faults, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime))
    med = [statistics.median(col) for col in zip(*rows)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "ms": med[0] * 1e3,
        "faults": med[1],
        "user_s": med[2],
        "sys_s": med[3],
        "rss_mb": peak,
        "faults_by_step": [r[1] for r in rows],
        "warmup": warmup,
    }


def _count(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="denoise")
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    ap.add_argument("--warmup", type=_count, default=WARMUP, help="untimed steps first")
    ap.add_argument("--by-step", action="store_true", help="also each run's faults per step")
    ap.add_argument("--tiny", action="store_true", help="the preset with a tiny generator (smoke)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.preset, args.side, args.steps, args.tiny, args.warmup)))
        return
    runs = {name: [] for name in args.settings}
    for _ in range(args.pairs):
        for name, env in ((n, SETTINGS[n]) for n in args.settings):
            base = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
            cmd = [sys.executable, __file__, "--worker", "--preset", args.preset]
            cmd += ["--side", str(args.side), "--steps", str(args.steps)]
            cmd += ["--warmup", str(args.warmup)]
            cmd += ["--tiny"] if args.tiny else []
            r = subprocess.run(cmd, capture_output=True, text=True, env={**base, **env})
            if r.returncode:
                sys.exit(f"{name}: the worker failed:\n{r.stderr[-2000:]}")
            runs[name].append(json.loads(r.stdout.strip().splitlines()[-1]))
    import jax

    print(
        f"{args.preset}, {args.side} px, jax {jax.__version__} on {jax.default_backend()}, "
        f"{os.cpu_count()} CPUs; medians over {args.steps} steps after {args.warmup}, then over "
        f"{args.pairs} alternating runs per setting\n"
    )
    print(
        "| setting | ms per step | minor page faults per step | user s | system s | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|")
    for name, rs in runs.items():
        m = {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "faults_by_step"}
        print(
            f"| {name} | {m['ms']:.1f} | {m['faults']:.0f} | {m['user_s']:.2f} | "
            f"{m['sys_s']:.2f} | {m['rss_mb']:.0f} |"
        )
    if args.by_step:
        (warmup,) = {r["warmup"] for rs in runs.values() for r in rs}  # as the workers ran
        print(f"\nminor page faults of steps {warmup + 1}-{warmup + args.steps}, per run:")
        for name, rs in runs.items():
            for i, r in enumerate(rs, 1):
                print(f"{name}, run {i}: " + " ".join(str(f) for f in r["faults_by_step"]))


if __name__ == "__main__":
    main()
