"""From the user's files to Problems: load the images a run names, build each problem and check
that the preset's generator can fit it, before anything is written or compiled.

Every error names the file it is about.
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from dipjax import build, memory, tasks
from dipjax.io import InputError, default_image, load_image
from dipjax.presets import ParameterError


def problem_for(
    task: str,
    preset,
    image: Optional[np.ndarray],
    *,
    degrade: bool = False,
    seed: int = 0,
    gt=None,
    names: Optional[dict] = None,
    **extra,
):
    """The Problem of ``task`` (see ``tasks.prepare``). With ``image=None`` the packaged image
    (``preset.demo_side``) is used and degraded (and inpainting generates a text mask when the
    preset wants a file)."""
    if image is None:
        image, degrade = default_image(preset.demo_side), True
        if extra.get("mask") is None and preset.mask_kind == "file":
            preset = preset.replace(mask_kind="text")
    return tasks.prepare(
        task, preset, image, degrade=degrade, seed=seed, gt=gt, names=names, **extra
    )


def load_problems(
    preset, paths: list, *, degrade: bool, seed: int, mask=None, gt=None, flash=None, kernel=None
):
    """Problems for the image ``paths`` (None = the packaged image) sharing the other inputs
    (file paths or None). Returns (problems, warnings as lines)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shared = {
            k: (load_image(v) if v else None)
            for k, v in (("mask", mask), ("gt", gt), ("flash", flash), ("kernel", kernel))
        }
        names = {
            k: v for k, v in (("mask", mask), ("gt", gt), ("flash", flash), ("kernel", kernel)) if v
        }
        problems = []
        for path in paths:
            image = None
            try:
                image = load_image(path) if path else None
                prob = problem_for(
                    preset.task,
                    preset,
                    image,
                    degrade=degrade,
                    seed=seed,
                    names=dict(names, image=path or "image"),
                    **shared,
                )
                build.problem_arrays(prob, preset, seed)  # size and memory, before compiling
                if len(paths) > 1:  # whose note it is
                    prob.notes[:] = [f"{path or 'image'}: {n}" for n in prob.notes]
            except build.SizeError as e:
                raise InputError(_too_small(path, image, preset, degrade, e.side)) from None
            except memory.TooBig as e:
                raise InputError(_too_big(path, image, preset, degrade, e)) from None
            except ParameterError:
                raise  # a flag's value, named as such
            except InputError as e:
                msg = str(e)
                raise InputError(
                    msg if not path or str(path) in msg else f"{path}: {msg}"
                ) from None
            problems.append(prob)
    # ResourceWarnings are the garbage collector's about other code's files, not the inputs'
    return problems, [str(w.message) for w in caught if not issubclass(w.category, ResourceWarning)]


def _too_big(path, image, preset, degrade: bool, e) -> str:
    """The memory error in the user's terms: the file, its own size, about the largest it can
    be (a low-resolution input: the output's size over the scale)."""
    per = preset.scale if preset.task == "superres" and not degrade else 1
    size = "" if image is None else f" {image.shape[1]}x{image.shape[0]} pixels:"
    return (
        f"{path or 'image'}:{size} preset {preset.name} "
        f"{memory.budget(e.need, e.have)}; downscale or crop it to about "
        f"{e.fits[1] // per}x{e.fits[0] // per} or smaller"
    )


def _too_small(path, image, preset, degrade: bool, side: int) -> str:
    """The size error in the user's terms: the file, its own size, the smallest it can be."""
    lr_input = preset.task == "superres" and not degrade
    need = max(1, side // preset.scale) if lr_input else side
    h, w = image.shape[:2] if image is not None else (0, 0)
    what = "a low-resolution input" if lr_input else "an image"
    return (
        f"{path or 'image'}: {w}x{h} pixels is too small for preset {preset.name}, which "
        f"needs {what} of at least {need}x{need}"
    )
