"""The head's shape from the photo: hair split, hair volume fitted to the outline, mirror symmetry, closed neck."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from portrait3d.preprocess.hair import split_head
from portrait3d.proxy.head import head_shape
from portrait3d.proxy.shape import DEFAULT_THICKNESS, mirror_iou, outline_radii, silhouette_iou
from portrait3d.proxy.stage import read_inputs
from portrait3d.run import Run

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "data" / "samples" / "astronaut.jpg"


def _preprocessed(photo: Path, root: Path):
    from portrait3d.preprocess.pipeline import preprocess

    preprocess(photo, root)
    return read_inputs(Run(root, create=False))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The sample photo through the real preprocess stage, and its head's geometry."""
    inputs = _preprocessed(PHOTO, tmp_path_factory.mktemp("shape") / "run")
    fit, seg, shape = head_shape(inputs.photo, inputs.camera, inputs.mask, inputs.landmarks)
    return inputs, fit, seg, shape


def test_outline_radii_of_a_disc():
    yy, xx = np.mgrid[:101, :101]
    disc = (xx + 0.5 - 50.5) ** 2 + (yy + 0.5 - 50.5) ** 2 < 30.0**2
    angles = np.radians(np.arange(0, 360, 15.0))
    radius, valid = outline_radii(disc, np.array([50.5, 50.5]), angles)
    assert valid.all()
    np.testing.assert_allclose(radius, 30.0, atol=1.0)
    _, valid = outline_radii(disc, np.array([50.5, 50.5]), angles, stop_row=70.0)
    assert not valid[np.sin(angles) > 0.9].any() and valid[np.sin(angles) < 0].all()  # the chin row stops rays
    _, valid = outline_radii(np.ones_like(disc), np.array([50.5, 50.5]), angles)
    assert not valid.any()  # an outline cut by the frame says nothing


def test_hair_split_of_the_sample(sample):
    inputs, _, seg, _ = sample
    pts = inputs.landmarks
    assert seg.hair.any() and not (seg.hair & ~seg.head).any() and not (seg.skin & seg.hair).any()
    assert 0.3 < seg.hair.sum() / seg.head.sum() < 0.7
    nose, cheek = pts[1, :2].astype(int), pts[205, :2].astype(int)
    assert seg.skin[nose[1], nose[0]] and seg.skin[cheek[1], cheek[0]]
    # The crown above the face is hair; the collar of the suit is not head at all.
    assert seg.hair[int(pts[10, 1]) - 60, int(pts[10, 0])]
    size = seg.head.shape[0]
    assert not seg.head[int(seg.chin_row) - 5, : size // 8].any()
    assert seg.head[: int(np.ceil(seg.chin_row))].sum() == seg.head.sum()


def test_hair_split_without_landmarks_or_mask():
    photo = np.full((64, 64, 3), 200, np.uint8)
    photo[:20] = 40  # dark "hair" at the top
    seg = split_head(photo, None, None)
    assert seg.head.shape == (64, 64) and seg.hair[:15].mean() > 0.5 and not seg.hair[40:].any()


def test_silhouette_follows_the_photo(sample):
    inputs, fit, seg, shape = sample
    assert silhouette_iou(shape.mesh, inputs.camera, seg) >= 0.95  # 0.74 for the bald template
    assert shape.mesh.is_watertight and shape.mesh.is_winding_consistent and shape.mesh.volume > 0
    np.testing.assert_array_equal(fit.vertices, shape.mesh.vertices)
    v = np.asarray(shape.mesh.vertices)
    top, nose = np.argmax(v[:, 1]), np.argmax(v[:, 2])
    assert shape.hair[top] > 0.9 and shape.hair[nose] < 0.1 and shape.ears[nose] == 0.0
    assert shape.info["hair_thickness_median"] > 2 * DEFAULT_THICKNESS  # the hairdo has volume


def test_neck_is_closed_by_a_flat_cap(sample):
    mesh = sample[3].mesh
    v = np.asarray(mesh.vertices)
    bottom = v[:, 1] < v[:, 1].min() + 1e-4
    assert bottom.sum() > 50  # a flat cut, not a point
    normals = np.asarray(mesh.face_normals)
    cap = np.all(bottom[np.asarray(mesh.faces)], axis=1)
    assert cap.sum() > 50 and np.all(normals[cap][:, 1] < -0.99)  # facing down, outward
    assert mesh.is_watertight


def test_no_mask_gives_a_thin_default_hair(sample):
    inputs = sample[0]
    _, seg, shape = head_shape(inputs.photo, inputs.camera, None, inputs.landmarks, voxel=0.01)
    assert seg is None and shape.mesh.is_watertight
    np.testing.assert_allclose(shape.thickness, DEFAULT_THICKNESS)


@pytest.mark.slow
def test_mirrored_photo_gives_the_mirrored_head(sample, tmp_path):
    mirrored = tmp_path / "mirror.png"
    ImageOps.mirror(Image.open(PHOTO).convert("RGB")).save(mirrored)
    inputs = _preprocessed(mirrored, tmp_path / "run")
    _, seg, shape = head_shape(inputs.photo, inputs.camera, inputs.mask, inputs.landmarks)
    assert silhouette_iou(shape.mesh, inputs.camera, seg) >= 0.95
    assert mirror_iou(sample[3].mesh, shape.mesh) >= 0.95
