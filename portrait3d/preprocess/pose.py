"""Head pose from two face-mesh readings: the photo's, then, for a face turned far, a frontalised copy's.

1. First reading: the rotation read off the photo's 468 landmarks, each
   averaged with the same landmark read off the mirror image
   (:func:`symmetric_landmarks`, from a detection itself averaged with the
   mirror image's, :func:`symmetric_detection`). This cancels the models' own
   left-right asymmetry: a photo and its mirror image get exactly mirrored
   landmarks, camera and crop (one-sided readings put skimage's camera(), a
   profile, at yaw -68.8 and its mirror image at 58.3).
2. Frontalise (:func:`frontal_view`): the landmarks, turned back by that
   rotation into the head frame, give a frontal layout; the photo is warped
   piecewise-affinely (a Delaunay mesh of the landmarks, far triangles drawn
   first) so that each landmark's pixels land on its layout point; pixels off
   the face take the colour of the nearest face pixel.
3. Second reading (:func:`second_reading`) on that image: the rotation the
   face still shows, i.e. what the first reading missed, now read near the
   frontal view (on the frontalised photo and on its mirror image,
   averaged). ``first @ FRONTAL @ second`` is the corrected rotation.

Which one counts (:func:`second_reading_share`): on two real head scans photographed at known turns
(``scripts/bench_pose_scan.py``; Lee Perry-Smith's is ``tests/preprocess/test_preprocess_camera.py``'s head) the
first reading is within about 5 degrees of the true yaw up to 45 and the second overshoots there (Lee at 45 read
56.6); from 60 the first falls short (the bust's by 12) and the second is the nearer. So the estimate is the first
reading up to 45 degrees, the second from 60, a smoothstep between (yaw, roll and the pitch bias follow the share).
The second reading was made for heads whose face is MediaPipe's own depth (flatter than a real face: there the
first reading is 0.75-0.86 of the true yaw); on those it stays more accurate below 45 degrees, but no real head
measured reads like them.

The pitch comes from the first reading, less :data:`PITCH_TURN_BIAS` ``* (1 - cos yaw)`` as far as the second
reading counts. The ratio of the final yaw to the first reading's measures how much this photo's landmark depth is
compressed (1 up to 45 degrees), and :func:`~portrait3d.preprocess.alignment.align` stretches the depth by it for
the 3D face lengths that size the crop. A second frontalisation pass overshoots (measured), so there is exactly
one. Cost: three more face-mesh readings (the mirror image, the frontal view and its mirror) and two 256-pixel
warps, about 50-80 ms on 2 CPU cores.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from portrait3d.cameras import camera_from_angles
from portrait3d.preprocess import alignment, models

FRONTAL = np.diag([1.0, -1.0, -1.0])
"""Head-to-camera rotation of a face seen from the front (head x left = image right, head y up = image up)."""
VIEW_SIZE = 256
"""Side of the frontalised image in pixels."""
PITCH_TURN_BIAS = 16.0
"""Degrees: MediaPipe reads the camera as higher the more the head turns, by about this times
``1 - cos(yaw)``. Calibrated (least squares, 15.6) on the proxy head (the project's template fitted
to the sample photo and textured from it, :func:`portrait3d.proxy.head.build_head`) rendered at
yaw -45..45 x pitch -20..20, not on the head the camera test checks. The fit moves by about 3 with
small changes of that head, so take it as +-3."""
SECOND_READING_TURN = (45.0, 60.0)
"""First-reading yaws (degrees) from which the second reading (and the pitch bias) take over, and fully from
(:func:`second_reading_share`). Measured on two real head scans photographed at known turns
(``scripts/bench_pose_scan.py``): the first reading is within about 5 degrees up to 45 on both, the second
overshoots there by 4-16 (Lee Perry-Smith read 56.6 for 45); from 60 the first falls short on the bust (12)
and the second is the nearer one."""


def second_reading_share(first_yaw: float) -> float:
    """How much of the second reading the estimate takes at a first reading of ``first_yaw`` degrees: 0 up to
    :data:`SECOND_READING_TURN` ``[0]``, 1 from ``[1]``, a smoothstep between."""
    start, full = SECOND_READING_TURN
    x = min(max((abs(first_yaw) - start) / (full - start), 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def frontal_view(image: np.ndarray, points: np.ndarray, rotation: np.ndarray, size: int = VIEW_SIZE):
    """The face of ``image`` redrawn as seen from the front, if ``rotation`` is its pose.

    Args:
        image: (H, W, 3) uint8 RGB.
        points: (468, 3) landmarks in ``image`` pixels (``z`` in the same scale, away from the camera).
        rotation: (3, 3) head-to-camera rotation (OpenCV axes) to undo.
        size: side of the output image.
    Returns:
        ``(view, layout)``: (size, size, 3) uint8 image and (468, 2) landmark positions in it.
    """
    head = (points - points.mean(0)) @ rotation  # head frame: x left, y up, z out of the face
    layout = head[:, :2] * np.array([1.0, -1.0])
    layout = layout * (0.45 * size / float(np.ptp(layout, axis=0).max())) + size / 2.0
    triangles = _delaunay(layout)
    corners = np.concatenate([layout[triangles], np.ones(triangles.shape + (1,))], axis=2)  # (T, 3, 3)
    keep = np.abs(np.linalg.det(corners)) > 1e-6
    triangles, corners = triangles[keep], corners[keep]
    # Per triangle, the affine map from view pixels to photo pixels: [u, v, 1] @ maps[t] = photo (x, y).
    maps = np.linalg.solve(corners, points[triangles, :2])
    ids = np.full((size, size), -1, np.int32)
    for t in np.argsort(head[triangles, 2].mean(1)):  # far triangles first, near ones drawn over them
        cv2.fillConvexPoly(ids, np.round(layout[triangles[t]] * 16).astype(np.int32), int(t), shift=4)
    inside = ids >= 0
    ys, xs = np.nonzero(inside)
    source = np.einsum("ni,nij->nj", np.stack([xs, ys, np.ones_like(xs)], 1).astype(np.float64), maps[ids[ys, xs]])
    map_x, map_y = np.zeros((size, size), np.float32), np.zeros((size, size), np.float32)
    map_x[ys, xs], map_y[ys, xs] = source[:, 0], source[:, 1]
    # Off the face: the photo position of the nearest face pixel (no colour of our choosing).
    _, labels = cv2.distanceTransformWithLabels(
        (~inside).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    nearest_x, nearest_y = np.zeros(labels.max() + 1, np.float32), np.zeros(labels.max() + 1, np.float32)
    nearest_x[labels[ys, xs]], nearest_y[labels[ys, xs]] = source[:, 0], source[:, 1]
    outside = ~inside
    map_x[outside], map_y[outside] = nearest_x[labels[outside]], nearest_y[labels[outside]]
    view = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return view, layout


def _delaunay(xy: np.ndarray) -> np.ndarray:
    """Delaunay triangles of (N, 2) points as (T, 3) indices (OpenCV's; scipy's takes 0.3 s to import)."""
    lo, hi = np.floor(xy.min(0)) - 1.0, np.ceil(xy.max(0)) + 1.0
    subdiv = cv2.Subdiv2D((int(lo[0]), int(lo[1]), int(hi[0] - lo[0]) + 1, int(hi[1] - lo[1]) + 1))
    points = np.ascontiguousarray(xy, dtype=np.float32)
    subdiv.insert(points)
    corners = np.ascontiguousarray(subdiv.getTriangleList(), dtype=np.float32).reshape(-1, 2)
    # Corners are returned as coordinates: find each one's point by its exact float32 bits.
    keys = points.view(np.uint64).ravel()
    order = np.argsort(keys)
    found = np.clip(np.searchsorted(keys[order], corners.view(np.uint64).ravel()), 0, len(keys) - 1)
    index = order[found].reshape(-1, 3)
    # Triangles that touch the subdivision's outer helper vertices have a corner that is no point.
    known = (keys[index] == corners.view(np.uint64).reshape(-1, 3)).all(1)
    return index[known]


def _detection(xy: np.ndarray) -> models.FaceDetection:
    """A face detection made from known landmark positions (468, 2): their box and eye centres."""
    eyes = np.stack([xy[list(alignment.RIGHT_EYE)].mean(0), xy[list(alignment.LEFT_EYE)].mean(0)])
    return models.FaceDetection(np.concatenate([xy.min(0), xy.max(0)]), np.concatenate([eyes, np.zeros((4, 2))]), 1.0)


def _mean_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rotation nearest to the average of two rotations: (3, 3)."""
    u, _, vt = np.linalg.svd(a + b)
    return u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt


