"""Deep Image Prior with a user's own forward operator (the ``operator=`` API)."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_OVERRIDES, smooth_image

import dipjax
from dipjax.io import InputError
from dipjax.metrics import psnr_np


@pytest.mark.slow
def test_compressed_sensing_beats_the_minimum_norm_solution():
    gt = smooth_image(32, 32, 1)
    n, m = gt.size, gt.size * 3 // 10
    rng = np.random.default_rng(0)
    A = (rng.normal(size=(m, n)) / np.sqrt(m)).astype(np.float32)
    y = A @ gt.ravel()
    minimum_norm = (np.linalg.pinv(A) @ y).reshape(gt.shape)
    assert minimum_norm.min() < 0 or minimum_norm.max() > 1  # the API clips it, not refuses
    baseline = np.clip(minimum_norm, 0, 1)
    res = dipjax.fit_operator(
        lambda x: jnp.asarray(A) @ x.ravel(),
        y,
        gt.shape,
        gt=gt,
        baseline=minimum_norm,
        iters=300,
        **TINY_OVERRIDES,
    )
    assert res.final["psnr_baseline"] == pytest.approx(psnr_np(baseline, gt))
    assert res.final["psnr_gt"] > res.final["psnr_baseline"] + 3.0, res.final


@pytest.mark.slow
def test_a_nonlinear_operator_fits_its_measurement():
    gt = smooth_image(32, 32, 3)
    op = lambda x: jnp.sqrt(x.mean(-1) + 0.01)  # grey, then a square root
    y = np.asarray(op(jnp.asarray(gt)))
    res = dipjax.fit_operator(op, y, gt.shape, iters=100, **TINY_OVERRIDES)
    assert res.history[-1]["loss"] < 0.1 * res.history[0]["loss"]
    assert res.output.shape == gt.shape


def test_operator_shape_mismatch_is_a_clear_error():
    with pytest.raises(InputError, match=r"shape \(4,\)"):
        dipjax.operator_problem(lambda x: x.ravel()[:4], np.zeros(5), (8, 8, 1))


@pytest.mark.parametrize(
    "args, kw, message",
    [
        ((np.zeros((8, 8)), (8, 8)), {}, r"shape \(8, 8\): the image's \(H, W, C\)"),
        ((np.full((8, 8, 1), np.nan), (8, 8, 1)), {}, "measurement: holds NaN"),
        ((np.zeros((8, 8, 1)), (8, 8, 1)), {"gt": np.zeros((4, 8, 1))}, r"gt: shape \(4, 8, 1\)"),
        ((np.zeros((8, 8, 1)), (8, 8, 1)), {"baseline": np.zeros((8, 8, 3))}, "baseline: shape"),
    ],
)
def test_operator_inputs_are_checked_before_anything_compiles(args, kw, message):
    with pytest.raises(InputError, match=message):
        dipjax.operator_problem(lambda x: x, *args, **kw)
