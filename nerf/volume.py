"""The fitted scene: a radiance field plus its occupancy grid, rendered along rays.

:class:`NGPVolume` is what the fit trains, what the checkpoint stores (inside
the nerfstudio model, under ``_model.volume.``) and what
:func:`nerf.fit.load_field` hands to mesh extraction and turntables. It marches
rays with the pure-torch sampler of :mod:`nerf.occupancy` on a CPU and with
nerfacc's ``OccGridEstimator`` on CUDA (same grid bits, same step size).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from nerf.field import FieldConfig, NGPField, spherical_harmonics
from nerf.median_depth import render_median_depth
from nerf.occupancy import OccupancyGrid, render_rays
from portrait3d.cameras import Camera


@dataclass
class VolumeConfig:
    """The radiance field, its occupancy grid and how rays step through it."""

    field: FieldConfig = field(default_factory=FieldConfig)
    """Hash grid and MLPs."""
    grid_resolution: int = 128
    """Voxels per side of the occupancy grid."""
    render_step_size: float = 1.0 / 192
    """Distance between samples along a ray (world units)."""
    density_threshold: float = 1.0
    """Density (1 / world unit) under which an occupancy voxel counts as empty."""
    sampler: str = "auto"
    """Ray marching: "torch" (works everywhere), "nerfacc" (CUDA only) or "auto" (nerfacc on CUDA)."""


class NGPVolume(nn.Module):
    """Field + occupancy grid. Points and cameras are in PanoHead world coordinates.

    Args:
        config: the volume's settings.
        device_type: "cpu" or "cuda" (picks tinycudann and nerfacc on CUDA).
    """

    def __init__(self, config: VolumeConfig, device_type: str = "cpu") -> None:
        super().__init__()
        self.config = config
        self.field = NGPField(config.field, device_type)
        self.grid = OccupancyGrid(config.field.half_extent, config.grid_resolution)
        use_nerfacc = config.sampler == "nerfacc" or (
            config.sampler == "auto" and device_type == "cuda" and nerfacc_available()
        )
        self.sampler = "nerfacc" if use_nerfacc and device_type == "cuda" else "torch"
        self._estimator = None

    # --- the API used by mesh extraction and turntables --------------------
    def density(self, points: torch.Tensor) -> torch.Tensor:
        """Volume density at world points: (N, 3) -> (N,).

        Zero outside the visual hull of the training masks: no training ray
        constrains the field there, and the masks show that space is empty.
        """
        index, inside = self.grid.voxel_index(points)
        return self.field.density(points) * (self.grid.hull.reshape(-1)[index] & inside)

    def rgb(self, points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
        """Colour at world points seen along unit ``view_dirs``: (N, 3), (N, 3) -> (N, 3)."""
        return self.field.rgb(points, view_dirs)

    @torch.no_grad()
    def render(
        self,
        camera: Camera,
        width: int,
        height: int,
        background: tuple[float, float, float] = (1.0, 1.0, 1.0),
        chunk: int = 8192,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Render one camera.

        Returns:
            ``(rgb, alpha)``: (H, W, 3) float32 in [0, 1] composited over
            ``background``, and (H, W) float32 accumulated opacity.
        """
        device = self.grid.occupied.device
        origins, dirs = camera.rays(width, height)
        origins = torch.as_tensor(origins.reshape(-1, 3), dtype=torch.float32, device=device)
        dirs = torch.as_tensor(dirs.reshape(-1, 3), dtype=torch.float32, device=device)
        bg = torch.tensor(background, dtype=torch.float32, device=device)
        colours, alphas = [], []
        for start in range(0, origins.shape[0], chunk):
            out = self.render_rays(origins[start : start + chunk], dirs[start : start + chunk], bg)
            colours.append(out["rgb"])
            alphas.append(out["accumulation"])
        rgb = torch.cat(colours).reshape(height, width, 3).clamp(0, 1)
        alpha = torch.cat(alphas).reshape(height, width).clamp(0, 1)
        return rgb.cpu().numpy().astype(np.float32), alpha.cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def render_depth(
        self, camera: Camera, width: int, height: int, pixels: np.ndarray | None = None, chunk: int = 8192
    ) -> np.ndarray:
        """Median depth map of one camera (densities only, no colour: cheaper than :meth:`render`).

        Args:
            camera: the camera.
            width, height: image size in pixels.
            pixels: (H, W) bool, the pixels to render (None: all); the others get ``inf``.
        Returns:
            (H, W) float32 depth along the optical axis where the accumulated
            opacity reaches one half (:func:`nerf.median_depth.render_median_depth`), ``inf`` where it never does.
        """
        device = self.grid.occupied.device
        origins, dirs = camera.rays(width, height)
        origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
        # Ray distance -> depth along the optical axis (the camera's +z, OpenCV axes).
        to_z = dirs @ camera.cam2world[:3, 2]
        selected = np.arange(width * height) if pixels is None else np.flatnonzero(np.asarray(pixels).reshape(-1))
        depth = np.full(width * height, np.inf, dtype=np.float32)
        step = self.config.render_step_size
        for start in range(0, len(selected), chunk):
            index = selected[start : start + chunk]
            o = torch.as_tensor(origins[index], dtype=torch.float32, device=device)
            d = torch.as_tensor(dirs[index], dtype=torch.float32, device=device)
            distance = render_median_depth(self.field, self.grid, o, d, step)
            depth[index] = distance.cpu().numpy() * to_z[index]
        return depth.reshape(height, width)

    # --- rays --------------------------------------------------------------
    def render_rays(
        self, origins: torch.Tensor, directions: torch.Tensor, background: torch.Tensor, jitter: bool = False
    ) -> dict[str, torch.Tensor]:
        """Render rays: (B, 3), (B, 3) unit, background (B, 3) or (3,) -> ``rgb``, ``accumulation``, ``depth``."""
        step = self.config.render_step_size
        if self.sampler == "nerfacc" and origins.is_cuda:
            return self._render_nerfacc(origins, directions, background, jitter)
        return render_rays(self.field, self.grid, origins, directions, step, background, jitter)

    def _render_nerfacc(
        self, origins: torch.Tensor, directions: torch.Tensor, background: torch.Tensor, jitter: bool
    ) -> dict[str, torch.Tensor]:
        import nerfacc

        estimator = self.nerfacc_estimator()
        step = self.config.render_step_size

        def positions(t_starts, t_ends, ray_indices):
            return origins[ray_indices] + directions[ray_indices] * ((t_starts + t_ends) * 0.5)[:, None]

        def sigma_fn(t_starts, t_ends, ray_indices):
            return self.field.density(positions(t_starts, t_ends, ray_indices))

        dir_encoding = spherical_harmonics(directions)

        def rgb_sigma_fn(t_starts, t_ends, ray_indices):
            density, rgb = self.field(positions(t_starts, t_ends, ray_indices), dir_encoding=dir_encoding[ray_indices])
            return rgb, density

        ray_indices, t_starts, t_ends = estimator.sampling(
            origins,
            directions,
            sigma_fn=sigma_fn,
            render_step_size=step,
            stratified=jitter,
            alpha_thre=0.0 if jitter else 1e-3,
        )
        bg = background.expand(origins.shape[0], 3) if background.dim() == 1 else background
        rgb, opacity, depth, _ = nerfacc.rendering(
            t_starts, t_ends, ray_indices, n_rays=origins.shape[0], rgb_sigma_fn=rgb_sigma_fn, render_bkgd=bg
        )
        return {
            "rgb": rgb,
            "accumulation": opacity[:, 0],
            "depth": depth[:, 0],
            "num_samples": torch.tensor(ray_indices.shape[0]),
        }

    def nerfacc_estimator(self):
        """nerfacc's ``OccGridEstimator`` over the same cube, carrying this grid's occupied bits."""
        import nerfacc

        if self._estimator is None:
            h = self.config.field.half_extent
            self._estimator = nerfacc.OccGridEstimator(
                roi_aabb=[-h, -h, -h, h, h, h], resolution=self.config.grid_resolution, levels=1
            ).to(self.grid.occupied.device)
        self._estimator.binaries.copy_(self.grid.occupied[None])
        return self._estimator


