"""Measure every task's CPU ('-fast') preset on the packaged image against its trivial baseline.

    python experiments/fast_presets.py [--tasks denoise superres ...] [--out runs/fast_presets]

Each task degrades the packaged image (256x256; superres: its 128x128 face) (denoise: Gaussian
sigma 25; superres: x4 Lanczos; inpaint: text mask; restore: 50 % random pixels;
flash-no-flash: a synthetic pair), fits with the preset and reports PSNR of the last and
averaged outputs against the clean image, next to the baseline (noisy / bicubic / masked /
no-flash input). Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from dipjax import fit_problem, prepare  # noqa: E402
from dipjax.figures import comparison_figure  # noqa: E402
from dipjax.presets import FAST_DEFAULT, get_preset  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(FAST_DEFAULT))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/fast_presets")
    ap.add_argument("--docs", help="also write each task's comparison figure here as TASK.png")
    args = ap.parse_args(argv)
    rows = []
    for task in args.tasks:
        p = get_preset(FAST_DEFAULT[task])
        t = time.perf_counter()
        res = fit_problem(prepare(task, p, None, seed=args.seed), p, seed=args.seed)
        f = res.final
        rows.append(
            {
                "task": task,
                "preset": p.name,
                "iters": p.iters,
                "baseline": f["psnr_baseline"],
                "last": f["psnr_gt"],
                "average": f["psnr_gt_avg"],
                "compile_s": res.compile_s,
                "step_s": res.step_s,
                "wall_s": time.perf_counter() - t,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        if args.docs:
            pathlib.Path(args.docs).mkdir(parents=True, exist_ok=True)
            (pathlib.Path(args.docs) / f"{task}.png").write_bytes(
                comparison_figure(res.problem, res.output_avg, es=res.early_stop)
            )
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, jax {jax.__version__}, "
        f"backend {jax.default_backend()}, seed {args.seed}\n"
    )
    print(
        "| task | preset | iters | baseline PSNR | last | average | gain (last) | gain (average) "
        "| compile s | step ms | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['task']} | {r['preset']} | {r['iters']} | {r['baseline']:.2f} | "
            f"{r['last']:.2f} | {r['average']:.2f} | {r['last'] - r['baseline']:+.2f} | "
            f"{r['average'] - r['baseline']:+.2f} | "
            f"{r['compile_s']:.1f} | {r['step_s'] * 1e3:.0f} | {r['wall_s']:.0f} |"
        )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fast_presets.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
