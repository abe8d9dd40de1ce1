"""The blur operator against scipy, the deblurring task, and the total-variation regulariser."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_preset
from scipy import ndimage

from dipjax import api, tasks
from dipjax.engine import fit_problem
from dipjax.fit import main
from dipjax.io import InputError, save_png
from dipjax.ops.blur import blur, gaussian_kernel, parse_blur


def test_gaussian_kernel_is_normalised_symmetric_and_has_its_sigma():
    k = gaussian_kernel(2.0)
    assert k.shape == (13, 13) and abs(k.sum() - 1) < 1e-12
    np.testing.assert_allclose(k, k.T)
    np.testing.assert_allclose(k, k[::-1, ::-1])
    x = np.arange(-6, 7)
    # the marginal's variance is sigma^2, up to the truncation at 3 sigma
    assert abs((k.sum(0) * x**2).sum() - 4.0) < 0.12
    np.testing.assert_allclose(parse_blur("gauss:2"), k)
    for bad in ("gauss", "box:2", "gauss:x", "gauss:-1"):
        with pytest.raises(ValueError):
            parse_blur(bad)


def test_blur_is_a_convolution_with_mirror_borders():
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(1, 20, 24, 3)).astype(np.float32)
    k = rng.uniform(size=(5, 3))  # asymmetric: tells convolution from correlation
    k /= k.sum()
    got = np.asarray(blur(jnp.asarray(img), k))
    want = np.stack(
        [ndimage.convolve(img[0, ..., c].astype(np.float64), k, mode="mirror") for c in range(3)],
        -1,
    )
    np.testing.assert_allclose(got[0], want, atol=1e-5)


def test_blur_keeps_a_constant_image():
    img = jnp.full((1, 16, 16, 1), 0.3)
    np.testing.assert_allclose(np.asarray(blur(img, gaussian_kernel(1.0))), 0.3, atol=1e-6)


def _blocks(n=32):
    """Sharp-edged test picture: 8-pixel blocks of two levels per channel."""
    y, x = np.mgrid[0:n, 0:n] // 8
    a = ((x + y) % 2).astype(np.float32)
    return np.stack([0.2 + 0.6 * a, 0.8 - 0.6 * a, 0.3 + 0.4 * (y % 2)], -1).astype(np.float32)


@pytest.mark.slow
def test_deblur_beats_the_blurred_input():
    p = tiny_preset("deblur", iters=300, reg_noise_std=0.0, blur="gauss:1.5", sigma=0.0)
    prob = api.prepare("deblur", p, _blocks(), degrade=True)
    k = gaussian_kernel(1.5)
    want = np.stack([ndimage.convolve(_blocks()[..., c], k, mode="mirror") for c in range(3)], -1)
    np.testing.assert_allclose(prob.target, want, atol=1e-5)
    res = fit_problem(prob, p)
    assert res.final["psnr_gt"] > res.final["psnr_baseline"] + 2.0, res.final


def test_total_variation_closed_form():
    x = np.zeros((1, 4, 5, 1), np.float32)
    x[0, :, 2:] = 1.0  # one vertical edge of height 1 across 4 rows
    # horizontal differences: 4 rows x 4 pairs, 4 of them equal 1; vertical: all 0
    assert float(tasks.total_variation(jnp.asarray(x))) == pytest.approx(4 / 16)


@pytest.mark.slow
def test_tv_weight_smooths_the_output():
    p = tiny_preset("denoise", iters=30, reg_noise_std=0.0)
    prob = api.prepare("denoise", p, _blocks(), degrade=True)
    tv = lambda r: float(tasks.total_variation(jnp.asarray(r.output[None])))
    plain = fit_problem(prob, p)
    smooth = fit_problem(prob, p.replace(tv_weight=0.5))
    assert tv(smooth) < 0.8 * tv(plain)


def test_deblur_kernel_errors(tmp_path):
    with pytest.raises(InputError, match="all black"):
        tasks.blur_kernel(kernel=np.zeros((5, 5, 1)), name="k.png")
    with pytest.raises(InputError, match="larger than the image"):
        tasks.prepare_deblur(
            np.zeros((8, 8, 3), np.float32),
            tiny_preset("deblur", crop=0),
            kernel=gaussian_kernel(3.0),
        )
    save_png(tmp_path / "k.png", np.zeros((5, 5, 1)))
    rc = main(
        [
            "--task",
            "deblur",
            "--kernel",
            str(tmp_path / "k.png"),
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ]
    )
    assert rc == 2 and not (tmp_path / "o").exists()
    assert (
        main(["--task", "deblur", "--blur", "box:3", "--quiet", "--out", str(tmp_path / "o2")]) == 2
    )
    assert (
        main(["--task", "denoise", "--blur", "gauss:1", "--quiet", "--out", str(tmp_path / "o3")])
        == 2
    )


@pytest.mark.slow
def test_cli_deblur_with_a_kernel_image(tmp_path):
    k = np.zeros((7, 7, 1), np.float32)
    k[3, :, 0] = 1.0  # horizontal motion blur
    save_png(tmp_path / "k.png", k)
    save_png(tmp_path / "clean.png", np.tile(_blocks(), (2, 2, 1)))
    out = tmp_path / "o"
    rc = main(
        [
            "--task",
            "deblur",
            "--image",
            str(tmp_path / "clean.png"),
            "--degrade",
            "--kernel",
            str(tmp_path / "k.png"),
            "--iters",
            "2",
            "--chunk",
            "1",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["task"] == "deblur" and "psnr_baseline" in s["fits"][0]["final"]
    blurred = np.asarray(__import__("imageio").v3.imread(out / "degraded.png"), np.float32)
    # the motion blur acts along rows only: columns of a block stay sharp
    assert np.abs(np.diff(blurred[:, 0], axis=0)).max() > 100


def test_a_kernel_is_taken_as_a_file_or_an_array(tmp_path):
    k = np.zeros((5, 5, 1), np.float32)
    k[2, 1:4, 0] = 1.0  # a 3-pixel horizontal blur
    save_png(tmp_path / "k.png", k)
    p, img = tiny_preset("deblur", crop=0), np.full((16, 16, 3), 0.5, np.float32)
    from_file = api.prepare("deblur", p, img, kernel=tmp_path / "k.png")
    from_array = api.prepare("deblur", p, img, kernel=3 * k)  # any scale: normalised
    want = np.zeros((5, 5))
    want[2, 1:4] = 1 / 3
    for prob in (from_file, from_array):
        np.testing.assert_allclose(np.array(prob.measure.blur_kernel), want, atol=1e-12)
    with pytest.raises(InputError, match="no such file"):
        api.prepare("deblur", p, img, kernel=tmp_path / "none.png")
