"""The nerfstudio dataset: transforms.json that nerfstudio's own parser reads back unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nerf import dataset, synthetic
from portrait3d import cameras as cams
from portrait3d.run import Run


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """8 views (two pitch rings) of the procedural head at 64x64."""
    root = tmp_path_factory.mktemp("nerf-dataset") / "run"
    cameras = synthetic.orbit_cameras(4, pitches=(0.0, 25.0))
    synthetic.write_scene(root, synthetic.head_mesh(subdivisions=3), cameras, size=64)
    return root, cameras


def test_write_transforms_frames(small_run):
    root, cameras = small_run
    info = dataset.write_transforms(Run(root, create=False))
    assert info == {"frames": 8, "width": 64, "height": 64, "alpha": True}
    doc = json.loads((root / "transforms.json").read_text())
    back = cams.cameras_from_transforms(doc)
    assert [p for p, _ in back] == [f"views/{cams.view_name(i)}.png" for i in range(8)]
    for (_, cam), ref in zip(back, cameras):
        np.testing.assert_allclose(cam.cam2world, ref.cam2world, atol=1e-9)
    assert all((root / p).is_file() for p, _ in back)


def test_nerfstudio_parser_reads_same_cameras(small_run):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    root, cameras = small_run
    dataset.write_transforms(Run(root, create=False))
    parser = NerfstudioDataParserConfig(data=root / "transforms.json", **dataset.DATAPARSER_SETTINGS).setup()
    outputs = parser.get_dataparser_outputs(split="train")
    ns = outputs.cameras
    assert len(ns) == len(cameras)
    centres = ns.camera_to_worlds[:, :3, 3].numpy()
    np.testing.assert_allclose(centres, np.stack([c.position for c in cameras]), atol=1e-5)
    # nerfstudio keeps OpenGL axes: its rotation is ours with y and z flipped.
    rotations = ns.camera_to_worlds[:, :3, :3].numpy()
    expected = np.stack([cams.opencv_to_opengl(c.cam2world)[:3, :3] for c in cameras])
    np.testing.assert_allclose(rotations, expected, atol=1e-5)
    fx, fy, cx, cy = cameras[0].pixel_intrinsics(64, 64)
    np.testing.assert_allclose(ns.fx.numpy().ravel(), fx, rtol=1e-6)
    np.testing.assert_allclose(ns.fy.numpy().ravel(), fy, rtol=1e-6)
    np.testing.assert_allclose(ns.cx.numpy().ravel(), cx, rtol=1e-6)
    np.testing.assert_allclose(ns.cy.numpy().ravel(), cy, rtol=1e-6)
    assert [p.name for p in outputs.image_filenames] == [f"{cams.view_name(i)}.png" for i in range(8)]


def test_read_views_resizes_and_keeps_alpha(small_run):
    root, _ = small_run
    dataset.write_transforms(Run(root, create=False))
    views = dataset.read_views(root, size=32)
    assert len(views) == 8 and views[0].rgba.shape == (32, 32, 4)
    alpha = views[0].rgba[..., 3]
    assert alpha.max() == 255 and alpha.min() == 0  # head on a transparent background


def test_dataset_rejects_missing_image(tmp_path):
    run = Run(tmp_path / "run")
    cams.write_labels(run.path("views", "cameras.json"), {"0000.png": cams.camera_from_angles(0.0)})
    with pytest.raises(Exception, match="does not exist"):
        dataset.write_transforms(run)


def test_cli_dataset(small_run, cli, tmp_path):
    root, _ = small_run
    result = cli("dataset", str(root), "--force")
    assert result.returncode == 0, result.stderr
    assert (root / "transforms.json").is_file()
    empty = Run(tmp_path / "empty")
    result = cli("dataset", str(empty.root))
    assert result.returncode != 0
    assert "views/cameras.json" in result.stderr and "Traceback" not in result.stderr
