"""Hair hanging below the jaw: measured on the photo, the hair volume falls down to it, the throat stays bare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from portrait3d.proxy.head import build_head, head_shape
from portrait3d.proxy.long_hair import LOWEST, NECK_HALF_WIDTH, hanging_lengths
from portrait3d.proxy.shape import _frame
from portrait3d.proxy.stage import read_inputs
from portrait3d.run import Run

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "data" / "samples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The sample photo (short hair) through the real preprocess stage, its head, and a copy of the photo with
    long hair painted beside her neck from the ears down to the frame's bottom."""
    from portrait3d.preprocess.pipeline import preprocess

    root = tmp_path_factory.mktemp("long_hair") / "run"
    preprocess(PHOTO, root)
    inputs = read_inputs(Run(root, create=False))
    fit, seg, shape = head_shape(inputs.photo, inputs.camera, inputs.mask, inputs.landmarks)
    frame = _frame(fit, inputs.camera, inputs.photo.shape[0])
    size = inputs.photo.shape[0]
    px = frame.focal_px * frame.k / frame.depth  # pixels per model unit
    rows, cols = np.mgrid[0:size, 0:size]
    beside = np.abs(cols + 0.5 - frame.centre_px[0])
    strands = ((beside > (NECK_HALF_WIDTH + 0.01) * px) & (beside < (NECK_HALF_WIDTH + 0.09) * px)
               & (rows > frame.centre_px[1]))  # fmt: skip
    rng = np.random.default_rng(0)
    hair_colour = np.median(inputs.photo[seg.hair], axis=0)
    photo, mask = inputs.photo.copy(), inputs.mask.copy()
    streaks = rng.normal(0.0, 18.0, size)[None, :, None]  # strands: columns of lighter and darker hair
    photo[strands] = np.clip(hair_colour + np.broadcast_to(streaks, photo.shape)[strands], 0, 255).astype(np.uint8)
    mask[strands] = 255
    return inputs, fit, seg, shape, photo, mask


def test_long_hair_is_measured_on_both_sides_and_short_hair_is_not(sample):
    inputs, fit, seg, shape, photo, mask = sample
    frame = _frame(fit, inputs.camera, inputs.photo.shape[0])
    assert hanging_lengths(inputs.photo, seg, frame) == (None, None)
    assert shape.info["hair_falls_to"] is None
    _, long_seg, _ = head_shape(photo, inputs.camera, mask, inputs.landmarks, voxel=0.01)
    # The painted hair runs out of the frame: it falls to just above the neck's cut.
    assert hanging_lengths(photo, long_seg, frame) == (LOWEST, LOWEST)


def test_the_hair_falls_below_the_jaw_and_the_throat_stays_bare(sample):
    inputs, fit, seg, shape, photo, mask = sample
    _, _, long = head_shape(photo, inputs.camera, mask, inputs.landmarks)
    assert long.info["hair_falls_to"] == [LOWEST, LOWEST]
    assert long.mesh.is_watertight and long.mesh.is_winding_consistent and long.mesh.volume > 0

    def lowest_hair_behind(head):
        v = np.asarray(head.mesh.vertices)
        behind = (head.hair > 0.5) & (v[:, 2] < np.median(v[:, 2]))
        return float(v[behind, 1].min())

    chin = float(fit.keypoints["chin"][1])
    neck_bottom = float(np.asarray(long.mesh.vertices)[:, 1].min())
    # Short hair ends above the chin at the back; the long hair falls to within 3 cm (model 0.03) of the neck's cut.
    assert lowest_hair_behind(shape) > chin
    assert lowest_hair_behind(long) < neck_bottom + 0.35 * (chin - neck_bottom)
    # In front the throat under the chin stays skin: no hair on the vertices facing the camera below the chin.
    v = np.asarray(long.mesh.vertices)
    normals = np.asarray(long.mesh.vertex_normals)
    throat = (v[:, 1] < chin - 0.02) & (normals[:, 2] > 0.8) & (np.abs(v[:, 0]) < 0.03)
    assert throat.sum() > 50 and long.hair[throat].max() < 0.5


def test_the_fall_is_hair_coloured_all_round_and_inside_every_orbit_view(sample):
    from portrait3d.cameras import camera_from_angles
    from portrait3d.render import MeshRenderer

    inputs, fit, seg, shape, photo, mask = sample
    head = build_head(photo, inputs.camera, mask, inputs.landmarks, voxel=0.008, texture_width=1024)
    renderer = MeshRenderer(head.textured)
    hair_colour = np.median(photo[seg.hair], axis=0) / 255.0
    skin_colour = np.median(photo[seg.skin], axis=0) / 255.0
    for yaw in (90.0, 180.0, -90.0):
        rgba = renderer.render_rgba(camera_from_angles(yaw), 128)
        silhouette = rgba[..., 3] > 0
        assert not silhouette[:, :1].any() and not silhouette[:, -1:].any(), yaw  # inside the frame
        # The fall's lower part, behind and beside the neck (between the chin's height and the frame's bottom).
        low = rgba[100:120, :, :3][silhouette[100:120]] / 255.0
        colour = np.median(low, axis=0)
        assert np.linalg.norm(colour - hair_colour) < np.linalg.norm(colour - skin_colour), yaw


def test_the_fall_drops_straight_down_then_closes_flat_to_the_neck():
    from portrait3d.proxy.long_hair import hang
    from portrait3d.proxy.shape import N_LAT, N_LON
    from portrait3d.proxy.template import CRANIUM_CENTRE

    lat = np.radians(-90 + (np.arange(N_LAT) + 0.5) * 180 / N_LAT)
    radius = np.full((N_LAT, N_LON), 0.1)  # a round head of radius 0.1 about the cranium's centre
    lengths = np.full(N_LON, -0.3)
    weight = np.zeros(N_LON)
    weight[N_LON // 2 :] = 1.0  # half the meridians fall, half do not
    out, lifted = hang(radius, lengths, weight)
    np.testing.assert_array_equal(out[:, : N_LON // 2], radius[:, : N_LON // 2])
    assert not lifted[:, : N_LON // 2].any()
    falls = out[:, -1]
    horizontal, height = falls * np.cos(lat), CRANIUM_CENTRE[1] + falls * np.sin(lat)
    # Above the equator nothing moves; down to the length the outline is the vertical line under the widest point.
    np.testing.assert_array_equal(falls[lat > 0], 0.1)
    down = (lat < 0) & (height > -0.3 + 1e-9)
    np.testing.assert_allclose(horizontal[down], horizontal[lat > 0].max(), rtol=1e-9)
    # Below it the end is flat at the length, inward as far as it stays outside the head.
    end = (lat < 0) & lifted[:, -1] & ~down
    assert end.any()
    np.testing.assert_allclose(height[end], -0.3, atol=1e-9)
    assert np.all(out[:, -1] >= radius[:, -1])
