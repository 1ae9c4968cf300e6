"""Bare ears moved onto the ears the photo shows.

The template's pinnae sit at a fixed place about the fitted head (:data:`portrait3d.proxy.ear_shape.EAR_CENTRE`),
not where the photo shows them: on the eval photos with bare ears, 27-66 % of the pinna's squarely seen texels
projected outside the photo's head (onto the background beside the ear), took no photo and were filled a flat
skin tone. :func:`ear_shifts` finds, per seen ear, the image-plane shift that puts the pinna's projection on the
photo's skin beside the face (:func:`photo_ear_region`); :func:`move_ears` moves each pinna, its root and the skin
around it by that shift, back-projected at the ear's depth. The two ears move as a mirrored pair (the mean of the
two when both are seen, the seen one's mirrored onto the other), so that the head's mid-plane, which the texture
mirrors across, stays where it was: moved one by one, the ears shifted it and the mirrored face with it
(`elderly_man_white_hair`'s identity at +30 degrees 0.472 -> 0.543).
"""

from __future__ import annotations

import numpy as np

from portrait3d.cameras import Camera
from portrait3d.proxy.face_regions import smoothstep
from portrait3d.proxy.layout import PINNA_VERTEX
from portrait3d.proxy.photo_regions import face_hull

SHIFT_REACH = 0.06
"""Largest image-plane shift searched, as a share of the photo's side (31 px at 512; the eval photos' bare ears
needed up to 28)."""
SHIFT_STEP = 0.008
"""Step of the search (4 px at 512)."""
SHIFT_COST = 0.4
"""Overlap given up per photo side of shift (0.002 per pixel at 512): of two shifts nearly as good, the shorter."""
MIN_GAIN = 0.05
"""Least gain in the share of the pinna's projection on the photo's ear for an ear to move."""
MIN_SHARE = 0.3
"""Least share of the moved pinna's projection on the photo's ear: below it the photo shows no ear there (a
statue's wreath, hair the split calls skin) and the pinna stays."""
FACING = 0.3
"""Pinna vertices whose normal faces the camera at least this much (cosine) are the ones the photo shows."""
MOVE_FULL = 1.0
"""Multiples of the pinna's half-height within which a vertex takes its ear's whole move; the move then fades out
over the larger of one half-height and :data:`~portrait3d.proxy.face_depth.FADE_PER_MOVE` moves (no fold)."""


def photo_ear_region(skin: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
    """(S, S) bool: the photo's bare skin off the face: the split's skin less the landmarks' hull, grown by 2 %
    of the photo (where an ear shows, and little else at ear height)."""
    import cv2

    region = np.asarray(skin, dtype=bool).copy()
    if landmarks is not None:
        size = region.shape[0]
        hull = face_hull(landmarks, size, np.zeros((0, 2))).astype(np.uint8)
        grow = max(1, int(round(0.02 * size)))
        hull = cv2.dilate(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
        region &= hull == 0
    return region


def image_shift(pixels: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The image-plane shift (2,) pixels that puts the most of ``pixels`` (N, 2) inside ``region`` (S, S), less
    :data:`SHIFT_COST` per pixel; with the share inside before and after."""
    size = region.shape[0]

    def share(offset) -> float:
        xy = np.floor(pixels + offset).astype(int)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < size) & (xy[:, 1] >= 0) & (xy[:, 1] < size)
        xy = np.clip(xy, 0, size - 1)
        return float((region[xy[:, 1], xy[:, 0]] & inside).mean())

    reach, step = SHIFT_REACH * size, max(1.0, SHIFT_STEP * size)
    steps = np.arange(-reach, reach + 0.5 * step, step)
    before = share((0.0, 0.0))
    best, best_score = np.zeros(2), before
    for dx in steps:
        for dy in steps:
            score = share((dx, dy)) - SHIFT_COST / size * float(np.hypot(dx, dy))
            if score > best_score:
                best, best_score = np.array([dx, dy]), score
    return best, before, share(best)


def ear_shifts(
    vertices: np.ndarray, normals: np.ndarray, pinna: np.ndarray, camera: Camera, region: np.ndarray
) -> dict[float, np.ndarray]:
    """{side: (3,) world move} for each bare ear (side -1: the subject's right, by the sign of world x).

    A pinna the photo shows squarely (:data:`FACING`) moves by the shift of :func:`image_shift`, at its depth,
    where that gains :data:`MIN_GAIN` and lands :data:`MIN_SHARE` on the photo's ear. The ears move as a mirrored
    pair: both seen, each takes the mean of its move and the other's mirrored (an ear that stays counts as a
    move of zero); one seen, the other takes its move mirrored. Args: (V, 3) vertices and unit normals, (V,)
    pinna weight, the photo's camera, (S, S) region.
    """
    size = region.shape[0]
    on = np.asarray(pinna) >= PINNA_VERTEX
    to_camera = camera.position - vertices
    to_camera /= np.maximum(np.linalg.norm(to_camera, axis=1, keepdims=True), 1e-12)
    seen = on & (np.sum(normals * to_camera, axis=1) > FACING)
    moves: dict[float, np.ndarray] = {}
    shown = []
    for side in (-1.0, 1.0):
        own = seen & (np.sign(vertices[:, 0]) == side)
        if own.sum() < 20:
            continue
        shown.append(side)
        pixels, depth = camera.project(vertices[own], size, size)
        shift, before, after = image_shift(pixels, region)
        if after - before < MIN_GAIN or after < MIN_SHARE:
            continue
        focal = camera.intrinsics[0, 0] * size
        right, down = camera.cam2world[:3, 0], camera.cam2world[:3, 1]
        moves[side] = (shift[0] * right + shift[1] * down) * float(np.median(depth)) / focal
    flip = np.array([-1.0, 1.0, 1.0])
    if len(shown) == 2 and moves:
        # Both ears seen: one symmetric move (the mean of each and the other's mirrored), so the head's mid-plane,
        # which the texture mirrors across, stays where it is.
        left, right = moves.get(1.0, np.zeros(3)), moves.get(-1.0, np.zeros(3))
        mean = (left + right * flip) / 2.0
        return {1.0: mean, -1.0: mean * flip}
    for side in (-1.0, 1.0):
        has_pinna = (on & (np.sign(vertices[:, 0]) == side)).any()
        if side not in shown and -side in moves and has_pinna:
            moves[side] = moves[-side] * flip
    return moves


def move_ears(vertices: np.ndarray, pinna: np.ndarray, moves: dict[float, np.ndarray]) -> np.ndarray:
    """``vertices`` (V, 3) with each ear's pinna, root and the skin around it moved by its ear's move: (V, 3).

    The move is whole within :data:`MOVE_FULL` half-heights of the pinna's centre and fades out beyond, over
    at least :data:`~portrait3d.proxy.face_depth.FADE_PER_MOVE` times the move, so that it cannot fold the surface.
    """
    from portrait3d.proxy.face_depth import FADE_PER_MOVE

    out = np.array(vertices, dtype=np.float64)
    on = np.asarray(pinna) >= PINNA_VERTEX
    for side, move in moves.items():
        own = on & (np.sign(vertices[:, 0]) == side)
        if not own.any():
            continue
        centre = vertices[own].mean(0)
        half_height = max(float(np.ptp(vertices[own, 1])) / 2.0, 1e-6)
        fade = max(half_height, FADE_PER_MOVE * float(np.linalg.norm(move)))
        beyond = np.linalg.norm(vertices - centre, axis=1) - MOVE_FULL * half_height
        weight = smoothstep(1.0 - beyond / fade)
        out += weight[:, None] * np.asarray(move)[None]
    return out