def mirror_points(points: np.ndarray, width: float) -> np.ndarray:
    """Landmarks (468, 2+) of a face in an image ``width`` pixels wide, as the landmarks of its mirror image."""
    mirrored = np.array(points, dtype=np.float64)
    mirrored[:, 0] = width - mirrored[:, 0]
    return mirrored[list(alignment.MIRROR_INDEX)]


def mirror_detection(face: models.FaceDetection, width: float) -> models.FaceDetection:
    """A detection as the same face's detection in the mirror image (its right eye and ear are the left ones)."""
    box = np.array([width - face.box[2], face.box[1], width - face.box[0], face.box[3]])
    keypoints = np.array(face.keypoints, dtype=np.float64)
    keypoints[:, 0] = width - keypoints[:, 0]
    return models.FaceDetection(box, keypoints[[1, 0, 2, 3, 5, 4]], face.score)


def symmetric_detection(image: np.ndarray, face: models.FaceDetection, threshold: float = 0.5) -> models.FaceDetection:
    """``face`` averaged with the detector's reading of the same face in the mirror image, mirrored back.

    The detector is not left-right symmetric either; from the averaged box, the landmark readings of
    :func:`symmetric_landmarks` of a photo and of its mirror image are exact mirror images.
    ``threshold`` must be the one ``face`` was detected with (the detector merges overlapping boxes
    that pass it).
    """
    width = image.shape[1]
    expected = mirror_detection(face, width)
    best, best_iou = None, 0.3
    for other in models.detect_faces(np.ascontiguousarray(image[:, ::-1]), threshold):
        iou = float(models.box_iou(expected.box, other.box)[0])
        if iou > best_iou:
            best, best_iou = other, iou
    if best is None:
        return face
    back = mirror_detection(best, width)
    return models.FaceDetection((face.box + back.box) / 2.0, (face.keypoints + back.keypoints) / 2.0, face.score)


