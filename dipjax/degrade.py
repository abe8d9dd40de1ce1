"""Degradations that make a test problem from a clean image (noise, JPEG, masks) and the
check every mask passes. Images are float32 (H, W, C) in [0, 1]; masks (H, W, 1), 1 = known.
"""

from __future__ import annotations

import io as _io
import warnings
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dipjax.io import InputError, to_pil


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
        draw.text(
            (size // 2, y),
            (text + "  ") * (1 + w // (size * len(text) // 2 + 1)),
            fill=0,
            font=font,
        )
    return (np.asarray(pil, np.float32) / 255.0 > 0.5).astype(np.float32)[..., None]


def rect_mask(hw, frac: float = 0.25) -> np.ndarray:
    """(H, W, 1) mask with a centred rectangle of side ``frac`` * size missing."""
    h, w = hw
    m = np.ones((h, w, 1), np.float32)
    rh, rw = max(1, int(h * frac)), max(1, int(w * frac))
    m[(h - rh) // 2 : (h + rh) // 2, (w - rw) // 2 : (w + rw) // 2] = 0
    return m


def binarize_mask(mask: np.ndarray, path="mask") -> np.ndarray:
    """Threshold the channel mean at 0.5 (1 = known), warning when the mask is not binary.
    Refuses a mask with no known pixel."""
    mean = mask.mean(axis=-1, keepdims=True)
    if not np.isin(mean, (0.0, 1.0)).all():
        warnings.warn(
            f"{path}: mask is not binary; thresholded at 0.5 (white = known)", stacklevel=2
        )
    m = (mean > 0.5).astype(np.float32)
    if m.sum() == 0:
        raise InputError(f"{path}: the mask marks no pixel as known (all values <= 0.5)")
    return m


def synthetic_flash_pair(img: np.ndarray, rng: np.random.Generator):
    """A stand-in pair from one clean image: a dim, noisy, warm 'no-flash' shot and a bright,
    cold, sharp 'flash' shot. Returns (noflash, flash, clean)."""
    warm = np.array([1.0, 0.8, 0.6], np.float32)[: img.shape[-1]]
    noflash = np.clip(0.5 * img * warm + rng.normal(0, 0.06, img.shape), 0, 1)
    flash = np.clip(img**0.6 * np.array([0.85, 0.95, 1.0], np.float32)[: img.shape[-1]], 0, 1)
    return noflash.astype(np.float32), flash.astype(np.float32), (0.5 * img * warm)
