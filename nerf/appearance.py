"""Per-view appearance and reliability: what a fit allows each training view to get wrong.

Generated views disagree in ways no single radiance field can explain: each has its own exposure
and colour cast, and now and then one is plainly wrong. Two cheap remedies, used only while fitting
(the saved field is the shared, view-independent one):

- :class:`ViewAppearance`: a learnt colour gain and offset per view applied to the rendered head
  (the affine form of nerfacto's per-image appearance embedding), kept near identity by a penalty, so
  that the field does not bake one view's exposure into the head;
- :class:`ViewReliability`: a running mean of each view's colour loss; views far above the typical one
  weigh less (as the square of the ratio), so a wrong view stops pulling the field;
- :class:`ViewShift`: a learnt image-plane shift per view (a few pixels), which takes up the small
  geometric jitter of generated views instead of blurring the head and its silhouette.
"""

from __future__ import annotations

import torch
from torch import nn


class ViewAppearance(nn.Module):
    """A colour gain and offset per training view, identity at the start.

    Args:
        num_views: training views.
    """

    def __init__(self, num_views: int) -> None:
        super().__init__()
        self.log_gain = nn.Parameter(torch.zeros(num_views, 3))
        self.offset = nn.Parameter(torch.zeros(num_views, 3))

    def forward(
        self, rgb: torch.Tensor, accumulation: torch.Tensor, background: torch.Tensor, view: torch.Tensor
    ) -> torch.Tensor:
        """Apply each ray's view's gain and offset to the head, not the background.

        Args:
            rgb: (B, 3) render composited over ``background`` (B, 3); accumulation: (B,) opacity;
            view: (B,) int view of each ray.
        Returns:
            (B, 3) the render as that view would show it.
        """
        alpha = accumulation[:, None]
        head = rgb - (1.0 - alpha) * background
        head = head * torch.exp(self.log_gain[view]) + self.offset[view] * alpha
        return head + (1.0 - alpha) * background

    def penalty(self) -> torch.Tensor:
        """Mean squared distance from identity (keeps the shared colour in the field)."""
        return torch.mean(self.log_gain**2) + torch.mean(self.offset**2)


class ViewShift(nn.Module):
    """A learnt shift of each training view's image plane, in pixels, zero at the start.

    The ray of a pixel of view ``v`` is the ray of the pixel ``shift[v]`` away: to first order its direction
    moves by ``shift_u / fx`` along the camera's x axis and ``shift_v / fy`` along its y axis.

    Args:
        pixel_axes: (V, 2, 3) world direction change per pixel of shift along u and v of each view
            (``cam2world[:3, 0] / fx`` and ``cam2world[:3, 1] / fy`` at the training size).
        pixels_per_unit: the shift is this times the parameter, so that Adam's step (about the learning
            rate in parameter units) moves it a useful fraction of a pixel.
    """

    def __init__(self, pixel_axes: torch.Tensor, pixels_per_unit: float = 10.0) -> None:
        super().__init__()
        self.register_buffer("pixel_axes", pixel_axes.float())
        self.pixels_per_unit = pixels_per_unit
        self.raw = nn.Parameter(torch.zeros(pixel_axes.shape[0], 2))

    @property
    def pixels(self) -> torch.Tensor:
        """(V, 2) the shift of each view in pixels (u, v)."""
        return self.raw * self.pixels_per_unit

    def forward(self, directions: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """Unit ray directions moved by their view's shift: (B, 3), (B,) int -> (B, 3)."""
        moved = directions + torch.einsum("bk,bkd->bd", self.pixels[view], self.pixel_axes[view])
        return moved / torch.linalg.norm(moved, dim=-1, keepdim=True)

    def penalty(self) -> torch.Tensor:
        """Mean squared shift in pixels (a shift common to all views is nearly a turn of the head)."""
        return torch.mean(self.pixels**2)


def pixel_axes(cameras, size: int) -> torch.Tensor:
    """(V, 2, 3) world direction change per pixel along u and v of each camera at ``size``² pixels."""
    axes = []
    for camera in cameras:
        fx, fy, _, _ = camera.pixel_intrinsics(size, size)
        axes.append([camera.cam2world[:3, 0] / fx, camera.cam2world[:3, 1] / fy])
    return torch.as_tensor(axes, dtype=torch.float32)


class ViewReliability:
    """Running loss per view and the weights it gives.

    A view's weight falls when its loss is far above the typical view's by either of two measures: the ratio
    to the median (weight ``(tolerance × median / loss)²``, capped at 1) and the distance from the median in
    robust standard deviations (1.4826 × the median absolute deviation over the views): 1 up to
    ``outlier_sigmas``, falling linearly to 0 at twice that. The second sees a wrong view among views that
    are all noisy (generated detail raises every view's loss, which hides the wrong one from the ratio).

    Args:
        num_views: training views.
        decay: of the running means, per update.
        tolerance: views up to this many times the median loss keep weight 1.
        outlier_sigmas: views up to this many robust standard deviations above the median keep weight 1;
            0 switches the test off.
    """

    def __init__(
        self,
        num_views: int,
        decay: float = 0.95,
        tolerance: float = 1.5,
        device: torch.device | str = "cpu",
        outlier_sigmas: float = 0.0,
    ) -> None:
        # On the training device: no host round trip per step on CUDA.
        self.loss = torch.zeros(num_views, device=device)
        self.seen = torch.zeros(num_views, dtype=torch.bool, device=device)
        self.decay = decay
        self.tolerance = tolerance
        self.outlier_sigmas = outlier_sigmas

    @torch.no_grad()
    def update(self, view: torch.Tensor, per_ray_loss: torch.Tensor) -> None:
        """Fold in one batch: (B,) int views, (B,) losses."""
        per_ray_loss = per_ray_loss.detach().float()
        total = torch.zeros_like(self.loss).index_add_(0, view, per_ray_loss)
        count = torch.zeros_like(self.loss).index_add_(0, view, torch.ones_like(per_ray_loss))
        hit = count > 0
        mean = total[hit] / count[hit]
        fresh = hit & ~self.seen
        self.loss[fresh] = mean[fresh[hit]]
        old = hit & self.seen
        self.loss[old] = self.decay * self.loss[old] + (1 - self.decay) * mean[old[hit]]
        self.seen |= hit

    def weights(self) -> torch.Tensor:
        """(V,) weight of each view in [0, 1] (see the class); 1 for views not seen yet."""
        seen_loss = torch.where(self.seen, self.loss, torch.full_like(self.loss, float("nan")))
        typical = torch.nan_to_num(torch.nanmedian(seen_loss), nan=1.0)
        ratio = self.tolerance * typical / torch.clamp(self.loss, min=1e-9)
        weight = torch.clamp(ratio**2, max=1.0)
        if self.outlier_sigmas > 0:
            spread = 1.4826 * torch.nan_to_num(torch.nanmedian(torch.abs(seen_loss - typical)), nan=0.0)
            # A floor on the spread: views that agree to a few per cent are all fine.
            sigmas = (self.loss - typical) / torch.clamp(spread, min=0.02 * typical + 1e-9)
            weight = torch.minimum(weight, torch.clamp(2.0 - sigmas / self.outlier_sigmas, 0.0, 1.0))
        return torch.where(self.seen, weight, torch.ones_like(self.loss))
