"""Procedural hair strands for the texture's unseen hair: a direction field from the photo's own hair, and noise
smeared along it."""

from __future__ import annotations

import numpy as np

from portrait3d.proxy.pull_push import low_frequency


def strand_texture(direction: np.ndarray, width_texels: float, length_texels: float, seed: int = 0) -> np.ndarray:
    """Procedural hair strands: noise smeared along a direction field (line-integral convolution).

    Args:
        direction: (Ht, Wt, 2) unit (column, row) strand direction per texel.
        width_texels: strand thickness.
        length_texels: strand length.
    Returns:
        (Ht, Wt) float32 with zero mean and unit spread.
    """
    import cv2

    height, width = direction.shape[:2]
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), width_texels)
    cols, rows = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    steps = 8
    step = length_texels / (2 * steps)
    total = np.zeros((height, width), np.float32)
    for k in range(-steps, steps + 1):
        dx, dy = direction[..., 0] * (k * step), direction[..., 1] * (k * step)
        total += cv2.remap(noise, cols + dx, rows + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    total -= total.mean()
    return total / max(float(total.std()), 1e-6)


def strand_direction(luminance: np.ndarray, weights: np.ndarray, distance: np.ndarray, reach: float = 0.04):
    """Hair direction per texel: the photo's (structure tensor) near seen hair, straight down the head far away.

    Args:
        luminance: (Ht, Wt) photo luminance in texture space.
        weights: (Ht, Wt) where the photo shows hair.
        distance: (Ht, Wt) distance to seen texels (fractions of the texture width).
        reach: how far the photo's direction carries on.
    Returns:
        (Ht, Wt, 2) unit (column, row) directions.
    """
    import cv2

    gx = cv2.Sobel(luminance.astype(np.float32), cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(luminance.astype(np.float32), cv2.CV_32F, 0, 1, ksize=3)
    tensor = np.stack([gx * gx, gx * gy, gy * gy], axis=-1)
    tensor /= np.maximum(tensor[..., 0] + tensor[..., 2], 1e-6)[..., None]
    seen = low_frequency(tensor, weights, work_width=128)
    # Far from the seen hair the strands fall down the head: the gradient runs across them (along u).
    alpha = np.exp(-distance / reach)[..., None]
    blended = alpha * seen + (1 - alpha) * np.array([1.0, 0.0, 0.0], np.float32)
    jxx, jxy, jyy = blended[..., 0], blended[..., 1], blended[..., 2]
    across = 0.5 * np.arctan2(2 * jxy, jxx - jyy)  # gradient angle
    along = across + np.pi / 2
    return np.stack([np.cos(along), np.sin(along)], axis=-1).astype(np.float32)
