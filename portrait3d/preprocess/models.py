"""Face detection, face landmarks and person segmentation, offline.

The networks are MediaPipe's (Apache-2.0) ``.tflite`` files that ship inside
the ``mediapipe==0.10.21`` wheel. That wheel is installed without its
dependencies (``pip install --no-deps mediapipe==0.10.21``) because it asks for
protobuf>=4.25 while nerfstudio pins protobuf<=3.20, and the legacy
``mediapipe.solutions`` graphs do not run on protobuf 3.20. So this module never
imports ``mediapipe``: it only finds the package folder and runs the model
files with OpenCV's TFLite importer (``cv2.dnn.readNetFromTFLite``, OpenCV 4.8+),
doing the pre- and post-processing of the MediaPipe graphs itself:

- ``face_detection_short_range.tflite``: BlazeFace, 128x128 input in [-1, 1],
  896 SSD anchors, a box and 6 keypoints per anchor;
- ``face_landmark.tflite``: 468 3D face-mesh landmarks from a 192x192 crop in
  [0, 1] around the face, rotated so that the eyes are level;
- ``selfie_segmentation.tflite``: person probability at 256x256, input in [0, 1].
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from portrait3d.errors import UserError

MEDIAPIPE_REQUIREMENT = "mediapipe==0.10.21"
"""The wheel whose bundled model files this module runs (installed with ``--no-deps``)."""

_DETECTOR = "face_detection/face_detection_short_range.tflite"
_LANDMARKER = "face_landmark/face_landmark.tflite"
_SEGMENTER = "selfie_segmentation/selfie_segmentation.tflite"

# Landmarks of the 468-point face mesh used to level the crop (outer eye corners).
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263


def model_dir() -> Path:
    """Folder of MediaPipe's bundled models, found without importing ``mediapipe``."""
    spec = importlib.util.find_spec("mediapipe")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        folder = Path(location) / "modules"
        if (folder / _DETECTOR).is_file():
            return folder
    raise UserError(
        f"face models not found: install them with `pip install --no-deps {MEDIAPIPE_REQUIREMENT}` "
        "(or give --yaw/--pitch with --centred-crop)"
    )


@functools.cache
def _load(relative: str) -> cv2.dnn.Net:
    path = model_dir() / relative
    if not path.is_file():
        raise UserError(f"{path}: model file missing; reinstall with `pip install --no-deps {MEDIAPIPE_REQUIREMENT}`")
    previous = cv2.getLogLevel() if hasattr(cv2, "getLogLevel") else None
    if hasattr(cv2, "setLogLevel"):
        cv2.setLogLevel(0)  # the importer logs harmless shape probes on stderr
    try:
        return cv2.dnn.readNetFromTFLite(str(path))
    finally:
        if previous is not None:
            cv2.setLogLevel(previous)


def warp(
    image: np.ndarray, matrix: np.ndarray, size: int, flags: int = cv2.INTER_LINEAR, border: int = cv2.BORDER_CONSTANT
) -> np.ndarray:
    """``cv2.warpAffine`` to a ``size`` square that does not alias when it shrinks.

    A warp that shrinks more than twofold first downsizes the image with area
    averaging (``warpAffine`` alone samples, which turns fine detail into noise).

    Args:
        image: (H, W[, C]) image.
        matrix: (2, 3) affine from image pixels to output pixels.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    if scale < 0.5:
        factor = 2.0 * scale
        small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        # Pixel centres: old = (new + 0.5) / f - 0.5 in each axis (f from the sizes actually made).
        f = np.array([small.shape[1] / image.shape[1], small.shape[0] / image.shape[0]])
        linear = matrix[:, :2] / f
        shift = matrix[:, 2] + matrix[:, :2] @ (0.5 / f - 0.5)
        image, matrix = small, np.concatenate([linear, shift[:, None]], axis=1)
    return cv2.warpAffine(image, matrix, (size, size), flags=flags, borderMode=border)


def _forward(net: cv2.dnn.Net, image: np.ndarray) -> list[np.ndarray]:
    """Run a net on one (H, W, 3) float32 image; returns its outputs in the net's output-name order."""
    net.setInput(np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32))
    return list(net.forward(net.getUnconnectedOutLayersNames()))


