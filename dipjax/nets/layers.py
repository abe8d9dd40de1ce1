"""Layers shared by every generator, written to match PyTorch's modules.

All arrays are NHWC float32. Parameters use Flax's layouts (kernels HWIO); the modules are named by
the reference's ``state_dict`` prefix so that :mod:`dipjax.torch_weights` can map weights one
to one.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dipjax.ops.conv import conv2d
from dipjax.ops.downsampler import Downsampler

Array = jax.Array
INIT_STYLES = ("modern", "legacy")
ACTIVATIONS = ("LeakyReLU", "ELU", "ReLU", "Swish", "none")
PADS = ("zero", "reflection")
DOWNSAMPLE_MODES = ("stride", "avg", "max", "lanczos2", "lanczos3")
UPSAMPLE_MODES = ("nearest", "bilinear")


def uniform_init(bound: float) -> Callable:
    """PyTorch's default ``kaiming_uniform_(a=sqrt(5))``: U(-bound, bound)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Conv2d(nn.Module):
    """``nn.Conv2d`` with zero padding ``padding`` (reflection padding is applied by the caller).

    Weights and bias start U(+-1/sqrt(in*k*k)) as in PyTorch. ``kernel`` is (k, k, in, out).
    """

    in_features: int
    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.kernel_size
        bound = 1.0 / math.sqrt(self.in_features * k * k)
        kernel = self.param("kernel", uniform_init(bound), (k, k, self.in_features, self.features))
        y = conv2d(x, kernel, self.stride, self.padding)
        if self.use_bias:
            y = y + self.param("bias", uniform_init(bound), (self.features,))
        return y


class ConvTranspose2d(nn.Module):
    """``nn.ConvTranspose2d``; ``transposed_kernel`` is torch's (in, out, k, k) as (k, k, in, out).

    Output side = (n - 1) * stride - 2 * padding + k. Initialised U(+-1/sqrt(fan)) with
    fan = out*k*k (modern torch) or in*k*k (``legacy``: torch 0.4).
    """

    in_features: int
    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = True
    init_style: str = "modern"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k, s = self.kernel_size, self.stride
        _check_init_style(self.init_style)
        fan_channels = self.in_features if self.init_style == "legacy" else self.features
        bound = 1.0 / math.sqrt(fan_channels * k * k)
        kernel = self.param(
            "transposed_kernel", uniform_init(bound), (k, k, self.in_features, self.features)
        )
        q = k - 1 - self.padding
        y = jax.lax.conv_general_dilated(
            x,
            kernel[::-1, ::-1],
            (1, 1),
            [(q, q), (q, q)],
            lhs_dilation=(s, s),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        if self.use_bias:
            y = y + self.param("bias", uniform_init(bound), (self.features,))
        return y


def _statistics(x: Array, axes: tuple[int, ...], eps: float) -> tuple[Array, Array]:
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)  # biased, as torch normalises
    return mean, jax.lax.rsqrt(var + eps)


# Activations that norm_act folds into the normalisation: the slope below zero (1: none).
FUSED_SLOPES = {"none": 1.0, "LeakyReLU": 0.2, "ReLU": 0.0}


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def norm_act(
    x: Array, scale: Array, bias: Array, axes: tuple[int, ...], eps: float, slope: float
) -> Array:
    """act((x - mean) / sqrt(var + eps) * scale + bias), statistics over ``axes`` of x (any
    float32 shape), ``scale`` and ``bias`` (C,) along the last axis; act is the identity
    (``slope`` 1), ReLU (0) or a leaky ReLU with that slope below zero (torch's: the slope at 0
    too).

    Its gradient is written out because XLA's CPU backend reduces only arrays it has written:
    by autodiff it writes x - mean, x-hat and the activation's cotangent times scale, each to
    read once in a reduction. Here the backward pass writes two full-size arrays (the
    cotangent through the activation, the input gradient) and reduces two (that cotangent,
    and its product with x): sum(g * x-hat) = rstd (sum(g x) - mean sum(g)).
    ``python experiments/written_gradients.py --only bn affine`` times the step against autodiff
    and against the normalisation alone written out."""
    return _norm_act_fwd(x, scale, bias, axes, eps, slope)[0]


