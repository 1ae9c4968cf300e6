"""Occupancy-guided ray marching and volume rendering in pure torch.

The occupancy grid is a boolean voxel grid over the field's cube, indexed
``[x, y, z]`` like nerfacc's ``OccGridEstimator`` (so its bits can be handed to
nerfacc on CUDA). It starts as the visual hull of the foreground masks (a voxel
stays only if it projects inside every mask that sees it) and then follows the
field's density as in instant-NGP. Rays take fixed-size steps through the cube
and the field is evaluated only at steps inside occupied voxels.

This module is the CPU sampler and the reference the CUDA (nerfacc) path is
checked against: :func:`march` + :func:`composite` give the same result as
nerfacc's ``sampling`` + ``rendering`` for the same grid and step size, minus
its early ray termination.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from portrait3d.cameras import Camera


class OccupancyGrid(nn.Module):
    """A ``resolution^3`` grid of occupied voxels over ``[-half_extent, half_extent]^3``.

    Args:
        half_extent: half side of the cube (world units).
        resolution: voxels per side.
    """

    def __init__(self, half_extent: float, resolution: int = 128) -> None:
        super().__init__()
        self.half_extent = float(half_extent)
        self.resolution = int(resolution)
        shape = (resolution, resolution, resolution)
        self.register_buffer("occupied", torch.ones(shape, dtype=torch.bool))
        self.register_buffer("hull", torch.ones(shape, dtype=torch.bool))
        self.register_buffer("density_ema", torch.zeros(shape))

    @property
    def voxel_size(self) -> float:
        return 2.0 * self.half_extent / self.resolution

    def voxel_centres(self) -> torch.Tensor:
        """World centres of all voxels: (R, R, R, 3)."""
        r = self.resolution
        axis = (torch.arange(r, device=self.occupied.device, dtype=torch.float32) + 0.5) * self.voxel_size
        axis = axis - self.half_extent
        return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)

    def voxel_index(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat voxel index of world points and whether they are inside the cube: (..., 3) -> (...), (...)."""
        unit = (points + self.half_extent) / (2.0 * self.half_extent)
        inside = ((unit >= 0.0) & (unit < 1.0)).all(dim=-1)
        ijk = (unit * self.resolution).long().clamp(0, self.resolution - 1)
        r = self.resolution
        return (ijk[..., 0] * r + ijk[..., 1]) * r + ijk[..., 2], inside

    def is_occupied(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) world points -> (...) bool."""
        index, inside = self.voxel_index(points)
        return self.occupied.reshape(-1)[index] & inside

    @torch.no_grad()
    def carve(self, cameras: list[Camera], masks: torch.Tensor, dilate_px: int = 2) -> None:
        """Initialise the grid as the visual hull of foreground masks.

        Args:
            cameras: one camera per mask.
            masks: (V, H, W) bool foreground masks.
            dilate_px: grow each mask by this many pixels first, so that thin
                parts and small calibration errors are not carved away.
        """
        v, h, w = masks.shape
        grown = masks.float()[:, None]
        if dilate_px > 0:
            k = 2 * dilate_px + 1
            grown = torch.nn.functional.max_pool2d(grown, k, stride=1, padding=dilate_px)
        grown = grown[:, 0] > 0.5
        # A voxel's half diagonal, so that voxels the surface only grazes survive.
        slack = 0.5 * math.sqrt(3.0) * self.voxel_size
        centres = self.voxel_centres().reshape(-1, 3).double()
        keep = torch.ones(centres.shape[0], dtype=torch.bool, device=centres.device)
        for cam, mask in zip(cameras, grown):
            w2c = torch.as_tensor(cam.world2cam, dtype=torch.float64, device=centres.device)
            k_mat = torch.as_tensor(cam.intrinsic_matrix(w, h), dtype=torch.float64, device=centres.device)
            cam_pts = centres @ w2c[:3, :3].T + w2c[:3, 3]
            depth = cam_pts[:, 2].clamp(min=1e-6)
            u = cam_pts[:, 0] / depth * k_mat[0, 0] + k_mat[0, 2]
            vv = cam_pts[:, 1] / depth * k_mat[1, 1] + k_mat[1, 2]
            # Grow the footprint by the voxel's projected slack, in pixels, by sampling the mask a bit wider.
            radius_px = int(math.ceil(slack * k_mat[0, 0].item() / max(float(depth.min()), 1e-6)))
            in_image = (u >= 0) & (u < w) & (vv >= 0) & (vv < h) & (cam_pts[:, 2] > 0)
            ui = u.long().clamp(0, w - 1)
            vi = vv.long().clamp(0, h - 1)
            seen = _grow(mask, radius_px)[vi, ui]
            keep &= seen | ~in_image
        self.hull.copy_(keep.reshape(self.hull.shape))
        self.occupied.copy_(self.hull)
        self.density_ema.zero_()

    @torch.no_grad()
    def update(self, density_fn, threshold: float, decay: float = 0.95, samples: int = 1 << 17) -> None:
        """Follow the field: decay each voxel's density estimate, refresh a random subset, re-threshold.

        Args:
            density_fn: ``(N, 3) world points -> (N,) density``.
            threshold: density below which a voxel is empty.
            decay: exponential decay of the per-voxel estimate.
            samples: voxels of the hull refreshed per call.
        """
        candidates = torch.nonzero(self.hull.reshape(-1), as_tuple=False)[:, 0]
        if candidates.numel() == 0:
            return
        pick = candidates[torch.randint(candidates.numel(), (min(samples, candidates.numel()),), device=candidates.device)]
        r = self.resolution
        ijk = torch.stack([pick // (r * r), (pick // r) % r, pick % r], dim=-1).float()
        jitter = torch.rand_like(ijk)
        points = (ijk + jitter) * self.voxel_size - self.half_extent
        density = density_fn(points).float()
        ema = self.density_ema.reshape(-1)
        ema.mul_(decay)
        ema[pick] = torch.maximum(ema[pick], density)
        self.occupied.copy_((self.density_ema > threshold) & self.hull)


def _grow(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Dilate a (H, W) bool mask by ``radius`` pixels."""
    if radius <= 0:
        return mask
    k = 2 * radius + 1
    return torch.nn.functional.max_pool2d(mask.float()[None, None], k, stride=1, padding=radius)[0, 0] > 0.5


