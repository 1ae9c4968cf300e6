"""Left-right symmetry of the head texture: reading it at mirror coordinates, and the head's mid-plane.

The head's world frame is its own frame (the camera carries the pose), so the
face's mid-plane is a plane ``x = mid_x``. A texel's mirror is the texel
whose surface point is the reflection of its own (where it lies in the texture:
:func:`portrait3d.proxy.layout.mirror_coordinates`).
"""

from __future__ import annotations

import numpy as np


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


MIDLINE_LANDMARKS = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 2, 164, 0, 13, 14, 17, 18, 200, 199, 175, 152)
"""Face-mesh landmarks on the face's mid-line, forehead to chin (the nose's ridge, the lips' middle)."""


def midline_landing(
    vertices: np.ndarray,
    faces: np.ndarray,
    camera,
    landmarks: np.ndarray,
    size: int,
    photo_vertices: np.ndarray | None = None,
    mid_x: float | None = None,
) -> np.ndarray:
    """How far beside the head's mirror plane the photo's mid-line lands, per mid-line landmark.

    The texture projects the photo through its camera onto the head (posed as the photo saw it,
    ``photo_vertices``, when given) and mirrors it across ``x = head_mid_x``: a mid-line pixel (the
    nose's ridge) that lands a distance ``d`` beside that plane comes back mirrored ``2 d`` away from itself,
    a second nose. Measures the photo's pixel of each landmark of :data:`MIDLINE_LANDMARKS`.

    Args:
        vertices: (V, 3) the head; faces: (F, 3) its triangles.
        camera: the photo's camera.
        landmarks: (N >= 468, 2+) face-mesh landmarks in photo pixels.
        size: side of the photo in pixels.
        photo_vertices: (V, 3) the same head posed as the photo's camera saw it, or None.
        mid_x: x of the mirror plane (default :func:`head_mid_x`).
    Returns:
        (K,) signed x distance from the mirror plane (world units; NaN where the pixel misses the head).
    """
    import trimesh

    from portrait3d.render import MeshRenderer

    vertices = np.asarray(vertices, dtype=np.float64)
    seen = vertices if photo_vertices is None else np.asarray(photo_vertices, dtype=np.float64)
    hits = MeshRenderer(trimesh.Trimesh(seen, faces, process=False)).cast(camera, size, size)
    pixels = np.asarray(landmarks, dtype=np.float64)[list(MIDLINE_LANDMARKS), :2]
    col = np.clip(np.floor(pixels[:, 0]).astype(int), 0, size - 1)
    row = np.clip(np.floor(pixels[:, 1]).astype(int), 0, size - 1)
    triangle = hits.triangle[row, col]
    corners = vertices[np.asarray(faces)[np.maximum(triangle, 0)]]  # (K, 3, 3): the same spot on the head
    landed = np.einsum("kc,kcd->kd", hits.barycentric[row, col], corners)
    mid_x = head_mid_x(vertices) if mid_x is None else mid_x
    return np.where(triangle >= 0, landed[:, 0] - mid_x, np.nan)
