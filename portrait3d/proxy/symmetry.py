"""Left-right symmetry of the head texture: where each texel's mirror image lies in the texture.

The head's world frame is its own frame (the camera carries the pose), so the
face's mid-plane is a plane ``x = mid_x``. A texel's mirror is the texel
whose surface point is the reflection of its own; with a longitude/latitude
layout that is found from the reflected point's direction, so the mesh need
not be exactly symmetric.
"""

from __future__ import annotations

import numpy as np


def mirror_coordinates(points: np.ndarray, centre: np.ndarray, mid_x: float, width: int) -> np.ndarray:
    """Texel coordinates of the mirror image of every texel's surface point.

    Args:
        points: (Ht, Wt, 3) surface point of every texel (world).
        centre: (3,) centre of the longitude/latitude map.
        mid_x: x of the head's mid-plane.
        width: texture width Wt (the height is Wt / 2).
    Returns:
        (Ht, Wt, 2) float32 (column, row) texel coordinates for ``cv2.remap``.
    """
    mirrored = points.astype(np.float64).copy()
    mirrored[..., 0] = 2.0 * mid_x - mirrored[..., 0]
    rel = mirrored - np.asarray(centre)
    u = 0.5 + np.arctan2(rel[..., 0], rel[..., 2]) / (2 * np.pi)
    norm = np.maximum(np.linalg.norm(rel, axis=-1), 1e-12)
    v = 0.5 + np.arcsin(np.clip(rel[..., 1] / norm, -1, 1)) / np.pi
    height = width // 2
    return np.stack([u * width - 0.5, (1.0 - v) * height - 0.5], axis=-1).astype(np.float32)


def mirror(image: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
    """Sample ``image`` (Ht, Wt[, C]) at mirror coordinates, wrapping around the seam: same shape, float32."""
    import cv2

    return cv2.remap(
        image.astype(np.float32),
        coordinates[..., 0],
        coordinates[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_WRAP,
    )


def head_mid_x(vertices: np.ndarray) -> float:
    """x of the head's mid-plane: the middle of the mesh's left-right extent above the neck."""
    v = np.asarray(vertices)
    upper = v[v[:, 1] > np.percentile(v[:, 1], 40)]
    return float(0.5 * (upper[:, 0].min() + upper[:, 0].max()))
