"""The shared CPU renderer against analytic answers."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from portrait3d.cameras import camera_from_angles
from portrait3d.render import MeshRenderer, sample_texture


def _sphere(radius=0.2, color=(200, 30, 30, 255)):
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    mesh.visual.vertex_colors = np.tile(np.array(color, dtype=np.uint8), (len(mesh.vertices), 1))
    return mesh


def test_sphere_silhouette_and_depth():
    r = MeshRenderer(_sphere(0.2))
    cam = camera_from_angles(30, 10)
    rgba = r.render_rgba(cam, 128)
    assert rgba.shape == (128, 128, 4) and rgba.dtype == np.uint8
    # Projected radius of a sphere seen from distance d with focal f (pixels): f * r / sqrt(d^2 - r^2).
    f = 4.2647 * 128
    expected_area = np.pi * (f * 0.2 / np.sqrt(2.7**2 - 0.04)) ** 2
    assert (rgba[..., 3] > 0).sum() == pytest.approx(expected_area, rel=0.03)
    depth = r.render_depth(cam, 128)
    assert depth[64, 64] == pytest.approx(2.5, abs=0.01)  # front of the sphere on the optical axis
    assert np.isinf(depth[0, 0])
    hit = rgba[..., 3] == 255
    np.testing.assert_allclose(rgba[hit][:, :3].mean(axis=0), [200, 30, 30], atol=1)


def test_shaded_is_brightest_facing_camera():
    img = MeshRenderer(_sphere()).render_shaded(camera_from_angles(0), 64)
    assert img[32, 32, 0] > img[32, 40, 0] > 0
    assert img[0, 0, 0] == 0


def test_uv_texture_lookup_orientation():
    tex = np.zeros((2, 2, 3), dtype=np.uint8)
    tex[0, 0] = [255, 0, 0]  # top-left of the image = uv (0, 1)
    tex[1, 1] = [0, 0, 255]  # bottom-right = uv (1, 0)
    out = sample_texture(tex, np.array([[0.0, 1.0], [1.0, 0.0]]))
    np.testing.assert_allclose(out, [[1, 0, 0], [0, 0, 1]])
