"""Fit the template head to the face landmarks of the aligned photo.

The camera comes from the preprocess stage, so the head keeps its pose (the
world frame is the head's frame). What the landmarks decide is the head's
scale and position in the image plane, then the face shape: each named
template point is moved, in the image plane of the input camera, onto its
landmark, and a smooth radial-basis warp carries the surrounding surface
along, so that the eyes, nose and mouth of the geometry sit where the texture
puts them. Then the face takes the landmarks' own 3D shape: lifted by their
learned depth, the 468 landmarks are the person's brow, nose, cheeks, lips,
chin and jaw line, and the surface is moved onto them
(:mod:`portrait3d.proxy.face_depth`). Both warps fade out within a few
centimetres of the face; the skull follows the photo's outline
(:mod:`portrait3d.proxy.shape`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from portrait3d.cameras import Camera
from portrait3d.proxy.face_depth import (
    MIDLINE_WEIGHT,
    TURNED_NOSE_RELIEF,
    face_cloud,
    face_depth_warp,
    photo_pose_field,
    place_cloud,
)
from portrait3d.proxy.face_regions import smoothstep
from portrait3d.proxy.symmetry import MIDLINE_LANDMARKS
from portrait3d.proxy.template import MEDIAPIPE_INDEX, TemplateHead


@dataclass
class FitResult:
    """What the fit did.

    Attributes:
        vertices: (V, 3) fitted vertex positions (same faces as the template).
        keypoints: name -> (3,) fitted keypoint positions.
        scale: uniform scale applied about the origin.
        shift: (3,) world translation applied after scaling.
        residual_px: mean landmark distance in pixels before the shape warp (after scale and shift).
        used: number of landmarks used (0 when none were given).
        warp: the shape warp of step 2, world points (M, 3) -> displacements (M, 3); None when not fitted.
            Applied after scale and shift, so any surface made in the template's frame follows the face.
        photo_pose: world points (M, 3) -> displacements (M, 3) that put the face where the photo's
            camera saw it (:func:`~portrait3d.proxy.face_depth.photo_pose_field`; what the texture
            projects the photo through); None without the face's depth.
        mid_x: x of the face's mid-plane (the median x of its mid-line landmarks, placed); None without
            the face's depth.
        turn: how much the photo's face counts as turned, in [0, 1] (:func:`turn_share`).
    """

    vertices: np.ndarray
    keypoints: dict[str, np.ndarray]
    scale: float = 1.0
    shift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    residual_px: float | None = None
    used: int = 0
    warp: Callable[[np.ndarray], np.ndarray] | None = None
    photo_pose: Callable[[np.ndarray], np.ndarray] | None = None
    mid_x: float | None = None
    turn: float = 0.0


def landmark_targets(landmarks: np.ndarray | None) -> dict[str, np.ndarray]:
    """Named 2D targets (pixels) from mediapipe face-mesh landmarks: (N >= 468, 2+) -> name -> (2,)."""
    if landmarks is None:
        return {}
    pts = np.asarray(landmarks, dtype=np.float64)
    return {name: pts[i, :2] for name, i in MEDIAPIPE_INDEX.items() if i < len(pts) and np.all(np.isfinite(pts[i, :2]))}


def fit_template(
    template: TemplateHead,
    camera: Camera,
    image_size: int,
    landmarks: np.ndarray | None,
    max_scale_change: float = 0.25,
    max_offset: float = 0.03,
    warp_radius: float = 0.045,
    face_depth: bool = True,
) -> FitResult:
    """Fit ``template`` so that its named points project onto ``landmarks``.

    Args:
        template: the template head.
        camera: the input camera (PanoHead label of the aligned photo).
        image_size: width and height of the aligned photo in pixels.
        landmarks: (N, 2 or 3) mediapipe face-mesh landmarks in aligned-photo
            pixels, or None to keep the template as it is.
        max_scale_change: the scale stays within 1 -/+ this.
        max_offset: largest shape displacement of one keypoint (world units).
        warp_radius: width of the Gaussian radial basis of the shape warp (world units).
        face_depth: move the face onto the landmarks' 3D cloud (their learned depth, step 3) when
            the landmarks have a third column.
    """
    vertices = np.asarray(template.mesh.vertices, dtype=np.float64)
    targets = landmark_targets(landmarks)
    names = [n for n in template.keypoints if n in targets]
    if len(names) < 4:
        return FitResult(vertices.copy(), dict(template.keypoints))
    key3d = np.stack([template.keypoints[n] for n in names])
    goal = np.stack([targets[n] for n in names])

    # 1. Scale and shift in the image plane (weak perspective about the image of the origin).
    origin_px, _ = camera.project(np.zeros((1, 3)), image_size, image_size)
    proj, _ = camera.project(key3d, image_size, image_size)
    rel = proj - origin_px
    a = np.zeros((2 * len(names), 3))
    a[0::2, 0], a[1::2, 0] = rel[:, 0], rel[:, 1]
    a[0::2, 1], a[1::2, 2] = 1.0, 1.0
    b = (goal - origin_px).reshape(-1)
    (scale, dx, dy), *_ = np.linalg.lstsq(a, b, rcond=None)
    scale = float(np.clip(scale, 1.0 - max_scale_change, 1.0 + max_scale_change))
    focal_px = camera.intrinsics[0, 0] * image_size
    distance = float(np.linalg.norm(camera.position))
    shift = (dx * camera.cam2world[:3, 0] + dy * camera.cam2world[:3, 1]) * distance / focal_px
    shift = np.clip(shift, -0.1, 0.1)
    vertices = vertices * scale + shift
    key3d = key3d * scale + shift
    fitted_keys = {n: np.asarray(p) * scale + shift for n, p in template.keypoints.items()}

    # 2. Shape: move each keypoint in the camera's image plane onto its landmark (a profile's stretched to the
    # face's height, see face_height_factor).
    height = face_height_factor(camera)
    if height != 1.0:
        landmarks = with_face_height(np.asarray(landmarks, dtype=np.float64), height)
        goal = np.stack([landmark_targets(landmarks)[n] for n in names])
    proj, depth = camera.project(key3d, image_size, image_size)
    residual = goal - proj
    offsets = (residual[:, :1] * camera.cam2world[:3, 0] + residual[:, 1:] * camera.cam2world[:3, 1]) * (
        depth[:, None] / focal_px
    )
    lengths = np.linalg.norm(offsets, axis=1, keepdims=True)
    offsets *= np.minimum(1.0, max_offset / np.maximum(lengths, 1e-12))
    # Landmarks on a side the camera sees at a grazing angle are guesses: let those keypoints stay. The
    # midline (forehead, nose, lips, chin) is the exception: on a turned face it is the face's outline,
    # where the landmarks are sharpest.
    facing = _facing_weight(template, names, camera, key3d)
    offsets *= np.where(np.isin(names, MIDLINE), 1.0, facing)[:, None]
    warp = _gaussian_rbf(key3d, offsets, warp_radius)
    vertices = vertices + warp(vertices)
    fitted_keys = {n: p + warp(p[None])[0] for n, p in fitted_keys.items()}

    # 3. Depth: the face onto the landmarks' own 3D shape (brow, nose, cheeks, lips, chin, jaw).
    points = None if landmarks is None else np.asarray(landmarks, dtype=np.float64)
    photo_pose = mid_x = None
    turn = 0.0
    if face_depth and _has_depth(points):
        turn = turn_share(camera)
        nose_gain = 1.0 - (1.0 - TURNED_NOSE_RELIEF) * turn
        cloud = face_cloud(points[:468], camera, image_size, nose_gain=nose_gain)
        placement = place_cloud(vertices, np.asarray(template.mesh.faces), cloud, MIDLINE_WEIGHT * turn)
        if nose_gain != 1.0:
            placement = placement.with_midline_x_of(face_cloud(points[:468], camera, image_size))
        depth_warp = face_depth_warp(
            vertices, np.asarray(template.mesh.faces), cloud, placement=placement, camera_position=camera.position
        )
        vertices = vertices + depth_warp(vertices)
        if turn > 0:
            photo_pose = photo_pose_field(placement, vertices, np.asarray(template.mesh.faces), share=turn)
        mid_x = float(np.median(placement.placed[list(MIDLINE_LANDMARKS), 0]))
        fitted_keys = {n: p + depth_warp(p[None])[0] for n, p in fitted_keys.items()}
        warp = _compose(warp, depth_warp)
    return FitResult(
        vertices=vertices,
        keypoints=fitted_keys,
        scale=scale,
        shift=tuple(float(s) for s in shift),
        residual_px=float(np.linalg.norm(residual, axis=1).mean()),
        used=len(names),
        warp=warp,
        photo_pose=photo_pose,
        mid_x=mid_x,
        turn=turn,
    )


TURN_START, TURN_FULL = 14.0, 20.0
"""Yaw (degrees) from which the photo's face counts as turned, and fully from (see :func:`turn_share`). In the pose's
first reading's degrees (17 and 25 when the estimate was the second reading at every yaw, which reads these turns
about 1.2 times larger: :data:`portrait3d.preprocess.pose.SECOND_READING_TURN`)."""


def turn_share(camera: Camera) -> float:
    """How much the photo's face counts as turned: 0 below :data:`TURN_START` degrees of yaw, 1 from TURN_FULL.

    A turned face's landmark cloud is placed turned less than the camera says (its depth is compressed), so
    the photo is projected onto the face posed as the camera saw it and the cloud's mid-line is held on the
    head's mid-plane (:attr:`FitResult.photo_pose`). On a face seen from the front the image-plane fit already
    puts the photo's features on the face, and these would only move it (measured with them on at every yaw:
    child_boy_frontal's identity distance at yaw 0 grew from 0.169 to 0.299), so they stay off. The start lies
    between the eval photos they made a little worse (anime_man_manhwa, yaw 17 as the second reading read it, 13.5
    as the first does: at +-30 degrees 0.282 / 0.330 -> 0.298 / 0.336 at a share of 0.04) and those they help
    (painting_mona_lisa, yaw 23, 18 by the first reading: 0.350 / 0.522 / 0.328 -> 0.279 / 0.389 / 0.299).
    """
    yaw = abs(camera.angles(target=(0.0, 0.0, 0.0)).yaw)
    return float(smoothstep((yaw - TURN_START) / (TURN_FULL - TURN_START)))


PROFILE_HEIGHT = (60.0, 75.0)
"""Yaw (degrees) from which the landmarks are stretched to the face's height (:func:`face_height_factor`), and fully
from. Below 60 they are not: on the one real turned photo with a known face, `three_quarter_woman_left` at 52.6, the
landmarks lie on her chin's underside and her hairline, and stretched, her face was long (identity at yaw 0 0.499 ->
0.589; docs/BENCHMARKS.md, twenty-fourth session)."""
HEIGHT_COMPRESSION = 0.27
"""How much shorter the face-mesh landmarks make a face turned 90 degrees (forehead to chin; :func:`face_height_factor`
takes ``1 - HEIGHT_COMPRESSION (1 - cos yaw)`` at other turns). Measured on Lee Perry-Smith's scan photographed at
30-75 degrees (forehead to chin 0.962 at 30, 0.921 at 45, 0.885 at 55, 0.851 at 65, 0.841 at 75 of the frontal
photo's; the bust within a few %)."""


def face_height_factor(camera: Camera) -> float:
    """Factor on a profile's landmark heights about its eyes that undoes the face mesh's compression of a turned
    face's height (1 below :data:`PROFILE_HEIGHT`)."""
    yaw = abs(camera.angles(target=(0.0, 0.0, 0.0)).yaw)
    full = 1.0 / (1.0 - HEIGHT_COMPRESSION * (1.0 - np.cos(np.radians(yaw))))
    share = smoothstep((yaw - PROFILE_HEIGHT[0]) / (PROFILE_HEIGHT[1] - PROFILE_HEIGHT[0]))
    return float(1.0 + share * (full - 1.0))


def with_face_height(landmarks: np.ndarray, factor: float) -> np.ndarray:
    """Face-mesh landmarks (N >= 468, 2+) with their image rows stretched by ``factor`` about the eyes' row."""
    out = np.array(landmarks, dtype=np.float64)
    eyes = float(np.mean(out[[MEDIAPIPE_INDEX["left_eye_outer"], MEDIAPIPE_INDEX["right_eye_outer"]], 1]))
    out[:, 1] = eyes + factor * (out[:, 1] - eyes)
    return out


MIDLINE = ("forehead", "nose_bridge", "nose_tip", "upper_lip", "lower_lip", "chin")
"""Template keypoints on the face's mid-plane."""


def _facing_weight(template: TemplateHead, names: list[str], camera: Camera, points: np.ndarray) -> np.ndarray:
    """1 where the camera sees a keypoint's surface squarely, falling to 0 at grazing angles: (K,)."""
    _, nearest = template.mesh.kdtree.query(np.stack([template.keypoints[n] for n in names]))
    normals = np.asarray(template.mesh.vertex_normals)[nearest]
    to_camera = camera.position - points
    to_camera /= np.linalg.norm(to_camera, axis=1, keepdims=True)
    return np.clip((np.sum(normals * to_camera, axis=1) - 0.25) / 0.35, 0.0, 1.0)


def _has_depth(points: np.ndarray | None) -> bool:
    """Whether landmarks are a whole face mesh with a learned depth (a third column that is not all one value)."""
    if points is None or points.ndim != 2 or points.shape[1] < 3 or len(points) < 468:
        return False
    face = points[:468]
    return bool(np.all(np.isfinite(face)) and np.ptp(face[:, 2]) > 0)


def _compose(first: Callable, second: Callable) -> Callable[[np.ndarray], np.ndarray]:
    """The displacement of ``second`` applied after ``first``, as one displacement field."""

    def warp(x: np.ndarray) -> np.ndarray:
        d = first(x)
        return d + second(np.asarray(x, dtype=np.float64) + d)

    return warp


def _gaussian_rbf(centres: np.ndarray, values: np.ndarray, radius: float, regularisation: float = 1e-3):
    """Interpolating Gaussian radial-basis field: ``f(centres) ~= values``; returns ``f: (M, 3) -> (M, 3)``."""

    def kernel(x: np.ndarray) -> np.ndarray:
        d2 = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        return np.exp(-0.5 * d2 / radius**2)

    weights = np.linalg.solve(kernel(centres) + regularisation * np.eye(len(centres)), values)
    return lambda x: kernel(np.asarray(x, dtype=np.float64)) @ weights
