"""Image loading across formats, and a property test over shapes, channels and dtypes."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dipjax.io import InputError, crop_to_multiple, load_image, save_png


def test_grey_rgba_palette_and_16bit(tmp_path):
    rgb = (np.random.default_rng(0).random((9, 11, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
    Image.fromarray(np.dstack([rgb, np.full((9, 11), 128, np.uint8)])).save(tmp_path / "a.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(tmp_path / "s.png")
    g = load_image(tmp_path / "g.png")
    assert g.shape == (9, 11, 1) and g.dtype == np.float32
    np.testing.assert_allclose(g[..., 0], rgb[..., 0] / 255.0, atol=1e-7)
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        a = load_image(tmp_path / "a.png")
    np.testing.assert_allclose(a, rgb / 255.0, atol=1e-7)
    p = load_image(tmp_path / "p.png")
    assert p.shape == (9, 11, 3) and 0 <= p.min() and p.max() <= 1
    s = load_image(tmp_path / "s.png")
    np.testing.assert_allclose(s[..., 0], rgb[..., 0] / 255.0, atol=1e-6)


def test_missing_folder_not_image_truncated(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "none.png")
    with pytest.raises(InputError, match="is a folder"):
        load_image(tmp_path)
    (tmp_path / "t.png").write_text("hello")
    with pytest.raises(InputError, match="not an image"):
        load_image(tmp_path / "t.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 7).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_image(tmp_path / "cut.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 7).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:200])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_image(tmp_path / "cut.jpg")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    mode=st.sampled_from(["L", "RGB", "RGBA", "I;16", "P", "LA"]),
)
def test_loader_round_trip_property(tmp_path, h, w, mode):
    rng = np.random.default_rng(h * 100 + w)
    if mode == "I;16":
        arr = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        img = Image.fromarray(arr)
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    path = tmp_path / f"x_{mode.replace(';', '')}_{h}_{w}.png"
    img.save(path)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = load_image(path)
    assert out.dtype == np.float32 and out.shape[:2] == (h, w)
    assert out.shape[2] == (1 if mode in ("L", "LA", "I;16") else 3)
    assert 0.0 <= out.min() and out.max() <= 1.0
    if mode == "I;16":
        np.testing.assert_allclose(out[..., 0], arr / 65535.0, atol=1e-6)
    if mode in ("L", "RGB"):
        save_png(tmp_path / "back.png", out)
        np.testing.assert_array_equal(load_image(tmp_path / "back.png"), out)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), d=st.sampled_from([8, 32, 64]))
def test_crop_to_multiple_property(h, w, d):
    img = np.zeros((h, w, 1))
    out = crop_to_multiple(img, d)
    assert out.shape[0] == h - h % d and out.shape[1] == w - w % d


def test_exif_orientation_is_applied_with_a_warning(tmp_path):
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[0, :5] = 255  # a mark in the top-left corner, along the top row
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img.save(tmp_path / "phone.png", exif=exif)
    with pytest.warns(UserWarning, match="turned upright as its EXIF orientation"):
        up = load_image(tmp_path / "phone.png")
    assert up.shape == (20, 10, 3)
    # turned clockwise, the top row becomes the right-hand column
    np.testing.assert_array_equal(up[:5, -1, 0], 1.0)
    assert up[:, :-1].max() == 0


def test_cmyk_tiff_webp_and_animated_gif(tmp_path):
    rgb = (np.random.default_rng(1).random((12, 8, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    Image.fromarray(rgb).save(tmp_path / "t.tiff")
    Image.fromarray(rgb).save(tmp_path / "w.webp", lossless=True)
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert load_image(tmp_path / "c.jpg").shape == (12, 8, 3)
    np.testing.assert_allclose(load_image(tmp_path / "t.tiff"), rgb / 255.0, atol=1e-7)
    np.testing.assert_allclose(load_image(tmp_path / "w.webp"), rgb / 255.0, atol=1e-7)
    with pytest.warns(UserWarning, match="2 frames; the first is used"):
        assert load_image(tmp_path / "a.gif").shape == (12, 8, 3)


def test_heic_is_named_and_written_files_follow_the_umask(tmp_path):
    import os

    (tmp_path / "x.heic").write_bytes(b"\0\0\0\x18ftypheic")
    with pytest.raises(InputError, match="HEIC/HEIF is not supported"):
        load_image(tmp_path / "x.heic")
    save_png(tmp_path / "o.png", np.zeros((2, 2, 1)))
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "o.png").stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_demo_crop_is_the_top_centre_of_the_packaged_image():
    from dipjax import prepare
    from dipjax.io import default_image
    from dipjax.presets import get_preset

    full, face = default_image(), default_image(128)
    assert full.shape == (256, 256, 3) and face.shape == (128, 128, 3)
    np.testing.assert_array_equal(face, full[:128, 64:192])
    # the CPU super-resolution demo fits the face; the other presets the whole image
    assert prepare("superres", get_preset("superres-fast"), None).gt.shape == (128, 128, 3)
    assert prepare("denoise", get_preset("denoise-fast"), None).gt.shape == (256, 256, 3)
