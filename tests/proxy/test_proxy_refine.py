"""Finer triangles around the ears (:mod:`portrait3d.proxy.refine`, ``shape._finer_ears``)."""

from __future__ import annotations

import numpy as np
import trimesh

from portrait3d.proxy.ear_shape import pinna_distance
from portrait3d.proxy.refine import onto_surface, refine_faces


def test_split_triangles_keep_a_closed_mesh_closed():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    vertices, faces = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    chosen = vertices[faces].mean(axis=1)[:, 2] > 0.6  # a cap
    new_vertices, new_faces = refine_faces(vertices, faces, chosen)
    refined = trimesh.Trimesh(new_vertices, new_faces, process=False)
    # No vertex on another triangle's edge: still closed, and every triangle still faces out.
    assert refined.is_watertight and refined.is_winding_consistent
    assert refined.volume > 0
    np.testing.assert_allclose(refined.area, sphere.area, rtol=1e-9)  # midpoints on straight edges: same surface
    # The chosen triangles are split in four, their neighbours in two (or four where two of their edges split).
    assert len(new_faces) >= len(faces) + 3 * chosen.sum()
    assert len(new_faces) < len(faces) + 3 * chosen.sum() + 3 * (~chosen).sum()
    np.testing.assert_array_equal(new_vertices[: len(vertices)], vertices)


def test_splitting_every_triangle_gives_four_each():
    box = trimesh.creation.box()
    vertices, faces = refine_faces(np.asarray(box.vertices), np.asarray(box.faces), np.ones(len(box.faces), bool))
    assert len(faces) == 4 * len(box.faces)
    assert len(vertices) == len(box.vertices) + len(box.edges_unique)


def test_points_are_moved_onto_the_surface_but_not_far():
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(200, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    points = directions * rng.uniform(0.9, 1.1, size=(200, 1))

    def sphere(p):
        return np.linalg.norm(p, axis=1) - 1.0

    moved = onto_surface(points, sphere, largest_move=0.2)
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), 1.0, atol=1e-6)
    far = onto_surface(directions * 2.0, sphere, largest_move=0.2)
    np.testing.assert_allclose(np.linalg.norm(far, axis=1), 1.8, atol=1e-9)  # capped: one largest move in


def test_the_ears_get_finer_triangles_on_the_heads_surface():
    import mcubes

    from portrait3d.proxy.shape import _finer_ears
    from portrait3d.proxy.template import _narrow_band_sdf, head_sdf

    step = 0.0035  # model units: the final mesh's grid on an average head
    lo, hi = np.array([0.08, -0.09, -0.1]), np.array([0.2, 0.06, 0.04])  # the left ear and the head beside it
    axes = [np.arange(a, b + step, step) for a, b in zip(lo, hi)]
    verts, faces = mcubes.marching_cubes(-_narrow_band_sdf(axes, step), 0.0)
    coarse = trimesh.Trimesh(lo + verts * step, faces, process=True)
    fine = _finer_ears(coarse, head_sdf, step)

    def pinna_edges(mesh):
        edges = np.asarray(mesh.edges_unique)
        middle = np.asarray(mesh.vertices)[edges].mean(axis=1)
        on = pinna_distance(middle, 1.0) < 0.0
        return np.asarray(mesh.edges_unique_length)[on]

    assert np.median(pinna_edges(fine)) < 0.65 * np.median(pinna_edges(coarse))
    # The new vertices lie on the surface (the grid's straight edges cut the rim's and bowls' curves).
    new = np.asarray(fine.vertices)[len(coarse.vertices) :]
    assert len(new) > 500
    assert np.abs(head_sdf(new)).max() < 0.05 * step
    # The part of the head away from the ear is left as it was.
    far = pinna_distance(np.asarray(coarse.vertices), 1.0) > 0.03
    kept = np.asarray(fine.vertices)[: len(coarse.vertices)]
    np.testing.assert_array_equal(kept[far], np.asarray(coarse.vertices)[far])
