"""The Deep Decoder: shapes, parameter count against the paper's closed form, its presets, and a
tiny fit that beats its noisy input without early stopping."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import smooth_image

from dipjax import api, build
from dipjax.engine import fit_problem
from dipjax.nets import count_params, deep_decoder
from dipjax.netspec import NetSpec
from dipjax.presets import PRESETS, Preset


def closed_form(k: int, d: int, c_in: int, c_out: int) -> int:
    # first 1x1 conv c_in*k, then (d - 1) k x k convs, a scale and a shift per channel and
    # layer, and the k -> c_out output conv; no biases.
    return c_in * k + (d - 1) * k * k + 2 * k * d + k * c_out


@pytest.mark.parametrize("k,d,c_in,c_out", [(128, 6, 128, 3), (64, 6, 64, 3), (16, 4, 8, 1)])
def test_shapes_and_parameter_count(k, d, c_in, c_out):
    net = deep_decoder(c_in, c_out, channels=k, layers=d)
    assert net.input_scale == 2 ** (d - 1)
    z = jnp.zeros((2, 3, 5, c_in))
    variables, out = jax.eval_shape(lambda x: net.init_with_output(jax.random.key(0), x), z)[::-1]
    assert out.shape == (2, 3 * 2 ** (d - 1), 5 * 2 ** (d - 1), c_out)
    assert count_params(variables) == closed_form(k, d, c_in, c_out)


def test_paper_sizes():
    # Heckel and Hand's denoising decoder: k = 128 channels, d = 6 layers, RGB out.
    assert closed_form(128, 6, 128, 3) == 100_224
    for name, k in (("denoise-dd", 128), ("inpaint-dd", 128), ("denoise-dd-fast", 64)):
        p = PRESETS[name]
        net = deep_decoder(p.input_depth, 3, **dict(p.net.kwargs))
        z = jnp.zeros((1, 8, 8, p.input_depth))
        variables = jax.eval_shape(net.init, jax.random.key(0), z)
        assert count_params(variables) == closed_form(k, 6, k, 3), name
        assert p.reg_noise_std == 0.0 and p.early_stop == "off"


def test_sizes_it_cannot_make_name_the_multiple():
    p = PRESETS["denoise-dd-fast"].replace(iters=1)
    cropped = api.prepare("denoise", p, smooth_image(40, 40), degrade=True)
    assert cropped.out_hw == (32, 32)  # the preset crops to its multiple
    uncropped = api.prepare("denoise", p.replace(crop=1), smooth_image(40, 40), degrade=True)
    with pytest.raises(build.SizeError, match="multiples of 32") as e:
        build.setup([uncropped], p, [(0, 0)])
    assert e.value.side == 32


@pytest.mark.slow
def test_tiny_deep_decoder_fit_beats_its_noisy_input():
    net = NetSpec.of("deep_decoder", 16, 3, channels=16, layers=4)
    p = Preset("tiny-dd", "denoise", net, input_depth=16, iters=300, reg_noise_std=0.0, crop=8)
    p = p.replace(sigma=50)
    problem = api.prepare("denoise", p, smooth_image(32, 32), degrade=True, seed=0)
    res = fit_problem(problem, p, seed=0)
    assert res.final["psnr_gt"] > res.final["psnr_baseline"] + 2.0, res.final


def test_one_layer_by_hand():
    # conv 1x1 (no bias) -> ReLU -> channel normalisation (scale, shift) -> conv 1x1 -> sigmoid
    net = deep_decoder(4, 2, channels=3, layers=1)
    z = jax.random.uniform(jax.random.key(1), (1, 5, 6, 4))
    params = net.init(jax.random.key(0), z)["params"]
    leaves = {
        "/".join(k.key for k in path): np.asarray(v)
        for path, v in jax.tree_util.tree_leaves_with_path(params)
    }
    convs = sorted(k for k in leaves if k.endswith("kernel"))
    norm = [k.rsplit("/", 1)[0] for k in leaves if k.endswith("scale")][0]
    h = np.maximum(np.asarray(z, np.float64) @ leaves[convs[0]][0, 0], 0)
    h = (h - h.mean((0, 1, 2))) / np.sqrt(h.var((0, 1, 2)) + 1e-5)
    h = h * leaves[norm + "/scale"] + leaves[norm + "/bias"]
    want = 1 / (1 + np.exp(-(h @ leaves[convs[1]][0, 0])))
    got = np.asarray(net.apply({"params": params}, z))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
