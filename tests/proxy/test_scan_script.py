"""scripts/scan_from_threejs_json.py: a 2011 three.js JSON model becomes the textured GLB bench_scan reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def _model(path: Path) -> None:
    """A box 4 x 4 x 10 units (y up, its length along z), each side cut into triangles with vertices on the
    mid-line; per-corner UVs and normals."""
    box = trimesh.creation.box(extents=(4.0, 4.0, 10.0)).subdivide().subdivide()
    uvs = [0.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    faces = []
    for triangle in np.asarray(box.faces).tolist():
        # 42: a triangle with a material, per-corner UVs and per-corner normals.
        faces += [42, *triangle, 0, 0, 1, 2, *triangle]
    model = {
        "version": 2,
        "materials": [{"mapDiffuse": "colour.png"}],
        "vertices": np.asarray(box.vertices).ravel().tolist(),
        "normals": np.asarray(box.vertex_normals).ravel().tolist(),
        "uvs": [uvs],
        "faces": faces,
    }
    path.write_text("/* exported */\n\nvar model = " + json.dumps(model) + ";\n\npostMessage( model );\n")


def test_a_threejs_model_becomes_a_textured_glb_scaled_to_the_head_length(tmp_path):
    _model(tmp_path / "head.js")
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[:4] = (200, 30, 30)  # the image's top half red, its bottom half black
    Image.fromarray(colour).save(tmp_path / "colour.png")
    out = tmp_path / "out" / "head.glb"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "scan_from_threejs_json.py"), str(tmp_path / "head.js"),
         str(tmp_path / "colour.png"), "--head-length-mm", "200", "--out", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    mesh = trimesh.load(out).to_geometry()
    assert len(mesh.faces) == 12 * 16  # the box's triangles, each cut in four twice
    # The box's length (10 units along z) is the head's length: 0.2 m.
    np.testing.assert_allclose(np.ptp(np.asarray(mesh.vertices), axis=0), [0.08, 0.08, 0.2], atol=1e-6)
    # The model's v counts from the image's top (its old loader flipped the image): its corner uv (0, 0), the
    # image's red top-left texel, is (0, 1) in the GLB's reading, and (0, 0) is none of the model's corners.
    uv = {tuple(np.round(c, 6)) for c in np.asarray(mesh.visual.uv)}
    assert (0.0, 1.0) in uv and (0.0, 0.0) not in uv, uv
    image = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"))
    assert tuple(image[0, 0]) == (200, 30, 30)  # trimesh's uv (0, 1): the image's first row


def test_a_model_without_per_corner_uvs_is_refused_in_one_line(tmp_path):
    _model(tmp_path / "head.js")
    text = (tmp_path / "head.js").read_text().replace("[42,", "[2,").replace(", 42,", ", 2,")
    (tmp_path / "flat.js").write_text(text)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "colour.png")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "scan_from_threejs_json.py"), str(tmp_path / "flat.js"),
         str(tmp_path / "colour.png"), "--out", str(tmp_path / "x.glb")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error:"), result.stderr
    assert not (tmp_path / "x.glb").exists()


def test_missing_or_wrong_inputs_are_refused_in_one_line(tmp_path):
    (tmp_path / "notes.js").write_text("console.log('not a model');\n")
    (tmp_path / "colour.png").write_text("not an image")
    _model(tmp_path / "head.js")
    script = str(REPO / "scripts" / "scan_from_threejs_json.py")
    for model, texture in (("missing.js", "colour.png"), ("notes.js", "colour.png"), ("head.js", "colour.png")):
        result = subprocess.run(
            [sys.executable, script, str(tmp_path / model), str(tmp_path / texture), "--out", str(tmp_path / "x.glb")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode != 0, model
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert not (tmp_path / "x.glb").exists()
