"""The instant-NGP fit: its parts against plain references, the nerfstudio method, a real short CPU fit."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from nerf import dataset, fit, synthetic
from nerf.field import FieldConfig, HashGrid, NGPField
from nerf.median_depth import render_median_depth
from nerf.metrics import psnr
from nerf.occupancy import OccupancyGrid, composite, march, median_depth, render_rays
from nerf.volume import NGPVolume, VolumeConfig
from portrait3d import cameras as cams
from portrait3d.errors import UserError
from portrait3d.render import MeshRenderer
from portrait3d.run import Run


def _plain_hash_grid(grid: HashGrid, x: torch.Tensor) -> torch.Tensor:
    """Trilinear interpolation with the 8 corners looked up one by one (int64 hashing)."""
    primes = (1, 2654435761, 805459861)
    out = []
    for level in range(grid.resolutions.numel()):
        res = int(grid.resolutions[level])
        pos = x * res
        low = torch.minimum(torch.floor(pos), torch.tensor(res - 1.0))
        frac = pos - low
        low = low.long()
        acc = 0
        for corner in range(8):
            bits = torch.tensor([(corner >> k) & 1 for k in range(3)])
            c = low + bits
            if level < grid.num_dense_levels:
                index = c[:, 0] + c[:, 1] * (res + 1) + c[:, 2] * (res + 1) ** 2
            else:
                index = ((c[:, 0] * primes[0]) ^ (c[:, 1] * primes[1]) ^ (c[:, 2] * primes[2])) % grid.table_size
            w = torch.prod(torch.where(bits.bool(), frac, 1 - frac), dim=-1)
            acc = acc + w[:, None] * grid.table[index + int(grid.offsets[level])]
        out.append(acc)
    return torch.cat(out, dim=-1)


def test_hash_grid_matches_plain_interpolation_and_gradients():
    torch.manual_seed(0)
    grid = HashGrid(num_levels=4, features_per_level=2, log2_hashmap_size=10, base_resolution=4, max_resolution=64)
    with torch.no_grad():
        grid.table.normal_()
    x = torch.rand(300, 3)
    x[0] = 1.0  # the far corner of the cube stays inside the last cell
    out = grid(x)
    ref = _plain_hash_grid(grid, x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    (out * torch.arange(out.shape[1])).sum().backward()
    fast = grid.table.grad.clone()
    grid.table.grad = None
    (ref * torch.arange(ref.shape[1])).sum().backward()
    torch.testing.assert_close(fast, grid.table.grad, rtol=1e-4, atol=1e-4)


class _Ball(torch.nn.Module):
    """A dense ball of radius 0.2 with a colour that varies in space (a field with a sharp surface)."""

    def density(self, points: torch.Tensor) -> torch.Tensor:
        return 400.0 * torch.sigmoid((0.2 - points.norm(dim=-1)) * 200.0)

    def forward(self, points, view_dirs=None, dir_encoding=None):
        return self.density(points), torch.sigmoid(points * 5.0)


def test_early_ray_termination_matches_evaluating_every_step():
    torch.manual_seed(0)
    ball, grid = _Ball(), OccupancyGrid(0.5, resolution=32)
    grid.occupied.copy_(grid.voxel_centres().norm(dim=-1) < 0.22)  # as the grid follows the density
    origins = torch.tensor([[0.0, 0.0, 2.7]]).repeat(256, 1)
    targets = torch.cat([torch.rand(256, 2) * 0.6 - 0.3, torch.zeros(256, 1)], dim=1)
    directions = torch.nn.functional.normalize(targets - origins, dim=-1)
    step, background = 1 / 128, torch.tensor([1.0, 1.0, 1.0])
    t_mid, keep = march(grid, origins, directions, step, jitter=False)
    rays, steps = torch.nonzero(keep, as_tuple=True)
    points = origins[rays] + directions[rays] * t_mid[rays, steps, None]
    density = torch.zeros(t_mid.shape).index_put((rays, steps), ball.density(points))
    rgb = torch.zeros(*t_mid.shape, 3).index_put((rays, steps), ball(points)[1])
    colour, accumulation, weights = composite(density, rgb, step, background)
    out = render_rays(ball, grid, origins, directions, step, background)
    # Early termination drops what lies behind a transmittance of 1e-4, and so about half the steps here.
    torch.testing.assert_close(out["rgb"], colour, atol=2e-4, rtol=0)
    torch.testing.assert_close(out["accumulation"], accumulation, atol=2e-4, rtol=0)
    assert int(out["num_samples"]) < 0.7 * len(rays)
    # The median depth only depends on the steps in front of the half-opacity point: exactly equal.
    depth = render_median_depth(ball, grid, origins, directions, step)
    expected = median_depth(weights, t_mid, step)
    assert torch.equal(torch.isfinite(depth), torch.isfinite(expected)) and torch.isfinite(depth).sum() > 100
    torch.testing.assert_close(depth[torch.isfinite(depth)], expected[torch.isfinite(expected)], atol=1e-6, rtol=0)


def test_field_is_empty_outside_its_cube():
    field = NGPField(FieldConfig(half_extent=0.5, num_levels=2, max_resolution=32))
    points = torch.tensor([[0.0, 0.0, 0.0], [0.6, 0.0, 0.0], [0.0, 0.0, -0.9]])
    density = field.density(points)
    assert density[0] > 0 and torch.all(density[1:] == 0)
    rgb = field.rgb(points, torch.nn.functional.normalize(points + 1e-3, dim=-1))
    assert rgb.shape == (3, 3) and torch.all((rgb >= 0) & (rgb <= 1))


def test_composite_matches_analytic_slab():
    # A ray through a slab of constant density: opacity 1 - exp(-sigma * length).
    density = torch.zeros(1, 100)
    density[0, 20:40] = 3.0
    rgb = torch.zeros(1, 100, 3)
    rgb[0, 20:40] = torch.tensor([1.0, 0.5, 0.0])
    colour, acc, weights = composite(density, rgb, 0.01, torch.tensor([0.0, 0.0, 1.0]))
    expected = 1 - math.exp(-3.0 * 0.2)
    assert acc.item() == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(colour[0], torch.tensor([expected, 0.5 * expected, 1 - expected]))
    assert weights.sum().item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("sigma", [30.0, 300.0])
def test_median_depth_matches_analytic_slab(sigma):
    # Constant density from t = 0.2: the opacity reaches one half at 0.2 + ln 2 / sigma.
    step = 0.01
    t_mid = (torch.arange(100, dtype=torch.float32)[None] + 0.5) * step
    density = torch.where(t_mid > 0.2, torch.tensor(sigma), torch.tensor(0.0))
    _, _, weights = composite(density, torch.zeros(1, 100, 3), step, torch.zeros(3))
    expected = 0.2 + math.log(2.0) / sigma
    assert median_depth(weights, t_mid, step).item() == pytest.approx(expected, abs=1e-5)
    # A ray that never becomes half opaque has no depth.
    assert median_depth(weights * 0.4, t_mid, step).item() == math.inf


def test_carving_empties_space_that_no_view_sees():
    # PanoHead's ring sees about +-0.3 around the head's centre: above and below that nothing is known,
    # and left occupied it would keep the field's initial fog (floaters in the viewer).
    ring = cams.orbit(8)
    grid = OccupancyGrid(0.5, 32)
    grid.carve(ring, torch.ones(len(ring), 64, 64, dtype=torch.bool))  # every pixel foreground
    points = torch.tensor([[0.0, 0.45, 0.0], [0.1, -0.45, 0.1], [0.0, 0.0, 0.0], [0.2, 0.1, -0.2]])
    for cam in ring:
        uv, _ = cam.project(points[:2].numpy().astype(np.float64), 64, 64)
        assert not np.any(np.all((uv >= 0) & (uv < 64), axis=1))  # outside every frame
    assert grid.is_occupied(points).tolist() == [False, False, True, True]


def test_one_wrong_silhouette_cannot_cut_the_head_when_two_views_must_agree():
    """A plainly wrong view (here its silhouette 20 px off) cuts the classic hull (votes=1); with votes=2 the
    head stays whole and the space beside it is still carved."""
    mesh = synthetic.head_mesh(subdivisions=3)
    cameras = synthetic.orbit_cameras(6, pitches=(0.0, 30.0))
    masks = torch.stack([torch.as_tensor(im[..., 3] > 127) for im in synthetic.render_views(mesh, cameras, 64)])
    masks[3] = torch.roll(masks[3], shifts=20, dims=1)
    vertices = torch.as_tensor(mesh.vertices, dtype=torch.float32)
    beside = torch.tensor([[0.25, 0.0, 0.0], [-0.25, 0.0, 0.0], [0.0, 0.0, 0.27]])
    classic, robust = OccupancyGrid(0.5, 64), OccupancyGrid(0.5, 64)
    classic.carve(cameras, masks, votes=1)
    robust.carve(cameras, masks, votes=2)
    assert classic.is_occupied(vertices).float().mean().item() < 0.8
    assert bool(robust.is_occupied(vertices).all()) and not robust.is_occupied(beside).any()


def test_march_keeps_only_occupied_steps_and_carving_keeps_the_head():
    mesh = synthetic.head_mesh(subdivisions=3)
    cameras = synthetic.orbit_cameras(6, pitches=(0.0, 30.0))
    masks = torch.stack([torch.as_tensor(im[..., 3] > 127) for im in synthetic.render_views(mesh, cameras, 64)])
    grid = OccupancyGrid(0.5, 64)
    grid.carve(cameras, masks)
    # Every mesh vertex lies in a kept voxel (the hull is conservative); space beside the head is carved away.
    assert bool(grid.is_occupied(torch.as_tensor(mesh.vertices, dtype=torch.float32)).all())
    assert not grid.is_occupied(torch.tensor([[0.25, 0.0, 0.0], [-0.25, 0.0, 0.0], [0.0, 0.0, 0.27]])).any()
    assert grid.hull.float().mean().item() < 0.5
    origins = torch.tensor([[0.0, 0.0, 2.7], [0.25, 0.0, 2.7]])
    directions = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    t_mid, keep = march(grid, origins, directions, 1 / 64, jitter=False)
    assert keep[0].any() and not keep[1].any()  # through the head / beside it
    points = origins[:, None] + directions[:, None] * t_mid[..., None]
    assert bool(grid.is_occupied(points[keep]).all())


def test_volume_renders_camera_and_cuda_pieces_construct_on_cpu():
    torch.manual_seed(0)
    config = VolumeConfig(field=FieldConfig(num_levels=4, max_resolution=64), grid_resolution=32)
    volume = NGPVolume(config, "cpu")
    assert volume.sampler == "torch" and volume.field.implementation == "torch"
    rgb, alpha = volume.render(cams.camera_from_angles(30.0), 24, 16)
    assert rgb.shape == (16, 24, 3) and alpha.shape == (16, 24)
    assert np.all((alpha >= 0) & (alpha <= 1))
    # Asking for CUDA pieces on a CPU falls back to torch rather than failing.
    fallback = NGPVolume(VolumeConfig(field=FieldConfig(implementation="tcnn"), sampler="nerfacc"), "cpu")
    assert fallback.sampler == "torch" and fallback.field.implementation == "torch"


def test_nerfstudio_model_builds_on_cpu_without_lpips():
    from nerfstudio.cameras.rays import RayBundle
    from nerfstudio.data.scene_box import SceneBox

    from nerf import method

    config = method.trainer_config(volume=VolumeConfig(field=FieldConfig(num_levels=4, max_resolution=64)))
    assert config.method_name == "portrait3d-ngp"
    model = config.pipeline.model.setup(
        scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=4
    )
    assert not any("lpips" in name.lower() for name, _ in model.named_modules())
    bundle = RayBundle(
        origins=torch.tensor([[0.0, 0.0, 2.7]] * 5),
        directions=torch.tensor([[0.0, 0.0, -1.0]] * 5),
        pixel_area=torch.ones(5, 1),
        camera_indices=torch.zeros(5, 1, dtype=torch.long),
    )
    model.train()
    outputs = model(bundle)
    assert outputs["rgb"].shape == (5, 3) and outputs["accumulation"].shape == (5, 1)
    batch = {"image": torch.rand(5, 4)}
    losses = model.get_loss_dict(outputs, batch)
    sum(losses.values()).backward()
    assert model.volume.field.encoding.table.grad is not None
    model.eval()
    metrics, images = model.get_image_metrics_and_images(
        {"rgb": torch.rand(16, 16, 3), "accumulation": torch.rand(16, 16, 1)}, {"image": torch.rand(16, 16, 4)}
    )
    assert set(metrics) == {"psnr", "ssim"} and images["img"].shape == (16, 32, 3)


def test_device_option_errors():
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA"):
            fit.resolve_device("cuda")
    assert fit.resolve_device("cpu").type == "cpu"


@pytest.mark.slow
def test_short_cpu_fit_reaches_psnr_and_loads_in_nerfstudio(tmp_path, cli, monkeypatch):
    """A real fit through the CLI on a small scene; held-out PSNR; nerfstudio's eval_setup loads the result."""
    size = 64
    mesh = synthetic.head_mesh(subdivisions=4)
    cameras = synthetic.orbit_cameras(10, pitches=(0.0, 25.0))
    held = synthetic.held_out_indices(len(cameras), 2)
    train = [c for i, c in enumerate(cameras) if i not in held]
    root = tmp_path / "run"
    synthetic.write_scene(root, mesh, train, size=size)
    assert cli("dataset", str(root)).returncode == 0
    result = cli("fit-nerf", str(root), "--device", "cpu", "--iterations", "200", "--image-size", str(size))
    assert result.returncode == 0, result.stderr
    assert (root / "nerf" / "config.yml").is_file()

    field = fit.load_field(root)
    scores = []
    for index, gt in zip(held, synthetic.render_views(mesh, [cameras[i] for i in held], size)):
        rgb, _ = field.render(cameras[index], size, size)
        a = gt[..., 3:] / 255.0
        target = gt[..., :3] / 255.0 * a + (1 - a)
        scores.append(psnr(rgb, target))
    assert min(scores) > 22.0, scores
    # The fitted depth (used for mesh extraction) lies on the true surface where the view shows the head.
    truth = MeshRenderer(mesh).render_depth(train[0], size)
    depth = field.render_depth(train[0], size, size, pixels=np.isfinite(truth))
    assert np.isinf(depth[~np.isfinite(truth)]).all()
    # Measured 0.016 units (1.6 px at 64²) after these 200 steps; the fast preset's fit gives 0.004.
    assert np.median(np.abs(depth - truth)[np.isfinite(truth)]) < 0.03

    # nerfstudio's own loading code (the plugin found through the environment, as an entry point would).
    monkeypatch.setenv("NERFSTUDIO_METHOD_CONFIGS", "portrait3d-ngp=nerf.method:portrait3d_ngp")
    from portrait3d import torchvision_compat

    torchvision_compat.import_nerfstudio()
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, checkpoint, step = eval_setup(root / "nerf" / "config.yml", test_mode="inference")
    assert checkpoint.parent == (root / "nerf" / "nerfstudio_models").resolve() and step == 200
    ns_cameras = pipeline.datamanager.train_dataparser_outputs.cameras
    with torch.no_grad():
        outputs = pipeline.model.get_outputs_for_camera(ns_cameras[0:1].to(pipeline.device))
    ours, _ = field.render(train[0], size, size)
    assert outputs["rgb"].shape == (size, size, 3)
    # Same field, same cameras: nerfstudio's render matches ours (up to the ray directions' float error).
    assert psnr(outputs["rgb"].cpu().numpy(), ours) > 35.0


