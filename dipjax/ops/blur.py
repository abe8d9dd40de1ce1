"""Blur kernels and the blur operator of the deblurring task.

``blur`` is a true 2-D convolution (the kernel flipped) of each channel with one kernel, with
reflection padding so the output has the input's size; the same function degrades a clean image
and serves as the forward operator inside the jitted step.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def gaussian_kernel(sigma: float, radius: int | None = None) -> np.ndarray:
    """(2r+1, 2r+1) float64 Gaussian of std ``sigma`` pixels, r = ceil(3 sigma), summing to 1."""
    if sigma <= 0:
        raise ValueError(f"blur sigma must be > 0, got {sigma}")
    r = int(math.ceil(3 * sigma)) if radius is None else radius
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    k = np.outer(g, g)
    return k / k.sum()


def parse_blur(spec: str) -> np.ndarray:
    """'gauss:SIGMA' -> its kernel; raises ValueError with the reason otherwise."""
    kind, _, arg = spec.partition(":")
    if kind != "gauss" or not arg:
        raise ValueError(f"blur must be 'gauss:SIGMA' (e.g. gauss:2), got {spec!r}")
    try:
        sigma = float(arg)
    except ValueError:
        raise ValueError(f"blur sigma must be a number, got {arg!r}") from None
    return gaussian_kernel(sigma)


def blur(x: jax.Array, kernel) -> jax.Array:
    """x: (N, H, W, C); kernel: (kh, kw) summing to 1 -> (N, H, W, C). Needs kh, kw <= H, W."""
    k = jnp.asarray(np.asarray(kernel, np.float32)[::-1, ::-1])
    kh, kw = k.shape
    c = x.shape[-1]
    x = jnp.pad(
        x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)), mode="reflect"
    )
    w = jnp.tile(k[:, :, None, None], (1, 1, 1, c))
    return jax.lax.conv_general_dilated(
        x,
        w,
        (1, 1),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
        precision=jax.lax.Precision.HIGHEST,
    )
