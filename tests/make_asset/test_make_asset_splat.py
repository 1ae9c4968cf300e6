"""make-asset's splats (tiny run): the three files, their frame, report.json, and real clients in Chromium.

Spark (three.js) loads head.spz and head.ply and three.js's glTF loader with its KHR_gaussian_splatting
plug-in loads head.glb, each in Debian's chromium through Playwright; each canvas is compared with the
project's own rasteriser rendering the same Gaussians at the same camera.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from missing_tool import missing_tool

from portrait3d.cameras import camera_from_angles
from portrait3d.splat import gltf, ply, spz
from portrait3d.splat.browser import camera_query, file_camera, screenshots, serve
from portrait3d.splat.rasterize import render_numpy

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / ".tools" / "node_modules"
CHROMIUM = Path(os.environ.get("PORTRAIT3D_CHROMIUM", "/usr/bin/chromium"))
SIZE = 192


def placement(out: Path) -> tuple[np.ndarray, float]:
    extras = json.loads((out / ".portrait3d" / "stages" / "export-splat.json").read_text())["info"]
    return np.asarray(extras["origin_source_units"]), extras["metres_per_unit"]


@pytest.mark.slow
def test_splat_files_share_the_mesh_frame_and_are_reported(tiny_run):
    out, _ = tiny_run
    report = json.loads((out / "report.json").read_text())
    splat = report["splat"]
    assert splat["gaussians"] > 100 and splat["sh_degree"] == 0
    sizes = splat["file_sizes"]
    assert set(sizes) == {"splat/head.ply", "splat/head.spz", "splat/head.glb"}
    assert sizes["splat/head.spz"] * 8 <= sizes["splat/head.ply"]
    g = ply.read_ply(out / "splat" / "head.ply")
    assert len(g) == splat["gaussians"] and g.sh_degree == 3  # the tiny preset fits degree 0, the PLY pads to 3
    from_spz = spz.read_spz(out / "splat" / "head.spz")
    from_glb, document = gltf.read_glb(out / "splat" / "head.glb")
    assert len(from_spz) == len(from_glb) == len(g)
    np.testing.assert_allclose(from_glb.means, g.means, atol=1e-6)
    np.testing.assert_allclose(from_spz.means, g.means, atol=1e-3)
    mesh = trimesh.load(out / "mesh" / "head.glb", force="mesh")
    mesh_extras = document["asset"]["extras"]["portrait3d"]
    assert mesh_extras["origin_source_units"] == pytest.approx(placement(out)[0].tolist())
    # The Gaussians sit on the mesh: the same box to a couple of centimetres, in metres, +Y up.
    lo, hi = np.percentile(g.means, [1, 99], axis=0)
    np.testing.assert_allclose(lo, mesh.bounds[0], atol=0.025)
    np.testing.assert_allclose(hi, mesh.bounds[1], atol=0.025)
    assert mesh.bounds[0][1] > -0.01  # origin at the neck cap: nothing far below it


@pytest.mark.slow
def test_export_splat_cli_refuses_a_run_without_a_mesh(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run, ignore=shutil.ignore_patterns("splat", "export-splat.json"))
    (run / "mesh" / "head.glb").unlink()
    command = [sys.executable, "-m", "portrait3d", "export-splat", str(run)]
    res = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "missing mesh/head.glb" in res.stderr and "export-mesh" in res.stderr, res.stderr
    assert not (run / "splat").exists()
    res = subprocess.run([*command, "--target", "phone"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "invalid choice" in res.stderr


def foreground(picture: np.ndarray) -> np.ndarray:
    """Pixels that are not the white background."""
    return (255 - picture.astype(np.int32)).max(axis=-1) > 24


@pytest.fixture(scope="module")
def browser_pictures(tiny_run):
    """(reference, {client: picture}, {client: window.p3d}) for a front and a side camera."""
    out, _ = tiny_run
    if not CHROMIUM.exists() or not (NODE_MODULES / "@sparkjsdev" / "spark").is_dir() or shutil.which("node") is None:
        missing_tool("chromium or the npm splat clients are missing (bash scripts/setup.sh --dev installs them)")
    pytest.importorskip("playwright")
    origin, scale = placement(out)
    files = {name: out / "splat" / name for name in ("head.ply", "head.spz", "head.glb")}
    gaussians = ply.read_ply(files["head.ply"])
    cameras = {"front": camera_from_angles(0.0, 0.0), "side": camera_from_angles(70.0, 10.0)}
    clients = {"spz": ("head.spz", "spark"), "ply": ("head.ply", "spark"), "glb": ("head.glb", "gltf")}
    pages = [
        {"file": file, "client": client, **camera_query(cam, origin, scale)}
        for cam in cameras.values()
        for file, client in clients.values()
    ]
    with serve(files, NODE_MODULES) as url:
        shots = screenshots(url, pages, str(CHROMIUM), SIZE)
    results = {}
    for i, (view, cam) in enumerate(cameras.items()):
        reference = render_numpy(gaussians, file_camera(cam, origin, scale), SIZE, SIZE)
        results[view] = (reference, {k: shots[i * 3 + j] for j, k in enumerate(clients)})
    return results, len(gaussians)


@pytest.mark.slow
@pytest.mark.parametrize("client", ["spz", "ply", "glb"])
@pytest.mark.parametrize("view", ["front", "side"])
def test_browser_client_shows_the_same_head_as_our_rasteriser(browser_pictures, client, view):
    results, count = browser_pictures
    reference, shots = results[view]
    picture, state = shots[client]
    assert state["status"] == "ready", state
    assert state["splats"] == count
    ours, theirs = foreground(reference), foreground(picture)
    assert 0.05 < theirs.mean() < 0.9  # not blank, not all head
    # The head where it should be: the silhouettes overlap (clients cut the Gaussians at 2-3 sigma).
    iou = (ours & theirs).sum() / (ours | theirs).sum()
    assert iou > 0.75, iou
    centre = np.argwhere(theirs).mean(0) - np.argwhere(ours).mean(0)
    assert np.abs(centre).max() < SIZE * 0.04, centre
    # Colours right: the same mean colour over the head, and close pixels.
    both = ours & theirs
    mean_ours = reference[both].mean(0)
    mean_theirs = picture[both].mean(0)
    assert np.abs(mean_ours - mean_theirs).max() < 12, (mean_ours, mean_theirs)
    assert np.abs(reference[both].astype(float) - picture[both]).mean() < 16
