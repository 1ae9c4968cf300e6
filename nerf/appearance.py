"""Per-view appearance and reliability: what a fit allows each training view to get wrong.

Generated views disagree in ways no single radiance field can explain: each has its own exposure
and colour cast, and now and then one is plainly wrong. Two cheap remedies, used only while fitting
(the saved field is the shared, view-independent one):

- :class:`ViewAppearance`: a learnt colour gain and offset per view applied to the rendered head
  (the affine form of nerfacto's per-image appearance embedding), kept near identity by a penalty, so
  that the field does not bake one view's exposure into the head;
- :class:`ViewReliability`: a running mean of each view's colour loss; views far above the typical one
  weigh less (as the square of the ratio), so a wrong view stops pulling the field.
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


class ViewReliability:
    """Running colour loss per view and the weights it gives.

    Args:
        num_views: training views.
        decay: of the running means, per update.
        tolerance: views up to this many times the median loss keep weight 1.
    """

    def __init__(
        self, num_views: int, decay: float = 0.95, tolerance: float = 1.5, device: torch.device | str = "cpu"
    ) -> None:
        # On the training device: no host round trip per step on CUDA.
        self.loss = torch.zeros(num_views, device=device)
        self.seen = torch.zeros(num_views, dtype=torch.bool, device=device)
        self.decay = decay
        self.tolerance = tolerance

    @torch.no_grad()
    def update(self, view: torch.Tensor, per_ray_loss: torch.Tensor) -> None:
        """Fold in one batch: (B,) int views, (B,) colour losses."""
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
        """(V,) weight of each view: min(1, (tolerance × median / loss)²); 1 for views not seen yet."""
        seen_loss = torch.where(self.seen, self.loss, torch.full_like(self.loss, float("nan")))
        typical = torch.nan_to_num(torch.nanmedian(seen_loss), nan=1.0)
        ratio = self.tolerance * typical / torch.clamp(self.loss, min=1e-9)
        return torch.where(self.seen, torch.clamp(ratio**2, max=1.0), torch.ones_like(self.loss))
