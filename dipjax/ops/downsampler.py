"""The reference's fixed-kernel downsampler (``models/downsampler.py``), for NHWC batches.

Every kernel it builds (Lanczos, Gauss, box) is separable, and with the edge padding it is a fixed
linear map along each image axis. Images (at most ``MATRIX_CHANNELS`` channels, the forward
operator of super-resolution) go through two small matrix products (``axis_matrix``; on a CPU
20x faster, forward and gradient, than two strided depthwise convolutions); feature maps (the
nets' Lanczos downsampling), whose dense products would cost channels x length, through the two
convolutions. ``downsampler_kernel`` returns the 2-D kernel for inspection and tests.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

MATRIX_CHANNELS = 4  # inputs with at most this many channels are downsampled by matrix products

# name -> (family, support, sigma, width as a function of the factor)
_NAMED = {
    "lanczos2": ("lanczos", 2, None, lambda f: 4 * f + 1),
    "lanczos3": ("lanczos", 3, None, lambda f: 6 * f + 1),
    "gauss12": ("gauss", None, 0.5, lambda f: 7),
    "gauss1sq2": ("gauss", None, 1 / np.sqrt(2), lambda f: 9),
}
NAMED_KERNELS = tuple(_NAMED)  # a named kernel's width follows from the factor
KERNEL_TYPES = NAMED_KERNELS + ("lanczos", "gauss", "box")


def _lanczos(d: np.ndarray, support: float) -> np.ndarray:
    d = np.asarray(d, np.float64)
    safe = np.where(d == 0, 1.0, d)
    val = support * np.sin(np.pi * safe) * np.sin(np.pi * safe / support) / (np.pi**2 * safe**2)
    return np.where(d == 0, 1.0, val)


def kernel_1d(
    factor: int,
    kernel_type: str,
    phase: float = 0.0,
    kernel_width: int | None = None,
    support: float | None = None,
    sigma: float | None = None,
) -> np.ndarray:
    """The 1-D factor k1 of the reference's 2-D kernel (2-D = outer(k1, k1)), float64, sum 1.

    Length is ``kernel_width - 1`` for phase 0.5 (except box), else ``kernel_width``.
    """
    if phase not in (0, 0.5):
        raise ValueError(f"phase must be 0 or 0.5, got {phase}")
    if kernel_type in _NAMED:
        kernel_type, support, sigma, width_of = _NAMED[kernel_type]
        kernel_width = width_of(factor)
    elif kernel_type not in KERNEL_TYPES:
        raise ValueError(f"kernel_type must be one of {KERNEL_TYPES}, got {kernel_type!r}")
    if kernel_width is None:
        raise ValueError(f"kernel_width is required for kernel_type {kernel_type!r}")
    size = kernel_width - 1 if (phase == 0.5 and kernel_type != "box") else kernel_width
    i = np.arange(1, size + 1, dtype=np.float64)
    center = (kernel_width + 1) / 2.0
    if kernel_type == "box":
        if phase != 0.5:
            raise ValueError("the box kernel is always half-phased: use phase=0.5")
        k = np.ones(size)
    elif kernel_type == "gauss":
        if phase == 0.5 or not sigma:
            raise ValueError("the gauss kernel needs sigma and phase 0")
        k = np.exp(-(((i - center) / 2.0) ** 2) / (2 * sigma * sigma))  # the /2 is the reference's
    else:
        if not support:
            raise ValueError("the lanczos kernel needs support")
        k = _lanczos(np.abs(i + phase - center) / factor, support)
    return k / k.sum()


def lanczos_kernel_1d(factor: int, support: int = 2) -> np.ndarray:
    """The phase-0.5 Lanczos factor used for super-resolution (length 2*support*factor)."""
    return kernel_1d(factor, f"lanczos{support}", phase=0.5)


def downsampler_kernel(factor: int, kernel_type: str, phase: float = 0.0, **kw) -> np.ndarray:
    """The reference's 2-D kernel (float64, sum 1)."""
    k = kernel_1d(factor, kernel_type, phase, **kw)
    return np.outer(k, k)


@dataclasses.dataclass(frozen=True)
class Downsampler:
    """Blur with a fixed kernel and subsample by ``factor``; maps (N, H, W, C) to
    (N, H', W', C) with H' = H // factor when ``preserve_size`` (edge padding) is set.

    Hashable, so it can sit in a jitted function's closure; the kernel is a constant.
    """

    factor: int
    kernel_type: str = "lanczos2"
    phase: float = 0.5
    preserve_size: bool = True
    kernel_width: int | None = None
    support: float | None = None
    sigma: float | None = None

    @property
    def kernel(self) -> np.ndarray:
        return kernel_1d(
            self.factor, self.kernel_type, self.phase, self.kernel_width, self.support, self.sigma
        )

    @property
    def pad(self) -> int:
        size = len(self.kernel)
        return (size - 1) // 2 if size % 2 == 1 else (size - self.factor) // 2

    def axis_matrix(self, n: int) -> np.ndarray:
        """(n', n) float64: one image axis of length n blurred and subsampled, edge padding
        included (``preserve_size``: rows read past the edge add to the edge pixel's column)."""
        k, f = self.kernel, self.factor
        p = self.pad if self.preserve_size else 0
        out = (n + 2 * p - len(k)) // f + 1
        if out < 1:
            raise ValueError(f"the downsampler's kernel ({len(k)} taps) is longer than {n} pixels")
        m = np.zeros((out, n))
        for i in range(out):
            src = np.clip(i * f + np.arange(len(k)) - p, 0, n - 1)
            np.add.at(m[i], src, k)
        return m

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[-1] > MATRIX_CHANNELS:
            return self._by_convolutions(x)
        rows, cols = (jnp.asarray(self.axis_matrix(n), x.dtype) for n in x.shape[1:3])
        hi = jax.lax.Precision.HIGHEST  # no reduced-precision products on accelerators
        x = jnp.einsum("ih,nhwc->niwc", rows, x, precision=hi)
        return jnp.einsum("jw,niwc->nijc", cols, x, precision=hi)

    def _by_convolutions(self, x: jax.Array) -> jax.Array:
        k = jnp.asarray(self.kernel, x.dtype)
        c = x.shape[-1]
        if self.preserve_size:
            p = self.pad
            x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="edge")
        f = self.factor
        dn = ("NHWC", "HWIO", "NHWC")
        kh = jnp.tile(k[:, None, None, None], (1, 1, 1, c))
        x = jax.lax.conv_general_dilated(
            x, kh, (f, 1), "VALID", dimension_numbers=dn, feature_group_count=c
        )
        kw = jnp.tile(k[None, :, None, None], (1, 1, 1, c))
        return jax.lax.conv_general_dilated(
            x, kw, (1, f), "VALID", dimension_numbers=dn, feature_group_count=c
        )
