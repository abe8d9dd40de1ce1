"""The reference's generators as Flax modules, and ``get_net`` with the reference's signature.

Every module maps an NHWC batch (N, H, W, C_in) to (N, H', W', C_out). BatchNorm always uses
the statistics of its own call, so wrap a single fit's forward in ``vmap`` to batch fits.
"""

from __future__ import annotations

import jax
import numpy as np

from dipjax.nets.dcgan import DCGAN, dcgan
from dipjax.nets.deep_decoder import DeepDecoder, deep_decoder
from dipjax.nets.resnet import ResNet
from dipjax.nets.skip import Skip, skip
from dipjax.nets.texture_nets import TextureNets, get_texture_nets
from dipjax.nets.unet import UNet

NET_TYPES = ("skip", "UNet", "ResNet", "texture_nets", "dcgan")


def get_net(
    input_depth,
    NET_TYPE,
    pad,
    upsample_mode,
    n_channels=3,
    act_fun="LeakyReLU",
    skip_n33d=128,
    skip_n33u=128,
    skip_n11=4,
    num_scales=5,
    downsample_mode="stride",
    init_style="modern",
):
    """The reference's ``models.get_net`` with its defaults.

    Scalars ``skip_n33d``/``skip_n33u``/``skip_n11`` are repeated ``num_scales`` times; lists are
    taken as given. ``NET_TYPE='ResNet'`` builds ResNet(input_depth, 3, 10 blocks, 16 channels):
    the reference's call passes its arguments in the wrong order and crashes.
    """
    per_scale = lambda v: [v] * num_scales if isinstance(v, int) else list(v)
    if NET_TYPE == "skip":
        return skip(
            input_depth,
            n_channels,
            per_scale(skip_n33d),
            per_scale(skip_n33u),
            per_scale(skip_n11),
            upsample_mode=upsample_mode,
            downsample_mode=downsample_mode,
            need_sigmoid=True,
            need_bias=True,
            pad=pad,
            act_fun=act_fun,
            init_style=init_style,
        )
    if NET_TYPE == "UNet":
        return UNet(
            input_depth,
            3,
            feature_scale=4,
            more_layers=0,
            concat_x=False,
            upsample_mode=upsample_mode,
            pad=pad,
            norm_layer="batch",
            need_sigmoid=True,
            need_bias=True,
            init_style=init_style,
        )
    if NET_TYPE == "ResNet":
        return ResNet(input_depth, 3, 10, 16, init_style=init_style)
    if NET_TYPE == "texture_nets":
        return get_texture_nets(
            inp=input_depth, ratios=(32, 16, 8, 4, 2, 1), pad=pad, init_style=init_style
        )
    if NET_TYPE == "dcgan":
        return dcgan(inp=input_depth, upsample_mode=upsample_mode, init_style=init_style)
    raise ValueError(f"NET_TYPE must be one of {NET_TYPES}, got {NET_TYPE!r}")


def count_params(variables) -> int:
    """Number of trainable scalars, as ``sum(p.numel() for p in net.parameters())``."""
    params = variables.get("params", variables)
    return int(sum(np.prod(np.shape(p)) for p in jax.tree_util.tree_leaves(params)))


__all__ = [
    "DCGAN",
    "DeepDecoder",
    "NET_TYPES",
    "ResNet",
    "Skip",
    "TextureNets",
    "UNet",
    "count_params",
    "dcgan",
    "deep_decoder",
    "get_net",
    "get_texture_nets",
    "skip",
]
