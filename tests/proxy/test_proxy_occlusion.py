"""Ambient occlusion of the pinnae's folds (:mod:`portrait3d.proxy.occlusion`)."""

from __future__ import annotations

import numpy as np
import trimesh

from portrait3d.proxy.occlusion import hemisphere_directions, open_share


def test_the_directions_cover_the_hemisphere_by_the_cosine():
    d = hemisphere_directions(400)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-12)
    assert (d[:, 2] >= 0).all()
    # Cosine-weighted: the mean cosine is 2/3 (uniform over the hemisphere would give 1/2).
    assert abs(d[:, 2].mean() - 2.0 / 3.0) < 0.01
    assert np.abs(d[:, :2].mean(axis=0)).max() < 0.02


def test_the_floor_of_a_well_is_darker_than_an_open_floor():
    # A square well 2 cm wide and 2 cm deep (outward normals; its floor at z = 0, its opening at z = 0.02).
    well = trimesh.creation.box(extents=(0.02, 0.02, 0.02))
    well.apply_translation((0.0, 0.0, 0.01))
    walls = trimesh.Trimesh(well.vertices, np.asarray(well.faces)[np.asarray(well.face_normals)[:, 2] < 0.5])
    walls.invert()  # the inside of the well faces in
    floor = np.array([[0.0, 0.0, 0.001]])
    up = np.array([[0.0, 0.0, 1.0]])
    inside = open_share(walls.vertices, walls.faces, floor, up, reach=0.05)[0]
    assert 0.1 < inside < 0.6, inside
    # Beyond the reach the walls do not count; a point above the well sees the whole sky.
    assert open_share(walls.vertices, walls.faces, floor, up, reach=0.005)[0] > 0.9
    assert open_share(walls.vertices, walls.faces, floor + [0.0, 0.0, 0.03], up, reach=0.05)[0] == 1.0


def test_the_scapha_is_darker_than_the_ridges_beside_it():
    from portrait3d.proxy.ear_shape import ear_frame
    from portrait3d.proxy.template import model_to_world, template_head

    mesh = template_head().mesh
    scale, offset = model_to_world()
    out, up, forward = ear_frame((np.asarray(mesh.vertices) - offset) / scale, 1.0)

    def outer_face(at_forward: float, at_up: float) -> int:
        """The left pinna's outer face at (forward, up) of its frame: the outermost vertex there."""
        column = (np.abs(forward - at_forward) < 0.004) & (np.abs(up - at_up) < 0.004) & (out > -0.02)
        return int(np.nonzero(column)[0][np.argmax(out[column])])

    # The scapha's groove, the helix behind it, the antihelix in front, at mid-height. (Measured 0.875, 1, 1; the
    # concha, a wide bowl, 0.98.)
    index = [outer_face(-0.018, 0.0), outer_face(-0.024, 0.0), outer_face(-0.009, 0.0)]
    share = open_share(mesh.vertices, mesh.faces, mesh.vertices[index], mesh.vertex_normals[index])
    assert share[0] < min(share[1], share[2]) - 0.08, share
