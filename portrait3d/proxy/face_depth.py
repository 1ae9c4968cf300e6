"""The face's 3D shape from the face-mesh landmarks' learned depth.

The face-mesh model gives each of its 468 landmarks a depth (``z``, in the
image's pixel scale; ``input/camera.json`` records it along the optical axis
of the photo's camera). Lifted through that camera
(:func:`portrait3d.preprocess.alignment.landmarks_to_world`) the landmarks are
a 3D point cloud of the person's face in the head's world frame: brow, nose,
cheeks, lips, chin and jaw line. :func:`face_depth_warp` moves the fitted
template onto that cloud: each landmark is paired with the nearest point of
the template's surface, the cloud is placed on the template by a similarity
(its depth is relative, and its own turn can differ from the camera's), and a smoothing radial-basis
field carries the pairs' displacements over the surface, fading out a few
centimetres from the face. On a face turned away from the camera the far
side's landmarks are the model's guess of the hidden half; the face stays one
face (one nose, no mirror seam) because it is one learned 3D shape, not two
image halves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from portrait3d.cameras import Camera
from portrait3d.proxy.face_regions import smoothstep
from portrait3d.raycast import closest_points
from portrait3d.vectors import unit_face_normals

DEPTH_GAIN = 1.0
"""Factor on the landmarks' depth about the face's middle (on a head scan rendered as a photo, the
landmark cloud met the scan's landmarks best, median 3.5 mm, with a factor between 0.8 and 1.0)."""
MIDLINE_WEIGHT = 10.0
"""Weight of a mid-line landmark's pairing with the head's mid-plane when a turned face's cloud is placed
(each landmark's pairing with the surface: 1). The face's mid-line (its sharpest landmarks on a turned face:
the profile) belongs on that plane, which the texture mirrors across; the landmarks' depth error would
otherwise tilt it (by 8 degrees on a profile, its chin 3 cm off the plane) and the mirrored photo would show
two mouths."""
PLACEMENT_SPREAD = 2.0
"""The cloud's placement weighs each pair by a Cauchy weight ``1 / (1 + (r / c)^2)`` with ``c`` this many times the
median pair's distance ``r`` (re-weighted least squares): a face whose nose or chin stands out further than the
template's is placed by the rest of it. Plain least squares let a nose 12 mm longer than the template's pull the
whole cloud back (the rest of the face 0.66 mm off the surface, against 0.29 mm), and the warp then found 30 % of a
chin 8 mm further forward, against 56 % (``tests/proxy/test_proxy_face.py``)."""
MAX_DISPLACEMENT = 0.05
"""Largest move of one landmark's surface point (world units; 20 mm)."""

BROAD_RADIUS = 0.05
"""Width of the broad field under the face's warp (:func:`face_depth_warp`; world units, 20 mm)."""

BROAD_SMOOTHING = 2.0
"""Regularisation of the broad field: large, so it follows the landmarks' common move, not each landmark."""


TURNED_NOSE_RELIEF = 0.7
"""Factor on a turned face's nose relief in the landmarks' depth (:func:`nose_relief`; a face seen from the front
keeps it whole). Measured on Lee Perry-Smith's scan photographed turned 30, 45 and 55 degrees, the face's mean error
fell from 2.33 / 2.69 / 2.82 mm at 1.0 to 2.31 / 2.38 / 2.70 mm; from the frontal photo the same change made it
worse (0.8: 2.37 -> 2.51 mm), so the face-mesh model exaggerates the nose only where it sees it from the side."""
NOSE_REACH = 0.25
"""Landmarks within this many face widths (3D, the cheeks' landmarks 234 to 454) of the nose tip (landmark 1) are
the nose's; the scaling fades out over the outer 30 % of that reach."""
NOSE_BASE_RING = (0.25, 0.4)
"""The nose's relief is measured from the median depth of the landmarks this many face widths from its tip."""


def nose_relief(landmarks: np.ndarray, gain: float) -> np.ndarray:
    """``camera.json`` landmarks (N >= 468, 3+) with the nose's relief over the face around it scaled by ``gain``.

    The depth is the camera's (the landmarks' third column), so each landmark moves along its own pixel's ray
    and the face still projects onto the photo. Returns the same shape.
    """
    points = np.array(landmarks, dtype=np.float64)
    xyz = points[:, :3]
    width = float(np.linalg.norm(xyz[234] - xyz[454]))
    reach = np.linalg.norm(xyz - xyz[1], axis=1) / max(width, 1e-9)
    inner, outer = NOSE_BASE_RING
    base = float(np.median(xyz[(reach > inner) & (reach < outer), 2]))
    nose = smoothstep((NOSE_REACH - reach) / (0.3 * NOSE_REACH))
    points[:, 2] = base + (1.0 - nose * (1.0 - gain)) * (xyz[:, 2] - base)
    return points


def face_cloud(
    landmarks: np.ndarray, camera: Camera, size: int, depth_gain: float = DEPTH_GAIN, nose_gain: float = 1.0
) -> np.ndarray:
    """World points of ``camera.json`` landmarks with their depth scaled about its median: (N, 3) -> (N, 3).

    ``nose_gain`` scales the nose's relief first (:func:`nose_relief`).
    """
    from portrait3d.preprocess.alignment import landmarks_to_world

    points = np.asarray(landmarks, dtype=np.float64)[:, :3].copy()
    if nose_gain != 1.0:
        points = nose_relief(points, nose_gain)
    middle = float(np.median(points[:, 2]))
    points[:, 2] = middle + depth_gain * (points[:, 2] - middle)
    return landmarks_to_world(points, camera, size)


@dataclass
class FacePlacement:
    """Where the landmark cloud was put on the template, and the move that put it there.

    Attributes:
        cloud: (N, 3) the cloud as lifted through the photo's camera (it projects onto the landmarks).
        placed: (N, 3) the cloud placed on the template: ``scale * cloud @ rotation.T + shift``.
    """

    cloud: np.ndarray
    placed: np.ndarray
    scale: float
    rotation: np.ndarray
    shift: np.ndarray

    def unplace(self, points: np.ndarray) -> np.ndarray:
        """The inverse move: placed-frame points (M, 3) -> where the photo's camera saw them (M, 3)."""
        return (np.asarray(points, dtype=np.float64) - self.shift) @ self.rotation / self.scale

    def with_midline_x_of(self, cloud: np.ndarray) -> FacePlacement:
        """This placement with its mid-line landmarks' x taken from ``cloud`` (N, 3) placed by the same move.

        The nose's relief scaled along the camera's rays (:func:`nose_relief`) moves a turned face's ridge sideways
        in the head's frame, off the mid-plane the texture mirrors across; the unscaled cloud's mid-line is where
        the placement held it, on that plane.
        """
        from portrait3d.proxy.symmetry import MIDLINE_LANDMARKS

        midline = [i for i in MIDLINE_LANDMARKS if i < len(self.placed)]
        placed = self.placed.copy()
        moved = self.scale * np.asarray(cloud, dtype=np.float64)[midline] @ self.rotation.T + self.shift
        placed[midline, 0] = moved[:, 0]
        return FacePlacement(self.cloud, placed, self.scale, self.rotation, self.shift)


def place_cloud(
    vertices: np.ndarray, faces: np.ndarray, cloud: np.ndarray, midline_weight: float = 0.0, iterations: int = 6
) -> FacePlacement:
    """Place the landmark ``cloud`` (N, 3) on the surface (``vertices`` (V, 3), ``faces`` (F, 3)) by a similarity.

    The cloud's shape, not its pose: its own turn can differ from the camera's estimate (the landmarks'
    depth is compressed on turned faces, so the cloud looks turned less than the camera), and its partners
    are the surface points straight in front of or behind each point (the nearest vertex where that misses),
    weighed robustly (:data:`PLACEMENT_SPREAD`).
    With ``midline_weight`` > 0 the face's mid-line landmarks are also paired, that many times over, with the
    surface's mid-plane (see :data:`MIDLINE_WEIGHT`).
    """
    from scipy.spatial import cKDTree

    from portrait3d.proxy.symmetry import MIDLINE_LANDMARKS, head_mid_x

    tree = cKDTree(vertices)
    shifted = np.asarray(cloud, dtype=np.float64).copy()
    midline = [i for i in MIDLINE_LANDMARKS if i < len(shifted)]
    mid_x = head_mid_x(vertices)
    weights = np.concatenate([np.ones(len(shifted)), np.full(len(midline), midline_weight)])
    for _ in range(iterations):
        hits = _front_hits(vertices, faces, shifted)
        _, nearest = tree.query(shifted)
        close = np.linalg.norm(hits - shifted, axis=1) < 0.04
        partners = np.where(close[:, None], hits, vertices[nearest])
        on_plane = partners[midline].copy()
        on_plane[:, 0] = mid_x
        source, target = np.concatenate([shifted, shifted[midline]]), np.concatenate([partners, on_plane])
        residual = np.linalg.norm(source - target, axis=1)
        spread = PLACEMENT_SPREAD * max(float(np.median(residual[: len(shifted)])), 1e-6)
        scale, rotation, shift = _similarity(source, target, weights / (1.0 + (residual / spread) ** 2))
        shifted = scale * shifted @ rotation.T + shift
    scale, rotation, shift = _similarity(cloud, shifted)  # the composed move (exact: similarities compose)
    return FacePlacement(np.asarray(cloud, dtype=np.float64), shifted, scale, rotation, shift)


def face_depth_warp(
    vertices: np.ndarray,
    faces: np.ndarray,
    cloud: np.ndarray,
    radius: float = 0.03,
    smoothing: float = 0.05,
    weights: np.ndarray | None = None,
    placement: FacePlacement | None = None,
    camera_position: np.ndarray | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """A displacement field that moves the surface ``vertices`` onto the landmark ``cloud``.

    Args:
        vertices: (V, 3) the fitted template's vertices (world).
        faces: (F, 3) its triangles.
        cloud: (N, 3) the face's landmarks in 3D (:func:`face_cloud`).
        radius: width of the narrow field's Gaussian basis (world units); under it lies a broad field
            (:data:`BROAD_RADIUS`, :data:`BROAD_SMOOTHING`) that carries the face's common move past the face.
        smoothing: regularisation of the narrow field's fit (larger: smoother, pairs met less exactly).
        weights: (N,) trust in each landmark in [0, 1] (default all 1).
        placement: the cloud's placement on the surface (default :func:`place_cloud`).
        camera_position: (3,) where the photo's camera is: a move across its line of sight where it sees the
            surface edge-on counts :data:`EDGE_ON_TRUST` (:func:`edge_on_trust`); default every move counts whole.
    Returns:
        ``warp``: world points (M, 3) -> displacements (M, 3).
    """
    weights = np.ones(len(cloud)) if weights is None else np.asarray(weights, dtype=np.float64)
    shifted = (placement or place_cloud(vertices, faces, cloud)).placed
    centres, offsets = normal_moves(vertices, faces, shifted)
    if camera_position is not None:
        weights = weights * edge_on_trust(centres, offsets, camera_position)
    offsets = offsets * weights[:, None]
    lengths = np.linalg.norm(offsets, axis=1, keepdims=True)
    offsets *= np.minimum(1.0, MAX_DISPLACEMENT / np.maximum(lengths, 1e-12))
    # Partners closer than a few millimetres would fight: keep one (the mean of their moves).
    _, first, inverse = np.unique(np.round(centres / 0.004), axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    merged = np.zeros((len(first), 3))
    np.add.at(merged, inverse, offsets)
    merged /= np.bincount(inverse)[:, None]
    # Two scales: a broad, strongly regularised field takes the landmarks' common move and carries it on past the
    # face, so the temples and cheeks follow it (one narrow field falls to nothing beside the face: a fold there);
    # the narrow field takes what is left, the face's own relief.
    broad = gaussian_field(centres[first], merged, BROAD_RADIUS, BROAD_SMOOTHING)
    narrow = gaussian_field(centres[first], merged - broad(centres[first]), radius, smoothing)
    return lambda points: broad(points) + narrow(points)


def normal_moves(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point's partner on the surface and the move that takes the surface there: (N, 3) -> (N, 3), (N, 3).

    The partner is the surface point nearest the point, and the move runs along the surface's normal there: a move
    along the surface changes no shape, and fading out beside the face it folds it. Paired straight behind in the
    head's frame instead, a landmark at the side of a face narrower than the template's took the cheek's front as
    its partner and pulled it back along the surface (on a face 4 mm narrower at the sides, moves along the surface
    1.5 times the narrowing), and every head had a crease from the temple down past the ear.
    """
    centres, triangle = closest_points(vertices, faces, points)
    normals = unit_face_normals(vertices, np.asarray(faces)[triangle])
    return centres, normals * np.sum((points - centres) * normals, axis=1, keepdims=True)


EDGE_ON_TRUST = (0.5, 0.3)
"""How much a move counts where the photo's camera sees the surface edge-on, and the cosine between the move (the
surface's normal) and the line of sight from which it counts whole (see :func:`edge_on_trust`)."""


def edge_on_trust(centres: np.ndarray, moves: np.ndarray, camera_position: np.ndarray) -> np.ndarray:
    """How much each move along the surface's normal counts: (N, 3), (N, 3), (3,) -> (N,) in [0.5, 1].

    Where the photo's camera sees the surface edge-on (the face's outline) a move along the normal runs across the
    line of sight, and there the image-plane fit has already put the surface on the photo's outline; the landmark
    cloud, placed by a similarity fitted to the whole face, lies a few pixels inside it (4 on average on the eval
    photos and the scans, up to 14). Counted whole, those moves narrowed the sample's jaw (silhouette IoU 0.950 ->
    0.9498); not at all, the scan's face lost its width (face median 1.90 -> 2.19 mm). Half is kept.
    """
    floor, full = EDGE_ON_TRUST
    direction = moves / np.maximum(np.linalg.norm(moves, axis=1, keepdims=True), 1e-12)
    sight = np.asarray(camera_position, dtype=np.float64) - centres
    sight /= np.maximum(np.linalg.norm(sight, axis=1, keepdims=True), 1e-12)
    facing = np.abs(np.sum(direction * sight, axis=1))
    return floor + (1.0 - floor) * np.clip(facing / full, 0.0, 1.0)


def photo_pose_field(
    placement: FacePlacement,
    vertices: np.ndarray | None = None,
    faces: np.ndarray | None = None,
    near: float = 0.01,
    far: float = 0.045,
    share: float = 1.0,
) -> Callable[[np.ndarray], np.ndarray]:
    """Displacements that put the head's face back where the photo's camera saw it: (M, 3) -> (M, 3).

    The face was placed on the template by a similarity that the photo's camera does not know
    (:func:`place_cloud`; on a face turned 60-80 degrees it turns the face by 14-19 degrees), so the photo,
    projected through that camera, lands up to centimetres beside the face it shows: its nose on a cheek,
    and mirrored onto the other cheek, a second nose. Moved by this field, the face is where the camera saw
    it (the placed cloud onto the lifted one) and everything farther than ``far`` from the face (skull, ears,
    hair: fitted to the photo through that camera) stays; in between the move fades out, over at least
    :data:`FADE_PER_MOVE` times the largest move (a steeper fade folds the surface over itself).

    Given the warped surface (``vertices`` (V, 3), ``faces`` (F, 3)), the surface point nearest each placed
    landmark is moved exactly onto its lifted landmark (a smooth field of what the similarity leaves; the
    surface meets the cloud only within a few millimetres, and on a profile a millimetre in depth is a
    millimetre sideways on the face). ``share`` in [0, 1] scales the whole move.
    """
    from scipy.spatial import cKDTree

    tree = cKDTree(placement.placed)
    largest = share * float(np.linalg.norm(placement.unplace(placement.placed) - placement.placed, axis=1).max())
    far = max(far, near + FADE_PER_MOVE * largest)

    def rigid(points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        distance, _ = tree.query(points)
        weight = smoothstep((far - distance) / (far - near))
        return weight[:, None] * (placement.unplace(points) - points)

    if vertices is None or faces is None:
        return lambda points: share * rigid(points)
    on_surface = closest_points(vertices, faces, placement.placed)[0]
    residual = placement.cloud - (on_surface + rigid(on_surface))
    keep = np.linalg.norm(residual, axis=1) < RESIDUAL_LIMIT
    _, first = np.unique(np.round(on_surface[keep] / 0.004), axis=0, return_index=True)
    rest = gaussian_field(on_surface[keep][first], residual[keep][first], 0.01, 1e-3)

    def field(points: np.ndarray) -> np.ndarray:
        return share * (rigid(points) + rest(points))

    return field


FADE_PER_MOVE = 3.0
"""The photo pose's move fades out (:func:`photo_pose_field`) over at least this many times its largest move.
The fade is a smoothstep, whose steepest slope is 1.5 / width: over a width of 3 moves the fade alone stretches or
squeezes the surface by at most half and cannot fold it. With the fixed 14 mm fade (0.035 world units) a move of
12 mm (the couple's face, turned 24 degrees) folded the posed head between the face and the ear: texels there were
hidden in the photo's view and painted by the class fill (the profile's pale band in front of the ear), or took
the photo's temple as a dark crease down the cheek."""
RESIDUAL_LIMIT = 0.02
"""Largest residual move of :func:`photo_pose_field` (world units); a landmark farther off is left out."""


def _similarity(
    source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None
) -> tuple[float, np.ndarray, np.ndarray]:
    """Weighted least-squares ``target ~ s R source + t`` (Umeyama): (N, 3) pairs, (N,) weights -> (s, R, t)."""
    w = np.ones(len(source)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s, mu_t = w @ source, w @ target
    a, b = source - mu_s, target - mu_t
    u, sigma, vt = np.linalg.svd((b * w[:, None]).T @ a)
    d = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2, 2] = -1.0
    rotation = u @ d @ vt
    scale = float(np.trace(np.diag(sigma) @ d) / (w @ (a**2).sum(1)))
    return scale, rotation, mu_t - scale * rotation @ mu_s


def _front_hits(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Where a ray from in front of the face (+z, the head's front) through each point first meets the
    surface: (N, 3)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(vertices, dtype=np.float32)), o3d.core.Tensor(np.asarray(faces, dtype=np.uint32))
    )
    origins = points + [0.0, 0.0, 1.0]
    direction = np.tile([0.0, 0.0, -1.0], (len(points), 1))
    rays = np.concatenate([origins, direction], axis=1)
    t = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy().astype(np.float64)
    # A miss lands far away (never taken as a partner).
    return origins + direction * np.where(np.isfinite(t), t, 1e3)[:, None]


def gaussian_field(
    centres: np.ndarray, values: np.ndarray, radius: float, smoothing: float
) -> Callable[[np.ndarray], np.ndarray]:
    """Smoothing Gaussian radial-basis field ``f(centres) ~ values``: returns ``f: (M, 3) -> (M, 3)``."""

    def kernel(x: np.ndarray) -> np.ndarray:
        # Coordinate by coordinate: bit for bit ``((x[:, None] - centres[None]) ** 2).sum(-1)`` without its
        # (M, K, 3) temporaries or numpy's slow reduction over a length-3 axis.
        d2 = (x[:, None, 0] - centres[None, :, 0]) ** 2
        d2 += (x[:, None, 1] - centres[None, :, 1]) ** 2
        d2 += (x[:, None, 2] - centres[None, :, 2]) ** 2
        return np.exp(-0.5 * d2 / radius**2)

    weights = np.linalg.solve(kernel(centres) + smoothing * np.eye(len(centres)), values)

    def field(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        out = np.empty((len(x), 3))
        for start in range(0, len(x), 8192):
            out[start : start + 8192] = kernel(x[start : start + 8192]) @ weights
        return out

    return field
