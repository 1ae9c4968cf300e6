"""No folder the project did not create is ever deleted (issue #21, item 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from portrait3d import cameras
from portrait3d.errors import UserError
from portrait3d.run import OWNED_MARKER, check_replaceable, mark_owned


def _capture(root):
    """A small nerfstudio capture: 8 frames of 32x32 pixels on an orbit."""
    (root / "images").mkdir(parents=True)
    cams = cameras.orbit(8)
    paths = [f"images/{i}.png" for i in range(8)]
    for i, path in enumerate(paths):
        Image.fromarray(np.full((32, 32, 3), 30 * i, np.uint8)).save(root / path)
    (root / "transforms.json").write_text(json.dumps(cameras.transforms_document(cams, paths, 32, 32)))
    return root / "transforms.json"


def _precious(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis.txt").write_text("years of work")
    return folder / "thesis.txt"


def test_convert_nerfstudio_never_deletes_a_folder_it_did_not_write(tmp_path, cli):
    transforms = _capture(tmp_path / "capture")
    precious = _precious(tmp_path / "mine")
    result = cli("train", "convert-nerfstudio", str(transforms), "--out", str(tmp_path / "mine"), "--size", "32")
    assert result.returncode == 2 and "not written by portrait3d" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and precious.read_text() == "years of work"
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["thesis.txt"]

    # Its own output is replaced on a rerun (the documented behaviour), and carries the marker.
    from portrait3d.training.data import convert_nerfstudio

    out = convert_nerfstudio(transforms, tmp_path / "subject", size=32)
    assert (out / OWNED_MARKER).is_file()
    (out / "views" / "0000.png").unlink()
    convert_nerfstudio(transforms, out, size=32)
    assert (out / "views" / "0000.png").is_file()


def test_replace_only_the_commands_own_folder_and_only_with_force(tmp_path):
    check_replaceable(tmp_path / "absent", "convert-weights", force=False)
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", "convert-weights", force=False)
    _precious(tmp_path / "foreign")
    with pytest.raises(UserError, match="not written by portrait3d convert-weights"):
        check_replaceable(tmp_path / "foreign", "convert-weights", force=True)
    own = tmp_path / "own"
    own.mkdir()
    mark_owned(own, "convert-weights")
    with pytest.raises(UserError, match="--force"):
        check_replaceable(own, "convert-weights", force=False)
    check_replaceable(own, "convert-weights", force=True)
    with pytest.raises(UserError, match="not written by portrait3d train convert-nerfstudio"):
        check_replaceable(own, "train convert-nerfstudio")  # another command's folder is foreign too
    (tmp_path / "link").symlink_to(own, target_is_directory=True)
    with pytest.raises(UserError, match="not a folder"):
        check_replaceable(tmp_path / "link", "convert-weights", force=True)
