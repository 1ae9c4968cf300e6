"""Bare ears moved onto the ears the photo shows (:mod:`portrait3d.proxy.ear_placement`)."""

from __future__ import annotations

import cv2
import numpy as np

from portrait3d.cameras import camera_from_angles
from portrait3d.proxy.ear_placement import FACING, ear_shifts, image_shift, move_ears
from portrait3d.proxy.layout import PINNA_VERTEX
from portrait3d.proxy.symmetry import head_mid_x
from portrait3d.proxy.template import model_to_world, pinna_weight, template_head

SIZE = 512


def test_the_shift_that_puts_the_points_on_the_region():
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    disc = (xx - 100) ** 2 + (yy - 200) ** 2 < 20**2
    points = np.stack([xx[disc], yy[disc]], axis=1).astype(np.float64) + 0.5
    region = np.roll(np.roll(disc, 12, axis=1), -8, axis=0)  # the photo's ear: 12 px right, 8 px up
    shift, before, after = image_shift(points, region)
    assert np.abs(shift - [12.0, -8.0]).max() <= 3.0, shift
    assert before < 0.6 and after > 0.9, (before, after)


def _head():
    """The template head (world units), its vertex normals and pinna weights."""
    mesh = template_head().mesh
    scale, offset = model_to_world()
    vertices = np.asarray(mesh.vertices)
    return mesh, vertices, np.asarray(mesh.vertex_normals), pinna_weight((vertices - offset) / scale)


def _photo_ears(vertices, normals, pinna, camera, move) -> np.ndarray:
    """(S, S) bool: where the photo shows the ears: the pinnae's seen points moved by ``move`` (world), projected."""
    to_camera = camera.position - vertices
    to_camera /= np.linalg.norm(to_camera, axis=1, keepdims=True)
    seen = (pinna >= PINNA_VERTEX) & (np.sum(normals * to_camera, axis=1) > FACING)
    moved = vertices[seen] + np.where(vertices[seen, :1] > 0, 1.0, -1.0) * [1.0, 0.0, 0.0] * move[0] + [0, *move[1:]]
    pixels, _ = camera.project(moved, SIZE, SIZE)
    region = np.zeros((SIZE, SIZE), np.uint8)
    for x, y in np.round(pixels).astype(int):
        cv2.circle(region, (int(x), int(y)), 3, 1, -1)
    return region.astype(bool)


def test_both_ears_move_onto_the_photos_ears_as_a_pair():
    mesh, vertices, normals, pinna = _head()
    camera = camera_from_angles(0.0)
    # The photo shows both ears 10 mm higher and 4 mm nearer the head (world units at 0.4 m a unit).
    truth = np.array([-0.01, 0.025, 0.0])  # x: toward the head's middle on each side
    region = _photo_ears(vertices, normals, pinna, camera, truth)
    moves = ear_shifts(vertices, normals, pinna, camera, region)
    assert set(moves) == {-1.0, 1.0}
    np.testing.assert_allclose(moves[1.0], [-0.01, 0.025, 0.0], atol=0.004)
    np.testing.assert_allclose(moves[-1.0], moves[1.0] * [-1.0, 1.0, 1.0], atol=1e-12)  # a mirrored pair
    moved = move_ears(vertices, pinna, moves)
    # The head's mid-plane, which the texture mirrors across, stays; the face does not move.
    assert abs(head_mid_x(moved) - head_mid_x(vertices)) < 1e-6
    face = (vertices[:, 2] > 0.1) & (np.abs(vertices[:, 0]) < 0.08)
    assert np.abs(moved[face] - vertices[face]).max() < 1e-9
    # No fold: no triangle squeezed, stretched or turned over.
    faces = np.asarray(mesh.faces)

    def normals_of(points):
        return np.cross(points[faces[:, 1]] - points[faces[:, 0]], points[faces[:, 2]] - points[faces[:, 0]])

    before, after = normals_of(vertices), normals_of(moved)
    # Marching cubes leaves slivers (down to a hundredth of the median area) whose area ratio says nothing of a fold.
    size = np.linalg.norm(before, axis=1)
    whole = size > 0.1 * np.median(size)
    assert (np.sum(before * after, axis=1)[whole] > 0).all()
    area = np.linalg.norm(after, axis=1)[whole] / size[whole]
    assert area.min() > 0.5 and area.max() < 2.0, (area.min(), area.max())


def test_no_ear_in_the_photo_moves_no_ear():
    # A statue's wreath or hair the split calls skin: too little of any shifted pinna lands on it.
    _, vertices, normals, pinna = _head()
    region = np.zeros((SIZE, SIZE), bool)
    region[:40, :40] = True
    assert ear_shifts(vertices, normals, pinna, camera_from_angles(0.0), region) == {}
