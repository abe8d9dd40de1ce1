"""A vmapped K-seed ensemble equals K separate fits with the same seeds."""

import numpy as np
import pytest
from conftest import smooth_image, tiny_preset

from dipjax import api, run
from dipjax.engine import fit_problem
from dipjax.ensemble import ensemble_stats, uncertainty_map
from dipjax.metrics import psnr_np


@pytest.mark.slow
def test_vmapped_seeds_equal_separate_fits():
    # A small learning rate: Adam's first updates are about lr * sign(gradient), so where a
    # gradient is ~0 the float reassociation of a grouped convolution flips the update and the
    # fits drift apart by ~2 lr per step. At lr 1e-5 the same computation stays within 1e-4.
    p = tiny_preset("denoise", iters=6, reg_noise_std=1 / 30, backtrack_every=1, lr=1e-5)
    prob = api.prepare("denoise", p, smooth_image(), degrade=True, seed=0)
    ens = run([prob], p, [3, 7], strategy="vmap", chunk=1)
    seq = run([prob], p, [3, 7], strategy="sequential", chunk=1)
    single = fit_problem(prob, p, seed=7, chunk=1)
    assert ens.batches == [[2]] and seq.batches == [[1, 1]]
    outs = np.stack([f.output for f in ens.fits])
    np.testing.assert_allclose(outs, np.stack([f.output for f in seq.fits]), atol=1e-4)
    np.testing.assert_allclose(outs[1], single.output, atol=1e-4)
    for fe, fs in zip(ens.fits, seq.fits):
        np.testing.assert_allclose(
            [h["loss"] for h in fe.history], [h["loss"] for h in fs.history], rtol=1e-5
        )
    assert not np.allclose(outs[0], outs[1], atol=1e-3)  # the seeds differ
    stats = ensemble_stats(ens.fits)
    # against an independent two-sample formula: std = |a - b| / 2
    np.testing.assert_allclose(stats["mean"], (outs[0] + outs[1]) / 2, atol=1e-7)
    np.testing.assert_allclose(stats["std"], np.abs(outs[0] - outs[1]) / 2, atol=1e-7)
    assert stats["final"]["psnr_mean"] == pytest.approx(psnr_np(stats["mean"], prob.gt))
    assert stats["final"]["seeds"] == [3, 7] and len(stats["final"]["per_seed"]) == 2
    u = uncertainty_map(stats["std"])
    assert u.shape == (32, 32, 1) and u.max() == pytest.approx(1.0)
    np.testing.assert_allclose(
        u[..., 0], stats["std"].mean(-1) / stats["std"].mean(-1).max(), rtol=1e-6
    )


def test_ensemble_stats_refuses_no_fits_and_fits_of_several_problems():
    from types import SimpleNamespace

    fit = lambda index: SimpleNamespace(index=index, output=np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="no fits"):
        ensemble_stats([])
    with pytest.raises(ValueError, match=r"several problems \(indices \[0, 1\]\)"):
        ensemble_stats([fit(0), fit(1)])
