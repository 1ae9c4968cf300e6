"""Surface extraction from a density field, clean-up, UV unwrapping and texture baking.

Everything here is field-agnostic: the geometry side takes a ``density_fn``
mapping (N, 3) world points to (N,) densities, the texture side takes the
run's views and cameras (projection) and/or an ``rgb_fn`` mapping points and
view directions to colours (radiance queries). Coordinates are PanoHead world
units throughout (head at the origin, y up, face toward +z); the export module
converts to metres.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import trimesh

from portrait3d import progress
from portrait3d.cameras import Camera

DensityFn = Callable[[np.ndarray], np.ndarray]
"""(N, 3) float world points -> (N,) float densities."""
RgbFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""((N, 3) points, (N, 3) unit view directions) -> (N, 3) colours in [0, 1]."""
DepthFn = Callable[[Camera, int, int, np.ndarray], np.ndarray]
"""``(camera, width, height, pixels)`` -> (H, W) float depth along the optical axis of the surface seen
at each pixel, ``inf`` where the ray meets nothing; only the pixels where ``pixels`` ((H, W) bool) is
true need rendering."""
DEFAULT_BOUNDS = (-0.6, -0.6, -0.6, 0.6, 0.6, 0.6)
"""Search box when neither the options nor the field give one: a PanoHead head with room to spare."""
SURFACES = ("depth", "density")
"""Values of :attr:`MeshConfig.surface`."""
MIN_DEPTH_COVERAGE = 0.9
"""Depth fusion needs the field opaque at this share of the views' head pixels (a converged fit: over
0.99); below it, the density surface is used instead."""
DEFAULT_THRESHOLD = 10.0
"""Iso-level when neither the options nor the views give one: 10 / unit makes a 0.1-unit slab 63% opaque."""


@dataclass
class MeshConfig:
    """How the surface is extracted and cleaned."""

    surface: str = "depth"
    """How the surface is found. ``depth``: fuse depth maps rendered from the field at the views'
    cameras (a truncated signed distance, as in nerfstudio's ``ns-export tsdf``): only what the
    views saw counts, so shells and walls inside the head vanish. ``density``: the iso-surface of the
    density itself. Fields that cannot render depth use ``density``."""
    resolution: int = 192
    """Marching-cubes grid cells per axis over ``bounds``."""
    depth_size: int = 256
    """``surface=depth``: depth maps are rendered at this square size (pixels)."""
    depth_views: int = 16
    """``surface=depth``: render depth at most at this many of the views, evenly spread (on the
    synthetic head's CPU fit, 16 of 32 views gave Chamfer 0.252 % of the diagonal against 0.247 % with all
    32, in half the time)."""
    truncation: float = 0.04
    """``surface=depth``: half width (world units, at least two cells) of the band around each depth map
    in which cameras vote on the signed distance. Wider averages more views at each point (smoother, and
    more accurate on the synthetic head's CPU fit: Chamfer 0.43 / 0.25 / 0.21 % of the diagonal at
    0.02 / 0.04 / 0.06), narrower keeps thin parts such as ears apart from the head."""
    threshold: float | None = None
    """Density iso-level of the surface (the field's density units, 1/world unit); None: the level
    whose silhouettes best match the views' masks (:func:`choose_threshold`)."""
    bounds: tuple[float, float, float, float, float, float] | None = None
    """Box searched for the surface: (xmin, ymin, zmin, xmax, ymax, zmax) in PanoHead units;
    None: the field's own cube (``field.config.half_extent``) or :data:`DEFAULT_BOUNDS`."""
    triangles: int = 50_000
    """Triangle budget after decimation."""
    grid_blur: float = 0.005
    """Sigma (PanoHead units) of a Gaussian blur of the density grid before marching cubes; removes the
    hash grid's high-frequency noise, which would otherwise give a bumpy surface and many UV charts.
    0.005 is about one cell of a 192³ grid over the unit cube and 1 mm on the head; 0 disables."""
    smooth_iterations: int = 10
    """Taubin smoothing passes (volume-preserving) before decimation; 0 disables."""
    max_hole_edges: int = 64
    """Close boundary loops up to this many edges (cheap fan fill); larger holes stay open."""
    chunk: int = 1 << 18
    """Points per density query."""


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


