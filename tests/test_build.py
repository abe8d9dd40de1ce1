"""The compiled pieces around the step: the render compiled without LLVM's optimiser computes the
net's forward pass as the default compilation does, up to float rounding."""

import jax
import numpy as np
from conftest import smooth_image, tiny_preset

from dipjax import api, build


def test_the_render_matches_the_default_compiled_forward_pass():
    p = tiny_preset("denoise", iters=2)
    prob = api.prepare("denoise", p, smooth_image(), degrade=True, seed=1)
    su = build.setup([prob], p, [(0, 1)])
    got = np.asarray(su.render(su.state.params))
    want = np.asarray(
        jax.jit(lambda q, z: su.net.apply({"params": q}, z))(su.state.params, su.batch["z"])
    )
    assert got.shape == want.shape == (1, 32, 32, 3)
    assert np.abs(want - 0.5).max() > 1e-3  # a real output, not a constant
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