# --- face detection ------------------------------------------------------------
@dataclass
class FaceDetection:
    """One detected face, in source image pixels.

    Attributes:
        box: (4,) ``x0, y0, x1, y1``.
        keypoints: (6, 2) right eye, left eye, nose tip, mouth, right ear, left ear
            ("right" = the subject's right, on the image's left for a frontal face).
        score: detector confidence in [0, 1].
    """

    box: np.ndarray
    keypoints: np.ndarray
    score: float

    @property
    def size(self) -> float:
        """Side of the face box in pixels (the larger of width and height)."""
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@functools.lru_cache(maxsize=1)
def _blazeface_anchors() -> np.ndarray:
    """Anchor centres of the short-range BlazeFace model in [0, 1]: (896, 2).

    SSD anchors with strides 8, 16, 16, 16 on a 128 input; layers of equal
    stride share a grid, two anchors per layer and cell, all of unit size.
    """
    centres = []
    for stride, per_cell in ((8, 2), (16, 6)):
        cells = 128 // stride
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=-1)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres)


def _letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, np.ndarray]:
    """Pad to a centred square and resize; returns (square, scale, offset) with src = square / scale - offset."""
    h, w = image.shape[:2]
    side = max(h, w)
    offset = np.array([(side - w) / 2.0, (side - h) / 2.0])
    matrix = np.array([[size / side, 0.0, offset[0] * size / side], [0.0, size / side, offset[1] * size / side]])
    square = warp(image, matrix, size)
    return square, size / side, offset


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box with each of ``boxes``: (4,), (N, 4) as x0, y0, x1, y1 -> (N,)."""
    boxes = np.atleast_2d(boxes)
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, extra: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression; overlapping boxes are averaged into the kept one (in place)."""
    order = np.argsort(-scores)
    kept: list[int] = []
    suppressed = np.zeros(len(scores), dtype=bool)
    for i in order:
        if suppressed[i]:
            continue
        group = (box_iou(boxes[i], boxes) > iou) & ~suppressed
        weights = scores[group][:, None]
        boxes[i] = (boxes[group] * weights).sum(0) / weights.sum()
        extra[i] = (extra[group] * weights).sum(0) / weights.sum()
        suppressed |= group
        kept.append(int(i))
    return kept


def _detect_square(image: np.ndarray, threshold: float) -> list[FaceDetection]:
    """BlazeFace on one image (letterboxed to 128x128)."""
    square, scale, offset = _letterbox(image, 128)
    scores_raw, raw = _forward(_load(_DETECTOR), square.astype(np.float32) / 127.5 - 1.0)
    scores = 1.0 / (1.0 + np.exp(-np.clip(scores_raw.reshape(-1).astype(np.float64), -100, 100)))
    raw = raw.reshape(-1, 16)
    keep = scores >= threshold
    if not keep.any():
        return []
    anchors = _blazeface_anchors()[keep]
    raw, scores = raw[keep] / 128.0, scores[keep]
    centre = raw[:, :2] + anchors
    half = raw[:, 2:4] / 2.0
    boxes = np.concatenate([centre - half, centre + half], axis=1) * 128.0
    keypoints = (raw[:, 4:].reshape(-1, 6, 2) + anchors[:, None, :]) * 128.0
    kept = _weighted_nms(boxes, scores, keypoints.reshape(-1, 12), iou=0.3)
    to_src = lambda p: p / scale - offset  # noqa: E731 - tiny local mapping
    faces = []
    for i in kept:
        box = np.concatenate([to_src(boxes[i, :2]), to_src(boxes[i, 2:])])
        faces.append(FaceDetection(box, to_src(keypoints[i]), float(scores[i])))
    return faces


