"""UV unwrap and texture bake: charts for a surface, and the colour of every texel.

Knows UV space: xatlas charts packed into one square texture (:func:`unwrap`), the surface point and
normal behind each texel (:func:`rasterize_uv`), the colour of each texel from the run's views by
projection with a visibility test (:func:`bake_from_views`) or from radiance queries
(:func:`bake_from_field`), the filling of unseen texels and of the gutters between charts
(:func:`assemble_texture`), and per-vertex colours for formats without textures. It takes the views
as :class:`nerf.surface.View` values and the field as a plain :data:`RgbFn`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import trimesh

from portrait3d import progress

from .surface import View

RgbFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""((N, 3) points, (N, 3) unit view directions) -> (N, 3) colours in [0, 1]."""


@dataclass
class BakeConfig:
    """How the texture is baked."""

    texture_size: int = 2048
    """Texture width and height in pixels."""
    angle_power: float = 6.0
    """Views are weighted by cos(angle between surface normal and view ray) to this power:
    higher favours the most frontal view (sharper), lower blends more views (smoother seams)."""
    depth_tolerance: float = 0.01
    """A texel counts as visible in a view when its depth is within this many world units of the view's depth map."""
    padding: int = 4
    """Texels between UV charts (keeps bilinear lookups and mipmaps from bleeding across charts)."""
    min_weight: float = 0.01
    """Texels whose view weight (sum of cos^angle_power × alpha) is at most this count as unseen and take
    the colour of the seen surface around them: views that graze a texel (the crown, under the chin)
    give it a stretched, unreliable colour. 0.01 is one opaque view at 62 degrees from the normal."""


