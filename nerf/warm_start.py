"""Warm start: the field begins as the proxy head instead of as fog.

Both view generators follow the proxy head (the proxy generator renders it; the diffusion generator
takes its renders as camera condition and initial noise), and ``proxy/head.ply`` is a closed surface
with vertex colours. So before the photometric fit, the density is regressed onto a soft occupancy of
the proxy's signed distance, ``peak * sigmoid(-(sdf - centre) / width)`` (solid inside, empty a few
millimetres outside; :func:`step_centre` puts its median depth on the proxy), the colour near the surface
onto the proxy's colour, and the occupancy grid is narrowed to a band around the proxy. The fit then
refines a head instead of discovering one. Regression steps query the field at random points only (no ray
marching), so they cost a fraction of a fit step. Through the fit, :func:`anchor_loss` keeps the density to
the proxy's shape outside a narrow band (the proxy anchor).

It knows meshes (open3d signed distances and closest points) and the field's two heads; it does not
know views or losses of the fit. Views that do not come from the proxy want a cold start
(:attr:`WarmStartConfig.enabled` False).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nerf.field import spherical_harmonics

PROXY_MESH = "proxy/head.ply"
"""The run-relative proxy head (written by the proxy stage)."""


@dataclass
class WarmStartConfig:
    """Start the field from the proxy head (``proxy/head.ply``)."""

    enabled: bool = True
    """Start from the proxy head when the run has one; False: a cold start (fog in the visual hull),
    for views that do not follow the proxy."""
    steps: int = 100
    """Regression steps onto the proxy's density and colour."""
    points_per_step: int = 4096
    """Random points per regression step (half near the surface, half anywhere in the cube)."""
    width: float = 0.004
    """Width (world units) of the soft step of the density across the proxy's surface."""
    peak_density: float = 400.0
    """Density (1 / world unit) deep inside the proxy: opaque within a sample or two."""
    margin: float = 0.06
    """Voxels within this distance (world units) outside the proxy stay in the occupancy grid's hull, so
    the fit can grow the head where the views show more than the proxy."""
    inner_margin: float = 0.024
    """Voxels deeper than this inside the proxy leave the occupancy grid's hull: rays stop at an opaque head, so
    the inside is never seen, and marching it costs steps (the fit's first rounds evaluate eight steps a ray).
    The surface can still sink this far into the proxy (1 cm at the export's scale)."""
    start_margin: float = 0.024
    """Until the grid first follows the density (``FitConfig.occupancy_warmup_steps``), rays are sampled
    only within this distance outside the proxy: about where the start's density passes the grid's
    threshold (``width * ln(peak_density)``). The rest of the ``margin`` band holds no head, and on the
    sample its empty steps were a third of the first steps' field evaluations."""
    colour_weight: float = 1.0
    """Weight of the colour regression (0: density only)."""
    learning_rate: float = 1e-2
    """Adam learning rate of the regression."""
    anchor_weight: float = 0.0
    """Weight of a loss that keeps the density near the proxy's through the whole fit (0: off; see
    :func:`anchor_loss`). Views that disagree with each other (generated views) then cannot grow bumps or dig
    pits that the proxy does not have; views that agree move the surface within ``anchor_tolerance``. Off for
    the proxy's own renders: on a real head's views it sharpens the outline but roughens the skin (held-out
    SSIM 0.919 → 0.89-0.90; docs/BENCHMARKS.md, "Fewer steps for the proxy's renders")."""
    anchor_inside_share: float = math.exp(-2.0)
    """Deeper inside than ``anchor_tolerance``, the anchor counts a density below this share of
    ``peak_density`` as a pit. At 1 the fused surface keeps to an exact proxy better (Chamfer 0.20 % against
    0.35 % on the benchmark's head after 500 steps); on a real head's views it roughens the skin as e⁻² does."""
    anchor_points: int = 1024
    """Points near the proxy's surface at which each fit step measures the anchor loss."""
    anchor_tolerance: float = 0.003
    """Band (world units) on each side of the proxy's surface where the anchor leaves the density to the views
    (0.003: about 1.2 mm at the export's scale; on the benchmark, 0.006 kept 0.47 % Chamfer where 0.003 kept 0.39 %)."""


