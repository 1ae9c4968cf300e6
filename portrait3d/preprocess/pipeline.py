"""The preprocess stage: photo -> ``input/aligned.png``, ``input/mask.png``, ``input/camera.json``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from portrait3d import progress
from portrait3d.cameras import Camera, camera_from_angles
from portrait3d.errors import UserError
from portrait3d.preprocess import alignment, models, outline, pose
from portrait3d.preprocess.decode import Photo, read_photo
from portrait3d.preprocess.exposure import normalise_exposure
from portrait3d.run import Run, atomic_save_image, atomic_write_json
from portrait3d.runner import Stage, open_run, run_stage

STAGE = "preprocess"
ALIGNED = "input/aligned.png"
MASK = "input/mask.png"
CAMERA = "input/camera.json"
OUTPUTS = (ALIGNED, MASK, CAMERA)
LANDMARK_FORMAT = "mediapipe-face-mesh-468"


@dataclass
class PreprocessOptions:
    """Options of the preprocess stage."""

    yaw: float | None = None
    """Camera yaw in degrees (see :mod:`portrait3d.cameras`); given, it replaces the estimate."""
    pitch: float | None = None
    """Camera pitch in degrees; given, it replaces the estimate."""
    centred_crop: bool = False
    """Skip face detection: take the largest centred square of the photo (for faces the detector
    misses, such as animals or cartoons). The camera then comes from ``yaw``/``pitch`` (default 0)."""
    min_face_size: int = 64
    """Smallest accepted face, in source pixels (side of the detector's box)."""
    detection_threshold: float = 0.5
    """Minimum face-detector confidence."""
    landmark_threshold: float = 0.5
    """Minimum face-presence confidence of the landmark model (rejects detections that are not faces)."""
    max_megapixels: float = 100.0
    """Larger photos are refused before their pixels are decoded."""
    background: int = 255
    """Grey level that transparent pixels of the photo are composited over."""


@dataclass
class Preprocessed:
    """What the stage writes, computed in memory first (so a failure writes nothing).

    Attributes:
        aligned: (512, 512, 3) uint8 RGB crop.
        mask: (512, 512) uint8, 255 = head and shoulders.
        record: the ``camera.json`` document.
    """

    aligned: np.ndarray
    mask: np.ndarray
    record: dict


# --- image operations ------------------------------------------------------------
def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int = alignment.ALIGNED_SIZE) -> np.ndarray:
    """Apply a similarity crop; parts outside the photo are a blurred reflection (as PanoHead's crops).

    Args:
        image: (H, W, C) uint8.
        matrix: (2, 3) source-to-crop affine.
    Returns:
        (size, size, C) uint8.
    """
    crop = models.warp(image, matrix, size, flags=cv2.INTER_LANCZOS4, border=cv2.BORDER_REFLECT_101)
    inside = coverage(image.shape[:2], matrix, size)
    if inside.min() < 1.0:
        blur = max(3, int(size * 0.03) * 2 + 1)
        soft = cv2.blur(inside, (blur, blur))[..., None]
        blurred = cv2.blur(crop, (blur, blur))
        crop = np.round(crop * soft + blurred * (1.0 - soft)).astype(np.uint8)
    return crop


