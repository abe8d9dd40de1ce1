"""Which BatchNorm initialisation to default to: modern torch (scale 1) or torch 0.4 (U[0, 1)).

    python experiments/bn_init.py --data-dir ../shared/data [--preset denoise-fast]
        [--images F16 baboon kodim01 peppers] [--size 128] [--iters 800] [--seeds 0 1]

Colour denoising at sigma 25 (the shared set's own noisy images, centre-cropped to --size) with
the preset's generator, once per initialisation and seed. Prints PSNR of the last and averaged
outputs per image, and the mean over images and seeds. A reduced proxy for the paper's
denoising table: the full recipe (512 px, 128 channels, 3000 iterations) takes hours on a CPU.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from dipjax import tasks  # noqa: E402
from dipjax.engine import fit_problem  # noqa: E402
from dipjax.io import centre_crop as centre  # noqa: E402
from dipjax.io import load_image
from dipjax.presets import get_preset  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--preset", default="denoise-fast")
    ap.add_argument("--images", nargs="+", default=["F16", "baboon", "kodim01", "peppers"])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iters", type=int, default=800)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args(argv)
    data = pathlib.Path(args.data_dir) / "denoise9"
    rows = []
    for style in ("modern", "legacy"):
        p = get_preset(args.preset).replace(iters=args.iters, init_style=style)
        for name in args.images:
            clean = centre(load_image(data / f"{name}.png"), args.size)
            noisy = centre(load_image(data / "sigma25" / f"{name}.png"), args.size)
            prob = tasks.prepare("denoise", p.replace(crop=32), noisy, gt=clean)
            for seed in args.seeds:
                r = fit_problem(prob, p, seed=seed)
                rows.append(
                    {
                        "init": style,
                        "image": name,
                        "seed": seed,
                        "last": r.final["psnr_gt"],
                        "average": r.final["psnr_gt_avg"],
                        "noisy": r.final["psnr_baseline"],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.preset}, {args.size}px crops, {args.iters} iters, seeds {args.seeds}\n")
    print("| init | mean PSNR last | mean PSNR average | noisy input |")
    print("|---|---|---|---|")
    for style in ("modern", "legacy"):
        sel = [r for r in rows if r["init"] == style]
        print(
            f"| {style} | {np.mean([r['last'] for r in sel]):.2f} | "
            f"{np.mean([r['average'] for r in sel]):.2f} | "
            f"{np.mean([r['noisy'] for r in sel]):.2f} |"
        )


if __name__ == "__main__":
    from dipjax.io import InputError

    try:
        main()
    except InputError as e:  # a missing or wrong --data-dir: one line, not a traceback
        sys.exit(f"error: {e}")