@dataclass
class UVMesh:
    """A triangle mesh whose vertices are split along UV seams.

    Attributes:
        vertices: (V, 3) float positions.
        faces: (F, 3) int triangle vertex indices.
        uv: (V, 2) float texture coordinates, (0, 0) = bottom-left of the texture image.
        normals: (V, 3) float unit vertex normals.
        source_vertex: (V,) int index of each vertex in the mesh before unwrapping.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    normals: np.ndarray
    source_vertex: np.ndarray


def unwrap(mesh: trimesh.Trimesh, texture_size: int = BakeConfig.texture_size, padding: int = 4) -> UVMesh:
    """Chart the mesh and pack the charts into one square texture (xatlas)."""
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(np.asarray(mesh.vertices, dtype=np.float32), np.asarray(mesh.faces, dtype=np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = int(texture_size)
    pack.padding = int(padding)
    pack.bilinear = True
    atlas.generate(pack_options=pack)
    vmapping, faces, uv = atlas[0]
    vmapping = np.asarray(vmapping, dtype=np.int64)
    normals = np.asarray(mesh.vertex_normals, dtype=np.float64)[vmapping]
    return UVMesh(
        vertices=np.asarray(mesh.vertices, dtype=np.float64)[vmapping],
        faces=np.asarray(faces, dtype=np.int64),
        uv=np.asarray(uv, dtype=np.float64),
        normals=unit_rows(normals),
        source_vertex=vmapping,
    )


@dataclass
class Texels:
    """The texels covered by the UV charts and the surface points they show.

    Attributes:
        rows, cols: (M,) int texel coordinates (row 0 = top of the image = v 1).
        points: (M, 3) world positions.
        normals: (M, 3) unit interpolated normals.
        covered: (S, S) bool, True where a chart covers the texel centre.
        faces: (M,) int triangle of each texel, None if unknown.
        barycentric: (M, 3) float barycentric coordinates of each texel in its triangle, None if unknown.
    """

    rows: np.ndarray
    cols: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    covered: np.ndarray
    faces: np.ndarray | None = None
    barycentric: np.ndarray | None = None

    def subset(self, mask: np.ndarray) -> Texels:
        """The texels where the (M,) bool ``mask`` is True (``covered`` unchanged)."""
        faces = None if self.faces is None else self.faces[mask]
        bary = None if self.barycentric is None else self.barycentric[mask]
        return Texels(
            self.rows[mask], self.cols[mask], self.points[mask], self.normals[mask], self.covered, faces, bary
        )


def rasterize_uv(uvmesh: UVMesh, size: int) -> Texels:
    """Find, for every texel centre, the triangle that covers it in UV space.

    Casts one ray per texel at the flat UV layout (open3d), which gives the
    triangle and barycentric coordinates of each texel in one call.
    """
    import open3d as o3d

    flat = np.concatenate([uvmesh.uv, np.zeros((len(uvmesh.uv), 1))], axis=1).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(flat), o3d.core.Tensor(uvmesh.faces.astype(np.uint32)))
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    u = (cols + 0.5) / size
    v = 1.0 - (rows + 0.5) / size
    rays = np.stack([u, v, np.ones_like(u), np.zeros_like(u), np.zeros_like(u), -np.ones_like(u)], axis=-1)
    hit = scene.cast_rays(o3d.core.Tensor(rays.reshape(-1, 6).astype(np.float32)))
    tri = hit["primitive_ids"].numpy().astype(np.int64)
    covered = np.isfinite(hit["t_hit"].numpy())
    tri, bary_uv = tri[covered], hit["primitive_uvs"].numpy()[covered].astype(np.float64)
    bary = np.stack([1.0 - bary_uv[:, 0] - bary_uv[:, 1], bary_uv[:, 0], bary_uv[:, 1]], axis=-1)[..., None]
    corners = uvmesh.faces[tri]  # (M, 3)
    points = (uvmesh.vertices[corners] * bary).sum(axis=1)
    normals = unit_rows((uvmesh.normals[corners] * bary).sum(axis=1))
    return Texels(
        rows.ravel()[covered], cols.ravel()[covered], points, normals, covered.reshape(size, size), tri, bary[..., 0]
    )


def bake_from_views(
    uvmesh: UVMesh, texels: Texels, views: Sequence[View], config: BakeConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Project the views onto the texels, weighted by visibility, view angle and alpha.

    Visibility is a depth test against the mesh's own depth map in each view.

    Returns:
        ``(colours, weight)``: (M, 3) float colours in [0, 1] and (M,) total weight
        (0 where no view saw the texel).
    """
    from portrait3d.render import MeshRenderer

    renderer = MeshRenderer(trimesh.Trimesh(uvmesh.vertices, uvmesh.faces, process=False))
    total = np.zeros((len(texels.points), 3))
    weight = np.zeros(len(texels.points))
    # float32 for the per-view work on millions of texels (twice as fast; sums stay float64).
    points, normals = texels.points.astype(np.float32), texels.normals.astype(np.float32)
    for view in progress.bar(views, desc="texture from views"):
        h, w = view.image.shape[:2]
        cam = view.camera
        to_camera = cam.position.astype(np.float32) - points
        cos = np.sum(normals * to_camera, axis=1) / np.linalg.norm(to_camera, axis=1)
        idx = np.flatnonzero(cos > 0.05)  # facing the camera
        uv, depth = cam.project(texels.points[idx], w, h)
        keep = (depth > 0) & np.all((uv >= 0) & (uv < [w, h]), axis=1)
        idx, uv, depth = idx[keep], uv[keep], depth[keep]
        if len(idx) == 0:
            continue
        depth_map = renderer.render_depth(cam, (w, h))
        px = np.clip(uv.astype(np.int64), 0, [w - 1, h - 1])
        visible = np.abs(depth_map[px[:, 1], px[:, 0]] - depth) < config.depth_tolerance
        idx, uv = idx[visible], uv[visible]
        # Interpolate premultiplied colour: at the silhouette, straight RGB would blend in the
        # background colour of transparent pixels (dark fringes on the crown).
        image = view.image.astype(np.float32) / np.float32(255.0)
        image[..., :3] *= image[..., 3:]
        rgba = _bilinear(image, uv.astype(np.float32))
        cos_weight = np.power(cos[idx], config.angle_power)
        total[idx] += rgba[:, :3] * cos_weight[:, None]
        weight[idx] += cos_weight * rgba[:, 3]
    colours = np.where(weight[:, None] > 0, total / np.maximum(weight, 1e-12)[:, None], 0.0)
    return colours, weight


