"""The proxy stage on a fixture run made from the sample photo: views, conditions, cameras, mesh, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from portrait3d.cameras import orbit, read_labels
from portrait3d.proxy import ProxyOptions, build_proxy, contact_sheet, proxy_mesh
from portrait3d.proxy.template import template_head
from portrait3d.proxy.testing import write_fixture_inputs

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "data" / "samples" / "astronaut.jpg"
LANDMARKS = Path(__file__).parent / "data" / "astronaut_face_mesh.json"
SIZE = 256


def _fixture(root: Path):
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    landmarks = np.asarray(json.loads(LANDMARKS.read_text())["points"])
    return write_fixture_inputs(root, photo, landmarks)


@pytest.fixture(scope="module")
def proxy_run(tmp_path_factory):
    """A fixture run with the proxy stage built at 32 views of 256 pixels."""
    run = _fixture(tmp_path_factory.mktemp("proxy") / "run")
    info = build_proxy(run, ProxyOptions(size=SIZE, texture_width=1024))
    return run, info


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_outputs_and_cameras(proxy_run):
    run, info = proxy_run
    names = [f"{i:04d}.png" for i in range(32)]
    assert sorted(p.name for p in run.path("proxy", "views").iterdir()) == names
    assert sorted(p.name for p in run.path("proxy", "conditions").iterdir()) == names
    labels = read_labels(run.path("proxy", "cameras.json"))
    assert list(labels) == names
    for cam, expected in zip(labels.values(), orbit(32)):
        np.testing.assert_allclose(cam.cam2world, expected.cam2world, atol=1e-9)
    assert info["landmarks_used"] == 16 and info["views"] == 32
    assert not list(run.path().glob("**/.tmp-*"))


def test_head_ply_is_closed_and_coloured(proxy_run):
    run, _ = proxy_run
    mesh = trimesh.load(run.path("proxy", "head.ply"), process=False)
    mesh.merge_vertices()
    assert mesh.is_watertight
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(float)
    assert colours.std(axis=0).mean() > 10  # textured, not a flat grey


def test_every_view_is_a_centred_head(proxy_run):
    run, _ = proxy_run
    for i in range(32):
        rgba = _read(run.path("proxy", "views", f"{i:04d}.png"))
        assert rgba.shape == (SIZE, SIZE, 4)
        alpha = rgba[..., 3] > 0
        ys, xs = np.nonzero(alpha)
        assert 0.2 < alpha.mean() < 0.7, i
        # Centred left-right (the hair volume at the back moves a side view's box a little).
        assert abs((xs.min() + xs.max()) / 2 - SIZE / 2) < 0.1 * SIZE, i
        assert ys.min() > 2 and xs.min() > 2 and xs.max() < SIZE - 3, i  # crown and sides inside the frame
        # The head (upper half of the frame) is wider than the neck at the bottom row: upright.
        assert alpha[SIZE // 3].sum() > alpha[-1].sum() > 0, i


def test_view_0_shows_the_photo(proxy_run):
    run, _ = proxy_run
    view = _read(run.path("proxy", "views", "0000.png"))[..., :3].astype(float)
    photo = np.asarray(Image.open(run.path("input", "aligned.png")).resize((SIZE, SIZE), Image.BILINEAR)).astype(float)
    # The face region: between the eyes and the mouth of the fitted template.
    cam = orbit(1)[0]
    k = template_head().keypoints
    (x0, y0), (x1, y1) = cam.project(np.stack([k["right_eye_outer"], k["mouth_left"]]), SIZE, SIZE)[0].astype(int)
    diff = np.abs(view[y0:y1, x0:x1] - photo[y0:y1, x0:x1]).mean()
    assert diff < 10.0  # out of 255
    assert view[y0:y1, x0:x1].std() > 15  # eyes, nose and mouth, not a fill colour


def test_view_16_shows_the_back_of_the_head_in_hair_colour(proxy_run):
    run, info = proxy_run
    back = _read(run.path("proxy", "views", "0016.png"))
    upper = back[: SIZE // 2][back[: SIZE // 2, :, 3] > 0][:, :3].astype(float) / 255
    hair, skin = np.asarray(info["hair_rgb"]), np.asarray(info["skin_rgb"])
    median = np.median(upper, axis=0)
    # Same hue as the photo's hair (the fill is shaded a little, so compare chromaticity), darker than skin.
    np.testing.assert_allclose(median / median.sum(), hair / hair.sum(), atol=0.015)
    assert 0.6 * hair.sum() < median.sum() < 0.75 * skin.sum()


def test_conditions_are_shaded_colour_renders_on_grey(proxy_run):
    run, _ = proxy_run
    for i in (0, 8, 16):
        cond = _read(run.path("proxy", "conditions", f"{i:04d}.png")).astype(int)
        view = _read(run.path("proxy", "views", f"{i:04d}.png")).astype(int)
        assert cond.shape == (SIZE, SIZE, 3)
        head = view[..., 3] > 0  # same head, same camera
        assert np.all(cond[~head] == 128)  # PanoHead-like: a grey background, not black
        assert np.abs(cond[head] - cond[head][:, :1]).mean() > 3  # in colour, not grey
        ratio = cond[head].sum(-1) / np.maximum(view[head][:, :3].sum(-1), 1)
        assert ratio.std() > 0.05  # the texture's colours, shaded by the light


def test_hair_split_is_written(proxy_run):
    run, _ = proxy_run
    hair = _read(run.path("proxy", "hair.png"))
    assert hair.shape == _read(run.path("input", "mask.png")).shape
    assert set(np.unique(hair)) <= {0, 128, 255} and (hair == 128).any()


def test_proxy_mesh_is_textured(proxy_run):
    run, _ = proxy_run
    mesh = proxy_mesh(run, ProxyOptions(texture_width=512))
    assert isinstance(mesh, trimesh.Trimesh)
    assert mesh.visual.uv.shape == (len(mesh.vertices), 2)
    assert mesh.visual.material.image.size == (512, 256)


def test_contact_sheet_layout():
    images = [np.full((64, 32, 4), 255, np.uint8), np.zeros((20, 20), np.uint8), np.zeros((10, 10, 3), np.uint8)]
    sheet = contact_sheet(images, ["a", "b", "c"], columns=2, tile=40)
    assert sheet.shape == (2 * (40 + 18), 80, 3) and sheet.dtype == np.uint8
    assert sheet[20, 20].tolist() == [255, 255, 255]  # the opaque white image, scaled to fit the tile
    with pytest.raises(ValueError):
        contact_sheet(images, ["a"], columns=2)


def test_cli_builds_then_skips(cli, tmp_path):
    run = _fixture(tmp_path / "run")
    res = cli("proxy", str(run.root), "--views", "4", "--size", "96")
    assert res.returncode == 0, res.stderr
    assert len(list(run.path("proxy", "views").glob("*.png"))) == 4
    assert _read(run.path("proxy", "views", "0002.png")).shape == (96, 96, 4)
    again = cli("proxy", str(run.root), "--views", "4", "--size", "96")
    assert again.returncode == 0 and "up to date" in again.stderr


def test_cli_without_inputs_is_a_one_line_error(cli, tmp_path):
    run = _fixture(tmp_path / "run")
    for f in run.path("input").iterdir():
        f.unlink()
    run.path("input").rmdir()
    res = cli("proxy", str(run.root))
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "input/aligned.png" in lines[0] and "preprocess" in lines[0]
    assert "Traceback" not in res.stderr
    assert not run.path("proxy").exists()


def test_cli_not_a_run_and_bad_options(cli, tmp_path):
    res = cli("proxy", str(tmp_path / "nothing"))
    assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1
    run = _fixture(tmp_path / "run")
    res = cli("proxy", str(run.root), "--views", "0")
    assert res.returncode != 0 and "--views" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not run.path("proxy").exists()


def test_manual_camera_without_landmarks(tmp_path):
    run = _fixture(tmp_path / "run")
    record = json.loads(run.path("input", "camera.json").read_text())
    record["landmarks"] = None  # what preprocess writes for a manual --yaw/--pitch
    run.path("input", "camera.json").write_text(json.dumps(record))
    run.path("input", "mask.png").unlink()  # the mask is optional
    info = build_proxy(run, ProxyOptions(views=2, size=64, texture_width=512))
    assert info["landmarks_used"] == 0 and info["fit_scale"] == 1.0
    assert _read(run.path("proxy", "views", "0000.png"))[..., 3].mean() > 0


def test_supersampled_view_has_soft_edges_and_same_colours():
    from portrait3d.cameras import camera_from_angles
    from portrait3d.proxy.stage import render_view
    from portrait3d.render import MeshRenderer

    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.2)
    sphere.visual.vertex_colors = np.tile(np.array([200, 40, 90, 255], np.uint8), (len(sphere.vertices), 1))
    renderer = MeshRenderer(sphere)
    cam = camera_from_angles(20)
    sharp, _ = render_view(renderer, cam, 48, 1)
    soft, condition = render_view(renderer, cam, 48, 2)
    assert soft.shape == sharp.shape == (48, 48, 4) and condition.shape == (48, 48, 3)
    assert set(np.unique(sharp[..., 3])) == {0, 255}
    assert ((soft[..., 3] > 0) & (soft[..., 3] < 255)).sum() > 20  # partly covered outline pixels
    edge = (soft[..., 3] > 30) & (soft[..., 3] < 255)
    np.testing.assert_allclose(soft[edge][:, :3].mean(axis=0), [200, 40, 90], atol=3)  # no dark fringe
    assert abs(int(soft[..., 3].astype(int).sum() / 255) - int((sharp[..., 3] > 0).sum())) < 30
