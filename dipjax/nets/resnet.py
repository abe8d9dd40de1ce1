"""The reference's ResNet generator (``models/resnet.py``): size-preserving residual blocks."""

from __future__ import annotations

import flax.linen as nn
import jax

from dipjax.nets.layers import BatchNorm2d, Conv2d, activation, conv_block


class ResNet(nn.Module):
    """Maps (N, H, W, num_input_channels) to (N, H, W, num_output_channels) in (0, 1).

    Layout: conv3x3(pad) -> act -> num_blocks x [conv -> BN -> act -> conv -> BN (+ input)] ->
    conv3x3 (zero pad, bias) -> BN -> conv3x3(pad) -> sigmoid. Only BatchNorm is supported as
    ``norm_layer`` (the reference's default and only use).
    """

    num_input_channels: int
    num_output_channels: int
    num_blocks: int
    num_channels: int
    need_residual: bool = True
    act_fun: str = "LeakyReLU"
    need_sigmoid: bool = True
    norm_layer: str = "batch"
    pad: str = "reflection"
    init_style: str = "modern"

    def _bn(self, x, path, act="none"):
        return BatchNorm2d(self.num_channels, init_style=self.init_style, act=act, name=path)(x)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.norm_layer != "batch":
            raise ValueError(f"ResNet supports norm_layer='batch' only, got {self.norm_layer!r}")
        c = self.num_channels
        x = conv_block(x, "model.0", c, 3, pad=self.pad)
        x = activation(self.act_fun, x)
        for b in range(self.num_blocks):
            p = f"model.{2 + b}"
            y = Conv2d(c, c, 3, 1, 1, use_bias=False, name=f"{p}.0")(x)
            y = self._bn(y, f"{p}.1", self.act_fun)
            y = self._bn(Conv2d(c, c, 3, 1, 1, use_bias=False, name=f"{p}.3")(y), f"{p}.4")
            x = x + y if self.need_residual else y
        n = 2 + self.num_blocks
        x = self._bn(Conv2d(c, c, 3, 1, 1, name=f"model.{n}")(x), f"model.{n + 1}")
        x = conv_block(x, f"model.{n + 2}", self.num_output_channels, 3, pad=self.pad)
        # The reference always ends in a sigmoid; need_sigmoid is accepted and ignored there.
        return nn.sigmoid(x)
