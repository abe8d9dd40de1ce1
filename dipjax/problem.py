"""What a fit is asked to do: the ``Problem`` (arrays) and its forward operator ``Measure``, the
losses, and the total-variation regulariser. ``dipjax.tasks`` makes Problems from images."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dipjax.ops.blur import blur
from dipjax.ops.downsampler import Downsampler


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


def total_variation(x: jax.Array) -> jax.Array:
    """Anisotropic total variation of (N, H, W, C): mean |vertical difference| + mean
    |horizontal difference| (the DIP-TV regulariser)."""
    return jnp.mean(jnp.abs(x[:, 1:] - x[:, :-1])) + jnp.mean(jnp.abs(x[:, :, 1:] - x[:, :, :-1]))


def loss_fn(name: str) -> Callable:
    """Mean over all elements of the squared ('mse') or absolute ('l1') difference."""
    if name == "mse":
        return lambda a, b: jnp.mean(jnp.square(a - b))
    if name == "l1":
        return lambda a, b: jnp.mean(jnp.abs(a - b))
    raise ValueError(f"loss must be 'mse' or 'l1', got {name!r}")
