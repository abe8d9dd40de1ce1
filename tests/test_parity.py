"""Parity with the reference PyTorch code, from fixtures made by
experiments/make_reference_fixtures.py (torch is not needed here)."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dipjax import count_params, nets, torch_weights
from dipjax.netspec import RECIPE_NETS, NetSpec
from dipjax.testing import synthetic_input, synthetic_state_dict

FIX = pathlib.Path(__file__).parent / "fixtures"
META = json.loads((FIX / "nets.json").read_text())["nets"]
OUTPUTS = np.load(FIX / "nets.npz")

# Our constructors for the fixture variants, mirroring the torch calls in the fixtures script.
VARIANTS = {
    "denoising_F16_odd": RECIPE_NETS["denoising_F16"],
    "inpaint_library_UNET_odd": RECIPE_NETS["inpaint_library_UNET"],
    "variant_skip_zero_lanczos2_elu": NetSpec.of(
        "skip",
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
    "variant_skip_mixed_down_swish": NetSpec.of(
        "skip",
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
    "variant_skip_relu_none": NetSpec.of(
        "skip", 3, 3, [8, 8], [8, 8], [4, 4], act_fun="ReLU", pad="reflection", need_bias=False
    ),
    "variant_skip_act_none": NetSpec.of(
        "skip", 3, 3, [8, 8], [8, 8], [4, 4], act_fun="none", pad="zero"
    ),
    "variant_unet_bilinear_batch_concat": NetSpec.of(
        "UNet",
        3,
        3,
        feature_scale=16,
        more_layers=0,
        concat_x=True,
        upsample_mode="bilinear",
        pad="reflection",
        norm_layer="batch",
    ),
    "variant_unet_nearest_nonorm": NetSpec.of(
        "UNet",
        2,
        3,
        feature_scale=16,
        upsample_mode="nearest",
        pad="zero",
        norm_layer="none",
        need_sigmoid=False,
    ),
    "variant_resnet_plain_elu": NetSpec.of(
        "ResNet", 2, 3, 2, 8, need_residual=False, act_fun="ELU"
    ),
    "variant_texture_nets": NetSpec.of("texture_nets", inp=3, pad="zero"),
    "variant_texture_nets_reflection": NetSpec.of(
        "texture_nets", inp=2, ratios=[8, 4, 2, 1], pad="reflection", need_sigmoid=True
    ),
    "variant_dcgan": NetSpec.of("dcgan", inp=2, ndf=8, num_ups=5),
    "variant_dcgan_upsample": NetSpec.of("dcgan", inp=2, ndf=8, num_ups=4, need_convT=False),
}
SPECS = {**RECIPE_NETS, **VARIANTS}


def _nhwc(x):
    return jnp.asarray(np.transpose(x, (0, 2, 3, 1)))


def _transplanted(name):
    meta = META[name]
    net = SPECS[name].build()
    x = _nhwc(synthetic_input(meta["input_shape_nchw"], meta["input_seed"]))
    variables = jax.eval_shape(net.init, jax.random.key(0), x)
    sd = synthetic_state_dict(meta["state_dict"], meta["weight_seed"])
    return net, torch_weights.load(sd, variables), x


def test_every_fixture_has_a_spec():
    assert set(META) == set(SPECS)


@pytest.mark.parametrize("name", sorted(META))
def test_parameter_count_matches_reference(name):
    net, variables, _ = _transplanted(name)
    expected = META[name]["params"] - META[name]["params_fixed_downsampler"]
    assert count_params(variables) == expected


@pytest.mark.parametrize("name", sorted(META))
def test_forward_matches_reference(name):
    net, variables, x = _transplanted(name)
    y = np.asarray(jax.jit(net.apply)(variables, x)).transpose(0, 3, 1, 2)
    ref = OUTPUTS[name]
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, atol=1e-4, rtol=0)


def test_recipe_counts_match_facts_table():
    # The counts FACTS.md measured at the notebooks' settings, independent of our fixtures.
    facts = {
        "denoising_F16": 2217831,
        "denoising_snail_jpeg": 572827,
        "sr_x4": 2217831,
        "sr_x8": 2217831,
        "inpaint_vase": 2157955,
        "inpaint_kate": 3002627,
        "inpaint_library_skip_depth6": 2996467,
        "inpaint_library_skip_depth4": 1060339,
        "inpaint_library_skip_depth2": 59635,
        "inpaint_library_UNET": 1616315,
        "inpaint_library_ResNet": 158979,
        "restoration_barbara": 2217573,
        "restoration_kate": 1027379,
        "flash_no_flash": 2184307,
    }
    for name, count in facts.items():
        _, variables, _ = _transplanted(name)  # dipjax's own generator for the recipe
        fixed = META[name]["params_fixed_downsampler"]  # trainable in the reference, not here
        assert count_params(variables) + fixed == count, name


def test_transplant_names_the_first_bad_key():
    net, variables, _ = _transplanted("variant_skip_act_none")
    sd = synthetic_state_dict(META["variant_skip_act_none"]["state_dict"], 0)
    bad = dict(sd)
    bad["1.1.1.0.weight"] = np.zeros((8, 3, 5, 5), np.float32)
    with pytest.raises(torch_weights.WeightMismatch, match=r"1\.1\.1\.0\.weight: shape"):
        torch_weights.load(bad, variables)
    extra = dict(sd, **{"99.weight": np.zeros(3, np.float32)})
    with pytest.raises(torch_weights.WeightMismatch, match="99.weight: no Flax module"):
        torch_weights.load(extra, variables)
    missing = {k: v for k, v in sd.items() if k != "6.0.bias"}
    with pytest.raises(torch_weights.WeightMismatch, match="6.0/bias"):
        torch_weights.load(missing, variables)


def test_get_net_builds_all_types():
    for t in nets.NET_TYPES:
        net = nets.get_net(2, t, "reflection", "nearest")
        x = jnp.zeros((1, 4, 4, 2) if t == "dcgan" else (1, 64, 64, 2))
        assert jax.eval_shape(net.init, jax.random.key(0), x)["params"]
