"""Depth maps in small rounds (nerf.median_depth): the same median depths, about half the field evaluations."""

from __future__ import annotations

import torch

from nerf import median_depth as rounds
from nerf import occupancy


class _CountingShell(torch.nn.Module):
    """A ball of radius 0.2 whose surface is a soft shell a few steps deep (as a fitted head's), counting the
    points it is asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.evaluated = 0

    def density(self, points: torch.Tensor) -> torch.Tensor:
        self.evaluated += len(points)
        return 120.0 * torch.sigmoid((0.2 - points.norm(dim=-1)) * 300.0)


def _rays(count: int = 400):
    generator = torch.Generator().manual_seed(0)
    origins = torch.tensor([[0.0, 0.0, 2.7]]).repeat(count, 1)
    targets = torch.cat([torch.rand(count, 2, generator=generator) * 0.5 - 0.25, torch.zeros(count, 1)], dim=1)
    return origins, torch.nn.functional.normalize(targets - origins, dim=-1)


def test_rounds_give_the_median_depth_of_every_step_with_fewer_evaluations():
    field, grid = _CountingShell(), occupancy.OccupancyGrid(0.5, resolution=64)
    grid.occupied.copy_(grid.voxel_centres().norm(dim=-1) < 0.21)  # a voxel or so around the surface
    origins, directions = _rays()
    step = 1 / 128
    # The reference: every kept step evaluated, composited, and its median.
    t_mid, keep = occupancy.march(grid, origins, directions, step, jitter=False)
    ray_index, step_index = torch.nonzero(keep, as_tuple=True)
    points = origins[ray_index] + directions[ray_index] * t_mid[ray_index, step_index, None]
    density = torch.zeros(t_mid.shape).index_put((ray_index, step_index), field.density(points))
    _, _, weights = occupancy.composite(density, torch.zeros(*density.shape, 3), step, torch.zeros(3))
    expected = occupancy.median_depth(weights, t_mid, step)

    field.evaluated = 0
    two_rounds = rounds.render_median_depth(field, grid, origins, directions, step, rounds=(8,))  # the old way
    evaluated_two_rounds, field.evaluated = field.evaluated, 0
    depth = rounds.render_median_depth(field, grid, origins, directions, step)

    finite = torch.isfinite(expected)
    assert int(finite.sum()) > 200  # most rays meet the ball
    assert torch.equal(torch.isfinite(depth), finite)
    torch.testing.assert_close(depth[finite], expected[finite], atol=1e-6, rtol=0)
    torch.testing.assert_close(depth[finite], two_rounds[finite], atol=1e-6, rtol=0)
    assert field.evaluated < 0.6 * evaluated_two_rounds


def test_rays_that_meet_nothing_are_infinitely_deep():
    field, grid = _CountingShell(), occupancy.OccupancyGrid(0.5, resolution=32)
    origins, directions = _rays(20)
    grid.occupied.zero_()
    assert torch.isinf(rounds.render_median_depth(field, grid, origins, directions, 1 / 128)).all()
    assert field.evaluated == 0
