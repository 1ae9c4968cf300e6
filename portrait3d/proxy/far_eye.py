"""A turned face's far eye in the photo: what the bake must not take from it.

Turned 45 degrees or more, the far eye shows past the nose bridge's outline and is painted over before the bake
(:func:`far_eye_pixels`, grown by :func:`with_dark_edges`, painted by :func:`without_far_eye`); turned less, a
narrow face's far eye can reach the head's outline, and then its texels take the near eye's mirror image
(:func:`far_eye_at_outline`).
"""

from __future__ import annotations

import numpy as np

from portrait3d.cameras import Camera
from portrait3d.proxy.face_regions import FACE_FEATURES, OUTER_CORNER, far_side, feature_hulls, smoothstep
from portrait3d.proxy.photo_regions import rgb_to_lab

FAR_EYE_TURN = (40.0, 50.0)
"""Yaw (degrees) from which the photo's far eye and brow are painted over before the bake, and fully from (see
:func:`far_eye_pixels`); below it the far eye is seen on its own side of the face, and paints it. In the pose's first
reading's degrees (45 and 60 when the estimate was the second reading at every yaw)."""


def far_eye_pixels(landmarks: np.ndarray, camera: Camera, size: int) -> np.ndarray:
    """(S, S) in [0, 1]: the photo's pixels of a turned face's far eye and far brow, lashes included.

    Turned 60 degrees or more, the far eye shows past the nose bridge's outline (its lashes, part of the eye, the
    brow's end), where the head's own bridge and brow project: the bake painted them there as a dark mark on the
    bridge and between the brows. :func:`without_far_eye` paints these pixels over from the skin around them; the
    far eye's own texels take the near eye's mirror image, as they did. Which eye is far: the one nearer the nose
    tip across the photo (the nose points to the far side).
    """
    yaw = abs(camera.angles(target=(0.0, 0.0, 0.0)).yaw)
    share = float(smoothstep(np.asarray((yaw - FAR_EYE_TURN[0]) / (FAR_EYE_TURN[1] - FAR_EYE_TURN[0]))))
    out = np.zeros((size, size), np.float32)
    points = np.asarray(landmarks, dtype=np.float64)
    if share <= 0 or len(points) < 468:
        return out
    points = points[:, :2]
    far = far_side(points)
    if far is None:
        return out
    grow = max(1, int(round(0.016 * size)))  # the lashes stand out of the eye's contour
    hulls = feature_hulls(points, [FACE_FEATURES[f"{far}_eye"], FACE_FEATURES[f"{far}_brow"]], size, grow)
    return share * hulls.astype(np.float32)


DARK_EDGE_REACH = 0.02
"""How far past the far eye's and brow's hull (a share of the photo's side; 10 pixels at 512) the dark pixels next
to it are painted over with it (see :func:`with_dark_edges`)."""
DARK_EDGE_DROP = 12.0
"""How much darker (CIELAB lightness) than the person's pixels around the hull a pixel next to it must be to count
as the far eye's or brow's (see :func:`with_dark_edges`)."""


