"""The template head, its landmark fit and its texture layout."""

from __future__ import annotations

import numpy as np
import pytest

from portrait3d.cameras import PANOHEAD_FOCAL, PANOHEAD_RADIUS, camera_from_angles
from portrait3d.proxy.fit import fit_template
from portrait3d.proxy.layout import PINNA_ROWS, head_uv
from portrait3d.proxy.template import MEDIAPIPE_INDEX, template_head

FRAME = PANOHEAD_RADIUS / PANOHEAD_FOCAL  # width of the PanoHead frame at the origin, ~0.63


@pytest.fixture(scope="module")
def template():
    return template_head()


def test_template_is_closed_and_panohead_sized(template):
    mesh = template.mesh
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0  # outward normals
    (x0, y0, z0), (x1, y1, z1) = mesh.bounds
    # Ear to ear and crown to chin fill a good part of the frame, but the head stays inside it.
    assert 0.45 * FRAME < x1 - x0 < 0.85 * FRAME
    assert 0.2 * FRAME < y1 < 0.5 * FRAME
    assert abs(x0 + x1) < 1e-3  # symmetric
    assert z1 - z0 < FRAME  # fits in a side view
    chin, crown = template.keypoints["chin"][1], y1
    assert 0.6 * FRAME < crown - chin < 0.95 * FRAME
    assert y0 < -0.5 * FRAME  # the neck runs out of the bottom of the frame


def test_the_grid_is_fine_wherever_a_field_changes_sign_even_one_that_is_no_distance():
    """A field that reads far from zero beside its surface (a sphere's distance times 50, as a radial field reads
    along a surface that runs with the rays) is still sampled finely there: its mesh is the sphere, not a staircase
    of the coarse blocks' steps."""
    import mcubes

    from portrait3d.proxy.template import _narrow_band_sdf

    step, radius = 0.01, 0.2
    axes = [np.arange(-0.3, 0.3 + step, step)] * 3

    def steep(points: np.ndarray) -> np.ndarray:
        return 50.0 * (np.linalg.norm(points - 0.003, axis=1) - radius)

    sdf = _narrow_band_sdf(axes, step, field=steep)
    vertices, _ = mcubes.marching_cubes(-sdf, 0.0)
    off = np.abs(np.linalg.norm(axes[0][0] + vertices * step - 0.003, axis=1) - radius)
    assert off.max() < 0.1 * step, off.max()


def test_keypoints_lie_on_the_face(template):
    k = template.keypoints
    assert set(k) == set(MEDIAPIPE_INDEX)
    assert k["nose_tip"][2] > k["right_eye_inner"][2] > 0  # the nose sticks out, the face looks to +z
    assert k["left_eye_outer"][0] > 0 > k["right_eye_outer"][0]  # the subject's left is world +x
    assert k["forehead"][1] > k["nose_bridge"][1] > k["nose_tip"][1] > k["upper_lip"][1] > k["chin"][1]
    distances = np.abs(template.mesh.nearest.signed_distance(np.stack(list(k.values()))))
    assert distances.max() < 1e-3


def test_hair_covers_the_back_not_the_face(template):
    v = np.asarray(template.mesh.vertices)
    back_top = (v[:, 2] < -0.1) & (v[:, 1] > 0.1)
    face = (v[:, 2] > 0.1) & (np.abs(v[:, 1]) < 0.05)
    assert template.hair[back_top].mean() > 0.95
    assert template.hair[face].max() < 0.05
    assert template.ears.max() == 1.0 and template.ears[face].max() == 0.0


def _landmarks_from(points: dict[str, np.ndarray]) -> np.ndarray:
    landmarks = np.zeros((478, 3))
    for name, p in points.items():
        landmarks[MEDIAPIPE_INDEX[name], :2] = p
    return landmarks


def test_fit_recovers_scale_shift_and_feature_moves(template):
    cam = camera_from_angles(10, 5)
    names = list(template.keypoints)
    proj, _ = cam.project(np.stack([template.keypoints[n] for n in names]), 512, 512)
    centre, _ = cam.project(np.zeros((1, 3)), 512, 512)
    target = centre + 1.1 * (proj - centre) + [6.0, -4.0]
    target[names.index("nose_tip")] += [5.0, 0.0]  # a nose a little to the side
    fit = fit_template(template, cam, 512, _landmarks_from(dict(zip(names, target))))
    assert fit.used == len(names)
    assert fit.scale == pytest.approx(1.1, abs=0.02)
    moved, _ = cam.project(np.stack([fit.keypoints[n] for n in names]), 512, 512)
    assert np.abs(moved - target).max() < 1.5  # every feature lands on its landmark
    # The back of the head does not move with the face.
    back = np.asarray(template.mesh.vertices)[:, 2] < -0.15
    np.testing.assert_allclose(fit.vertices[back], np.asarray(template.mesh.vertices)[back] * fit.scale + fit.shift)


def test_fit_without_landmarks_keeps_the_template(template):
    fit = fit_template(template, camera_from_angles(0), 512, None)
    assert fit.used == 0 and fit.scale == 1.0
    np.testing.assert_array_equal(fit.vertices, template.mesh.vertices)


def test_head_uv_cuts_the_seam(template):
    v, f = np.asarray(template.mesh.vertices), np.asarray(template.mesh.faces)
    uv, faces, source = head_uv(v, f)
    np.testing.assert_array_equal(source[faces], f)  # same triangles, same corners
    spans = np.ptp(uv[faces][..., 0], axis=1)
    latitude = (uv[faces][..., 1] - PINNA_ROWS) / (1 - PINNA_ROWS)
    away_from_poles = np.abs(latitude - 0.5).max(axis=1) < 0.4  # longitude degenerates at the poles
    assert spans[away_from_poles].max() < 0.05  # no triangle wraps around the texture
    front = np.argmax(v[:, 2])
    assert uv[front, 0] == pytest.approx(0.5, abs=0.02)  # the face is in the middle of the texture


def test_fit_ignores_landmarks_seen_at_a_grazing_angle(template):
    cam = camera_from_angles(60)  # camera on the subject's left: the right cheek faces away
    names = list(template.keypoints)
    proj, _ = cam.project(np.stack([template.keypoints[n] for n in names]), 512, 512)
    target = proj.copy()
    target[names.index("cheek_right")] += [12.0, 0.0]
    target[names.index("cheek_left")] += [0.0, 6.0]
    fit = fit_template(template, cam, 512, _landmarks_from(dict(zip(names, target))))
    moved, _ = cam.project(np.stack([fit.keypoints[n] for n in names]), 512, 512)
    unwarped, _ = cam.project(np.stack([template.keypoints[n] * fit.scale + fit.shift for n in names]), 512, 512)
    right, left = names.index("cheek_right"), names.index("cheek_left")
    assert np.abs(moved[right] - unwarped[right]).max() < 1.0  # the hidden cheek stays
    assert np.abs(moved[left] - target[left]).max() < 1.5  # the visible one follows its landmark
