"""The paper's benchmarks rerun with dipjax, scored as the paper scored them, beside its numbers.

    python experiments/reproduce.py --data-dir ../shared/data [--groups sr4 sr8 denoise notebooks]
        [--fast] [--preset GROUP=NAME ...] [--iters N] [--limit N] [--seed 0]
        [--precision f32|bf16] [--crop N] [--tiny] [--out experiments/out/reproduce]

Groups:
  sr4, sr8   Set5 super-resolution x4 / x8 from the ground truth (cropped to a multiple of 32 and
             downscaled as the reference does), PSNR on the luma channel with the evaluation
             script's border (``dipjax.metrics.psnr_sr``); bicubic upscaling scored alike.
  denoise    colour denoising at sigma 25 on the 9-image set, from the shared noisy images; RGB
             PSNR of the last output and of its moving average.
  notebooks  the reference notebooks' own images with ground truth: F16 denoising (noise drawn
             with --seed), zebra x4, kate and vase inpainting with their masks, barbara and kate
             restoration; PSNR as the notebooks print it (RGB; SR as above).

Each group runs the paper's preset (``--fast``: the fast preset of the same task; ``--preset
sr4=NAME`` picks another), for the preset's iterations or --iters, on the first --limit images.
The paper's column comes from ``experiments/paper_scores.json`` (the authors' published result
images scored by the same functions, written by ``experiments/paper_scores.py``). Writes
results.json and table.md under --out and prints the table; rows are written as fits finish.
``--precision`` sets the presets' convolution precision; ``--crop N`` fits the centre N x N of
every image (its ground truth, noisy image and mask alike; the paper's columns stay whole-image
scores, so compare only dipjax's rows then). ``--tiny`` swaps every generator for a 3-scale,
8-channel skip net (smoke tests only).
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
from dipjax.engine import fit_problem  # noqa: E402
from dipjax.metrics import psnr_np, psnr_sr  # noqa: E402
from dipjax.presets import get_preset  # noqa: E402

sys.path.insert(0, str(ROOT / "experiments"))
from bench_reference import with_tiny_net  # noqa: E402
from paper_scores import DENOISE9, SET5  # noqa: E402

PRESETS = {
    "sr4": ("superres-x4", "superres-fast"),
    "sr8": ("superres-x8", "superres-fast"),
    "denoise": ("denoise", "denoise-fast"),
}
# name: (task, paper preset, fast preset, image, mask, scorer)
NOTEBOOKS = {
    "F16 denoise": ("denoise", "denoise", "denoise-fast", "denoising/F16_GT.png", None, "rgb"),
    "zebra x4": ("superres", "superres-x4", "superres-fast", "sr/zebra_GT.png", None, "sr"),
    "kate inpaint": (
        "inpaint",
        "inpaint-kate",
        "inpaint-fast",
        "inpainting/kate.png",
        "inpainting/kate_mask.png",
        "rgb",
    ),
    "vase inpaint": (
        "inpaint",
        "inpaint-vase",
        "inpaint-fast",
        "inpainting/vase.png",
        "inpainting/vase_mask.png",
        "rgb",
    ),
    "barbara restore": (
        "restore",
        "restore-barbara",
        "restore-fast",
        "restoration/barbara.png",
        None,
        "rgb",
    ),
    "kate restore": (
        "restore",
        "restore-kate",
        "restore-fast",
        "restoration/kate.png",
        None,
        "rgb",
    ),
}


def adjusted(preset, args):
    """--iters, --precision and --tiny applied to a preset."""
    if args.iters:
        preset = preset.replace(iters=args.iters)
    preset = preset.replace(precision=args.precision)
    if args.tiny:
        preset = with_tiny_net(preset)
    return preset


def load(path, args):
    """The image at ``path``, its centre --crop x --crop square if --crop is set."""
    img = io.load_image(path)
    if not args.crop:
        return img
    h, w = img.shape[:2]
    if min(h, w) < args.crop:
        sys.exit(f"error: {path}: {h}x{w} is smaller than --crop {args.crop}")
    top, left = (h - args.crop) // 2, (w - args.crop) // 2
    return img[top : top + args.crop, left : left + args.crop]


def preset_for(group, default, args):
    name = args.preset.get(group) or default[1 if args.fast else 0]
    p = get_preset(name)
    return adjusted(p.replace(scale=8) if group == "sr8" else p, args)


def run_fit(task, preset, image, args, **kw):
    t = time.perf_counter()
    problem = api.prepare(task, preset, image, seed=args.seed, **kw)
    result = fit_problem(problem, preset, seed=args.seed)
    return problem, result, time.perf_counter() - t


def sr_rows(group, args):
    scale = "x4" if group == "sr4" else "x8"
    preset = preset_for(group, PRESETS[group], args)
    for name in SET5[: args.limit]:
        hr = load(args.data_dir / "Set5" / scale / f"{name}.png", args)
        problem, result, wall = run_fit("superres", preset, hr, args, degrade=True)
        yield {
            "group": group,
            "image": name,
            "preset": preset.name,
            "iters": preset.iters,
            "psnr": psnr_sr(result.output, problem.gt),
            "psnr_bicubic": psnr_sr(problem.baseline, problem.gt),
            "wall_s": wall,
        }


def denoise_rows(args):
    preset = preset_for("denoise", PRESETS["denoise"], args)
    d = args.data_dir / "denoise9"
    for name in DENOISE9[: args.limit]:
        gt = load(d / f"{name}.png", args)
        noisy = load(d / "sigma25" / f"{name}.png", args)
        problem, result, wall = run_fit("denoise", preset, noisy, args, gt=gt)
        yield {
            "group": "denoise",
            "image": name,
            "preset": preset.name,
            "iters": preset.iters,
            "psnr": psnr_np(result.output, problem.gt),
            "psnr_avg": psnr_np(result.output_avg, problem.gt),
            "psnr_noisy": psnr_np(problem.target, problem.gt),
            "wall_s": wall,
        }


def notebook_rows(args):
    for name, (task, paper, fast, image, mask, scorer) in list(NOTEBOOKS.items())[: args.limit]:
        preset = adjusted(get_preset(args.preset.get(name) or (fast if args.fast else paper)), args)
        img = load(args.data_dir / "dip" / image, args)
        kw = {"degrade": True}  # restoration: a random mask, the image itself the truth
        if mask is not None:
            kw = {"mask": load(args.data_dir / "dip" / mask, args), "gt": img}
        problem, result, wall = run_fit(task, preset, img, args, **kw)
        score = psnr_sr if scorer == "sr" else psnr_np
        row = {
            "group": "notebooks",
            "image": name,
            "preset": preset.name,
            "iters": preset.iters,
            "psnr": score(result.output, problem.gt),
            "wall_s": wall,
        }
        if problem.baseline is not None:
            row["psnr_baseline"] = score(problem.baseline, problem.gt)
        yield row


def paper_table(rows, paper, group) -> list[str]:
    """Images as columns, methods as rows, the mean last: the paper's layout."""
    sel = [r for r in rows if r["group"] == group]
    if not sel:
        return []
    names = [r["image"] for r in sel]
    cols = " | ".join(names)
    lines = [f"| {group} | {cols} | mean |", "|---" * (len(names) + 2) + "|"]

    def line(label, values):
        vals = [values.get(n) for n in names]
        shown = " | ".join("" if v is None else f"{v:.2f}" for v in vals)
        known = [v for v in vals if v is not None]
        mean = f"{np.mean(known):.2f}" if len(known) == len(vals) else ""
        lines.append(f"| {label} | {shown} | {mean} |")

    if group in ("sr4", "sr8"):
        scale = "x4" if group == "sr4" else "x8"
        ref = paper["sr"][scale]
        dip_key = "deep_prior" if scale == "x4" else "deep_prior_005"
        line("bicubic, paper's images", ref["bicubic"])
        line("bicubic, dipjax's LR", {r["image"]: r["psnr_bicubic"] for r in sel})
        line(f"DIP, paper's images ({dip_key})", ref[dip_key])
        line(
            f"dipjax ({sel[0]['preset']}, {sel[0]['iters']} it)",
            {r["image"]: r["psnr"] for r in sel},
        )
    else:
        line("noisy input (shared images)", {r["image"]: r["psnr_noisy"] for r in sel})
        line("DIP, paper's images", paper["denoise"]["deep_prior"])
        line(
            f"dipjax last ({sel[0]['preset']}, {sel[0]['iters']} it)",
            {r["image"]: r["psnr"] for r in sel},
        )
        line("dipjax moving average", {r["image"]: r["psnr_avg"] for r in sel})
    return lines


