"""Generators as hashable specifications: which constructor, with which keyword arguments.

A ``NetSpec`` is what a preset stores; ``build()`` gives the Flax module. ``RECIPE_NETS`` holds the
generator of every reference notebook, with the notebook's own arguments.
"""

from __future__ import annotations

import dataclasses

from dipjax import nets

_CONSTRUCTORS = {
    "get_net": nets.get_net,
    "skip": nets.skip,
    "UNet": nets.UNet,
    "ResNet": nets.ResNet,
    "texture_nets": nets.get_texture_nets,
    "dcgan": nets.dcgan,
    "deep_decoder": nets.deep_decoder,
}


def _freeze(v):
    return tuple(v) if isinstance(v, list) else v


@dataclasses.dataclass(frozen=True)
class NetSpec:
    """``constructor(*args, **dict(kwargs))``; lists are stored as tuples so the spec hashes."""

    constructor: str
    args: tuple = ()
    kwargs: tuple = ()

    @classmethod
    def of(cls, constructor: str, *args, **kwargs) -> "NetSpec":
        return cls(
            constructor,
            tuple(_freeze(a) for a in args),
            tuple(sorted((k, _freeze(v)) for k, v in kwargs.items())),
        )

    def replace(self, **kwargs) -> "NetSpec":
        merged = dict(self.kwargs)
        merged.update({k: _freeze(v) for k, v in kwargs.items()})
        return NetSpec(self.constructor, self.args, tuple(sorted(merged.items())))

    def to_dict(self) -> dict:
        return {
            "constructor": self.constructor,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
        }

    def build(self):
        return _CONSTRUCTORS[self.constructor](*self.args, **dict(self.kwargs))


def _library_skip(depth: int) -> NetSpec:
    ch = [16, 32, 64, 128, 128, 128][:depth]
    return NetSpec.of(
        "skip",
        1,
        3,
        num_channels_down=ch,
        num_channels_up=ch,
        num_channels_skip=[0] * depth,
        filter_size_up=3,
        filter_size_down=5,
        filter_skip_size=1,
        upsample_mode="nearest",
        need1x1_up=False,
        need_sigmoid=True,
        need_bias=True,
        pad="reflection",
        act_fun="LeakyReLU",
    )


_F16 = NetSpec.of(
    "get_net",
    32,
    "skip",
    "reflection",
    skip_n33d=128,
    skip_n33u=128,
    skip_n11=4,
    num_scales=5,
    upsample_mode="bilinear",
)

RECIPE_NETS = {
    "denoising_F16": _F16,
    "denoising_snail_jpeg": NetSpec.of(
        "skip",
        3,
        3,
        num_channels_down=[8, 16, 32, 64, 128],
        num_channels_up=[8, 16, 32, 64, 128],
        num_channels_skip=[0, 0, 0, 4, 4],
        upsample_mode="bilinear",
        need_sigmoid=True,
        need_bias=True,
        pad="reflection",
        act_fun="LeakyReLU",
    ),
    "sr_x4": _F16,
    "sr_x8": _F16,
    "inpaint_vase": NetSpec.of(
        "skip",
        2,
        3,
        num_channels_down=[128] * 5,
        num_channels_up=[128] * 5,
        num_channels_skip=[0] * 5,
        upsample_mode="nearest",
        filter_skip_size=1,
        filter_size_up=3,
        filter_size_down=3,
        need_sigmoid=True,
        need_bias=True,
        pad="reflection",
        act_fun="LeakyReLU",
    ),
    "inpaint_kate": NetSpec.of(
        "skip",
        32,
        3,
        num_channels_down=[128] * 5,
        num_channels_up=[128] * 5,
        num_channels_skip=[128] * 5,
        filter_size_up=3,
        filter_size_down=3,
        upsample_mode="nearest",
        filter_skip_size=1,
        need_sigmoid=True,
        need_bias=True,
        pad="reflection",
        act_fun="LeakyReLU",
    ),
    "inpaint_library_skip_depth6": _library_skip(6),
    "inpaint_library_skip_depth4": _library_skip(4),
    "inpaint_library_skip_depth2": _library_skip(2),
    "inpaint_library_UNET": NetSpec.of(
        "UNet",
        num_input_channels=1,
        num_output_channels=3,
        feature_scale=8,
        more_layers=1,
        concat_x=False,
        upsample_mode="deconv",
        pad="zero",
        norm_layer="instance",
        need_sigmoid=True,
        need_bias=True,
    ),
    "inpaint_library_ResNet": NetSpec.of(
        "ResNet", 1, 3, 8, 32, need_sigmoid=True, act_fun="LeakyReLU"
    ),
    "restoration_barbara": NetSpec.of(
        "get_net",
        32,
        "skip",
        "reflection",
        n_channels=1,
        skip_n33d=128,
        skip_n33u=128,
        skip_n11=4,
        num_scales=5,
        upsample_mode="bilinear",
    ),
    "restoration_kate": NetSpec.of(
        "skip",
        32,
        3,
        num_channels_down=[16, 32, 64, 128, 128],
        num_channels_up=[16, 32, 64, 128, 128],
        num_channels_skip=[0] * 5,
        filter_size_up=3,
        filter_size_down=3,
        filter_skip_size=1,
        upsample_mode="bilinear",
        downsample_mode="avg",
        need_sigmoid=True,
        need_bias=True,
        pad="reflection",
        act_fun="LeakyReLU",
    ),
    "flash_no_flash": NetSpec.of(
        "skip",
        3,
        3,
        num_channels_down=[128] * 5,
        num_channels_up=[128] * 5,
        num_channels_skip=[4] * 5,
        upsample_mode=["nearest", "nearest", "bilinear", "bilinear", "bilinear"],
        need_sigmoid=True,
        need_bias=True,
        pad="reflection",
        act_fun="LeakyReLU",
    ),
}
