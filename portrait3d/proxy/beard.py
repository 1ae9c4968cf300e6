"""A beard in the photo, and how far the head's unseen jaw takes it.

The hair/skin split (:mod:`portrait3d.preprocess.hair`) calls a beard skin: it grows inside the face's oval, and
its colour is near the skin's. The bake's fill then spread it as skin, fading into the skin's overall colour within
a few centimetres of what the photo shows: a bearded man's jaw, seen from 60-90 degrees, had the photo's beard up to
the outline, then bare grey skin on to the ear. Here the photo's beard is found (:func:`beard_pixels`: the lower
face's pixels both darker and rougher than the cheeks, as stubble and hair are) and becomes a class of its own when
it covers enough of the lower face; the bake (:func:`portrait3d.proxy.texture.bake_texture`) carries it on round the
unseen jaw in its own colour and strands (:func:`beard_target`).
"""

from __future__ import annotations

import numpy as np

from portrait3d.preprocess.hair import FACE_OVAL, roughness
from portrait3d.proxy.face_regions import FACE_FEATURES, feature_hulls, smoothstep
from portrait3d.proxy.pull_push import distance_to_known, low_frequency

BEARD_DARKER = 10.0
"""A beard's pixel is at least this much darker (CIELAB lightness) than the median of the cheeks'."""
BEARD_ROUGHER = 2.0
"""A beard's pixel is more than this many times as rough as the cheeks' median (roughness: the standard deviation of
the lightness over 7 x 7 pixels; hair has strands, and shade on skin is smooth)."""
BEARD_SHARE = (0.4, 0.6)
"""Share of the lower face (below the nose, lips and nostrils left out) that must be beard for the face to have one,
and fully from. Measured on the eval photos: the bearded man 0.83, the fifteen others 0.18 at most (jaw shade on
the child, the painted faces; darkness alone read 0.45-0.51 on five of them); Lee Perry-Smith's scan photographed
from 0-55 degrees 0.19-0.24, the bust 0.13, skimage's camera() 0.14."""
BEARD_REACH = 0.1
"""How far (texture widths) past the photo's beard the unseen texels take it: an exponential fall-off of this length
(the jaw's side, from a frontal photo's outline to the ear, lies about 0.05-0.1 away)."""
BEARD_LOCAL = 0.3
"""Local share of beard among the seen texels (spread at low frequency) from which the unseen texels take it fully."""

NOSE = (98, 97, 2, 326, 327, 4, 5, 195, 197, 6, 168, 129, 358)
"""Face-mesh landmarks of the nose's bridge, tip and base: left out of the cheeks the beard is compared with."""


def beard_pixels(photo_rgb: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
    """(S, S) in [0, 1]: the photo's beard, or all 0 where the face has none (:data:`BEARD_SHARE`).

    Args:
        photo_rgb: (S, S, 3) the aligned photo, floats in [0, 1].
        landmarks: (468+, 2+) face-mesh landmarks in photo pixels, or None.
    Returns:
        The lower face's pixels (inside the face's oval, below the nose's base, lips and nostrils left out) at least
        :data:`BEARD_DARKER` darker and :data:`BEARD_ROUGHER` times rougher than the cheeks (between the eyes and the
        nose's base, the nose left out), closed over a few pixels, times how surely the face has a beard.
    """
    import cv2

    from portrait3d.proxy.photo_regions import rgb_to_lab

    size = photo_rgb.shape[0]
    none = np.zeros((size, size), np.float32)
    if landmarks is None or len(landmarks) < 468:
        return none
    points = np.asarray(landmarks, dtype=np.float64)[:, :2]
    if not np.all(np.isfinite(points[list(FACE_OVAL) + [2, 145, 374]])):
        return none
    oval = np.zeros((size, size), np.uint8)
    cv2.fillPoly(oval, [np.round(points[list(FACE_OVAL)]).astype(np.int32)], 1)
    rows = np.broadcast_to(np.arange(size)[:, None], (size, size))
    nose_base, eyes = points[2, 1], max(points[145, 1], points[374, 1])
    lips = feature_hulls(points, [FACE_FEATURES["lips"]], size, max(2, size // 60))
    nostrils = feature_hulls(points, [FACE_FEATURES["nostrils"]], size, max(2, size // 100))
    lower = (oval > 0) & (rows > nose_base) & ~lips & ~nostrils
    nose = feature_hulls(points, [FACE_FEATURES["nostrils"], NOSE], size, size // 50)
    cheeks = (oval > 0) & (rows > eyes + 0.2 * (nose_base - eyes)) & (rows < nose_base) & ~nose
    if lower.sum() < 50 or cheeks.sum() < 50:
        return none
    lightness = rgb_to_lab(np.clip(photo_rgb, 0.0, 1.0))[..., 0]
    rough = roughness(lightness)
    beard = (
        lower
        & (lightness < np.median(lightness[cheeks]) - BEARD_DARKER)
        & (rough > BEARD_ROUGHER * max(float(np.median(rough[cheeks])), 1.0))
    )
    beard = cv2.morphologyEx(beard.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)).astype(bool) & lower
    share = smoothstep(np.asarray((beard.sum() / lower.sum() - BEARD_SHARE[0]) / (BEARD_SHARE[1] - BEARD_SHARE[0])))
    return float(share) * beard.astype(np.float32)


def beard_target(seen_beard: np.ndarray, confident: np.ndarray) -> np.ndarray:
    """How much each texel's fill is beard: (Ht, Wt) beard share of the seen colour, (Ht, Wt) its confidence ->
    (Ht, Wt) in [0, 1]: the local share of beard among the seen texels (:data:`BEARD_LOCAL`), fading with the
    distance from the seen beard (:data:`BEARD_REACH`)."""
    weight = confident * seen_beard
    near = np.exp(-distance_to_known(weight) / BEARD_REACH)
    local = low_frequency(seen_beard[..., None], confident)[..., 0]
    return near * smoothstep(local / BEARD_LOCAL)