def notebook_table(rows) -> list[str]:
    sel = [r for r in rows if r["group"] == "notebooks"]
    if not sel:
        return []
    lines = ["| notebook image | preset | iters | PSNR | baseline PSNR |", "|---|---|---|---|---|"]
    for r in sel:
        base = f"{r['psnr_baseline']:.2f}" if "psnr_baseline" in r else ""
        lines.append(f"| {r['image']} | {r['preset']} | {r['iters']} | {r['psnr']:.2f} | {base} |")
    return lines


def write(rows, args, paper):
    out = pathlib.Path(args.out)
    settings = {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()}
    (out / "results.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
    head = (
        f"seed {args.seed}; "
        + ("fast presets" if args.fast else "paper presets")
        + (" with tiny generators (a smoke test)" if args.tiny else "")
        + (f", {args.iters} iterations" if args.iters else "")
        + (f", first {args.limit} images per group" if args.limit < 99 else "")
        + (f", {args.precision} convolutions" if args.precision != "f32" else "")
        + (f", centre {args.crop}x{args.crop} crops" if args.crop else "")
    )
    lines = [head, ""]
    for group in ("sr4", "sr8", "denoise"):
        table = paper_table(rows, paper, group)
        lines += table + ([""] if table else [])
    lines += notebook_table(rows)
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


def parse_presets(items) -> dict:
    out = {}
    for item in items:
        key, sep, name = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --preset wants GROUP=NAME, got {item!r}")
        get_preset(name)  # fails early on an unknown name
        out[key] = name
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument(
        "--groups",
        nargs="+",
        default=["sr4", "sr8", "denoise", "notebooks"],
        choices=["sr4", "sr8", "denoise", "notebooks"],
    )
    ap.add_argument("--fast", action="store_true", help="each task's fast preset")
    ap.add_argument("--preset", nargs="*", default=[], metavar="GROUP=NAME")
    ap.add_argument("--iters", type=int, default=0, help="override the presets' iterations")
    ap.add_argument("--limit", type=int, default=99, help="images per group")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", choices=("f32", "bf16"), default="f32")
    ap.add_argument("--crop", type=int, default=0, help="fit the centre N x N of each image")
    ap.add_argument("--tiny", action="store_true", help="tiny generators (smoke tests)")
    ap.add_argument("--paper", default=str(ROOT / "experiments" / "paper_scores.json"))
    ap.add_argument("--out", default=str(ROOT / "experiments" / "out" / "reproduce"))
    args = ap.parse_args(argv)
    args.preset = parse_presets(args.preset)
    args.data_dir = pathlib.Path(args.data_dir)
    if not (args.data_dir / "Set5").is_dir():
        sys.exit(f"error: {args.data_dir}: no Set5/ folder; --data-dir must be the shared data")
    pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
    paper = json.loads(pathlib.Path(args.paper).read_text())
    sources = {
        "sr4": lambda: sr_rows("sr4", args),
        "sr8": lambda: sr_rows("sr8", args),
        "denoise": lambda: denoise_rows(args),
        "notebooks": lambda: notebook_rows(args),
    }
    rows = []
    for group in args.groups:
        for row in sources[group]():
            rows.append(row)
            print(json.dumps(row), flush=True)
            write(rows, args, paper)
    print("\n" + write(rows, args, paper))


if __name__ == "__main__":
    main()
