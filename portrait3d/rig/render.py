"""CPU renders of a rigged head at given morph weights (contact sheets, the benchmark's checks)."""

from __future__ import annotations

import numpy as np

from .gltf import PosedMesh, Rig

FRONT = (0.0, 0.0, 1.0)


def frontal_camera(meshes: list[PosedMesh], yaw_deg: float = 0.0, fov_deg: float = 22.0):
    """A camera looking at the face from ``yaw_deg`` (0: straight at it, along -z): (eye, centre, fov)."""
    head = meshes[0].vertices
    top = head[:, 1].max()
    centre = np.array([0.0, top - 0.45 * (top - head[:, 1].min()) - 0.02, head[:, 2].max() - 0.08])
    distance = 0.75
    yaw = np.radians(yaw_deg)
    eye = centre + distance * np.array([np.sin(yaw), 0.0, np.cos(yaw)])
    return eye, centre, fov_deg


def project(points: np.ndarray, camera, size: int) -> np.ndarray:
    """(N, 2) pixel coordinates of file-frame points seen by ``camera``."""
    eye, centre, fov = camera
    forward = (centre - eye) / np.linalg.norm(centre - eye)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    rel = points - eye
    f = 0.5 * size / np.tan(np.radians(fov) / 2)
    depth = rel @ forward
    return np.stack([size / 2 + f * (rel @ right) / depth, size / 2 - f * (rel @ up) / depth], axis=1)


def render(rig: Rig, weights: dict[str, float] | None, size: int = 256, yaw_deg: float = 0.0, camera=None):
    """Colour render and the index of the mesh seen at each pixel.

    Returns:
        ``(rgb, ids)``: (S, S, 3) uint8 on grey, (S, S) int (-1: background; else index in ``rig.meshes``).
    """
    import open3d as o3d

    from portrait3d.render import sample_texture

    meshes = rig.posed(weights)
    eye, centre, fov = camera or frontal_camera(rig.posed(), yaw_deg)
    scene = o3d.t.geometry.RaycastingScene()
    for m in meshes:
        scene.add_triangles(o3d.core.Tensor(m.vertices.astype(np.float32)), o3d.core.Tensor(m.faces.astype(np.uint32)))
    forward = (centre - eye) / np.linalg.norm(centre - eye)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    f = 0.5 * size / np.tan(np.radians(fov) / 2)
    u, v = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    dirs = forward + ((u - size / 2) / f)[..., None] * right - ((v - size / 2) / f)[..., None] * up
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    rays = np.concatenate([np.broadcast_to(eye, dirs.shape), dirs], axis=-1).reshape(-1, 6).astype(np.float32)
    out = scene.cast_rays(o3d.core.Tensor(rays))
    ids = out["geometry_ids"].numpy().astype(np.int64)
    hit = np.isfinite(out["t_hit"].numpy())
    ids[~hit] = -1
    prim = out["primitive_ids"].numpy().astype(np.int64)
    bary_uv = out["primitive_uvs"].numpy().astype(np.float64)
    bary = np.stack([1.0 - bary_uv[:, 0] - bary_uv[:, 1], bary_uv[:, 0], bary_uv[:, 1]], axis=1)
    normals = out["primitive_normals"].numpy().astype(np.float64)
    shade = 0.7 + 0.3 * np.abs(np.sum(normals * dirs.reshape(-1, 3), axis=1))
    rgb = np.full((size * size, 3), 0.5)
    for k, m in enumerate(meshes):
        sel = hit & (ids == k)
        if not sel.any():
            continue
        tri = m.faces[prim[sel]]
        if m.uv is not None:
            uv = (m.uv[tri] * bary[sel][..., None]).sum(axis=1)
            colour = sample_texture(rig.texture, np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1))
            rgb[sel] = colour
        else:
            rgb[sel] = (m.colors[tri] * bary[sel][..., None]).sum(axis=1) * shade[sel, None]
    image = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(size, size, 3)
    return image, ids.reshape(size, size)
