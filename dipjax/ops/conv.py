"""The generators' 2-D convolution (NHWC x HWIO, zero padding, torch's cross-correlation), with
implementations chosen per layer for speed.

Implementations, selected with ``conv_impl`` (read while jit traces, so wrap the traced function):

- ``xla``: one ``lax.conv_general_dilated``.
- ``fast`` (what ``auto`` means on a CPU): per layer,
  1x1 convolutions and maps of at most ``SMALL_PIXELS`` output pixels become matrix products
  (patches x kernel), and larger ones run XLA's convolution over strips of about
  ``STRIP_PIXELS`` output pixels with a custom VJP: forward and weight gradient per strip,
  input gradient as one convolution.
- ``dot``: every convolution as patches x kernel (under ``vmap`` with per-fit weights these are
  batched matrix products, where XLA's convolutions become grouped convolutions).
- ``auto``: ``fast`` on the CPU, ``xla`` elsewhere (accelerators' convolutions need no help).

Why (``python experiments/profile_step.py``): on XLA's CPU backend a 3x3, 128-channel
convolution's forward pass and weight gradient run 2-3x slower on a whole 128x128 or 256x256
map than on strips of it, while the input gradient is fast whole; a 1x1 convolution is faster
as a plain dot. All implementations compute the same numbers up to float rounding.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Iterator

import jax
import jax.numpy as jnp

Array = jax.Array
CONV_IMPLS = ("auto", "xla", "fast", "dot")
SMALL_PIXELS = 64
STRIP_PIXELS = 2048
_DIMS = ("NHWC", "HWIO", "NHWC")

_IMPL = contextvars.ContextVar("dipjax_conv_impl", default="auto")


@contextlib.contextmanager
def conv_impl(name: str) -> Iterator[None]:
    """Within the block, ``conv2d`` traces as ``name`` (one of ``CONV_IMPLS``)."""
    if name not in CONV_IMPLS:
        raise ValueError(f"conv implementation must be one of {CONV_IMPLS}, got {name!r}")
    token = _IMPL.set(name)
    try:
        yield
    finally:
        _IMPL.reset(token)


def chosen_impl() -> str:
    """The implementation set by the innermost ``conv_impl`` block (``auto`` outside any)."""
    return _IMPL.get()


def current_impl() -> str:
    """The implementation ``conv2d`` would use now, with ``auto`` resolved."""
    name = chosen_impl()
    if name == "auto":
        return "fast" if jax.default_backend() == "cpu" else "xla"
    return name


def _xla(x: Array, kernel: Array, stride: int, padding: int = 0) -> Array:
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), [(padding, padding)] * 2, dimension_numbers=_DIMS
    )


def patches(x: Array, k: int, stride: int) -> Array:
    """(N, H, W, C) -> (N, Ho, Wo, k*k*C), Ho = (H - k) // stride + 1: the k x k window under each
    output pixel, flattened in the order of an HWIO kernel's first three axes."""
    n, h, w, c = x.shape
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    cols = [
        jax.lax.slice(
            x,
            (0, i, j, 0),
            (n, i + stride * (ho - 1) + 1, j + stride * (wo - 1) + 1, c),
            (1, stride, stride, 1),
        )
        for i in range(k)
        for j in range(k)
    ]
    return cols[0] if k == 1 else jnp.concatenate(cols, axis=-1)


def conv_dot(x: Array, kernel: Array, stride: int) -> Array:
    """Unpadded convolution as one matrix product of the input's patches with the
    (k*k*in, out) kernel; its gradients are matrix products too."""
    return jnp.dot(patches(x, kernel.shape[0], stride), kernel.reshape(-1, kernel.shape[-1]))


def _row_spans(ho: int, rows: int) -> list[tuple[int, int]]:
    return [(r, min(r + rows, ho)) for r in range(0, ho, rows)]


def _strip(x: Array, span: tuple[int, int], k: int, stride: int) -> Array:
    """The input rows that output rows ``span`` read."""
    return jax.lax.slice_in_dim(x, span[0] * stride, (span[1] - 1) * stride + k, axis=1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_strips(x: Array, kernel: Array, stride: int, rows: int) -> Array:
    """Unpadded convolution computed ``rows`` output rows at a time (see the module's note)."""
    k = kernel.shape[0]
    ho = (x.shape[1] - k) // stride + 1
    return jnp.concatenate(
        [_xla(_strip(x, s, k, stride), kernel, stride) for s in _row_spans(ho, rows)], axis=1
    )


def _strips_fwd(x, kernel, stride, rows):
    return conv_strips(x, kernel, stride, rows), (x, kernel)


def _strips_bwd(stride, rows, residuals, dy):
    x, kernel = residuals
    k = kernel.shape[0]
    dx = jax.vjp(lambda x_: _xla(x_, kernel, stride), x)[1](dy)[0]
    dw = jnp.zeros_like(kernel)
    for s in _row_spans(dy.shape[1], rows):
        xs = _strip(x, s, k, stride)
        dw = dw + jax.vjp(lambda w: _xla(xs, w, stride), kernel)[1](dy[:, s[0] : s[1]])[0]
    return dx, dw


conv_strips.defvjp(_strips_fwd, _strips_bwd)


def conv2d(x: Array, kernel: Array, stride: int = 1, padding: int = 0) -> Array:
    """Cross-correlation of x (N, H, W, in) with kernel (k, k, in, out) after zero ``padding``:
    (N, Ho, Wo, out), Ho = (H + 2 padding - k) // stride + 1, by the current implementation."""
    impl = current_impl()
    if impl == "xla":
        return _xla(x, kernel, stride, padding)
    k = kernel.shape[0]
    if padding:
        x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ho, wo = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    if impl == "dot" or k == 1 or ho * wo <= SMALL_PIXELS:
        return conv_dot(x, kernel, stride)
    rows = max(1, STRIP_PIXELS // wo)
    if rows >= ho:
        return _xla(x, kernel, stride)
    return conv_strips(x, kernel, stride, rows)