def _norm_act_fwd(x, scale, bias, axes, eps, slope):
    mean, rstd = _statistics(x, axes, eps)
    z = (x - mean) * rstd * scale + bias
    if slope == 0.0:
        y = jnp.maximum(z, 0.0)
    elif slope != 1.0:
        y = jnp.where(z > 0, z, slope * z)
    else:
        y = z
    return y, (x, mean, rstd, scale, bias)


def _norm_act_bwd(axes, eps, slope, residuals, g):
    x, mean, rstd, scale, bias = residuals
    n = math.prod(x.shape[a] for a in axes)
    if slope != 1.0:  # z's sign recomputed from x: no activation kept for the backward pass
        g = jnp.where((x - mean) * rstd * scale + bias > 0, g, slope * g)
    g_sum = jnp.sum(g, axis=axes, keepdims=True)
    # sum(g x-hat) from sums of written arrays; it loses digits when |mean| >> std (relative
    # error ~1e-5 at mean/std = 1000 in float32), harmless at the nets' ratios.
    gxhat_sum = rstd * (jnp.sum(g * x, axis=axes, keepdims=True) - mean * g_sum)
    dx = (rstd * scale) * (g - (g_sum + (x - mean) * rstd * gxhat_sum) / n)
    dx = dx.astype(x.dtype)
    lead = tuple(range(x.ndim - 1))
    return dx, gxhat_sum.sum(lead).astype(scale.dtype), g_sum.sum(lead).astype(bias.dtype)


norm_act.defvjp(_norm_act_fwd, _norm_act_bwd)


def _normalise(x: Array, axes: tuple[int, ...], eps: float) -> Array:
    """(x - mean) / sqrt(var + eps) over ``axes`` (``norm_act`` without scale, bias or act)."""
    c = x.shape[-1]
    return norm_act(x, jnp.ones((c,), x.dtype), jnp.zeros((c,), x.dtype), axes, eps, 1.0)


class BatchNorm2d(nn.Module):
    """``nn.BatchNorm2d`` in training mode, always: statistics of the current batch over (N, H, W),
    then ``act`` (the activation module that follows it in the reference, ``none`` if none).

    The reference never calls ``eval()``, so running statistics are never read; they are not kept.
    ``scale`` starts at 1 (modern torch) or U[0, 1) (``legacy``: torch 0.4, the paper's runs).
    """

    features: int
    eps: float = 1e-5
    init_style: str = "modern"
    act: str = "none"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        _check_init_style(self.init_style)
        legacy = self.init_style == "legacy"
        scale_init = nn.initializers.uniform(1.0) if legacy else nn.initializers.ones
        scale = self.param("scale", scale_init, (self.features,))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        slope = FUSED_SLOPES.get(self.act)
        if slope is None:
            return activation(self.act, norm_act(x, scale, bias, (0, 1, 2), self.eps, 1.0))
        return norm_act(x, scale, bias, (0, 1, 2), self.eps, slope)


def instance_norm(x: Array, eps: float = 1e-5) -> Array:
    """``nn.InstanceNorm2d(affine=False)``: per image and channel over (H, W)."""
    return _normalise(x, (1, 2), eps)


def activation(name: str, x: Array) -> Array:
    if name == "LeakyReLU":  # torch's: slope 0.2 at and below 0, so is the gradient at 0
        return jnp.where(x > 0, x, 0.2 * x)
    if name == "ELU":
        return jax.nn.elu(x)
    if name == "ReLU":
        return jax.nn.relu(x)
    if name == "Swish":
        return x * jax.nn.sigmoid(x)
    if name == "none":
        return x
    raise ValueError(f"act_fun must be one of {ACTIVATIONS}, got {name!r}")


def reflect_pad(x: Array, p: int) -> Array:
    """``nn.ReflectionPad2d(p)`` (the edge pixel is not repeated)."""
    if p == 0:
        return x
    if min(x.shape[1], x.shape[2]) <= p:
        raise ValueError(
            f"reflection padding {p} needs feature maps larger than {p} pixels, "
            f"got {x.shape[1]}x{x.shape[2]}: the image is too small for the net"
        )
    return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")


