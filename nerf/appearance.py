"""Per-view appearance and reliability: what a fit allows each training view to get wrong.

Generated views disagree in ways no single radiance field can explain: each has its own exposure
and colour cast, and now and then one is plainly wrong. Two cheap remedies, used only while fitting
(the saved field is the shared, view-independent one):

- :class:`ViewAppearance`: a learnt colour gain and offset per view applied to the rendered head
  (the affine form of nerfacto's per-image appearance embedding), kept near identity by a penalty, so
  that the field does not bake one view's exposure into the head;
- :class:`ViewReliability`: a running mean of each view's colour loss; views far above the typical one
  weigh less (as the square of the ratio), so a wrong view stops pulling the field;
- :class:`ViewShift`: a learnt shift of each view's image (a few pixels), which takes up the small
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
    """A learnt shift of each training view's image, in pixels, zero at the start.

    The camera of view ``v`` is taken to see at pixel ``p`` what its image holds at ``p - shift[v]`` (read
    bilinearly): the ray of ``p`` then meets what the image shows at ``p``'s ray moved by ``shift[v]``.
    The shift moves where the target is read, not where the ray goes, so the field's inputs need no
    gradient (learning the rays' directions instead made a CPU step 30 % slower).

    Args:
        num_views: training views.
        size: the training images' side in pixels (rays of a view are its pixels in row-major order).
        pixels_per_unit: the shift is this times the parameter, so that Adam's step (about the learning
            rate in parameter units) moves it a useful fraction of a pixel.
    """

    def __init__(self, num_views: int, size: int, pixels_per_unit: float = 10.0) -> None:
        super().__init__()
        self.size = size
        self.pixels_per_unit = pixels_per_unit
        self.raw = nn.Parameter(torch.zeros(num_views, 2))

    @property
    def pixels(self) -> torch.Tensor:
        """(V, 2) the shift of each view in pixels (u, v)."""
        return self.raw * self.pixels_per_unit

    def forward(self, values: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
        """The per-pixel ``values`` of the rays ``pick``, read at their view's shift.

        Args:
            values: (V·size², C) a value per pixel of every view (the training images' RGBA).
            pick: (B,) int rays, as indices into ``values``.
        Returns:
            (B, C) the values bilinearly read at each ray's pixel less its view's shift (clamped to the image).
        """
        pixels = self.size * self.size
        view, local = pick // pixels, pick % pixels
        shift = self.pixels[view]
        last = self.size - 1
        u = ((local % self.size).to(shift.dtype) - shift[:, 0]).clamp(0, last)
        v = ((local // self.size).to(shift.dtype) - shift[:, 1]).clamp(0, last)
        # The lower corner stays one pixel inside, so its right and lower neighbours exist.
        u0, v0 = u.detach().floor().clamp(max=last - 1), v.detach().floor().clamp(max=last - 1)
        fu, fv = (u - u0)[:, None], (v - v0)[:, None]
        corner = view * pixels + v0.long() * self.size + u0.long()
        top = values[corner] * (1 - fu) + values[corner + 1] * fu
        bottom = values[corner + self.size] * (1 - fu) + values[corner + self.size + 1] * fu
        return top * (1 - fv) + bottom * fv

    def penalty(self) -> torch.Tensor:
        """Mean squared shift in pixels (a shift common to all views is nearly a turn of the head)."""
        return torch.mean(self.pixels**2)


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
