"""The face's 3D shape from the face-mesh landmarks' learned depth.

The face-mesh model gives each of its 468 landmarks a depth (``z``, in the
image's pixel scale; ``input/camera.json`` records it along the optical axis
of the photo's camera). Lifted through that camera
(:func:`portrait3d.preprocess.alignment.landmarks_to_world`) the landmarks are
a 3D point cloud of the person's face in the head's world frame: brow, nose,
cheeks, lips, chin and jaw line. :func:`face_depth_warp` moves the fitted
template onto that cloud: each landmark is paired with the nearest point of
the template's surface, the cloud is slid along the camera's axis onto the
template (the landmarks' depth is relative), and a smoothing radial-basis
field carries the pairs' displacements over the surface, fading out a few
centimetres from the face. On a face turned away from the camera the far
side's landmarks are the model's guess of the hidden half; the face stays one
face (one nose, no mirror seam) because it is one learned 3D shape, not two
image halves.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from portrait3d.cameras import Camera

DEPTH_GAIN = 1.0
"""Factor on the landmarks' depth about the face's middle (on a head scan rendered as a photo, the
landmark cloud met the scan's landmarks best, median 3.5 mm, with a factor between 0.8 and 1.0)."""
MAX_DISPLACEMENT = 0.05
"""Largest move of one landmark's surface point (world units; 20 mm)."""


def face_cloud(landmarks: np.ndarray, camera: Camera, size: int, depth_gain: float = DEPTH_GAIN) -> np.ndarray:
    """World points of ``camera.json`` landmarks with their depth scaled about its median: (N, 3) -> (N, 3)."""
    from portrait3d.preprocess.alignment import landmarks_to_world

    points = np.asarray(landmarks, dtype=np.float64)[:, :3].copy()
    middle = float(np.median(points[:, 2]))
    points[:, 2] = middle + depth_gain * (points[:, 2] - middle)
    return landmarks_to_world(points, camera, size)


def face_depth_warp(
    vertices: np.ndarray,
    faces: np.ndarray,
    cloud: np.ndarray,
    camera: Camera,
    radius: float = 0.03,
    smoothing: float = 0.05,
    weights: np.ndarray | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """A displacement field that moves the surface ``vertices`` onto the landmark ``cloud``.

    Args:
        vertices: (V, 3) the fitted template's vertices (world).
        faces: (F, 3) its triangles.
        cloud: (N, 3) the face's landmarks in 3D (:func:`face_cloud`).
        camera: the photo's camera (the cloud slides along its axis).
        radius: width of the Gaussian basis (world units).
        smoothing: regularisation of the basis fit (larger: smoother, pairs met less exactly).
        weights: (N,) trust in each landmark in [0, 1] (default all 1).
    Returns:
        ``warp``: world points (M, 3) -> displacements (M, 3).
    """
    from scipy.spatial import cKDTree

    tree = cKDTree(vertices)
    weights = np.ones(len(cloud)) if weights is None else np.asarray(weights, dtype=np.float64)
    axis = camera.forward
    shifted = cloud.copy()
    for _ in range(6):  # slide along the camera's axis until the cloud sits on the surface, on the whole
        _, nearest = tree.query(shifted)
        shifted = shifted + float(np.median((vertices[nearest] - shifted) @ axis)) * axis
    # A landmark's partner is the surface point on its camera ray (the image-plane fit already put the two
    # on one ray; only the depth differs), or the nearest vertex where that ray meets the surface far from
    # the landmark (a landmark the photo does not see, behind the near side) or misses it.
    hits = _ray_hits(vertices, faces, camera, shifted)
    _, nearest = tree.query(shifted)
    on_ray = np.linalg.norm(hits - shifted, axis=1) < 0.04
    centres = np.where(on_ray[:, None], hits, vertices[nearest])
    offsets = (shifted - centres) * weights[:, None]
    lengths = np.linalg.norm(offsets, axis=1, keepdims=True)
    offsets *= np.minimum(1.0, MAX_DISPLACEMENT / np.maximum(lengths, 1e-12))
    # Partners closer than a few millimetres would fight: keep one (the mean of their moves).
    _, first, inverse = np.unique(np.round(centres / 0.004), axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    merged = np.zeros((len(first), 3))
    np.add.at(merged, inverse, offsets)
    merged /= np.bincount(inverse)[:, None]
    return gaussian_field(centres[first], merged, radius, smoothing)


def _ray_hits(vertices: np.ndarray, faces: np.ndarray, camera: Camera, points: np.ndarray) -> np.ndarray:
    """Where the ray from the camera through each point first meets the surface: (N, 3) (inf: missed)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(vertices, dtype=np.float32)), o3d.core.Tensor(np.asarray(faces, dtype=np.uint32))
    )
    direction = points - camera.position
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    rays = np.concatenate([np.broadcast_to(camera.position, direction.shape), direction], axis=1)
    t = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy().astype(np.float64)
    return camera.position + direction * t[:, None]


def gaussian_field(
    centres: np.ndarray, values: np.ndarray, radius: float, smoothing: float
) -> Callable[[np.ndarray], np.ndarray]:
    """Smoothing Gaussian radial-basis field ``f(centres) ~ values``: returns ``f: (M, 3) -> (M, 3)``."""

    def kernel(x: np.ndarray) -> np.ndarray:
        d2 = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        return np.exp(-0.5 * d2 / radius**2)

    weights = np.linalg.solve(kernel(centres) + smoothing * np.eye(len(centres)), values)

    def field(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        out = np.empty((len(x), 3))
        for start in range(0, len(x), 8192):
            out[start : start + 8192] = kernel(x[start : start + 8192]) @ weights
        return out

    return field
