"""Tasks: what the net's output is compared with, the baseline, and the task registry.

A task turns user images into a ``Problem`` (numpy arrays, float32 (H, W, C) in [0, 1]) and a
``Measure`` (the forward operator, hashable so it can live in a jitted step's closure).
``prepare(task, preset, image, ...)`` dispatches through ``PREPARE``, one entry per task; a new
task is a ``prepare_*`` function added there (and a preset in ``dipjax.presets``).

Error messages name an input by its role ('image', 'mask', 'gt', 'flash', 'kernel') or, when
the caller passes ``names={'mask': 'm.png'}``, by the file it came from.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import jax.numpy as jnp
import numpy as np

from dipjax import degrade as deg
from dipjax.io import InputError, bicubic_upscale, crop_to_multiple, load_image, sr_pair
from dipjax.ops.blur import parse_blur
from dipjax.problem import Measure as Measure
from dipjax.problem import Problem as Problem
from dipjax.problem import loss_fn as loss_fn
from dipjax.problem import total_variation as total_variation

TASKS = ("denoise", "superres", "inpaint", "restore", "flash-no-flash", "deblur")
NOISES = ("gauss", "saltpepper", "jpeg")
MASK_KINDS = ("file", "text", "random", "rect")


def _name(names: dict, role: str) -> str:
    return str(names.get(role) or role)


def _same_size(a, b, role_a: str, what_b: str, names: dict) -> None:
    if a is not None and a.shape[:2] != b.shape[:2]:
        raise InputError(
            f"{_name(names, role_a)}: size {a.shape[1]}x{a.shape[0]} differs from "
            f"the {what_b}'s {b.shape[1]}x{b.shape[0]}"
        )


def prepare_denoise(image, p, *, gt=None, degrade=False, rng=None, names=None) -> Problem:
    """``image`` is noisy, or clean with ``degrade`` (it becomes the ground truth): noise
    ``p.noise`` ('gauss' of std ``p.sigma``/255, 'saltpepper' on ``p.density`` of the pixels,
    'jpeg' at ``p.quality``)."""
    names, notes = names or {}, []
    _same_size(gt, image, "gt", "image", names)
    image = _crop(image, p.crop, notes)
    if degrade:
        gt = image
        image = {
            "gauss": lambda: deg.add_gaussian_noise(image, p.sigma, rng),
            "saltpepper": lambda: deg.add_salt_pepper(image, p.density, rng),
            "jpeg": lambda: deg.jpeg_compress(image, p.quality),
        }[p.noise]()
    elif gt is not None:
        gt = _crop(gt, p.crop, [])
    return Problem(
        "denoise",
        Measure(),
        image,
        image.shape[:2],
        gt=gt,
        degraded=image,
        baseline=image,
        notes=notes,
    )


def prepare_superres(image, p, *, gt=None, degrade=False, rng=None, names=None) -> Problem:
    """With ``degrade``, ``image`` is the high-resolution truth: cropped to a multiple of
    ``p.crop`` and downscaled as the reference does. Else ``image`` is the low-resolution input
    and the output is ``p.scale`` times larger."""
    names, notes, scale = names or {}, [], p.scale
    if degrade:
        multiple = math.lcm(p.crop or 1, scale)  # the low-resolution image's size times scale
        gt, lr = sr_pair(image, scale, multiple)
        if gt.shape[:2] != image.shape[:2]:
            notes.append(
                f"cropped {image.shape[1]}x{image.shape[0]} to {gt.shape[1]}x"
                f"{gt.shape[0]} (a multiple of {multiple}) as the reference does"
            )
    else:
        lr = image
        if gt is not None and gt.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
            raise InputError(
                f"{_name(names, 'gt')}: size {gt.shape[1]}x{gt.shape[0]} is not "
                f"{scale}x the input {lr.shape[1]}x{lr.shape[0]}"
            )
    hw = (lr.shape[0] * scale, lr.shape[1] * scale)
    up = bicubic_upscale(lr, hw)
    return Problem(
        "superres",
        Measure("downsample", scale, p.sr_kernel),
        lr,
        hw,
        gt=gt,
        degraded=up,
        baseline=up,
        notes=notes,
    )


def prepare_masked(
    task, image, p, *, mask=None, gt=None, degrade=False, rng=None, names=None
) -> Problem:
    """Inpainting / restoration: the loss sees only pixels where the mask is 1. ``mask``: any
    image (thresholded once here, 1 = known) or None for the mask ``p.mask_kind`` makes."""
    names, notes, pad = names or {}, [], p.pad
    _same_size(mask, image, "mask", "image", names)
    _same_size(gt, image, "gt", "image", names)
    if pad:
        reflect = lambda a: (
            None if a is None else np.pad(a, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        )
        image, mask, gt = reflect(image), reflect(mask), reflect(gt)
    image = _crop(image, p.crop, notes)
    hw = image.shape[:2]
    if mask is None:
        if p.mask_kind == "file":
            raise InputError(
                f"task {task} needs a mask (a file) or a generated mask kind "
                f"({', '.join(MASK_KINDS[1:])})"
            )
        mask = {
            "text": lambda: deg.text_mask(hw),
            "random": lambda: deg.bernoulli_mask(hw, p.keep, rng),
            "rect": lambda: deg.rect_mask(hw),
        }[p.mask_kind]()
        if mask.sum() == 0:
            raise InputError(
                f"mask kind {p.mask_kind} with keep {p.keep:g} keeps no pixel of "
                f"the {hw[1]}x{hw[0]} image: raise keep"
            )
        degrade = True
    else:
        mask = deg.binarize_mask(_crop(mask, p.crop, []), _name(names, "mask"))
        if mask.min() > 0.5:
            where = " inside the crop" if notes else ""
            raise InputError(
                f"{_name(names, 'mask')}: the mask marks no pixel to fill{where} (all white); "
                f"paint or draw in black the region to fill"
            )
    if degrade:
        gt = image
    elif gt is not None:
        gt = _crop(gt, p.crop, [])
    target = image * mask
    return Problem(
        task,
        Measure("mask"),
        target.astype(np.float32),
        hw,
        mask=mask,
        gt=gt,
        degraded=target,
        baseline=target,
        notes=notes,
    )


def prepare_flash(
    noflash, p, *, flash=None, gt=None, degrade=False, rng=None, names=None
) -> Problem:
    """The flash image is the net's input, the no-flash image its target. Without ``flash`` and
    with ``degrade``, a synthetic pair is made from ``noflash`` (a clean image)."""
    names, notes = names or {}, []
    if flash is None:
        if not degrade:
            raise InputError(
                "task flash-no-flash needs the flash photo (--flash FILE; flash= in the API)"
            )
        noflash, flash, gt = deg.synthetic_flash_pair(noflash, rng)
    _same_size(flash, noflash, "flash", "no-flash image", names)
    _same_size(gt, noflash, "gt", "no-flash image", names)
    noflash = _crop(noflash, p.crop, notes)
    flash = _crop(flash, p.crop, [])
    gt = None if gt is None else _crop(gt, p.crop, [])
    return Problem(
        "flash-no-flash",
        Measure(),
        noflash,
        noflash.shape[:2],
        gt=gt,
        degraded=noflash,
        baseline=noflash,
        net_image=flash,
        notes=notes,
    )


def blur_kernel(
    blur_spec: str = "gauss:2", kernel: Optional[np.ndarray] = None, name: str = "kernel"
) -> np.ndarray:
    """The deblurring kernel (kh, kw) float64 summing to 1: ``kernel`` (an image, channels
    averaged, scaled to sum 1) or the Gaussian named by ``blur_spec``."""
    if kernel is None:
        try:
            return parse_blur(blur_spec)
        except ValueError as e:
            raise InputError(f"blur {blur_spec!r}: {e}") from None
    k = np.asarray(kernel, np.float64)
    k = k.mean(-1) if k.ndim == 3 else k
    if not np.isfinite(k).all() or k.min() < 0 or k.sum() <= 0:
        raise InputError(f"{name}: the kernel image is all black (nothing to normalise)")
    return k / k.sum()


def prepare_deblur(
    image, p, *, kernel=None, gt=None, degrade=False, rng=None, names=None
) -> Problem:
    """``image`` is blurred, or clean with ``degrade`` (then blurred and given Gaussian noise of
    std ``p.sigma``/255). The blur: ``kernel`` (an image, normalised here) or ``p.blur``. The loss
    compares blur(output) with the image."""
    names, notes = names or {}, []
    _same_size(gt, image, "gt", "image", names)
    kernel = blur_kernel(p.blur, kernel, _name(names, "kernel"))
    image = _crop(image, p.crop, notes)
    kh, kw = kernel.shape
    if kh > image.shape[0] or kw > image.shape[1]:
        raise InputError(
            f"blur kernel {kw}x{kh} is larger than the image {image.shape[1]}x{image.shape[0]}"
        )
    measure = Measure("blur", blur_kernel=tuple(map(tuple, np.asarray(kernel, np.float64))))
    if degrade:
        gt = image
        image = np.asarray(measure(jnp.asarray(image[None])))[0]
        if p.sigma:
            image = deg.add_gaussian_noise(image, p.sigma, rng)
        image = np.clip(image, 0, 1).astype(np.float32)
    elif gt is not None:
        gt = _crop(gt, p.crop, [])
    return Problem(
        "deblur",
        measure,
        image,
        image.shape[:2],
        gt=gt,
        degraded=image,
        baseline=image,
        notes=notes,
    )


PREPARE = {
    "denoise": prepare_denoise,
    "superres": prepare_superres,
    "inpaint": lambda image, p, **kw: prepare_masked("inpaint", image, p, **kw),
    "restore": lambda image, p, **kw: prepare_masked("restore", image, p, **kw),
    "flash-no-flash": prepare_flash,
    "deblur": prepare_deblur,
}
# The optional inputs each task reads besides the image (the CLI refuses the others).
EXTRA_INPUTS = {
    "inpaint": ("mask",),
    "restore": ("mask",),
    "flash-no-flash": ("flash",),
    "deblur": ("kernel",),
}


def prepare(
    task: str,
    preset,
    image: np.ndarray,
    *,
    degrade: bool = False,
    seed: int = 0,
    gt=None,
    names: Optional[dict] = None,
    **extra,
) -> Problem:
    """The Problem of ``task`` for ``image`` (an array or a path, see ``as_unit_image``) with
    the preset's degradation settings. ``extra``: the task's optional inputs (``mask``,
    ``flash``, ``kernel``: arrays, file paths or None). Degradations draw from
    ``numpy.random.default_rng(seed)``."""
    if task not in PREPARE:
        raise InputError(f"task {task!r}: unknown; one of {', '.join(TASKS)}")
    from dipjax.presets import check_task  # lazily: importing tasks stays light

    check_task(preset, task)
    unused = sorted(
        k for k, v in extra.items() if v is not None and k not in EXTRA_INPUTS.get(task, ())
    )
    if unused:
        raise InputError(f"{', '.join(unused)}: not used by task {task}")
    kw = {k: _input(v, k, names) for k, v in extra.items() if v is not None}
    image, gt = as_unit_image(image, "image", names), as_unit_image(gt, "gt", names)
    return PREPARE[task](
        image, preset, gt=gt, degrade=degrade, rng=np.random.default_rng(seed), names=names, **kw
    )


def _input(x, role: str, names: Optional[dict]):
    """An input as ``as_unit_image`` takes it; a kernel array as it is (scaled to sum 1 later),
    a kernel file read as an image."""
    if role != "kernel":
        return as_unit_image(x, role, names)
    return load_image(x) if isinstance(x, (str, os.PathLike)) else x


# Integer pixel types and the value of their white.
_WHITE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(bool): 1.0}


def as_unit_image(
    x, role: str, names: Optional[dict] = None, clip: bool = False
) -> Optional[np.ndarray]:
    """An image given as an array (or a file's path, read by ``load_image``) -> float32
    (H, W, C) in [0, 1]: 8- and 16-bit integers (as imageio and PIL give them) are scaled by
    255 / 65535, booleans and other integers of 0 and 1 alone taken as they are, a 2-D array
    gets one channel; floats (bfloat16 included) must already lie in [0, 1] (within 1e-3, then
    clipped), or with ``clip`` (a reconstruction, not an input) are clipped whatever their
    range. Anything else raises ``InputError`` naming the input."""
    if x is None:
        return None
    if isinstance(x, (str, os.PathLike)):
        return load_image(x)
    a = np.asarray(x)
    what = _name(names or {}, role)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or 0 in a.shape:
        raise InputError(f"{what}: an array of shape {a.shape}; expected (H, W) or (H, W, C)")
    if a.dtype in _WHITE:
        return (a / _WHITE[a.dtype]).astype(np.float32)
    if np.issubdtype(a.dtype, np.integer) and np.isin(a, (0, 1)).all():
        return a.astype(np.float32)
    if a.dtype.name == "bfloat16":
        a = a.astype(np.float32)
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(
            f"{what}: an array of {a.dtype}; pass uint8 (0-255), uint16 (0-65535) "
            "or floats in [0, 1]"
        )
    if not np.isfinite(a).all():
        raise InputError(f"{what}: the array holds NaN or infinite values")
    lo, hi = float(a.min()), float(a.max())
    if not clip and (lo < -1e-3 or hi > 1 + 1e-3):
        hint = " (divide 8-bit values by 255)" if hi <= 255 else ""
        raise InputError(f"{what}: float values in [{lo:g}, {hi:g}], expected [0, 1]{hint}")
    return np.clip(a, 0, 1).astype(np.float32)


def _crop(img, d, notes):
    if not d:
        return img
    out = crop_to_multiple(img, d)
    if out.shape[:2] != img.shape[:2]:
        notes.append(
            f"cropped {img.shape[1]}x{img.shape[0]} to {out.shape[1]}x{out.shape[0]} "
            f"(a multiple of {d}) as the reference does"
        )
    return out