def nerfacc_available() -> bool:
    """True when nerfacc imports ("auto" falls back to the torch sampler without it, e.g. on a bare GPU image)."""
    try:
        import nerfacc  # noqa: F401
    except Exception:  # noqa: BLE001 - missing or broken (no compiler for its kernels): use the torch sampler
        return False
    return True


def photometric_loss(
    rgb: torch.Tensor,
    accumulation: torch.Tensor,
    target_rgba: torch.Tensor,
    background: torch.Tensor,
    mask_weight: float,
    ray_weight: torch.Tensor | None = None,
    mask_ray_weight: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Losses against RGBA targets composited over the same background as the render.

    Args:
        rgb: (B, 3) rendered colour, composited over ``background``.
        accumulation: (B,) rendered opacity.
        target_rgba: (B, 4) target colour and alpha in [0, 1].
        background: (B, 3) background colour used for the render.
        mask_weight: weight of the opacity-vs-alpha term.
        ray_weight: (B,) weight of each ray's colour term (None: all 1), e.g. a view's reliability.
        mask_ray_weight: (B,) weight of each ray's opacity term (None: all 1): a wrong view's silhouette
            is as wrong as its colours.
    Returns:
        ``rgb_loss`` and ``mask_loss``.
    """
    alpha = target_rgba[:, 3:]
    target = target_rgba[:, :3] * alpha + background * (1.0 - alpha)
    if ray_weight is None:
        rgb_loss = torch.nn.functional.smooth_l1_loss(rgb, target, beta=0.1)
    else:
        per_ray = torch.nn.functional.smooth_l1_loss(rgb, target, beta=0.1, reduction="none").mean(dim=-1)
        rgb_loss = torch.sum(per_ray * ray_weight) / torch.clamp(ray_weight.sum(), min=1e-6)
    mask_error = (accumulation - alpha[:, 0]) ** 2
    if mask_ray_weight is None:
        mask_loss = torch.mean(mask_error)
    else:
        mask_loss = torch.sum(mask_error * mask_ray_weight) / torch.clamp(mask_ray_weight.sum(), min=1e-6)
    return {"rgb_loss": rgb_loss, "mask_loss": mask_weight * mask_loss}
