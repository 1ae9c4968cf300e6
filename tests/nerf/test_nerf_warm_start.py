"""Warm start from the proxy head, the smoothness measure and the simulated diffusion inconsistency."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import trimesh

from nerf import dataset, fit, synthetic
from nerf.median_depth import render_median_depth
from nerf.metrics import chamfer_fscore, normal_angle_error, psnr
from nerf.volume import NGPVolume, VolumeConfig
from nerf.warm_start import (
    ProxyPrior,
    WarmStartConfig,
    anchor_loss,
    narrow_occupancy,
    regress_to_proxy,
    step_centre,
    target_log_density,
    warm_start,
)
from portrait3d.run import atomic_write_bytes

SIZE = 48


def _scene(root, mesh, prior: trimesh.Trimesh | None):
    cameras = synthetic.orbit_cameras(8, pitches=(0.0, 25.0))
    held = synthetic.held_out_indices(len(cameras), 2)
    train = [c for i, c in enumerate(cameras) if i not in held]
    run = synthetic.write_scene(root, mesh, train, size=SIZE)
    if prior is not None:
        atomic_write_bytes(run.path("proxy", "head.ply"), trimesh.exchange.ply.export_ply(prior, encoding="binary"))
    dataset.write_transforms(run)
    return run, [cameras[i] for i in held]


def _held_out_psnr(root, mesh, cameras) -> float:
    field = fit.load_field(root)
    scores = []
    for camera, gt in zip(cameras, synthetic.render_views(mesh, cameras, SIZE)):
        rgb, _ = field.render(camera, SIZE, SIZE)
        a = gt[..., 3:] / 255.0
        scores.append(psnr(rgb, gt[..., :3] / 255.0 * a + (1 - a)))
    return float(np.mean(scores))


def test_prior_signed_distance_and_surface_points():
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.2)
    colours = np.tile([[1.0, 0.0, 0.0]], (len(mesh.vertices), 1))
    prior = ProxyPrior(mesh.vertices, mesh.faces, colours, half_extent=0.5, resolution=64)
    points = torch.tensor([[0.1, 0.0, 0.0], [0.3, 0.0, 0.0], [0.0, 0.0, 0.45], [0.0, 0.19, 0.0]])
    sdf = prior.signed_distance(points)
    voxel = 1.0 / 64
    np.testing.assert_allclose(sdf.numpy(), [-0.1, 0.1, 0.25, -0.01], atol=1.5 * voxel)
    near, distance, colour = prior.near_surface(500, 0.02, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(near.norm(dim=1).numpy() - 0.2, distance.numpy(), atol=2e-3)
    assert torch.all(colour == torch.tensor([1.0, 0.0, 0.0]))


def test_prior_of_a_head_leaving_the_cube_has_an_inside_and_the_hull_is_a_shell():
    """A neck below the cube's floor (the sample's proxy reaches y = -0.61 in a cube of half side 0.5) still
    leaves the head an inside; the occupancy hull keeps a shell around the surface, not the deep inside."""
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.3)
    mesh.apply_translation([0.0, -0.35, 0.0])  # down to y = -0.65
    prior = ProxyPrior(mesh.vertices, mesh.faces, np.full((len(mesh.vertices), 3), 0.5), half_extent=0.5)
    inside = torch.tensor([[0.0, -0.35, 0.0], [0.0, -0.45, 0.1], [0.0, -0.1, 0.0]])
    np.testing.assert_allclose(prior.signed_distance(inside).numpy(), [-0.3, -0.159, -0.05], atol=0.02)
    grid = NGPVolume(VolumeConfig(grid_resolution=64)).grid
    narrow_occupancy(grid, prior, margin=0.06, start_margin=0.024, inner_margin=0.024)
    distance = (grid.voxel_centres() - torch.tensor([0.0, -0.35, 0.0])).norm(dim=-1)
    slack = 0.5 * math.sqrt(3.0) * grid.voxel_size + grid.voxel_size  # a voxel's reach and the prior's grid error
    assert not grid.hull[distance < 0.3 - 0.024 - slack].any()  # the deep inside
    assert grid.hull[(distance - 0.3).abs() < 0.01].all()  # the surface
    assert grid.occupied[(distance - 0.3).abs() < 0.01].all()
    assert not grid.occupied[distance > 0.3 + 0.024 + slack].any()


def test_soft_step_is_half_absorbed_at_the_proxy_surface():
    """The warm start's median depth lies on the proxy: head-on rays reach half opacity at the sphere."""
    config = WarmStartConfig()
    # Exact optical depth from far outside down to the surface, along the normal: ln 2.
    s = torch.linspace(0.2, 0.0, 200_001, dtype=torch.float64)
    density = torch.exp(target_log_density(s, config))
    assert abs(float(torch.trapezoid(density, -s)) - math.log(2.0)) < 1e-3
    assert step_centre(config) < -0.002  # inside the proxy for the default width and peak

    mesh = trimesh.creation.icosphere(subdivisions=5, radius=0.2)
    prior = ProxyPrior(mesh.vertices, mesh.faces, np.full((len(mesh.vertices), 3), 0.5), half_extent=0.5)
    torch.manual_seed(0)
    volume = NGPVolume(VolumeConfig(render_step_size=1.0 / 128))
    warm_start(volume, prior, dataclasses.replace(config, steps=200))
    # Rays toward the centre from 1 unit away, within 15 degrees of the normal where they meet the sphere.
    angles = torch.linspace(-0.25, 0.25, 9)
    yaw, pitch = torch.meshgrid(angles, angles, indexing="ij")
    directions = torch.stack([torch.sin(yaw) * torch.cos(pitch), torch.sin(pitch), torch.cos(yaw) * torch.cos(pitch)])
    directions = directions.reshape(3, -1).T
    with torch.no_grad():
        depth = render_median_depth(volume.field, volume.grid, -directions, directions, volume.config.render_step_size)
    error = depth - 0.8  # the sphere's surface is 0.8 from the rays' origins
    assert abs(float(error.mean())) < 1e-3, error  # centred on the surface: 2.5e-3 in front of it