class ProxyPrior:
    """Signed distance and colour of a closed mesh with vertex colours, cheap to query many times.

    Near the surface, points are drawn as vertices moved along their normals, whose signed distance is
    the move (exact to the curvature: a head's radius is 30 times the band used here) and whose colour
    is the vertex's. Anywhere else, a signed distance grid (the surface's voxels filled inside, then
    a Euclidean distance transform) is interpolated; it is off by up to a voxel, which
    only matters near the surface, where the drawn points decide.

    Args:
        vertices: (V, 3) float world points.
        faces: (F, 3) int triangles, outward winding.
        colours: (V, 3) float in [0, 1] vertex colours.
        half_extent: the grid covers ``[-half_extent, half_extent]^3``.
        resolution: grid voxels per side.
    """

    def __init__(
        self, vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray, half_extent: float, resolution: int = 128
    ) -> None:
        import trimesh

        mesh = trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64), process=False)
        if mesh.volume < 0:  # inward winding: the normals (and so the signs) would be flipped
            mesh.invert()
        self.vertices = torch.as_tensor(np.array(mesh.vertices), dtype=torch.float32)
        self.normals = torch.as_tensor(np.array(mesh.vertex_normals), dtype=torch.float32)
        self.colours = torch.as_tensor(np.asarray(colours), dtype=torch.float32)
        self.half_extent = float(half_extent)
        self.sdf_grid = torch.as_tensor(_sdf_grid(mesh, half_extent, resolution))  # (R, R, R), [x, y, z]
        self.voxel = 2.0 * self.half_extent / resolution

    @classmethod
    def from_run(cls, run_dir: str | Path, half_extent: float, resolution: int = 128) -> ProxyPrior | None:
        """The run's proxy head, or None when it has none."""
        import trimesh

        path = Path(run_dir) / PROXY_MESH
        if not path.is_file():
            return None
        mesh = trimesh.load(path, process=False, force="mesh")
        colours = getattr(mesh.visual, "vertex_colors", None)
        rgb = (
            np.asarray(colours, dtype=np.float32)[:, :3] / 255.0
            if colours is not None and len(colours) == len(mesh.vertices)
            else np.full((len(mesh.vertices), 3), 0.5, dtype=np.float32)
        )
        return cls(np.asarray(mesh.vertices), np.asarray(mesh.faces), rgb, half_extent, resolution)

    def signed_distance(self, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) world points -> (N,) signed distance from the grid (negative inside; off by up to a voxel)."""
        unit = points / self.half_extent  # grid_sample's [-1, 1], x indexes the last axis
        grid = self.sdf_grid.to(points.device).permute(2, 1, 0)[None, None]  # (1, 1, z, y, x)
        values = torch.nn.functional.grid_sample(
            grid, unit[None, None, None], mode="bilinear", padding_mode="border", align_corners=False
        )
        return values.reshape(-1)

    def near_surface(self, count: int, spread: float, generator: torch.Generator):
        """Up to ``count`` points near the surface: (points (N, 3), signed distance (N,), colour (N, 3)).

        A vertex moved along its normal has the move as its signed distance only until it nears another part of
        the surface: moved inward at the nose tip, it leaves the nose on the other side. Draws whose grid distance
        differs from the move by more than a voxel (the grid's own error) are left out; with them, the anchor
        asked for density in front of the nose tip (docs/BENCHMARKS.md, "The anchor on a real head's views").
        """
        pick = torch.randint(self.vertices.shape[0], (count,), generator=generator)
        offset = spread * torch.randn(count, generator=generator)
        points = self.vertices[pick] + self.normals[pick] * offset[:, None]
        keep = (self.signed_distance(points) - offset).abs() < self.voxel
        return points[keep], offset[keep], self.colours[pick[keep]]


def _sdf_grid(mesh, half_extent: float, resolution: int) -> np.ndarray:
    """(R, R, R) float32 signed distance (world units, negative inside) at voxel centres, indexed [x, y, z].

    The voxels are filled on a lattice that holds the whole mesh and two voxels more (a head's neck may leave
    the cube): filled on the cube alone, a surface cut open by the cube's side has no inside at all.
    """
    import trimesh
    from scipy import ndimage

    voxel = 2.0 * half_extent / resolution
    low = np.maximum(np.ceil((-half_extent - mesh.bounds[0]) / voxel), 0).astype(np.int64) + 2
    high = np.maximum(np.ceil((mesh.bounds[1] - half_extent) / voxel), 0).astype(np.int64) + 2
    shape = tuple(int(n) for n in resolution + low + high)
    origin = -half_extent - low * voxel
    # Surface voxels: the mesh sampled densely enough that every crossed voxel gets a point.
    count = int(mesh.area / (0.25 * voxel) ** 2) + len(mesh.vertices)
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=0)
    ijk = np.floor((points - origin) / voxel).astype(np.int64)
    ijk = ijk[np.all((ijk >= 0) & (ijk < np.array(shape)), axis=1)]
    surface = np.zeros(shape, dtype=bool)
    surface[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = True
    inside = ndimage.binary_fill_holes(surface) & ~surface
    # Distance to the nearest surface voxel's centre (those lie within a voxel of the surface on both
    # sides, so the error has no bias), signed by the filled inside.
    distance = ndimage.distance_transform_edt(~surface) * voxel
    sdf = np.where(inside, -distance, distance)
    cube = tuple(slice(int(lo), int(lo) + resolution) for lo in low)
    return np.ascontiguousarray(sdf[cube]).astype(np.float32)


def step_centre(config: WarmStartConfig) -> float:
    """Signed distance (world units, negative: inside) at which the soft step is at half its peak, chosen so
    that a ray meeting the proxy head-on is half absorbed exactly at the proxy's surface.

    The optical depth a ray gathers from far outside down to the surface is
    ``peak * width * softplus(centre / width)``; setting it to ln 2 puts the median depth (what the mesh is
    fused from, :mod:`nerf.median_depth`) on the proxy. With the step centred on the surface instead, the
    median depth lay ``2.4e-3`` outside it (0.57 % of the benchmark head's diagonal in the exported mesh).
    """
    product = config.peak_density * config.width
    return config.width * math.log(math.expm1(math.log(2.0) / product))


def target_log_density(sdf: torch.Tensor, config: WarmStartConfig) -> torch.Tensor:
    """log of ``peak * sigmoid(-(sdf - centre) / width)`` (``centre``: :func:`step_centre`), floored at
    log(1e-3): (N,) -> (N,)."""
    centred = (sdf - step_centre(config)) / config.width
    log = math.log(config.peak_density) + torch.nn.functional.logsigmoid(-centred)
    return log.clamp(min=math.log(1e-3))


@torch.no_grad()
def narrow_occupancy(
    grid, prior: ProxyPrior, margin: float, start_margin: float | None = None, inner_margin: float | None = None
) -> float:
    """Keep only the hull voxels from ``inner_margin`` (None: ``margin``) inside the proxy's surface to ``margin``
    outside it, and occupy those within ``start_margin`` (None: ``margin``) of it until the grid follows the
    density. Returns the hull's share.
    """
    sdf = prior.signed_distance(grid.voxel_centres().reshape(-1, 3).cpu()).to(grid.hull.device)
    sdf = sdf.reshape(grid.hull.shape)
    reach = 0.5 * math.sqrt(3.0) * grid.voxel_size  # from a voxel's centre to its corners
    start = margin if start_margin is None else start_margin
    grid.hull &= (sdf - reach < margin) & (sdf + reach > -(margin if inner_margin is None else inner_margin))
    grid.occupied.copy_(grid.hull & (sdf - reach < start) & (sdf + reach > -start))
    return float(grid.hull.float().mean())


def regress_to_proxy(volume, prior: ProxyPrior, config: WarmStartConfig, generator: torch.Generator) -> dict:
    """Fit ``volume.field``'s density (and colour) to the proxy; the occupancy grid is left to the caller.

    ``generator`` is a CPU generator (points are drawn on the CPU and moved to the field's device).

    Returns:
        ``{"density_loss", "colour_loss"}`` of the last step.
    """
    field = volume.field
    device = next(field.parameters()).device
    half = field.config.half_extent
    optimizer = torch.optim.Adam(field.parameters(), lr=config.learning_rate, betas=(0.9, 0.99), eps=1e-15)
    n_near = config.points_per_step // 2
    band = 4.0 * config.width + 0.01  # where a ray stops: colour is learnt there
    density_loss = colour_loss = torch.zeros(())
    for _ in range(config.steps):
        near, near_sdf, near_colour = prior.near_surface(n_near, 0.02, generator)
        anywhere = (torch.rand(config.points_per_step - n_near, 3, generator=generator) * 2 - 1) * half
        far_sdf = prior.signed_distance(anywhere)
        # The grid is coarse near the surface, where the drawn points know better: leave it out there.
        far = far_sdf.abs() > 0.02
        points = torch.cat([near, anywhere[far]]).to(device)
        sdf = torch.cat([near_sdf, far_sdf[far]]).to(device)
        log_density, geo, inside = field.geometry_logits(points)
        density_loss = torch.mean((log_density - target_log_density(sdf, config)) ** 2 * inside)
        loss = density_loss
        if config.colour_weight > 0:
            seen = torch.nonzero(near_sdf.abs() < band, as_tuple=True)[0].to(device)
            dirs = torch.nn.functional.normalize(torch.randn(seen.numel(), 3, generator=generator), dim=-1).to(device)
            rgb = field.colour_from_features(geo[seen], spherical_harmonics(dirs))
            colour_loss = torch.mean((rgb - near_colour.to(device)[seen]) ** 2)
            loss = loss + config.colour_weight * colour_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return {
        "density_loss": round(float(density_loss.detach()), 4),
        "colour_loss": round(float(colour_loss.detach()), 5),
    }


def anchor_loss(field, prior: ProxyPrior, config: WarmStartConfig, generator: torch.Generator) -> torch.Tensor:
    """How far the density breaks the proxy's shape at ``config.anchor_points`` points drawn near the proxy's
    surface (CPU ``generator``), a scalar.

    One-sided: a point more than ``config.anchor_tolerance`` outside the proxy is only penalised for a density
    above 1 per world unit (a fin, a floater), one as far inside only for a density below
    ``peak_density * anchor_inside_share`` (a pit). Within the band, and wherever the density already keeps to
    the proxy's shape, it costs nothing: the warm start's soft step as a target would hold a fog of its own width
    outside the head.
    """
    device = next(field.parameters()).device
    points, sdf, _ = prior.near_surface(config.anchor_points, 0.02, generator)
    sdf = sdf.to(device)
    log_density, _, inside = field.geometry_logits(points.to(device))
    too_dense = torch.relu(log_density) * (sdf > config.anchor_tolerance)
    floor = math.log(config.peak_density * config.anchor_inside_share)
    too_thin = torch.relu(floor - log_density) * (sdf < -config.anchor_tolerance)
    return torch.mean((too_dense**2 + too_thin**2) * inside)


def load_prior(volume, run_dir: str | Path, config: WarmStartConfig) -> ProxyPrior | None:
    """The run's proxy head as a :class:`ProxyPrior` for ``volume``'s cube, or None (no proxy, or the option off)."""
    if not config.enabled:
        return None
    return ProxyPrior.from_run(run_dir, volume.config.field.half_extent, volume.config.grid_resolution)


def warm_start(volume, prior: ProxyPrior, config: WarmStartConfig, seed: int = 0) -> dict:
    """Start ``volume`` from the proxy head ``prior`` (after the grid's visual hull is carved).

    Its random points come from a CPU generator seeded with ``seed`` whatever the device (the prior's
    tables live on the CPU; points go to the field's device), so the fit's own random stream is untouched.

    Returns:
        What was done, for the report.
    """
    kept = narrow_occupancy(volume.grid, prior, config.margin, config.start_margin, config.inner_margin)
    losses = regress_to_proxy(volume, prior, config, torch.Generator().manual_seed(seed))
    occupied = float(volume.grid.occupied.float().mean())
    return {"steps": config.steps, "occupancy_kept": round(kept, 4), "occupied_at_start": round(occupied, 4), **losses}
