"""Regions of the face that the face-mesh landmarks name, in the photo: the features (eyes, brows, lips, nostrils),
their convex hulls, which of a turned face's eyes is the far one; and the smooth ramp the bake's weights use."""

from __future__ import annotations

import numpy as np


def smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, a smooth cubic between (elementwise)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


FACE_FEATURES = {
    "right_eye": (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
    "left_eye": (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466),
    "right_brow": (70, 63, 105, 66, 107, 55, 65, 52, 53, 46),
    "left_brow": (300, 293, 334, 296, 336, 285, 295, 282, 283, 276),
    "lips": (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185),
    "nostrils": (48, 64, 98, 97, 2, 326, 327, 294, 278),
}
"""Face-mesh landmarks around the features whose colours are not skin (their convex hulls are trusted)."""


def feature_hulls(points: np.ndarray, groups, size: int, grow: int) -> np.ndarray:
    """(S, S) bool: the convex hulls of landmark groups (an iterable of index tuples, as ``FACE_FEATURES``'s
    values), grown by ``grow`` pixels; a group with a missing landmark is left out. ``points``: (N, 2) pixels."""
    import cv2

    out = np.zeros((size, size), np.uint8)
    for indices in groups:
        p = points[list(indices)]
        if np.all(np.isfinite(p)):
            cv2.fillConvexPoly(out, cv2.convexHull(np.round(p).astype(np.int32)), 1)
    out = cv2.dilate(out, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    return out.astype(bool)


OUTER_CORNER = {"right": 33, "left": 263}
"""The face-mesh landmark of each eye's outer corner."""


def far_side(points: np.ndarray) -> str | None:
    """Which of a turned face's eyes is the far one, ``"right"`` or ``"left"`` (the one nearer the nose tip across
    the photo: the nose points to the far side), from (468+, 2) landmark pixels; None without a nose tip."""
    nose = points[4]
    if not np.all(np.isfinite(nose)):
        return None
    sides = ("right", "left")
    centres = [points[list(FACE_FEATURES[f"{side}_eye"])].mean(0) for side in sides]
    return sides[int(np.argmin([abs(c[0] - nose[0]) for c in centres]))]
