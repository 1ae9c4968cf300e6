"""The torch rasteriser: tiles and chunks change nothing, the footprint is the projected Gaussian,
gradients fit a picture, and gsplat's CUDA rasteriser agrees (GPU only)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from portrait3d.cameras import camera_from_angles
from portrait3d.splat.gaussians import Gaussians, logit, quat_from_normals, sh_colour
from portrait3d.splat.rasterize import View, gsplat_available, project, render_binned, render_gsplat, render_torch


def blob(n: int = 400, degree: int = 1, seed: int = 0) -> Gaussians:
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2
    points = rng.normal(size=(n, 3))
    points = 0.25 * points / np.linalg.norm(points, axis=1, keepdims=True)
    return Gaussians(
        points,
        rng.uniform(-4.5, -3.5, (n, 3)),
        rng.normal(size=(n, 4)),
        rng.normal(size=n),
        rng.normal(size=(n, k, 3)) * 0.5,
    ).torch()


def dense_reference(g: Gaussians, view: View, background: torch.Tensor) -> torch.Tensor:
    """Every pixel against every Gaussian at once, in depth order (no tiles, no chunks, no early stop)."""
    p = project(g, view)
    order = torch.argsort(p["depth"])
    order = order[p["visible"][order]]
    ys, xs = torch.meshgrid(torch.arange(view.height) + 0.5, torch.arange(view.width) + 0.5, indexing="ij")
    d = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)[:, None, :] - p["mean2d"][order][None]
    a, b, c = p["conic"][order].unbind(-1)
    power = -0.5 * (a * d[..., 0] ** 2 + c * d[..., 1] ** 2) - b * d[..., 0] * d[..., 1]
    alpha = (p["opacity"][order] * torch.exp(power)).clamp_max(0.99)
    alpha = torch.where((alpha >= 1 / 255) & (power <= 0), alpha, torch.zeros_like(alpha))
    before = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], 1), 1)
    rgb = (alpha * before) @ p["colour"][order]
    rest = before[:, -1] * (1 - alpha[:, -1])
    return (rgb + rest[:, None] * background).reshape(view.height, view.width, 3)


def test_tiles_and_chunks_match_the_dense_reference():
    g = blob()
    view = View.from_camera(camera_from_angles(30, 10), 48, 40)
    background = torch.tensor([0.2, 0.5, 0.9])
    reference = dense_reference(g, view, background)
    for tile, chunk in ((8, 64), (16, 4096), (13, 7)):
        rgb, alpha = render_torch(g, view, background, tile=tile, chunk=chunk)
        # Early termination (a tile stops once every pixel is opaque to 1e-4) is the only difference.
        assert (rgb - reference).abs().max() < 2e-3, (tile, chunk)
    assert 0.3 < float(alpha.mean()) < 1.0


# save_pairs: None keeps every chunk's alphas for the backward, 0 recomputes them all, 20 000 keeps the chunks that
# fit (two of this scene's four: both paths in one backward).
@pytest.mark.parametrize(
    "tile, chunk, max_pairs, save_pairs",
    [(16, 64, None, None), (8, 37, 5000, None), (8, 37, 5000, 0), (4, 16, None, 0), (4, 16, None, 20_000)],
)
def test_the_fast_rasteriser_matches_the_reference_image_and_gradients(tile, chunk, max_pairs, save_pairs):
    g = blob(300, degree=1, seed=1)
    params = [g.means, g.log_scales, g.quats, g.opacity_logits, g.sh]
    for p in params:
        p.requires_grad_(True)
    view = View.from_camera(camera_from_angles(-20, 15), 48, 48)
    background = torch.tensor([0.9, 0.4, 0.1])
    generator = torch.Generator().manual_seed(0)
    weight_rgb, weight_alpha = torch.rand(48, 48, 3, generator=generator), torch.rand(48, 48, generator=generator)
    results = []
    for render, options in ((render_torch, {}), (render_binned, {"max_pairs": max_pairs, "save_pairs": save_pairs})):
        for p in params:
            p.grad = None
        rgb, alpha = render(g, view, background, tile=tile, chunk=chunk, **options)
        ((rgb * weight_rgb).sum() + (alpha * weight_alpha).sum()).backward()
        results.append((rgb.detach(), alpha.detach(), [p.grad.clone() for p in params]))
    (ref_rgb, ref_alpha, ref_grads), (rgb, alpha, grads) = results
    assert 0.2 < float(ref_alpha.mean()) < 0.95  # a scene with overlaps and gaps
    # Stated tolerance: float32 rounding (the fast path expands the quadratic form and sums in another order).
    assert (rgb - ref_rgb).abs().max() < 1e-4
    assert (alpha - ref_alpha).abs().max() < 1e-4
    for name, ref, got in zip(("means", "log_scales", "quats", "opacity_logits", "sh"), ref_grads, grads):
        assert ref.abs().max() > 0, name
        assert (got - ref).abs().max() < 1e-4 * ref.abs().max() + 1e-6, name


def test_the_fast_rasteriser_is_differentiable_end_to_end():
    """torch.autograd.gradcheck of the analytic backward (float64, a few Gaussians, 8x6 pixels)."""
    from portrait3d.splat.tiles import composite

    g = blob(6, degree=0, seed=2)
    view = View.from_camera(camera_from_angles(0, 0), 8, 6)
    p = project(g, view)
    inputs = [p["mean2d"].double(), p["conic"].double(), p["colour"].double(), p["opacity"].double()]
    background = torch.tensor([0.3, 0.6, 0.2], dtype=torch.float64, requires_grad=True)
    inputs = [x.detach().requires_grad_(True) for x in inputs]

    for save_pairs in (1 << 20, 0, 100):  # every chunk kept for the backward, none, those that fit

        def rendered(mean2d, conic, colour, opacity, background, save_pairs=save_pairs):
            rgb, alpha = composite(
                mean2d, conic, colour, opacity, p["radius"], p["depth"].detach(), p["visible"], 8, 6, background,
                4, 2, save_pairs=save_pairs,
            )  # fmt: skip
            return rgb, alpha

        assert float(rendered(*inputs, background)[1].detach().mean()) > 0.1  # the Gaussians cover the picture
        assert torch.autograd.gradcheck(rendered, (*inputs, background), eps=1e-6, atol=1e-5), save_pairs


def test_a_gaussian_centred_on_a_pixel_covers_that_pixel():
    """The fast path expands the quadratic form, so at the centre its power can round above zero: that must not
    cut the Gaussian there (it left a hole at the centre of about half such Gaussians)."""
    from portrait3d.splat.tiles import composite

    generator = torch.Generator().manual_seed(0)
    centres = torch.randint(0, 16, (40, 2), generator=generator).float() + 0.5
    diagonal = 0.05 + torch.rand(40, 2, generator=generator)
    skew = 0.15 * (torch.rand(40, generator=generator) - 0.5) * diagonal.prod(1).sqrt()
    conics = torch.stack([diagonal[:, 0], skew, diagonal[:, 1]], 1)
    covered = []
    for centre, conic in zip(centres, conics):
        _, alpha = composite(
            centre[None], conic[None], torch.ones(1, 3), torch.tensor([0.7]), torch.tensor([20.0]),
            torch.tensor([1.0]), torch.tensor([True]), 16, 16, torch.zeros(3),
        )  # fmt: skip
        covered.append(float(alpha[int(centre[1]), int(centre[0])]))
    np.testing.assert_allclose(covered, 0.7, atol=1e-5)


def test_the_fast_rasteriser_draws_the_background_when_nothing_is_in_view():
    g = blob(50, degree=0)
    g.means = g.means + torch.tensor([0.0, 0.0, 40.0])  # far behind a camera on the ring at yaw 0
    view = View.from_camera(camera_from_angles(0, 0), 20, 12)
    assert not bool(project(g, view)["visible"].any())
    rgb, alpha = render_binned(g, view, torch.tensor([0.1, 0.2, 0.3]))
    assert rgb.shape == (12, 20, 3) and float(alpha.abs().max()) == 0.0
    assert torch.allclose(rgb, torch.tensor([0.1, 0.2, 0.3]).expand(12, 20, 3))


def test_one_gaussian_projects_to_its_perspective_footprint():
    sigma, depth, size = 0.02, 2.7, 64
    opacity = np.array([logit(np.array(0.9))])
    g = Gaussians(
        np.zeros((1, 3)), np.full((1, 3), math.log(sigma)), np.array([[1.0, 0, 0, 0]]), opacity, np.zeros((1, 1, 3))
    )
    g = g.torch()
    camera = camera_from_angles(0, 0, radius=depth)
    view = View.from_camera(camera, size, size)
    _, alpha = render_torch(g, view)
    focal = camera.intrinsics[0, 0] * size
    sigma_px = math.sqrt((focal * sigma / depth) ** 2 + 0.3)  # the 0.3 px² dilation
    row = alpha[size // 2].numpy()
    x = np.arange(size) + 0.5 - size / 2
    # Row size/2 has its pixel centres half a pixel below the Gaussian's centre.
    expected = np.minimum(0.9 * np.exp(-0.5 * (x**2 + 0.25) / sigma_px**2), 0.99)
    expected[expected < 1 / 255] = 0
    np.testing.assert_allclose(row, expected, atol=2e-3)
    assert row.argmax() in (size // 2 - 1, size // 2)


def test_view_dependent_colour_follows_the_3dgs_basis():
    sh = torch.zeros(1, 4, 3)
    sh[0, 3, 0] = 1.0  # degree 1, m = +1 (x), red
    x_dir = torch.tensor([[1.0, 0.0, 0.0]])
    assert float(sh_colour(sh, x_dir)[0, 0]) == pytest.approx(max(0.5 - 0.4886025119029199, 0.0))
    assert float(sh_colour(sh, -x_dir)[0, 0]) == pytest.approx(0.5 + 0.4886025119029199)


def test_gradients_fit_a_picture():
    torch.manual_seed(0)
    g = blob(200, degree=0)
    view = View.from_camera(camera_from_angles(0, 0), 32, 32)
    target = torch.zeros(32, 32, 3)
    target[:, :16] = torch.tensor([0.9, 0.1, 0.1])
    target[:, 16:] = torch.tensor([0.1, 0.1, 0.9])
    params = [g.sh.requires_grad_(True), g.opacity_logits.requires_grad_(True)]
    optimiser = torch.optim.Adam(params, lr=0.05)
    losses = []
    for _ in range(40):
        rgb, _ = render_torch(g, view, torch.zeros(3), tile=16)
        loss = (rgb - target).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0]


def test_quat_from_normals_turns_z_onto_the_normal():
    normals = np.array([[0, 0, 1.0], [0, 0, -1.0], [1.0, 0, 0], [0.3, -0.4, 0.866]])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    from portrait3d.splat.gaussians import quat_to_rotmat

    rot = quat_to_rotmat(torch.as_tensor(quat_from_normals(normals))).numpy()
    np.testing.assert_allclose(rot[:, :, 2], normals, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gsplat_matches_the_torch_rasteriser_on_cuda():
    if not gsplat_available("cuda"):
        pytest.skip("gsplat is not installed")
    g = blob(2000, degree=1).torch("cuda")
    view = View.from_camera(camera_from_angles(40, -10), 96, 80, "cuda")
    background = torch.tensor([1.0, 1.0, 1.0], device="cuda")
    ours, our_alpha = render_torch(g, view, background)
    theirs, their_alpha = render_gsplat(g, view, background)
    # Stated tolerance: gsplat cuts each Gaussian at a slightly different radius and stops each pixel's
    # blending on its own, so pixels differ by a few 1/255 at most and by far less on average.
    assert (ours - theirs).abs().mean() < 2e-3
    assert (ours - theirs).abs().max() < 0.05
    assert (our_alpha - their_alpha).abs().mean() < 2e-3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_fast_rasteriser_runs_on_cuda_as_on_the_cpu():
    g = blob(500, degree=1, seed=3).torch("cuda")
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh"):
        getattr(g, name).requires_grad_(True)
    view = View.from_camera(camera_from_angles(10, 5), 48, 40, "cuda")
    background = torch.tensor([1.0, 1.0, 1.0], device="cuda")
    rgb, alpha = render_binned(g, view, background)
    (rgb.sum() + alpha.sum()).backward()
    ref_rgb, ref_alpha = render_torch(g, view, background, tile=4)
    assert (rgb - ref_rgb).abs().max() < 1e-4 and (alpha - ref_alpha).abs().max() < 1e-4
    assert g.means.grad is not None and bool(torch.isfinite(g.means.grad).all())
