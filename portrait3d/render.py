"""CPU ray-cast rendering of triangle meshes at PanoHead cameras.

One renderer for the whole project: proxy views and condition images, ground
truth scenes for the NeRF benchmarks, mesh turntables. It casts one ray per
pixel centre (:mod:`portrait3d.raycast`: about 0.05 s for 512x512 on one core) and
shades the hits from the mesh's UV texture or vertex colours.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import trimesh

from portrait3d.cameras import Camera
from portrait3d.vectors import barycentric_blend, unit_face_normals


@dataclass
class Hits:
    """Per-pixel ray hits of one view; every array is (H, W[, k]).

    Attributes:
        triangle: (H, W) int64 triangle index, -1 where the ray missed.
        barycentric: (H, W, 3) weights of the triangle's three vertices.
        depth: (H, W) distance along the optical axis (inf where missed).
        points: (H, W, 3) world-space hit points.
        normals: (H, W, 3) unit geometric normals facing the camera.
        view_dirs: (H, W, 3) unit ray directions.
    """

    triangle: np.ndarray
    barycentric: np.ndarray
    depth: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    view_dirs: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool, True where a ray hit the mesh."""
        return self.triangle >= 0


class MeshRenderer:
    """Ray-casting renderer for one mesh (build once, render many cameras).

    Args:
        mesh: a triangle mesh with ``TextureVisuals`` (UV + image) or vertex colours; its texture is read
            at the first textured render and kept (the renderer is for one mesh as it is).
    """

    def __init__(self, mesh: trimesh.Trimesh, engine: str | None = None) -> None:
        from portrait3d.raycast import RayCaster

        self.mesh = mesh
        self._caster = RayCaster(np.asarray(mesh.vertices), np.asarray(mesh.faces), engine)
        self._texture: np.ndarray | None = None  # (Ht, Wt, 3) uint8, read from the mesh's material once

    @functools.cached_property
    def _face_normals(self) -> np.ndarray:
        """(F, 3) unit triangle normals, for :meth:`cast` only (textured and depth renders need none)."""
        return unit_face_normals(self.mesh.vertices, self.mesh.faces)

    def _cast_rays(self, camera: Camera, width: int, height: int):
        """One ray per pixel centre: ``(origins, dirs, t (H, W), tri (H, W), bary (H, W, 3))``."""
        origins, dirs = camera.rays(width, height)
        hits = self._caster.cast(np.concatenate([origins, dirs], axis=-1).reshape(-1, 6))
        t = hits.distance.reshape(height, width).astype(np.float64)
        tri = hits.triangle.reshape(height, width)
        uv = hits.uv.reshape(height, width, 2).astype(np.float64)
        bary = np.stack([1.0 - uv[..., 0] - uv[..., 1], uv[..., 0], uv[..., 1]], axis=-1)
        return origins, dirs, t, tri, bary

    def cast(self, camera: Camera, width: int, height: int) -> Hits:
        """Cast one ray through every pixel centre."""
        origins, dirs, t, tri, bary = self._cast_rays(camera, width, height)
        hit = tri >= 0
        normals = np.where(hit[..., None], self._face_normals[np.maximum(tri, 0)], 0.0)
        # Face the camera, so that back faces of open meshes shade like front faces.
        flip = np.sum(normals * dirs, axis=-1, keepdims=True) > 0
        normals = np.where(flip, -normals, normals)
        t_safe = np.where(hit, t, 0.0)
        points = origins + dirs * t_safe[..., None]
        depth = np.where(hit, t * (dirs @ camera.forward), np.inf)
        return Hits(tri, bary, depth, points, normals, dirs)

    def colors(self, hits: Hits) -> np.ndarray:
        """Surface colour at the hits: (H, W, 3) float in [0, 1] (0 where missed)."""
        return self._colours(hits.triangle, hits.barycentric)

    def _texture_image(self) -> np.ndarray | None:
        """The mesh's base colour texture as (Ht, Wt, 3) uint8, or None; converted once per renderer
        (a 2048² texture took longer to convert than a 512² frame takes to cast)."""
        if self._texture is None:
            visual = self.mesh.visual
            material = getattr(visual, "material", None)
            image = getattr(material, "image", None)
            if image is None:
                image = getattr(material, "baseColorTexture", None)
            if getattr(visual, "uv", None) is None:
                image = None
            self._texture = np.zeros((0, 0, 3), np.uint8) if image is None else np.asarray(image.convert("RGB"))
        return self._texture if self._texture.size else None

    def _colours(self, triangle: np.ndarray, barycentric: np.ndarray) -> np.ndarray:
        """Colour at (H, W) triangle indices (-1: missed) and (H, W, 3) barycentric weights: (H, W, 3) float."""
        mesh, mask = self.mesh, triangle >= 0
        out = np.zeros(triangle.shape + (3,))
        if not mask.any():
            return out
        faces = np.asarray(mesh.faces)[triangle[mask]]  # (M, 3)
        bary = barycentric[mask][..., None]  # (M, 3, 1)
        visual = mesh.visual
        image = self._texture_image()
        if image is not None:
            out[mask] = sample_texture(image, barycentric_blend(np.asarray(visual.uv)[faces], bary))
        else:
            # A plain ColorVisuals (no colours set, or face colours) has no to_color(); its vertex_colors work.
            colour_visual = isinstance(visual, trimesh.visual.ColorVisuals)
            vc = np.asarray(visual.vertex_colors if colour_visual else visual.to_color().vertex_colors)
            out[mask] = barycentric_blend(vc[faces, :3].astype(np.float64) / 255.0, bary)
        return out

    def prepare(self) -> None:
        """Read the texture (once per renderer), so that threads may then render side by side."""
        self._texture_image()

    def render_rgba(self, camera: Camera, size: int | tuple[int, int]) -> np.ndarray:
        """Textured render with a transparent background: (H, W, 4) uint8."""
        width, height = _size(size)
        # Only the triangles and barycentric weights: the hit points and normals are not needed here.
        _, _, _, triangle, barycentric = self._cast_rays(camera, width, height)
        return rgba_image(self._colours(triangle, barycentric), triangle >= 0)

    def render_shaded(
        self, camera: Camera, size: int | tuple[int, int], background: float = 0.0, albedo: float = 0.8
    ) -> np.ndarray:
        """Untextured grey render lit from the camera (Lambert + ambient): (H, W, 3) uint8."""
        width, height = _size(size)
        hits = self.cast(camera, width, height)
        light = -hits.view_dirs
        shade = 0.25 + 0.75 * np.clip(np.sum(hits.normals * light, axis=-1), 0.0, 1.0)
        grey = np.where(hits.mask, albedo * shade, background)
        return _to_uint8(np.repeat(grey[..., None], 3, axis=-1))

    def render_depth(self, camera: Camera, size: int | tuple[int, int]) -> np.ndarray:
        """Depth along the optical axis: (H, W) float, inf where missed."""
        width, height = _size(size)
        _, dirs, t, triangle, _ = self._cast_rays(camera, width, height)
        return np.where(triangle >= 0, t * (dirs @ camera.forward), np.inf)


def rgba_image(colours: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Colours (H, W, 3) float in [0, 1] over a transparent background outside ``mask`` (H, W): (H, W, 4) uint8."""
    return _to_uint8(np.concatenate([colours, mask.astype(np.float64)[..., None]], axis=-1))


def sample_texture(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup.

    Args:
        image: (Ht, Wt, 3) uint8 texture; uv (0, 0) is its bottom-left corner (glTF/OBJ convention flipped).
        uv: (M, 2) texture coordinates.
    Returns:
        (M, 3) float colours in [0, 1].
    """
    h, w = image.shape[:2]
    x = np.clip(uv[:, 0], 0.0, 1.0) * (w - 1)
    y = (1.0 - np.clip(uv[:, 1], 0.0, 1.0)) * (h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]

    def texel(row: np.ndarray, col: np.ndarray) -> np.ndarray:
        # Gather first, convert after: the same values as converting the whole texture, without doing so.
        return image[row, col].astype(np.float64) / 255.0

    top = texel(y0, x0) * (1 - fx) + texel(y0, x1) * fx
    bottom = texel(y1, x0) * (1 - fx) + texel(y1, x1) * fx
    return top * (1 - fy) + bottom * fy


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
