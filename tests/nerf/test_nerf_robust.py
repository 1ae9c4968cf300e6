"""The fit against inconsistent views (issue 24, item 3): wrong views weighed out, per-view shifts learnt,
per-view casts kept out of the view-dependent colour."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import trimesh

from nerf import dataset, fit, synthetic
from nerf.appearance import ViewReliability, ViewShift
from nerf.field import NGPField
from nerf.metrics import composite, psnr
from nerf.warm_start import WarmStartConfig
from portrait3d.run import atomic_write_bytes

SIZE = 48


def test_view_reliability_keeps_a_running_mean_of_each_views_loss():
    """The running loss per view: the first batch that holds a view sets it, later ones decay into it, a view
    absent from a batch keeps its value (checked against the plain per-view loop)."""
    generator = torch.Generator().manual_seed(0)
    num_views, decay = 6, 0.9
    reliability = ViewReliability(num_views, decay=decay)
    expected = [None] * num_views
    for batch in range(8):
        # Views 0 and 1 appear only from the third batch on; view 5 never.
        view = torch.randint(2 if batch < 2 else 0, num_views - 1, (30,), generator=generator)
        loss = torch.rand(30, generator=generator)
        reliability.update(view, loss)
        for v in range(num_views):
            if (view == v).any():
                mean = float(loss[view == v].mean())
                expected[v] = mean if expected[v] is None else decay * expected[v] + (1 - decay) * mean
    assert reliability.seen.tolist() == [e is not None for e in expected]
    torch.testing.assert_close(reliability.loss[:5], torch.tensor(expected[:5]))
    assert float(reliability.loss[5]) == 0.0 and float(reliability.weights()[5]) == 1.0


def _inconsistent_scene(root, perturbations, **simulation):
    """A 14-view ring of the procedural head rendered at 2×SIZE and altered by ``simulate_diffusion``."""
    mesh = synthetic.head_mesh(subdivisions=4)
    cameras = synthetic.orbit_cameras(8, pitches=(0.0, 25.0))
    held = synthetic.held_out_indices(len(cameras), 2)
    train = [c for i, c in enumerate(cameras) if i not in held]
    record: dict = {}

    def alter(images):
        altered, info = synthetic.simulate_diffusion(images, seed=0, perturbations=perturbations, **simulation)
        record.update(info)
        return altered

    run = synthetic.write_scene(root, mesh, train, size=2 * SIZE, alter=alter)
    prior = trimesh.exchange.ply.export_ply(synthetic.proxy_of(mesh), encoding="binary")
    atomic_write_bytes(run.path("proxy", "head.ply"), prior)
    dataset.write_transforms(run)
    return run, mesh, [cameras[i] for i in held], record


def _fit(run, **options) -> dict:
    options = {"iterations": 80, **options}
    config = dataclasses.replace(
        fit.PRESETS["fast"],
        image_size=SIZE,
        rays_per_batch=256,
        warm_start=WarmStartConfig(steps=30, points_per_step=2048),
        **options,
    )
    return fit.fit(run, config, "cpu")


def _held_out_psnr(run, mesh, cameras) -> float:
    """Mean PSNR of the fitted field (no per-view codes) against clean renders of the true head."""
    field = fit.load_field(run.root)
    scores = []
    for camera, truth in zip(cameras, synthetic.render_views(mesh, cameras, SIZE)):
        rgb, _ = field.render(camera, SIZE, SIZE)
        scores.append(psnr(rgb, composite(truth)))
    return float(np.mean(scores))


def test_outlier_test_sees_a_wrong_view_among_noisy_ones():
    """Every view is noisy (generated detail), one is wrong by 1.4x the typical loss: the ratio test keeps
    it at full weight, the robust test weighs it out and keeps the others."""
    num_views = 12
    view = torch.arange(num_views).repeat(50)
    typical = 0.10 + 0.004 * torch.sin(torch.arange(num_views, dtype=torch.float32))  # views differ a little
    loss = typical[view] + torch.where(view == 7, 0.04, 0.0)
    weights = {}
    for sigmas in (0.0, 4.0):
        reliability = ViewReliability(num_views, outlier_sigmas=sigmas)
        for _ in range(3):
            reliability.update(view, loss)
        weights[sigmas] = reliability.weights()
    assert torch.all(weights[0.0] == 1.0), weights[0.0]
    assert weights[4.0][7] == 0.0 and torch.all(weights[4.0][torch.arange(num_views) != 7] == 1.0), weights[4.0]


def test_wrong_view_weighed_out_and_held_out_error_drops(tmp_path):
    """Noisy views (generated detail on every one) with two wrong ones (the image of a view further round
    the ring): the ratio test alone keeps the plainly wrong one near full weight; the robust test weighs it
    to 0, keeps every good view near full weight, and the held-out error against the true head drops.

    (On a clean scene the same fit gives about 21.3 dB here: the wrong views cost 0.8 dB with the ratio
    test alone and 0.3 dB with the robust one. With the hull's two votes, ``FitConfig.carve_votes``, view 0
    comes out at 0.887 instead of 1: 20.59 dB held out against 20.63 with one vote.)"""
    run, mesh, held, record = _inconsistent_scene(tmp_path / "wrong", ("detail", "wrong"))
    ratio_only = _fit(run, outlier_sigmas=0.0)
    ratio_psnr = _held_out_psnr(run, mesh, held)
    robust = _fit(run)
    robust_psnr = _held_out_psnr(run, mesh, held)

    wrong = record["wrong_views"]
    kept = np.array(ratio_only["view_weights"])
    weights = np.array(robust["view_weights"])
    plainly_wrong = wrong[int(np.argmax(kept[wrong] < 1.0))]  # the one the ratio test saw at all
    assert kept[plainly_wrong] > 0.5 and weights[plainly_wrong] == 0.0, (wrong, kept, weights)
    good = np.delete(weights, wrong)
    assert np.all(good >= 0.85) and np.sum(good < 1.0) <= 1, weights
    assert robust_psnr > ratio_psnr + 0.3, (ratio_psnr, robust_psnr)


def test_view_shift_learns_the_jitter_of_each_view(tmp_path):
    """Views moved by a few pixels each: the learnt per-view shifts undo the simulated ones."""
    run, _, _, record = _inconsistent_scene(tmp_path / "jitter", ("jitter",), jitter_px=24.0)
    info = _fit(run, view_shift=True, iterations=60)
    # The simulation rolls each image by (rows, cols) at 2×SIZE; the fit's shift is (u, v) at SIZE.
    applied = np.array([view["shift_px"] for view in record["views"]], dtype=float)[:, ::-1] / 2.0
    learnt = np.array(info["view_shifts_px"])
    assert np.abs(applied).max() >= 1.0, applied
    assert np.corrcoef(applied.ravel(), learnt.ravel())[0, 1] < -0.8, (applied, learnt)
    assert (
        fit.fit(run, dataclasses.replace(fit.PRESETS["fast"], iterations=1, image_size=SIZE), "cpu")["view_shifts_px"]
        is None
    )  # off by default


def test_view_shift_reads_each_view_at_its_own_centred_shift():
    """A view's target is its image read at the pixel less its shift; the shifts average to zero."""
    size = 12
    images = torch.rand(3 * size * size, 4)
    shift = ViewShift(images, size)
    with torch.no_grad():
        shift.raw[:] = torch.tensor([[0.3, 0.0], [0.0, 0.0], [0.0, 0.0]])  # view 0: +2 px in u, the others -1 px
    assert torch.allclose(shift.pixels.sum(dim=0), torch.zeros(2), atol=1e-6)
    read = shift(torch.arange(images.shape[0])).detach().reshape(3, size, size, 4)
    grid = images.reshape(3, size, size, 4)
    assert torch.allclose(read[0, :, 2:], grid[0, :, :-2], atol=1e-6)
    assert torch.allclose(read[1, :, :-1], grid[1, :, 1:], atol=1e-6)


