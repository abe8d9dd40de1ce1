"""Build parity fixtures from a checkout of the reference (DmitryUlyanov/deep-image-prior).

    pip install -e '.[torch]'
    python experiments/make_reference_fixtures.py --reference-dir /path/to/deep-image-prior

The reference's own modules are imported from --reference-dir at run time; nothing of it is
copied. For each notebook's generator (and a few option variants) it records the parameter count,
the state_dict keys and shapes, and the output of a forward pass (train-mode BatchNorm, as the
notebooks run) after filling the weights with ``dipjax.testing.synthetic_state_dict``. It also
records the downsampler's kernels and outputs and PyTorch's bilinear x2 upsampling.

Writes tests/fixtures/nets.json, nets.npz and ops.npz.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dipjax.testing import synthetic_input, synthetic_state_dict  # noqa: E402


def reference_nets(models, nn):
    """name -> (constructor thunk, NCHW input shape). The notebooks' calls, keyword for keyword."""
    skip, get_net, UNet, ResNet = models.skip, models.get_net, models.UNet, models.ResNet
    from models.dcgan import dcgan
    from models.texture_nets import get_texture_nets

    f16 = lambda: get_net(
        32,
        "skip",
        "reflection",
        skip_n33d=128,
        skip_n33u=128,
        skip_n11=4,
        num_scales=5,
        upsample_mode="bilinear",
    )

    def library(depth):
        ch = [16, 32, 64, 128, 128, 128][:depth]
        return lambda: skip(
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

    unet_lib = lambda: UNet(
        num_input_channels=1,
        num_output_channels=3,
        feature_scale=8,
        more_layers=1,
        concat_x=False,
        upsample_mode="deconv",
        pad="zero",
        norm_layer=nn.InstanceNorm2d,
        need_sigmoid=True,
        need_bias=True,
    )
    return {
        "denoising_F16": (f16, (1, 32, 64, 64)),
        "denoising_F16_odd": (f16, (1, 32, 61, 97)),
        "denoising_snail_jpeg": (
            lambda: skip(
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
            (1, 3, 64, 96),
        ),
        "sr_x4": (f16, (1, 32, 64, 96)),
        "sr_x8": (f16, (1, 32, 64, 64)),
        "inpaint_vase": (
            lambda: skip(
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
            (1, 2, 64, 64),
        ),
        "inpaint_kate": (
            lambda: skip(
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
            (1, 32, 64, 64),
        ),
        "inpaint_library_skip_depth6": (library(6), (1, 1, 192, 192)),
        "inpaint_library_skip_depth4": (library(4), (1, 1, 64, 96)),
        "inpaint_library_skip_depth2": (library(2), (1, 1, 64, 64)),
        "inpaint_library_UNET": (unet_lib, (1, 1, 64, 96)),
        "inpaint_library_UNET_odd": (unet_lib, (1, 1, 75, 100)),
        "inpaint_library_ResNet": (
            lambda: ResNet(1, 3, 8, 32, need_sigmoid=True, act_fun="LeakyReLU"),
            (1, 1, 48, 64),
        ),
        "restoration_barbara": (
            lambda: get_net(
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
            (1, 32, 66, 66),
        ),
        "restoration_kate": (
            lambda: skip(
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
            (1, 32, 75, 100),
        ),
        "flash_no_flash": (
            lambda: skip(
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
            (1, 3, 64, 64),
        ),
        # Options no notebook uses, so that every branch of the port is compared.
        "variant_skip_zero_lanczos2_elu": (
            lambda: skip(
                4,
                3,
                [8, 16, 32],
                [8, 16, 32],
                [2, 2, 2],
                filter_size_down=[3, 5, 3],
                filter_size_up=[3, 3, 5],
                filter_skip_size=3,
                need_sigmoid=False,
                pad="zero",
                upsample_mode="bilinear",
                downsample_mode="lanczos2",
                act_fun="ELU",
                need1x1_up=False,
            ),
            (1, 4, 40, 48),
        ),
        "variant_skip_mixed_down_swish": (
            lambda: skip(
                3,
                2,
                [8, 8, 8, 8],
                [8, 8, 8, 8],
                [0, 4, 0, 4],
                downsample_mode=["max", "avg", "stride", "lanczos3"],
                upsample_mode="nearest",
                act_fun="Swish",
                pad="reflection",
            ),
            (1, 3, 64, 64),
        ),
        "variant_skip_relu_none": (
            lambda: skip(
                3, 3, [8, 8], [8, 8], [4, 4], act_fun=nn.ReLU, pad="reflection", need_bias=False
            ),
            (1, 3, 33, 47),
        ),
        "variant_skip_act_none": (
            lambda: skip(3, 3, [8, 8], [8, 8], [4, 4], act_fun="none", pad="zero"),
            (1, 3, 32, 32),
        ),
        "variant_unet_bilinear_batch_concat": (
            lambda: UNet(
                3,
                3,
                feature_scale=16,
                more_layers=0,
                concat_x=True,
                upsample_mode="bilinear",
                pad="reflection",
                norm_layer=nn.BatchNorm2d,
            ),
            (1, 3, 64, 64),
        ),
        "variant_unet_nearest_nonorm": (
            lambda: UNet(
                2,
                3,
                feature_scale=16,
                upsample_mode="nearest",
                pad="zero",
                norm_layer=None,
                need_sigmoid=False,
            ),
            (1, 2, 48, 64),
        ),
        "variant_resnet_plain_elu": (
            lambda: ResNet(2, 3, 2, 8, need_residual=False, act_fun="ELU"),
            (1, 2, 20, 24),
        ),
        "variant_texture_nets": (lambda: get_texture_nets(inp=3, pad="zero"), (1, 3, 64, 64)),
        "variant_texture_nets_reflection": (
            lambda: get_texture_nets(
                inp=2, ratios=[8, 4, 2, 1], pad="reflection", need_sigmoid=True
            ),
            (1, 2, 32, 32),
        ),
        "variant_dcgan": (lambda: dcgan(inp=2, ndf=8, num_ups=5), (1, 2, 4, 5)),
        "variant_dcgan_upsample": (
            lambda: dcgan(inp=2, ndf=8, num_ups=4, need_convT=False),
            (1, 2, 4, 4),
        ),
    }


def _fix_float_padding(net, nn):
    """Under Python 3 the reference's texture_nets passes float paddings; make them ints."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ReflectionPad2d)) and not isinstance(m.padding, str):
            m.padding = tuple(int(p) for p in m.padding)


def build_net_fixtures(models, torch, seed):
    nn = torch.nn
    meta, outputs = {}, {}
    for i, (name, (make, shape)) in enumerate(reference_nets(models, nn).items()):
        torch.manual_seed(seed)
        net = make()
        _fix_float_padding(net, nn)
        sd = net.state_dict()
        trainable = [
            k
            for k, v in sd.items()
            if not k.rsplit(".", 1)[-1].startswith(("running_", "num_batches"))
            and ".downsampler_." not in k
        ]
        spec = [(k, list(sd[k].shape)) for k in trainable]
        values = synthetic_state_dict(spec, seed + i)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in values.items()}, strict=False)
        x = synthetic_input(shape, seed + 1000 + i)
        net.train()
        with torch.no_grad():
            y = net(torch.from_numpy(x)).numpy()
        params = sum(p.numel() for p in net.parameters())
        fixed = sum(p.numel() for n, p in net.named_parameters() if ".downsampler_." in n)
        meta[name] = {
            "weight_seed": seed + i,
            "input_seed": seed + 1000 + i,
            "input_shape_nchw": list(shape),
            "output_shape_nchw": list(y.shape),
            "params": int(params),
            "params_fixed_downsampler": int(fixed),
            "state_dict": spec,
        }
        outputs[name] = y.astype(np.float32)
        print(f"{name:40s} params {params:8d} in {tuple(shape)} out {tuple(y.shape)}")
    return meta, outputs


def build_ops_fixtures(torch, seed):
    from models.downsampler import Downsampler, get_kernel

    out = {}
    for f in (2, 4, 8):
        for kt in ("lanczos2", "lanczos3"):
            d = Downsampler(3, f, kt, phase=0.5, preserve_size=True)
            out[f"kernel_{kt}_x{f}"] = d.kernel
    out["kernel_gauss12_x2"] = Downsampler(3, 2, "gauss12", phase=0).kernel
    out["kernel_gauss1sq2_x4"] = Downsampler(3, 4, "gauss1sq2", phase=0).kernel
    out["kernel_box_w5_x4"] = get_kernel(4, "box", 0.5, 5)
    out["kernel_lanczos_phase0_x3"] = get_kernel(3, "lanczos", 0, 13, support=2)
    x = synthetic_input((1, 3, 48, 64), seed)
    out["down_input"] = x
    with torch.no_grad():
        for f in (4, 8):
            for kt in ("lanczos2", "lanczos3"):
                d = Downsampler(3, f, kt, phase=0.5, preserve_size=True)
                out[f"down_{kt}_x{f}"] = d(torch.from_numpy(x)).numpy()
        d = Downsampler(3, 2, "gauss12", phase=0, preserve_size=True)
        out["down_gauss12_x2"] = d(torch.from_numpy(x)).numpy()
        u = synthetic_input((1, 3, 5, 7), seed + 1)
        out["upsample_input"] = u
        out["upsample_bilinear"] = torch.nn.Upsample(scale_factor=2, mode="bilinear")(
            torch.from_numpy(u)
        ).numpy()
        out["upsample_nearest"] = torch.nn.Upsample(scale_factor=2, mode="nearest")(
            torch.from_numpy(u)
        ).numpy()
    return {k: np.asarray(v) for k, v in out.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference-dir", required=True, help="checkout of deep-image-prior")
    ap.add_argument("--out", default=str(ROOT / "tests" / "fixtures"), help="output folder")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    ref = pathlib.Path(args.reference_dir).resolve()
    if not (ref / "models" / "skip.py").is_file():
        sys.exit(f"error: --reference-dir {ref}: no models/skip.py there")
    sys.path.insert(0, str(ref))
    import models
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta, outputs = build_net_fixtures(models, torch, args.seed)
    meta = {"torch": torch.__version__, "nets": meta}
    (out / "nets.json").write_text(json.dumps(meta, indent=1))
    np.savez_compressed(out / "nets.npz", **outputs)
    np.savez_compressed(out / "ops.npz", **build_ops_fixtures(torch, args.seed))
    print(f"wrote {out}/nets.json, nets.npz, ops.npz")


if __name__ == "__main__":
    main()
