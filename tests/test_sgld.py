"""Bayesian DIP by SGLD: noise off is the plain fit, the running posterior moments are the mean
and standard deviation of the samples, and the files and columns a run writes."""

import json

import jax
import numpy as np
import pytest
from conftest import smooth_image, tiny_preset

from dipjax import api, build
from dipjax.engine import run as dipjax_run
from dipjax.ensemble import pooled_posterior
from dipjax.results import posterior_record
from dipjax.step import forward, init_state, make_step


def _setup(**kw):
    p = tiny_preset("denoise", sigma=25, reg_noise_std=0.0, **kw)
    problem = api.prepare("denoise", p, smooth_image(16, 16), degrade=True, seed=0)
    return p, problem, build.setup([problem], p, [(0, 0)])


def _steps(step, state, batch, n):
    step = jax.jit(step)
    for _ in range(n):
        state, _ = step(state, batch)
    return state


def test_sgld_off_is_the_plain_fit_bit_for_bit():
    p, problem, su = _setup()
    plain = su.state
    with_moments = init_state(su.net, su.tx, jax.random.key(0), su.batch["z"], 0, posterior=True)
    kw = dict(reg_noise_std=0.0, backtrack_every=0)
    a = _steps(make_step(su.net, su.tx, problem.measure, **kw), plain, su.batch, 6)
    off = make_step(su.net, su.tx, problem.measure, sgld=0.0, sgld_burn_in=2, **kw)
    b = _steps(off, with_moments, su.batch, 6)
    on = make_step(su.net, su.tx, problem.measure, sgld=2.0, sgld_burn_in=2, **kw)
    c = _steps(on, with_moments, su.batch, 6)
    leaves = lambda s: jax.tree_util.tree_leaves((s.params, s.opt_state, s.out_avg))
    for x, y in zip(leaves(a), leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert int(b.post["n"]) == 4  # iterations 3..6, after a burn-in of 2
    assert any(
        not np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(c.params))
    )


def test_posterior_moments_are_the_samples_mean_and_std():
    p, problem, su = _setup()
    state = init_state(su.net, su.tx, jax.random.key(0), su.batch["z"], 0, posterior=True)
    burn_in, n = 3, 9
    step = jax.jit(
        make_step(su.net, su.tx, problem.measure, sgld=2.0, sgld_burn_in=burn_in, exp_weight=0.9)
    )
    render = jax.jit(lambda params: forward(su.net, params, su.batch["z"]))
    samples = []
    for i in range(n):
        if i >= burn_in:  # the step's own forward pass: z is not perturbed (reg_noise_std 0)
            samples.append(np.asarray(render(state.params), np.float64)[0])
        state, _ = step(state, su.batch)
    samples = np.stack(samples)
    got = posterior_record(jax.device_get(state.post))
    assert got["samples"] == n - burn_in == len(samples)
    np.testing.assert_allclose(got["mean"], np.clip(samples.mean(0), 0, 1), atol=2e-6)
    np.testing.assert_allclose(got["std"], samples.std(0), atol=2e-6)
    assert got["std"].max() > 1e-4  # the chain moved: the check above is not 0 == 0


def test_seed_chains_are_vmapped_and_differ():
    p, problem, _ = _setup(iters=8, sgld=2.0, sgld_burn_in=4)
    run = dipjax_run([problem], p, [0, 1], strategy="vmap", chunk=4)
    a, b = run.fits
    assert a.posterior["samples"] == b.posterior["samples"] == 4
    assert not np.array_equal(a.posterior["mean"], b.posterior["mean"])
    assert "psnr_gt_post" in a.final


@pytest.mark.slow
def test_cli_sgld_writes_the_posterior(tmp_path):
    from dipjax import fit

    img = tmp_path / "clean.png"
    from dipjax.io import save_png

    save_png(img, smooth_image(32, 32))
    out = tmp_path / "out"
    argv = ["--preset", "denoise-fast", "--image", str(img), "--degrade", "--iters", "4"]
    argv += ["--chunk", "2", "--sgld", "--sgld-burn-in", "2", "--seeds", "2"]  # one compile
    argv += ["--out", str(out), "--quiet"]
    assert fit.main(argv) == 0
    for folder in (out, out / "seed_0", out / "seed_1"):  # the chains pooled, and each chain
        for name in ("posterior_mean.png", "posterior_std.png"):
            assert (folder / name).stat().st_size > 0
    chains = [np.load(out / f"seed_{s}" / "posterior_mean.npy") for s in (0, 1)]
    np.testing.assert_allclose(np.load(out / "posterior_mean.npy"), np.mean(chains, 0), atol=1e-6)
    std = np.load(out / "posterior_std.npy")
    assert std.shape == (32, 32, 3) and np.isfinite(std).all() and std.max() > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["hyperparameters"]["sgld"] == 0.5
    assert [f["posterior_samples"] for f in summary["fits"]] == [2, 2]
    assert "psnr_gt_post" in summary["fits"][0]["final"]


def test_pooled_chains_are_the_moments_of_all_samples():
    rng = np.random.default_rng(0)
    chains = [rng.normal(m, s, (n, 4, 5, 3)) for m, s, n in ((0.2, 0.1, 7), (0.5, 0.3, 7))]
    each = [{"samples": len(c), "mean": c.mean(0), "std": c.std(0)} for c in chains]
    pooled = pooled_posterior(each)
    every = np.concatenate(chains)
    assert pooled["samples"] == 14
    np.testing.assert_allclose(pooled["mean"], every.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pooled["std"], every.std(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(sgld_burn_in=3), "sgld_burn_in"),  # a burn-in without SGLD does nothing
        (dict(sgld=0.5, sgld_burn_in=20), "sgld_burn_in"),  # no samples would be left
        (dict(sgld=0.5, early_stop="halt"), "early_stop"),  # could stop before the samples
        (dict(sgld=-1.0), "sgld"),
    ],
)
def test_settings_that_would_give_no_posterior_are_refused(kw, name):
    from dipjax.presets import ParameterError

    with pytest.raises(ParameterError) as e:
        tiny_preset("denoise", iters=20, **kw)
    assert e.value.name == name


def test_burn_in_defaults_to_half_and_is_recorded_resolved():
    from dipjax.outputs import hyperparameters

    p = tiny_preset("denoise", iters=20, sgld=0.5)
    assert p.burn_in == 10 and hyperparameters(p)["sgld_burn_in"] == 10
    assert tiny_preset("denoise", iters=20, sgld=0.5, sgld_burn_in=0).burn_in == 0
