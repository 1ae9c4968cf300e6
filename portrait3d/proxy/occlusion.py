"""Ambient occlusion of surface points: how much of the sky above each point its own head leaves open.

The pinnae's texels the photo does not show take one smooth skin colour; their cavities (the concha, the scapha,
the fossa) read only through the shading the renderer adds, and the proxy's renders add none. The share of each
point's hemisphere that the mesh leaves open within :data:`REACH` darkens them as a soft light would.
"""

from __future__ import annotations

import numpy as np

REACH = 0.05
"""World units (2 cm on the head) within which a surface blocks a ray: the ear's own folds, not the head."""
RAYS = 48
"""Rays per point, spread evenly over the hemisphere by the cosine of their angle to the normal."""
OFFSET = 0.001
"""World units off the surface each ray starts from, so that it does not hit the triangle it leaves."""


def hemisphere_directions(count: int) -> np.ndarray:
    """(count, 3) unit directions about +z, cosine-weighted (a Fibonacci spiral on the disc, lifted)."""
    k = np.arange(count) + 0.5
    radius = np.sqrt(k / count)
    angle = k * np.pi * (3.0 - np.sqrt(5.0))
    x, y = radius * np.cos(angle), radius * np.sin(angle)
    return np.stack([x, y, np.sqrt(np.maximum(1.0 - x * x - y * y, 0.0))], axis=1)


def open_share(
    vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, normals: np.ndarray, reach: float = REACH
) -> np.ndarray:
    """Share of each point's cosine-weighted hemisphere left open by the mesh within ``reach``: (N,) in [0, 1].

    Args:
        vertices: (V, 3), faces: (F, 3) the mesh; points: (N, 3) on it; normals: (N, 3) unit outward normals.
    """
    import open3d as o3d

    if len(points) == 0:
        return np.ones(0)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(vertices, np.float32)), o3d.core.Tensor(np.asarray(faces, np.uint32))
    )
    normals = np.asarray(normals, np.float64)
    # A frame about each normal: any vector not along it, made orthogonal.
    helper = np.where(np.abs(normals[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    tangent = np.cross(normals, helper)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    bitangent = np.cross(normals, tangent)
    frame = np.stack([tangent, bitangent, normals], axis=1)  # (N, 3, 3): rows are the frame's axes
    directions = np.einsum("rk,nkc->nrc", hemisphere_directions(RAYS), frame)  # (N, R, 3)
    origins = np.broadcast_to((points + OFFSET * normals)[:, None], directions.shape)
    rays = np.concatenate([origins, directions], axis=-1).reshape(-1, 6).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy().reshape(len(points), RAYS)
    return 1.0 - (hit < reach).mean(axis=1)
