"""The reference's DCGAN-style generator (``models/dcgan.py``)."""

from __future__ import annotations

import flax.linen as nn
import jax

from dipjax.nets.layers import BatchNorm2d, Conv2d, ConvTranspose2d, upsample2


class DCGAN(nn.Module):
    """Maps (N, h, w, inp) to (N, 2**(num_ups-2) * (h + 2), ..., 3).

    The reference writes ``nn.LeakyReLU(True)``, i.e. negative slope 1: the identity. Kept as is,
    so weights transplanted from it give its outputs.
    """

    inp: int = 2
    ndf: int = 32
    num_ups: int = 4
    need_sigmoid: bool = True
    need_convT: bool = True
    upsample_mode: str = "nearest"
    init_style: str = "modern"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        ndf, style = self.ndf, self.init_style
        x = ConvTranspose2d(self.inp, ndf, 3, 1, 0, use_bias=False, init_style=style, name="0")(x)
        x = BatchNorm2d(ndf, init_style=style, name="1")(x)
        i = 3
        for _ in range(self.num_ups - 3):
            if self.need_convT:
                x = ConvTranspose2d(
                    ndf, ndf, 4, 2, 1, use_bias=False, init_style=style, name=str(i)
                )(x)
                x = BatchNorm2d(ndf, init_style=style, name=str(i + 1))(x)
                i += 3
            else:
                x = upsample2(x, self.upsample_mode)
                x = Conv2d(ndf, ndf, 3, 1, 1, use_bias=False, name=str(i + 1))(x)
                x = BatchNorm2d(ndf, init_style=style, name=str(i + 2))(x)
                i += 4
        if self.need_convT:
            x = ConvTranspose2d(ndf, 3, 4, 2, 1, use_bias=False, init_style=style, name=str(i))(x)
        else:
            x = Conv2d(ndf, 3, 3, 1, 1, use_bias=False, name=str(i + 1))(upsample2(x, "bilinear"))
        return nn.sigmoid(x) if self.need_sigmoid else x


def dcgan(
    inp=2,
    ndf=32,
    num_ups=4,
    need_sigmoid=True,
    need_bias=True,
    pad="zero",
    upsample_mode="nearest",
    need_convT=True,
    init_style="modern",
) -> DCGAN:
    """The reference's constructor (``need_bias`` and ``pad`` are accepted and unused, as there)."""
    return DCGAN(inp, ndf, num_ups, need_sigmoid, need_convT, upsample_mode, init_style)
