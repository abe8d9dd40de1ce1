"""The Python API, a facade over the engine.

import dipjax
res = dipjax.fit_image("denoise", "noisy.png", preset="denoise-fast")
res.output_avg  # (H, W, C) float32 in [0, 1]

problem = dipjax.prepare("denoise", preset, image)          # a Problem
run = dipjax.run([problem], preset, seeds=[0, 1, 2, 3])     # many fits, one engine
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import numpy as np

from dipjax import tasks
from dipjax.engine import fit_problem, run
from dipjax.io import InputError, default_image
from dipjax.presets import FAST_DEFAULT, get_preset
from dipjax.results import FitResult, RunResult
from dipjax.sources import problem_for as prepare

__all__ = [
    "FitResult",
    "RunResult",
    "default_image",
    "fit_image",
    "fit_operator",
    "fit_problem",
    "operator_problem",
    "prepare",
    "run",
]


def fit_image(
    task: str,
    image=None,
    *,
    preset: Optional[str] = None,
    mask=None,
    gt=None,
    flash=None,
    kernel=None,
    degrade: bool = False,
    seed: int = 0,
    iters: Optional[int] = None,
    lr: Optional[float] = None,
    chunk: int = 0,
    **overrides,
) -> FitResult:
    """Restore one image. ``image``/``mask``/``gt``/``flash``/``kernel``: arrays (H, W, C) in
    [0, 1] or paths (None: the packaged image, degraded). ``preset``: a name from
    ``dipjax.presets.PRESETS`` (default: the task's fast preset). Other keyword arguments
    override preset fields (e.g. ``reg_noise_std=0``, ``precision="bf16"``)."""
    p = get_preset(preset or FAST_DEFAULT.get(task, ""), task).replace(
        iters=iters, lr=lr, **overrides
    )
    problem = prepare(
        task, p, image, mask=mask, gt=gt, flash=flash, kernel=kernel, degrade=degrade, seed=seed
    )
    return fit_problem(problem, p, seed=seed, chunk=chunk)


def operator_problem(
    operator: Callable, measurement, shape, *, gt=None, baseline=None
) -> tasks.Problem:
    """A problem for any forward operator: the fit minimises loss(operator(x), measurement)
    over images x = net(z) of ``shape`` (H, W, C) in [0, 1].

    ``operator``: a jittable function from an image (H, W, C) to a measurement (any shape,
    linear or not); ``measurement``: that measurement, an array; ``gt`` (H, W, C) to score
    against; ``baseline`` (H, W, C): a trivial reconstruction, scored when ``gt`` is given
    (clipped to [0, 1]). Arrays as ``dipjax.tasks.as_unit_image`` takes them."""
    if len(tuple(shape)) != 3 or not all(int(v) > 0 for v in shape):
        raise InputError(f"shape {tuple(shape)}: the image's (H, W, C), three positive sizes")
    h, w, c = (int(v) for v in shape)
    y = np.asarray(measurement, np.float32)
    if not np.isfinite(y).all():
        raise InputError("measurement: holds NaN or infinite values")
    want = jax.eval_shape(operator, jax.ShapeDtypeStruct((h, w, c), jax.numpy.float32))
    if tuple(want.shape) != y.shape:
        raise InputError(
            f"operator maps a {h}x{w}x{c} image to shape {tuple(want.shape)}, "
            f"but the measurement has shape {y.shape}"
        )
    images = {
        "gt": tasks.as_unit_image(gt, "gt"),
        "baseline": tasks.as_unit_image(baseline, "baseline", clip=True),
    }
    for name, a in images.items():
        if a is not None and a.shape != (h, w, c):
            raise InputError(f"{name}: shape {a.shape}; the image's is {(h, w, c)}")
    return tasks.Problem(
        "custom",
        tasks.Measure("custom", custom=operator),
        y,
        (h, w),
        **images,
        out_channels=c,
    )


def fit_operator(
    operator: Callable,
    measurement,
    shape,
    *,
    preset: str = "denoise-fast",
    gt=None,
    baseline=None,
    seed: int = 0,
    chunk: int = 0,
    **overrides,
) -> FitResult:
    """Deep Image Prior for your own inverse problem (see ``operator_problem``), with the
    generator and optimiser of ``preset`` and any of its fields overridden by keyword."""
    p = get_preset(preset).replace(**overrides)
    problem = operator_problem(operator, measurement, shape, gt=gt, baseline=baseline)
    return fit_problem(problem, p, seed=seed, chunk=chunk)
