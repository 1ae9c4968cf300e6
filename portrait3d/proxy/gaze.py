"""The near eye's gaze, kept where its mirror image paints the far eye.

A turned face's far eye often takes the near eye's mirror image (:mod:`portrait3d.proxy.far_eye`). A mirror flips
the gaze too: someone turned 25 degrees who looks into the lens has both irises towards the camera's side of their
eyes, and the mirrored far eye then looks the other way, so the frontal views stared wall-eyed (the couple's photo)
or cross-eyed. :func:`gaze_kept_for_mirror` gives the bake a copy of the photo whose near eye has its iris moved to
the mirrored place inside the same lids; the mirror image of that copy puts the iris back on the gaze's side, while
the lids, lashes and corners stay the mirror of the near eye's.
"""

from __future__ import annotations

import numpy as np

from portrait3d.proxy.face_regions import FACE_FEATURES, OUTER_CORNER, far_side, smoothstep
from portrait3d.proxy.photo_regions import rgb_to_lab

INNER_CORNER = {"right": 133, "left": 362}
"""The face-mesh landmark of each eye's inner corner (by the nose)."""

IRIS_SHARE = 0.42
"""The iris's width as a share of the eye's opening, corner to corner (about 11.7 of 28 mm)."""

MIN_EYE_PIXELS = 8.0
"""An eye narrower than this (pixels, corner to corner) is too small to find its iris in."""

MIN_IRIS_CONTRAST = 15.0
"""CIELAB lightness between the opening's bright (sclera) and dark (iris) tenth below which no iris is found (a
closed or blurred eye)."""

MIN_GAZE_SHIFT = 0.03
"""An iris within this share of the opening's width of its middle is left where it is."""

MOVE_FEATHER = 0.05
"""Share of the opening's width over which the moved stretches (the iris's and its new place's, each an iris wide)
blend into the photo's opening."""


def _eye_frame(points: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(inner, along, across, width)``: the inner corner (2,), the unit vectors along the eye (towards its outer
    corner) and across it, and the corner-to-corner width in pixels."""
    inner = points[INNER_CORNER[side]]
    axis = points[OUTER_CORNER[side]] - inner
    width = float(np.linalg.norm(axis))
    along = axis / max(width, 1e-9)
    return inner, along, np.array([-along[1], along[0]]), width


def _opening(points: np.ndarray, side: str, size: int) -> np.ndarray:
    """(S, S) float32 in {0, 1}: the eye's opening between its lids (the contour's polygon)."""
    import cv2

    out = np.zeros((size, size), np.uint8)
    ring = np.round(points[list(FACE_FEATURES[f"{side}_eye"])]).astype(np.int32)
    cv2.fillPoly(out, [ring], 1)
    return out.astype(np.float32)


def iris_position(photo_rgb: np.ndarray, landmarks: np.ndarray, side: str) -> float | None:
    """Where the iris lies along an eye's opening: 0 at the inner corner, 1 at the outer corner.

    The darkest stretch of the opening one iris wide (:data:`IRIS_SHARE`), the darkness measured between the
    opening's bright and dark tenth of lightness. None where the eye is too small or shows no dark iris against a
    bright sclera (closed, blurred, dark all through).

    Args:
        photo_rgb: (S, S, 3) float photo in [0, 1].
        landmarks: (468+, 2+) face-mesh landmarks in photo pixels.
        side: ``"right"`` or ``"left"`` (the subject's).
    """
    points = np.asarray(landmarks, dtype=np.float64)[:, :2]
    inner, along, _, width = _eye_frame(points, side)
    if width < MIN_EYE_PIXELS:
        return None
    rows, cols = np.nonzero(_opening(points, side, photo_rgb.shape[0]))
    if len(rows) < 20:
        return None
    lightness = rgb_to_lab(np.clip(photo_rgb[rows, cols], 0.0, 1.0)[None])[0, :, 0]
    dark, bright = np.percentile(lightness, [10, 90])
    if bright - dark < MIN_IRIS_CONTRAST:
        return None
    darkness = np.clip((bright - lightness) / (bright - dark), 0.0, 1.0)
    u = ((np.stack([cols, rows], axis=1) - inner) @ along) / width
    bins = 64
    profile = np.bincount(np.clip((u * bins).astype(int), 0, bins - 1), darkness, bins)
    half = int(round(IRIS_SHARE * bins / 2))
    window = np.convolve(profile, np.ones(2 * half + 1), mode="same")
    window[:half] = window[-half:] = -1.0  # an iris's middle lies at least its half-width from either corner
    return (int(np.argmax(window)) + 0.5) / bins


def gaze_kept_for_mirror(photo_rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The photo with the near eye's iris at its mirrored place in the opening, for the far eye's mirror image.

    The near eye is the one :func:`portrait3d.proxy.face_regions.far_side` does not name. Inside its opening, the
    iris's stretch and the stretch it moves to take the opening's reflection across the eye's middle (the iris and
    the sclera beside it change places; each keeps its lids' shading); the corners and everything outside the
    opening are the photo's. Returns ``photo_rgb`` itself where nothing moves (no iris found, an iris in the middle).

    Args:
        photo_rgb: (S, S, 3) float photo in [0, 1].
        landmarks: (468+, 2+) face-mesh landmarks in photo pixels.
    """
    import cv2

    points = np.asarray(landmarks, dtype=np.float64)
    if len(points) < 468 or not np.all(np.isfinite(points[:468, :2])):
        return photo_rgb
    points = points[:, :2]
    far = far_side(points)
    if far is None:
        return photo_rgb
    near = "left" if far == "right" else "right"
    position = iris_position(photo_rgb, points, near)
    if position is None or abs(position - 0.5) < MIN_GAZE_SHIFT:
        return photo_rgb
    size = photo_rgb.shape[0]
    inner, along, across, width = _eye_frame(points, near)
    cols, rows = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    offset = np.stack([cols, rows], axis=-1) - inner
    u = (offset @ along) / width
    v = offset @ across
    # The reflection across the eye's middle: the point at 1 - u along the eye, as far across it.
    source = inner + ((1.0 - u) * width)[..., None] * along + v[..., None] * across
    map_x, map_y = source[..., 0].astype(np.float32), source[..., 1].astype(np.float32)
    reflected = cv2.remap(photo_rgb.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    opening = cv2.GaussianBlur(_opening(points, near, size), (0, 0), 0.7)
    inside_both = opening * cv2.remap(opening, map_x, map_y, cv2.INTER_LINEAR)
    reach = IRIS_SHARE / 2 + MOVE_FEATHER
    moved = np.maximum(
        smoothstep((reach - np.abs(u - position)) / MOVE_FEATHER),
        smoothstep((reach - np.abs(u - (1.0 - position))) / MOVE_FEATHER),
    )
    share = (moved * inside_both)[..., None]
    return (1.0 - share) * photo_rgb + share * reflected
