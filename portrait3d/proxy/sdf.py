"""Signed distance primitives the template head and its ears are built from (points: (N, 3) -> (N,))."""

from __future__ import annotations

import numpy as np

from portrait3d.vectors import vector_length


def ellipsoid(p: np.ndarray, centre, radii) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipsoid (exact on the axes)."""
    q = (p - np.asarray(centre)) / np.asarray(radii)
    return (vector_length(q) - 1.0) * min(radii)


def capsule(p: np.ndarray, a, b, radius_a: float, radius_b: float) -> np.ndarray:
    """Signed distance to a segment a-b with a radius that varies linearly along it."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    radius = radius_a + (radius_b - radius_a) * t
    return vector_length(p - (a + t[:, None] * ab)) - radius


def smooth_union(d1: np.ndarray, d2: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum: joins two shapes with a fillet of size ``k``."""
    h = np.clip(0.5 + 0.5 * (d2 - d1) / k, 0.0, 1.0)
    return d2 * (1 - h) + d1 * h - k * h * (1 - h)


def smooth_subtract(d: np.ndarray, cut: np.ndarray, k: float) -> np.ndarray:
    """Remove ``cut`` from ``d`` with a fillet of size ``k``."""
    return -smooth_union(-d, cut, k)
