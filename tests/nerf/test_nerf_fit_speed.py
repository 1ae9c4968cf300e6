"""What a fit step costs: the march covers only the occupied box, the warm start samples near the proxy."""

from __future__ import annotations

import dataclasses
import math

import torch

from nerf import dataset, fit, synthetic
from nerf.occupancy import OccupancyGrid, march, ray_cube_interval
from nerf.volume import NGPVolume, VolumeConfig
from nerf.warm_start import ProxyPrior, WarmStartConfig, narrow_occupancy
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


def test_the_warm_start_samples_rays_near_the_proxy_until_the_grid_follows_the_density():
    mesh = synthetic.head_mesh(subdivisions=3)
    proxy = synthetic.proxy_of(mesh)
    volume = NGPVolume(VolumeConfig(grid_resolution=64))
    config = WarmStartConfig(steps=2)
    prior = ProxyPrior(proxy.vertices, proxy.faces, proxy.visual.vertex_colors[:, :3] / 255.0, 0.5, 64)
    hull_share = narrow_occupancy(volume.grid, prior, config.margin, config.start_margin)
    grid = volume.grid
    occupied_share = float(grid.occupied.float().mean())
    assert occupied_share < 0.75 * hull_share  # the band beyond start_margin is in the hull, not sampled
    assert bool((grid.occupied <= grid.hull).all())
    # Nothing of the head is cut: every vertex of the proxy, and points start_margin outside it, are occupied.
    normals = torch.as_tensor(proxy.vertex_normals, dtype=torch.float32)
    vertices = torch.as_tensor(proxy.vertices, dtype=torch.float32)
    assert bool(grid.is_occupied(vertices).all())
    assert bool(grid.is_occupied(vertices + 0.9 * config.start_margin * normals).all())
    # ... and the band a little beyond it is not, but stays in the hull for the grid updates.
    beyond = vertices + (config.start_margin + 2.0 * grid.voxel_size) * normals
    inside_cube = (beyond.abs() < 0.5).all(dim=-1)
    index, _ = grid.voxel_index(beyond[inside_cube])
    assert float(grid.occupied.reshape(-1)[index].float().mean()) < 0.2
    assert float(grid.hull.reshape(-1)[index].float().mean()) > 0.9


def _scene(root):
    mesh = synthetic.head_mesh(subdivisions=3)
    run = synthetic.write_scene(root, mesh, synthetic.orbit_cameras(6, pitches=(0.0, 25.0)), size=32)
    atomic_write_bytes(run.path("proxy", "head.ply"), synthetic.proxy_of(mesh).export(file_type="ply"))
    dataset.write_transforms(run)
    return run


def test_the_fit_reports_its_field_evaluations_per_ray(tmp_path):
    config = dataclasses.replace(
        fit.PRESETS["fast"], image_size=32, iterations=3, rays_per_batch=128, warm_start=WarmStartConfig(steps=5)
    )
    info = fit.fit(_scene(tmp_path / "run"), config, "cpu")
    warm = info["warm_start"]
    assert warm["occupied_at_start"] < warm["occupancy_kept"]
    # At most the steps a ray makes through the occupied voxels; the proxy's head is hit by most rays.
    assert 1.0 < info["samples_per_ray"] < 64