def coverage(shape: tuple[int, int], matrix: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float32, 1 where the crop shows the photo, 0 outside it."""
    ones = np.ones(shape, dtype=np.float32)
    return cv2.warpAffine(ones, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)


def centred_square(width: int, height: int, size: int = alignment.ALIGNED_SIZE) -> np.ndarray:
    """(2, 3) affine of the largest centred square of a ``width`` x ``height`` image onto ``size`` pixels."""
    side = min(width, height)
    k = size / side
    return np.array([[k, 0.0, -k * (width - side) / 2.0], [0.0, k, -k * (height - side) / 2.0]])


def _largest_region(mask: np.ndarray, seed: np.ndarray | None = None) -> np.ndarray:
    """The connected region holding ``seed`` (x, y), else the largest one, with holes filled: bool."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask.astype(bool)
    label = 0
    if seed is not None:
        x, y = int(np.clip(seed[0], 0, mask.shape[1] - 1)), int(np.clip(seed[1], 0, mask.shape[0] - 1))
        label = labels[y, x]
    if label == 0:
        label = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = (labels == label).astype(np.uint8)
    # Fill holes: whatever the background flood fill from the border cannot reach.
    flood = np.pad(1 - region, 1, constant_values=1)
    cv2.floodFill(flood, None, (0, 0), 2)
    return (flood[1:-1, 1:-1] != 2) | region.astype(bool)


def person_mask(aligned: np.ndarray, inside: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Head-and-shoulders mask of a face crop from the person segmenter: (H, W) uint8 in {0, 255}."""
    prob = models.person_probability(aligned) * (inside > 0.5)
    region = _largest_region(prob > 0.5, seed)
    return region.astype(np.uint8) * 255


def grabcut_mask(image: np.ndarray, iterations: int = 4, work_size: int = 160) -> np.ndarray:
    """Foreground of a centred subject by GrabCut seeded with a central box: (H, W) uint8 in {0, 255}.

    GrabCut runs on a ``work_size`` copy (it costs seconds at 512 pixels) and the mask is scaled back.
    """
    h, w = image.shape[:2]
    small = cv2.resize(image, (work_size, work_size), interpolation=cv2.INTER_AREA)
    rect = (int(0.06 * work_size), int(0.04 * work_size), int(0.88 * work_size), int(0.96 * work_size) - 1)
    labels = np.zeros((work_size, work_size), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(small[..., ::-1].copy(), labels, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    fg = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.float32)
    fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
    region = _largest_region(fg, np.array([w / 2.0, h / 2.0]))
    if region.mean() < 0.05:  # GrabCut found nothing useful: keep the seed box
        k = np.array([w, h, w, h]) / work_size
        x, y, bw, bh = (np.array(rect) * k).astype(int)
        region = np.zeros((h, w), bool)
        region[y : y + bh, x : x + bw] = True
    return region.astype(np.uint8) * 255


MIN_FACE_COVERAGE = 0.5
"""Share of the face's landmark hull a usable person mask covers."""


def face_coverage(mask: np.ndarray, landmarks: np.ndarray) -> float:
    """Share of the convex hull of the (N, 2+) landmarks (crop pixels) that the (S, S) uint8 mask covers."""
    hull = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(landmarks[:, :2]).astype(np.int32)), 1)
    inside = hull.astype(bool)
    return float((mask[inside] > 127).mean()) if inside.any() else 1.0


# --- the stage -------------------------------------------------------------------
def _camera_record(camera: Camera) -> dict:
    angles = camera.angles(target=(0.0, 0.0, 0.0))
    return {
        "label": camera.to_label(),
        "yaw": round(angles.yaw, 4),
        "pitch": round(angles.pitch, 4),
        "roll": round(angles.roll, 4),
    }


def _source_record(photo: Photo) -> dict:
    return {"path": str(photo.path.resolve()), "width": photo.width, "height": photo.height, "sha256": photo.sha256}


def analyse(photo: Photo, options: PreprocessOptions) -> Preprocessed:
    """Crop, camera and mask of a decoded photo (nothing is written)."""
    size = alignment.ALIGNED_SIZE
    # A photo too dark or too flat is stretched before anything reads its colours (or refused).
    rgb, exposure = normalise_exposure(photo.rgb, str(photo.path))
    if exposure.normalised:
        progress.info(
            f"[{STAGE}] {photo.path.name} is {exposure.reason} (levels {exposure.black:.0f}-{exposure.white:.0f} "
            "of 255): its levels were stretched to the full range"
        )
        photo = replace(photo, rgb=rgb)
    manual = options.yaw is not None or options.pitch is not None or options.centred_crop
    if options.centred_crop:
        matrix = centred_square(photo.width, photo.height, size)
        aligned = warp_crop(photo.rgb, matrix, size)
        camera = camera_from_angles(options.yaw or 0.0, options.pitch or 0.0)
        mask = grabcut_mask(aligned) if photo.alpha is None else _warped_alpha(photo.alpha, matrix, size)
        record = {
            **_camera_record(camera),
            "landmarks": None,
            "detector": None,
            "source": _source_record(photo),
            "faces_found": 0,
            "manual": True,
            "crop": np.round(matrix, 6).tolist(),
            "exposure": exposure.record(),
        }
        return Preprocessed(aligned, mask, record)

    # A detection counts as a face only when the landmark model agrees (an animal can fool the detector).
    faces, landmarks = [], None
    for detection in models.detect_faces(photo.rgb, options.detection_threshold):
        found = models.face_landmarks(photo.rgb, detection)
        if found.score >= options.landmark_threshold:
            faces.append(detection)
            landmarks = found if landmarks is None else landmarks
    if not faces:
        raise UserError(
            f"{photo.path}: no face found; for an animal or cartoon face give --centred-crop with --yaw and --pitch"
        )
    face = faces[0]
    if len(faces) > 1:
        progress.info(f"[{STAGE}] {len(faces)} faces found; using the largest ({face.size:.0f} px)")
    if face.size < options.min_face_size:
        raise UserError(
            f"{photo.path}: the face is only {face.size:.0f} px across; at least {options.min_face_size} px is needed"
        )
    symmetric = pose.symmetric_detection(photo.rgb, face, options.detection_threshold)
    align = pose.estimate(photo.rgb, landmarks.points, options.yaw, options.pitch, face=symmetric)
    camera = align.camera
    aligned = warp_crop(photo.rgb, align.matrix, size)
    if photo.alpha is not None:
        mask = _warped_alpha(photo.alpha, align.matrix, size)
    else:
        inside = coverage(photo.rgb.shape[:2], align.matrix, size)
        mask = person_mask(aligned, inside, align.landmarks[:, :2].mean(0))
        if face_coverage(mask, align.landmarks) < MIN_FACE_COVERAGE:
            # The person segmenter knows people, not statues or some paintings: a mask that misses the face
            # would leave the head untextured (a flat template colour).
            progress.info(f"[{STAGE}] the person mask misses the face (a statue?): GrabCut adds to it")
            mask = np.maximum(mask, grabcut_mask(aligned))
        if outline.implausible(mask, inside):
            # A dark, blurred photo: the segmenter took all of it for the person (the hair became a wide blob).
            progress.info(
                f"[{STAGE}] the person mask covers the whole photo ({outline.frame_share(mask, inside):.0%}): "
                "a head outline from the face landmarks replaces it"
            )
            mask = outline.landmark_head_mask(align.landmarks, size)
    record = {
        **_camera_record(camera),
        "landmarks": {"format": LANDMARK_FORMAT, "points": np.round(align.landmarks, 3).tolist()},
        "detector": {
            "models": "MediaPipe face_detection_short_range + face_landmark (Apache-2.0)",
            "package": models.MEDIAPIPE_REQUIREMENT,
            "runtime": f"opencv {cv2.__version__} dnn",
            "face_score": round(face.score, 4),
            "face_box": np.round(face.box, 2).tolist(),
        },
        "source": _source_record(photo),
        "faces_found": len(faces),
        "manual": manual,
        "crop": np.round(align.matrix, 6).tolist(),
        "exposure": exposure.record(),
    }
    return Preprocessed(aligned, mask, record)


