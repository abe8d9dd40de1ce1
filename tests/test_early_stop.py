"""ES-WMV: the detector on a closed-form trajectory, and inside real (tiny) fits."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import smooth_image, tiny_preset

from dipjax import api, early_stop
from dipjax.engine import fit_problem
from dipjax.fit import main


def _detect(xs, window, patience):
    es = early_stop.init(window, xs.shape[1:])

    def body(es, args):
        x, it = args
        es, var = early_stop.update(es, x, it, patience)
        return es, var

    its = jnp.arange(1, xs.shape[0] + 1)
    return jax.jit(lambda xs: jax.lax.scan(body, es, (xs, its)))(xs)


def test_detector_finds_the_turn_of_a_fit_that_learns_then_overfits():
    # x_t = gt (1 - e^{-t/30}) + noise * sigmoid((t - 400) / 40): the content is learnt fast,
    # the noise later; the distance to gt is smallest between the two phases, where the
    # outputs move least. The best iteration is known in closed form.
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.2, 0.8, (1, 16, 16, 3))
    noise = rng.normal(0, 0.1, gt.shape)
    t = np.arange(1, 1001)[:, None, None, None, None]
    xs = gt * (1 - np.exp(-t / 30)) + noise / (1 + np.exp(-(t - 400) / 40))
    err = np.sqrt(((xs - gt) ** 2).mean(axis=(1, 2, 3, 4)))
    best = int(np.argmin(err)) + 1
    window, patience = 50, 200
    es, var = _detect(jnp.asarray(xs, jnp.float32), window, patience)
    assert np.isnan(np.asarray(var[: window - 1])).all() and np.isfinite(var[window - 1 :]).all()
    assert bool(es["fired"])
    assert abs(int(es["best_iter"]) - best) <= window, (int(es["best_iter"]), best)
    # it fires exactly `patience` steps after the last minimum
    assert int(es["fired_at"]) == int(es["best_iter"]) + patience
    np.testing.assert_allclose(np.asarray(es["best_out"]), xs[int(es["best_iter"]) - 1], atol=1e-6)
    # the variance it reports is the window's variance, computed here independently
    k = int(es["best_iter"])  # the window of iterations k - window + 1 .. k
    np.testing.assert_allclose(
        float(es["best_var"]), xs[k - window : k].var(axis=0).mean(), rtol=1e-4
    )


def test_detector_does_not_fire_while_the_variance_keeps_falling():
    t = np.arange(1, 301, dtype=np.float32)[:, None, None, None, None]
    xs = np.exp(-t / 50) * np.ones((1, 4, 4, 1), np.float32)
    es, _ = _detect(jnp.asarray(xs), 20, 30)
    assert not bool(es["fired"]) and int(es["best_iter"]) == 300


@pytest.fixture(scope="module")
def noisy_problem():
    p = tiny_preset("denoise", iters=60, reg_noise_std=0.0)
    return api.prepare("denoise", p, smooth_image(), degrade=True)


@pytest.mark.slow
def test_halt_stops_at_the_chunk_where_it_fires_and_mark_runs_on(noisy_problem):
    p = tiny_preset(
        "denoise", iters=60, reg_noise_std=0.0, early_stop="halt", es_window=5, es_patience=3
    )
    halted = fit_problem(noisy_problem, p, chunk=5)
    es = halted.early_stop
    assert es["fired"] and not halted.interrupted
    assert len(halted.history) == -(-es["fired_at"] // 5) * 5 < 60
    marked = fit_problem(noisy_problem, p.replace(early_stop="mark"), chunk=5)
    assert len(marked.history) == 60
    # same seed, same steps up to the detection: the same detection
    assert marked.early_stop["iter"] == es["iter"]
    np.testing.assert_array_equal(marked.early_stop["output"], es["output"])
    assert "psnr_gt_es" in marked.final
    # the detector does not change the fit itself: bit for bit one step per call (the CPU's
    # default chunk); in a longer unrolled chunk XLA may fuse the loss's reductions otherwise
    marked = fit_problem(noisy_problem, p.replace(early_stop="mark"), chunk=1)
    off = fit_problem(noisy_problem, p.replace(early_stop="off"), chunk=1)
    assert off.early_stop is None and "wmv" not in off.history[0]
    np.testing.assert_array_equal(off.output, marked.output)


@pytest.mark.slow
def test_cli_writes_the_early_stopping_output(tmp_path):
    out = tmp_path / "o"
    rc = main(
        [
            "--task",
            "denoise",
            "--preset",
            "denoise-fast",
            "--iters",
            "6",
            "--early-stop",
            "--es-window",
            "4",
            "--es-patience",
            "2",
            "--chunk",
            "1",
            "--out",
            str(out),
            "--quiet",
            "--image",
            str(_small_png(tmp_path)),
        ]
    )
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["hyperparameters"]["early_stop"] == "mark"
    assert s["fits"][0]["early_stop"]["iter"] >= 1 and (out / "output_es.png").is_file()
    assert "wmv" in json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])


def _small_png(tmp_path):
    from dipjax.io import save_png

    path = tmp_path / "noisy.png"
    save_png(path, smooth_image(64, 64))
    return path


def _strict(text: str):
    """JSON as every parser reads it: NaN and Infinity are not JSON."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.slow
def test_a_run_shorter_than_the_window_claims_no_detection_and_writes_strict_json(tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["--task", "denoise", "--preset", "denoise-fast", "--iters", "3", "--early-stop"]
    argv += ["--es-window", "4", "--out", str(out), "--quiet", "--image"]
    assert main(argv + [str(_small_png(tmp_path))]) == 0
    said = capsys.readouterr().err
    assert "early stopping: nothing detected" in said and "output_es.png" not in said, said
    assert not (out / "output_es.png").exists()
    s = _strict((out / "summary.json").read_text())
    assert s["fits"][0]["early_stop"]["wmv"] is None  # no window's variance: was Infinity
    rows = [_strict(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["wmv"] is None for r in rows)  # were NaN
    assert _strict((out / "metrics.json").read_text())[0]["es_iter"] is None


def test_a_step_not_taken_leaves_the_detector_as_it_was():
    # A diverged step (take=False) must not enter the window nor count towards the patience.
    xs = jnp.asarray(np.linspace(1, 0, 32, dtype=np.float32).reshape(8, 1, 2, 2, 1))
    es, _ = _detect(xs, 3, 2)
    for take in (False, True):
        new, _ = early_stop.update(es, jnp.full((1, 2, 2, 1), jnp.nan), jnp.int32(9), 2, take)
        same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b, equal_nan=True)), new, es)
        assert all(jax.tree.leaves(same)) is not take, same


def test_the_api_returns_no_output_when_nothing_was_detected(noisy_problem):
    p = tiny_preset("denoise", iters=3, reg_noise_std=0.0, early_stop="mark", es_window=5)
    es = fit_problem(noisy_problem, p, chunk=1).early_stop
    assert es["iter"] == 0 and es["output"] is None and not es["fired"]
