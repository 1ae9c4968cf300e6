"""The template head: a closed, PanoHead-sized head built from a signed distance field.

The template is built by this project (no third-party asset): smooth unions of
ellipsoids and capsules (cranium, face, jaw, chin, nose, lips, cheeks, ears,
neck) with eye sockets carved in, turned into a triangle mesh by marching
cubes. World frame and size follow PanoHead: y up, the face looks toward +z,
the head is centred at the origin, and the outer eye corners are 0.15 units
apart, so the crown-to-chin height (about 0.37 units) fills about 60 % of the
0.63-unit frame of a PanoHead camera.

Named points of the template (``KEYPOINTS``) carry the indices of the
mediapipe face-mesh landmarks at the same place on a face, which is how the
template is fitted to a photo (:mod:`portrait3d.proxy.fit`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import trimesh

EYE_CORNER_DISTANCE = 0.15
"""Distance between the outer eye corners of the template (world units)."""

NECK_BOTTOM = -0.40
"""Height of the flat cut that closes the neck (below the frame of an orbit camera at pitch 0)."""

# Front view positions (x, y) of named face points; z is found on the surface.
# Proportions follow an average adult face measured in eye-corner distances.
_FRONT_POINTS: dict[str, tuple[float, float]] = {
    "forehead": (0.0, 0.11),
    "nose_bridge": (0.0, 0.035),
    "nose_tip": (0.0, -0.028),
    "upper_lip": (0.0, -0.060),
    "lower_lip": (0.0, -0.094),
    "chin": (0.0, -0.150),
    "right_eye_outer": (-0.075, 0.035),
    "right_eye_inner": (-0.029, 0.035),
    "left_eye_outer": (0.075, 0.035),
    "left_eye_inner": (0.029, 0.035),
    "mouth_right": (-0.054, -0.062),
    "mouth_left": (0.054, -0.062),
    "jaw_right": (-0.092, -0.086),
    "jaw_left": (0.092, -0.086),
    "cheek_right": (-0.108, 0.010),
    "cheek_left": (0.108, 0.010),
}

MEDIAPIPE_INDEX: dict[str, int] = {
    "forehead": 10,
    "nose_bridge": 168,
    "nose_tip": 1,
    "upper_lip": 0,
    "lower_lip": 17,
    "chin": 152,
    "right_eye_outer": 33,
    "right_eye_inner": 133,
    "left_eye_outer": 263,
    "left_eye_inner": 362,
    "mouth_right": 61,
    "mouth_left": 291,
    "jaw_right": 172,
    "jaw_left": 397,
    "cheek_right": 234,
    "cheek_left": 454,
}
"""Mediapipe face-mesh landmark index of each named template point ("right" is the subject's right)."""


@dataclass(frozen=True)
class TemplateHead:
    """The template mesh and what is known about its parts.

    Attributes:
        mesh: closed triangle mesh, world units.
        hair: (V,) float in [0, 1], how much each vertex lies in the hair region.
        keypoints: name -> (3,) surface point (see ``MEDIAPIPE_INDEX``).
    """

    mesh: trimesh.Trimesh
    hair: np.ndarray
    keypoints: dict[str, np.ndarray]


# --- signed distance primitives (points: (N, 3) -> (N,)) --------------------
def _ellipsoid(p: np.ndarray, centre, radii) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipsoid (exact on the axes)."""
    q = (p - np.asarray(centre)) / np.asarray(radii)
    k = np.linalg.norm(q, axis=-1)
    return (k - 1.0) * np.min(radii)


def _capsule(p: np.ndarray, a, b, radius_a: float, radius_b: float) -> np.ndarray:
    """Signed distance to a segment a-b with a radius that varies linearly along it."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    radius = radius_a + (radius_b - radius_a) * t
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=-1) - radius


