"""What early stopping costs per iteration: the same command-line run with and without
``--early-stop``, alternating, in fresh processes.

    python experiments/early_stop_cost.py [--preset denoise-fast] [--iters 40] [--rounds 2]
        [--window 100] [--checkouts DIR ...]

Each run is ``python -m dipjax.fit --preset P --iters N [--early-stop --es-window W]`` on the
packaged image (256x256), the figure its summary.json ``step_s`` (median seconds per iteration
after compilation). ``--checkouts``: source trees to run it from (each run's working folder, so
that ``python -m`` imports that tree's dipjax), alternating with the others; default this one.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from machine import describe, summary_line  # noqa: E402


def step_ms(tree: pathlib.Path, preset: str, iters: int, window: int, early: bool) -> float:
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-m", "dipjax.fit", "--preset", preset, "--iters", str(iters)]
        argv += ["--out", out, "--overwrite", "--quiet"]
        if early:
            argv += ["--early-stop", "--es-window", str(window)]
        r = subprocess.run(argv, cwd=tree, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"error: in {tree}: {(r.stderr.strip().splitlines() or ['failed'])[-1]}")
        return 1e3 * json.loads((pathlib.Path(out) / "summary.json").read_text())["step_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="denoise-fast")
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--checkouts", nargs="+", type=pathlib.Path, default=[ROOT])
    args = ap.parse_args()
    if args.rounds < 1 or args.iters < 1:
        ap.error("--rounds and --iters must be at least 1")
    for tree in args.checkouts:
        if not (tree / "dipjax" / "__init__.py").is_file():
            ap.error(f"--checkouts {tree}: not a dipjax checkout (no dipjax/__init__.py)")
    print(summary_line(describe(with_torch=False)))
    print(
        f"python -m dipjax.fit --preset {args.preset} --iters {args.iters} on the packaged "
        f"image, with and without --early-stop --es-window {args.window}, alternating, "
        f"{args.rounds} rounds; step_s from summary.json (median ms per iteration)"
    )
    times = {}
    for r in range(args.rounds):
        for tree in args.checkouts:
            for early in (False, True):
                ms = step_ms(tree.resolve(), args.preset, args.iters, args.window, early)
                times.setdefault((str(tree), early), []).append(ms)
                print(f"round {r + 1} {tree} {'early stop' if early else 'off'}: {ms:.1f} ms")
    print("\n| checkout | off ms | early stop ms | ratio |\n|---|---|---|---|")
    for tree in args.checkouts:
        off, on = (statistics.median(times[(str(tree), e)]) for e in (False, True))
        print(f"| {tree} | {off:.1f} | {on:.1f} | {on / off:.2f}x |")


if __name__ == "__main__":
    main()
