import re

import jax
import pytest
from conftest import smooth_image, tiny_preset

from dipjax import api, build, io, memory, sources
from dipjax.ops import conv
from dipjax.step import init_state, make_optimizer, make_step


def test_too_large_for_the_device_is_refused_with_a_size(monkeypatch):
    monkeypatch.setattr(memory, "device_bytes", lambda: 2**20)
    p = tiny_preset("denoise")
    prob = api.prepare("denoise", p, smooth_image(64, 64), degrade=True)
    with pytest.raises(api.InputError, match=r"needs about .* GiB.*downscale or crop to about"):
        build.problem_arrays(prob, p, 0)


def test_an_early_stopping_window_too_large_is_refused_by_its_flag(tmp_path, capsys):
    # 10^7 outputs of 64x64x3 (and the step's copies of them): terabytes on any machine.
    from dipjax.fit import main

    path = tmp_path / "x.png"
    io.save_png(path, smooth_image(64, 64))
    out = tmp_path / "o"
    argv = ["--task", "denoise", "--image", str(path), "--degrade", "--early-stop", "--quiet"]
    assert main([*argv, "--es-window", "10000000", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dipjax: error: --es-window 10000000: the window of 10000000 outputs")
    assert err.endswith("take a smaller window") and "\n" not in err and not out.exists()
    p = tiny_preset("denoise", early_stop="mark", es_window=3)  # a window that fits is taken
    build.problem_arrays(api.prepare("denoise", p, smooth_image(64, 64), degrade=True), p, 0)


def test_a_low_resolution_input_too_large_is_told_its_own_largest_size(monkeypatch, tmp_path):
    """Super-resolution from a low-resolution file: the output is 4x its size, but the error
    speaks of the file, and the size it suggests, upscaled 4x, is the output that would fit."""
    monkeypatch.setattr(memory, "device_bytes", lambda: 2**20)
    p = tiny_preset("superres", scale=4)
    path = tmp_path / "lr.png"
    io.save_png(path, smooth_image(40, 48))
    with pytest.raises(memory.TooBig) as raw:
        prob = api.prepare("superres", p, io.load_image(path))
        build.problem_arrays(prob, p, 0)
    fit_h, fit_w = raw.value.fits
    with pytest.raises(api.InputError) as told:
        sources.load_problems(p, [str(path)], degrade=False, seed=0)
    message = str(told.value)
    assert message.startswith(f"{path}: 48x40 pixels: preset tiny-superres needs about"), message
    w, h = map(int, re.search(r"crop it to about (\d+)x(\d+) or smaller", message).groups())
    assert 0 <= fit_w - 4 * w < 4 and 0 <= fit_h - 4 * h < 4, (message, raw.value.fits)


@pytest.mark.slow
def test_estimate_bounds_what_xla_allocates():
    p = tiny_preset("denoise")
    prob = api.prepare("denoise", p, smooth_image(64, 64), degrade=True)
    net, z, batch = build.problem_arrays(prob, p, 0)
    tx = make_optimizer(0.01)
    state = init_state(net, tx, jax.random.key(0), z)
    lowered = jax.jit(make_step(net, tx, prob.measure)).lower(state, batch)
    compiled = lowered.compile(conv.codegen_options())  # as the fit compiles its step
    ma = compiled.memory_analysis()
    xla = ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes
    est = memory.estimate_bytes(net, z.shape)
    assert xla <= est <= 20 * xla, (xla, est)
