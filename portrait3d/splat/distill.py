"""Gaussians distilled from a run: seeded on the fitted surface, then optimised against the views.

Seeding puts flat discs on the exported mesh (area-uniform samples, the disc's normal on the
surface normal, its size from the area each sample stands for) coloured by the NeRF's radiance
seen head-on. The optimisation then fits every parameter by Adam to the run's RGBA views, and to
renders of the NeRF at cameras above and below the ring where the views say nothing (the crown,
under the chin), composited on a random background each step so that the alpha is learnt too.
Everything here works in PanoHead world units; :func:`portrait3d.splat.gaussians.placed` moves the
result into the files' metres.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from portrait3d.parallel import ordered_map, torch_threads

from .gaussians import Gaussians, logit, quat_from_normals, rgb_to_sh0
from .rasterize import View, render


@dataclass
class Target:
    """One picture to fit: (H, W, 3) colour and (H, W) alpha in [0, 1], at a project camera."""

    rgb: np.ndarray
    alpha: np.ndarray
    camera: Any
    source: str = "view"
    """``view`` (a run view) or ``nerf`` (a render of the field)."""


@dataclass
class DistillOptions:
    """Options of the distillation (the optimisation, not the files)."""

    gaussians: int = 12_000
    """Gaussians seeded on the surface (some are pruned as transparent at the end)."""
    steps: int = 150
    """Optimisation steps (one picture each)."""
    resolution: int = 192
    """Side in pixels of the pictures fitted (views are resized to it)."""
    sh_degree: int = 1
    """Spherical-harmonic degree fitted (0: one colour per Gaussian)."""
    nerf_views: int = 4
    """Cameras off the ring (half above, half below) where the NeRF's render is the target; 0: none."""
    nerf_pitch: float = 45.0
    """Their elevation above and below the ring, degrees."""
    min_opacity: float = 0.02
    """Gaussians fainter than this after the fit are dropped."""
    seed: int = 0
    """Seeds the surface samples and the order of the pictures."""
    cpu_threads: int = 1
    """torch threads while distilling on the CPU (0: leave torch's setting). The rasteriser's tensors are small
    (about 10⁵ elements), where one thread measured about 4x faster than two on a shared 2-core machine
    (docs/BENCHMARKS.md, "Splat export speed")."""


def resize_target(rgba: np.ndarray, camera, size: int, source: str = "view") -> Target:
    """A uint8 (H, W, 4) picture, area-resampled to ``size``², as a :class:`Target`."""
    from PIL import Image

    image = np.asarray(Image.fromarray(rgba).resize((size, size), Image.BOX), dtype=np.float32) / 255.0
    return Target(image[..., :3], image[..., 3], camera, source)


def nerf_targets(field, size: int, count: int, pitch: float) -> list[Target]:
    """Renders of ``field`` at ``count`` cameras above and below the ring (alternating, spread in yaw)."""
    from portrait3d.cameras import camera_from_angles

    def target(i: int) -> Target:
        camera = camera_from_angles(360.0 * i / max(count, 1) + 30.0, pitch if i % 2 == 0 else -pitch)
        rgb, alpha = field.render(camera, size, size, background=(0.0, 0.0, 0.0))
        # The render is premultiplied on black: un-premultiply where there is alpha.
        colour = np.where(alpha[..., None] > 1e-3, rgb / np.maximum(alpha[..., None], 1e-3), 0.0)
        return Target(np.clip(colour, 0, 1).astype(np.float32), alpha, camera, "nerf")

    # A few renders at a time (their rays are independent; torch lets go of Python's lock).
    return list(ordered_map(target, range(count)))


