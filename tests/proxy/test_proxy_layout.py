"""The head's texture layout: the longitude/latitude map and the pinna charts, which share no texels."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from portrait3d.cameras import camera_from_angles
from portrait3d.proxy.layout import PINNA_ROWS, UV_CENTRE, band_rows, head_uv, layered_share, mirror_coordinates
from portrait3d.proxy.template import model_to_world, pinna_weight, template_head
from portrait3d.proxy.texels import texel_surface

WIDTH = 512


@pytest.fixture(scope="module")
def head():
    template = template_head()
    points = np.asarray(template.mesh.vertices)
    scale, offset = model_to_world()
    pinna = pinna_weight((points - offset) / scale)
    return template.mesh, pinna


def _cells(uv: np.ndarray, faces: np.ndarray, size: int = 256) -> set[tuple[int, int]]:
    """The cells of a size x size grid over UV space that the triangles' corners fall in."""
    cells = np.clip(np.floor(uv[faces].reshape(-1, 2) * size).astype(int), 0, size - 1)
    return set(map(tuple, cells))


def test_the_pinnae_have_charts_of_their_own(head):
    """The pinna's triangles lie in the band at the bottom of the texture, apart from the map, whose triangles keep
    out of the band: the skin behind an ear no longer shares the ear's texels."""
    mesh, pinna = head
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    uv, uv_faces, source = head_uv(vertices, faces, pinna)
    np.testing.assert_array_equal(source[uv_faces], faces)  # same triangles, same corners
    on_pinna = np.all(pinna[faces] > 0.5, axis=1)
    assert on_pinna.sum() > 200
    in_band = np.all(uv[uv_faces][..., 1] < PINNA_ROWS, axis=1)
    np.testing.assert_array_equal(in_band, on_pinna)
    assert np.all(uv[uv_faces[~on_pinna]][..., 1] >= PINNA_ROWS)
    # All four charts are used (each ear's outer face and back), and the two ears' charts are mirror images.
    chart = np.floor(uv[uv_faces[on_pinna]].mean(axis=1)[:, 0] * 4).astype(int)
    counts = np.bincount(chart, minlength=4)
    assert counts.min() > 20, counts
    assert abs(counts[0] - counts[2]) < 0.2 * counts[0] and abs(counts[1] - counts[3]) < 0.2 * counts[1]
    # A vertex of the pinna alone has its chart's UV in the first V (its colour is read there).
    alone = np.setdiff1d(np.unique(faces[on_pinna]), np.unique(faces[~on_pinna]))
    assert len(alone) > 100 and np.all(uv[alone, 1] < PINNA_ROWS)
    # Without a pinna weight the layout is the map alone.
    uv0, faces0, _ = head_uv(vertices, faces)
    assert np.all(uv0[faces0][..., 1] >= PINNA_ROWS)


def test_mirror_coordinates_of_a_pinna_are_the_other_ears_chart(head):
    """In the band a texel's mirror image is the same place in the other ear's chart; it is a texel of that ear
    whose surface point is the mirror image of this one's (within a few millimetres)."""
    mesh, pinna = head
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    uv, uv_faces, source = head_uv(vertices, faces, pinna)
    zeros = np.zeros(len(vertices))
    surface = texel_surface(vertices, np.asarray(mesh.vertex_normals), zeros, zeros, uv, uv_faces, source, WIDTH)
    coords = mirror_coordinates(surface.points, 0.0, WIDTH)
    band = band_rows(WIDTH // 2)[:, None] & surface.covered
    rows, cols = np.nonzero(band)
    to_cols = np.round(coords[rows, cols, 0]).astype(int) % WIDTH
    to_rows = np.round(coords[rows, cols, 1]).astype(int)
    both = surface.covered[to_rows, to_cols]
    assert both.mean() > 0.8
    here = surface.points[rows[both], cols[both]]
    there = surface.points[to_rows[both], to_cols[both]]
    assert np.all(np.sign(here[:, 0]) == -np.sign(there[:, 0]))  # the other ear
    gap = np.linalg.norm(there - here * [-1.0, 1.0, 1.0], axis=-1)
    assert np.median(gap) < 0.003, np.median(gap)


def test_a_surface_under_an_overhang_shares_its_texels():
    camera = camera_from_angles(0.0)
    head = trimesh.creation.icosphere(4, radius=0.1)
    head.apply_translation(UV_CENTRE)
    assert layered_share(head, camera) == 0.0  # star-shaped about the map's centre
    # A lump beside it: the inner half of its front lies under its own outer half, seen from the centre.
    lump = trimesh.creation.icosphere(4, radius=0.04)
    lump.apply_translation(UV_CENTRE + [0.16, 0.0, 0.0])
    both = trimesh.util.concatenate([head, lump])
    share = layered_share(both, camera)
    assert 0.02 < share < 0.3, share