def symmetric_landmarks(image: np.ndarray, face: models.FaceDetection) -> np.ndarray:
    """The landmarks read from ``face`` averaged with those read off the mirror image and mirrored back.

    The landmark model is not left-right symmetric: on skimage's camera() (a profile) the one-sided
    readings of the photo and of its mirror image differ by several degrees of yaw and roll. The
    average from a symmetric detection (:func:`symmetric_detection`) is symmetric: a photo and its mirror
    image get mirrored landmarks. Returns (468, 3).
    """
    width = image.shape[1]
    own = models.face_landmarks(image, face).points
    found = models.face_landmarks(np.ascontiguousarray(image[:, ::-1]), mirror_detection(face, width)).points
    return _rigid_average(own, mirror_points(found, width))


def _rigid_average(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Average of two readings (468, 3) of one face taken in the head's frame, then posed at their mean pose.

    A plain average of two readings that disagree on the pose shrinks the face (on a profile, by the
    cosine of the yaw between them), and the crop's size comes from it.
    """
    ra, rb = alignment.head_rotation(a), alignment.head_rotation(b)
    ca, cb = a.mean(0), b.mean(0)
    shape = ((a - ca) @ ra + (b - cb) @ rb) / 2.0
    return shape @ _mean_rotation(ra, rb).T + (ca + cb) / 2.0


def second_reading(image: np.ndarray, points: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """The rotation the face still shows after frontalising with ``rotation``: (3, 3), ``FRONTAL`` if none.

    Read on the photo and on its mirror image (mirrored back) and averaged, like the landmarks.
    """
    flip = np.diag([-1.0, 1.0, 1.0])  # mirrors the camera's x and the head's x
    readings = []
    for picture, pts, turn, conj in (
        (image, points, rotation, np.eye(3)),
        (np.ascontiguousarray(image[:, ::-1]), mirror_points(points, image.shape[1]), flip @ rotation @ flip, flip),
    ):
        view, layout = frontal_view(picture, pts, turn)
        readings.append(conj @ alignment.head_rotation(models.face_landmarks(view, _detection(layout)).points) @ conj)
    return _mean_rotation(*readings)


def estimate(
    image: np.ndarray,
    points: np.ndarray,
    yaw: float | None = None,
    pitch: float | None = None,
    face: models.FaceDetection | None = None,
):
    """PanoHead crop and camera of one face (the frontalised second reading only for a face turned far).

    Args:
        image: (H, W, 3) uint8 RGB photo.
        points: (468, 3) landmarks of the face in ``image`` pixels (read again, with the mirror image).
        yaw, pitch: degrees that replace the estimated ones (see :func:`alignment.align`).
        face: where to read the landmarks (default: the box of ``points``); a
            :func:`symmetric_detection` makes the estimate of the mirror image the mirror of this one.
    Returns:
        :class:`~portrait3d.preprocess.alignment.Alignment`.
    """
    points = symmetric_landmarks(image, _detection(points[:, :2]) if face is None else face)
    first = alignment.head_rotation(points)
    a1 = alignment.camera_from_rotation(first).angles(target=(0.0, 0.0, 0.0))
    final_yaw, final_roll, turned_pitch = a1.yaw, a1.roll, a1.pitch
    gain = 1.0
    share = second_reading_share(a1.yaw)
    if share > 0:  # turned less than SECOND_READING_TURN[0], the frontalised copy is not even read
        corrected = first @ FRONTAL @ second_reading(image, points, first)
        a2 = alignment.camera_from_rotation(corrected).angles(target=(0.0, 0.0, 0.0))
        final_yaw = a1.yaw + share * (a2.yaw - a1.yaw)
        final_roll = a1.roll + share * (a2.roll - a1.roll)
        turned_pitch = a1.pitch - share * PITCH_TURN_BIAS * (1.0 - math.cos(math.radians(final_yaw)))
        # The gain's clip to [1, 2] is a safety limit, not fitted.
        gain = float(np.clip(math.sin(math.radians(final_yaw)) / math.sin(math.radians(a1.yaw)), 1.0, 2.0))
    rotation = camera_from_angles(final_yaw, turned_pitch, final_roll).cam2world[:3, :3].T
    return alignment.align(points, yaw, pitch, rotation=rotation, depth_gain=gain)
