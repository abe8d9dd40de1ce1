"""Tasks: how an image is degraded, what the net's output is compared with, and the baseline.

A task turns user images into a ``Problem`` (numpy arrays, float32 (H, W, C) in [0, 1]) and a
``Measure`` (the forward operator, hashable so it can live in a jitted step's closure).
"""
from __future__ import annotations

import dataclasses
import io as _io
import warnings
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dipjax.io import InputError, bicubic_upscale, crop_to_multiple, sr_pair, to_pil
from dipjax.ops.blur import blur, parse_blur
from dipjax.ops.downsampler import Downsampler

TASKS = ("denoise", "superres", "inpaint", "restore", "flash-no-flash", "deblur")
NOISES = ("gauss", "saltpepper", "jpeg")
MASK_KINDS = ("file", "text", "random", "rect")


@dataclasses.dataclass(frozen=True)
class Measure:
    """The forward operator A: the loss compares A(output) with the measured image.

    kind ``identity`` (denoise, flash), ``mask`` (out * mask: inpaint, restore), ``downsample``
    (the reference's Lanczos downsampler: superres) or ``blur`` (convolution with
    ``blur_kernel``, a tuple of rows: deblur). ``custom`` is any jittable
    f(image (H, W, C)) -> measurement (any shape), with ``target`` then holding the measurement.
    """

    kind: str = "identity"
    factor: int = 1
    kernel: str = "lanczos2"
    custom: Optional[Callable] = None
    blur_kernel: tuple = ()

    def __call__(self, out: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
        if self.kind == "identity":
            return out
        if self.kind == "mask":
            return out * mask
        if self.kind == "downsample":
            return Downsampler(self.factor, self.kernel, phase=0.5, preserve_size=True)(out)
        if self.kind == "blur":
            return blur(out, self.blur_kernel)
        if self.kind == "custom":
            return jax.vmap(self.custom)(out)
        raise ValueError(f"unknown measure kind {self.kind!r}")


@dataclasses.dataclass
class Problem:
    """Everything a fit needs, as arrays.

    target: (h, w, C) measurement (noisy image, LR image, masked image, no-flash image).
    mask: (H, W, 1 or C) of 0/1, or None. gt: (H, W, C) clean image, or None.
    degraded: what to show as the input. baseline: the trivial restoration (noisy input,
    bicubic upscale, masked input), or None. net_image: (H, W, C) image fed to the net instead
    of noise (flash-no-flash), else None. out_hw: the output size (H, W). out_channels: the
    output's channels when they differ from the target's last axis (custom operators).
    """

    task: str
    measure: Measure
    target: np.ndarray
    out_hw: tuple
    mask: Optional[np.ndarray] = None
    gt: Optional[np.ndarray] = None
    degraded: Optional[np.ndarray] = None
    baseline: Optional[np.ndarray] = None
    net_image: Optional[np.ndarray] = None
    notes: list = dataclasses.field(default_factory=list)
    out_channels: Optional[int] = None

    @property
    def channels(self) -> int:
        return self.out_channels or self.target.shape[-1]


def add_gaussian_noise(img: np.ndarray, sigma255: float, rng: np.random.Generator) -> np.ndarray:
    """``clip(img + N(0, sigma/255), 0, 1)`` as the reference's ``get_noisy_image``."""
    return np.clip(img + rng.normal(0, sigma255 / 255.0, img.shape), 0, 1).astype(np.float32)


def add_salt_pepper(img: np.ndarray, density: float, rng: np.random.Generator) -> np.ndarray:
    """Set a fraction ``density`` of pixels (all channels) to 0 or 1 with equal odds."""
    u = rng.random(img.shape[:2])
    out = img.copy()
    out[u < density / 2] = 0.0
    out[(u >= density / 2) & (u < density)] = 1.0
    return out


def jpeg_compress(img: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through Pillow's JPEG encoder at ``quality`` (1-95)."""
    buf = _io.BytesIO()
    to_pil(img).save(buf, format="JPEG", quality=int(quality))
    arr = np.asarray(Image.open(buf), np.float32) / 255.0
    return arr[..., None] if arr.ndim == 2 else arr


def bernoulli_mask(hw, keep: float, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 1) mask, 1 = known pixel with probability ``keep`` (same for every channel)."""
    return (rng.random(hw) < keep).astype(np.float32)[..., None]


def text_mask(hw, text: str = "hello world", size: Optional[int] = None) -> np.ndarray:
    """(H, W, 1) mask with ``text`` written repeatedly in 0 (unknown) over 1."""
    h, w = hw
    pil = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(pil)
    size = size or max(10, h // 12)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has a fixed-size default font
        font = ImageFont.load_default()
    for y in range(size // 2, h, 2 * size):
        draw.text((size // 2, y), (text + "  ") * (1 + w // (size * len(text) // 2 + 1)),
                  fill=0, font=font)
    return (np.asarray(pil, np.float32) / 255.0 > 0.5).astype(np.float32)[..., None]


def rect_mask(hw, frac: float = 0.25) -> np.ndarray:
    """(H, W, 1) mask with a centred rectangle of side ``frac`` * size missing."""
    h, w = hw
    m = np.ones((h, w, 1), np.float32)
    rh, rw = max(1, int(h * frac)), max(1, int(w * frac))
    m[(h - rh) // 2: (h + rh) // 2, (w - rw) // 2: (w + rw) // 2] = 0
    return m


def binarize_mask(mask: np.ndarray, path="mask") -> np.ndarray:
    """Threshold the channel mean at 0.5 (1 = known), warning when the mask is not binary.
    Refuses a mask with no known pixel."""
    mean = mask.mean(axis=-1, keepdims=True)
    if not np.isin(mean, (0.0, 1.0)).all():
        warnings.warn(f"{path}: mask is not binary; thresholded at 0.5 (white = known)",
                      stacklevel=2)
    m = (mean > 0.5).astype(np.float32)
    if m.sum() == 0:
        raise InputError(f"{path}: the mask marks no pixel as known (all values <= 0.5)")
    return m


def prepare_denoise(image, *, gt=None, degrade=False, noise="gauss", sigma=25.0, density=0.1,
                    quality=10, crop=32, rng=None) -> Problem:
    """``image`` is noisy, or clean with ``degrade`` (it becomes the ground truth)."""
    notes = []
    image = _crop(image, crop, notes)
    if degrade:
        gt = image
        if noise == "gauss":
            image = add_gaussian_noise(image, sigma, rng)
        elif noise == "saltpepper":
            image = add_salt_pepper(image, density, rng)
        elif noise == "jpeg":
            image = jpeg_compress(image, quality)
        else:
            raise InputError(f"--noise must be one of {NOISES}, got {noise!r}")
    elif gt is not None:
        gt = _crop(gt, crop, [])
    return Problem("denoise", Measure(), image, image.shape[:2], gt=gt, degraded=image,
                   baseline=image, notes=notes)


def prepare_superres(image, *, gt=None, degrade=False, scale=4, kernel="lanczos2", crop=32,
                     rng=None) -> Problem:
    """With ``degrade``, ``image`` is the high-resolution truth: cropped to a multiple of
    ``crop`` and downscaled as the reference does. Else ``image`` is the low-resolution input and
    the output is ``scale`` times larger."""
    notes = []
    if degrade:
        gt, lr = sr_pair(image, scale, crop)
        if gt.shape[:2] != image.shape[:2]:
            notes.append(f"cropped {image.shape[1]}x{image.shape[0]} to {gt.shape[1]}x"
                         f"{gt.shape[0]} (a multiple of {crop}) as the reference does")
    else:
        lr = image
        if gt is not None and gt.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
            raise InputError(f"--gt: size {gt.shape[1]}x{gt.shape[0]} is not {scale}x the input "
                             f"{lr.shape[1]}x{lr.shape[0]}")
    hw = (lr.shape[0] * scale, lr.shape[1] * scale)
    return Problem("superres", Measure("downsample", scale, kernel), lr, hw, gt=gt,
                   degraded=bicubic_upscale(lr, hw), baseline=bicubic_upscale(lr, hw),
                   notes=notes)


def prepare_masked(task, image, *, mask=None, gt=None, degrade=False, mask_kind="file",
                   keep=0.5, crop=64, pad=0, rng=None) -> Problem:
    """Inpainting / restoration: the loss sees only pixels where ``mask`` is 1."""
    notes = []
    if pad:
        image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        mask = None if mask is None else np.pad(mask, ((pad, pad), (pad, pad), (0, 0)), "reflect")
        gt = None if gt is None else np.pad(gt, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    image = _crop(image, crop, notes)
    hw = image.shape[:2]
    if mask is None:
        if mask_kind == "file":
            raise InputError(f"--task {task} needs --mask FILE or a generated --mask-kind "
                             f"({', '.join(MASK_KINDS[1:])})")
        mask = {"text": lambda: text_mask(hw), "random": lambda: bernoulli_mask(hw, keep, rng),
                "rect": lambda: rect_mask(hw)}[mask_kind]()
        degrade = True
    else:
        mask = binarize_mask(_crop(mask, crop, []))
        if mask.shape[:2] != hw:
            raise InputError(f"--mask: size {mask.shape[1]}x{mask.shape[0]} differs from the "
                             f"image's {hw[1]}x{hw[0]}")
    if degrade:
        gt = image
    elif gt is not None:
        gt = _crop(gt, crop, [])
    target = image * mask
    return Problem(task, Measure("mask"), target.astype(np.float32), hw, mask=mask, gt=gt,
                   degraded=target, baseline=target, notes=notes)


def prepare_flash(noflash, flash, *, gt=None, crop=32) -> Problem:
    """The flash image is the net's input, the no-flash image its target."""
    notes = []
    noflash = _crop(noflash, crop, notes)
    flash = _crop(flash, crop, [])
    if flash.shape[:2] != noflash.shape[:2]:
        raise InputError(f"--flash: size {flash.shape[1]}x{flash.shape[0]} differs from the "
                         f"no-flash image's {noflash.shape[1]}x{noflash.shape[0]}")
    return Problem("flash-no-flash", Measure(), noflash, noflash.shape[:2], gt=gt,
                   degraded=noflash, baseline=noflash, net_image=flash, notes=notes)


def blur_kernel(blur_spec: str = "gauss:2", kernel: Optional[np.ndarray] = None,
                path: str = "--kernel") -> np.ndarray:
    """The deblurring kernel: ``kernel`` (an image, channels averaged, scaled to sum 1) or the
    Gaussian named by ``blur_spec``."""
    if kernel is None:
        try:
            return parse_blur(blur_spec)
        except ValueError as e:
            raise InputError(f"--blur: {e}") from None
    k = np.asarray(kernel, np.float64)
    k = k.mean(-1) if k.ndim == 3 else k
    if not np.isfinite(k).all() or k.min() < 0 or k.sum() <= 0:
        raise InputError(f"{path}: the kernel image is all black (nothing to normalise)")
    return k / k.sum()


def prepare_deblur(image, *, kernel: np.ndarray, gt=None, degrade=False, sigma=0.0, crop=32,
                   rng=None) -> Problem:
    """``image`` is blurred, or clean with ``degrade`` (then blurred by ``kernel`` and given
    Gaussian noise of std ``sigma``/255). The loss compares blur(output) with the image."""
    notes = []
    image = _crop(image, crop, notes)
    kh, kw = kernel.shape
    if kh > image.shape[0] or kw > image.shape[1]:
        raise InputError(f"blur kernel {kw}x{kh} is larger than the image "
                         f"{image.shape[1]}x{image.shape[0]}")
    measure = Measure("blur", blur_kernel=tuple(map(tuple, np.asarray(kernel, np.float64))))
    if degrade:
        gt = image
        image = np.asarray(measure(jnp.asarray(image[None])))[0]
        if sigma:
            image = add_gaussian_noise(image, sigma, rng)
        image = np.clip(image, 0, 1).astype(np.float32)
    elif gt is not None:
        gt = _crop(gt, crop, [])
    return Problem("deblur", measure, image, image.shape[:2], gt=gt, degraded=image,
                   baseline=image, notes=notes)


def total_variation(x: jax.Array) -> jax.Array:
    """Anisotropic total variation of (N, H, W, C): mean |vertical difference| + mean
    |horizontal difference| (the DIP-TV regulariser)."""
    return (jnp.mean(jnp.abs(x[:, 1:] - x[:, :-1]))
            + jnp.mean(jnp.abs(x[:, :, 1:] - x[:, :, :-1])))


def _crop(img, d, notes):
    if not d:
        return img
    out = crop_to_multiple(img, d)
    if out.shape[:2] != img.shape[:2]:
        notes.append(f"cropped {img.shape[1]}x{img.shape[0]} to {out.shape[1]}x{out.shape[0]} "
                     f"(a multiple of {d}) as the reference does")
    return out


def loss_fn(name: str) -> Callable:
    """Mean over all elements of the squared ('mse') or absolute ('l1') difference."""
    if name == "mse":
        return lambda a, b: jnp.mean(jnp.square(a - b))
    if name == "l1":
        return lambda a, b: jnp.mean(jnp.abs(a - b))
    raise ValueError(f"loss must be 'mse' or 'l1', got {name!r}")
