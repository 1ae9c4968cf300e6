"""The texture's texels on the head: the surface point, normal, hair and ear weight behind every texel.

:func:`texel_surface` lays the mesh flat in UV space and casts a ray through every texel's centre onto it, then
interpolates the vertices' values at the hit; :class:`TexelSurface` holds the result, which the bake
(:mod:`portrait3d.proxy.texture`) and the photo's regions (:mod:`portrait3d.proxy.photo_regions`) read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from portrait3d.proxy.layout import band_rows


@dataclass
class TexelSurface:
    """Surface point behind every texel; arrays are (T, T/2[, 3]) over the texture.

    Attributes:
        covered: texels that some triangle covers.
        points: world points (fitted head).
        normals: unit outward normals.
        hair: template hair weight in [0, 1].
        ears: template ear weight in [0, 1].
        on_pinna: texels of the pinna charts (:mod:`portrait3d.proxy.layout`).
        ear_zone: in [0, 1], the head's surface around a bare ear's pinna (:func:`ear_zone`); None: no bare ear.
        photo_points, photo_normals: the same surface posed as the photo's camera saw it (what the photo
            is projected onto; see :attr:`portrait3d.proxy.fit.FitResult.photo_pose`), or None: as above.
    """

    covered: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    hair: np.ndarray
    ears: np.ndarray
    on_pinna: np.ndarray
    ear_zone: np.ndarray | None = None
    photo_points: np.ndarray | None = None
    photo_normals: np.ndarray | None = None

    @property
    def ear_root(self) -> np.ndarray:
        """The ear weight off the pinna charts: the skin around an ear's root, which takes no photo: (Ht, Wt)."""
        return self.ears * ~self.on_pinna


def texel_surface(
    vertices: np.ndarray,
    vertex_normals: np.ndarray,
    hair: np.ndarray,
    ears: np.ndarray,
    uv: np.ndarray,
    uv_faces: np.ndarray,
    source: np.ndarray,
    width: int,
    photo_vertices: np.ndarray | None = None,
    photo_vertex_normals: np.ndarray | None = None,
    ear_zone: np.ndarray | None = None,
) -> TexelSurface:
    """Find the surface point of every texel by casting rays onto the mesh laid flat in UV space.

    ``photo_vertices`` and ``photo_vertex_normals`` (V, 3): the head posed as the photo saw it, if it differs;
    ``ear_zone`` (V,): :attr:`TexelSurface.ear_zone` per vertex, if any.
    """
    import open3d as o3d

    height = width // 2
    flat = np.concatenate([uv, np.zeros((len(uv), 1))], axis=1).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(flat), o3d.core.Tensor(uv_faces.astype(np.uint32)))
    us = (np.arange(width) + 0.5) / width
    vs = 1.0 - (np.arange(height) + 0.5) / height  # image row 0 is the top (v = 1)
    gu, gv = np.meshgrid(us, vs)
    rays = np.zeros((height * width, 6), dtype=np.float32)
    rays[:, 0], rays[:, 1], rays[:, 2], rays[:, 5] = gu.ravel(), gv.ravel(), 1.0, -1.0
    out = scene.cast_rays(o3d.core.Tensor(rays))
    tri = out["primitive_ids"].numpy().astype(np.int64)
    covered = np.isfinite(out["t_hit"].numpy())
    bu, bv = out["primitive_uvs"].numpy().astype(np.float64).T
    bary = np.stack([1 - bu - bv, bu, bv], axis=1)[covered].astype(np.float32)
    corners = source[uv_faces[tri[covered]]]  # (M, 3) original vertex ids

    def interpolate(values: np.ndarray) -> np.ndarray:
        values = values.astype(np.float32).reshape(len(values), -1)
        full = np.zeros((height * width, values.shape[1]), np.float32)
        full[covered] = np.einsum("mk,mkc->mc", bary, values[corners])
        return full.reshape(height, width, -1).squeeze(-1) if values.shape[1] == 1 else full.reshape(height, width, -1)

    def unit_normals(values: np.ndarray) -> np.ndarray:
        normals = interpolate(values)
        return normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)

    surface = TexelSurface(
        covered.reshape(height, width), interpolate(vertices), unit_normals(vertex_normals), interpolate(hair),
        interpolate(ears), covered.reshape(height, width) & band_rows(height)[:, None],
    )  # fmt: skip
    if ear_zone is not None:
        surface.ear_zone = interpolate(ear_zone)
    if photo_vertices is not None:
        surface.photo_points = interpolate(photo_vertices)
        surface.photo_normals = unit_normals(photo_vertex_normals)
    return surface