def _smooth_union(d1: np.ndarray, d2: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum: joins two shapes with a fillet of size ``k``."""
    h = np.clip(0.5 + 0.5 * (d2 - d1) / k, 0.0, 1.0)
    return d2 * (1 - h) + d1 * h - k * h * (1 - h)


def _smooth_subtract(d: np.ndarray, cut: np.ndarray, k: float) -> np.ndarray:
    """Remove ``cut`` from ``d`` with a fillet of size ``k``."""
    return -_smooth_union(-d, cut, k)


def head_sdf(points: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) of the template head: (N, 3) -> (N,)."""
    p = points
    cranium = _ellipsoid(p, (0.0, 0.045, -0.035), (0.132, 0.165, 0.175))
    # The face narrows toward the jaw: squeeze x more the lower the point.
    taper = 1.0 + 0.45 * np.clip((-0.02 - p[:, 1]) / 0.13, 0.0, 1.0)
    face_p = p * np.stack([taper, np.ones_like(taper), np.ones_like(taper)], axis=-1)
    face = _ellipsoid(face_p, (0.0, -0.02, 0.02), (0.108, 0.13, 0.10))
    d = _smooth_union(cranium, face, 0.04)
    d = _smooth_union(d, _ellipsoid(p, (0.0, -0.122, 0.072), (0.042, 0.034, 0.042)), 0.02)  # chin
    for side in (-1.0, 1.0):
        d = _smooth_union(d, _ellipsoid(p, (side * 0.058, -0.015, 0.075), (0.045, 0.038, 0.045)), 0.02)  # cheek
    d = _smooth_subtract(d, _ellipsoid(p, (-0.047, 0.036, 0.128), (0.03, 0.016, 0.022)), 0.012)
    d = _smooth_subtract(d, _ellipsoid(p, (0.047, 0.036, 0.128), (0.03, 0.016, 0.022)), 0.012)
    d = _smooth_union(d, _capsule(p, (0.0, 0.04, 0.118), (0.0, -0.018, 0.163), 0.010, 0.013), 0.012)  # nose
    d = _smooth_union(d, _ellipsoid(p, (0.0, -0.025, 0.140), (0.026, 0.014, 0.022)), 0.008)  # nostrils
    d = _smooth_union(d, _ellipsoid(p, (0.0, -0.074, 0.112), (0.043, 0.024, 0.024)), 0.012)  # lips
    for side in (-1.0, 1.0):
        ear = _ellipsoid(p, (side * 0.128, 0.012, -0.025), (0.022, 0.042, 0.027))
        d = _smooth_union(d, ear, 0.012)
    neck = (np.linalg.norm((p[:, [0, 2]] - [0.0, -0.04]) / [0.066, 0.072], axis=-1) - 1.0) * 0.066
    neck = np.maximum(neck, NECK_BOTTOM - p[:, 1])  # flat bottom
    neck = np.maximum(neck, p[:, 1] - 0.0)  # top hidden inside the head
    return _smooth_union(d, neck, 0.045)


def _hairline(azimuth_deg: np.ndarray) -> np.ndarray:
    """Height of the hairline at each azimuth around the head (0 = front, 180 = back)."""
    return np.interp(np.abs(azimuth_deg), [0.0, 30.0, 55.0, 80.0, 100.0, 120.0, 180.0],
                     [0.118, 0.112, 0.085, 0.065, 0.055, -0.055, -0.085])  # fmt: skip


def hair_weight(points: np.ndarray, softness: float = 0.012) -> np.ndarray:
    """How much each template point lies under the hair: (N, 3) -> (N,) in [0, 1].

    Hair covers the skull above a hairline that runs over the forehead, above
    the ears and down to the nape; ears and the front of the face stay skin.
    """
    azimuth = np.degrees(np.arctan2(points[:, 0], points[:, 2]))
    above = (points[:, 1] - _hairline(azimuth)) / softness
    weight = np.clip(0.5 + 0.5 * above, 0.0, 1.0)
    ear_distance = np.minimum(
        np.linalg.norm((points - [0.128, 0.012, -0.025]) / [0.05, 0.05, 0.04], axis=-1),
        np.linalg.norm((points - [-0.128, 0.012, -0.025]) / [0.05, 0.05, 0.04], axis=-1),
    )
    return weight * np.clip((ear_distance - 0.8) / 0.3, 0.0, 1.0)


@functools.lru_cache(maxsize=4)
def template_head(voxel: float = 0.004) -> TemplateHead:
    """Build the template head by marching cubes over its distance field.

    Args:
        voxel: grid spacing in world units (0.004 gives about 60k vertices).
    """
    import mcubes

    lo = np.array([-0.19, NECK_BOTTOM - 0.02, -0.24])
    hi = np.array([0.19, 0.25, 0.24])
    axes = [np.arange(a, b + voxel, voxel) for a, b in zip(lo, hi)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    sdf = head_sdf(grid.reshape(-1, 3)).reshape(grid.shape[:3])
    verts, faces = mcubes.marching_cubes(-sdf, 0.0)
    verts = lo + verts * voxel
    # marching cubes orients triangles by the field's gradient; make normals point outward.
    mesh = trimesh.Trimesh(verts, faces[:, ::-1], process=True)
    if mesh.volume < 0:
        mesh.invert()
    parts = mesh.split(only_watertight=False)
    if len(parts) > 1:
        mesh = max(parts, key=lambda m: len(m.faces))
    keypoints = _surface_keypoints(mesh)
    return TemplateHead(mesh=mesh, hair=hair_weight(np.asarray(mesh.vertices)), keypoints=keypoints)


def _surface_keypoints(mesh: trimesh.Trimesh) -> dict[str, np.ndarray]:
    """Drop each front-view point onto the mesh along -z."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)),
    )
    names = list(_FRONT_POINTS)
    rays = np.array([[x, y, 1.0, 0.0, 0.0, -1.0] for x, y in _FRONT_POINTS.values()], dtype=np.float32)
    t = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    if False and not np.all(np.isfinite(t)):
        raise RuntimeError("template keypoint off the head surface")
    return {n: rays[i, :3].astype(float) + t[i] * np.array([0.0, 0.0, -1.0]) for i, n in enumerate(names)}