def test_near_surface_draws_that_cross_a_thin_part_are_left_out():
    """Through a slab 0.01 thick, inward moves of more than 0.005 come out the other side: none of those is kept."""
    slab = trimesh.creation.box(extents=(0.3, 0.3, 0.01)).subdivide_to_size(0.02)
    colours = np.full((len(slab.vertices), 3), 0.5)
    prior = ProxyPrior(slab.vertices, slab.faces, colours, half_extent=0.5, resolution=128)
    generator = torch.Generator().manual_seed(0)
    points, labelled, _ = prior.near_surface(4000, 0.02, generator)
    true = -trimesh.proximity.signed_distance(slab, points.numpy().astype(np.float64))  # trimesh: positive inside
    assert np.abs(true - labelled.numpy()).max() < 2 * prior.voxel
    assert 1000 < len(points) < 3600  # the draws deeper than the slab's half thickness are gone
    assert float(labelled.min()) > -2 * prior.voxel


def test_anchor_loss_is_small_on_the_proxy_and_zero_inside_its_band():
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.2)
    prior = ProxyPrior(mesh.vertices, mesh.faces, np.full((len(mesh.vertices), 3), 0.5), half_extent=0.5)
    torch.manual_seed(0)
    volume = NGPVolume(VolumeConfig())
    # A sharp step: the regressed density is solid from 0.006 inside and thin a few widths outside.
    config = WarmStartConfig(steps=150, colour_weight=0.0, anchor_points=4096, width=0.001)

    def loss(c):
        return float(anchor_loss(volume.field, prior, c, torch.Generator().manual_seed(1)))

    fresh = loss(config)  # no density anywhere: the inside is penalised
    regress_to_proxy(volume, prior, config, torch.Generator().manual_seed(0))
    fitted = loss(config)
    # Not zero: at this width the step is centred 0.0015 outside (its median depth on the proxy), and its tail
    # still passes 1 per unit at the band's edge.
    assert fitted < 0.1 * fresh, (fitted, fresh)
    # The draws spread 0.02 around the surface: a band of 0.2 holds them all.
    assert loss(dataclasses.replace(config, anchor_tolerance=0.2)) == 0.0
    # A wider soft step leaves a fog outside the band, which the anchor sees.
    assert loss(dataclasses.replace(config, width=0.004)) == fitted
    regress_to_proxy(volume, prior, dataclasses.replace(config, width=0.004), torch.Generator().manual_seed(0))
    assert loss(config) > 2 * fitted


