"""Seed ensembles: K independent fits of one problem, their mean and a per-pixel uncertainty.

Two strategies behind one function. ``vmap`` stacks parameters, optimizer state and inputs on a
leading axis and runs one vmapped step (each fit keeps its own BatchNorm statistics); per-fit
weights make every convolution a grouped one, which XLA runs well on GPUs at small sizes and
slowly on CPUs. ``sequential`` runs the K fits one after another with one compiled step, so K
seeds cost K single fits. ``auto`` picks ``sequential`` on a CPU, ``vmap`` elsewhere.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from dipjax import batch
from dipjax.batch import STRATEGIES
from dipjax.metrics import psnr_np
from dipjax.presets import Preset


@dataclasses.dataclass
class EnsembleResult:
    """outputs / outputs_avg: (K, H, W, C) per seed (last output, moving average); mean, std:
    (H, W, C) over seeds of ``outputs``; final: per-seed and ensemble metrics; history: per
    iteration, each metric a list over seeds."""

    seeds: list
    outputs: np.ndarray
    outputs_avg: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    final: dict
    history: list
    strategy: str
    compile_s: float
    step_s: float


def fit_ensemble(problem, preset: Preset, seeds: Sequence[int], *, strategy: str = "auto",
                 chunk: int = 0, on_chunk=None, max_batch: int = 0, devices=None,
                 say=None) -> EnsembleResult:
    """Fit ``problem`` once per seed; seed s gives the same fit as ``api.fit(..., seed=s)``.
    Vmapped seeds are sharded over ``devices`` (default: all local devices)."""
    seeds = list(seeds)
    fits, report = batch.fit_many([problem], preset, seeds, strategy=strategy, chunk=chunk,
                                  max_batch=max_batch, devices=devices, on_chunk=on_chunk,
                                  say=say)
    return combine(problem, fits, report)


def combine(problem, fits, report) -> EnsembleResult:
    """An ensemble from the fits (one per seed) of one problem."""
    outputs = np.stack([f.output for f in fits])
    outputs_avg = np.stack([f.output_avg for f in fits])
    history = [{k: (hs[0][k] if k == "iter" else [h[k] for h in hs]) for k in hs[0]}
               for hs in zip(*[f.history for f in fits])]
    mean, std = outputs.mean(0), outputs.std(0)
    final = {"per_seed": [f.final for f in fits]}
    if problem.gt is not None:
        final["psnr_mean"] = psnr_np(mean, problem.gt)
        final["psnr_mean_avg"] = psnr_np(outputs_avg.mean(0), problem.gt)
        final["psnr_single_mean"] = float(np.mean([f.final["psnr_gt"] for f in fits]))
    return EnsembleResult([f.seed for f in fits], outputs, outputs_avg, mean, std, final,
                          history, report.strategy, report.compile_s, report.step_s)


def uncertainty_png(std: np.ndarray) -> np.ndarray:
    """A (H, W, 1) picture of the per-pixel std (mean over channels), scaled to its maximum."""
    s = std.mean(-1, keepdims=True)
    return s / max(float(s.max()), 1e-12)


__all__ = ["EnsembleResult", "STRATEGIES", "fit_ensemble", "uncertainty_png"]