def _warped_alpha(alpha: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    warped = cv2.warpAffine(alpha, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    return np.where(warped >= 128, 255, 0).astype(np.uint8)


def analyse_photo(photo: str | Path, options: PreprocessOptions) -> Preprocessed:
    """Decode and analyse ``photo`` in memory (a bad photo is a one-line UserError; nothing is written)."""
    return analyse(read_photo(photo, options.max_megapixels, options.background), options)


def write_preprocessed(run: Run, result: Preprocessed) -> dict:
    """Write the run's ``input/`` from an analysed photo; returns the stage's information."""
    atomic_save_image(run.path(ALIGNED), result.aligned)
    atomic_save_image(run.path(MASK), result.mask)
    atomic_write_json(run.path(CAMERA), result.record)
    rec = result.record
    return {k: rec[k] for k in ("yaw", "pitch", "roll", "faces_found", "manual")}


def stage(photo: str | Path, options: PreprocessOptions | None = None) -> Stage:
    """``preprocess``: the photo -> ``input/aligned.png``, ``input/mask.png``, ``input/camera.json``."""
    photo = Path(photo)
    options = options or PreprocessOptions()
    analysed = {}

    def check(_run: Run) -> None:
        # The photo is decoded and analysed before the stage starts: a bad one is a single line.
        analysed["result"] = analyse_photo(photo, options)

    def write(run: Run, opts) -> dict:
        return write_preprocessed(run, analysed.pop("result", None) or analyse_photo(photo, opts))

    return Stage(STAGE, write, options, outputs=OUTPUTS, sources=(str(photo),), check=check)


def preprocess(
    photo: str | Path,
    run_dir: str | Path,
    options: PreprocessOptions | None = None,
    force: bool = False,
    wait: bool = False,
) -> dict:
    """Run the preprocess stage: write ``input/aligned.png``, ``input/mask.png`` and ``input/camera.json``.

    A bad input leaves ``run_dir`` as it was (a folder this call created is removed
    again). A rerun with the same photo and options is skipped.

    Args:
        photo: the portrait (JPEG, PNG, WebP, BMP or TIFF).
        run_dir: the run folder (created if missing).
        options: stage options (defaults: detect the face and estimate the camera).
        force: rewrite the outputs even if they are up to date.
        wait: wait for another process writing the run instead of failing.
    Returns:
        The stage's information: ``yaw``, ``pitch``, ``roll``, ``faces_found``,
        ``manual``, ``seconds``, ``skipped``.
    """
    if not Path(photo).is_file():
        read_photo(photo)  # the one-line error for a missing file or a folder, before the run is touched
    with open_run(run_dir, wait=wait) as run:
        return run_stage(run, stage(photo, options or PreprocessOptions()), force=force)
