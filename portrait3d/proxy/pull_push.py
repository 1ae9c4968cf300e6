"""Spreading values over the head's texture map: a smooth field from scattered known texels, and the distance to them.

The texture is a longitude/latitude map that wraps around at u = 0 / 1 (the back of the head), so both work on
the map padded by a quarter of its width on each side. Both work on a coarse grid (``work_width`` texels wide):
their scale is the head's, not the texel's.
"""

from __future__ import annotations

import numpy as np


def low_frequency(values: np.ndarray, weights: np.ndarray, work_width: int = 256) -> np.ndarray:
    """Spread weighted texture values everywhere as a smooth field (pull-push on a coarse grid).

    Args:
        values: (Ht, Wt, C) texture values.
        weights: (Ht, Wt) confidence in [0, 1] (0 = unknown).
        work_width: width of the grid the field is built on (its detail scale).
    Returns:
        (Ht, Wt, C) float32 field: near known texels their local mean, far from them the overall mean.
    """
    import cv2

    height, width = weights.shape
    channels = values.shape[-1]
    work = (work_width, max(2, work_width * height // width))
    w = cv2.resize(weights.astype(np.float32), work, interpolation=cv2.INTER_AREA)
    vw = cv2.resize((values * weights[..., None]).astype(np.float32), work, interpolation=cv2.INTER_AREA)
    vw = vw.reshape(work[1], work[0], channels)
    pad = work[0] // 4  # the texture wraps around at u = 0 / 1
    w = np.concatenate([w[:, -pad:], w, w[:, :pad]], axis=1)
    vw = np.concatenate([vw[:, -pad:], vw, vw[:, :pad]], axis=1)
    total = float(w.sum())
    levels = [(vw, w)]
    while min(levels[-1][1].shape) > 2:
        lv, lw = levels[-1]
        size = (max(1, lw.shape[1] // 2), max(1, lw.shape[0] // 2))
        levels.append((
            cv2.resize(lv, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], channels),
            cv2.resize(lw, size, interpolation=cv2.INTER_AREA),
        ))  # fmt: skip
    mean = vw.reshape(-1, channels).sum(0) / total if total > 0 else np.zeros(channels, np.float32)
    field = np.broadcast_to(mean.astype(np.float32), levels[-1][0].shape).copy()
    for lv, lw in reversed(levels):
        up = cv2.resize(field, (lw.shape[1], lw.shape[0]), interpolation=cv2.INTER_LINEAR)
        up = up.reshape(lw.shape[0], lw.shape[1], channels)
        alpha = np.clip(lw / 0.25, 0.0, 1.0)[..., None]
        field = alpha * (lv / np.maximum(lw, 1e-6)[..., None]) + (1 - alpha) * up
    field = cv2.GaussianBlur(field, (0, 0), 1.0).reshape(field.shape)[:, pad:-pad]
    full = cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC)
    return full.reshape(height, width, channels).astype(np.float32)


def distance_to_known(weights: np.ndarray, work_width: int = 256) -> np.ndarray:
    """Distance from every texel to the nearest known texel, in fractions of the texture width: (Ht, Wt)."""
    import cv2

    height, width = weights.shape
    work = (work_width, max(2, work_width * height // width))
    known = cv2.resize(weights.astype(np.float32), work, interpolation=cv2.INTER_AREA) > 0.3
    pad = work[0] // 4
    known = np.concatenate([known[:, -pad:], known, known[:, :pad]], axis=1)
    dist = cv2.distanceTransform((~known).astype(np.uint8), cv2.DIST_L2, 5)[:, pad:-pad]
    return cv2.resize(dist / work_width, (width, height), interpolation=cv2.INTER_LINEAR)
