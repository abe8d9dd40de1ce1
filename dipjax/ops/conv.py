"""The generators' 2-D convolution (NHWC x HWIO, zero padding, torch's cross-correlation), with
implementations chosen per layer for speed.

Implementations, selected with ``conv_impl`` (read while jit traces, so wrap the traced function):

- ``xla``: one ``lax.conv_general_dilated``.
- ``fast`` (what ``auto`` means on a CPU): per layer, the implementation measured fastest on
  this machine for that layer when ``conv_choices`` supplies one (``dipjax.ops.conv_choice``
  measures and keeps them), else these rules: 1x1 convolutions and maps of at most
  ``SMALL_PIXELS`` output pixels become matrix products (patches x kernel); 3x3 stride-1 layers
  of at least ``WINOGRAD_PIXELS`` output pixels and enough channels (``Layer.rule``) run
  Winograd's convolutions (``dipjax.ops.winograd``: in float32 ``winograd-4``, 36 matrix
  products on transformed 6x6 tiles, 1/4 of the multiplications, forward and both gradients;
  in bfloat16 ``winograd-2``, 16 on 4x4 tiles, 4/9 of them); other maps that split
  into strips of about ``STRIP_PIXELS`` output pixels run ``crop``, with a custom VJP: the
  forward pass as one zero-padded convolution whose border outputs are cropped, the input
  gradient as one convolution, the weight gradient per strip (``crop_strip_pixels``: smaller
  strips for inputs of 256 channels or more).
- ``winograd-T`` (3x3, stride 1; T = 2, 4): Winograd's F(T x T, 3x3), ``dipjax.ops.winograd``.
- ``dot``: every convolution as patches x kernel (under ``vmap`` with per-fit weights these are
  batched matrix products, where XLA's convolutions become grouped convolutions).
- ``batched`` (what a vmapped step uses on a CPU): Winograd's where the rules pick it, else
  ``dot``; both are matrix products, batched under ``vmap``.
- ``auto``: ``fast`` on the CPU, ``xla`` elsewhere (accelerators' convolutions need no help).

Precision, chosen with ``conv_precision`` (read while tracing, like the implementation):
``f32`` (default) or ``bf16``: the input and kernel are rounded to bfloat16 and every product
(forward and both gradients) accumulates in float32 and returns float32, so parameters, their
gradients and everything between the convolutions (BatchNorm, activations) stay float32.

Library, a compile option (``compiler_options``): XLA's CPU backend runs convolutions with
YNNPACK by default (``ynnpack``); ``eigen`` leaves them to XLA's own runtime convolution (Eigen's),
matrix products and reductions staying with YNNPACK. Which is faster depends on the CPU: on an
AVX2-only EPYC Eigen ran the largest layer's weight gradient 5x faster
(``experiments/conv_parts.py --libraries``); ``dipjax.ops.conv_choice`` measures it per machine.

Why (``python experiments/profile_step.py``): on XLA's CPU backend a 3x3, 128-channel
convolution without padding (what every layer after a reflection pad is) runs its forward pass
3-4x slower on a whole 128x128 or 256x256 map than the same convolution with zero padding, and
2-3x slower than on strips of the map; its weight gradient is faster in strips, its input
gradient (a padded convolution) fast whole; a 1x1 convolution is faster as a plain dot. All
implementations compute the same numbers up to float rounding.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
from typing import Iterator, Optional

import jax
import jax.numpy as jnp

from dipjax.ops import winograd

Array = jax.Array
CONV_IMPLS = ("auto", "xla", "fast", "dot", "batched")
LIBRARIES = ("ynnpack", "eigen")  # XLA's default first
# XLA's default list of operations handed to YNNPACK (jaxlib 0.10) without its convolutions;
# tests/test_conv.py checks it against XLA's own "-individual_convolution".
_YNN_WITHOUT_CONVOLUTIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
PRECISIONS = ("f32", "bf16")
SMALL_PIXELS = 64
STRIP_PIXELS = 2048
STRIP_CHANNELS = 128  # crop's weight-gradient strips shrink for every multiple of this in C
STRIP_CHOICES = (1024, 2048, 4096)  # the strip sizes a measured choice may pick
# 3x3 stride-1 layers of WINOGRAD_PIXELS output pixels or more, both channel counts at least
# WINOGRAD_CHANNELS[precision] and output pixels x input x output channels at least
# WINOGRAD_WORK run Winograd's convolutions: ``winograd-4`` in float32, ``winograd-2`` in bf16
WINOGRAD_PIXELS = 4096
WINOGRAD_CHANNELS = {"f32": 32, "bf16": 128}
WINOGRAD_WORK = 2**23
# the output tiles ``winograd-T`` offers per precision (the rules pick the largest): bf16's
# rounding is too coarse for F(4x4, 3x3)'s transforms
WINOGRAD_TILES = {"f32": winograd.TILES, "bf16": (2,)}
_DIMS = ("NHWC", "HWIO", "NHWC")

_IMPL = contextvars.ContextVar("dipjax_conv_impl", default="auto")
_PRECISION = contextvars.ContextVar("dipjax_conv_precision", default="f32")
_CHOICES = contextvars.ContextVar("dipjax_conv_choices", default=None)  # layer key -> variant
_SEEN = contextvars.ContextVar("dipjax_conv_seen", default=None)  # list of Layer, recording
_F32 = jnp.float32


@contextlib.contextmanager
def _scoped(var: contextvars.ContextVar, name: str, allowed: tuple, what: str) -> Iterator[None]:
    if name not in allowed:
        raise ValueError(f"{what} must be one of {allowed}, got {name!r}")
    token = var.set(name)
    try:
        yield
    finally:
        var.reset(token)


def conv_impl(name: str) -> contextlib.AbstractContextManager:
    """Within the block, ``conv2d`` traces as ``name`` (one of ``CONV_IMPLS``)."""
    return _scoped(_IMPL, name, CONV_IMPLS, "conv implementation")


def conv_precision(name: str) -> contextlib.AbstractContextManager:
    """Within the block, ``conv2d`` traces its products in ``name`` (one of ``PRECISIONS``)."""
    return _scoped(_PRECISION, name, PRECISIONS, "precision")


@dataclasses.dataclass(frozen=True)
class Layer:
    """One convolution as ``conv2d`` sees it: input (N, H, W, C), k x k kernel to ``out``
    channels, stride, zero padding, precision."""

    shape: tuple
    k: int
    out: int
    stride: int
    padding: int
    precision: str

    @property
    def out_hw(self) -> tuple:
        """(Ho, Wo), the output map's size."""
        size = lambda n: (n + 2 * self.padding - self.k) // self.stride + 1
        return size(self.shape[1]), size(self.shape[2])

    @property
    def key(self) -> str:
        """The layer's name in the choices file: 'NxHxWxC kK sS pP oO precision'."""
        n, h, w, c = self.shape
        conv = f"k{self.k} s{self.stride} p{self.padding} o{self.out}"
        return f"{n}x{h}x{w}x{c} {conv} {self.precision}"

    def variants(self) -> tuple:
        """The ways ``fast`` can compute this layer: ``xla`` (one convolution), ``dot``
        (patches x kernel), ``crop`` (for k > 1: the forward pass padded and cropped, the
        weight gradient in strips of about ``crop_strip_pixels`` output pixels), ``strips-P``
        (strips of about P output pixels, for each P of ``STRIP_CHOICES`` that splits the
        map) and, for 3x3 stride-1 layers, ``winograd-T`` (Winograd's F(T x T, 3x3): T = 2 and
        4 in float32, 2 alone in bfloat16, whose rounding F(4x4, 3x3)'s transforms magnify)."""
        ho, wo = self.out_hw
        strips = [f"strips-{p}" for p in STRIP_CHOICES if max(1, p // wo) < ho]
        tiles = WINOGRAD_TILES[self.precision] if self.winograd_shaped else ()
        winograd_ = [f"winograd-{t}" for t in tiles]
        return ("xla", "dot", *(["crop"] if self.k > 1 else []), *strips, *winograd_)

    @property
    def winograd_shaped(self) -> bool:
        """Whether Winograd's ``winograd-T`` compute this layer: a 3x3 kernel at stride 1."""
        return self.k == 3 and self.stride == 1

    def rule(self) -> str:
        """The variant of the fixed rules (used when nothing was measured): ``dot`` for 1x1
        kernels and small maps; for 3x3 stride-1 layers of ``WINOGRAD_PIXELS`` outputs or more,
        ``WINOGRAD_CHANNELS[precision]`` channels in and out or more and outputs x input x
        output channels of ``WINOGRAD_WORK`` or more, ``winograd-4`` in float32 and
        ``winograd-2`` in bfloat16; else ``crop`` where the
        map splits (judged by ``STRIP_PIXELS`` whatever its channels; ``crop_strip_pixels`` then
        sizes the strips of its weight gradient) or ``xla``."""
        ho, wo = self.out_hw
        if self.k == 1 or ho * wo <= SMALL_PIXELS:
            return "dot"
        c, o = self.shape[-1], self.out
        if (
            self.winograd_shaped
            and ho * wo >= WINOGRAD_PIXELS
            and min(c, o) >= WINOGRAD_CHANNELS[self.precision]
            and ho * wo * c * o >= WINOGRAD_WORK
        ):
            return f"winograd-{max(WINOGRAD_TILES[self.precision])}"
        return "crop" if max(1, STRIP_PIXELS // wo) < ho else "xla"

    def tunable(self) -> bool:
        """Whether measuring is worth it: 1x1 kernels and small maps are matrix products."""
        ho, wo = self.out_hw
        return self.k > 1 and ho * wo > SMALL_PIXELS


@contextlib.contextmanager
def conv_choices(choices: Optional[dict]) -> Iterator[None]:
    """Within the block, ``fast`` computes each layer whose ``Layer.key`` is in ``choices`` by
    the variant it maps to (one of ``Layer.variants()``)."""
    token = _CHOICES.set(choices)
    try:
        yield
    finally:
        _CHOICES.reset(token)


@contextlib.contextmanager
def recording() -> Iterator[list]:
    """Within the block, every ``conv2d`` traced as ``fast`` appends its ``Layer`` to the list
    yielded."""
    seen: list = []
    token = _SEEN.set(seen)
    try:
        yield seen
    finally:
        _SEEN.reset(token)


def traced_with(fn, precision: str = "f32"):
    """``fn`` traced with its convolutions in ``precision`` (``fn`` itself for f32)."""
    if precision == "f32":
        return fn
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with conv_precision(precision):
            return fn(*args, **kwargs)

    return wrapped


def compiler_options(library: str) -> dict:
    """Options for ``Lowered.compile`` under which a CPU executable runs its convolutions with
    ``library`` (one of ``LIBRARIES``), the rest of it as ``codegen_options`` says."""
    if library not in LIBRARIES:
        raise ValueError(f"convolution library must be one of {LIBRARIES}, got {library!r}")
    if library == "ynnpack":
        return codegen_options()
    return {**codegen_options(), "xla_cpu_experimental_ynn_fusion_type": _YNN_WITHOUT_CONVOLUTIONS}


# XLA's CPU backend (jaxlib 0.10) emits its elementwise fusions by MLIR "fusion emitters"; its
# older loop emitter compiles a fit's step in about two thirds of the time and runs those fusions
# faster (BatchNorm, activations, Adam: experiments/step_variants.py --options in docs/speed.md).
_LOOP_EMITTER = {"xla_cpu_use_fusion_emitters": False}


def codegen_options() -> dict:
    """Options for ``Lowered.compile`` of a fit's step on this backend (a new dict): on a CPU
    whose XLA takes it, the older loop emitter (``_LOOP_EMITTER``); {} elsewhere."""
    return dict(_LOOP_EMITTER) if _loop_emitter_offered() else {}


def _cpu_xla_takes(lower, options: dict) -> bool:
    """Whether the default backend is a CPU whose XLA compiles ``lower()`` (a ``Lowered``) with
    ``options``: an older or newer jaxlib refuses an option it does not have."""
    if jax.default_backend() != "cpu":
        return False
    try:
        lower().compile(options)
    except Exception:  # noqa: BLE001 - an XLA without the option
        return False
    return True


@functools.lru_cache(maxsize=1)
def _loop_emitter_offered() -> bool:
    return _cpu_xla_takes(lambda: jax.jit(lambda x: x + 1).lower(jnp.zeros(2)), _LOOP_EMITTER)


@functools.lru_cache(maxsize=1)
def libraries() -> tuple:
    """The ``LIBRARIES`` this jaxlib offers on the default backend: both on a CPU whose XLA
    takes the option, else XLA's default alone."""
    x = jax.ShapeDtypeStruct((1, 8, 8, 4), _F32)
    w = jax.ShapeDtypeStruct((3, 3, 4, 4), _F32)
    lower = lambda: jax.jit(lambda x, w: _xla(x, w, 1)).lower(x, w)
    return LIBRARIES if _cpu_xla_takes(lower, compiler_options("eigen")) else LIBRARIES[:1]


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
        x,
        kernel,
        (stride, stride),
        [(padding, padding)] * 2,
        dimension_numbers=_DIMS,
        preferred_element_type=_F32,
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
    """Unpadded convolution, (N, H, W, C) x (k, k, C, O) -> (N, Ho, Wo, O) float32, as one
    matrix product of the input's patches with the (k*k*C, O) kernel; its gradients are matrix
    products too."""
    w = kernel.reshape(-1, kernel.shape[-1])
    cols = patches(x, kernel.shape[0], stride)
    # A 2-D product: XLA's CPU backend runs the weight gradient of the 4-D one (contracting N,
    # H and W at once) 1.7-1.8x slower (experiments/conv_parts.py --kernel 1 --variants dot dot-4d).
    y = jnp.dot(cols.reshape(-1, cols.shape[-1]), w, preferred_element_type=_F32)
    return y.reshape(*cols.shape[:-1], w.shape[-1])


def crop_strip_pixels(channels: int) -> int:
    """Output pixels per strip of ``crop``'s weight gradient for an input of ``channels``:
    ``STRIP_PIXELS`` divided by the number of whole ``STRIP_CHANNELS`` in it, so that a strip
    of a 256-channel input holds about as many values as one of 128 channels. (On the AMX Xeon
    the 130x130x256 layer's weight gradient took 13-15 % less time in strips of 1024 pixels than
    of 2048, and the inpainting net's step at 128 px about 4 %; layers of 128 or 132 channels, all
    of the denoising net's, keep 2048: docs/speed.md, "The AMX Xeon with every change".)"""
    return max(1, STRIP_PIXELS // max(1, channels // STRIP_CHANNELS))


def _row_spans(ho: int, rows: int) -> list[tuple[int, int]]:
    return [(r, min(r + rows, ho)) for r in range(0, ho, rows)]


def _strip(x: Array, span: tuple[int, int], k: int, stride: int) -> Array:
    """The input rows that output rows ``span`` read."""
    return jax.lax.slice_in_dim(x, span[0] * stride, (span[1] - 1) * stride + k, axis=1)


def conv_cropped(x: Array, kernel: Array, stride: int) -> Array:
    """Unpadded convolution computed as one with zero padding q (the smallest multiple of the
    stride that is at least (k - 1) / 2) whose q / stride border rows and columns are cropped."""
    k = kernel.shape[0]
    q = stride * -(-((k - 1) // 2) // stride)
    c = q // stride
    ho, wo = ((n - k) // stride + 1 for n in x.shape[1:3])
    return _xla(x, kernel, stride, q)[:, c : c + ho, c : c + wo]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_strips(x: Array, kernel: Array, stride: int, rows: int, crop: bool = False) -> Array:
    """Unpadded convolution computed ``rows`` output rows at a time, or (``crop``) whole by
    ``conv_cropped``; either way with the gradients below (see the module's note)."""
    if crop:
        return conv_cropped(x, kernel, stride)
    k = kernel.shape[0]
    ho = (x.shape[1] - k) // stride + 1
    return jnp.concatenate(
        [_xla(_strip(x, s, k, stride), kernel, stride) for s in _row_spans(ho, rows)], axis=1
    )


def _strips_fwd(x, kernel, stride, rows, crop):
    return conv_strips(x, kernel, stride, rows, crop), (x, kernel)


def _strips_bwd(stride, rows, crop, residuals, dy):
    # Gradients in the primal's dtype: for bf16 the cotangent is rounded to bf16 and both
    # products accumulate in f32 (dw summed over strips in f32).
    x, kernel = residuals
    k = kernel.shape[0]
    dy = dy.astype(x.dtype)
    dx = jax.vjp(lambda x_: _xla(x_, kernel, stride).astype(x.dtype), x)[1](dy)[0]
    dw = jnp.zeros(kernel.shape, _F32)
    for s in _row_spans(dy.shape[1], rows):
        xs = _strip(x, s, k, stride)
        dw_s = jax.vjp(lambda w: _xla(xs, w, stride).astype(x.dtype), kernel)[1]
        dw = dw + dw_s(dy[:, s[0] : s[1]])[0].astype(_F32)
    return dx, dw.astype(kernel.dtype)


conv_strips.defvjp(_strips_fwd, _strips_bwd)


def conv2d(x: Array, kernel: Array, stride: int = 1, padding: int = 0) -> Array:
    """Cross-correlation of x (N, H, W, in) with kernel (k, k, in, out) after zero ``padding``:
    (N, Ho, Wo, out) float32, Ho = (H + 2 padding - k) // stride + 1, by the current
    implementation and precision."""
    precision = _PRECISION.get()
    layer = Layer(tuple(x.shape), kernel.shape[0], kernel.shape[-1], stride, padding, precision)
    impl = current_impl()
    if impl == "batched":
        rule = layer.rule()
        impl = rule if rule.startswith("winograd-") else "dot"
    if impl == "fast":
        seen = _SEEN.get()
        if seen is not None:
            seen.append(layer)
        impl = (_CHOICES.get() or {}).get(layer.key)
        if impl not in layer.variants():
            impl = layer.rule()
    return conv_variant(x, kernel, stride, padding, impl, precision)


def conv_variant(
    x: Array, kernel: Array, stride: int, padding: int, variant: str, precision: str = "f32"
) -> Array:
    """``conv2d`` computed one way: ``xla``, ``dot``, ``crop``, ``strips-P`` or ``winograd-T``
    (see ``Layer.variants``)."""
    if precision == "bf16":
        x, kernel = x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16)
    if variant == "xla":
        return _xla(x, kernel, stride, padding)
    if padding:
        x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    if variant == "dot":
        return conv_dot(x, kernel, stride)
    if variant.startswith("winograd-"):
        return winograd.conv3x3(x, kernel, precision, int(variant[len("winograd-") :]))
    wo = (x.shape[2] - kernel.shape[0]) // stride + 1
    if variant == "crop":
        return conv_strips(x, kernel, stride, max(1, crop_strip_pixels(x.shape[-1]) // wo), True)
    if not variant.startswith("strips-"):
        raise ValueError(f"unknown convolution variant {variant!r}")
    return conv_strips(x, kernel, stride, max(1, int(variant[len("strips-") :]) // wo))
