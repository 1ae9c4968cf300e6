"""Is the person mask a head's shape? And a head outline from the face landmarks, for when it is not.

The person segmenter sometimes takes the whole frame for the person: in a dark,
blurred photo it returned all of the photo (a tilted rectangle, the photo's own
edge inside the crop), and the hair volume fitted to that outline was a wide
blob. A portrait's background shows somewhere; a mask that leaves none of it is
replaced by a head outline built from the face's landmarks.
"""

from __future__ import annotations

import cv2
import numpy as np

WHOLE_FRAME = 0.97
"""A person mask that covers more than this share of the photo inside the crop took the whole frame for the
person. Measured: 0.986 on a dark, blurred low-light photo; at most 0.947 (voluminous curls filling the
frame) on 18 other real, painted and rendered portraits."""


def frame_share(mask: np.ndarray, inside: np.ndarray | None = None) -> float:
    """Share of the photo inside the crop that the person mask covers.

    Args:
        mask: (S, S) person mask (uint8 0/255 or bool).
        inside: (S, S) where the crop shows the photo (float in [0, 1] or bool), or None: everywhere.
    """
    person = np.asarray(mask) > 127 if np.asarray(mask).dtype == np.uint8 else np.asarray(mask, dtype=bool)
    seen = np.ones(person.shape, bool) if inside is None else np.asarray(inside, dtype=np.float64) > 0.5
    return float((person & seen).sum() / max(1, seen.sum()))


def implausible(mask: np.ndarray, inside: np.ndarray | None = None) -> bool:
    """True when the person mask is not a head's: it covers (nearly) all of the photo."""
    return frame_share(mask, inside) > WHOLE_FRAME


def landmark_head_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """A head-and-neck mask from the face-mesh landmarks: (S, S) uint8 in {0, 255}.

    The face oval, a cranium ellipse above it as wide as an average head with short hair (1.2 face widths,
    its top 0.75 face heights above the brows) and a neck down to the frame's bottom.

    Args:
        landmarks: (468+, 2+) face-mesh landmarks in crop pixels.
        size: side of the crop.
    """
    from portrait3d.preprocess.hair import BROWS, CHIN, FACE_OVAL

    points = np.asarray(landmarks, dtype=np.float64)[:, :2]
    oval = points[list(FACE_OVAL)]
    width = float(np.ptp(oval[:, 0]))
    brow = float(points[list(BROWS), 1].min())
    chin = points[CHIN]
    centre_x = float(oval[:, 0].mean())
    height = float(chin[1] - brow)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(oval).astype(np.int32)), 255)
    axes = (int(round(0.6 * width)), int(round(0.75 * height + 0.1 * width)))
    cv2.ellipse(mask, (int(round(centre_x)), int(round(brow + 0.1 * width))), axes, 0.0, 0, 360, 255, -1)
    neck = 0.3 * width
    top = int(round(chin[1] - 0.3 * height))
    cv2.rectangle(mask, (int(round(chin[0] - neck)), top), (int(round(chin[0] + neck)), size - 1), 255, -1)
    return mask
