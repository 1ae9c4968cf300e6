"""Image quality metrics for the NeRF (no learnt metrics, nothing to download)."""

from __future__ import annotations

import torch


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of images in [0, 1]: (..., 3), (..., 3) -> scalar."""
    mse = torch.mean((prediction.float() - target.float()) ** 2)
    return -10.0 * torch.log10(mse.clamp(min=1e-10))


def ssim(prediction: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Gaussian window, per channel, averaged) of (H, W, 3) images in [0, 1] -> scalar."""
    x = prediction.float().permute(2, 0, 1)[None]
    y = target.float().permute(2, 0, 1)[None]
    channels = x.shape[1]
    coords = torch.arange(window, dtype=torch.float32, device=x.device) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, window, window).contiguous()

    def blur(image: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(image, kernel, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return value.mean()
