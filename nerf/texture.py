"""UV unwrap and texture bake: charts for a surface, and the colour of every texel.

Knows UV space: xatlas charts packed into one square texture (:func:`unwrap`), the surface point and
normal behind each texel (:func:`rasterize_uv`), the colour of each texel from the run's views by
projection with a visibility test (:func:`bake_from_views`) or from radiance queries
(:func:`bake_from_field`), the filling of unseen texels and of the gutters between charts
(:func:`assemble_texture`), and per-vertex colours for formats without textures. It takes the views
as :class:`nerf.surface.View` values and the field as a plain :data:`RgbFn`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import trimesh

from portrait3d import progress
from portrait3d.parallel import ordered_map

from .surface import View

RgbFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""((N, 3) points, (N, 3) unit view directions) -> (N, 3) colours in [0, 1]."""


@dataclass
class BakeConfig:
    """How the texture is baked."""

    texture_size: int = 2048
    """Texture width and height in pixels."""
    bake_size: int | None = None
    """Bake the colours at this width and height and resize the texture up to ``texture_size`` (None: bake at
    ``texture_size``). The views limit the detail: a 512² view covers the head with fewer pixels than a 1024²
    texture has texels, so baking beyond that costs time and adds nothing (``docs/BENCHMARKS.md``)."""
    angle_power: float = 6.0
    """Views are weighted by cos(angle between surface normal and view ray) to this power:
    higher favours the most frontal view (sharper), lower blends more views (smoother seams)."""
    depth_tolerance: float = 0.01
    """A texel counts as visible in a view when its depth is within this many world units of the view's depth map."""
    padding: int = 4
    """Texels between UV charts (keeps bilinear lookups and mipmaps from bleeding across charts)."""
    selection_power: float = 48.0
    """Colour weights go as cos(angle to the view)^selection_power: high enough that one view wins each
    region (sharp, no ghosting where views disagree), blended over a few degrees where two views face the
    texel about equally (no hard seams). 48: views 11 degrees apart (32 around) hand over within about 4
    degrees. The coverage weight (``min_weight``) keeps ``angle_power``."""
    outlier_scale: float = 0.08
    """Colour difference (RGB distance in [0, 1]) at which a view's sample counts half in the consensus
    that calibrates the views' gains and reliabilities."""
    min_weight: float = 0.01
    """Texels whose view weight (sum of cos^angle_power × alpha) is at most this count as unseen and take
    the colour of the seen surface around them: views that graze a texel (the crown, under the chin)
    give it a stretched, unreliable colour. 0.01 is one opaque view at 62 degrees from the normal."""
    threads: int = 1
    """Threads that sample the views (0: one per CPU, at most 4). One by default: on two cores two threads
    save about 6 s of a 2048² bake but hold a second view's temporaries, which took make-asset's peak
    memory over 2 GiB (``docs/BENCHMARKS.md``). The texture is the same for any number."""

    def baked_at(self, size: int) -> int:
        """The size the colours of a ``size`` texture are baked at: ``bake_size``, never above ``size``."""
        return min(size, self.bake_size or size)


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


