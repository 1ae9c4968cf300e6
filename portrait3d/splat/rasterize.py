"""Rendering Gaussians: a pure-torch tiled rasteriser (the reference), the fast one of
:mod:`portrait3d.splat.tiles` built on the same projection, and gsplat's CUDA one where it is installed.

The torch rasteriser follows the 3DGS forward pass (EWA projection with the affine Jacobian, a 0.3
pixel² dilation of the 2D covariance, alpha = min(0.99, opacity · G), alphas under 1/255 skipped,
front-to-back compositing by camera depth) and is differentiable through autograd. Memory is
bounded: pixels are processed in square tiles, and the Gaussians overlapping a tile in chunks whose
transmittance is carried from one chunk to the next, so at most ``tile² × chunk`` weights live at once.

Cameras are the project's (:class:`portrait3d.cameras.Camera`): OpenCV axes, pixel centres at
``i + 0.5`` (as gsplat).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .gaussians import Gaussians, covariances, sh_colour

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
TRANSMITTANCE_MIN = 1e-4
"""A tile stops once every pixel's transmittance is below this (3DGS stops each pixel there)."""
DILATION = 0.3
"""Added to the 2D covariance's diagonal (pixels²), as 3DGS and gsplat do: every Gaussian covers about a pixel."""


@dataclass(frozen=True)
class View:
    """A camera as the rasteriser needs it.

    Attributes:
        world2cam: (4, 4) world-to-camera, OpenCV axes.
        K: (3, 3) intrinsics in pixels.
        width, height: image size in pixels.
    """

    world2cam: torch.Tensor
    K: torch.Tensor
    width: int
    height: int

    @classmethod
    def from_camera(cls, camera, width: int, height: int, device="cpu") -> View:
        """From a :class:`portrait3d.cameras.Camera` (normalised intrinsics)."""
        fx, fy, cx, cy = camera.pixel_intrinsics(width, height)
        K = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=torch.float32, device=device)
        w2c = torch.as_tensor(np.linalg.inv(camera.cam2world), dtype=torch.float32, device=device)
        return cls(w2c, K, width, height)


def project(gaussians: Gaussians, view: View, near: float = 0.01) -> dict[str, torch.Tensor]:
    """Project Gaussians (torch) into ``view``.

    Returns:
        ``mean2d`` (N, 2) pixels, ``conic`` (N, 3) the inverse 2D covariance (a, b, c),
        ``radius`` (N,) pixels (3 sigma), ``depth`` (N,), ``colour`` (N, 3), ``opacity`` (N,),
        ``visible`` (N,) bool: in front of the near plane and overlapping the image.
    """
    g = gaussians
    R, t = view.world2cam[:3, :3], view.world2cam[:3, 3]
    cam = g.means @ R.T + t
    x, y, z = cam.unbind(-1)
    in_front = z > near
    z = torch.where(in_front, z, torch.ones_like(z))
    fx, fy, cx, cy = view.K[0, 0], view.K[1, 1], view.K[0, 2], view.K[1, 2]
    # Clamp the tangent as 3DGS does, so that Gaussians far off-screen do not explode the Jacobian.
    limx = 1.3 * 0.5 * view.width / fx
    limy = 1.3 * 0.5 * view.height / fy
    tx = (x / z).clamp(-limx, limx) * z
    ty = (y / z).clamp(-limy, limy) * z
    zero = torch.zeros_like(z)
    J = torch.stack([fx / z, zero, -fx * tx / z**2, zero, fy / z, -fy * ty / z**2], -1).reshape(-1, 2, 3)
    cov_cam = R @ covariances(g.log_scales, g.quats) @ R.T
    cov2d = J @ cov_cam @ J.transpose(1, 2)
    a = cov2d[:, 0, 0] + DILATION
    b = cov2d[:, 0, 1]
    c = cov2d[:, 1, 1] + DILATION
    det = (a * c - b * b).clamp_min(1e-12)
    conic = torch.stack([c / det, -b / det, a / det], -1)
    mid = 0.5 * (a + c)
    lambda_max = mid + torch.sqrt((mid * mid - det).clamp_min(0.1))
    radius = torch.ceil(3.0 * torch.sqrt(lambda_max))
    mean2d = torch.stack([fx * x / z + cx, fy * y / z + cy], -1)
    on_screen = (
        (mean2d[:, 0] + radius > 0)
        & (mean2d[:, 0] - radius < view.width)
        & (mean2d[:, 1] + radius > 0)
        & (mean2d[:, 1] - radius < view.height)
    )
    camera_centre = -R.T @ t
    directions = torch.nn.functional.normalize(g.means - camera_centre, dim=-1)
    return {
        "mean2d": mean2d,
        "conic": conic,
        "radius": radius.detach(),
        "depth": z,
        "colour": sh_colour(g.sh, directions),
        "opacity": torch.sigmoid(g.opacity_logits),
        "visible": in_front & on_screen,
    }


