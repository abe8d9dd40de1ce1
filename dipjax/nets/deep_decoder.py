"""The Deep Decoder (Heckel and Hand, ICLR 2019): an under-parameterised generator of 1x1
convolutions, bilinear upsampling, ReLU and channel normalisation, with no convolution wider
than a pixel, so it cannot fit noise and needs no early stopping.

Layer i of ``layers`` (d): 1x1 convolution without bias (in -> k channels for the first, k -> k
after), then 2x bilinear upsampling (every layer but the last), ReLU, and channel normalisation
(a batch-of-one BatchNorm: per channel over the pixels, with a learned scale and shift). Then a
1x1 convolution k -> out and a sigmoid. Parameters, with ``in`` = k as in the paper:
``d * (k**2 + 2 * k) + k * out`` (100,224 for k = 128, d = 6, out = 3; 25,536 for k = 64).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from dipjax.nets.layers import BatchNorm2d, Conv2d, upsample2


class DeepDecoder(nn.Module):
    """Maps (N, H / 2**(layers - 1), W / 2**(layers - 1), num_input_channels) to
    (N, H, W, num_output_channels), values in (0, 1) with ``need_sigmoid``."""

    num_input_channels: int = 128
    num_output_channels: int = 3
    channels: int = 128
    layers: int = 6
    upsample_mode: str = "bilinear"
    need_sigmoid: bool = True
    init_style: str = "modern"

    @property
    def input_scale(self) -> int:
        """How much smaller than the output the input is, per side."""
        return 2 ** (self.layers - 1)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.channels
        for i in range(self.layers):
            x = Conv2d(self.num_input_channels if i == 0 else k, k, 1, use_bias=False)(x)
            if i < self.layers - 1:
                x = upsample2(x, self.upsample_mode)
            x = BatchNorm2d(k, init_style=self.init_style)(nn.relu(x))
        x = Conv2d(k, self.num_output_channels, 1, use_bias=False)(x)
        return nn.sigmoid(x) if self.need_sigmoid else x


def deep_decoder(
    num_input_channels=128,
    num_output_channels=3,
    channels=128,
    layers=6,
    upsample_mode="bilinear",
    need_sigmoid=True,
    init_style="modern",
) -> DeepDecoder:
    """The Deep Decoder with the paper's defaults (k = 128 channels, d = 6 layers)."""
    return DeepDecoder(
        num_input_channels,
        num_output_channels,
        channels,
        layers,
        upsample_mode,
        need_sigmoid,
        init_style,
    )
