"""Image quality measures, dynamic range 1 (images in [0, 1])."""

from __future__ import annotations

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np


def psnr(a: jax.Array, b: jax.Array) -> jax.Array:
    """PSNR in dB over all elements of (1, H, W, C) or (H, W, C) arrays (no clipping, as the
    reference logs it); arrays of other ranks (custom measurements) are flattened. Scalar."""
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    if a.ndim not in (3, 4):
        a, b = a.reshape(1, -1, 1), b.reshape(1, -1, 1)
    return jnp.reshape(pix.psnr(a, b), (-1,))[0]


def psnr_np(a: np.ndarray, b: np.ndarray) -> float:
    """Host-side PSNR in float64, as ``skimage``'s ``peak_signal_noise_ratio`` with range 1."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


# One compiled function, not dm-pix's operations one by one: 0.3 s to compile (and kept by the
# compile cache) against 1.5 s of small compilations in every process.
_ssim = jax.jit(pix.ssim)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two (H, W, C) images in [0, 1] (dm-pix, Gaussian window 11, sigma 1.5)."""
    return float(_ssim(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)))


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma in [16/255, 235/255] from RGB in [0, 1], as MATLAB's rgb2ycbcr."""
    img = np.asarray(img, np.float64)
    return (16.0 + 65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0


def psnr_sr(out: np.ndarray, gt: np.ndarray, border: int = 4) -> float:
    """Super-resolution PSNR as the reference's evaluation script scored the paper's tables:
    luma only (``rgb_to_y``), range 1, without ``border`` pixels at the top and left and
    ``border`` + 1 at the bottom and right (the script's slices end one pixel short).
    ``out``, ``gt``: (H, W, 3) in [0, 1], the region the fit produced."""
    h, w = gt.shape[:2]
    rows, cols = slice(border, h - 1 - border), slice(border, w - 1 - border)
    return psnr_np(rgb_to_y(out)[rows, cols], rgb_to_y(gt)[rows, cols])