def ray_cube_interval(
    origins: torch.Tensor, directions: torch.Tensor, half_extent: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances of rays through the cube ``[-half_extent, half_extent]^3``.

    Args:
        origins, directions: (B, 3) each.
    Returns:
        ``(t_near, t_far)``: (B,) each; ``t_far <= t_near`` where the ray misses.
    """
    safe = torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t0 = (-half_extent - origins) / safe
    t1 = (half_extent - origins) / safe
    t_near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=0.0)
    t_far = torch.maximum(t0, t1).amin(dim=-1)
    return t_near, t_far


def march(
    grid: OccupancyGrid,
    origins: torch.Tensor,
    directions: torch.Tensor,
    step: float,
    jitter: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-size steps through the cube, keeping those in occupied voxels.

    Args:
        grid: the occupancy grid.
        origins, directions: (B, 3) rays; directions unit length.
        step: step size (world units).
        jitter: offset each ray's steps by a random fraction of a step (training).
    Returns:
        ``(t_mid, keep)``: (B, K) distances of the step midpoints and (B, K) bool
        for steps to evaluate; K covers the cube's diagonal.
    """
    num_steps = int(math.ceil(2.0 * math.sqrt(3.0) * grid.half_extent / step))
    t_near, t_far = ray_cube_interval(origins, directions, grid.half_extent)
    offset = torch.rand_like(t_near) if jitter else torch.full_like(t_near, 0.5)
    t_mid = t_near[:, None] + (torch.arange(num_steps, device=origins.device)[None] + offset[:, None]) * step
    keep = t_mid < t_far[:, None]
    points = origins[:, None, :] + directions[:, None, :] * t_mid[..., None]
    keep &= grid.is_occupied(points)
    return t_mid, keep


def composite(
    density: torch.Tensor, rgb: torch.Tensor, step: float, background: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Volume rendering of per-step densities and colours (zeros where not evaluated).

    Args:
        density: (B, K) densities.
        rgb: (B, K, 3) colours.
        step: step size.
        background: (B, 3) or (3,) colour behind the volume.
    Returns:
        ``(rgb (B, 3), accumulation (B,), weights (B, K))``.
    """
    optical = density * step
    alpha = 1.0 - torch.exp(-optical)
    # Transmittance before each step: exp(-sum of the optical depths in front of it).
    transmittance = torch.exp(-(torch.cumsum(optical, dim=-1) - optical))
    weights = alpha * transmittance
    accumulation = weights.sum(dim=-1)
    color = (weights[..., None] * rgb).sum(dim=-2) + (1.0 - accumulation[:, None]) * background
    return color, accumulation, weights


def render_rays(
    field,
    grid: OccupancyGrid,
    origins: torch.Tensor,
    directions: torch.Tensor,
    step: float,
    background: torch.Tensor,
    jitter: bool = False,
) -> dict[str, torch.Tensor]:
    """March, query the field at occupied steps and composite.

    Args:
        field: an :class:`nerf.field.NGPField` (``forward(points, dirs) -> (density, rgb)``).
        grid: the occupancy grid.
        origins, directions: (B, 3) rays, directions unit length.
        step: step size.
        background: (B, 3) or (3,) background colour.
        jitter: random step offsets (training).
    Returns:
        ``rgb`` (B, 3), ``accumulation`` (B,), ``depth`` (B,) (expected distance,
        cube exit where empty), ``num_samples`` (scalar).
    """
    t_mid, keep = march(grid, origins, directions, step, jitter)
    b, k = t_mid.shape
    density = torch.zeros(b, k, device=origins.device)
    rgb = torch.zeros(b, k, 3, device=origins.device)
    if keep.any():
        ray_index, step_index = torch.nonzero(keep, as_tuple=True)
        dirs = directions[ray_index]
        points = origins[ray_index] + dirs * t_mid[ray_index, step_index, None]
        d, c = field(points, dirs)
        density = density.index_put((ray_index, step_index), d.float())
        rgb = rgb.index_put((ray_index, step_index), c.float())
    color, accumulation, weights = composite(density, rgb, step, background)
    depth = (weights * t_mid).sum(dim=-1) + (1.0 - accumulation) * t_mid[:, -1]
    return {
        "rgb": color,
        "accumulation": accumulation,
        "depth": depth,
        "num_samples": keep.sum(),
    }
