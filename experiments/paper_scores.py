"""The paper's numbers, scored from the result images the authors published, by dipjax's scorer.

    python experiments/paper_scores.py --site-dir DIR [--out experiments/paper_scores.json]

DIR is a checkout of DmitryUlyanov/dmitryulyanov.github.io (the paper's project page); its
``assets/deep-image-prior`` holds, per image, the ground truth and each method's output. This
script scores them as ``experiments/reproduce.py`` scores dipjax: Set5 super-resolution with
``dipjax.metrics.psnr_sr`` (luma, border shaved, on the region the deep-prior output covers:
its non-black bounding box) and colour denoising at sigma 25 with RGB PSNR. The JSON it writes
is committed, so ``reproduce.py`` needs no checkout. Of the two x8 deep-prior outputs published
(``_003``, ``_005``), both are scored.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import warnings  # noqa: E402

import numpy as np  # noqa: E402

from dipjax.io import load_image  # noqa: E402
from dipjax.metrics import psnr_np, psnr_sr  # noqa: E402

SET5 = ["baby", "bird", "butterfly", "head", "woman"]
DENOISE9 = ["F16", "baboon", "hill", "kodim01", "kodim02", "kodim03", "kodim12", "lena", "peppers"]
SR_METHODS = {
    "x4": ["deep_prior", "bicubic"],
    "x8": ["deep_prior_005", "deep_prior_003", "bicubic"],
}


def rgb(path: pathlib.Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the published outputs carry an opaque alpha channel
        img = load_image(path)
    return np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img[..., :3]


def covered(ours: np.ndarray):
    """The bounding box of the output's non-black pixels (where the fit put its crop)."""
    q = ours.sum(-1)
    rows, cols = np.where(q.sum(1) > 0)[0], np.where(q.sum(0) > 0)[0]
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site-dir", required=True)
    ap.add_argument("--out", default=str(ROOT / "experiments" / "paper_scores.json"))
    args = ap.parse_args(argv)
    assets = pathlib.Path(args.site_dir) / "assets" / "deep-image-prior"
    if not assets.is_dir():
        sys.exit(
            f"error: {assets} not found: --site-dir must be a checkout of "
            "DmitryUlyanov/dmitryulyanov.github.io"
        )
    scores = {
        "source": "DmitryUlyanov/dmitryulyanov.github.io assets/deep-image-prior",
        "sr": {},
        "denoise": {},
    }
    for scale, methods in SR_METHODS.items():
        d = assets / "SR" / "Set5" / scale
        table = {m: {} for m in methods}
        for name in SET5:
            gt = rgb(d / f"{name}_GT.png")
            box = covered(rgb(d / f"{name}_{methods[0]}.png"))
            for m in methods:
                table[m][name] = round(psnr_sr(rgb(d / f"{name}_{m}.png")[box], gt[box]), 2)
        scores["sr"][scale] = table
    d = assets / "Denoising" / "Color" / "25"
    for m in ("deep_prior", "noisy"):
        scores["denoise"][m] = {
            name: round(psnr_np(rgb(d / f"{name}_{m}.png"), rgb(d / f"{name}_GT.png")), 2)
            for name in DENOISE9
        }
    pathlib.Path(args.out).write_text(json.dumps(scores, indent=1) + "\n")
    for group in ("sr", "denoise"):
        for key, table in scores[group].items():
            for m, row in table.items() if group == "sr" else [(key, table)]:
                print(
                    f"{group} {key if group == 'sr' else ''} {m}: {row} "
                    f"mean {np.mean(list(row.values())):.2f}"
                )


if __name__ == "__main__":
    main()
