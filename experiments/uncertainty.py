"""Answers to "when do I stop?" compared on the shared denoising set: DIP's last output, its moving
average, its ES-WMV output, the mean of 4 seeds, the SGLD posterior mean (Bayesian DIP) and the
Deep Decoder; and, for SGLD and the seed ensemble, how well the predicted per-pixel standard
deviation tracks the actual error.

    python experiments/uncertainty.py --data-dir ../shared/data [--crop 64] [--iters 1200]
        [--dd-iters 1500] [--sgld 0.5] [--limit 9] [--kate] [--out experiments/out/uncertainty]

Denoising: the set's own sigma-25 noisy images (``denoise9/sigma25``), centre crops of --crop
pixels, the CPU presets (``denoise-fast`` for DIP, SGLD and the seeds; ``denoise-dd-fast``);
RGB PSNR against the clean crop. The DIP fits of seeds 0-3 run as one vmapped batch with ES-WMV
marking (window 100, patience 500); seed 0 gives the single-fit rows. SGLD: the same preset with
``sgld`` = --sgld and the burn-in at half the iterations. Uncertainty: Pearson correlation over
all pixels and channels between the predicted std and |output - clean| (for the posterior mean
and for the seed mean), and a calibration plot (pixels binned by predicted std, mean |error| per
bin). ``--kate`` also runs SGLD and the Deep Decoder on the kate inpainting notebook image with
its mask (centre crop) and saves the outputs and uncertainty maps. Writes results.json,
table.md, calibration.png (and kate.png) under --out and prints the table.
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

from dipjax import api, io  # noqa: E402
from dipjax.engine import run as dipjax_run  # noqa: E402
from dipjax.ensemble import ensemble_stats, uncertainty_map  # noqa: E402
from dipjax.metrics import psnr_np  # noqa: E402
from dipjax.presets import get_preset  # noqa: E402

IMAGES = ("F16", "baboon", "hill", "kodim01", "kodim02", "kodim03", "kodim12", "lena", "peppers")
METHODS = (
    ("dip_last", "DIP, last output"),
    ("dip_avg", "DIP, moving average"),
    ("dip_es", "DIP at the ES-WMV iteration"),
    ("seeds_mean", "mean of 4 seeds"),
    ("sgld_mean", "SGLD posterior mean"),
    ("dd", "Deep Decoder"),
)


def calibration(std: np.ndarray, err: np.ndarray, bins: int = 10) -> dict:
    """Pearson correlation of ``std`` and ``err`` (same shapes) and, per quantile bin of std,
    the mean std and the mean |error|."""
    s, e = std.ravel().astype(np.float64), np.abs(err).ravel().astype(np.float64)
    corr = float(np.corrcoef(s, e)[0, 1]) if s.std() > 0 else float("nan")
    edges = np.quantile(s, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    pred = [float(s[which == b].mean()) for b in range(bins) if np.any(which == b)]
    got = [float(e[which == b].mean()) for b in range(bins) if np.any(which == b)]
    return {"corr": corr, "std": pred, "abs_err": got}


def denoise_one(name: str, args) -> tuple:
    d = args.data_dir / "denoise9"
    gt = io.centre_crop(io.load_image(d / f"{name}.png"), args.crop)
    noisy = io.centre_crop(io.load_image(d / "sigma25" / f"{name}.png"), args.crop)
    dip = get_preset("denoise-fast").replace(iters=args.iters, early_stop="mark")
    row = {"image": name, "noisy": psnr_np(noisy, gt)}
    t = time.perf_counter()
    problem = api.prepare("denoise", dip, noisy, gt=gt)
    seeds = dipjax_run([problem], dip, [0, 1, 2, 3])
    first = seeds.fits[0]
    row["dip_last"] = first.final["psnr_gt"]
    row["dip_avg"] = first.final["psnr_gt_avg"]
    row["dip_es"] = first.final.get("psnr_gt_es", float("nan"))
    row["es_iter"] = first.early_stop["iter"]
    stats = ensemble_stats(seeds.fits)
    row["seeds_mean"] = stats["final"]["psnr_mean"]
    seed_cal = calibration(stats["std"], stats["mean"] - problem.gt)
    sgld = dip.replace(early_stop="off", sgld=args.sgld)
    post = api.fit_problem(problem, sgld, seed=0).posterior
    row["sgld_mean"] = psnr_np(post["mean"], problem.gt)
    sgld_cal = calibration(post["std"], post["mean"] - problem.gt)
    dd = get_preset("denoise-dd-fast").replace(iters=args.dd_iters)
    dd_fit = api.fit_problem(api.prepare("denoise", dd, noisy, gt=gt), dd, seed=0)
    row["dd"] = dd_fit.final["psnr_gt"]
    row["corr_seeds"], row["corr_sgld"] = seed_cal["corr"], sgld_cal["corr"]
    row["seconds"] = time.perf_counter() - t
    return row, {"seeds": seed_cal, "sgld": sgld_cal}


def kate(args, out: pathlib.Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = args.data_dir / "dip" / "inpainting"
    img = io.centre_crop(io.load_image(d / "kate.png"), args.kate_crop)
    mask = io.centre_crop(io.load_image(d / "kate_mask.png"), args.kate_crop)
    sgld = get_preset("inpaint-fast").replace(iters=args.iters, sgld=args.sgld)
    problem = api.prepare("inpaint", sgld, img, mask=mask, gt=img)
    post = api.fit_problem(problem, sgld, seed=0)
    dd = get_preset("inpaint-dd-fast").replace(iters=args.dd_iters)
    dd_fit = api.fit_problem(api.prepare("inpaint", dd, img, mask=mask, gt=img), dd, seed=0)
    hole = problem.mask[..., 0] < 0.5
    scores = {
        "sgld_mean_psnr": psnr_np(post.posterior["mean"], img),
        "dd_psnr": dd_fit.final["psnr_gt"],
        "std_in_hole": float(post.posterior["std"].mean(-1)[hole].mean()),
        "std_outside": float(post.posterior["std"].mean(-1)[~hole].mean()),
    }
    panels = [
        ("input (holes)", problem.degraded),
        ("SGLD posterior mean", post.posterior["mean"]),
        ("SGLD std (scaled)", uncertainty_map(post.posterior["std"])[..., 0]),
        ("Deep Decoder", dd_fit.output),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
    for ax, (title, im) in zip(axes, panels):
        ax.imshow(np.clip(im, 0, 1), cmap="magma" if im.ndim == 2 else None)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "kate.png", dpi=90)
    plt.close(fig)
    return scores


def calibration_figure(cals: list, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4))
    for kind, colour in (("seeds", "tab:blue"), ("sgld", "tab:red")):
        pred = np.mean([c[kind]["std"] for c in cals], 0)
        err = np.mean([c[kind]["abs_err"] for c in cals], 0)
        label = "mean of 4 seeds" if kind == "seeds" else "SGLD posterior"
        ax.plot(pred, err, "o-", color=colour, label=label)
    top = ax.get_xlim()[1]
    ax.plot([0, top], [0, top * np.sqrt(2 / np.pi)], "k:", label="calibrated Gaussian")
    ax.set_xlabel("predicted std (bin mean)")
    ax.set_ylabel("mean |error| in the bin")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(rows: list, args) -> str:
    head = "| image | noisy | " + " | ".join(t for _, t in METHODS) + " | corr seeds | corr SGLD |"
    lines = [head, "|" + "---|" * (len(METHODS) + 4)]
    for r in rows + [_mean_row(rows)]:
        cells = [f"{r[k]:.2f}" for k in ["noisy"] + [m for m, _ in METHODS]]
        cells += [f"{r['corr_seeds']:.2f}", f"{r['corr_sgld']:.2f}"]
        lines.append(f"| {r['image']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_row(rows: list) -> dict:
    keys = ["noisy", "corr_seeds", "corr_sgld"] + [m for m, _ in METHODS]
    return {"image": "**mean**", **{k: float(np.mean([r[k] for r in rows])) for k in keys}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", type=pathlib.Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--iters", type=int, default=1200)
    ap.add_argument("--dd-iters", type=int, default=1500)
    ap.add_argument("--sgld", type=float, default=0.5)
    ap.add_argument("--limit", type=int, default=len(IMAGES))
    ap.add_argument("--kate", action="store_true")
    ap.add_argument("--kate-crop", type=int, default=128)
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "experiments/out/uncertainty")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, cals = [], []
    for name in IMAGES[: args.limit]:
        row, cal = denoise_one(name, args)
        rows.append(row)
        cals.append(cal)
        print(json.dumps(row), flush=True)
    result = {"settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows, "cal": cals}
    if args.kate:
        result["kate"] = kate(args, args.out)
        print("kate:", json.dumps(result["kate"]))
    calibration_figure(cals, args.out / "calibration.png")
    md = table(rows, args)
    (args.out / "table.md").write_text(md + "\n")
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    print(md)


if __name__ == "__main__":
    from dipjax.io import InputError

    try:
        main()
    except InputError as e:  # a missing or wrong --data-dir: one line, not a traceback
        sys.exit(f"error: {e}")
