"""Where the PyTorch reference's step spends its time: PyTorch's profiler over its denoising step.

    python experiments/profile_reference.py --reference-dir DIR [--recipe denoise] [--size 128]
        [--steps 3] [--threads N] [--tiny]

The reference's step as ``bench_reference.py`` times it (its generator imported from your
checkout DIR, same input, perturbation, loss and Adam), warmed up, then profiled over --steps
steps: milliseconds per step of each ATen operation's own CPU time, and their sum split into
convolutions (forward and backward) and everything else. Compare with
``profile_step.py`` (dipjax's layers timed alone, and its step).
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import bench_reference as bench  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference-dir", required=True)
    ap.add_argument("--recipe", default="denoise", choices=list(bench.RECIPES))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tiny", action="store_true", help="a tiny generator (smoke tests)")
    args = ap.parse_args(argv)
    if not (pathlib.Path(args.reference_dir) / "models").is_dir():
        sys.exit(f"--reference-dir {args.reference_dir}: not a deep-image-prior checkout")
    import torch
    from torch.profiler import ProfilerActivity, profile

    args.iters, args.warmup, args.conv = 0, 3, "rules"
    step = bench.reference_step(args.recipe, args.size, args)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    own = collections.Counter()
    for row in prof.key_averages():
        if row.key.startswith("aten::"):
            own[row.key] += row.self_cpu_time_total / args.steps / 1e3
    conv = sum(t for k, t in own.items() if "conv" in k)
    print(
        f"reference {args.recipe} step, {args.size} px, torch {torch.__version__}, "
        f"{args.threads} threads, {args.steps} steps profiled\n"
    )
    print("| ATen operation | ms per step |\n|---|---|")
    for k, t in own.most_common(15):
        print(f"| {k} | {t:.1f} |")
    total = sum(own.values())
    print(f"\nconvolutions {conv:.1f} ms, everything else {total - conv:.1f} ms")


if __name__ == "__main__":
    main()
