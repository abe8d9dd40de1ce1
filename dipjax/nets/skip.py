"""The encoder-decoder with skip connections (the reference's ``models/skip.py``).

Per scale i (outer to inner): an optional skip branch (conv k=filter_skip_size -> BN -> act), a
deeper branch (strided conv -> BN -> act -> conv -> BN -> act -> [scale i+1] -> upsample x2), their
cropped concatenation, then BN -> conv -> BN -> act [-> 1x1 conv -> BN -> act]. A final 1x1 conv
and an optional sigmoid close the net. Module names are the reference's state_dict prefixes.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from dipjax.nets.layers import (
    UPSAMPLE_MODES,
    BatchNorm2d,
    concat_cropped,
    conv_block,
    upsample2,
)


def _per_scale(value, n: int, what: str) -> tuple:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{what} has {len(value)} entries, expected one per scale ({n})")
        return tuple(value)
    return (value,) * n


class Skip(nn.Module):
    """Maps (N, H, W, num_input_channels) to (N, H', W', num_output_channels), values in (0, 1)
    with the sigmoid. H' = H for the all-skip recipes; see README for the crop rules."""

    num_input_channels: int
    num_output_channels: int
    num_channels_down: tuple
    num_channels_up: tuple
    num_channels_skip: tuple
    filter_size_down: tuple
    filter_size_up: tuple
    filter_skip_size: int
    need_sigmoid: bool
    need_bias: bool
    pad: str
    upsample_mode: tuple
    downsample_mode: tuple
    act_fun: str
    need1x1_up: bool
    init_style: str = "modern"

    def _bn(self, x, path, act="none"):
        return BatchNorm2d(x.shape[-1], init_style=self.init_style, act=act, name=path)(x)

    def _conv(self, x, path, features, k, stride=1, downsample_mode="stride"):
        return conv_block(
            x,
            path,
            features,
            k,
            stride=stride,
            bias=self.need_bias,
            pad=self.pad,
            downsample_mode=downsample_mode,
        )

    def _conv_bn_act(self, x, path, conv_idx, features, k, **kw):
        x = self._conv(x, f"{path}{conv_idx}", features, k, **kw)
        return self._bn(x, f"{path}{conv_idx + 1}", self.act_fun)

    def _scale(self, x: jax.Array, i: int, prefix: str) -> jax.Array:
        last = len(self.num_channels_down) - 1
        n_skip = self.num_channels_skip[i]
        deeper = f"{prefix}1.1." if n_skip else f"{prefix}1."
        fsd = self.filter_size_down[i]
        d = self._conv_bn_act(
            x,
            deeper,
            1,
            self.num_channels_down[i],
            fsd,
            stride=2,
            downsample_mode=self.downsample_mode[i],
        )
        d = self._conv_bn_act(d, deeper, 4, self.num_channels_down[i], fsd)
        if i < last:
            d = self._scale(d, i + 1, f"{deeper}7.")
        d = upsample2(d, self.upsample_mode[i])
        if n_skip:
            s = self._conv_bn_act(x, f"{prefix}1.0.", 1, n_skip, self.filter_skip_size)
            d = concat_cropped([s, d])
        y = self._bn(d, f"{prefix}2")
        y = self._conv_bn_act(y, prefix, 3, self.num_channels_up[i], self.filter_size_up[i])
        if self.need1x1_up:
            y = self._conv_bn_act(y, prefix, 6, self.num_channels_up[i], 1)
        return y

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = self._scale(x, 0, "")
        y = self._conv(y, "9" if self.need1x1_up else "6", self.num_output_channels, 1)
        return nn.sigmoid(y) if self.need_sigmoid else y


def skip(
    num_input_channels=2,
    num_output_channels=3,
    num_channels_down=(16, 32, 64, 128, 128),
    num_channels_up=(16, 32, 64, 128, 128),
    num_channels_skip=(4, 4, 4, 4, 4),
    filter_size_down=3,
    filter_size_up=3,
    filter_skip_size=1,
    need_sigmoid=True,
    need_bias=True,
    pad="zero",
    upsample_mode="nearest",
    downsample_mode="stride",
    act_fun="LeakyReLU",
    need1x1_up=True,
    init_style="modern",
) -> Skip:
    """Build the skip generator with the reference's keyword arguments and defaults.

    ``upsample_mode``, ``downsample_mode`` and the filter sizes take one value or one per scale.
    ``init_style``: ``"modern"`` (torch >= 1: BN scale 1) or ``"legacy"`` (torch 0.4: U[0, 1)).
    """
    n = len(num_channels_down)
    if not (len(num_channels_up) == len(num_channels_skip) == n):
        raise ValueError(
            "num_channels_down, num_channels_up and num_channels_skip must have "
            f"the same length, got {n}, {len(num_channels_up)}, "
            f"{len(num_channels_skip)}"
        )
    up_modes = _per_scale(upsample_mode, n, "upsample_mode")
    for m in up_modes:
        if m not in UPSAMPLE_MODES:
            raise ValueError(f"upsample_mode must be one of {UPSAMPLE_MODES}, got {m!r}")
    return Skip(
        num_input_channels,
        num_output_channels,
        tuple(num_channels_down),
        tuple(num_channels_up),
        tuple(num_channels_skip),
        _per_scale(filter_size_down, n, "filter_size_down"),
        _per_scale(filter_size_up, n, "filter_size_up"),
        filter_skip_size,
        need_sigmoid,
        need_bias,
        pad,
        up_modes,
        _per_scale(downsample_mode, n, "downsample_mode"),
        _act_name(act_fun),
        need1x1_up,
        init_style,
    )


def _act_name(act_fun) -> str:
    """Accept the reference's names, plus a class/callable named like torch's (e.g. ``nn.ReLU``)."""
    if isinstance(act_fun, str):
        return act_fun
    return getattr(act_fun, "__name__", str(act_fun))


__all__: Sequence[str] = ["Skip", "skip"]
