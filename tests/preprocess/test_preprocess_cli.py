"""The preprocess command end to end: outputs, manual mode, and every bad input through the CLI."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from portrait3d.cameras import Camera

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "samples" / "astronaut.jpg"


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` x ``height`` but holds no pixels (a decompression-bomb stand-in)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def test_preprocess_sample_photo(cli, tmp_path):
    out = tmp_path / "run"
    result = cli("preprocess", str(SAMPLE), "--out", str(out))
    assert result.returncode == 0, result.stderr
    aligned = Image.open(out / "input" / "aligned.png")
    mask = Image.open(out / "input" / "mask.png")
    assert aligned.size == (512, 512) and aligned.mode == "RGB"
    assert mask.size == (512, 512) and mask.mode == "L"
    mask_px = np.asarray(mask)
    assert set(np.unique(mask_px)) <= {0, 255}
    # Head and shoulders: the centre is foreground, the top corners are background.
    assert mask_px[256, 256] == 255 and mask_px[5, 5] == 0 and mask_px[5, 506] == 0
    record = json.loads((out / "input" / "camera.json").read_text())
    camera = Camera.from_label(record["label"])
    angles = camera.angles(target=(0, 0, 0))
    assert abs(angles.radius - 2.7) < 1e-6
    assert abs(record["yaw"] - angles.yaw) < 1e-3 and abs(record["pitch"] - angles.pitch) < 1e-3
    assert abs(record["yaw"]) < 10 and -5 < record["pitch"] < 20 and abs(record["roll"]) < 1
    points = np.asarray(record["landmarks"]["points"])
    assert record["landmarks"]["format"] == "mediapipe-face-mesh-468" and points.shape == (468, 3)
    # The recorded landmarks agree with the camera: the nose tip projects where it was seen.
    from portrait3d.preprocess import landmarks_to_world

    world = landmarks_to_world(points, camera)
    uv, _ = camera.project(world, 512, 512)
    assert np.abs(uv - points[:, :2]).max() < 1e-6
    assert np.all(np.linalg.norm(world, axis=1) < 0.45)  # the face lies on a head-sized sphere about the origin
    assert record["faces_found"] == 1 and record["manual"] is False
    assert record["source"]["width"] == 512 and len(record["source"]["sha256"]) == 64
    # A second run is skipped.
    again = cli("preprocess", str(SAMPLE), "--out", str(out))
    assert again.returncode == 0 and "skipped" in again.stderr


def test_preprocess_largest_of_several_faces(cli, tmp_path):
    photo = np.asarray(Image.open(SAMPLE).convert("RGB"))
    canvas = np.full((512, 900, 3), 200, np.uint8)
    canvas[:, :512] = photo
    canvas[100:356, 600:856] = np.asarray(Image.fromarray(photo).resize((256, 256)))
    path = tmp_path / "two.png"
    Image.fromarray(canvas).save(path)
    result = cli("preprocess", str(path), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "2 faces found; using the largest" in result.stderr
    record = json.loads((tmp_path / "run" / "input" / "camera.json").read_text())
    assert record["faces_found"] == 2
    assert record["detector"]["face_box"][0] < 400  # the big face on the left


def test_preprocess_cat_needs_manual_options(cli, tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    path = tmp_path / "cat.png"
    Image.fromarray(skimage_data.chelsea()).save(path)
    failed = cli("preprocess", str(path), "--out", str(tmp_path / "auto"))
    assert failed.returncode != 0
    assert "--centred-crop" in failed.stderr and "--yaw" in failed.stderr
    assert not (tmp_path / "auto").exists()

    out = tmp_path / "manual"
    result = cli("preprocess", str(path), "--out", str(out), "--centred-crop", "--yaw", "20", "--pitch", "-5")
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "input" / "camera.json").read_text())
    assert record["landmarks"] is None and record["manual"] is True
    assert abs(record["yaw"] - 20) < 1e-6 and abs(record["pitch"] + 5) < 1e-6
    angles = Camera.from_label(record["label"]).angles(target=(0, 0, 0))
    assert abs(angles.yaw - 20) < 1e-6 and abs(angles.pitch + 5) < 1e-6
    mask = np.asarray(Image.open(out / "input" / "mask.png"))
    assert mask.shape == (512, 512) and 0.05 < (mask > 0).mean() < 0.95
    assert np.asarray(Image.open(out / "input" / "aligned.png")).shape == (512, 512, 3)


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, a word the one-line message must contain)."""
    (tmp / "folder").mkdir()
    (tmp / "empty.jpg").write_bytes(b"")
    (tmp / "notes.jpg").write_text("this is not an image\n")
    data = SAMPLE.read_bytes()
    (tmp / "truncated.jpg").write_bytes(data[: len(data) // 2])
    _png_header_only(tmp / "bomb.png", 12000, 10000)
    photo = Image.open(SAMPLE).convert("RGB")
    photo.resize((200, 200), Image.LANCZOS).save(tmp / "tiny_face.png")
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3))
    Image.fromarray(ramp).save(tmp / "no_face.png")
    return {
        "missing": (tmp / "missing.jpg", "no such file"),
        "directory": (tmp / "folder", "folder"),
        "empty": (tmp / "empty.jpg", "empty"),
        "not an image": (tmp / "notes.jpg", "not an image"),
        "truncated": (tmp / "truncated.jpg", "truncated"),
        "too large": (tmp / "bomb.png", "megapixel"),
        "small face": (tmp / "tiny_face.png", "64 px"),
        "no face": (tmp / "no_face.png", "no face"),
    }


def test_preprocess_bad_inputs_fail_cleanly(cli, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    existing = tmp_path / "existing_run"
    assert cli("preprocess", str(SAMPLE), "--out", str(existing)).returncode == 0
    before = sorted(p.relative_to(existing) for p in existing.rglob("*"))
    for name, (path, reason) in _bad_inputs(inputs).items():
        for out in (tmp_path / f"new_{name.replace(' ', '_')}", existing):
            result = cli("preprocess", str(path), "--out", str(out), "--force")
            lines = result.stderr.strip().splitlines()
            assert result.returncode != 0, name
            assert len(lines) == 1, (name, result.stderr)
            assert str(path) in lines[0] and reason in lines[0], (name, lines[0])
            assert "Traceback" not in result.stderr
        assert not (tmp_path / f"new_{name.replace(' ', '_')}").exists(), name
        assert sorted(p.relative_to(existing) for p in existing.rglob("*")) == before, name