def bake_from_field(texels: Texels, rgb_fn: RgbFn, chunk: int = 1 << 16) -> np.ndarray:
    """Radiance queries at the texels, looking at the surface along its normal.

    Returns:
        (M, 3) float colours in [0, 1].
    """
    out = np.empty((len(texels.points), 3))
    for start in progress.bar(range(0, len(out), chunk), desc="texture from field"):
        sl = slice(start, start + chunk)
        out[sl] = np.asarray(rgb_fn(texels.points[sl], -texels.normals[sl]), dtype=np.float64).reshape(-1, 3)
    return np.clip(out, 0.0, 1.0)


FILL_SOURCES = 250_000
"""Known texels (at most about this many, evenly thinned) that unseen texels take their colour from."""


def assemble_texture(texels: Texels, colours: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """Write texel colours into an image and fill the rest.

    Texels the bake did not reach (``known`` False) take the colour of the
    nearest known surface point in 3D; texels outside every chart take the
    colour of the nearest chart texel, so that bilinear lookups and mipmaps at
    chart borders do not pull in black.

    Args:
        texels: from :func:`rasterize_uv`.
        colours: (M, 3) float colours in [0, 1].
        known: (M,) bool, default all True.
    Returns:
        (S, S, 3) uint8 texture.
    """
    from scipy import ndimage, spatial

    colours = np.asarray(colours, dtype=np.float64).copy()
    if known is not None and not known.all():
        if known.any():
            # Average a few nearest known points (closer ones count more) so that large unseen parts
            # (the crown, the neck cap) take the surrounding colour without streaks.
            # An evenly thinned set of known texels is enough for a smooth fill, and builds and queries
            # several times faster than all of them (millions at 2048²).
            sources = np.flatnonzero(known)[:: max(1, int(known.sum()) // FILL_SOURCES)]
            k = int(min(8, len(sources)))
            tree = spatial.cKDTree(texels.points[sources])
            distance, nearest = tree.query(texels.points[~known], k=k, workers=-1)
            distance, nearest = distance.reshape(len(distance), k), nearest.reshape(len(nearest), k)
            weight = 1.0 / np.maximum(distance, 1e-6)
            colours[~known] = np.einsum("nk,nkc->nc", weight, colours[sources][nearest]) / weight.sum(1, keepdims=True)
        else:
            colours[:] = 0.5
    size = texels.covered.shape[0]
    image = np.zeros((size, size, 3))
    image[texels.rows, texels.cols] = colours
    if not texels.covered.all():
        _, (ri, ci) = ndimage.distance_transform_edt(~texels.covered, return_indices=True)
        image = image[ri, ci]
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def vertex_colours(uvmesh: UVMesh, texture: np.ndarray, num_vertices: int) -> np.ndarray:
    """Per-vertex colours of the un-split mesh, averaged over each vertex's UV copies.

    Returns:
        (num_vertices, 4) uint8 RGBA.
    """
    from portrait3d.render import sample_texture

    rgb = sample_texture(texture, uvmesh.uv)
    total = np.zeros((num_vertices, 3))
    count = np.zeros(num_vertices)
    np.add.at(total, uvmesh.source_vertex, rgb)
    np.add.at(count, uvmesh.source_vertex, 1.0)
    rgb = total / np.maximum(count, 1.0)[:, None]
    rgba = np.concatenate([rgb, np.ones((num_vertices, 1))], axis=1)
    return np.clip(np.round(rgba * 255.0), 0, 255).astype(np.uint8)


def unit_rows(v: np.ndarray) -> np.ndarray:
    """Normalise rows; zero rows become +y."""
    n = np.linalg.norm(v, axis=1, keepdims=True)
    out = np.where(n > 1e-12, v / np.maximum(n, 1e-12), 0.0)
    out[n[:, 0] <= 1e-12] = [0.0, 1.0, 0.0]
    return out


def _bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear lookup at pixel coordinates (pixel centres at +0.5): (H, W, C), (M, 2) -> (M, C)."""
    h, w = image.shape[:2]
    x = np.clip(xy[:, 0] - 0.5, 0.0, w - 1.0)
    y = np.clip(xy[:, 1] - 0.5, 0.0, h - 1.0)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy
