import jax
import pytest
from conftest import smooth_image, tiny_preset

from dipjax import api, build, memory
from dipjax.ops import conv
from dipjax.step import init_state, make_optimizer, make_step


def test_too_large_for_the_device_is_refused_with_a_size(monkeypatch):
    monkeypatch.setattr(memory, "device_bytes", lambda: 2**20)
    p = tiny_preset("denoise")
    prob = api.prepare("denoise", p, smooth_image(64, 64), degrade=True)
    with pytest.raises(api.InputError, match=r"needs about .* GiB.*downscale or crop to about"):
        build.problem_arrays(prob, p, 0)


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
