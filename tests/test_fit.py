"""Short fits per task on tiny images, determinism, backtracking and divergence handling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_OVERRIDES, smooth_image, tiny_preset

from dipjax import api, build, tasks
from dipjax.engine import fit_problem
from dipjax.engine import run as dipjax_run
from dipjax.step import make_step


def shapes_image(h=48, w=48):
    y, x = np.mgrid[0:h, 0:w] / h
    img = np.zeros((h, w, 3), np.float32) + 0.2
    img[((x - 0.35) ** 2 + (y - 0.4) ** 2) < 0.05] = [0.9, 0.3, 0.2]
    img[(x > 0.55) & (x < 0.9) & (y > 0.5) & (y < 0.85)] = [0.2, 0.7, 0.9]
    return img


CASES = {
    "denoise": (smooth_image(), dict(sigma=50, iters=150)),
    "superres": (shapes_image(), dict(scale=2, iters=200, reg_noise_std=0.0, crop=16)),
    "inpaint": (smooth_image(), dict(mask_kind="random", keep=0.5, iters=150)),
    "restore": (smooth_image(), dict(mask_kind="random", keep=0.5, iters=150, backtrack_every=50)),
    "flash-no-flash": (
        smooth_image(),
        dict(input_kind="image", input_depth=3, iters=150, reg_noise_std=0.0),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(CASES))
def test_short_fit_beats_the_baseline(task):
    img, kw = CASES[task]
    p = tiny_preset(task, **kw)
    res = fit_problem(api.prepare(task, p, img, degrade=True, seed=0), p, seed=0, chunk=1)
    f = res.final
    assert f["psnr_gt"] > f["psnr_baseline"] + 1.0, f
    assert len(res.history) == p.iters and res.history[-1]["iter"] == p.iters
    want = (img.shape[0] // 16 * 16,) * 2 if task == "superres" else img.shape[:2]
    assert res.output.shape == want + (3,) == res.problem.gt.shape


@pytest.mark.slow
def test_same_seed_same_bits_other_seed_differs():
    p = tiny_preset("denoise", iters=7, reg_noise_std=1 / 30)
    prob = api.prepare("denoise", p, smooth_image(), degrade=True, seed=3)
    a = fit_problem(prob, p, seed=3, chunk=1)
    b = fit_problem(prob, p, seed=3, chunk=1)
    c = fit_problem(prob, p, seed=4, chunk=1)
    np.testing.assert_array_equal(a.output, b.output)
    np.testing.assert_array_equal(a.output_avg, b.output_avg)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert not np.array_equal(a.output, c.output)


def _tiny_step_setup(**step_kw):
    p = tiny_preset("denoise")
    prob = api.prepare("denoise", p, smooth_image(), degrade=True)
    su = build.setup([prob], p, [(0, 0)])
    return su.state, su.batch, jax.jit(make_step(su.net, su.tx, prob.measure, **step_kw))


def _same(a, b):
    return all(
        np.array_equal(x, y)
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    )


def test_nan_loss_rolls_back_and_lowers_the_learning_rate():
    state, batch, step = _tiny_step_setup()
    state, _ = step(state, batch)  # one good step: the saved parameters are the initial ones
    good = state.params
    bad = dict(batch, target=batch["target"].at[0, 0, 0, 0].set(jnp.nan))
    new, m = step(state, bad)
    assert bool(m["diverged"]) and bool(m["rolled_back"])
    assert _same(new.params, state.saved_params) and not _same(new.params, good)
    assert float(new.opt_state.hyperparams["learning_rate"]) == pytest.approx(0.005)
    assert np.isfinite(np.asarray(new.out_avg)).all()
    new2, m2 = step(new, batch)
    assert not bool(m2["diverged"])
    assert float(m2["lr"]) == pytest.approx(0.005)


def test_backtracking_returns_to_saved_parameters_on_a_sharp_drop():
    state, batch, step = _tiny_step_setup(backtrack_every=1, backtrack_drop_db=5.0)
    s1, m1 = step(state, batch)
    assert not bool(m1["rolled_back"])
    assert _same(s1.saved_params, state.params)  # the pre-update parameters were saved
    # Pretend the last check saw a PSNR 20 dB higher: the next step is a sharp drop.
    s1 = s1.replace(last_psnr=s1.last_psnr + 20.0)
    s2, m2 = step(s1, batch)
    assert bool(m2["rolled_back"]) and not bool(m2["diverged"])
    assert _same(s2.params, s1.saved_params)


def test_backtracking_only_checks_every_n_steps():
    state, batch, step = _tiny_step_setup(backtrack_every=50)
    s1, _ = step(state, batch)  # step 0 is a check: saved
    s1 = s1.replace(last_psnr=s1.last_psnr + 100.0)
    s2, m2 = step(s1, batch)  # step 1 is not a check
    assert not bool(m2["rolled_back"])


def test_too_small_image_is_a_clear_error():
    p = tiny_preset("denoise", crop=0)
    prob = tasks.prepare_denoise(np.zeros((3, 3, 3), np.float32), p)
    with pytest.raises(api.InputError, match="fails at this size.*multiples of 16"):
        build.problem_arrays(prob, p, 0)


@pytest.mark.slow
def test_grey_image_gives_a_grey_output():
    p = tiny_preset("denoise", iters=3)
    res = fit_problem(api.prepare("denoise", p, smooth_image(c=1), degrade=True), p, chunk=1)
    assert res.output.shape == (32, 32, 1) and res.output_avg.shape == (32, 32, 1)


@pytest.mark.slow
def test_fit_image_from_a_path(tmp_path):
    from PIL import Image

    import dipjax

    path = tmp_path / "noisy.png"
    Image.fromarray((smooth_image(32, 32) * 255).astype(np.uint8)).save(path)
    res = dipjax.fit_image("denoise", path, preset="denoise-fast", iters=2, chunk=1)
    assert res.output_avg.shape == (32, 32, 3) and len(res.history) == 2


def test_fit_image_takes_a_jax_array():
    import jax.numpy as jnp

    import dipjax

    img = jnp.asarray(smooth_image(16, 16))
    res = dipjax.fit_image("denoise", img, iters=1, chunk=1, crop=0, **TINY_OVERRIDES)
    assert res.output.shape == (16, 16, 3) and len(res.history) == 1


@pytest.mark.slow
def test_the_chunk_in_flight_changes_no_bit():
    p = tiny_preset("denoise", iters=12, reg_noise_std=1 / 30, backtrack_every=1)
    prob = api.prepare("denoise", p, smooth_image(), degrade=True, seed=2)
    a = dipjax_run([prob], p, [2, 3], chunk=3, save_every=6)
    b = dipjax_run([prob], p, [2, 3], chunk=3, save_every=6, pipeline=False)
    for fa, fb in zip(a.fits, b.fits):
        np.testing.assert_array_equal(fa.output, fb.output)
        np.testing.assert_array_equal(fa.output_avg, fb.output_avg)
        np.testing.assert_array_equal(fa.snapshots[6], fb.snapshots[6])
        assert fa.history == fb.history and len(fa.history) == 12


@pytest.mark.slow
def test_a_fit_that_never_recovers_is_marked_diverged():
    import jax.numpy as jnp

    from dipjax import fit_operator

    shape = (16, 16, 1)
    res = fit_operator(
        lambda x: x * jnp.nan,
        np.zeros(shape, np.float32),
        shape,
        iters=3,
        chunk=1,
        **TINY_OVERRIDES,
    )
    assert res.diverged and all(h["diverged"] for h in res.history)
    assert res.history[-1]["lr"] < res.history[0]["lr"]


def test_a_signal_while_compiling_is_answered_at_once_and_runs_no_step(monkeypatch):
    """SIGINT arriving during the step's compile (one long call into C, as XLA's is): the
    engine says it is stopping while that call still runs (a handler in a main thread busy in C
    would run only after it), then stops without running a step, its fit interrupted."""
    import hashlib
    import os
    import signal
    import threading
    import time

    from dipjax import loop

    said, spans = [], []
    real = loop.compiled_chunk

    def slow_compile(*a, **kw):
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        t0 = time.perf_counter()
        hashlib.pbkdf2_hmac("sha256", b"x", b"y", 4_000_000)  # about 1 s in one C call
        spans.append((t0, time.perf_counter()))
        return real(*a, **kw)

    monkeypatch.setattr(loop, "compiled_chunk", slow_compile)
    p = tiny_preset("denoise", iters=5)
    prob = api.prepare("denoise", p, smooth_image(32, 32), degrade=True)
    assert threading.current_thread() is threading.main_thread()
    say = lambda line: said.append((time.perf_counter(), line))
    wakeup_fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_fd)
    res = dipjax_run([prob], p, [0], handle_signals=True, say=say)
    assert signal.set_wakeup_fd(wakeup_fd) == wakeup_fd  # restored
    (t0, t1), stops = spans[0], [t for t, line in said if line.startswith("stopping")]
    assert len(stops) == 1 and stops[0] < t0 + 0.5 * (t1 - t0), (said, spans)
    assert res.interrupted and res.fits[0].interrupted and res.fits[0].history == []
    fit = res.fits[0]  # no step: the moving average is the net's first output, not black
    np.testing.assert_array_equal(fit.output_avg, fit.output)
    assert fit.output.std() > 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
