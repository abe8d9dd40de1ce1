"""The command line's many-image runs: ``--image a.png b.png``, a folder or a glob, and
``--distributed`` runs that split the images over processes.

Layout under --out: one folder per image (named after the file, made unique), holding what a
single run writes (or, with --seeds K, seed_S/ folders, mean.png, std.png and std.npy);
``metrics.csv`` and ``metrics.json`` with one row per fit (and a ``mean`` row per image for
ensembles); ``summary.json`` with the settings and how the fits were grouped and batched.
"""
from __future__ import annotations

import csv
import glob
import io as _io
import json
import pathlib
import time

from dipjax.io import InputError, atomic_write_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
COLUMNS = ("image", "path", "seed", "width", "height", "iters_done", "psnr_gt", "psnr_gt_avg",
           "ssim", "psnr_baseline", "psnr_gt_es", "es_iter", "psnr_mean")


def expand_images(args_image) -> tuple[list, bool]:
    """The image paths named by --image (files, folders, globs), in order, and whether more
    than one image was asked for (a list, a folder or a glob)."""
    if not args_image:
        return [None], False
    items = [args_image] if isinstance(args_image, str) else list(args_image)
    paths, many = [], len(items) > 1
    for item in items:
        p = pathlib.Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"--image {item}: folder holds no image files "
                                 f"({', '.join(IMAGE_SUFFIXES)})")
            paths += found
            many = True
        elif any(c in item for c in "*?[") and not p.exists():
            found = sorted(glob.glob(item))
            if not found:
                raise InputError(f"--image {item}: the pattern matches no file")
            paths += found
            many = True
        else:
            paths.append(item)
    return paths, many


def unique_names(paths) -> list:
    """A folder name per path: the file's stem, with _2, _3 ... where stems repeat."""
    seen, names = {}, []
    for p in paths:
        stem = pathlib.Path(p).stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def rows_for(name, path, problem, fits) -> list:
    """Metrics rows for the fits (one per seed) of one image."""
    import numpy as np

    from dipjax.metrics import psnr_np

    rows = []
    for f in fits:
        r = {"image": name, "path": path, "seed": f.seed, "width": problem.out_hw[1],
             "height": problem.out_hw[0], "iters_done": f.history[-1]["iter"] if f.history else 0,
             **{k: f.final.get(k) for k in ("psnr_gt", "psnr_gt_avg", "ssim", "psnr_baseline",
                                            "psnr_gt_es")},
             "es_iter": f.early_stop["iter"] if f.early_stop else None}
        rows.append(r)
    if len(fits) > 1 and problem.gt is not None:
        mean = np.mean([f.output for f in fits], 0)
        rows.append({"image": name, "path": path, "seed": "mean", "width": problem.out_hw[1],
                     "height": problem.out_hw[0], "psnr_mean": psnr_np(mean, problem.gt)})
    return rows


def write_table(out: pathlib.Path, rows: list, stem: str = "metrics") -> None:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    atomic_write_bytes(out / f"{stem}.csv", buf.getvalue().encode())
    atomic_write_bytes(out / f"{stem}.json", (json.dumps(rows, indent=1) + "\n").encode())


def gather_parts(out: pathlib.Path, count: int, timeout_s: float = 3600.0) -> list:
    """Process 0 of a distributed run: wait for every process's metrics part, return all rows."""
    parts = [out / f"metrics.part{k}.json" for k in range(count)]
    deadline = time.monotonic() + timeout_s
    while not all(p.is_file() for p in parts):
        if time.monotonic() > deadline:
            missing = [p.name for p in parts if not p.is_file()]
            raise InputError(f"--distributed: gave up waiting for {', '.join(missing)} in {out}")
        time.sleep(0.5)
    rows = []
    for p in parts:
        rows += json.loads(p.read_text())
    return rows
