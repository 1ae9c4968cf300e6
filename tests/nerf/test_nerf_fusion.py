"""Depth fusion votes on a coarse lattice first: the grid must be the one a vote at every point gives."""

from __future__ import annotations

import numpy as np
import trimesh
from scipy import ndimage

from nerf import surface
from portrait3d.cameras import orbit
from portrait3d.render import MeshRenderer


def _head_with_an_ear() -> trimesh.Trimesh:
    """A sphere with a thin disc standing out of its side (thinner than the lattice's step) and a bead
    floating above it, far from the points of a lattice four times coarser than the fusion's."""
    head = trimesh.creation.icosphere(subdivisions=4, radius=0.2)
    ear = trimesh.creation.cylinder(radius=0.05, height=0.012, sections=32)
    ear.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    ear.apply_translation([0.22, 0.02, 0.0])
    bead = trimesh.creation.icosphere(subdivisions=2, radius=0.012)
    bead.apply_translation([0.058, 0.29, 0.058])
    return trimesh.util.concatenate([head, ear, bead])


def test_the_coarse_lattice_gives_every_points_vote():
    mesh = _head_with_an_ear()
    renderer = MeshRenderer(mesh)
    cameras = orbit(8, pitches=[-20.0, 25.0])
    depths = [renderer.render_depth(camera, 64).astype(np.float32) for camera in cameras]
    masks = [np.isfinite(depth) for depth in depths]
    bounds, resolution, truncation = (-0.35,) * 3 + (0.35,) * 3, 96, 0.02  # truncation ≈ 2.7 cells
    grid = surface.fuse_depth_maps(depths, masks, cameras, bounds, resolution, truncation)

    axis = np.linspace(-0.35, 0.35, resolution + 1, dtype=np.float32)
    points = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    gaps = [ndimage.distance_transform_edt(~mask) for mask in masks]  # the reference's own pixel distances
    every = surface._fuse_points(points, list(zip(depths, masks, gaps, cameras)), truncation)
    np.testing.assert_array_equal(grid, every.reshape(grid.shape))
    # The ear is in the grid: inside points beyond the sphere, where the disc stands.
    x = np.searchsorted(axis, 0.22)
    assert (grid[x - 1 : x + 2, :, :] > 0).any()
    bead = np.searchsorted(axis, [0.058, 0.29, 0.058])
    assert (np.abs(grid[tuple(slice(i - 2, i + 3) for i in bead)]) < 1).any()
    assert ((grid > 0).sum() < (grid < 0).sum()) and (np.abs(grid) < 1).any()
