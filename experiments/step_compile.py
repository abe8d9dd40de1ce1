"""One step of a preset, compiled and timed in fresh processes, alternating between checkouts of
dipjax (before/after comparisons of a change).

    python experiments/step_compile.py [--preset denoise] [--side 128] [--library eigen]
        [--steps 10] [--rounds 3] [--checkouts ../old .]

Each round runs, for every checkout in turn, a fresh process (``PYTHONPATH`` = the checkout,
no compile cache) that builds one fit of the preset on the packaged image's side x side crop
(``build.setup``: initialisation and input), compiles its one-step chunk with the named
convolution library (``conv.compiler_options``; the layers' variants by the fixed rules) and
runs it 2 steps, then ``--steps`` steps timed one by one. Printed per run and as medians over
the rounds: setup s, compile s, step ms (the median step), the number of fused kernels in the
compiled program; and the paired ratios of the last checkout to the first.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time


def child(preset: str, side: int, library: str, steps: int) -> dict:
    import jax

    from dipjax import api, build
    from dipjax.ops import conv, conv_choice
    from dipjax.presets import get_preset
    from dipjax.step import make_runner

    conv_choice.use_file(None)
    p = get_preset(preset).replace(demo_side=side)
    prob = api.prepare(p.task, p, None)
    t = time.perf_counter()
    su = build.setup([prob], p, [(0, 0)])
    setup_s = time.perf_counter() - t
    t = time.perf_counter()
    lowered = make_runner(su.step, 1).lower(su.state, su.batch)
    run = lowered.compile(conv.compiler_options(library))
    compile_s = time.perf_counter() - t
    state = su.state
    for _ in range(2):
        state, m = run(state, su.batch)
        jax.block_until_ready(m)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, m = run(state, su.batch)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    return {
        "setup_s": setup_s,
        "compile_s": compile_s,
        "step_ms": statistics.median(times) * 1e3,
        "kernels": run.as_text().count(" fusion("),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="denoise")
    ap.add_argument("--side", type=int, default=128)
    ap.add_argument("--library", default="eigen", choices=["ynnpack", "eigen"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--checkouts", nargs="+", default=["."])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.preset, args.side, args.library, args.steps)))
        return
    checkouts = [str(pathlib.Path(c).resolve()) for c in args.checkouts]
    for c in checkouts:
        if not (pathlib.Path(c) / "dipjax" / "step.py").is_file():
            raise SystemExit(f"{c}: not a dipjax checkout")
    print(
        f"{args.preset}, {args.side} px, library {args.library}, {args.steps} steps timed, "
        f"{args.rounds} rounds alternating {checkouts}",
        flush=True,
    )
    runs = [[] for _ in checkouts]  # the same checkout may be named twice (a noise check)
    for _ in range(args.rounds):
        for c, kept in zip(checkouts, runs):
            env = dict(os.environ, PYTHONPATH=c, DIPJAX_COMPILE_CACHE="off")
            cmd = [sys.executable, __file__, "--child", "--preset", args.preset]
            cmd += ["--side", str(args.side), "--library", args.library]
            cmd += ["--steps", str(args.steps)]
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd="/")
            if r.returncode:
                raise SystemExit(f"{c}: the run failed\n{r.stderr[-3000:]}")
            d = json.loads(r.stdout.strip().splitlines()[-1])
            kept.append(d)
            print(c, {k: round(v, 1) for k, v in d.items()}, flush=True)
    print("\n| checkout | setup s | compile s | step ms | kernels |\n|---|---|---|---|---|")
    for c, v in zip(checkouts, runs):
        med = {k: statistics.median(x[k] for x in v) for k in v[0]}
        print(
            f"| {c} | {med['setup_s']:.1f} | {med['compile_s']:.1f} | {med['step_ms']:.1f} "
            f"| {med['kernels']:.0f} |"
        )
    if len(checkouts) > 1:
        first, last = runs[0], runs[-1]
        for k in ("compile_s", "step_ms"):
            ratios = [b[k] / a[k] for a, b in zip(first, last)]
            print(f"{k}: last / first, paired: {', '.join(f'{r:.3f}' for r in ratios)}")


if __name__ == "__main__":
    main()
