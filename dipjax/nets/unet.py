"""The reference's U-Net (``models/unet.py``): max-pool encoder, transposed-conv or resampling
decoder, norm layers in the encoder only. Module names are the reference's state_dict prefixes."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from dipjax.nets.layers import (
    BatchNorm2d,
    ConvTranspose2d,
    center_crop_to,
    conv_block,
    instance_norm,
    pool,
    upsample2,
)

NORM_LAYERS = ("batch", "instance", "none")


class UNet(nn.Module):
    """Maps (N, H, W, num_input_channels) to (N, H', W', num_output_channels); H' = H when H and W
    are multiples of 2**(4 + more_layers), smaller otherwise (max-pool floors)."""

    num_input_channels: int = 3
    num_output_channels: int = 3
    feature_scale: int = 4
    more_layers: int = 0
    concat_x: bool = False
    upsample_mode: str = "deconv"
    pad: str = "zero"
    norm_layer: str = "instance"
    need_sigmoid: bool = True
    need_bias: bool = True
    init_style: str = "modern"

    def _unet_conv(self, x, path, out, norm):
        for j in (1, 2):
            x = conv_block(x, f"{path}.conv{j}.0", out, 3, bias=self.need_bias, pad=self.pad)
            if norm == "batch":
                x = BatchNorm2d(
                    out, init_style=self.init_style, act="ReLU", name=f"{path}.conv{j}.1"
                )(x)
            else:
                x = jax.nn.relu(instance_norm(x) if norm == "instance" else x)
        return x

    def _down(self, x, path, out):
        return self._unet_conv(pool(x, 2, "max"), f"{path}.conv", out, self.norm_layer)

    def _up(self, x, skip, path, out, same_num_filt=False):
        n_in = out if same_num_filt else 2 * out
        if self.upsample_mode == "deconv":
            x = ConvTranspose2d(n_in, out, 4, 2, 1, init_style=self.init_style, name=f"{path}.up")(
                x
            )
        else:
            x = conv_block(
                upsample2(x, self.upsample_mode),
                f"{path}.up.1",
                out,
                3,
                bias=self.need_bias,
                pad=self.pad,
            )
        skip = center_crop_to(skip, x.shape[1], x.shape[2])
        return self._unet_conv(jnp.concatenate([x, skip], -1), f"{path}.conv", out, "none")

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        if self.norm_layer not in NORM_LAYERS:
            raise ValueError(f"norm_layer must be one of {NORM_LAYERS}, got {self.norm_layer!r}")
        if self.upsample_mode not in ("deconv", "nearest", "bilinear"):
            raise ValueError(
                f"upsample_mode must be deconv, nearest or bilinear, got {self.upsample_mode!r}"
            )
        f = [c // self.feature_scale for c in (64, 128, 256, 512, 1024)]
        cx = self.num_input_channels if self.concat_x else 0
        downs = [inputs]
        for _ in range(4 + self.more_layers):
            downs.append(pool(downs[-1], 2, "avg"))
        cat = (
            (lambda y, k: jnp.concatenate([y, downs[k]], -1)) if self.concat_x else (lambda y, k: y)
        )
        feats = [cat(self._unet_conv(inputs, "start", f[0] - cx, self.norm_layer), 0)]
        for k in range(1, 5):
            feats.append(cat(self._down(feats[-1], f"down{k}", f[k] - cx), k))
        if self.more_layers > 0:
            prevs = [feats[-1]]
            for k in range(self.more_layers):
                prevs.append(cat(self._down(prevs[-1], f"more_downs.{k}", f[4] - cx), k + 5))
            m = self.more_layers
            up = self._up(prevs[-1], prevs[-2], f"more_ups.{m - 1}", f[4], same_num_filt=True)
            # The reference crashes for more_layers > 1 (self.more is undefined); this is the
            # evident intent: walk the remaining up blocks back towards down4.
            for idx in range(m - 1):
                j = m - idx - 2
                up = self._up(up, prevs[j], f"more_ups.{j}", f[4], same_num_filt=True)
        else:
            up = feats[4]
        for k in (4, 3, 2, 1):
            up = self._up(up, feats[k - 1], f"up{k}", f[k - 1])
        out = conv_block(
            up,
            "final.0" if self.need_sigmoid else "final",
            self.num_output_channels,
            1,
            bias=self.need_bias,
            pad=self.pad,
        )
        return nn.sigmoid(out) if self.need_sigmoid else out
