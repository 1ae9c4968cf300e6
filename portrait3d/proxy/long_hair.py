"""Hair that hangs below the jaw: how long the photo shows it, and the hair volume's fall down to there.

The hair volume of :mod:`portrait3d.proxy.shape` is fitted to the photo's outline above the chin, and below the
head's widest point it slopes into the nape (:func:`portrait3d.proxy.shape._drape`): every head's hair ends at the
neck, a bob. Where the photo shows hair hanging beside the neck below the chin, the fall goes on: in each meridian
beside and behind the head the volume drops straight down from the head's widest point to the length the photo
shows (or to the neck's cut when the hair runs out of the photo's frame). The neck in front stays bare.
"""

from __future__ import annotations

import numpy as np

from portrait3d.proxy.face_regions import smoothstep
from portrait3d.proxy.template import CRANIUM_CENTRE, NECK_BOTTOM

LONG_BELOW = -0.19
"""Model height (the chin is at -0.15, the neck's cut at :data:`NECK_BOTTOM`) above which hair seen beside the neck
does not count as hanging: a bob's ends, a beard's sides, the collar's shadow."""
NECK_HALF_WIDTH = 0.085
"""Half-width (model units) of the band down the middle of the photo below the chin left out of the measure: the
neck, and a beard or a collar in front of it."""
HAIR_RUN = 0.02
"""Hair a row must show beside the neck on a side (model units across) to count as hanging hair there."""
ROWS_COVERED = 0.8
"""Share of the rows from the chin down to the hair's end that must show it (a gap of a few rows between strands
does not end the hair)."""
ABOVE_CHIN = 0.03
"""Height (model units) of the band just above the chin where a side's hair must come down beside the neck."""
HAIR_COLOUR_DISTANCE = 22.0
"""Largest distance (OpenCV 8-bit Lab) from the hair's colour above the chin of a pixel that continues it below."""
LOWEST = NECK_BOTTOM + 0.03
"""Lowest end of the hanging hair (model units): just above the neck's flat cut, which the mesh closes."""
FRONT_AZIMUTH = (60.0, 100.0)
"""Azimuths (degrees from straight ahead) over which the fall comes in beside the neck, and fully from (from 45 the
fall's front covered the jaw's corner seen at 30 degrees and took the photo's earring on it)."""
MAX_TURN = 40.0
"""Largest turn (degrees of the photo's yaw) at which the photo shows both sides of the neck. Beyond it the side
behind the neck is the nape, where short hair reaches the chin's height and a dark collar continues it (skimage's
camera(), a profile): nothing is measured."""


def hanging_lengths(photo: np.ndarray, segmentation, frame) -> tuple[float | None, float | None]:
    """How far down the photo shows hair hanging beside the neck, on the subject's right (-x) and left (+x).

    The photo's hair class ends at the chin (:func:`portrait3d.preprocess.hair.split_head`; below it a collar or a
    dark coat looks like hair). So a side counts only where its hair comes down to the chin beside the neck, and
    below the chin the hair is followed by its colour: pixels of the person beside the neck within
    :data:`HAIR_COLOUR_DISTANCE` of the median colour of the hair just above the chin on that side.

    Args:
        photo: (S, S, 3) uint8 RGB aligned photo.
        segmentation: the photo's :class:`portrait3d.preprocess.hair.HeadSegmentation`.
        frame: the shape's template-to-world frame (``centre_px``, ``down``, ``right``, ``depth``, ``focal_px``,
            ``k``, ``b`` and ``to_world``, as :func:`portrait3d.proxy.shape._frame` makes it).
    Returns:
        ``(right, left)``: the model height of the hair's lowest end on each side (:data:`LOWEST` where it runs
        out of the frame), or None where the photo shows none hanging below :data:`LONG_BELOW` (both None for a
        photo turned past :data:`MAX_TURN`).
    """
    import cv2

    size = segmentation.hair.shape[0]
    # The camera's right axis is level (the crop has no roll): its angle to the world's x axis is the photo's turn.
    if np.degrees(np.arccos(np.clip(abs(frame.right[0]), 0.0, 1.0))) > MAX_TURN:
        return None, None
    px_per_model = frame.focal_px * frame.k / frame.depth
    chin = int(np.clip(np.ceil(segmentation.chin_row), 0, size))
    if chin >= size - 2:
        return None, None
    lab = cv2.cvtColor(np.ascontiguousarray(photo), cv2.COLOR_RGB2LAB).astype(np.float32)
    columns = np.arange(size) + 0.5 - frame.centre_px[0]
    run_px = HAIR_RUN * px_per_model
    above = slice(max(0, chin - int(round(ABOVE_CHIN * px_per_model))), chin)
    lengths = []
    # Image right is the camera's right; in world x it is the subject's left when the camera faces the face.
    for image_side in (-1.0, 1.0) if frame.right[0] >= 0 else (1.0, -1.0):
        beside = image_side * columns > NECK_HALF_WIDTH * px_per_model
        hair_above = segmentation.hair[above] & beside
        if not hair_above.any() or np.mean(hair_above.sum(axis=1) >= run_px) < ROWS_COVERED:
            lengths.append(None)
            continue
        colour = np.median(lab[above][hair_above], axis=0)
        close = np.linalg.norm(lab[chin:] - colour, axis=-1) < HAIR_COLOUR_DISTANCE
        shows = (close & segmentation.person[chin:] & beside).sum(axis=1) >= run_px
        covered = np.cumsum(shows) / np.arange(1, len(shows) + 1)
        ends = np.nonzero(shows & (covered >= ROWS_COVERED))[0]
        if len(ends) == 0:
            lengths.append(None)
            continue
        end = int(ends.max())
        if end >= len(shows) - 2:
            lengths.append(LOWEST)
            continue
        drop_px = chin + end + 0.5 - frame.centre_px[1]
        world = frame.to_world(CRANIUM_CENTRE) + frame.down * drop_px * frame.depth / frame.focal_px
        height = max(float((world[1] - frame.b[1]) / frame.k), LOWEST)
        lengths.append(height if height < LONG_BELOW else None)
    return lengths[0], lengths[1]


