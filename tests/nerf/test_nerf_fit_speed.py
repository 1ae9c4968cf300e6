"""What a fit step costs: the march covers only the occupied box, a warm-started grid follows the density at once."""

from __future__ import annotations

import dataclasses
import math

import torch

from nerf import dataset, fit, synthetic
from nerf.occupancy import OccupancyGrid, march, ray_cube_interval
from nerf.warm_start import WarmStartConfig
from portrait3d.run import atomic_write_bytes


def _full_cube_march(grid: OccupancyGrid, origins, directions, step: float):
    """The march over the cube's whole diagonal (the reference): (B, K) t_mid, keep."""
    num_steps = int(math.ceil(2.0 * math.sqrt(3.0) * grid.half_extent / step))
    t_near, t_far = ray_cube_interval(origins, directions, grid.half_extent)
    offset = torch.rand_like(t_near)
    t_mid = t_near[:, None] + (torch.arange(num_steps)[None] + offset[:, None]) * step
    points = origins[:, None, :] + directions[:, None, :] * t_mid[..., None]
    keep = (t_mid < t_far[:, None]) & grid.is_occupied(points)
    return t_mid, keep


def test_march_makes_only_the_steps_that_can_meet_the_occupied_box():
    grid = OccupancyGrid(0.5, 32)
    grid.occupied.zero_()
    grid.occupied[10:18, 12:20, 9:15] = True  # a block off the centre
    generator = torch.Generator().manual_seed(0)
    origins = torch.nn.functional.normalize(torch.randn(300, 3, generator=generator), dim=-1) * 2.7
    targets = (torch.rand(300, 3, generator=generator) - 0.5) * 0.6
    directions = torch.nn.functional.normalize(targets - origins, dim=-1)
    step = 1 / 48
    torch.manual_seed(1)
    t_ref, keep_ref = _full_cube_march(grid, origins, directions, step)
    torch.manual_seed(1)
    t_mid, keep = march(grid, origins, directions, step, jitter=True)
    assert t_mid.shape[1] < t_ref.shape[1] / 2  # the block's diagonal, not the cube's
    assert int(keep_ref.sum()) > 300  # many rays cross the block
    assert torch.equal(keep.sum(dim=1), keep_ref.sum(dim=1))
    for ray in range(origins.shape[0]):  # the same steps, at the same distances
        assert torch.equal(t_mid[ray][keep[ray]], t_ref[ray][keep_ref[ray]])
    # The box follows the grid: a voxel occupied at a corner widens it.
    grid.occupied[0, 0, 0] = True
    low, high = grid.occupied_bounds()
    assert torch.allclose(low, torch.full((3,), -0.5)) and float(high[0]) == -0.5 + 18 / 32
    grid.occupied.zero_()
    assert grid.occupied_bounds() is None
    assert not march(grid, origins, directions, step, jitter=False)[1].any()


def _scene(root, prior: bool):
    mesh = synthetic.head_mesh(subdivisions=3)
    run = synthetic.write_scene(root, mesh, synthetic.orbit_cameras(6, pitches=(0.0, 25.0)), size=32)
    if prior:
        proxy = synthetic.proxy_of(mesh)
        atomic_write_bytes(run.path("proxy", "head.ply"), proxy.export(file_type="ply"))
    dataset.write_transforms(run)
    return run


def test_a_warm_started_grid_follows_the_density_from_the_first_step(tmp_path):
    config = dataclasses.replace(
        fit.PRESETS["fast"], image_size=32, iterations=4, rays_per_batch=128, warm_start=WarmStartConfig(steps=5)
    )
    updates = {}
    for name, prior in (("warm", True), ("cold", False)):
        run = _scene(tmp_path / name, prior)
        info = fit.fit(run, config, "cpu")
        assert (info["warm_start"] is not None) == prior
        assert info["samples_per_ray"] > 0
        updates[name] = int(fit.load_field(run.root).grid.updates)
    # Warm: the grid is the proxy's density before the first step (updated at step 0); cold: the visual
    # hull for the first occupancy_warmup_steps (32) steps.
    assert updates == {"warm": 1, "cold": 0}
