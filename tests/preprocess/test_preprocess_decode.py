"""Photo decoding: every supported format and pixel mode becomes 8-bit RGB, EXIF orientation applied."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from portrait3d.errors import UserError
from portrait3d.preprocess.decode import read_photo


def _gradient(width: int = 48, height: int = 32) -> np.ndarray:
    x = np.linspace(0, 255, width)[None, :]
    y = np.linspace(0, 255, height)[:, None]
    return np.stack(
        [np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)), np.full((height, width), 60)], -1
    ).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".bmp", ".tif"])
def test_formats(tmp_path, suffix):
    rgb = _gradient()
    path = tmp_path / f"photo{suffix}"
    Image.fromarray(rgb).save(path, **({"quality": 95} if suffix in (".jpg", ".webp") else {}))
    photo = read_photo(path)
    assert photo.rgb.shape == (32, 48, 3) and photo.rgb.dtype == np.uint8
    assert np.abs(photo.rgb.astype(int) - rgb).mean() < 4


def test_modes(tmp_path):
    rgb = _gradient()
    grey = rgb[..., 0]
    cases = {
        "L": Image.fromarray(grey),
        "P": Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE),
        "CMYK": Image.fromarray(rgb).convert("CMYK"),
        "I;16": Image.fromarray(grey.astype(np.uint16) * 257),
    }
    for mode, image in cases.items():
        path = tmp_path / f"{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png' if mode != 'I;16' else 'tif'}"
        image.save(path)
        photo = read_photo(path)
        assert photo.rgb.shape == (32, 48, 3) and photo.rgb.dtype == np.uint8, mode
        expected = grey if mode in ("L", "I;16") else rgb[..., 0]
        assert np.abs(photo.rgb[..., 0].astype(int) - expected).mean() < 12, mode


def test_transparency_is_composited_and_kept(tmp_path):
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[5:15, 5:15, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "cutout.png")
    photo = read_photo(tmp_path / "cutout.png", background=255)
    assert tuple(photo.rgb[10, 10]) == (200, 0, 0) and tuple(photo.rgb[0, 0]) == (255, 255, 255)
    assert photo.alpha is not None and photo.alpha[10, 10] == 255 and photo.alpha[0, 0] == 0


def test_exif_orientation(tmp_path):
    rgb = _gradient(48, 32)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    photo = read_photo(tmp_path / "rotated.jpg")
    assert photo.rgb.shape == (48, 32, 3)
    # After a clockwise turn the left edge (dark red) is on top.
    assert photo.rgb[0, :, 0].mean() < photo.rgb[-1, :, 0].mean()


def test_size_limit_is_checked_from_the_header(tmp_path):
    Image.fromarray(_gradient(200, 100)).save(tmp_path / "big.png")
    with pytest.raises(UserError, match="megapixel"):
        read_photo(tmp_path / "big.png", max_megapixels=0.01)