def detect_faces(image: np.ndarray, threshold: float = 0.5) -> list[FaceDetection]:
    """Faces in an RGB image, largest first.

    The short-range model wants faces that fill a good part of its 128x128
    input, so when the whole frame shows none, overlapping half-size tiles are
    searched too (faces in a wider shot).

    Args:
        image: (H, W, 3) uint8 RGB.
        threshold: minimum detector confidence.
    """
    faces = _detect_square(image, threshold)
    if not faces:
        h, w = image.shape[:2]
        tile = max(64, min(h, w) // 2)
        step = max(1, tile // 2)
        for y in range(0, max(1, h - tile + step), step):
            for x in range(0, max(1, w - tile + step), step):
                for face in _detect_square(image[y : y + tile, x : x + tile], threshold):
                    shift = np.array([x, y], dtype=np.float64)
                    faces.append(FaceDetection(face.box + np.tile(shift, 2), face.keypoints + shift, face.score))
        faces = _merge_duplicates(faces)
    return sorted(faces, key=lambda f: -f.size)


def _merge_duplicates(faces: list[FaceDetection]) -> list[FaceDetection]:
    if len(faces) < 2:
        return faces
    boxes = np.stack([f.box for f in faces]).astype(np.float64)
    scores = np.array([f.score for f in faces])
    extra = np.stack([f.keypoints.ravel() for f in faces])
    kept = _weighted_nms(boxes, scores, extra, iou=0.3)
    return [FaceDetection(boxes[i], extra[i].reshape(6, 2), float(scores[i])) for i in kept]


# --- face landmarks --------------------------------------------------------------
@dataclass
class FaceLandmarks:
    """468 face-mesh landmarks in source image pixels.

    Attributes:
        points: (468, 3) ``x, y`` in pixels, ``z`` depth in the same pixel units,
            positive away from the camera, zero near the face's centre.
        score: the landmark model's face-presence confidence in [0, 1].
    """

    points: np.ndarray
    score: float


def _roi_matrix(centre: np.ndarray, size: float, angle: float, out: int) -> np.ndarray:
    """2x3 affine from source pixels to an ``out``-pixel square rotated by ``angle`` (radians) about ``centre``."""
    c, s = math.cos(angle), math.sin(angle)
    k = out / size
    # Rotate the source by -angle about the centre, scale, and move the centre to the square's middle.
    rot = np.array([[c, s], [-s, c]]) * k
    shift = np.array([out / 2.0, out / 2.0]) - rot @ centre
    return np.concatenate([rot, shift[:, None]], axis=1)


def _landmarks_in_roi(image: np.ndarray, centre: np.ndarray, size: float, angle: float) -> FaceLandmarks:
    matrix = _roi_matrix(centre, size, angle, 192)
    crop = warp(image, matrix, 192, border=cv2.BORDER_REPLICATE)
    flag, raw = _forward(_load(_LANDMARKER), crop.astype(np.float32) / 255.0)
    if flag.size == 1404:  # output order is not guaranteed across OpenCV versions
        flag, raw = raw, flag
    pts = raw.reshape(468, 3).astype(np.float64)
    inverse = cv2.invertAffineTransform(matrix)
    xy = pts[:, :2] @ inverse[:, :2].T + inverse[:, 2]
    z = pts[:, 2] * size / 192.0
    score = 1.0 / (1.0 + math.exp(-float(np.clip(flag.reshape(-1)[0], -100, 100))))
    return FaceLandmarks(np.concatenate([xy, z[:, None]], axis=1), score)


def face_landmarks(image: np.ndarray, face: FaceDetection, refinements: int = 1) -> FaceLandmarks:
    """The 468 face-mesh landmarks of one detected face.

    The first crop comes from the detection (box x1.5, eyes level); each
    refinement crops again around the landmarks just found, as MediaPipe's
    tracking graph does, which steadies the result on turned faces.

    Args:
        image: (H, W, 3) uint8 RGB.
        face: the detection to look at.
        refinements: extra passes with a crop from the previous landmarks.
    """
    eyes = face.keypoints[1] - face.keypoints[0]
    angle = math.atan2(eyes[1], eyes[0])
    centre = (face.box[:2] + face.box[2:]) / 2.0
    result = _landmarks_in_roi(image, centre, face.size * 1.5, angle)
    for _ in range(refinements):
        pts = result.points
        eyes = pts[LEFT_EYE_OUTER, :2] - pts[RIGHT_EYE_OUTER, :2]
        angle = math.atan2(eyes[1], eyes[0])
        # Box of the landmarks in the rotated frame, so that a tilted face is not over-sized.
        c, s = math.cos(angle), math.sin(angle)
        rotated = pts[:, :2] @ np.array([[c, -s], [s, c]])
        lo, hi = rotated.min(0), rotated.max(0)
        centre = np.array([[c, -s], [s, c]]) @ ((lo + hi) / 2.0)
        result = _landmarks_in_roi(image, centre, float(max(hi - lo)) * 1.5, angle)
    return result


# --- segmentation --------------------------------------------------------------
def person_probability(image: np.ndarray) -> np.ndarray:
    """Probability that each pixel shows the person (head, hair, neck, shoulders).

    Args:
        image: (H, W, 3) uint8 RGB.
    Returns:
        (H, W) float32 in [0, 1].
    """
    h, w = image.shape[:2]
    small = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    (prob,) = _forward(_load(_SEGMENTER), small)
    return np.clip(cv2.resize(prob.reshape(256, 256), (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
