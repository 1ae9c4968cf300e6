"""Decimation: fewer triangles with the least quadric error (open3d), for the budget and the LODs.

Knows nothing of UVs or textures: it runs before unwrapping, and each LOD is decimated from the one
before it.
"""

from __future__ import annotations

import numpy as np
import trimesh


def decimate(mesh: trimesh.Trimesh, triangles: int) -> trimesh.Trimesh:
    """Quadric-error decimation (open3d) down to at most ``triangles`` faces."""
    if len(mesh.faces) <= triangles:
        return mesh
    import open3d as o3d

    o3d_mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.asarray(mesh.vertices, dtype=np.float64)),
        o3d.utility.Vector3iVector(np.asarray(mesh.faces, dtype=np.int32)),
    )
    simple = o3d_mesh.simplify_quadric_decimation(target_number_of_triangles=int(triangles))
    simple.remove_degenerate_triangles()
    simple.remove_unreferenced_vertices()
    return trimesh.Trimesh(np.asarray(simple.vertices), np.asarray(simple.triangles, dtype=np.int64), process=True)