def test_view_shift_is_not_steered_by_a_views_own_fine_detail():
    """The shift's gradient comes from the blurred image: one-pixel stripes (a generated view's own texture)
    give it almost none, a broad edge gives it a clear one."""
    size = 32
    u = torch.arange(size, dtype=torch.float32)
    stripes = (u % 2).expand(size, size)
    edge = torch.sigmoid((u - size / 2) / 2.0).expand(size, size)
    gradients = []
    for image in (stripes, edge):
        rgba = torch.stack([image, image, image, torch.ones_like(image)], dim=-1).repeat(2, 1, 1, 1).reshape(-1, 4)
        shift = ViewShift(rgba, size)
        pick = torch.arange(size * size)  # view 0's pixels
        inner = (pick % size >= 8) & (pick % size < size - 8)
        # The squared error against a flat grey render: each stripe's error pulls the same way.
        ((shift(pick[inner])[:, :3] - 0.3) ** 2).sum().backward()
        gradients.append(float(shift.raw.grad[0, 0].abs()))
    assert gradients[0] < 0.05 * gradients[1], gradients


def test_simulation_switches_perturbations_one_at_a_time_and_centres_the_gains():
    mesh = synthetic.head_mesh(subdivisions=3)
    clean = synthetic.render_views(mesh, synthetic.orbit_cameras(8, pitches=(0.0,)), 64)
    full, full_record = synthetic.simulate_diffusion(clean, seed=3)
    colour, record = synthetic.simulate_diffusion(clean, seed=3, perturbations=("colour",))
    gains = np.array([view["gain"] for view in record["views"]])
    # The ring is right on average: a fit that matches the views on average is the true head.
    np.testing.assert_allclose(np.exp(np.log(gains).mean(axis=0)), 1.0, atol=2e-3)
    assert gains.std() > 0.02 and record["wrong_views"] == []
    assert all(np.array_equal(c[..., 3], a[..., 3]) for c, a in zip(clean, colour))  # no shift, no wrong view
    # The same draws as the full simulation: each perturbation alone is its share of it.
    assert np.allclose(gains, [view["gain"] for view in full_record["views"]])
    jitter, record = synthetic.simulate_diffusion(clean, seed=3, perturbations=("jitter",))
    for image, moved, view, full_view in zip(clean, jitter, record["views"], full_record["views"]):
        assert view["shift_px"] == full_view["shift_px"]
        assert np.array_equal(moved, np.roll(image, tuple(view["shift_px"]), axis=(0, 1)))
    wrong, record = synthetic.simulate_diffusion(clean, seed=3, perturbations=("wrong",))
    assert record["wrong_views"] == full_record["wrong_views"] and len(record["wrong_views"]) == 2
    for i in record["wrong_views"]:
        assert np.array_equal(wrong[i], clean[(i + len(clean) // 4) % len(clean)])


def _with_view_degree(degree: int):
    volume = fit.PRESETS["fast"].volume
    return dataclasses.replace(volume, field=dataclasses.replace(volume.field, view_degree=degree))


def test_low_view_degree_keeps_per_view_casts_out_of_the_field(tmp_path):
    """Views with strong exposure and colour casts of their own: a colour that may vary with the view as
    spherical harmonics of degree 3 learns each direction's cast, which a held-out view between them then
    shows; degree 1 cannot follow view-to-view casts and learns the shared colour."""
    run, mesh, held, _ = _inconsistent_scene(tmp_path / "casts", ("colour",), exposure=0.5, colour=0.2)
    _fit(run, iterations=150, volume=_with_view_degree(3))
    degree_three = _held_out_psnr(run, mesh, held)
    _fit(run, iterations=150, volume=_with_view_degree(1))
    degree_one = _held_out_psnr(run, mesh, held)
    assert degree_one > degree_three + 2.0, (degree_three, degree_one)


def test_view_degree_zero_makes_the_colour_independent_of_the_view():
    torch.manual_seed(0)
    points = torch.rand(64, 3) - 0.5
    directions = torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    for degree, independent in ((0, True), (1, False)):
        field = NGPField(dataclasses.replace(fit.PRESETS["fast"].volume.field, view_degree=degree))
        with torch.no_grad():
            for layer in field.color_mlp.modules():  # weights that reach the direction inputs
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.normal_()
            colour = field.rgb(points, directions)
            turned = field.rgb(points, -directions)
        assert torch.allclose(colour, turned) == independent, degree
    with pytest.raises(ValueError, match="view_degree"):
        NGPField(dataclasses.replace(fit.PRESETS["fast"].volume.field, view_degree=4))
