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
DEFAULT_BOUNDS = (-0.6, -0.6, -0.6, 0.6, 0.6, 0.6)
"""Search box when neither the options nor the field give one: a PanoHead head with room to spare."""
RgbFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""((N, 3) points, (N, 3) unit view directions) -> (N, 3) colours in [0, 1]."""


@dataclass
class MeshConfig:
    """How the surface is extracted and cleaned."""

    resolution: int = 192
    """Marching-cubes grid cells per axis over ``bounds``."""
    threshold: float = 10.0
    """Density iso-level of the surface (the field's density units, 1/world unit)."""
    bounds: tuple[float, float, float, float, float, float] | None = None
    """Box searched for the surface: (xmin, ymin, zmin, xmax, ymax, zmax) in PanoHead units;
    None: the field's own cube (``field.config.half_extent``) or :data:`DEFAULT_BOUNDS`."""
    triangles: int = 50_000
    """Triangle budget after decimation."""
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
    threshold: float = MeshConfig.threshold,
    chunk: int = MeshConfig.chunk,
) -> trimesh.Trimesh:
    """Marching cubes on the density field: the iso-surface ``density == threshold``.

    Returns:
        The raw surface in world units with outward-facing triangles.
    """
    import mcubes

    grid = density_grid(density_fn, bounds, resolution, chunk)
    if not (grid.max() > threshold):
        raise ValueError(f"no density above the threshold {threshold} inside the bounds (max {grid.max():.3g})")
    # Close the surface where it leaves the box, so that cut-off necks still give a closed mesh.
    grid[[0, -1], :, :] = 0.0
    grid[:, [0, -1], :] = 0.0
    grid[:, :, [0, -1]] = 0.0
    verts, faces = mcubes.marching_cubes(grid, threshold)
    lo, hi = np.asarray(bounds[:3], dtype=np.float64), np.asarray(bounds[3:], dtype=np.float64)
    verts = lo + verts * (hi - lo) / resolution
    mesh = trimesh.Trimesh(verts, faces.astype(np.int64), process=True)
    # Where the iso-level passes exactly through grid corners marching cubes makes zero-area triangles.
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.remove_unreferenced_vertices()
    mesh.merge_vertices()
    if mesh.volume < 0:  # the density is high inside: make the normals point out
        mesh.invert()
    return mesh


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


def surface_from_field(density_fn: DensityFn, config: MeshConfig) -> trimesh.Trimesh:
    """The whole geometry pipeline: extract, keep the head, close small holes, smooth, decimate."""
    if config.resolution < 8:
        raise ValueError("the marching-cubes resolution must be at least 8")
    mesh = extract_mesh(density_fn, config.bounds or DEFAULT_BOUNDS, config.resolution, config.threshold, config.chunk)
    progress.debug(f"marching cubes: {len(mesh.faces)} faces")
    mesh = keep_largest_component(mesh)
    mesh = close_small_holes(mesh, config.max_hole_edges)
    if config.smooth_iterations > 0:
        trimesh.smoothing.filter_taubin(mesh, iterations=config.smooth_iterations)
    mesh = decimate(mesh, config.triangles)
    mesh.remove_unreferenced_vertices()
    progress.debug(f"cleaned mesh: {len(mesh.faces)} faces, watertight={mesh.is_watertight}")
    return mesh


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
    """

    rows: np.ndarray
    cols: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    covered: np.ndarray


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
    return Texels(rows.ravel()[covered], cols.ravel()[covered], points, normals, covered.reshape(size, size))


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
    for view in progress.bar(views, desc="texture from views"):
        h, w = view.image.shape[:2]
        cam = view.camera
        to_camera = cam.position - texels.points
        to_camera /= np.linalg.norm(to_camera, axis=1, keepdims=True)
        cos = np.sum(texels.normals * to_camera, axis=1)
        uv, depth = cam.project(texels.points, w, h)
        inside = (cos > 0.05) & (depth > 0) & np.all((uv >= 0) & (uv < [w, h]), axis=1)
        idx = np.flatnonzero(inside)
        if len(idx) == 0:
            continue
        depth_map = renderer.render_depth(cam, (w, h))
        px = np.clip(uv[idx].astype(np.int64), 0, [w - 1, h - 1])
        visible = np.abs(depth_map[px[:, 1], px[:, 0]] - depth[idx]) < config.depth_tolerance
        idx = idx[visible]
        rgba = _bilinear(view.image.astype(np.float64) / 255.0, uv[idx])
        wgt = np.power(cos[idx], config.angle_power) * rgba[:, 3]
        total[idx] += rgba[:, :3] * wgt[:, None]
        weight[idx] += wgt
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
            tree = spatial.cKDTree(texels.points[known])
            _, nearest = tree.query(texels.points[~known])
            colours[~known] = colours[known][nearest]
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
