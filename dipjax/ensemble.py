"""Seed ensembles: the mean of K fits of one problem and its per-pixel spread.

run = dipjax.run([problem], preset, seeds=[0, 1, 2, 3])
stats = ensemble_stats(run.fits)
stats["mean"], stats["std"]      # (H, W, C)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dipjax.metrics import psnr_np


def ensemble_stats(fits: Sequence) -> dict:
    """``fits``: the FitResults (one per seed) of one problem. Returns ``mean`` and ``std``
    over seeds of the outputs ((H, W, C) float32), ``mean_avg`` (mean of the moving averages)
    and ``final``: each seed's final metrics and, with a ground truth, the PSNR of the mean
    (``psnr_mean``, ``psnr_mean_avg``) next to the seeds' average PSNR (``psnr_single_mean``).
    Raises ValueError for no fits or fits of several problems (a run's ``fits`` of many images:
    group them by ``index`` first)."""
    if not fits:
        raise ValueError("ensemble_stats: no fits")
    if len({f.index for f in fits}) > 1:
        raise ValueError(
            "ensemble_stats: the fits are of several problems (indices "
            f"{sorted({f.index for f in fits})}); pass one problem's seeds"
        )
    outputs = np.stack([f.output for f in fits])
    mean, std = outputs.mean(0), outputs.std(0)
    mean_avg = np.stack([f.output_avg for f in fits]).mean(0)
    final = {"seeds": [f.seed for f in fits], "per_seed": [f.final for f in fits]}
    gt = fits[0].problem.gt
    if gt is not None:
        final["psnr_mean"] = psnr_np(mean, gt)
        final["psnr_mean_avg"] = psnr_np(mean_avg, gt)
        final["psnr_single_mean"] = float(np.mean([f.final["psnr_gt"] for f in fits]))
    return {"mean": mean, "std": std, "mean_avg": mean_avg, "final": final}


def uncertainty_map(std: np.ndarray) -> np.ndarray:
    """A (H, W, 1) picture in [0, 1] of the per-pixel std (mean over channels), scaled to its
    maximum."""
    s = std.mean(-1, keepdims=True)
    return s / max(float(s.max()), 1e-12)


def pooled_posterior(posteriors: Sequence[dict]) -> dict:
    """The posterior of K SGLD chains together, from each chain's ``samples``, ``mean`` and
    ``std`` ((H, W, C)): the mean and standard deviation over all their samples (law of total
    variance), as if the samples had been kept in one list."""
    n = np.array([p["samples"] for p in posteriors], np.float64)
    w = (n / n.sum())[:, None, None, None]
    means = np.stack([p["mean"] for p in posteriors]).astype(np.float64)
    second = np.stack([p["std"] for p in posteriors]).astype(np.float64) ** 2 + means**2
    mean = (w * means).sum(0)
    var = np.maximum((w * second).sum(0) - mean**2, 0.0)
    return {
        "samples": int(n.sum()),
        "mean": mean.astype(np.float32),
        "std": np.sqrt(var).astype(np.float32),
    }
