"""Normal maps: tangent frames from the UVs and a tangent-space map baked from the detailed surface.

Knows the glTF / OpenGL normal-map convention (+Y up the texture, w = ±1 handedness) and how to give a
low-poly LOD the shading of the full-resolution surface: each texel takes the normal of the closest
point of the detailed mesh, expressed in its own tangent frame.
"""

from __future__ import annotations

import numpy as np
import trimesh

from .texture import Texels, UVMesh, unit_rows


def vertex_tangents(uvmesh: UVMesh) -> np.ndarray:
    """Per-vertex tangent frames from the UVs, as glTF wants them.

    Returns:
        (V, 4) float: xyz the unit tangent (the direction of increasing u, orthogonal to the
        normal), w = ±1 so that ``cross(normal, tangent) * w`` points up the texture image
        (increasing v), the OpenGL / glTF normal-map convention.
    """
    p, t = uvmesh.vertices[uvmesh.faces], uvmesh.uv[uvmesh.faces]  # (F, 3, 3), (F, 3, 2)
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    r = np.where(np.abs(det) > 1e-20, 1.0 / np.where(det == 0, 1.0, det), 0.0)[:, None]
    face_t = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r
    face_b = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r
    tangent, bitangent = np.zeros_like(uvmesh.vertices), np.zeros_like(uvmesh.vertices)
    for corner in range(3):
        np.add.at(tangent, uvmesh.faces[:, corner], face_t)
        np.add.at(bitangent, uvmesh.faces[:, corner], face_b)
    n = uvmesh.normals
    tangent = tangent - n * np.sum(n * tangent, axis=1, keepdims=True)
    # Degenerate UVs: any direction orthogonal to the normal.
    fallback = np.cross(n, np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]))
    small = np.linalg.norm(tangent, axis=1) < 1e-12
    tangent[small] = fallback[small]
    tangent = unit_rows(tangent)
    w = np.where(np.sum(np.cross(n, tangent) * bitangent, axis=1) < 0.0, -1.0, 1.0)
    return np.concatenate([tangent, w[:, None]], axis=1)


def bake_normal_map(uvmesh: UVMesh, texels: Texels, detail: trimesh.Trimesh) -> np.ndarray:
    """A tangent-space normal map that gives the low-poly ``uvmesh`` the shading of the ``detail`` surface.

    Each texel takes the smooth normal of the closest point of ``detail`` (the full-resolution surface),
    expressed in the texel's tangent frame (:func:`vertex_tangents`, interpolated).

    Returns:
        (S, S, 3) uint8 image, OpenGL convention (+Y up), (128, 128, 255) = the mesh's own normal.
    """
    import open3d as o3d
    from scipy import ndimage

    if texels.faces is None or texels.barycentric is None:
        raise ValueError("bake_normal_map needs texels from rasterize_uv (triangles and barycentrics)")
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(detail.vertices, dtype=np.float32)),
        o3d.core.Tensor(np.asarray(detail.faces, dtype=np.uint32)),
    )
    hit = scene.compute_closest_points(o3d.core.Tensor(texels.points.astype(np.float32)))
    tri = hit["primitive_ids"].numpy().astype(np.int64)
    buv = hit["primitive_uvs"].numpy().astype(np.float64)
    bary = np.stack([1.0 - buv[:, 0] - buv[:, 1], buv[:, 0], buv[:, 1]], axis=-1)[..., None]
    detail_normals = np.asarray(detail.vertex_normals, dtype=np.float64)
    target = unit_rows((detail_normals[np.asarray(detail.faces)[tri]] * bary).sum(axis=1))
    frames = vertex_tangents(uvmesh)
    corners, weights = uvmesh.faces[texels.faces], texels.barycentric[..., None]
    tangent = (frames[corners, :3] * weights).sum(axis=1)
    sign = np.where((frames[corners, 3] * texels.barycentric).sum(axis=1) < 0.0, -1.0, 1.0)
    normal = texels.normals
    tangent = unit_rows(tangent - normal * np.sum(normal * tangent, axis=1, keepdims=True))
    bitangent = np.cross(normal, tangent) * sign[:, None]
    local = np.stack([np.sum(target * a, axis=1) for a in (tangent, bitangent, normal)], axis=1)
    local[:, 2] = np.maximum(local[:, 2], 0.05)  # never point into the surface
    local = unit_rows(local)
    size = texels.covered.shape[0]
    image = np.zeros((size, size, 3))
    image[:] = (0.0, 0.0, 1.0)
    image[texels.rows, texels.cols] = local
    if not texels.covered.all():
        _, (ri, ci) = ndimage.distance_transform_edt(~texels.covered, return_indices=True)
        image = image[ri, ci]
    return np.clip(np.round((image * 0.5 + 0.5) * 255.0), 0, 255).astype(np.uint8)