def test_anchor_holds_the_density_to_the_proxy_where_views_disagree(tmp_path):
    """Views of a head, proxy of a different shape: with the anchor, the fitted density stays nearer the proxy's."""
    mesh = synthetic.head_mesh(subdivisions=4)
    proxy = synthetic.proxy_of(mesh, offset=0.03)
    run, _ = _scene(tmp_path, mesh, proxy)
    prior = ProxyPrior.from_run(run.root, 0.5)  # the fast preset's cube

    def fitted_anchor_loss(weight: float) -> float:
        warm = WarmStartConfig(steps=60, anchor_weight=weight)
        config = dataclasses.replace(
            fit.PRESETS["fast"], image_size=SIZE, rays_per_batch=256, iterations=60, warm_start=warm
        )
        fit.fit(run, config, "cpu")
        field = fit.load_field(run.root).field
        with torch.no_grad():
            return float(
                anchor_loss(field, prior, WarmStartConfig(anchor_points=8192), torch.Generator().manual_seed(5))
            )

    free, anchored = fitted_anchor_loss(0.0), fitted_anchor_loss(1.0)
    assert anchored < 0.1 * free, (anchored, free)


def test_warm_start_reaches_cold_psnr_in_fewer_steps(tmp_path):
    """Same scene, same seed: a warm start from a stand-in proxy after 40 steps beats a cold start after 100."""
    mesh = synthetic.head_mesh(subdivisions=4)
    base = dataclasses.replace(fit.PRESETS["fast"], image_size=SIZE, rays_per_batch=256)
    cold_run, held = _scene(tmp_path / "cold", mesh, None)
    fit.fit(cold_run, dataclasses.replace(base, iterations=100), "cpu")
    cold = _held_out_psnr(cold_run.root, mesh, held)

    warm_run, _ = _scene(tmp_path / "warm", mesh, synthetic.proxy_of(mesh))
    # The warm start alone: the anchor would hold this stand-in proxy, which is off the truth (tested apart).
    warm = WarmStartConfig(steps=80, points_per_step=4096, anchor_weight=0.0)
    warm_config = dataclasses.replace(base, iterations=60, warm_start=warm)
    info = fit.fit(warm_run, warm_config, "cpu")
    warm = _held_out_psnr(warm_run.root, mesh, held)
    assert info["warm_start"] is not None and info["warm_start"]["occupancy_kept"] < 0.5
    assert warm > cold, (warm, cold)
    # Off: the same run fits from fog.
    assert (
        fit.fit(warm_run, dataclasses.replace(warm_config, warm_start=WarmStartConfig(enabled=False)), "cpu")[
            "warm_start"
        ]
        is None
    )


def test_normal_angle_error_sees_bumps_that_chamfer_hardly_sees():
    smooth = trimesh.creation.icosphere(subdivisions=5, radius=0.2)
    assert normal_angle_error(smooth, smooth, samples=20_000)["mean_deg"] < 0.5
    rng = np.random.default_rng(0)
    bumpy = smooth.copy()
    bumpy.vertices = smooth.vertices * (1.0 + 0.01 * rng.standard_normal(len(smooth.vertices)))[:, None]
    angle = normal_angle_error(bumpy, smooth, samples=20_000)
    chamfer = chamfer_fscore(bumpy, smooth, samples=20_000)["chamfer_pct_diag"]
    assert angle["mean_deg"] > 10.0 and angle["over_30_pct"] > 1.0, angle
    assert chamfer < 0.5, chamfer


