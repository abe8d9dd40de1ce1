"""Downsampler, resampling and LR/HR preparation against the reference's fixtures and FACTS.md."""

import json
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from dipjax.nets.layers import upsample2
from dipjax.ops import Downsampler, downsampler_kernel
from dipjax.ops.downsampler import kernel_1d

OPS = np.load(pathlib.Path(__file__).parent / "fixtures" / "ops.npz")
SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared"
FACTS = json.loads((SHARED / "reference" / "facts.json").read_text()) if SHARED.exists() else None


def nhwc(x):
    return jnp.asarray(np.transpose(x, (0, 2, 3, 1)))


@pytest.mark.parametrize("f", [2, 4, 8])
@pytest.mark.parametrize("kind", ["lanczos2", "lanczos3"])
def test_lanczos_kernels_match_reference(kind, f):
    ours = downsampler_kernel(f, kind, 0.5)
    np.testing.assert_allclose(ours, OPS[f"kernel_{kind}_x{f}"], atol=1e-12)


def test_other_kernels_match_reference():
    np.testing.assert_allclose(
        downsampler_kernel(2, "gauss12", 0), OPS["kernel_gauss12_x2"], atol=1e-12
    )
    np.testing.assert_allclose(
        downsampler_kernel(4, "gauss1sq2", 0), OPS["kernel_gauss1sq2_x4"], atol=1e-12
    )
    np.testing.assert_allclose(
        downsampler_kernel(4, "box", 0.5, kernel_width=5), OPS["kernel_box_w5_x4"], atol=1e-12
    )
    np.testing.assert_allclose(
        downsampler_kernel(3, "lanczos", 0, kernel_width=13, support=2),
        OPS["kernel_lanczos_phase0_x3"],
        atol=1e-12,
    )


def test_lanczos2_x4_kernel_matches_facts_numbers():
    # FACTS.md section 2: first row of the 2-D kernel and the 1-D factor.
    row = [
        1.1350403751475116e-06,
        1.0389294380079366e-05,
        2.171674838705858e-05,
        1.5850648064267786e-05,
        -2.6202091698075332e-05,
        -0.00010510906219336351,
    ]
    np.testing.assert_allclose(downsampler_kernel(4, "lanczos2", 0.5)[0, :6], row, rtol=1e-10)
    k1 = kernel_1d(4, "lanczos2", 0.5)
    np.testing.assert_allclose(
        k1[:4],
        [
            -0.0010653827364602414,
            -0.009751701453881295,
            -0.020383987504071048,
            -0.014877890847876822,
        ],
        rtol=1e-10,
    )
    np.testing.assert_allclose(k1, k1[::-1])


@pytest.mark.parametrize("name", ["lanczos2_x4", "lanczos2_x8", "lanczos3_x4", "lanczos3_x8"])
def test_downsampler_matches_reference(name):
    kind, f = name.split("_x")
    y = np.asarray(Downsampler(int(f), kind)(nhwc(OPS["down_input"]))).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(y, OPS[f"down_{name}"], atol=1e-5, rtol=0)


def test_gauss_downsampler_matches_reference():
    y = Downsampler(2, "gauss12", phase=0)(nhwc(OPS["down_input"]))
    np.testing.assert_allclose(
        np.asarray(y).transpose(0, 3, 1, 2), OPS["down_gauss12_x2"], atol=1e-5
    )


def test_downsampler_facts_end_to_end():
    x = np.arange(3 * 32 * 48, dtype=np.float32).reshape(1, 3, 32, 48) / 4608
    y = np.asarray(Downsampler(4, "lanczos2")(nhwc(x)))
    assert y.shape == (1, 8, 12, 3)
    assert y[0, 0, 0, 0] == pytest.approx(0.01559456717, abs=1e-6)
    assert y[0, 3, 5, 0] == pytest.approx(0.14529079199, abs=1e-6)
    assert float(y.sum()) == pytest.approx(143.96875, abs=1e-3)