def test_fit_requires_dataset(tmp_path):
    run = Run(tmp_path / "run")
    with pytest.raises(UserError, match="transforms.json"):
        fit.fit(run, fit.PRESETS["fast"], "cpu")
    assert not os.path.exists(run.path("nerf"))
    with pytest.raises(UserError, match="no fitted NeRF"):
        fit.load_field(run.root)
    assert dataset.TRANSFORMS == "transforms.json"


def test_cli_fit_nerf_errors(tmp_path, cli):
    run = Run(tmp_path / "run")
    result = cli("fit-nerf", str(run.root), "--device", "cpu")
    assert result.returncode != 0
    assert "transforms.json" in result.stderr and "Traceback" not in result.stderr
    result = cli("fit-nerf", str(run.root), "--iterations", "0")
    assert result.returncode != 0 and "--iterations" in result.stderr


def test_cli_fit_nerf_gives_generated_views_their_fit(tmp_path, cli):
    """A run that make-asset recorded as diffusion-generated gets FitConfig.for_views(True): shift and anchor."""
    import json

    import trimesh

    size = 32
    mesh = synthetic.head_mesh(subdivisions=3)
    root = tmp_path / "run"
    run = synthetic.write_scene(root, mesh, synthetic.orbit_cameras(6, pitches=(0.0,)), size=size)
    run.path("proxy").mkdir(exist_ok=True)
    run.path("proxy", "head.ply").write_bytes(trimesh.exchange.ply.export_ply(mesh, encoding="binary"))
    assert cli("dataset", str(root)).returncode == 0

    def fitted_info(generator: str) -> dict:
        run.write_settings({"preset": "tiny", "generator": generator})
        result = cli("fit-nerf", str(root), "--device", "cpu", "--iterations", "3", "--force")
        assert result.returncode == 0, result.stderr
        return json.loads(run.path(".portrait3d", "stages", "fit-nerf.json").read_text())["info"]

    assert fitted_info("proxy")["view_shifts_px"] is None
    generated = fitted_info("diffusion")
    assert generated["view_shifts_px"] is not None and len(generated["view_shifts_px"]) == 6
    assert generated["proxy_anchor_weight"] == 1.0