# --- geometry ------------------------------------------------------------------
def density_grid(density_fn: DensityFn, bounds: Sequence[float], resolution: int, chunk: int = 1 << 18) -> np.ndarray:
    """Sample ``density_fn`` on a regular grid of ``resolution + 1`` points per axis.

    Returns:
        (R+1, R+1, R+1) float32 densities, indexed [x, y, z].
    """
    lo, hi = np.asarray(bounds[:3], dtype=np.float64), np.asarray(bounds[3:], dtype=np.float64)
    axes = [np.linspace(lo[i], hi[i], resolution + 1) for i in range(3)]
    n = resolution + 1
    out = np.empty(n**3, dtype=np.float32)
    # Query slab by slab along x so memory stays bounded at high resolutions.
    yz = np.stack(np.meshgrid(axes[1], axes[2], indexing="ij"), axis=-1).reshape(-1, 2)
    per_slab = max(1, chunk // len(yz))
    for start in progress.bar(range(0, n, per_slab), desc="density grid"):
        xs = axes[0][start : start + per_slab]
        pts = np.concatenate([np.repeat(xs, len(yz))[:, None], np.tile(yz, (len(xs), 1))], axis=1)
        out[start * len(yz) : (start + len(xs)) * len(yz)] = np.asarray(density_fn(pts), dtype=np.float32).reshape(-1)
    return out.reshape(n, n, n)


def extract_mesh(
    density_fn: DensityFn,
    bounds: Sequence[float] = DEFAULT_BOUNDS,
    resolution: int = MeshConfig.resolution,
    threshold: float = DEFAULT_THRESHOLD,
    chunk: int = MeshConfig.chunk,
) -> trimesh.Trimesh:
    """Marching cubes on the density field: the iso-surface ``density == threshold``.

    Returns:
        The raw surface in world units with outward-facing triangles.
    """
    return mesh_from_grid(density_grid(density_fn, bounds, resolution, chunk), bounds, threshold)


def mesh_from_grid(grid: np.ndarray, bounds: Sequence[float], threshold: float) -> trimesh.Trimesh:
    """Marching cubes on a density grid from :func:`density_grid`: (R+1, R+1, R+1) -> mesh in world units."""
    import mcubes

    if not (grid.max() > threshold):
        raise ValueError(f"no density above the threshold {threshold:.3g} inside the bounds (max {grid.max():.3g})")
    grid = grid.copy()
    # Close the surface where it leaves the box, so that cut-off necks still give a closed mesh.
    outside = min(0.0, float(grid.min()))
    grid[[0, -1], :, :] = outside
    grid[:, [0, -1], :] = outside
    grid[:, :, [0, -1]] = outside
    verts, faces = mcubes.marching_cubes(grid, threshold)
    lo, hi = np.asarray(bounds[:3], dtype=np.float64), np.asarray(bounds[3:], dtype=np.float64)
    verts = lo + verts * (hi - lo) / (np.asarray(grid.shape) - 1)
    mesh = trimesh.Trimesh(verts, faces.astype(np.int64), process=True)
    # Where the iso-level passes exactly through grid corners marching cubes makes zero-area triangles.
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.remove_unreferenced_vertices()
    mesh.merge_vertices()
    if mesh.volume < 0:  # the density is high inside: make the normals point out
        mesh.invert()
    return mesh


def choose_threshold(
    grid: np.ndarray, bounds: Sequence[float], views: Sequence[View], size: int = 64, max_views: int = 16
) -> tuple[float, float]:
    """The iso-level whose silhouettes best match the views' alpha masks.

    The surface ``density == t`` covers a pixel exactly when the largest
    density along the ray through the pixel centre exceeds ``t``; so one
    max-along-the-ray image per view gives the silhouette at every candidate
    level at once, and the level with the best intersection-over-union
    against ``alpha > 0.5`` (pooled over the views) wins.

    Args:
        grid: (R+1, R+1, R+1) densities from :func:`density_grid`.
        bounds: the grid's box.
        views: RGBA views with cameras (alpha = the head's mask).
        size: silhouettes are compared at this resolution.
        max_views: use at most this many views, evenly spread.
    Returns:
        ``(threshold, iou)``.
    """
    from PIL import Image
    from scipy import ndimage

    lo, hi = np.asarray(bounds[:3], dtype=np.float64), np.asarray(bounds[3:], dtype=np.float64)
    cells = np.asarray(grid.shape) - 1
    step = 0.5 * float(np.min((hi - lo) / cells))
    peak_density = float(grid.max())
    chosen = list(views)[:: max(1, -(-len(views) // max_views))]
    ray_max, masks = [], []
    for view in progress.bar(chosen, desc="choose threshold"):
        masks.append(np.asarray(Image.fromarray(view.image[..., 3]).resize((size, size), Image.BOX)).ravel() > 127)
        origins, dirs = view.camera.rays(size, size)
        origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
        near, far = _box_interval(origins, dirs, lo, hi)
        t = np.arange(max(float(near[near < far].min(initial=0.0)), 0.0), float(far.max(initial=0.0)), step)
        peak = np.zeros(len(origins))
        for start in range(0, len(origins), 256):
            sl = slice(start, start + 256)
            pts = origins[sl, None, :] + dirs[sl, None, :] * t[None, :, None]  # (rays, samples, 3)
            coords = ((pts - lo) / (hi - lo) * cells).reshape(-1, 3).T
            values = ndimage.map_coordinates(grid, coords, order=1, mode="constant", cval=0.0)
            peak[sl] = values.reshape(pts.shape[:2]).max(axis=1)
        ray_max.append(peak)
    peaks, alpha = np.concatenate(ray_max), np.concatenate(masks)
    candidates = np.geomspace(1e-3 * peak_density, peak_density, 512)[:-1]
    silhouettes = peaks[None, :] > candidates[:, None]  # (T, pixels)
    iou = np.sum(silhouettes & alpha, axis=1) / np.maximum(np.sum(silhouettes | alpha, axis=1), 1)
    # Pixels are coarse, so a range of levels ties; its middle is the least biased choice.
    ties = np.flatnonzero(iou >= iou.max() - 1e-9)
    best = int(ties[len(ties) // 2])
    return float(candidates[best]), float(iou[best])


def _box_interval(
    origins: np.ndarray, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit distances of rays through an axis-aligned box: (N, 3) x2 -> (N,), (N,); near >= far: a miss."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (lo - origins) / dirs, (hi - origins) / dirs
    near = np.nanmax(np.minimum(t0, t1), axis=1)
    far = np.nanmin(np.maximum(t0, t1), axis=1)
    return near, far


def fuse_depth_maps(
    depths: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    cameras: Sequence[Camera],
    bounds: Sequence[float],
    resolution: int,
    truncation: float,
) -> np.ndarray:
    """A truncated signed distance grid from depth maps and foreground masks.

    A grid point within ``truncation`` of the depth of some cameras (along
    their optical axes) takes the average of those signed distances, in units
    of ``truncation``. Only those near cameras vote, from both sides alike:
    counting the cameras that see a point far in front of their surface but
    not those that see it far behind would pull the surface inward wherever
    views graze it. Farther points are decided by free space: outside if any
    camera shows background there or sees the point more than ``truncation``
    in front of its surface (near the silhouette it keeps the near cameras'
    distance, clamped to outside); inside when it lies behind every depth map
    that sees it (the inside of the head). Points that fewer cameras see near or
    behind their depth than have them out of frame are outside: every view
    frames the head, so such space is not the head, and a fit leaves floaters
    there. Pixels of the mask with no depth (the field is transparent there)
    tell nothing.

    Args:
        depths: (H, W) float depth maps along each camera's optical axis, ``inf`` for no surface.
        masks: (H, W) bool foreground of each view (same size as its depth map).
        cameras: one camera per depth map.
        bounds: (xmin, ymin, zmin, xmax, ymax, zmax) of the grid.
        resolution: cells per axis.
        truncation: world units.
    Returns:
        (R+1, R+1, R+1) float32 in [-1, 1] indexed [x, y, z], positive inside, so that
        :func:`mesh_from_grid` with threshold 0 gives the surface.
    """
    from scipy import ndimage

    lo, hi = np.asarray(bounds[:3], dtype=np.float64), np.asarray(bounds[3:], dtype=np.float64)
    n = resolution + 1
    axes = [np.linspace(lo[i], hi[i], n, dtype=np.float32) for i in range(3)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    total = np.zeros(len(points), dtype=np.float32)
    count = np.zeros(len(points), dtype=np.float32)
    in_frame = np.zeros(len(points), dtype=np.int32)
    free = np.zeros(len(points), dtype=bool)
    behind = np.zeros(len(points), dtype=np.int32)
    background_seen = np.zeros(len(points), dtype=bool)
    alive = np.arange(len(points))
    for depth, mask, camera in progress.bar(list(zip(depths, masks, cameras)), desc="fuse depth maps"):
        h, w = depth.shape
        # Camera.project, in float32: this loop handles millions of points.
        world2cam = camera.world2cam.astype(np.float32)
        cam = points[alive] @ world2cam[:3, :3].T + world2cam[:3, 3]
        z = cam[:, 2]
        fx, fy, cx, cy = camera.pixel_intrinsics(w, h)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.floor(cam[:, 0] / z * fx + cx)
            v = np.floor(cam[:, 1] / z * fy + cy)
        in_image = (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        px = np.stack([u[in_image], v[in_image]], axis=1).astype(np.int64)
        in_frame[alive[in_image]] += 1
        idx, z = alive[in_image], z[in_image]
        background = ~mask[px[:, 1], px[:, 0]]
        surface = depth[px[:, 1], px[:, 0]]
        sdf = surface - z  # positive in front of the surface
        near = ~background & (np.abs(sdf) <= truncation)
        total[idx[near]] += sdf[near] / truncation
        count[idx[near]] += 1.0
        free[idx[~background & (sdf > truncation)]] = True
        behind[idx[~background & (sdf < -truncation)]] += 1
        background_seen[idx[background]] = True
        # Background points farther from the silhouette than the band is wide (in pixels at their depth)
        # are far from any surface: they are outside for good, stop looking at them.
        gap = ndimage.distance_transform_edt(~mask)[px[:, 1], px[:, 0]]
        far = background & (gap > truncation * fx / z + 1.0)
        keep = np.ones(len(alive), dtype=bool)
        keep[np.flatnonzero(in_image)[far]] = False
        alive = alive[keep]
    inside = np.full(len(points), -1.0, dtype=np.float32)  # out of frame, or far from the head
    voted = count > 0
    inside[voted] = -total[voted] / count[voted]
    out_of_frame = len(depths) - in_frame
    inside[~voted & ~free] = 1.0
    # Space most views have out of frame is unconstrained (a fit leaves floaters there): outside.
    inside[count + behind < np.maximum(out_of_frame, 1)] = -1.0
    # Background in some view: outside, but near the silhouette keep the votes' distance so that
    # marching cubes interpolates the surface instead of snapping it to the grid.
    inside[background_seen] = np.where(voted[background_seen], np.minimum(inside[background_seen], -1e-3), -1.0)
    return inside.reshape(n, n, n)


def keep_largest_component(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Drop floaters: every connected component except the one with the most faces."""
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return mesh
    return max(parts, key=lambda m: len(m.faces))


def close_small_holes(mesh: trimesh.Trimesh, max_edges: int) -> trimesh.Trimesh:
    """Fan-fill boundary loops of at most ``max_edges`` edges around their centroid."""
    if max_edges <= 0 or mesh.is_watertight:
        return mesh
    # Directed boundary edges (edges used by one face only), in face order, so fill triangles get the mesh's winding.
    directed = np.asarray(mesh.edges)[trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)]
    if len(directed) == 0:
        return mesh
    # Outgoing boundary edges per vertex; a vertex where two holes touch has several.
    outgoing: dict[int, list[int]] = {}
    for a, b in directed:
        outgoing.setdefault(int(a), []).append(int(b))
    vertices, new_faces = [np.asarray(mesh.vertices)], []
    next_index = len(mesh.vertices)
    for start in list(outgoing):
        while outgoing.get(start):
            loop, v = [start], outgoing[start].pop()
            while v != start and outgoing.get(v) and len(loop) <= max_edges:
                loop.append(v)
                v = outgoing[v].pop()
            if v != start or len(loop) > max_edges:
                continue
            for cycle in _simple_cycles(loop):
                centre = np.asarray(mesh.vertices)[cycle].mean(axis=0)
                vertices.append(centre[None])
                # A boundary edge a->b belongs to a face; the fill face must use it as b->a.
                new_faces.extend([b, a, next_index] for a, b in zip(cycle, cycle[1:] + cycle[:1]))
                next_index += 1
    if not new_faces:
        return mesh
    faces = np.concatenate([np.asarray(mesh.faces), np.asarray(new_faces, dtype=np.int64)])
    return trimesh.Trimesh(np.concatenate(vertices), faces, process=True)


def _simple_cycles(walk: list[int]) -> list[list[int]]:
    """Split a closed walk that passes a vertex twice (holes touching at a vertex) into simple cycles."""
    cycles, stack, position = [], [], {}
    for v in walk + walk[:1]:
        if v in position:
            start = position[v]
            cycle = stack[start:]
            for u in cycle:
                position.pop(u)
            del stack[start:]
            if len(cycle) >= 3:
                cycles.append(cycle)
        position[v] = len(stack)
        stack.append(v)
    return cycles


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


def fill_cavities(grid: np.ndarray, threshold: float) -> np.ndarray:
    """Make the unobserved inside of the head solid.

    No training ray reaches the inside of the head, so its density there is
    arbitrary: marching cubes would find walls and shells inside the skin. The
    inside is often open to the outside through the neck, which leaves the
    frame, so filling enclosed 3D cavities is not enough; every horizontal
    slice of a head is one blob, so holes of each slice (grid axis 1 is world
    y) are filled as well.

    Args:
        grid: (R, R, R) densities indexed [x, y, z].
    Returns:
        (R, R, R) densities with the filled voxels set just above the threshold.
    """
    from scipy import ndimage

    inside = grid > threshold
    solid = ndimage.binary_fill_holes(inside)
    for j in range(solid.shape[1]):
        solid[:, j, :] = ndimage.binary_fill_holes(solid[:, j, :])
    cavities = solid & ~inside
    if not cavities.any():
        return grid
    filled = grid.copy()
    filled[cavities] = max(float(threshold) * 2.0, float(threshold) + 1.0)
    return filled


def depth_maps(
    depth_fn: DepthFn, views: Sequence[View], config: MeshConfig
) -> tuple[list[np.ndarray], list[np.ndarray], list[Camera]]:
    """The field's depth at (up to ``config.depth_views`` of) the views' cameras.

    Returns:
        ``(depths, masks, cameras)``: (S, S) float32 depth maps (``inf`` off the head or where the
        field is transparent), (S, S) bool masks (the views' alpha) and the cameras, S = ``config.depth_size``.
    """
    from PIL import Image

    size = config.depth_size
    chosen = list(views)[:: max(1, -(-len(views) // max(config.depth_views, 1)))]
    depths, masks = [], []
    for view in progress.bar(chosen, desc="depth maps"):
        mask = np.asarray(Image.fromarray(view.image[..., 3]).resize((size, size), Image.BOX)) > 127
        depths.append(np.asarray(depth_fn(view.camera, size, size, mask), dtype=np.float32))
        masks.append(mask)
    return depths, masks, [v.camera for v in chosen]


def _has_masks(views: Sequence[View] | None) -> bool:
    return bool(views) and any((v.image[..., 3] < 255).any() for v in views)


def fused_grid(
    depth_fn: DepthFn | None, views: Sequence[View] | None, bounds: Sequence[float], config: MeshConfig
) -> np.ndarray | None:
    """:func:`fuse_depth_maps` of the field's :func:`depth_maps`, or None (and a message) where that cannot work:
    no depth renderer, no masks, or a field transparent where the views show the head."""
    if depth_fn is None or not _has_masks(views):
        progress.info("depth fusion needs views with masks and a field that renders depth: using the density")
        return None
    depths, masks, cameras = depth_maps(depth_fn, views, config)
    coverage = float(np.mean(np.concatenate([np.isfinite(d[m]) for d, m in zip(depths, masks)])))
    if coverage < MIN_DEPTH_COVERAGE:
        # An unconverged fit is transparent where the views show the head: its depth maps say little.
        progress.info(f"the field is opaque at only {coverage:.0%} of the views' head pixels: using the density")
        return None
    # The band must span a couple of cells, or the surface snaps to the grid.
    cell = float(np.max(np.asarray(bounds[3:]) - np.asarray(bounds[:3]))) / config.resolution
    truncation = max(config.truncation, 2.0 * cell)
    return fuse_depth_maps(depths, masks, cameras, bounds, config.resolution, truncation)


def surface_from_field(
    density_fn: DensityFn,
    config: MeshConfig,
    views: Sequence[View] | None = None,
    depth_fn: DepthFn | None = None,
    decimated: bool = True,
) -> tuple[trimesh.Trimesh, float | None]:
    """The whole geometry pipeline: extract, keep the head, close small holes, smooth, decimate.

    Args:
        density_fn: the field's density.
        config: options; ``surface=depth`` needs ``views`` with masks and ``depth_fn``, and
            falls back to ``density`` without them. For ``density``, ``threshold=None`` picks
            the level from the views' masks (:func:`choose_threshold`), or
            :data:`DEFAULT_THRESHOLD` without views.
        views: RGBA views with cameras (masks for depth fusion and the automatic threshold).
        depth_fn: renders the field's depth at a camera (``surface=depth``).
        decimated: False: skip the decimation (the full-resolution surface, e.g. to make LODs from).
    Returns:
        ``(mesh, threshold)``: the clean surface and the density iso-level used (None for depth fusion).
    """
    if config.resolution < 8:
        raise ValueError("the marching-cubes resolution must be at least 8")
    if config.surface not in SURFACES:
        raise ValueError(f"surface: choose one of {', '.join(SURFACES)}, got {config.surface!r}")
    bounds = config.bounds or DEFAULT_BOUNDS
    threshold: float | None
    grid = fused_grid(depth_fn, views, bounds, config) if config.surface == "depth" else None
    if grid is not None:
        threshold, level = None, 0.0
    else:
        grid = density_grid(density_fn, bounds, config.resolution, config.chunk)
        if config.grid_blur > 0:
            from scipy import ndimage

            cell = (np.asarray(bounds[3:]) - np.asarray(bounds[:3])) / config.resolution
            grid = ndimage.gaussian_filter(grid, config.grid_blur / cell, mode="constant")
        threshold = config.threshold
        if threshold is None:
            threshold = DEFAULT_THRESHOLD
            if _has_masks(views):
                threshold, iou = choose_threshold(grid, bounds, views)
                progress.info(f"density threshold {threshold:.3g} (silhouette IoU {iou:.3f} against the views)")
        grid, level = fill_cavities(grid, threshold), threshold
    mesh = mesh_from_grid(grid, bounds, level)
    progress.debug(f"marching cubes: {len(mesh.faces)} faces")
    mesh = keep_largest_component(mesh)
    mesh = close_small_holes(mesh, config.max_hole_edges)
    if config.smooth_iterations > 0:
        trimesh.smoothing.filter_taubin(mesh, iterations=config.smooth_iterations)
    if not decimated:
        return mesh, threshold
    mesh = decimate(mesh, config.triangles)
    mesh.remove_unreferenced_vertices()
    progress.debug(f"cleaned mesh: {len(mesh.faces)} faces, watertight={mesh.is_watertight}")
    return mesh, threshold


def cap_neck(mesh: trimesh.Trimesh, height: float) -> tuple[trimesh.Trimesh, float | None]:
    """Cut the bottom of the neck flat with a horizontal plane and close the cut with a flat cap.

    The plane lies ``height`` above the lowest point, and above every open boundary of the lower
    third of the mesh (a neck that the views cut off ragged), so the cut meets only whole rings of
    the surface and the cap closes the mesh.

    Args:
        mesh: the surface (world units, y up).
        height: world units above the lowest point; 0 or less: no cut.
    Returns:
        ``(mesh, y)``: the cut and capped mesh and the plane's height (None and the mesh unchanged when
        ``height <= 0``).
    """
    if height <= 0:
        return mesh, None
    vertices = np.asarray(mesh.vertices)
    lo, hi = float(vertices[:, 1].min()), float(vertices[:, 1].max())
    cut = lo + height
    boundary = np.unique(mesh.edges[trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)])
    low_boundary = vertices[boundary, 1][vertices[boundary, 1] < lo + (hi - lo) / 3.0]
    if len(low_boundary):
        cut = max(cut, float(low_boundary.max()) + 0.5 * height)
    kept = trimesh.intersections.slice_mesh_plane(mesh, [0.0, 1.0, 0.0], [0.0, cut, 0.0])
    kept.merge_vertices()
    kept = keep_largest_component(kept)
    # The cut's boundary rings lie in the plane: fan-fill them (a neck's cross-section is star-shaped).
    capped = close_small_holes(kept, max_edges=len(kept.faces))
    return capped, cut


def neck_origin(mesh: trimesh.Trimesh, cut: float | None) -> np.ndarray:
    """The point that becomes the asset's origin: on the mid-plane (x = 0), at the base of the neck (the
    cap's height, else the lowest point) and at the middle of the neck front to back (world units, (3,))."""
    vertices = np.asarray(mesh.vertices)
    y = float(vertices[:, 1].min()) if cut is None else cut
    base = vertices[vertices[:, 1] <= y + 1e-6]
    z = float(base[:, 2].mean()) if len(base) else float(vertices[:, 2].mean())
    return np.array([0.0, y, z])


# --- UVs -------------------------------------------------------------------------
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
        normals=_unit_rows(normals),
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
    normals = _unit_rows((uvmesh.normals[corners] * bary).sum(axis=1))
    return Texels(
        rows.ravel()[covered], cols.ravel()[covered], points, normals, covered.reshape(size, size), tri, bary[..., 0]
    )


# --- texture baking ------------------------------------------------------------------
@dataclass
class View:
    """One input view: an (H, W, 4) uint8 RGBA image and its camera."""

    image: np.ndarray
    camera: Camera


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
    tangent = _unit_rows(tangent)
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
    target = _unit_rows((detail_normals[np.asarray(detail.faces)[tri]] * bary).sum(axis=1))
    frames = vertex_tangents(uvmesh)
    corners, weights = uvmesh.faces[texels.faces], texels.barycentric[..., None]
    tangent = (frames[corners, :3] * weights).sum(axis=1)
    sign = np.where((frames[corners, 3] * texels.barycentric).sum(axis=1) < 0.0, -1.0, 1.0)
    normal = texels.normals
    tangent = _unit_rows(tangent - normal * np.sum(normal * tangent, axis=1, keepdims=True))
    bitangent = np.cross(normal, tangent) * sign[:, None]
    local = np.stack([np.sum(target * a, axis=1) for a in (tangent, bitangent, normal)], axis=1)
    local[:, 2] = np.maximum(local[:, 2], 0.05)  # never point into the surface
    local = _unit_rows(local)
    size = texels.covered.shape[0]
    image = np.zeros((size, size, 3))
    image[:] = (0.0, 0.0, 1.0)
    image[texels.rows, texels.cols] = local
    if not texels.covered.all():
        _, (ri, ci) = ndimage.distance_transform_edt(~texels.covered, return_indices=True)
        image = image[ri, ci]
    return np.clip(np.round((image * 0.5 + 0.5) * 255.0), 0, 255).astype(np.uint8)


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


# --- helpers -------------------------------------------------------------------------
def _unit_rows(v: np.ndarray) -> np.ndarray:
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