@pytest.mark.parametrize("channels", [3, 6])  # matrix products; convolutions
@pytest.mark.parametrize("preserve", [True, False])
def test_downsampler_is_the_padded_blur_subsampled_by_definition(preserve, channels):
    d = Downsampler(4, "lanczos2", preserve_size=preserve)
    x = np.random.default_rng(0).uniform(size=(2, 37, 29, channels))
    k2 = np.outer(d.kernel, d.kernel)
    p = d.pad if preserve else 0
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="edge")
    ho, wo = ((n - len(d.kernel)) // 4 + 1 for n in xp.shape[1:3])
    want = np.zeros((2, ho, wo, channels))
    for i in range(ho):
        for j in range(wo):
            win = xp[:, 4 * i : 4 * i + len(d.kernel), 4 * j : 4 * j + len(d.kernel)]
            want[:, i, j] = np.einsum("nabc,ab->nc", win, k2)
    np.testing.assert_allclose(np.asarray(d(x.astype(np.float32))), want, atol=1e-6)


def test_downsampler_pads():
    # FACTS.md: K=16 pad 6 (x4), K=32 pad 12 (x8), lanczos3 x4 K=24 pad 10, x8 K=48 pad 20.
    assert [Downsampler(4).pad, Downsampler(8).pad] == [6, 12]
    assert [Downsampler(4, "lanczos3").pad, Downsampler(8, "lanczos3").pad] == [10, 20]


def test_downsampler_rejects_bad_settings():
    with pytest.raises(ValueError, match="phase"):
        kernel_1d(2, "gauss12", 0.5)
    with pytest.raises(ValueError, match="box"):
        kernel_1d(2, "box", 0, kernel_width=3)
    with pytest.raises(ValueError, match="kernel_type"):
        kernel_1d(2, "cubic", 0.5)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_upsample_matches_pytorch(mode):
    y = np.asarray(upsample2(nhwc(OPS["upsample_input"]), mode)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(y, OPS[f"upsample_{mode}"], atol=1e-6)


@pytest.mark.skipif(FACTS is None, reason="shared/ data not present")
@pytest.mark.parametrize("factor", [4, 8])
def test_sr_pair_matches_reference_zebra(factor):
    from dipjax.io import load_image, sr_pair

    facts = FACTS["sr_images"][f"zebra_GT_x{factor}"]
    hr, lr = sr_pair(load_image(SHARED / "data" / "dip" / "sr" / "zebra_GT.png"), factor)
    assert list(hr.shape) == [facts["HR"][1], facts["HR"][2], 3]
    assert list(lr.shape) == [facts["LR"][1], facts["LR"][2], 3]
    assert float(lr.mean()) == pytest.approx(facts["LR_mean"], abs=1 / 255)
    np.testing.assert_allclose(lr[0, 0], facts["LR_first_px"], atol=1 / 255 + 1e-6)


@pytest.mark.parametrize("slope", [1.0, 0.2, 0.0])  # no activation, LeakyReLU, ReLU
@pytest.mark.parametrize("axes", [(0, 1, 2), (1, 2)])  # BatchNorm's and InstanceNorm's
def test_normalisation_gradient_is_the_autodiff_of_its_definition(axes, slope):
    import jax

    from dipjax.nets.layers import norm_act

    def by_definition(x, scale, bias):  # two-pass statistics, affine map, activation: autodiff
        mean = x.mean(axis=axes, keepdims=True)
        var = jnp.square(x - mean).mean(axis=axes, keepdims=True)
        z = (x - mean) / jnp.sqrt(var + 1e-5) * scale + bias
        return jnp.where(z > 0, z, slope * z)

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(1.0, 3.0, (2, 6, 5, 4)), jnp.float32)
    scale = jnp.asarray(rng.uniform(0.5, 2.0, 4), jnp.float32)
    bias = jnp.asarray(rng.normal(0.0, 0.5, 4), jnp.float32)
    g = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    written = lambda x, scale, bias: norm_act(x, scale, bias, axes, 1e-5, slope)
    (y, got), (want_y, want) = (
        (f(x, scale, bias), jax.vjp(f, x, scale, bias)[1](g)) for f in (written, by_definition)
    )
    np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-6)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    if slope == 1.0:
        # the input gradient sums to zero over the normalised axes, orthogonal to x-hat there
        xhat = (want_y - bias) / scale
        np.testing.assert_allclose(got[0].sum(axis=axes), 0, atol=1e-4)
        np.testing.assert_allclose((got[0] * xhat).sum(axis=axes), 0, atol=1e-4)


@pytest.mark.parametrize("slope", [0.2, 0.0])
def test_normalisation_activation_at_exactly_zero_is_torchs(slope):
    import jax

    from dipjax.nets.layers import norm_act

    # scale 0, bias 0: the activation's input is exactly 0 everywhere, where torch's LeakyReLU
    # passes 0.2 of the gradient and its ReLU none
    x = jnp.asarray(np.random.default_rng(2).normal(size=(1, 3, 3, 2)), jnp.float32)
    g = jnp.ones_like(x)
    f = lambda x, s, b: norm_act(x, s, b, (0, 1, 2), 1e-5, slope)
    y, (dx, ds, db) = (
        f(x, jnp.zeros(2), jnp.zeros(2)),
        jax.vjp(f, x, jnp.zeros(2), jnp.zeros(2))[1](g),
    )
    np.testing.assert_array_equal(y, 0)
    np.testing.assert_allclose(db, slope * 9, rtol=1e-6)
    np.testing.assert_array_equal(dx, 0)
    np.testing.assert_allclose(ds, 0, atol=1e-5)  # slope x sum of x-hat, which is 0


def test_batchnorm_activation_falls_back_outside_the_fused_ones():
    import jax

    from dipjax.nets.layers import BatchNorm2d, activation

    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, 4, 4, 3)), jnp.float32)
    for act in ("ELU", "Swish", "LeakyReLU", "ReLU"):
        bn = BatchNorm2d(3, act=act)
        params = bn.init(jax.random.key(0), x)
        plain = BatchNorm2d(3).apply(params, x)
        np.testing.assert_allclose(bn.apply(params, x), activation(act, plain), atol=1e-6)
    with pytest.raises(ValueError, match="act_fun"):
        BatchNorm2d(3, act="Tanh").init(jax.random.key(0), x)


def test_leaky_relu_and_its_derivative_are_torchs():
    import jax

    from dipjax.nets.layers import activation

    act = lambda x: activation("LeakyReLU", x)
    x = jnp.asarray([-3.0, -0.5, 0.0, 0.25, 2.0])
    np.testing.assert_allclose(act(x), [-0.6, -0.1, 0.0, 0.25, 2.0], rtol=1e-6)
    # torch's leaky_relu_backward: slope 1 above 0, 0.2 at and below 0
    np.testing.assert_allclose(jax.grad(lambda x: act(x).sum())(x), [0.2, 0.2, 0.2, 1, 1])
    y = jnp.asarray(np.random.default_rng(2).normal(size=(3, 5, 4)), jnp.float32)
    g = jnp.asarray(np.random.default_rng(3).normal(size=y.shape), jnp.float32)
    by_autodiff = jax.vjp(lambda y: jnp.maximum(y, 0.2 * y), y)[1](g)[0]
    np.testing.assert_allclose(jax.vjp(act, y)[1](g)[0], by_autodiff, rtol=1e-6)
