"""Exposure: a dark photo is normalised (one line says so), a photo with no picture in it is refused."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from portrait3d.errors import UserError
from portrait3d.preprocess.exposure import luminance, normalise_exposure


def _sample(sample_photo) -> np.ndarray:
    return np.asarray(Image.open(sample_photo).convert("RGB"))


def _hue_sat(rgb: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL).reshape(-1, 3).astype(np.float64)
    return hsv


def test_a_well_exposed_photo_is_left_alone(sample_photo):
    rgb = _sample(sample_photo)
    out, found = normalise_exposure(rgb)
    assert out is rgb and not found.normalised and found.reason is None


def test_a_dark_photo_is_stretched_and_keeps_its_hues(sample_photo):
    rgb = _sample(sample_photo)
    dark = np.round(rgb * 0.07).astype(np.uint8)  # a near-black copy: levels 0..18
    out, found = normalise_exposure(dark)
    assert found.normalised and "dark" in found.reason
    assert luminance(dark).max() < 20 and np.percentile(luminance(out), 99) > 200
    assert abs(np.median(luminance(out)) - np.median(luminance(rgb))) < 45
    # Hue survives (compared where the original is colourful and not too dark to have one).
    ref, got = _hue_sat(rgb), _hue_sat(out)
    colourful = (ref[:, 1] > 80) & (ref[:, 2] > 80)
    delta = np.abs((got[colourful, 0] - ref[colourful, 0] + 128) % 256 - 128)
    assert colourful.sum() > 1000 and np.median(delta) < 12


def test_a_black_frame_is_refused_with_one_line():
    black = np.full((64, 64, 3), 3, np.uint8)
    black[10:20, 10:20] = 5
    with pytest.raises(UserError, match="too dark or too flat") as error:
        normalise_exposure(black, "black.png")
    assert "\n" not in str(error.value)


def test_preprocess_cli_normalises_a_near_black_photo_and_refuses_a_black_one(cli, sample_photo, tmp_path):
    rgb = _sample(sample_photo)
    dark_path, black_path = tmp_path / "dark.png", tmp_path / "black.png"
    Image.fromarray(np.round(rgb * 0.07).astype(np.uint8)).save(dark_path)
    Image.fromarray(np.round(rgb * 0.012).astype(np.uint8)).save(black_path)

    result = cli("preprocess", str(dark_path), "--out", str(tmp_path / "dark"))
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "levels were stretched" in line]
    assert len(said) == 1 and "dark.png is dark" in said[0]
    aligned = np.asarray(Image.open(tmp_path / "dark" / "input" / "aligned.png"))
    assert np.median(luminance(aligned)) > 60  # the head is not black
    record = json.loads((tmp_path / "dark" / "input" / "camera.json").read_text())
    assert record["exposure"]["normalised"] is True and record["faces_found"] == 1

    refused = cli("preprocess", str(black_path), "--out", str(tmp_path / "black"))
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode != 0 and len(lines) == 1, refused.stderr
    assert "too dark or too flat" in lines[0] and "Traceback" not in refused.stderr
    assert not (tmp_path / "black" / "input" / "aligned.png").exists()