def test_simulated_diffusion_changes_views_as_documented():
    mesh = synthetic.head_mesh(subdivisions=3)
    cameras = synthetic.orbit_cameras(8, pitches=(0.0,))
    clean = synthetic.render_views(mesh, cameras, 64)
    altered, record = synthetic.simulate_diffusion(clean, seed=1, wrong_views=2)
    again, _ = synthetic.simulate_diffusion(clean, seed=1, wrong_views=2)
    assert all(np.array_equal(a, b) for a, b in zip(altered, again))  # seeded
    assert len(record["wrong_views"]) == 2 and 0 not in record["wrong_views"]
    for i, (a, c) in enumerate(zip(altered, clean)):
        assert a.shape == c.shape and a.dtype == np.uint8
        shift = record["views"][i]["shift_px"]
        if i not in record["wrong_views"]:
            # The alpha is the clean one moved by the recorded jitter; the colour differs.
            assert np.array_equal(a[..., 3], np.roll(c[..., 3], tuple(shift), axis=(0, 1)))
            assert 0.5 < psnr(a[..., :3] / 255.0, np.roll(c, tuple(shift), axis=(0, 1))[..., :3] / 255.0) < 40
    wrong = record["wrong_views"][0]
    assert not np.array_equal(
        altered[wrong][..., 3], np.roll(clean[wrong][..., 3], tuple(record["views"][wrong]["shift_px"]), axis=(0, 1))
    )


def test_view_appearance_and_reliability():
    from nerf.appearance import ViewAppearance, ViewReliability

    appearance = ViewAppearance(4)
    rgb, acc = torch.rand(6, 3), torch.tensor([1.0, 1.0, 0.5, 0.0, 1.0, 0.2])
    background, view = torch.rand(6, 3), torch.tensor([0, 1, 2, 3, 0, 1])
    rgb[3] = background[3]  # a transparent ray renders the background
    torch.testing.assert_close(appearance(rgb, acc, background, view), rgb)  # identity at the start
    with torch.no_grad():
        appearance.log_gain[3] = 1.0
    # A transparent ray shows the background whatever its view's gain.
    torch.testing.assert_close(appearance(rgb, acc, background, view)[3], rgb[3])
    assert appearance.penalty() > 0

    reliability = ViewReliability(5)
    view = torch.arange(5).repeat(40)
    loss = torch.where(view == 2, 0.5, 0.05) + 0.01 * torch.rand(200)
    for _ in range(5):
        reliability.update(view, loss)
    weights = reliability.weights()
    assert weights[2] < 0.05 and torch.all(weights[[0, 1, 3, 4]] == 1.0), weights


def test_cli_cold_start_skips_the_proxy_head(tmp_path, cli):
    """fit-nerf starts from the proxy head when the run has one; ``--cold-start`` starts from empty space."""
    import json

    run, _ = _scene(tmp_path / "run", synthetic.head_mesh(subdivisions=3), synthetic.proxy_of(synthetic.head_mesh(3)))
    record = run.path(".portrait3d", "stages", "fit-nerf.json")
    common = ("--device", "cpu", "--iterations", "2", "--image-size", "32", "--preset", "tiny")
    result = cli("fit-nerf", str(run.root), *common)
    assert result.returncode == 0, result.stderr
    assert json.loads(record.read_text())["info"]["warm_start"] is not None
    result = cli("fit-nerf", str(run.root), *common, "--cold-start")
    assert result.returncode == 0, result.stderr
    assert json.loads(record.read_text())["info"]["warm_start"] is None
