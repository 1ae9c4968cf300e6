"""The written-out length-3 sums give numpy's reductions bit for bit; triangle normals are unit and outward."""

import numpy as np

from portrait3d.vectors import barycentric_blend, dot3, unit_face_normals, vector_length


def test_dot3_and_length_match_numpy_bit_for_bit():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 50, 7, 3)) * 1e3
    assert np.array_equal(dot3(a, b), np.sum(a * b, axis=-1))
    assert np.array_equal(vector_length(a), np.linalg.norm(a, axis=-1))


def test_barycentric_blend_matches_numpy_and_interpolates():
    rng = np.random.default_rng(1)
    corners = rng.normal(size=(40, 3, 2))
    weights = rng.dirichlet(np.ones(3), size=40)[..., None]
    assert np.array_equal(barycentric_blend(corners, weights), (corners * weights).sum(axis=1))
    # A weight of one on a corner returns that corner.
    assert np.array_equal(barycentric_blend(corners, np.eye(3)[[1] * 40][..., None]), corners[:, 1])


def test_unit_face_normals_point_out_of_a_closed_mesh_and_are_zero_for_a_degenerate_triangle():
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=2)
    normals = unit_face_normals(sphere.vertices, sphere.faces)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0)
    centres = sphere.triangles_center
    # On a sphere about the origin each triangle's outward normal is along its centre.
    assert np.all(np.sum(normals * centres / np.linalg.norm(centres, axis=1, keepdims=True), axis=1) > 0.98)
    flat = unit_face_normals(np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]]), np.array([[0, 1, 2]]))
    assert np.array_equal(flat, np.zeros((1, 3)))
