"""A radiance field made from a known textured mesh: ground truth for the mesh tests and benchmarks.

It offers the same calls as a fitted field (``density``, ``rgb``, ``render``),
so the export code can be checked against a surface and colours that are
known exactly.
"""

from __future__ import annotations

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from portrait3d.cameras import Camera
from portrait3d.render import Hits, MeshRenderer


class MeshField:
    """Density and colour of a closed, coloured mesh.

    Args:
        mesh: a watertight triangle mesh with vertex colours or a UV texture.
        peak_density: density deep inside the mesh.
        softness: width (world units) of the density fall-off across the surface.
    """

    def __init__(self, mesh: trimesh.Trimesh, peak_density: float = 100.0, softness: float = 0.005) -> None:
        import open3d as o3d

        self.mesh = mesh
        self.peak_density = peak_density
        self.softness = softness
        self._renderer = MeshRenderer(mesh)
        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(
            o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
            o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)),
        )
        self._o3c = o3d.core
        # Surface samples denser than the band is wide, so that every band point has one within reach.
        samples, _ = trimesh.sample.sample_surface(mesh, 200_000, seed=0)
        self._tree = cKDTree(np.asarray(samples))

    def density(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) points -> (N,) densities: ``peak / 2`` on the surface, rising inside."""
        return self.peak_density / (1.0 + np.exp(np.clip(self.signed_distance(points) / self.softness, -60.0, 60.0)))

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) points -> (N,) distance to the surface, negative inside.

        Only points in a narrow band around the surface (found with a k-d tree
        over dense surface samples) get their exact distance to the triangles;
        the others get the band width, which saturates the density just the
        same and avoids slow closest-point queries deep inside the head. The
        sign is the mesh's occupancy (ray-crossing parity).
        """
        pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
        band = 12.0 * self.softness
        inside = self._scene.compute_occupancy(self._o3c.Tensor(pts)).numpy() > 0
        near_samples, _ = self._tree.query(pts, distance_upper_bound=band)
        distance = np.full(len(pts), band)
        near = np.flatnonzero(np.isfinite(near_samples))
        if len(near):
            exact = self._scene.compute_distance(self._o3c.Tensor(pts[near])).numpy()
            distance[near] = np.minimum(exact, band)
        return np.where(inside, -distance, distance)

    def rgb(self, points: np.ndarray, view_dirs: np.ndarray | None = None) -> np.ndarray:
        """Colour of the nearest surface point: (N, 3) points -> (N, 3) floats in [0, 1] (view-independent)."""
        pts = np.asarray(points, dtype=np.float32)
        out = self._scene.compute_closest_points(self._o3c.Tensor(pts))
        tri = out["primitive_ids"].numpy().astype(np.int64)[:, None]
        uv = out["primitive_uvs"].numpy().astype(np.float64)[:, None]
        bary = np.stack([1.0 - uv[..., 0] - uv[..., 1], uv[..., 0], uv[..., 1]], axis=-1)
        n = len(pts)
        zeros = np.zeros((n, 1, 3))
        hits = Hits(tri, bary, np.zeros((n, 1)), zeros, zeros, zeros)
        return self._renderer.colors(hits).reshape(n, 3)

    def render_depth(self, camera: Camera, width: int, height: int, pixels: np.ndarray | None = None) -> np.ndarray:
        """Exact depth map along the optical axis: (H, W) float32, ``inf`` where the mesh is missed
        or where ``pixels`` ((H, W) bool) is false."""
        depth = self._renderer.render_depth(camera, (width, height)).astype(np.float32)
        if pixels is not None:
            depth[~np.asarray(pixels, dtype=bool)] = np.inf
        return depth

    def render(self, camera: Camera, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rgb (H, W, 3), alpha (H, W))`` floats in [0, 1]."""
        rgba = self._renderer.render_rgba(camera, (width, height)).astype(np.float64) / 255.0
        return rgba[..., :3], rgba[..., 3]


def coloured_ellipsoid(radii=(0.22, 0.28, 0.25), subdivisions: int = 5) -> trimesh.Trimesh:
    """A head-sized ellipsoid whose colour tells the directions apart.

    Red grows toward +x, green toward +y, blue toward +z (the face), so a
    texture that lands mirrored, upside down or rotated shows it.
    """
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    unit = np.asarray(sphere.vertices)
    mesh = trimesh.Trimesh(unit * np.asarray(radii), sphere.faces, process=False)
    rgb = np.clip(0.5 + 0.5 * unit, 0.0, 1.0)
    mesh.visual.vertex_colors = np.concatenate([np.round(rgb * 255), np.full((len(unit), 1), 255)], axis=1).astype(
        np.uint8
    )
    return mesh
