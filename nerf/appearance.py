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

import math

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
    gradient (learning the rays' directions instead made a CPU step 30 % slower). The shift's gradient
    comes from a blurred copy of the images: a generated view's own fine detail (noise, hallucinated
    texture) would otherwise steer it, where the field's consensus steered the rays.

    Args:
        rgba: (V·size², 4) the training images, each view's pixels in row-major order.
        size: the images' side in pixels.
        blur_px: standard deviation of the blur the gradient is taken through, in pixels.
        pixels_per_unit: the shift is this times the parameter, so that Adam's step (about the learning
            rate in parameter units) moves it a useful fraction of a pixel.
    """

    def __init__(self, rgba: torch.Tensor, size: int, blur_px: float = 1.5, pixels_per_unit: float = 10.0) -> None:
        super().__init__()
        self.size = size
        self.pixels_per_unit = pixels_per_unit
        num_views = rgba.shape[0] // (size * size)
        # Buffers that move with the module, not saved with it (the fit's views are the run's).
        self.register_buffer("rgba", rgba, persistent=False)
        blurred = _blurred(rgba.reshape(num_views, size, size, -1), blur_px).reshape(rgba.shape)
        self.register_buffer("blurred", blurred, persistent=False)
        self.raw = nn.Parameter(torch.zeros(num_views, 2, device=rgba.device))

    @property
    def pixels(self) -> torch.Tensor:
        """(V, 2) the shift of each view in pixels (u, v), zero on average over the views: a shift common to
        all of them would move the whole head, which the views' cameras fix."""
        return (self.raw - self.raw.mean(dim=0)) * self.pixels_per_unit

    def forward(self, pick: torch.Tensor) -> torch.Tensor:
        """The RGBA targets of the rays ``pick`` (B,) int: (B, 4), read at their view's shift."""
        shift = self.pixels
        sharp = _read_shifted(self.rgba, pick, shift.detach(), self.size)
        smooth = _read_shifted(self.blurred, pick, shift, self.size)
        return sharp + (smooth - smooth.detach())

    def penalty(self) -> torch.Tensor:
        """Mean squared shift in pixels."""
        return torch.mean(self.pixels**2)


def _blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """(V, H, W, C) images blurred by a Gaussian of ``sigma`` pixels (separable, edges replicated)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[-1]
    out = images.permute(0, 3, 1, 2)
    for shape in ((1, 1, 1, -1), (1, 1, -1, 1)):
        weight = kernel.reshape(shape).expand(channels, *kernel.reshape(shape).shape[1:])
        pad = (radius, radius, 0, 0) if shape[-1] == -1 else (0, 0, radius, radius)
        out = torch.nn.functional.conv2d(torch.nn.functional.pad(out, pad, mode="replicate"), weight, groups=channels)
    return out.permute(0, 2, 3, 1).contiguous()


def _read_shifted(values: torch.Tensor, pick: torch.Tensor, shift: torch.Tensor, size: int) -> torch.Tensor:
    """``values`` (V·size², C) of the pixels ``pick`` (B,), read bilinearly at the pixel less its view's
    ``shift`` (V, 2) (u, v), clamped to the image: (B, C)."""
    pixels = size * size
    view, local = pick // pixels, pick % pixels
    moved = shift[view]
    last = size - 1
    u = ((local % size).to(moved.dtype) - moved[:, 0]).clamp(0, last)
    v = ((local // size).to(moved.dtype) - moved[:, 1]).clamp(0, last)
    # The lower corner stays one pixel inside, so its right and lower neighbours exist.
    u0, v0 = u.detach().floor().clamp(max=last - 1), v.detach().floor().clamp(max=last - 1)
    fu, fv = (u - u0)[:, None], (v - v0)[:, None]
    corner = view * pixels + v0.long() * size + u0.long()
    top = values[corner] * (1 - fu) + values[corner + 1] * fu
    bottom = values[corner + size] * (1 - fu) + values[corner + size + 1] * fu
    return top * (1 - fv) + bottom * fv


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
        # No boolean indexing: each mask index waits for the GPU, and this runs every step.
        per_ray_loss = per_ray_loss.detach().float()
        total = torch.zeros_like(self.loss).index_add_(0, view, per_ray_loss)
        count = torch.zeros_like(self.loss).index_add_(0, view, torch.ones_like(per_ray_loss))
        hit = count > 0
        mean = total / count.clamp(min=1.0)
        running = torch.where(self.seen, self.decay * self.loss + (1 - self.decay) * mean, mean)
        self.loss = torch.where(hit, running, self.loss)
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
