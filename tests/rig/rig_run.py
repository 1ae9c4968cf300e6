"""One rigged run of the sample for every rig test: make-asset (tiny preset), then
``export-mesh --target avatar`` at a small budget with the FBX, through the CLI users run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_runner import SAMPLE_PHOTO, run_cli


@pytest.fixture(scope="session")
def avatar_run(tmp_path_factory) -> Path:
    import os

    from nerf import blender

    if os.environ.get("PORTRAIT3D_RIG_RUN"):  # a finished run of this fixture, to develop against
        return Path(os.environ["PORTRAIT3D_RIG_RUN"])
    run = tmp_path_factory.mktemp("rig") / "run"
    made = run_cli("make-asset", str(SAMPLE_PHOTO), "--out", str(run), "--preset", "tiny", "--quiet")
    assert made.returncode == 0, made.stderr
    formats = "glb,fbx" if blender.available() else "glb"
    exported = run_cli(
        "export-mesh", str(run), "--target", "avatar", "--triangles", "4000", "--texture", "256", "--formats", formats
    )
    assert exported.returncode == 0, exported.stderr
    return run


@pytest.fixture(scope="session")
def rigged(avatar_run):
    """(rig of avatar/head.glb, static mesh/head.glb, the face's landmarks on it)."""
    from portrait3d.rig.build import face_of
    from portrait3d.rig.gltf import read_rig, read_static

    static = read_static(avatar_run / "mesh" / "head.glb")
    camera = json.loads((avatar_run / "input" / "camera.json").read_text())
    face = face_of(static, camera, 512)
    return read_rig(avatar_run / "avatar" / "head.glb"), static, face


def lid_contour(face, side: str) -> np.ndarray:
    upper, lower = face.lids(side)
    return np.concatenate([upper, lower])
