"""PSNR of the same fits with float32 and bfloat16 convolutions, beside f32's seed-to-seed spread.

    python experiments/precision_quality.py --data-dir ../shared/data [--groups denoise sr4]
        [--fast] [--iters N] [--crop N] [--limit N] [--seeds 0 1] [--out DIR]

Runs ``experiments/reproduce.py``'s fits of each group (the paper presets, or ``--fast``) once
per precision with the first seed, and once more in float32 with each further seed: bf16 moves a
fit's trajectory much as another seed does, so the f32 seed-to-seed difference is the yardstick
for the bf16 - f32 difference. Writes results.json and table.md under --out (default
experiments/out/precision_quality) and prints the table; the per-fit wall time is in the rows.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import numpy as np  # noqa: E402
import reproduce  # noqa: E402


def runs(seeds):
    """(label, precision, seed) of every pass: f32 and bf16 at the first seed, f32 at the rest."""
    first = seeds[0]
    out = [("f32", "f32", first), ("bf16", "bf16", first)]
    return out + [(f"f32 seed {s}", "f32", s) for s in seeds[1:]]


def table(rows, labels) -> str:
    keys = list(dict.fromkeys((r["group"], r["image"]) for r in rows))
    score = {(r["label"], r["group"], r["image"]): r["psnr"] for r in rows}
    wall = {(r["label"], r["group"], r["image"]): r["wall_s"] for r in rows}
    extra = [lab for lab in labels if lab not in ("f32", "bf16")]
    head = ["group", "image", "f32 dB", "bf16 dB", "bf16 - f32"]
    head += [f"{lab} - f32" for lab in extra] + ["wall s f32 / bf16"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    diffs = {lab: [] for lab in ["bf16", *extra]}
    for g, img in keys:
        f32 = score.get(("f32", g, img))
        cells = [g, img, _f(f32), _f(score.get(("bf16", g, img)))]
        for lab in ["bf16", *extra]:
            other = score.get((lab, g, img))
            d = None if other is None or f32 is None else other - f32
            if d is not None:
                diffs[lab].append(d)
            cells.append(_f(d, "+.2f"))
        cells.append(
            f"{_f(wall.get(('f32', g, img)), '.0f')} / {_f(wall.get(('bf16', g, img)), '.0f')}"
        )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for lab, d in diffs.items():
        if d:
            lines.append(
                f"{lab} - f32 over {len(d)} fits: mean {np.mean(d):+.3f} dB, "
                f"mean |difference| {np.mean(np.abs(d)):.3f} dB"
            )
    return "\n".join(lines) + "\n"


def _f(v, fmt=".2f"):
    return "" if v is None else format(v, fmt)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--groups", nargs="+", default=["denoise", "sr4"], choices=["denoise", "sr4"])
    ap.add_argument("--fast", action="store_true", help="each task's fast preset")
    ap.add_argument("--iters", type=int, default=0, help="override the presets' iterations")
    ap.add_argument("--crop", type=int, default=0, help="fit the centre N x N of each image")
    ap.add_argument("--limit", type=int, default=99, help="images per group")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--tiny", action="store_true", help="tiny generators (smoke tests)")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "out" / "precision_quality"))
    args = ap.parse_args(argv)
    args.data_dir = pathlib.Path(args.data_dir)
    if not (args.data_dir / "Set5").is_dir():
        sys.exit(f"error: {args.data_dir}: no Set5/ folder; --data-dir must be the shared data")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    passes = runs(args.seeds)
    rows = []
    settings = {k: str(v) for k, v in vars(args).items()}
    for group in args.groups:
        for label, precision, seed in passes:
            a = argparse.Namespace(**{**vars(args), "precision": precision, "seed": seed})
            a.preset = {}
            source = reproduce.sr_rows("sr4", a) if group == "sr4" else reproduce.denoise_rows(a)
            for row in source:
                rows.append({**row, "label": label, "precision": precision, "seed": seed})
                print(json.dumps(rows[-1]), flush=True)
                (out / "results.json").write_text(
                    json.dumps({"settings": settings, "rows": rows}, indent=1)
                )
    head = (
        ("fast presets" if args.fast else "paper presets")
        + (" with tiny generators (a smoke test)" if args.tiny else "")
        + (f", {args.iters} iterations" if args.iters else "")
        + (f", centre {args.crop}x{args.crop} crops" if args.crop else "")
        + f", seeds {' '.join(map(str, args.seeds))}"
    )
    text = head + "\n\n" + table(rows, [p[0] for p in passes])
    (out / "table.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