def pool(x: Array, r: int, mode: str = "avg") -> Array:
    """``AvgPool2d(r, r)`` / ``MaxPool2d(r, r)``: trailing rows/columns that do not fill a window
    are dropped (floor)."""
    n, h, w, c = x.shape
    x = x[:, : h // r * r, : w // r * r].reshape(n, h // r, r, w // r, r, c)
    return x.mean(axis=(2, 4)) if mode == "avg" else x.max(axis=(2, 4))


def avg_pool_or_identity(x: Array, r: int) -> Array:
    """``AvgPool2d(r, r)``; r = 1 returns x."""
    return x if r == 1 else pool(x, r, "avg")


def _bilinear2_axis(x: Array, axis: int) -> Array:
    # align_corners=False at scale 2: output 2k reads 0.75*x[k] + 0.25*x[k-1], 2k+1 reads
    # 0.75*x[k] + 0.25*x[k+1], with indices clamped at the borders.
    n = x.shape[axis]
    take = lambda a, b: jax.lax.slice_in_dim(x, a, b, axis=axis)
    prev = jnp.concatenate([take(0, 1), take(0, n - 1)], axis=axis)
    nxt = jnp.concatenate([take(1, n), take(n - 1, n)], axis=axis)
    even = 0.75 * x + 0.25 * prev
    odd = 0.75 * x + 0.25 * nxt
    stacked = jnp.stack([even, odd], axis=axis + 1)
    shape = list(x.shape)
    shape[axis] = 2 * n
    return stacked.reshape(shape)


def upsample2(x: Array, mode: str) -> Array:
    """``nn.Upsample(scale_factor=2, mode)``; bilinear is PyTorch's ``align_corners=False``."""
    if mode == "nearest":
        return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    if mode == "bilinear":
        return _bilinear2_axis(_bilinear2_axis(x, 1), 2)
    raise ValueError(f"upsample_mode must be one of {UPSAMPLE_MODES}, got {mode!r}")


def center_crop_to(x: Array, h: int, w: int) -> Array:
    """Crop H, W to (h, w) with offset (size - target) // 2, as the reference's Concat does."""
    dh, dw = (x.shape[1] - h) // 2, (x.shape[2] - w) // 2
    return x[:, dh : dh + h, dw : dw + w]


def concat_cropped(xs: Sequence[Array]) -> Array:
    """The reference's ``Concat(1, ...)``: crop every branch to the smallest H and W, then
    concatenate."""
    h = min(x.shape[1] for x in xs)
    w = min(x.shape[2] for x in xs)
    return jnp.concatenate([center_crop_to(x, h, w) for x in xs], axis=-1)


def _check_init_style(style: str) -> None:
    if style not in INIT_STYLES:
        raise ValueError(f"init_style must be one of {INIT_STYLES}, got {style!r}")


def conv_block(
    x: Array,
    path: str,
    features: int,
    kernel_size: int,
    *,
    stride: int = 1,
    bias: bool = True,
    pad: str = "zero",
    downsample_mode: str = "stride",
) -> Array:
    """The reference's ``conv()`` Sequential at ``path``: [reflection pad], conv, [downsampler].

    Must be called inside a compact method; the Conv2d is named by its torch prefix
    (``path.1`` after a reflection pad, else ``path.0``).
    """
    if pad not in PADS:
        raise ValueError(f"pad must be one of {PADS}, got {pad!r}")
    if downsample_mode not in DOWNSAMPLE_MODES:
        raise ValueError(
            f"downsample_mode must be one of {DOWNSAMPLE_MODES}, got {downsample_mode!r}"
        )
    pool_mode = None
    if stride != 1 and downsample_mode != "stride":
        pool_mode, stride = downsample_mode, 1
    to_pad = (kernel_size - 1) // 2
    if pad == "reflection":
        x = reflect_pad(x, to_pad)
        leaf, padding = f"{path}.1", 0
    else:
        leaf, padding = f"{path}.0", to_pad
    x = Conv2d(x.shape[-1], features, kernel_size, stride, padding, bias, name=leaf)(x)
    if pool_mode in ("avg", "max"):
        x = pool(x, 2, pool_mode)
    elif pool_mode is not None:
        x = Downsampler(factor=2, kernel_type=pool_mode, phase=0.5, preserve_size=True)(x)
    return x
