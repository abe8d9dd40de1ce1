"""The reference's multi-scale texture network (``models/texture_nets.py``)."""

from __future__ import annotations

import flax.linen as nn
import jax

from dipjax.nets.layers import (
    BatchNorm2d,
    Conv2d,
    avg_pool_or_identity,
    concat_cropped,
    reflect_pad,
    upsample2,
)


class TextureNets(nn.Module):
    """Maps (N, H, W, inp) to (N, H, W, 3) for H, W multiples of max(ratios).

    Each ratio r reads the input average-pooled by r; coarser results are upsampled x2 and merged.
    The reference's integer-division bug (float padding under Python 3) is read as intended.
    """

    inp: int = 3
    ratios: tuple = (32, 16, 8, 4, 2, 1)
    pad: str = "zero"
    need_sigmoid: bool = False
    conv_num: int = 8
    upsample_mode: str = "nearest"
    init_style: str = "modern"

    def _conv(self, x, path, out, k):
        if self.pad == "reflection":
            return Conv2d(x.shape[-1], out, k, name=f"{path}.1")(reflect_pad(x, (k - 1) // 2))
        return Conv2d(x.shape[-1], out, k, padding=(k - 1) // 2, name=path)(x)

    def _bn(self, x, path, act="none"):
        return BatchNorm2d(x.shape[-1], init_style=self.init_style, act=act, name=path)(x)

    def _triple(self, x, prefix, out):
        for idx, k in ((2, 3), (5, 3), (8, 1)):
            x = self._conv(x, f"{prefix}{idx}", out, k)
            x = self._bn(x, f"{prefix}{idx + 1}", "LeakyReLU")
        return x

    def _level(self, x, i, prefix):
        """Scale i (0 = coarsest); ``prefix`` is the path of this level's Sequential."""
        seq = prefix if i == 0 else f"{prefix}1.1."
        s = self._triple(avg_pool_or_identity(x, self.ratios[i]), seq, self.conv_num)
        if i == 0:
            return s
        s = self._bn(s, f"{seq}11")
        prev = self._level(x, i - 1, f"{prefix}1.0.")
        prev = self._bn(upsample2(prev, self.upsample_mode), f"{prefix}1.0.12")
        y = self._triple(concat_cropped([prev, s]), prefix, self.conv_num * (i + 1))
        return y

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n = len(self.ratios)
        y = self._level(x, n - 1, "")
        y = self._conv(y, "11", 3, 1)
        return nn.sigmoid(y) if self.need_sigmoid else y


def get_texture_nets(
    inp=3,
    ratios=(32, 16, 8, 4, 2, 1),
    fill_noise=False,
    pad="zero",
    need_sigmoid=False,
    conv_num=8,
    upsample_mode="nearest",
    init_style="modern",
) -> TextureNets:
    """The reference's constructor; ``fill_noise=True`` (random channels mid-net) is not
    supported."""
    if fill_noise:
        raise ValueError("fill_noise=True is not supported: it draws fresh noise inside the net")
    return TextureNets(inp, tuple(ratios), pad, need_sigmoid, conv_num, upsample_mode, init_style)
