"""Does ES-WMV stop near the best iteration? Denoising without the clean image.

    python experiments/early_stopping.py --data-dir ../shared/data [--preset denoise-fast]
        [--images F16 baboon ...] [--size 128] [--iters 3000] [--window 100] [--patience 500]
        [--noises gauss saltpepper] [--out experiments/out/early_stopping]

For each image of the denoising set (Gaussian: the set's own sigma-25 noisy image; salt and
pepper: 10 % of the pixels of the clean image, seed 0), centre-cropped to --size, one fit of
--iters iterations with the detector in 'mark' mode (it records and goes on). Reports the PSNR
of the output at the detected iteration, at the best iteration in hindsight (PSNR of the
outputs at every iteration is known here, not to the detector), and at the preset's fixed
iteration count. Writes results.json, table.md and curves.png (PSNR and the detector's variance
against iterations) under --out.
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

from dipjax import tasks  # noqa: E402
from dipjax.degrade import add_salt_pepper  # noqa: E402
from dipjax.engine import fit_problem  # noqa: E402
from dipjax.io import centre_crop as centre  # noqa: E402
from dipjax.io import load_image
from dipjax.presets import get_preset  # noqa: E402

ALL = ["F16", "baboon", "hill", "kodim01", "kodim02", "kodim03", "kodim12", "lena", "peppers"]


def problem(data, name, noise, size):
    clean = centre(load_image(data / f"{name}.png"), size)
    if noise == "gauss":
        noisy = centre(load_image(data / "sigma25" / f"{name}.png"), size)
    else:
        noisy = add_salt_pepper(clean, 0.1, np.random.default_rng(0))
    return tasks.prepare("denoise", get_preset("denoise-fast").replace(crop=32), noisy, gt=clean)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--preset", default="denoise-fast")
    ap.add_argument("--images", nargs="+", default=ALL)
    ap.add_argument(
        "--noises", nargs="+", default=["gauss", "saltpepper"], choices=["gauss", "saltpepper"]
    )
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iters", type=int, default=3000, help="iterations run (>= the preset's)")
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--patience", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "experiments" / "out" / "early_stopping"))
    args = ap.parse_args(argv)
    data = pathlib.Path(args.data_dir) / "denoise9"
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = get_preset(args.preset)
    fixed = base.iters
    p = base.replace(
        iters=max(args.iters, fixed),
        early_stop="mark",
        es_window=args.window,
        es_patience=args.patience,
    )
    rows, curves = [], []
    for noise in args.noises:
        for name in args.images:
            t = time.perf_counter()
            prob = problem(data, name, noise, args.size)
            r = fit_problem(prob, p, seed=args.seed)
            g = np.array([h["psnr_gt"] for h in r.history])
            es = r.early_stop
            row = {
                "noise": noise,
                "image": name,
                "noisy": r.final["psnr_baseline"],
                "es_iter": es["iter"],
                "es_fired": es["fired"],
                "es_fired_at": es["fired_at"],
                "psnr_es": r.final.get("psnr_gt_es", float("nan")),
                "best_iter": int(np.argmax(g)) + 1,
                "psnr_best": float(g.max()),
                "psnr_fixed": float(g[fixed - 1]),
                "fixed_iter": fixed,
                "psnr_last": float(g[-1]),
                "wall_s": time.perf_counter() - t,
            }
            rows.append(row)
            curves.append(
                {
                    "noise": noise,
                    "image": name,
                    "psnr": g.tolist(),
                    "wmv": [h["wmv"] for h in r.history],
                }
            )
            print(json.dumps(row), flush=True)
    settings = (
        f"{args.preset}, {args.size} px centre crops, {p.iters} iterations, seed "
        f"{args.seed}, window {args.window}, patience {args.patience}; fixed = the "
        f"preset's {fixed} iterations"
    )
    lines = [
        settings,
        "",
        "| noise | image | noisy | detected iter | PSNR at detection | best iter | best PSNR "
        "| PSNR at fixed iters | gap to best |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['noise']} | {r['image']} | {r['noisy']:.2f} | {r['es_iter']}"
            f"{'' if r['es_fired'] else ' (not fired)'} | {r['psnr_es']:.2f} | "
            f"{r['best_iter']} | {r['psnr_best']:.2f} | {r['psnr_fixed']:.2f} | "
            f"{r['psnr_es'] - r['psnr_best']:+.2f} |"
        )
    for noise in args.noises:
        sel = [r for r in rows if r["noise"] == noise]
        lines.append(
            f"| {noise} | **mean** | {np.mean([r['noisy'] for r in sel]):.2f} | | "
            f"{np.mean([r['psnr_es'] for r in sel]):.2f} | | "
            f"{np.mean([r['psnr_best'] for r in sel]):.2f} | "
            f"{np.mean([r['psnr_fixed'] for r in sel]):.2f} | "
            f"{np.mean([r['psnr_es'] - r['psnr_best'] for r in sel]):+.2f} |"
        )
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    (out / "results.json").write_text(
        json.dumps({"settings": settings, "rows": rows, "curves": curves})
    )
    plot(curves, rows, out / "curves.png")
    print("\n" + table)


def plot(curves, rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(curves)
    cols = min(n, 3)
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    for ax, c, r in zip(axes.flat, curves, rows):
        it = np.arange(1, len(c["psnr"]) + 1)
        ax.plot(it, c["psnr"], color="C0", lw=1)
        ax.set_ylabel("PSNR (dB)", color="C0")
        ax.axvline(r["best_iter"], color="C2", ls=":", label="best")
        ax.axvline(r["es_iter"], color="C3", ls="--", label="detected")
        ax.axvline(r["fixed_iter"], color="grey", ls="-.", label="preset")
        ax2 = ax.twinx()
        ax2.semilogy(it, c["wmv"], color="C1", lw=1)
        ax2.set_ylabel("window variance", color="C1")
        ax.set_title(f"{c['image']} ({c['noise']})", fontsize=9)
        ax.set_xlabel("iteration")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    from dipjax.io import InputError

    try:
        main()
    except InputError as e:  # a missing or wrong --data-dir: one line, not a traceback
        sys.exit(f"error: {e}")
