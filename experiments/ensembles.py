"""How much does the mean of K seeds gain over one seed? Colour denoising at sigma 25.

    python experiments/ensembles.py --data-dir ../shared/data [--preset denoise-fast]
        [--images F16 baboon peppers] [--size 128] [--iters 800] [--k 4] [--strategy auto]

Each image of the denoising set (the set's own sigma-25 noisy image, centre-cropped to --size)
is fitted with seeds 0..K-1 through ``dipjax.run`` (all images and seeds in one call).
Reports, per image, the seeds' mean PSNR (one seed's expected result), the PSNR of the mean of
the first k seeds' outputs for k = 2, 4, ..., K, and the same for the seeds' moving averages.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from dipjax import run, tasks  # noqa: E402
from dipjax.io import centre_crop as centre  # noqa: E402
from dipjax.io import load_image
from dipjax.metrics import psnr_np  # noqa: E402
from dipjax.plan import STRATEGIES  # noqa: E402
from dipjax.presets import get_preset  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--preset", default="denoise-fast")
    ap.add_argument("--images", nargs="+", default=["F16", "baboon", "peppers"])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iters", type=int, default=800)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--strategy", default="auto", choices=STRATEGIES)
    ap.add_argument(
        "--docs",
        help="write DIR/ensemble.png: the first image's noisy input, one "
        "seed, the mean of K and the per-pixel std map",
    )
    args = ap.parse_args(argv)
    data = pathlib.Path(args.data_dir) / "denoise9"
    p = get_preset(args.preset).replace(iters=args.iters)
    problems = []
    for name in args.images:
        clean = centre(load_image(data / f"{name}.png"), args.size)
        noisy = centre(load_image(data / "sigma25" / f"{name}.png"), args.size)
        problems.append(tasks.prepare("denoise", p.replace(crop=32), noisy, gt=clean))
    t = time.perf_counter()
    rep = run(problems, p, range(args.k), strategy=args.strategy)
    fits = rep.fits
    wall = time.perf_counter() - t
    ks = [k for k in (2, 4, 8, 16) if k <= args.k]
    rows = []
    for i, name in enumerate(args.images):
        mine = [f for f in fits if f.index == i]
        gt = problems[i].gt
        row = {
            "image": name,
            "noisy": psnr_np(problems[i].target, gt),
            "single": float(np.mean([f.final["psnr_gt"] for f in mine])),
            "single_avg": float(np.mean([f.final["psnr_gt_avg"] for f in mine])),
        }
        for k in ks:
            row[f"mean_of_{k}"] = psnr_np(np.mean([f.output for f in mine[:k]], 0), gt)
            row[f"mean_of_{k}_avg"] = psnr_np(np.mean([f.output_avg for f in mine[:k]], 0), gt)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.docs:
        picture([f for f in fits if f.index == 0], problems[0], args.docs)
    print(
        f"\n{args.preset}, {args.size} px crops, {args.iters} iterations, seeds 0..{args.k - 1},"
        f" strategy {rep.strategy}, {wall:.0f} s wall\n"
    )
    cols = ["single"] + [f"mean_of_{k}" for k in ks]
    print(
        "| image | noisy | "
        + " | ".join(c.replace("_", " ") for c in cols)
        + " | gain of "
        + f"{ks[-1]} (last / average outputs) |"
    )
    print("|---|---|" + "---|" * len(cols) + "---|")
    for r in rows + [
        {"image": "**mean**", **{k: np.mean([x[k] for x in rows]) for k in rows[0] if k != "image"}}
    ]:
        print(
            f"| {r['image']} | {r['noisy']:.2f} | "
            + " | ".join(f"{r[c]:.2f}" for c in cols)
            + f" | {r[cols[-1]] - r['single']:+.2f} / "
            f"{r[cols[-1] + '_avg'] - r['single_avg']:+.2f} |"
        )


def picture(fits, problem, folder):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dipjax.ensemble import uncertainty_map

    outs = np.stack([f.output for f in fits])
    mean, std = outs.mean(0), outs.std(0)
    gt = problem.gt
    panels = [
        (f"noisy {psnr_np(problem.target, gt):.2f} dB", problem.target),
        (f"seed {fits[0].seed} {psnr_np(outs[0], gt):.2f} dB", outs[0]),
        (f"mean of {len(fits)} {psnr_np(mean, gt):.2f} dB", mean),
        ("per-pixel std (scaled)", uncertainty_map(std)[..., 0]),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(np.clip(img, 0, 1), cmap="magma" if img.ndim == 2 else None)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
    fig.savefig(pathlib.Path(folder) / "ensemble.png", dpi=90)


if __name__ == "__main__":
    from dipjax.io import InputError

    try:
        main()
    except InputError as e:  # a missing or wrong --data-dir: one line, not a traceback
        sys.exit(f"error: {e}")