def seed_on_surface(vertices: np.ndarray, faces: np.ndarray, count: int, field=None, seed: int = 0) -> Gaussians:
    """``count`` flat Gaussians on a triangle mesh (world units), coloured by ``field`` when given.

    Args:
        vertices: (V, 3), faces: (F, 3) the surface.
        count: Gaussians to place.
        field: an object with ``rgb(points, view_dirs)`` (torch, (N, 3) each); None: grey.
    """
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    points, face_index = trimesh.sample.sample_surface(mesh, count, seed=seed)
    normals = np.asarray(mesh.face_normals)[face_index]
    spacing = math.sqrt(float(mesh.area) / count)
    if field is not None:
        with torch.no_grad():
            p = torch.as_tensor(points, dtype=torch.float32)
            n = torch.as_tensor(normals, dtype=torch.float32)
            rgb = field.rgb(p + 0.002 * n, -n).clamp(0, 1).numpy()
    else:
        rgb = np.full((count, 3), 0.5, np.float32)
    k = 1
    sh = np.zeros((count, k, 3), np.float32)
    sh[:, 0] = rgb_to_sh0(rgb)
    scales = np.tile(np.array([spacing * 0.6, spacing * 0.6, spacing * 0.06], np.float32), (count, 1))
    return Gaussians(
        points.astype(np.float32),
        np.log(scales),
        quat_from_normals(normals),
        np.full(count, logit(np.array(0.8)), np.float32),
        sh,
    ).numpy()


def optimise(
    seedlings: Gaussians,
    targets: list[Target],
    options: DistillOptions,
    device: str = "cpu",
    backend: str = "auto",
    steps: Iterable[int] | None = None,
) -> Gaussians:
    """Fit ``seedlings`` to ``targets`` by Adam; returns the fitted Gaussians (numpy) without the faint ones.

    ``steps``: the step indices to run (e.g. wrapped in a progress bar); default ``range(options.steps)``.
    """
    generator = torch.Generator().manual_seed(options.seed)
    g = seedlings.numpy()
    k = (options.sh_degree + 1) ** 2
    sh = np.zeros((len(g), k, 3), np.float32)
    sh[:, : g.sh.shape[1]] = g.sh[:, :k]
    params = {
        "means": torch.tensor(g.means, device=device, requires_grad=True),
        "log_scales": torch.tensor(g.log_scales, device=device, requires_grad=True),
        "quats": torch.tensor(g.quats, device=device, requires_grad=True),
        "opacity_logits": torch.tensor(g.opacity_logits, device=device, requires_grad=True),
        "dc": torch.tensor(sh[:, :1], device=device, requires_grad=True),
        "rest": torch.tensor(sh[:, 1:], device=device, requires_grad=True),
    }
    extent = float(np.ptp(g.means, axis=0).max()) or 1.0
    rates = {
        "means": 2e-4 * extent,
        "log_scales": 5e-3,
        "quats": 1e-3,
        "opacity_logits": 5e-2,
        "dc": 2.5e-3,
        "rest": 2.5e-3 / 20,
    }
    optimiser = torch.optim.Adam([{"params": [params[n]], "lr": rates[n], "name": n} for n in params], eps=1e-15)
    views = [View.from_camera(t.camera, t.rgb.shape[1], t.rgb.shape[0], device) for t in targets]
    pictures = [(torch.as_tensor(t.rgb, device=device), torch.as_tensor(t.alpha, device=device)) for t in targets]
    order = torch.randperm(len(targets) * (options.steps // max(len(targets), 1) + 1), generator=generator)
    with torch_threads(options.cpu_threads, device):
        for step in steps if steps is not None else range(options.steps):
            i = int(order[step]) % len(targets)
            rgb, alpha = pictures[i]
            background = torch.rand(3, generator=generator).to(device)
            current = Gaussians(
                params["means"], params["log_scales"], params["quats"], params["opacity_logits"],
                torch.cat([params["dc"], params["rest"]], dim=1),
            )  # fmt: skip
            out_rgb, out_alpha = render(current, views[i], background, backend=backend)
            target = rgb * alpha[..., None] + (1 - alpha[..., None]) * background
            loss = (out_rgb - target).abs().mean() + 0.5 * (out_alpha - alpha).abs().mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        fitted = Gaussians(
            params["means"], params["log_scales"], params["quats"], params["opacity_logits"],
            torch.cat([params["dc"], params["rest"]], dim=1),
        ).numpy()  # fmt: skip
    keep = 1 / (1 + np.exp(-fitted.opacity_logits)) >= options.min_opacity
    return fitted.subset(keep)