def unwrap(
    mesh: trimesh.Trimesh, texture_size: int = BakeConfig.texture_size, padding: int = 4, workers: bool = True
) -> UVMesh:
    """Chart the mesh and pack the charts into one square texture (xatlas; the mesh's two halves are
    charted at once, one in a worker process unless ``workers`` is False: :mod:`nerf.charts`)."""
    from .charts import unwrap_charts

    vmapping, faces, uv = unwrap_charts(mesh.vertices, mesh.faces, texture_size, padding, workers=workers)
    normals = np.asarray(mesh.vertex_normals, dtype=np.float64)[vmapping]
    return UVMesh(
        vertices=np.asarray(mesh.vertices, dtype=np.float64)[vmapping],
        faces=faces,
        uv=uv,
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
    # One ray per texel centre, straight down at the flat layout; built column by column in float32 (the
    # (S², 6) float64 stack of before took longer than the ray casting itself).
    centres = (np.arange(size) + 0.5) / size
    rays = np.zeros((size * size, 6), dtype=np.float32)
    rays[:, 0] = np.tile(centres.astype(np.float32), size)  # u by column
    rays[:, 1] = np.repeat((1.0 - centres).astype(np.float32), size)  # v by row (row 0 = v 1)
    rays[:, 2], rays[:, 5] = 1.0, -1.0
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    del rays
    covered = np.isfinite(hit["t_hit"].numpy())
    texel = np.flatnonzero(covered)
    tri = hit["primitive_ids"].numpy()[texel].astype(np.int64)
    bary_uv = hit["primitive_uvs"].numpy()[texel].astype(np.float64)
    bary = np.stack([1.0 - bary_uv[:, 0] - bary_uv[:, 1], bary_uv[:, 0], bary_uv[:, 1]], axis=-1)
    corners = uvmesh.faces[tri]  # (M, 3)
    points, normals = _interpolate(uvmesh.vertices, corners, bary), _interpolate(uvmesh.normals, corners, bary)
    rows, cols = np.divmod(texel, size)
    return Texels(rows, cols, points, unit_rows(normals), covered.reshape(size, size), tri, bary)


def _interpolate(values: np.ndarray, corners: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Barycentric interpolation of per-vertex (V, C) ``values`` over (M, 3) triangle ``corners``: (M, C).

    Corner by corner, summed in corner order: the same bits as the (M, 3, C) product summed over its
    corner axis, without that temporary."""
    out = values[corners[:, 0]] * bary[:, 0:1]
    out += values[corners[:, 1]] * bary[:, 1:2]
    out += values[corners[:, 2]] * bary[:, 2:3]
    return out


@dataclass
class _Samples:
    """What one view shows of some texels: their indices (K,), premultiplied RGBA (K, 4) and cos (K,)."""

    index: np.ndarray
    rgba: np.ndarray
    cos: np.ndarray


def _premultiplied(view: View) -> np.ndarray:
    """(H, W, 4) float32 RGBA in [0, 1] with the colour multiplied by alpha.

    Interpolating premultiplied colour keeps the background colour of transparent pixels out of the
    silhouette's texels (dark fringes on the crown)."""
    image = view.image.astype(np.float32) / np.float32(255.0)
    image[..., :3] *= image[..., 3:]
    return image


@dataclass
class _TexelFrame:
    """Texels' surface points and normals as float32, with the per-texel terms every view's facing test
    shares: ``normal_dot_point`` n·p and ``point_sq`` |p|², each (M,)."""

    points: np.ndarray
    normals: np.ndarray
    normal_dot_point: np.ndarray
    point_sq: np.ndarray

    @classmethod
    def of(cls, points: np.ndarray, normals: np.ndarray) -> _TexelFrame:
        """From (M, 3) points and unit normals."""
        points = np.ascontiguousarray(points, dtype=np.float32)
        normals = np.ascontiguousarray(normals, dtype=np.float32)
        return cls(points, normals, np.einsum("ij,ij->i", normals, points), np.einsum("ij,ij->i", points, points))

    def __len__(self) -> int:
        return len(self.points)

    def part(self, start: int, stop: int) -> _TexelFrame:
        """Texels ``start:stop`` (views of the arrays, no copy: ``dataclasses.astuple`` would deep-copy them, which
        cost the bake of a 2048² texture 1.3 s)."""
        return _TexelFrame(*(getattr(self, f.name)[start:stop] for f in dataclasses.fields(self)))


def _view_samples(
    view: View,
    frame: _TexelFrame,
    depth_map: np.ndarray,
    tolerance: float,
    image: np.ndarray | None = None,
    chunk: int = 1 << 19,
) -> _Samples:
    """The texels of ``frame`` that ``view`` sees, with a depth test against the mesh's own ``depth_map``
    in that view; ``image``: the view's :func:`_premultiplied` (None: made here).

    Texels go ``chunk`` at a time (each texel's test is its own): the temporaries of millions of texels,
    times the bake's threads, would otherwise add a few hundred MB to the peak."""
    image = _premultiplied(view) if image is None else image
    parts = [
        _view_samples_of(view, frame.part(start, start + chunk), depth_map, tolerance)
        for start in range(0, len(frame), chunk)
    ]
    idx = np.concatenate([p[0] + start for p, start in zip(parts, range(0, len(frame), chunk))] or [np.zeros(0, int)])
    uv = np.concatenate([p[1] for p in parts] or [np.zeros((0, 2), np.float32)])
    cos = np.concatenate([p[2] for p in parts] or [np.zeros(0, np.float32)])
    return _Samples(idx, _bilinear(image, uv), cos)


FACING_COS = 0.05
"""Texels whose normal is within this cosine of perpendicular to a view's ray (or facing away) are not
sampled from it (their weight cos^6 is under 2e-8)."""


def _view_samples_of(
    view: View, frame: _TexelFrame, depth_map: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index into ``frame``, (K, 2) float32 pixel position, (K,) float32 cosine) of the texels ``view`` sees.

    The facing test needs n·(c - p) and |c - p|² of every texel; both come from one matrix-vector
    product each with the camera centre c and the frame's shared terms, instead of (M, 3) temporaries.
    The projection is float32 (a 512² view's pixel positions to about 1e-4 px)."""
    h, w = view.image.shape[:2]
    cam = view.camera
    centre = cam.position.astype(np.float32)
    facing = frame.normals @ centre - frame.normal_dot_point  # n·(c - p)
    distance_sq = frame.point_sq - 2.0 * (frame.points @ centre) + centre @ centre  # |c - p|²
    idx = np.flatnonzero((facing > 0) & (facing * facing > FACING_COS**2 * distance_sq))
    world2cam = cam.world2cam.astype(np.float32)
    in_camera = frame.points[idx] @ world2cam[:3, :3].T + world2cam[:3, 3]
    depth = in_camera[:, 2]
    fx, fy, cx, cy = cam.pixel_intrinsics(w, h)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = in_camera[:, 0] / depth * np.float32(fx) + np.float32(cx)
        v = in_camera[:, 1] / depth * np.float32(fy) + np.float32(cy)
    keep = (depth > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    idx, u, v, depth = idx[keep], u[keep], v[keep], depth[keep]
    column, row = np.minimum(u.astype(np.int64), w - 1), np.minimum(v.astype(np.int64), h - 1)
    visible = np.abs(depth_map[row, column] - depth) < tolerance
    idx, u, v = idx[visible], u[visible], v[visible]
    cos = facing[idx] / np.sqrt(distance_sq[idx])
    return idx, np.stack([u, v], axis=1), cos


@dataclass
class ViewCalibration:
    """Per-view corrections found by comparing the views where they overlap (:func:`calibrate_views`)."""

    gain: np.ndarray
    """(V, 3) colour gain that brings each view to the consensus (exposure and colour cast)."""
    reliability: np.ndarray
    """(V,) in (0, 1]: 1 for a view that agrees with the others after its gain, small for a plainly wrong one."""
    residual: np.ndarray
    """(V,) median colour difference of each view from the consensus, after its gain."""


def calibrate_views(samples: Sequence[_Samples], count: int, config: BakeConfig) -> ViewCalibration:
    """Gains and reliabilities of the views from their colours at the same texels.

    The consensus colour of each texel is an angle-weighted mean made robust by two reweighting passes
    (a view far from the consensus at a texel counts less there); each view's gain is the least-squares
    fit of its colours to the consensus, and views whose median difference after the gain is well above
    the typical view's lose weight as the fourth power of the ratio.

    Args:
        samples: per view, what it shows of the ``count`` probe texels.
    """
    views = len(samples)
    gain, reliability, residual = np.ones((views, 3)), np.ones(views), np.zeros(views)
    weights = [np.power(s.cos, config.angle_power) * s.rgba[:, 3] for s in samples]
    robust = [np.ones_like(w) for w in weights]
    colour = [s.rgba[:, :3] / np.maximum(s.rgba[:, 3:], 1e-3) for s in samples]  # straight colour
    for _ in range(4):
        total, norm = np.zeros((count, 3)), np.zeros(count)
        for s, c, w, r, g, rel in zip(samples, colour, weights, robust, gain, reliability):
            np.add.at(total, s.index, c * g * (w * r * rel)[:, None])
            np.add.at(norm, s.index, w * r * rel)
        consensus = total / np.maximum(norm, 1e-12)[:, None]
        for v, (s, c, w) in enumerate(zip(samples, colour, weights)):
            if len(s.index) == 0:
                continue
            ref, wv = consensus[s.index], w * robust[v] * (norm[s.index] > 0)
            fit = np.sum(wv[:, None] * ref * c, 0) / np.maximum(np.sum(wv[:, None] * c * c, 0), 1e-9)
            gain[v] = np.clip(fit, 0.6, 1.6)
            error = np.linalg.norm(c * gain[v] - ref, axis=1)
            robust[v] = 1.0 / (1.0 + (error / config.outlier_scale) ** 2)
            residual[v] = float(np.median(error))
        typical = max(float(np.median(residual)), 1e-3)
        reliability = np.minimum(1.0, (1.5 * typical / np.maximum(residual, 1e-9)) ** 4)
    return ViewCalibration(gain, reliability, residual)


def bake_from_views(
    uvmesh: UVMesh, texels: Texels, views: Sequence[View], config: BakeConfig, calibrate: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Project the views onto the texels: a view per region, blended across the seams between regions.

    Each texel takes its colour mostly from the view that faces it best: weights go as
    cos(angle)^``selection_power`` (times alpha and the view's reliability), so where two views face a
    texel about equally they blend over a band of a few degrees, and elsewhere one view wins. Averaging
    many views instead blurs and ghosts detail that moves between views (generated views are not
    pixel-consistent). Visibility is a depth test against the mesh's own depth map in each view. With
    ``calibrate``, each view's colour gain and reliability (:func:`calibrate_views`, measured on a
    subset of the texels) correct exposure shifts and push plainly wrong views out.

    Returns:
        ``(colours, weight)``: (M, 3) float colours in [0, 1] and (M,) coverage weight, the sum of
        cos^``angle_power`` × alpha (0 where no view saw the texel).
    """
    from portrait3d.render import MeshRenderer

    renderer = MeshRenderer(trimesh.Trimesh(uvmesh.vertices, uvmesh.faces, process=False))
    # float32 for the per-view work on millions of texels (twice as fast; sums stay float64).
    frame = _TexelFrame.of(texels.points, texels.normals)
    depth_maps = [renderer.render_depth(v.camera, v.image.shape[1::-1]) for v in progress.bar(views, desc="depth")]
    calibration = None
    if calibrate and len(views) > 2:
        probe = np.arange(0, len(frame), max(1, len(frame) // CALIBRATION_TEXELS))
        probe_frame = _TexelFrame.of(frame.points[probe], frame.normals[probe])
        samples = [
            _view_samples(v, probe_frame, d, config.depth_tolerance, _premultiplied(v))
            for v, d in zip(views, depth_maps)
        ]
        calibration = calibrate_views(samples, len(probe), config)
        progress.debug(
            "bake: view gains "
            + " ".join(f"{g:.2f}" for g in calibration.gain.mean(axis=1))
            + "; reliabilities "
            + " ".join(f"{r:.2f}" for r in calibration.reliability)
        )
    total = np.zeros((len(frame), 3))
    norm = np.zeros(len(frame))
    weight = np.zeros(len(frame))

    def samples_of(v: int) -> _Samples:
        # Each view's float image is made where it is used, not kept for all views at once (32 views at
        # 512² are 134 MB, which pushed make-asset's peak over 2 GiB).
        return _view_samples(views[v], frame, depth_maps[v], config.depth_tolerance, _premultiplied(views[v]))

    # Views are sampled in threads and summed here in their order: the same sums on any number of cores.
    per_view = ordered_map(samples_of, range(len(views)), threads=config.threads or None)
    for v, s in enumerate(progress.bar(per_view, total=len(views), desc="texture from views")):
        if len(s.index) == 0:
            continue
        alpha = s.rgba[:, 3]
        weight[s.index] += np.power(s.cos, config.angle_power) * alpha
        select = np.power(s.cos.astype(np.float64), config.selection_power)
        rgb = s.rgba[:, :3].astype(np.float64)
        if calibration is not None:
            select = select * calibration.reliability[v]
            rgb = rgb * calibration.gain[v]
        total[s.index] += rgb * select[:, None]
        norm[s.index] += select * alpha
    colours = np.where(norm[:, None] > 0, total / np.maximum(norm, 1e-300)[:, None], 0.0)
    return np.clip(colours, 0.0, 1.0), weight


def resize_texture(texture: np.ndarray, size: int) -> np.ndarray:
    """(S, S, 3) uint8 texture resized to (size, size, 3) (bicubic; the same array when it already has that size).

    The texture is filled beyond its charts (:func:`assemble_texture`), so the filter does not pull in black at
    chart borders."""
    if texture.shape[0] == size and texture.shape[1] == size:
        return texture
    import cv2

    return cv2.resize(texture, (size, size), interpolation=cv2.INTER_CUBIC)


CALIBRATION_TEXELS = 60_000
"""About this many texels (evenly thinned) measure the views' gains and reliabilities."""


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
        ri, ci = ndimage.distance_transform_edt(~texels.covered, return_distances=False, return_indices=True)
        image = image[ri, ci]
        del ri, ci
    # In place: this is export-mesh's peak (make-asset's too), and each (S, S, 3) float64 temporary is 96 MiB at 2048².
    image *= 255.0
    np.round(image, out=image)
    np.clip(image, 0, 255, out=image)
    return image.astype(np.uint8)


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
    """Bilinear lookup at pixel coordinates (pixel centres at +0.5), clamped at the border: (H, W, C), (M, 2) -> (M, C).

    torch's ``grid_sample`` (in the process's torch threads) when torch is there: about five times faster than
    the four numpy gathers of :func:`_bilinear_numpy` on the bake's millions of look-ups, the same values to float
    rounding."""
    try:
        import torch
    except ImportError:
        return _bilinear_numpy(image, xy)
    h, w, channels = image.shape
    if len(xy) == 0:
        return np.zeros((0, channels), dtype=image.dtype)
    pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None].contiguous()
    scale = torch.tensor([2.0 / w, 2.0 / h])
    grid = (torch.from_numpy(np.asarray(xy, dtype=np.float32)) * scale - 1.0)[None, None]  # (1, 1, M, 2) in [-1, 1]
    out = torch.nn.functional.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return np.ascontiguousarray(out[0, :, 0].T.numpy())


def _bilinear_numpy(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """:func:`_bilinear` in numpy."""
    h, w = image.shape[:2]
    x = np.clip(xy[:, 0] - 0.5, 0.0, w - 1.0)
    y = np.clip(xy[:, 1] - 0.5, 0.0, h - 1.0)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    pixels = image.reshape(h * w, -1)

    def at(row: np.ndarray, col: np.ndarray) -> np.ndarray:
        return np.take(pixels, row * w + col, axis=0)  # a flat take: faster than image[row, col], same values

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return top * (1 - fy) + bottom * fy