def meridian_lengths(lengths: tuple[float | None, float | None], directions: np.ndarray) -> np.ndarray | None:
    """Each meridian's hanging length, from :func:`hanging_lengths`' two sides (the subject's right for x < 0).

    A side the photo shows nothing hanging on takes the other side's length (the head is symmetric where the photo
    says nothing: a long fall on one side and a bob on the other is rarer than a side the photo cannot read, a
    hat's brim or a dark wall beside the hair).

    Args:
        lengths: ``(right, left)`` model heights or None.
        directions: (N_LAT, N_LON, 3) the shape's direction grid.
    Returns:
        (N_LON,) model height of the fall's end per meridian, or None when no side hangs.
    """
    known = [length for length in lengths if length is not None]
    if not known:
        return None
    right, left = (length if length is not None else min(known) for length in lengths)
    x = directions[0, :, 0]
    return np.where(x < 0, right, left)


def fall_weight(directions: np.ndarray) -> np.ndarray:
    """How much each meridian's hair falls below the jaw: (N_LAT, N_LON, 3) -> (N_LON,) in [0, 1], 0 in front of
    :data:`FRONT_AZIMUTH`'s first angle (the neck and the throat), 1 from its second round the back."""
    meridian = directions[directions.shape[0] // 2]
    azimuth = np.degrees(np.abs(np.arctan2(meridian[:, 0], meridian[:, 2])))
    return smoothstep((azimuth - FRONT_AZIMUTH[0]) / (FRONT_AZIMUTH[1] - FRONT_AZIMUTH[0]))


def hang(radius: np.ndarray, lengths: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hair volume's radius map with the hair falling straight down from the head's widest point.

    In each meridian's plane, below the widest point (the largest horizontal reach of ``radius`` between 60
    degrees below and 30 above the cranium's centre) the outline is raised, by ``weight``, to the vertical line
    under that point down to the meridian's length, and from there to the flat end at that height, inward to the
    neck: the fall is solid down to its end (no hollow between the hair and the neck, whose inside a
    longitude/latitude texture could not tell from the hair's outside).

    Args:
        radius: (N_LAT, N_LON) outer radius of the hair volume about the cranium's centre (model units).
        lengths: (N_LON,) model height of the fall's end per meridian.
        weight: (N_LON,) how much each meridian falls (:func:`fall_weight`).
    Returns:
        ``(radius, lifted)``: the new radius map and where it was raised (bool).
    """
    n_lat = radius.shape[0]
    lat = np.radians(-90 + (np.arange(n_lat) + 0.5) * 180 / n_lat)
    out = radius.copy()
    lifted = np.zeros(radius.shape, bool)
    rows = np.nonzero((lat > np.radians(-60.0)) & (lat < np.radians(30.0)))[0]
    for j in np.nonzero(weight > 1e-3)[0]:
        widest = rows[np.argmax(radius[rows, j] * np.cos(lat[rows]))]
        reach = radius[widest, j] * np.cos(lat[widest])
        drop = lengths[j] - CRANIUM_CENTRE[1]
        corner = np.arctan2(drop, reach)
        below = lat < lat[widest]
        # Down the vertical line to the corner, then along the flat end inward, until it meets the neck.
        target = np.where(lat[below] >= corner, reach / np.cos(lat[below]), drop / np.sin(lat[below]))
        lift = weight[j] * np.maximum(target - radius[below, j], 0.0)
        out[below, j] += lift
        lifted[below, j] = lift > 1e-5
    return out, lifted


def hanging_directions(directions: np.ndarray, lengths: np.ndarray, weight: np.ndarray, reach: float) -> np.ndarray:
    """Where the fall's surface lies, as a (N_LAT, N_LON) share of hair on the direction grid: the meridians that
    fall, from the equator down to where a fall ``reach`` (model units) from the centre ends."""
    lat = np.arcsin(np.clip(directions[..., 1], -1.0, 1.0))
    lowest = np.arctan2(lengths - CRANIUM_CENTRE[1], reach)
    return weight[None, :] * ((lat < 0.0) & (lat >= lowest[None, :]))
