import jax.numpy as jnp
import numpy as np
import pytest
from conftest import smooth_image, tiny_preset

from dipjax import degrade, tasks
from dipjax.io import InputError, save_png


def test_mask_measure_ignores_missing_pixels(image):
    mask = degrade.bernoulli_mask(image.shape[:2], 0.5, np.random.default_rng(0))
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
    p = tasks.prepare_superres(image, tiny_preset("superres", scale=4, crop=8), degrade=True)
    assert p.target.shape == (8, 8, 3) and p.out_hw == (32, 32)
    pred = p.measure(jnp.asarray(p.gt[None]))
    assert pred.shape == (1, 8, 8, 3)
    # A constant image is a fixed point of the normalised downsampler.
    const = p.measure(jnp.full((1, 32, 32, 3), 0.3))
    np.testing.assert_allclose(np.asarray(const), 0.3, atol=1e-6)
    assert isinstance(p.measure, tasks.Measure) and hash(p.measure) == hash(
        tasks.Measure("downsample", 4, "lanczos2")
    )


def test_gaussian_noise_has_the_requested_std():
    rng = np.random.default_rng(0)
    img = np.full((200, 200, 3), 0.5, np.float32)
    noisy = degrade.add_gaussian_noise(img, 25, rng)
    assert (noisy - img).std() == pytest.approx(25 / 255, rel=0.02)


def test_salt_and_pepper_density():
    img = np.full((200, 200, 3), 0.5, np.float32)
    sp = degrade.add_salt_pepper(img, 0.2, np.random.default_rng(0))
    hit = (sp[..., 0] != 0.5).mean()
    assert hit == pytest.approx(0.2, abs=0.01)
    assert set(np.unique(sp)) == {0.0, 0.5, 1.0}


def test_jpeg_roundtrip_degrades(image):
    j = degrade.jpeg_compress(image, 10)
    assert j.shape == image.shape
    assert 0 < np.abs(j - image).mean() < 0.1


def test_generated_masks():
    hw = (64, 96)
    assert degrade.bernoulli_mask(hw, 0.3, np.random.default_rng(0)).mean() == pytest.approx(
        0.3, abs=0.03
    )
    t = degrade.text_mask(hw)
    assert t.shape == (64, 96, 1) and 0.5 < t.mean() < 0.99
    r = degrade.rect_mask(hw, 0.5)
    assert r.mean() == pytest.approx(0.75, abs=0.01)


def test_mask_file_size_must_match(image):
    with pytest.raises(InputError, match="differs"):
        tasks.prepare_masked(
            "inpaint", image, tiny_preset("inpaint"), mask=np.ones((16, 16, 1), np.float32)
        )


def test_empty_mask_is_refused():
    with pytest.raises(InputError, match="no pixel"):
        degrade.binarize_mask(np.zeros((4, 4, 1)), "m.png")


def test_denoise_crop_is_noted():
    p = tasks.prepare_denoise(np.zeros((70, 40, 3), np.float32), tiny_preset("denoise", crop=32))
    assert p.target.shape == (64, 32, 3)
    assert "cropped 40x70 to 32x64" in p.notes[0]


def test_non_binary_mask_is_thresholded_with_a_warning():
    grey = np.array([[0.2, 0.7], [0.5, 1.0]], np.float32)[..., None]
    with pytest.warns(UserWarning, match="not binary; thresholded at 0.5"):
        m = degrade.binarize_mask(grey, "m.png")
    np.testing.assert_array_equal(m[..., 0], [[0, 1], [0, 1]])


def test_generated_mask_with_no_known_pixel_is_refused(image):
    p = tiny_preset("restore", mask_kind="random", keep=1e-9)
    with pytest.raises(InputError, match="keeps no pixel"):
        tasks.prepare("restore", p, image, degrade=True)


def test_ground_truth_of_another_size_is_refused_before_anything_runs(image):
    p = tiny_preset("denoise")
    with pytest.raises(InputError, match="gt.png: size 16x16 differs from the image's 32x32"):
        tasks.prepare("denoise", p, image, gt=image[:16, :16], names={"gt": "gt.png"})


def test_inputs_a_task_does_not_read_are_refused(image):
    with pytest.raises(InputError, match="flash: not used by task denoise"):
        tasks.prepare("denoise", tiny_preset("denoise"), image, flash=image)


def test_flash_of_another_size_is_refused(image):
    p = tiny_preset("flash-no-flash", input_kind="image", input_depth=3)
    with pytest.raises(InputError, match="f.png: size 16x32 differs from the no-flash"):
        tasks.prepare("flash-no-flash", p, image, flash=image[:, :16], names={"flash": "f.png"})


def test_a_mask_with_nothing_to_fill_is_refused_naming_the_file():
    p = tiny_preset("inpaint")
    white = np.ones((32, 32, 1), np.float32)
    with pytest.raises(InputError, match="^holes.png: the mask marks no pixel to fill"):
        tasks.prepare("inpaint", p, smooth_image(), mask=white, names={"mask": "holes.png"})


def test_integer_images_are_scaled_and_out_of_range_floats_refused(image, tmp_path):
    """8-bit and 16-bit arrays (as imageio reads PNGs) mean the same picture as floats / 255 and
    / 65535; floats beyond [0, 1] were clipped to white before, and are now an error."""
    p = tiny_preset("denoise")
    as_float = tasks.prepare("denoise", p, np.round(image * 255) / 255)
    for scaled in (
        np.round(image * 255).astype(np.uint8),
        np.round(image * 255).astype(np.uint16) * 257,
    ):
        got = tasks.prepare("denoise", p, scaled)
        np.testing.assert_allclose(got.target, as_float.target, atol=1e-6)
    gray = tasks.prepare("denoise", p, np.round(image[..., 0] * 255).astype(np.uint8))
    assert gray.target.shape == image.shape[:2] + (1,)
    with pytest.raises(
        InputError, match=r"image: float values in \[\d+, \d+\], expected \[0, 1\] \(divide"
    ):
        tasks.prepare("denoise", p, np.round(image * 255))
    with pytest.raises(InputError, match="gt: an array of int64"):
        tasks.prepare("denoise", p, image, gt=np.full(image.shape, 7, np.int64))
    path = tmp_path / "photo.png"
    save_png(path, image)
    from_file = tasks.prepare("denoise", p, str(path))  # a path is read, as fit_image does
    np.testing.assert_allclose(from_file.target, as_float.target, atol=1e-6)
    hole = np.ones(image.shape[:2], np.int64)
    hole[8:16, 8:16] = 0  # a 0/1 integer mask, as numpy makes one
    got = tasks.prepare("inpaint", tiny_preset("inpaint"), image, mask=hole)
    assert got.mask[..., 0].tolist() == hole.astype(np.float32).tolist()
    with pytest.raises(InputError, match="mask: the array holds NaN"):
        tasks.prepare("inpaint", tiny_preset("inpaint"), image, mask=np.full(image.shape, np.nan))


def test_a_note_of_a_many_image_run_names_its_file(tmp_path):
    from dipjax import sources
    from dipjax.io import save_png

    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for path, w in zip(paths, (70, 64)):
        save_png(path, np.full((40, w, 3), 0.5, np.float32))
    p = tiny_preset("denoise", crop=32)
    problems, _ = sources.load_problems(p, [str(x) for x in paths], degrade=True, seed=0)
    assert problems[0].notes == [
        f"{paths[0]}: cropped 70x40 to 64x32 (a multiple of 32) as the reference does"
    ]
    assert problems[1].notes == [
        f"{paths[1]}: cropped 64x40 to 64x32 (a multiple of 32) as the reference does"
    ]
