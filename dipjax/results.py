"""What a run returns: ``FitResult`` for one fit, ``RunResult`` for the run; and how a fit's
final metrics are computed from its outputs."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

from dipjax.metrics import psnr_np, ssim


@dataclasses.dataclass
class FitResult:
    """One fit of problem ``index`` (its position in the run's problems) with ``seed``.

    output: the net's output for the unperturbed input after the last step; output_avg: the
    moving average of the outputs (both (H, W, C) float32 in [0, 1]). history: one dict per
    iteration ('iter' from 1, 'loss', 'psnr_fit', ...). final: ``final_metrics``. early_stop:
    with the detector on, {'iter': detected iteration, 'fired', 'fired_at' (0 = not yet), 'wmv',
    'output': the output there}, else None. snapshots: {iteration: output}. interrupted: stopped
    before its last iteration. compile_s / step_s: of the batch it ran in (step_s: median
    seconds per iteration of that batch, after compilation). posterior: with SGLD,
    ``posterior_record``: {'samples', 'mean', 'std'}, else None."""

    index: int
    seed: int
    problem: object
    preset: object
    output: np.ndarray
    output_avg: np.ndarray
    history: list
    final: dict
    early_stop: Optional[dict] = None
    snapshots: dict = dataclasses.field(default_factory=dict)
    interrupted: bool = False
    compile_s: float = 0.0
    step_s: float = math.nan
    posterior: Optional[dict] = None

    @property
    def diverged(self) -> bool:
        """The last step's loss was NaN/Inf, or the outputs are not finite."""
        last = self.history[-1] if self.history else {}
        return bool(last.get("diverged")) or not np.isfinite(self.output).all()

    @property
    def iters_done(self) -> int:
        return self.history[-1]["iter"] if self.history else 0

    @property
    def key(self) -> tuple:
        return (self.index, self.seed)


@dataclasses.dataclass
class RunResult:
    """A run: its fits (ordered by problem, then seed), the strategy used, the shape groups
    (lists of problem indices), the batch sizes per group, the devices the vmapped fits were
    sharded over, notes said during planning, ``timing`` (seconds per part of the run, see
    ``dipjax.timing``), whether it was interrupted, and ``step_s``: the median seconds per
    fit-iteration over its batches."""

    fits: list
    strategy: str
    groups: list
    batches: list
    devices: int
    notes: list
    timing: dict
    interrupted: bool
    step_s: float

    @property
    def compile_s(self) -> float:
        return self.timing.get("compile", 0.0)


def final_metrics(
    problem, output, output_avg, early_stop: Optional[dict] = None, posterior=None
) -> dict:
    """PSNR/SSIM of the outputs (and of the early-stopping output and the posterior mean) and
    of the baseline against the ground truth, when known."""
    out = {}
    gt = problem.gt
    if gt is None:
        return out
    if early_stop is not None and early_stop["iter"] > 0:
        out["psnr_gt_es"] = psnr_np(early_stop["output"], gt)
    if posterior is not None and posterior["samples"] > 0:
        out["psnr_gt_post"] = psnr_np(posterior["mean"], gt)
    out["psnr_gt"] = psnr_np(output, gt)
    out["psnr_gt_avg"] = psnr_np(output_avg, gt)
    out["ssim"] = ssim(output, gt)
    out["ssim_avg"] = ssim(output_avg, gt)
    if problem.baseline is not None:
        out["psnr_baseline"] = psnr_np(problem.baseline, gt)
    return out


def early_stop_record(es: dict) -> Optional[dict]:
    """The detector's findings from one fit's ``FitState.es`` on the host (None when off);
    ``iter`` 0 and ``output`` None when it detected nothing (a run shorter than its window)."""
    if not es:
        return None
    found = int(es["best_iter"]) > 0
    return {
        "iter": int(es["best_iter"]),
        "fired": bool(es["fired"]),
        "fired_at": int(es["fired_at"]),
        "wmv": float(es["best_var"]),
        "output": clip01(es["best_out"][0]) if found else None,
    }


def posterior_record(post: dict) -> Optional[dict]:
    """The SGLD posterior of one fit from its ``FitState.post`` on the host (None when off):
    sample count, mean (H, W, C) clipped to [0, 1] and standard deviation (H, W, C)."""
    if not post:
        return None
    n = int(post["n"])
    m2 = np.asarray(post["m2"][0], np.float32)
    return {
        "samples": n,
        "mean": clip01(post["mean"][0]),
        "std": np.sqrt(np.maximum(m2, 0.0) / max(n, 1)).astype(np.float32),
    }


def clip01(x) -> np.ndarray:
    return np.clip(np.asarray(x, np.float32), 0.0, 1.0)