def with_dark_edges(far_eye: np.ndarray, photo_rgb: np.ndarray, person: np.ndarray | None) -> np.ndarray:
    """``far_eye`` (:func:`far_eye_pixels`, (S, S) in [0, 1]) grown over the dark pixels of the person next to it.

    The hull comes from the face mesh's guess at the hidden eye and brow, which can fall short of what shows: the
    three-quarter woman's far brow (53 degrees) ends past the forehead's outline 4 pixels beyond its grown hull,
    where the bake took it for the glabella, and every frontal view had a dark blot between the brows. Pixels
    within :data:`DARK_EDGE_REACH` of the hull, on the person (``person``: (S, S) foreground in [0, 1], or None)
    and :data:`DARK_EDGE_DROP` darker than the median of the person's pixels there, that touch the hull, join it, and
    so do the cracks a pixel wide that the grown region encloses.
    """
    import cv2

    hull = (far_eye > 0).astype(np.uint8)
    if not hull.any():
        return far_eye
    reach = max(1, int(round(DARK_EDGE_REACH * far_eye.shape[0])))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    around = (cv2.dilate(hull, disc) > 0) & (hull == 0)
    if person is not None:
        around &= np.asarray(person) > 0.5
    if around.sum() < 20:
        return far_eye
    lightness = rgb_to_lab(np.clip(photo_rgb, 0.0, 1.0))[..., 0]
    dark = around & (lightness < np.median(lightness[around]) - DARK_EDGE_DROP)
    _, label = cv2.connectedComponents((dark | (hull > 0)).astype(np.uint8))
    touching = dark & np.isin(label, np.unique(label[hull > 0]))
    grown = (touching | (hull > 0)).astype(np.uint8)
    # Where the hull meets the head's outline, the person's soft edge can leave a crack a pixel wide between the hull
    # and the dark pixels it took: the three-quarter woman's far brow kept a dark line there, which the bake put on
    # the glabella. A closing by the smallest disc paints such cracks with the rest.
    closed = cv2.morphologyEx(grown, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    return np.where((closed > 0) & (hull == 0), far_eye.max(), far_eye).astype(np.float32)


FAR_EYE_OUTLINE = (0.5, 0.25)
"""A turned face's far eye whose outer corner lies within the first of these shares of its own width of the photo's
head outline is seen at the outline, and fully from the second (see :func:`far_eye_at_outline`)."""

FAR_EYE_GROW = 0.03
"""How far (a share of the photo's side) the far eye's texels seen at the outline reach beyond the eye's contour:
its lashes and the liner's wing, and the lit rim they lie over."""


def far_eye_at_outline(landmarks: np.ndarray, head_mask: np.ndarray) -> np.ndarray:
    """(S, S) in [0, 1]: the photo's pixels of a turned face's far eye where it is seen at the head's outline.

    Turned 20-30 degrees, a narrow face's far eye can reach the head's outline in the photo (the couple's photo: its
    outer corner 10 pixels from it, a quarter of the eye's width). Seen that obliquely, the lashes and the liner,
    which stand out of the surface, lie over the temple's lit rim, and the frontal views showed a dark blot beyond
    the eye's corner with a pale patch above it. The bake gives such an eye's texels on the far side of the face's
    mid-plane no photo, so the near eye's mirror image takes them; an eye well inside the outline (all 0 here) keeps
    its own photo.

    Args:
        landmarks: (468+, 2+) face-mesh landmarks in photo pixels.
        head_mask: (S, S) head-and-hair mask of the photo.
    """
    import cv2

    size = head_mask.shape[0]
    out = np.zeros((size, size), np.float32)
    points = np.asarray(landmarks, dtype=np.float64)[:, :2]
    far = far_side(points) if len(points) >= 468 else None
    if far is None:
        return out
    inside = cv2.distanceTransform((np.asarray(head_mask) > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    col, row = np.clip(np.round(points[OUTER_CORNER[far]]).astype(int), 0, size - 1)
    width = max(float(np.ptp(points[list(FACE_FEATURES[f"{far}_eye"]), 0])), 1.0)
    start, full = FAR_EYE_OUTLINE
    share = float(smoothstep(np.asarray((start - inside[row, col] / width) / (start - full))))
    if share <= 0:
        return out
    grow = max(1, int(round(FAR_EYE_GROW * size)))  # the lashes and the liner's wing stand out of the eye's contour
    hull = feature_hulls(points, [FACE_FEATURES[f"{far}_eye"]], size, grow).astype(np.float32)
    return share * cv2.GaussianBlur(hull, (0, 0), 2.0)


OUTLINE_RIM = 0.016
"""Width (a share of the photo's side; 8 pixels at 512) of the band inside the head mask's edge that the far eye is
not painted from (see :func:`without_far_eye`)."""


def without_far_eye(photo_rgb: np.ndarray, far_eye: np.ndarray, head_mask: np.ndarray | None) -> np.ndarray:
    """The photo with a turned face's far eye and brow (:func:`far_eye_pixels`) painted over from the skin around
    them: (S, S, 3) floats in [0, 1].

    The background around is masked too, and so is the head's rim (:data:`OUTLINE_RIM`): only the head's own colours
    flow in. A far eye at the head's outline (the three-quarter woman's, at 53 degrees) was painted from the rim,
    where the background and a dark strand of hair blend in, and the grey patch it left on the nasion was a blob
    on the nose bridge of every frontal view (its identity distances 0.502 / 0.457 / 0.450 at 0 / -30 / +30
    degrees; painted from inside the rim 0.486 / 0.438 / 0.417).
    """
    import cv2

    if not (far_eye > 0).any():
        return photo_rgb
    hole = far_eye > 0
    if head_mask is not None:
        rim = max(1, int(round(OUTLINE_RIM * photo_rgb.shape[0])))
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim + 1, 2 * rim + 1))
        hole |= cv2.erode((np.asarray(head_mask) > 0.5).astype(np.uint8), disc) == 0
    image = np.round(np.clip(photo_rgb, 0, 1) * 255).astype(np.uint8)
    filled = cv2.inpaint(image, hole.astype(np.uint8), max(3, photo_rgb.shape[0] // 100), cv2.INPAINT_TELEA)
    share = far_eye[..., None]
    return (1 - share) * photo_rgb + share * (filled.astype(np.float64) / 255.0)
