"""Reading and writing images; the reference's crop rules and its low/high-resolution pair.

Images in memory are float32 (H, W, C) arrays in [0, 1], C = 1 (grey) or 3 (RGB).
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Images over this many pixels are refused before they are decoded (a 100000x100000 header
# would otherwise ask for 30 GB). DIPJAX_MAX_PIXELS raises or lowers it.
MAX_PIXELS_ENV = "DIPJAX_MAX_PIXELS"
# Beside this module rather than importlib.resources.files("dipjax"): run from the folder that
# holds a clone named dipjax, an editable install's "dipjax" is that folder.
PACKAGED_IMAGE = pathlib.Path(__file__).with_name("data") / "astronaut.png"
DEFAULT_MAX_PIXELS = 40_000_000
# New files get the permissions the umask allows, as open() would give them.
_UMASK = os.umask(0)
os.umask(_UMASK)


class InputError(ValueError):
    """A problem with the user's input, phrased for the user (file or flag, then the problem)."""


def _to_array(img: Image.Image, path) -> np.ndarray:
    mode = img.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        warnings.warn(f"{path}: alpha channel dropped", stacklevel=3)
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        return (arr / top).astype(np.float32)[..., None]
    if mode in ("1", "L", "LA"):
        return (np.asarray(img.convert("L"), np.float32) / 255.0)[..., None]
    if mode == "F":
        return np.clip(np.asarray(img, np.float32), 0, 1)[..., None]
    return np.asarray(img.convert("RGB"), np.float32) / 255.0


def finite_json(obj, default=None):
    """``obj`` (dicts, lists, numbers, numpy scalars) with NaN and infinities as None, so that
    ``json.dumps`` writes JSON that every parser reads (``null``, not ``NaN``); any other object
    is replaced by ``default(obj)``, as ``json.dumps``'s ``default`` would, when given."""
    if isinstance(obj, dict):
        return {k: finite_json(v, default) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v, default) for v in obj]
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if default is not None and not isinstance(obj, (str, int, float, type(None))):
        return finite_json(default(obj), default)
    return obj


def max_pixels() -> int:
    try:
        return int(os.environ.get(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS))
    except ValueError:
        raise InputError(
            f"{MAX_PIXELS_ENV}={os.environ[MAX_PIXELS_ENV]!r}: not a whole number"
        ) from None


def load_image(path) -> np.ndarray:
    """Read a PNG/JPEG/TIFF/WebP/... as float32 (H, W, C) in [0, 1]; 16-bit is scaled by
    65535, palette and CMYK images become RGB, alpha is dropped, an EXIF orientation is applied
    and an animation's first frame is used (each with a warning). Raises ``InputError``."""
    path = pathlib.Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image")
    limit, pil_limit = max_pixels(), Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit, with our own message, is checked below
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > limit:
                raise InputError(
                    f"{path}: {w}x{h} is {w * h / 1e6:.0f} megapixels, over the "
                    f"limit of {limit / 1e6:.0f}; downscale it, or raise the limit "
                    f"with {MAX_PIXELS_ENV}"
                )
            if getattr(img, "n_frames", 1) > 1:
                warnings.warn(f"{path}: {img.n_frames} frames; the first is used", stacklevel=2)
            img.load()
            orientation = img.getexif().get(0x0112, 1)
            if orientation not in (0, 1):
                img = ImageOps.exif_transpose(img)
                warnings.warn(
                    f"{path}: turned upright as its EXIF orientation ({orientation}) says",
                    stacklevel=2,
                )
            return _to_array(img, path)
    except InputError:
        raise
    except Image.DecompressionBombError as e:
        raise InputError(f"{path}: refused as too large ({e})") from None
    except UnidentifiedImageError:
        hint = (
            " (HEIC/HEIF is not supported: convert it to JPEG or PNG)"
            if path.suffix.lower() in (".heic", ".heif")
            else ""
        )
        raise InputError(f"{path}: not an image (unrecognised format){hint}") from None
    except PermissionError:
        raise InputError(f"{path}: cannot be read (permission denied)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: corrupt or truncated image ({e})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pil_limit


def to_uint8(img: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8, clipped and rounded (an 8-bit image survives the round trip)."""
    return np.round(np.clip(np.asarray(img, np.float64), 0, 1) * 255).astype(np.uint8)


def to_pil(img: np.ndarray) -> Image.Image:
    """A float (H, W, 1 | 3) image in [0, 1] as an 8-bit Pillow image ('L' or 'RGB')."""
    u8 = to_uint8(img)
    return Image.fromarray(u8[..., 0] if u8.ndim == 3 and u8.shape[-1] == 1 else u8)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_png(path, img: np.ndarray) -> None:
    """Save a float (H, W, C) image in [0, 1] (C = 1 or 3) as an 8-bit PNG, atomically."""
    import io as _io

    buf = _io.BytesIO()
    to_pil(img).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def crop_to_multiple(img: np.ndarray, d: int) -> np.ndarray:
    """The reference's ``crop_image``: centre crop H and W down to multiples of d (int offsets)."""
    h, w = img.shape[:2]
    nh, nw = h - h % d, w - w % d
    top, left = int((h - nh) / 2), int((w - nw) / 2)
    return img[top : top + nh, left : left + nw]


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` square of (H, W, C) (or less where a side is shorter)."""
    h, w = img.shape[:2]
    sh, sw = min(size, h), min(size, w)
    top, left = (h - sh) // 2, (w - sw) // 2
    return img[top : top + sh, left : left + sw]


def sr_pair(img: np.ndarray, factor: int, multiple: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The reference's ``load_LR_HR_imgs_sr(..., enforse_div32='CROP')``.

    ``img``: (H, W, C) in [0, 1] (8-bit values). Returns (HR, LR): HR is the centre crop to
    multiples of ``multiple``; LR is Pillow's antialiased Lanczos resize of HR to
    (H // factor, W // factor), computed on 8-bit values as the reference does.
    """
    pil = to_pil(img)
    w, h = pil.size
    nw, nh = w - w % multiple, h - h % multiple
    hr = pil.crop(((w - nw) / 2, (h - nh) / 2, (w + nw) / 2, (h + nh) / 2))
    lr = hr.resize((nw // factor, nh // factor), Image.LANCZOS)
    as_float = lambda p: _to_array(p, "")
    return as_float(hr), as_float(lr)


def bicubic_upscale(lr: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """The reference's bicubic baseline: Pillow BICUBIC resize of the 8-bit LR image."""
    return _to_array(to_pil(lr).resize((size_hw[1], size_hw[0]), Image.BICUBIC), "")


def default_image(side: int = 0) -> np.ndarray:
    """The image that ships with the package (256x256 RGB), float32 in [0, 1]; with ``side``,
    its top-centre ``side`` x ``side`` square (128: the face)."""
    img = load_image(PACKAGED_IMAGE)
    if side:
        left = (img.shape[1] - side) // 2
        img = img[:side, left : left + side]
    return img
