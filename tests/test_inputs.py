import jax
import numpy as np
import pytest

from dipjax.inputs import make_input, meshgrid_input, noise_input, perturb


def test_meshgrid_matches_reference_4x5():
    z = np.asarray(meshgrid_input((4, 5)))
    assert z.shape == (1, 4, 5, 2)
    np.testing.assert_allclose(z[0, :, :, 0], [[0, 0.25, 0.5, 0.75, 1]] * 4)
    np.testing.assert_allclose(
        z[0, :, :, 1], np.repeat([[0], [1 / 3], [2 / 3], [1]], 5, 1), rtol=1e-6
    )


def test_uniform_noise_is_scaled_and_not_centred():
    z = np.asarray(noise_input(jax.random.key(0), 32, (64, 64)))
    assert z.shape == (1, 64, 64, 32) and z.dtype == np.float32
    assert 0 <= z.min() and z.max() < 0.1
    # U[0, 0.1): mean 0.05, std 0.1/sqrt(12)
    assert z.mean() == pytest.approx(0.05, abs=1e-3)
    assert z.std() == pytest.approx(0.1 / np.sqrt(12), rel=0.02)


def test_normal_noise_std():
    z = np.asarray(noise_input(jax.random.key(1), 8, (64, 64), noise_type="n", var=0.5))
    assert z.mean() == pytest.approx(0, abs=0.02)
    assert z.std() == pytest.approx(0.5, rel=0.02)


def test_inputs_are_deterministic_in_the_key():
    a = make_input(jax.random.key(3), "noise", 4, (8, 8))
    b = make_input(jax.random.key(3), "noise", 4, (8, 8))
    c = make_input(jax.random.key(4), "noise", 4, (8, 8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_perturb_adds_fresh_gaussian():
    z = jax.numpy.zeros((1, 64, 64, 4))
    p1 = np.asarray(perturb(jax.random.key(0), z, 1 / 30))
    p2 = np.asarray(perturb(jax.random.key(1), z, 1 / 30))
    assert p1.std() == pytest.approx(1 / 30, rel=0.05)
    assert not np.allclose(p1, p2)


def test_meshgrid_needs_depth_two():
    with pytest.raises(ValueError, match="depth 2"):
        make_input(jax.random.key(0), "meshgrid", 3, (4, 4))
