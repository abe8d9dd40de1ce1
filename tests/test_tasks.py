import jax.numpy as jnp
import numpy as np
import pytest

from dipjax import tasks
from dipjax.io import InputError


def test_mask_measure_ignores_missing_pixels(image):
    mask = tasks.bernoulli_mask(image.shape[:2], 0.5, np.random.default_rng(0))
    m = tasks.Measure("mask")
    loss = tasks.loss_fn("mse")
    out = jnp.asarray(image[None])
    target = jnp.asarray((image * mask)[None])
    changed = jnp.where(jnp.asarray(mask[None]) > 0, out, 1.0 - out)  # only unknown pixels differ
    assert float(loss(m(out, mask[None]), target)) == 0.0
    assert float(loss(m(changed, mask[None]), target)) == 0.0
    flipped = jnp.where(jnp.asarray(mask[None]) > 0, 1.0 - out, out)
    assert float(loss(m(flipped, mask[None]), target)) > 0.0


def test_superres_measure_compares_at_low_resolution(image):
    p = tasks.prepare_superres(image, degrade=True, scale=4, crop=8)
    assert p.target.shape == (8, 8, 3) and p.out_hw == (32, 32)
    pred = p.measure(jnp.asarray(p.gt[None]))
    assert pred.shape == (1, 8, 8, 3)
    # A constant image is a fixed point of the normalised downsampler.
    const = p.measure(jnp.full((1, 32, 32, 3), 0.3))
    np.testing.assert_allclose(np.asarray(const), 0.3, atol=1e-6)
    assert isinstance(p.measure, tasks.Measure) and hash(p.measure) == hash(
        tasks.Measure("downsample", 4, "lanczos2"))


def test_gaussian_noise_has_the_requested_std():
    rng = np.random.default_rng(0)
    img = np.full((200, 200, 3), 0.5, np.float32)
    noisy = tasks.add_gaussian_noise(img, 25, rng)
    assert (noisy - img).std() == pytest.approx(25 / 255, rel=0.02)


def test_salt_and_pepper_density():
    img = np.full((200, 200, 3), 0.5, np.float32)
    sp = tasks.add_salt_pepper(img, 0.2, np.random.default_rng(0))
    hit = (sp[..., 0] != 0.5).mean()
    assert hit == pytest.approx(0.2, abs=0.01)
    assert set(np.unique(sp)) == {0.0, 0.5, 1.0}


def test_jpeg_roundtrip_degrades(image):
    j = tasks.jpeg_compress(image, 10)
    assert j.shape == image.shape
    assert 0 < np.abs(j - image).mean() < 0.1


def test_generated_masks():
    hw = (64, 96)
    assert tasks.bernoulli_mask(hw, 0.3, np.random.default_rng(0)).mean() == pytest.approx(
        0.3, abs=0.03)
    t = tasks.text_mask(hw)
    assert t.shape == (64, 96, 1) and 0.5 < t.mean() < 0.99
    r = tasks.rect_mask(hw, 0.5)
    assert r.mean() == pytest.approx(0.75, abs=0.01)


def test_mask_file_size_must_match(image):
    with pytest.raises(InputError, match="differs"):
        tasks.prepare_masked("inpaint", image, mask=np.ones((16, 16, 1), np.float32), crop=8)


def test_empty_mask_is_refused():
    with pytest.raises(InputError, match="no pixel"):
        tasks.binarize_mask(np.zeros((4, 4, 1)), "m.png")


def test_denoise_crop_is_noted():
    p = tasks.prepare_denoise(np.zeros((70, 40, 3), np.float32), crop=32)
    assert p.target.shape == (64, 32, 3)
    assert "cropped 40x70 to 32x64" in p.notes[0]


def test_non_binary_mask_is_thresholded_with_a_warning():
    grey = np.array([[0.2, 0.7], [0.5, 1.0]], np.float32)[..., None]
    with pytest.warns(UserWarning, match="not binary; thresholded at 0.5"):
        m = tasks.binarize_mask(grey, "m.png")
    np.testing.assert_array_equal(m[..., 0], [[0, 1], [0, 1]])
