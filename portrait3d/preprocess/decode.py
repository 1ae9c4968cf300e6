"""Read a photo safely: checks before decoding, any pixel mode to 8-bit RGB, EXIF orientation."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from portrait3d.errors import UserError

SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF")
"""Pillow format names accepted (MPO is the multi-picture JPEG of many phones)."""
MIN_SIDE = 16
"""Smaller photos hold no face worth the name (and break the detector's resizing)."""
MAX_ASPECT = 8.0
"""A longer side more than 8 times the shorter one is a strip or a panorama, not a portrait."""


@dataclass
class Photo:
    """A decoded photo.

    Attributes:
        rgb: (H, W, 3) uint8, EXIF orientation applied, transparency composited.
        alpha: (H, W) uint8 alpha where the file had real transparency, else None.
        path: the file it came from.
        sha256: hex digest of the file's bytes.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    path: Path
    sha256: str

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def read_photo(path: str | Path, max_megapixels: float = 100.0, background: int = 255) -> Photo:
    """Decode a photo or fail with a one-line :class:`UserError` naming the file.

    Args:
        path: JPEG, PNG, WebP, BMP or TIFF file.
        max_megapixels: larger images are refused from their header, before any
            pixel is decoded (decompression bombs).
        background: grey level that transparent pixels are composited over.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not an image file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not data:
        raise UserError(f"{path}: empty file")

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise UserError(f"{path}: image is too large (over {max_megapixels:g} megapixels)") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not an image (or a format that cannot be read)") from exc
    if image.format not in SUPPORTED_FORMATS:
        raise UserError(f"{path}: {image.format} images are not supported; use JPEG, PNG, WebP, BMP or TIFF")
    width, height = image.size
    if width * height > max_megapixels * 1e6:
        raise UserError(
            f"{path}: image is {width}x{height} ({width * height / 1e6:.0f} megapixels), "
            f"over the {max_megapixels:g} megapixel limit"
        )
    if width < 1 or height < 1:
        raise UserError(f"{path}: image has no pixels")
    if min(width, height) < MIN_SIDE:
        raise UserError(
            f"{path}: image is {width}x{height}, too small for a portrait (each side needs at least {MIN_SIDE} pixels)"
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise UserError(
            f"{path}: image is {width}x{height}, an aspect ratio of {max(width, height) / min(width, height):.0f}:1; "
            f"a portrait needs at most {MAX_ASPECT:g}:1 (crop it around the face)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # no copy of a large photo without rotation
    except Image.DecompressionBombError as exc:
        raise UserError(f"{path}: image is too large (over {max_megapixels:g} megapixels)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise UserError(f"{path}: truncated or corrupt image ({exc})") from exc
    rgb, alpha = _to_rgb(image, background)
    return Photo(rgb, alpha, path, hashlib.sha256(data).hexdigest())


def _to_rgb(image: Image.Image, background: int) -> tuple[np.ndarray, np.ndarray | None]:
    """8-bit RGB and, where the image is transparent somewhere, its 8-bit alpha."""
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit or float greyscale: Pillow's own conversion to "L" clips instead of scaling.
        grey = np.asarray(image, dtype=np.float64)
        top = 65535.0 if grey.max() > 255 else 255.0
        grey8 = np.clip(np.round(grey / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey8[..., None], 3, axis=-1), None
    if mode == "P" and "transparency" in image.info or mode in ("LA", "La", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "RGBa"):
        return _composite(image if image.mode == "RGBA" else image.convert("RGBA"), background)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy(), None


COMPOSITE_ROWS = 256
"""Rows composited at a time: the work arrays stay small whatever the photo's size."""


def _composite(rgba: Image.Image, background: int) -> tuple[np.ndarray, np.ndarray | None]:
    """An RGBA image -> (H, W, 3) uint8 over ``background`` and (H, W) uint8 alpha (None if opaque enough).

    Exact integer arithmetic, ``round((c * a + background * (255 - a)) / 255)``, a band of rows at a
    time: the peak memory is the decoded image and the outputs plus one band (a 100-megapixel RGBA
    photo in 64-bit floats at full size took over 10 GB).
    """
    width, height = rgba.size
    rgb = np.empty((height, width, 3), np.uint8)
    alpha8 = np.empty((height, width), np.uint8)
    for top in range(0, height, COMPOSITE_ROWS):
        band = np.asarray(rgba.crop((0, top, width, min(top + COMPOSITE_ROWS, height))), dtype=np.uint32)
        a = band[..., 3:]
        rgb[top : top + COMPOSITE_ROWS] = (band[..., :3] * a + background * (255 - a) + 127) // 255
        alpha8[top : top + COMPOSITE_ROWS] = band[..., 3]
    return rgb, (alpha8 if alpha8.min() < 250 else None)