def render_torch(
    gaussians: Gaussians,
    view: View,
    background: torch.Tensor | None = None,
    tile: int = 16,
    chunk: int = 512,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render with the pure-torch tiled rasteriser (differentiable).

    Args:
        gaussians: torch Gaussians (N, ...), on the device of ``view``.
        view: the camera.
        background: (3,) colour behind the Gaussians (default black).
        tile: tile side in pixels.
        chunk: Gaussians composited at once within a tile (bounds memory at tile² × chunk).
    Returns:
        ``(rgb, alpha)``: (H, W, 3) composited over ``background``, (H, W) accumulated opacity.
    """
    device = gaussians.means.device
    p = project(gaussians, view)
    index = torch.nonzero(p["visible"]).squeeze(1)
    index = index[torch.argsort(p["depth"][index])]
    mean2d, conic, radius = p["mean2d"][index], p["conic"][index], p["radius"][index]
    colour, opacity = p["colour"][index], p["opacity"][index]
    lo = (mean2d.detach() - radius[:, None]).floor()
    hi = (mean2d.detach() + radius[:, None]).ceil()
    W, H = view.width, view.height
    rows, alphas = [], []
    for y0 in range(0, H, tile):
        row_rgb, row_alpha = [], []
        y1 = min(y0 + tile, H)
        in_row = (hi[:, 1] >= y0) & (lo[:, 1] < y1)
        for x0 in range(0, W, tile):
            x1 = min(x0 + tile, W)
            sel = torch.nonzero(in_row & (hi[:, 0] >= x0) & (lo[:, 0] < x1)).squeeze(1)
            ys, xs = torch.meshgrid(
                torch.arange(y0, y1, device=device, dtype=torch.float32) + 0.5,
                torch.arange(x0, x1, device=device, dtype=torch.float32) + 0.5,
                indexing="ij",
            )
            pixels = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)
            rgb = torch.zeros(pixels.shape[0], 3, device=device)
            transmittance = torch.ones(pixels.shape[0], device=device)
            for start in range(0, sel.numel(), chunk):
                if start and float(transmittance.detach().max()) < TRANSMITTANCE_MIN:
                    break  # every pixel of the tile is opaque: the Gaussians behind cannot show
                s = sel[start : start + chunk]
                d = pixels[:, None, :] - mean2d[None, s, :]
                a, b, c = conic[s].unbind(-1)
                power = -0.5 * (a * d[..., 0] ** 2 + c * d[..., 1] ** 2) - b * d[..., 0] * d[..., 1]
                alpha = (opacity[s] * torch.exp(power.clamp_max(0.0))).clamp_max(ALPHA_MAX)
                alpha = torch.where((alpha >= ALPHA_MIN) & (power <= 0), alpha, torch.zeros_like(alpha))
                through = torch.cumprod(1.0 - alpha, dim=1)
                before = torch.cat([torch.ones_like(through[:, :1]), through[:, :-1]], dim=1)
                weights = alpha * before * transmittance[:, None]
                rgb = rgb + weights @ colour[s]
                transmittance = transmittance * through[:, -1]
            row_rgb.append(rgb.reshape(y1 - y0, x1 - x0, 3))
            row_alpha.append((1.0 - transmittance).reshape(y1 - y0, x1 - x0))
        rows.append(torch.cat(row_rgb, 1))
        alphas.append(torch.cat(row_alpha, 1))
    rgb, alpha = torch.cat(rows, 0), torch.cat(alphas, 0)
    if background is not None:
        rgb = rgb + (1.0 - alpha)[..., None] * background.to(device)
    return rgb, alpha


def render_binned(
    gaussians: Gaussians,
    view: View,
    background: torch.Tensor | None = None,
    tile: int = 4,
    chunk: int = 16,
    max_pairs: int | None = None,
    save_pairs: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render with the fast CPU rasteriser (:mod:`portrait3d.splat.tiles`): all tiles at once, analytic backward.

    Same arguments and outputs as :func:`render_torch`, which it matches to float rounding;
    ``max_pairs``: (pixel, Gaussian) pairs held at once (default :data:`portrait3d.splat.tiles.MAX_PAIRS`);
    ``save_pairs``: pairs whose alphas the forward keeps for the backward (default
    :data:`portrait3d.splat.tiles.SAVE_PAIRS`; 0: the backward recomputes them all).
    """
    from .tiles import MAX_PAIRS, SAVE_PAIRS, composite

    p = project(gaussians, view)
    device = gaussians.means.device
    background = torch.zeros(3, device=device) if background is None else background.to(device)
    return composite(
        p["mean2d"], p["conic"], p["colour"], p["opacity"], p["radius"], p["depth"].detach(), p["visible"],
        view.width, view.height, background, tile, chunk, max_pairs or MAX_PAIRS,
        SAVE_PAIRS if save_pairs is None else save_pairs,
    )  # fmt: skip


def gsplat_available(device: torch.device | str) -> bool:
    """gsplat's CUDA rasteriser can be used: it is installed and ``device`` is CUDA."""
    if torch.device(device).type != "cuda":
        return False
    try:
        import gsplat  # noqa: F401
    except (ImportError, OSError, RuntimeError):  # not installed, or its CUDA libraries do not load
        return False
    return True


def render_gsplat(
    gaussians: Gaussians, view: View, background: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render with gsplat's CUDA rasteriser (same conventions and outputs as :func:`render_torch`)."""
    from gsplat import rasterization

    g = gaussians
    bg = None if background is None else background.to(g.means.device)[None]
    colours, alphas, _ = rasterization(
        g.means,
        torch.nn.functional.normalize(g.quats, dim=-1),
        torch.exp(g.log_scales),
        torch.sigmoid(g.opacity_logits),
        g.sh,
        view.world2cam[None],
        view.K[None],
        view.width,
        view.height,
        sh_degree=g.sh_degree,
        backgrounds=bg,
        eps2d=DILATION,
    )
    return colours[0], alphas[0, ..., 0]


def render(
    gaussians: Gaussians, view: View, background: torch.Tensor | None = None, backend: str = "auto", **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render with gsplat on CUDA when installed (``backend="auto"``), else the fast torch rasteriser.

    ``backend``: ``auto``, ``binned`` (:func:`render_binned`), ``torch`` (:func:`render_torch`, the
    reference) or ``gsplat``. Returns ``(rgb (H, W, 3), alpha (H, W))``.
    """
    use_gsplat = backend == "gsplat" or (backend == "auto" and gsplat_available(gaussians.means.device))
    if use_gsplat:
        return render_gsplat(gaussians, view, background)
    if backend == "torch":
        return render_torch(gaussians, view, background, **kwargs)
    return render_binned(gaussians, view, background, **kwargs)


def render_numpy(gaussians: Gaussians, camera, width: int, height: int, background=(1.0, 1.0, 1.0)) -> np.ndarray:
    """A reference picture: (H, W, 3) uint8 of ``gaussians`` at a project camera, no gradients."""
    with torch.no_grad():
        rgb, _ = render_binned(
            gaussians.torch(), View.from_camera(camera, width, height), torch.tensor(background, dtype=torch.float32)
        )
    return (rgb.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
