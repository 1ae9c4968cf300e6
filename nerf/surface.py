"""Surface extraction: a density field (or depth maps rendered from it) to a closed triangle mesh.

Knows how to sample a field on a grid, pick the density iso-level whose silhouettes match the views'
masks, fuse the field's depth maps at the views' cameras into a truncated signed distance (only what the
views saw counts), fill the unobserved inside of the head, and run marching cubes; then hands the raw
surface to :mod:`nerf.cleanup` (largest component, small holes, smoothing) and :mod:`nerf.decimate`.
It takes the field as plain functions (:data:`DensityFn`, :data:`DepthFn`) and knows nothing of
textures or files. Coordinates are PanoHead world units (head at the origin, y up, face toward +z).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import trimesh

from portrait3d import progress
from portrait3d.cameras import Camera

from .cleanup import close_small_holes, keep_largest_component
from .decimate import decimate

DensityFn = Callable[[np.ndarray], np.ndarray]
"""(N, 3) float world points -> (N,) float densities."""


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
FUSION_STRIDE = 4
"""Depth fusion votes first on every this-many-th grid point per axis, then only near what is not plainly
inside or outside there (:func:`_unsettled_cells`)."""
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
    truncation: float = 0.05
    """``surface=depth``: half width (world units, at least two cells) of the band around each depth map
    in which cameras vote on the signed distance. Wider averages more views at each point (smoother, and
    more accurate on the synthetic head's CPU fit: Chamfer 0.43 / 0.25 / 0.21 % of the diagonal at
    0.02 / 0.04 / 0.06), narrower keeps thin parts such as ears apart from the head. On the warm-started
    fast fit of the synthetic head the exported mesh measures 0.273 % at 0.04 and 0.230 % at 0.05 (normal
    angle 3.65° / 4.03°; ``docs/BENCHMARKS.md``)."""
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
    fused_blur: float = 0.006
    """``surface=depth``: sigma (PanoHead units) of a Gaussian blur of the fused signed distance grid
    before marching cubes: the depth maps' noise becomes pits and bumps a few cells wide; 0 disables.
    On a warm-started fit of the synthetic head (``docs/BENCHMARKS.md``), one cell
    (0.006) took the mean normal angle from 11.1° to 5.6° and Chamfer from 0.401 % to 0.389 %; two cells
    gave 3.5° but 0.471 %."""
    smooth_iterations: int = 10
    """Taubin smoothing passes (volume-preserving) before decimation; 0 disables."""
    max_hole_edges: int = 64
    """Close boundary loops up to this many edges (cheap fan fill); larger holes stay open."""
    chunk: int = 1 << 18
    """Points per density query."""


@dataclass
class View:
    """One input view: an (H, W, 4) uint8 RGBA image and its camera."""

    image: np.ndarray
    camera: Camera


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

    from portrait3d.parallel import ordered_map, thread_count

    lo, hi = np.asarray(bounds[:3], dtype=np.float64), np.asarray(bounds[3:], dtype=np.float64)
    n = resolution + 1
    axes = [np.linspace(lo[i], hi[i], n, dtype=np.float32) for i in range(3)]
    # Each view's distance (pixels) from its head mask, for every slab alike.
    gaps = [ndimage.distance_transform_edt(~mask) for mask in masks]
    views = list(zip(depths, masks, gaps, cameras))
    threads = thread_count()

    def fuse(index: np.ndarray) -> np.ndarray:
        """Votes at grid points ``index`` ((N, 3) ints); chunks go to threads (numpy releases the GIL)
        and their results are put side by side, the same for any number of threads."""
        chunks = np.array_split(np.arange(len(index)), max(1, min(threads, len(index))))

        def fuse_chunk(rows: np.ndarray) -> np.ndarray:
            points = np.stack([axes[a][index[rows, a]] for a in range(3)], axis=1)
            return _fuse_points(points, views, truncation)

        return np.concatenate(list(ordered_map(fuse_chunk, chunks, threads=len(chunks))))

    # Nine points in ten are plainly outside (-1) or deep inside (+1), whole regions of them: vote on a
    # coarse lattice first, then only where its cells and their neighbours are not all one such value.
    coarse = np.unique(np.append(np.arange(0, n, FUSION_STRIDE), n - 1))
    lattice = np.stack(np.meshgrid(coarse, coarse, coarse, indexing="ij"), axis=-1).reshape(-1, 3)
    rough = fuse(lattice).reshape((len(coarse),) * 3)
    unsettled = _unsettled_cells(rough)
    cell_of = np.clip(np.searchsorted(coarse, np.arange(n), side="right") - 1, 0, len(coarse) - 2)
    corner = rough[:-1, :-1, :-1]  # a settled cell's value: all its corners have it
    inside = corner[np.ix_(cell_of, cell_of, cell_of)]
    todo = np.argwhere(unsettled[np.ix_(cell_of, cell_of, cell_of)])
    progress.debug(
        f"fuse depth maps: {len(views)} views, {len(lattice)} lattice points, {len(todo)} of {n}³ points voted"
    )
    inside[tuple(todo.T)] = fuse(todo)
    return inside


def _unsettled_cells(lattice: np.ndarray) -> np.ndarray:
    """(C, C, C) float votes on a coarse lattice -> (C-1, C-1, C-1) bool: cells whose inside the lattice
    alone does not tell. A cell is settled when its eight corners and those of its 26 neighbours are all -1
    or all +1. The band of votes about a surface is two truncations deep (at least four cells of the fine
    grid, :data:`FUSION_STRIDE` of them), so a lattice point falls in it near every surface; a cell settled
    by its own corners can still hold the end of a band that no corner of it meets (the test's mesh shows
    one), which its unsettled neighbour gives away."""
    from scipy import ndimage

    corners = [
        lattice[i : i + lattice.shape[0] - 1, j : j + lattice.shape[1] - 1, k : k + lattice.shape[2] - 1]
        for i in (0, 1)
        for j in (0, 1)
        for k in (0, 1)
    ]
    first = corners[0]
    settled = (np.abs(first) == 1.0) & np.logical_and.reduce([c == first for c in corners[1:]])
    return ndimage.binary_dilation(~settled, structure=np.ones((3, 3, 3), dtype=bool))


def _fuse_points(points: np.ndarray, views: Sequence[tuple], truncation: float) -> np.ndarray:
    """:func:`fuse_depth_maps` at (N, 3) float32 ``points``; ``views``: (depth, mask, gap, camera) per view,
    ``gap`` the view's pixel distance from its mask. Returns (N,) float32 in [-1, 1], positive inside."""
    total = np.zeros(len(points), dtype=np.float32)
    count = np.zeros(len(points), dtype=np.float32)
    in_frame = np.zeros(len(points), dtype=np.int32)
    free = np.zeros(len(points), dtype=bool)
    behind = np.zeros(len(points), dtype=np.int32)
    background_seen = np.zeros(len(points), dtype=bool)
    alive = np.arange(len(points))
    for depth, mask, gaps, camera in views:
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
        gap = gaps[px[:, 1], px[:, 0]]
        far = background & (gap > truncation * fx / z + 1.0)
        keep = np.ones(len(alive), dtype=bool)
        keep[np.flatnonzero(in_image)[far]] = False
        alive = alive[keep]
    inside = np.full(len(points), -1.0, dtype=np.float32)  # out of frame, or far from the head
    voted = count > 0
    inside[voted] = -total[voted] / count[voted]
    out_of_frame = len(views) - in_frame
    inside[~voted & ~free] = 1.0
    # Space most views have out of frame is unconstrained (a fit leaves floaters there): outside.
    inside[count + behind < np.maximum(out_of_frame, 1)] = -1.0
    # Background in some view: outside, but near the silhouette keep the votes' distance so that
    # marching cubes interpolates the surface instead of snapping it to the grid.
    inside[background_seen] = np.where(voted[background_seen], np.minimum(inside[background_seen], -1e-3), -1.0)
    return inside


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

    from portrait3d.parallel import ordered_map, thread_count, torch_threads

    size = config.depth_size
    chosen = list(views)[:: max(1, -(-len(views) // max(config.depth_views, 1)))]
    masks = [np.asarray(Image.fromarray(v.image[..., 3]).resize((size, size), Image.BOX)) > 127 for v in chosen]

    def depth(index: int) -> np.ndarray:
        return np.asarray(depth_fn(chosen[index].camera, size, size, masks[index]), dtype=np.float32)

    # Views side by side, each on one torch thread: 16 maps of 256² took 4.7 s on two torch threads, 3.0 s so
    # (docs/BENCHMARKS.md, thirteenth session); the maps are the same.
    threads = thread_count()
    with torch_threads(1 if threads > 1 else 0):
        depths = list(
            progress.bar(ordered_map(depth, range(len(chosen)), threads), total=len(chosen), desc="depth maps")
        )
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
        if config.fused_blur > 0:
            from scipy import ndimage

            cell = (np.asarray(bounds[3:]) - np.asarray(bounds[:3])) / config.resolution
            grid = ndimage.gaussian_filter(grid, config.fused_blur / cell, mode="nearest")
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
