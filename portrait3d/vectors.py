"""Sums over a length-3 axis, written out term by term, and unit triangle normals.

numpy's reductions over a short last axis (``np.sum(..., axis=-1)`` of (N, 3)) pay a per-element loop setup
that took most of the proxy's distance field and the renderer's texture lookups. Each function here gives
the same sums in the same order as the reduction it replaces, so results are bit for bit the same.
"""

from __future__ import annotations

import numpy as np


def dot3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot product of each pair of vectors: (..., 3), (..., 3) -> (...); bit for bit ``np.sum(a * b, axis=-1)``."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def vector_length(v: np.ndarray) -> np.ndarray:
    """Euclidean length of each vector: (..., 3) -> (...); bit for bit ``np.linalg.norm(v, axis=-1)``."""
    return np.sqrt(dot3(v, v))


def barycentric_blend(corners: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Blend per-corner values by barycentric weights: (M, 3, k) and (M, 3, 1) -> (M, k).

    Bit for bit ``(corners * weights).sum(axis=1)``.
    """
    return corners[:, 0] * weights[:, 0] + corners[:, 1] * weights[:, 1] + corners[:, 2] * weights[:, 2]


def unit_face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals of triangles: vertices (V, 3), faces (F, 3) -> (F, 3), right-handed; zero for degenerate ones."""
    corners = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)
