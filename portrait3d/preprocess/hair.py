"""Hair and skin of the aligned photo, from the person mask, the face landmarks and colour (no model).

The face oval of the 468-point face mesh bounds the face; the skin colour is
read inside it (cheeks and nose, away from eyes, brows and mouth) as a robust
Gaussian in CIE Lab. Inside the person mask and above the chin, a pixel is
hair when its colour is far from the skin's, except in the inner face (below
the brows inside the oval: eyes, brows and lips are not hair). Beside the face
at the ears' height an ear's folds and shadow fail the skin test's roughness and
lightness cuts: there a pixel of the skin's colour that is nearer it than the
crown hair's colour is skin. What is left is skin: face, ears, neck, a bald scalp.
Without landmarks the split falls back to the upper part of the mask outside a
centred face ellipse. A head whose crown (above the face oval) is mostly skin is
bald: its split has no hair at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
"""Face-mesh indices of the face's outline, in order around it."""
BROWS = (70, 63, 105, 66, 107, 300, 293, 334, 296, 336)
"""Face-mesh indices of the upper edge of both eyebrows."""
CHIN = 152
MOUTH = (61, 291)
"""Face-mesh indices of the mouth corners."""


@dataclass
class HeadSegmentation:
    """Where the photo shows the head, its hair and its skin; arrays are (S, S) bool.

    Attributes:
        person: the person mask (head, hair, neck, shoulders).
        head: the person above the chin row (what the head's silhouette is compared with).
        hair: hair pixels (a subset of ``head``).
        skin: head pixels that are not hair (face, ears, a bald scalp).
        chin_row: image row of the chin (pixels, float).
        skin_lab: (3,) median skin colour in OpenCV's 8-bit Lab.
    """

    person: np.ndarray
    head: np.ndarray
    hair: np.ndarray
    skin: np.ndarray
    chin_row: float
    skin_lab: np.ndarray

    @property
    def neck(self) -> np.ndarray:
        """The person below the chin row (neck, shoulders): (S, S) bool."""
        rows = np.arange(self.person.shape[0])[:, None]
        return self.person & (rows >= self.chin_row)


def roughness(lightness: np.ndarray) -> np.ndarray:
    """Local contrast: the standard deviation of ``lightness`` (S, S) over 7 x 7 pixels, (S, S) float32. Hair and
    stubble have strands; skin, lit or in shade, is smooth."""
    lightness = np.asarray(lightness, dtype=np.float32)
    mean = cv2.blur(lightness, (7, 7))
    return np.sqrt(np.maximum(cv2.blur(lightness * lightness, (7, 7)) - mean * mean, 0.0))


def split_head(
    photo: np.ndarray, mask: np.ndarray | None, landmarks: np.ndarray | None, chin_row: float | None = None
) -> HeadSegmentation:
    """Split the head of an aligned photo into hair and skin.

    Args:
        photo: (S, S, 3) uint8 RGB.
        mask: (S, S) person mask (uint8 0/255 or float/bool), or None for the whole frame.
        landmarks: (468+, 2+) face-mesh landmarks in photo pixels, or None.
        chin_row: chin row to use when there are no landmarks (default 0.8 S).
    """
    size = photo.shape[0]
    person = (
        np.ones((size, size), bool)
        if mask is None
        else np.asarray(mask).astype(np.float32) > 0.5 * max(1.0, float(np.asarray(mask).max()))
    )
    rows = np.arange(size, dtype=np.float64)[:, None]
    lab = cv2.cvtColor(photo, cv2.COLOR_RGB2LAB).astype(np.float32)
    oval = np.zeros((size, size), np.uint8)
    if landmarks is not None and len(landmarks) >= 468:
        pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
        chin = float(pts[CHIN, 1])
        cv2.fillPoly(oval, [np.round(pts[list(FACE_OVAL)]).astype(np.int32)], 1)
        brow = float(pts[list(BROWS), 1].min())
        mouth = float(pts[list(MOUTH), 1].mean())
        eyes = float(pts[[33, 263], 1].mean())
        nose_base = float(pts[NOSE_BOTTOM, 1])
    else:
        chin = float(chin_row if chin_row is not None else 0.8 * size)
        centre = (size // 2, int(0.47 * size))
        cv2.ellipse(oval, centre, (int(0.2 * size), int(0.28 * size)), 0, 0, 360, 1, -1)
        brow, eyes, mouth = 0.38 * size, 0.45 * size, 0.62 * size
        nose_base = 0.56 * size
    # Skin colour: cheeks and nose (between eyes and mouth), away from the face's outline (on a
    # turned face the far side's landmarks fall on the background, which the person mask leaves out).
    band = (rows > eyes + 0.25 * (mouth - eyes)) & (rows < mouth - 0.2 * (mouth - eyes))
    inner = cv2.erode(oval, np.ones((15, 15), np.uint8)).astype(bool) & band
    skin_pixels = lab[inner & person]
    if len(skin_pixels) < 50:
        skin_pixels = lab[oval.astype(bool)] if oval.any() else lab.reshape(-1, 3)
    oval_b = oval.astype(bool)
    face_zone = _face_zone(oval, brow, mouth)
    above_chin = person & (rows < chin)
    median, spread = _robust_colour(skin_pixels, [8.0, 3.0, 3.0])
    d2 = _colour_distance2(lab, median, spread)
    # Hair is also rougher than skin (strands): local lightness contrast well above the cheeks'
    # says hair even where the colour does not (grey photos, blond highlights); a bald scalp is smooth.
    lightness = lab[..., 0]
    rough = roughness(lightness)
    skin_roughness = float(np.median(rough[inner & person])) if (inner & person).any() else 4.0
    # And hair much darker than the lit cheeks is hair in a grey photo too.
    darker = lightness < median[0] - max(30.0, 2.0 * spread[0])
    skin_like = (d2 < SKIN_DISTANCE**2) & (rough < max(2.5 * skin_roughness, 6.0)) & ~darker
    inner_face = oval_b & (rows > brow)
    not_head, forward = None, 0.0
    if landmarks is not None and len(landmarks) >= 468:
        points = np.asarray(landmarks, dtype=np.float64)
        forward = _forward_x(points)
        not_head = _around_turned_face(points, size, forward)
    if not_head is not None:
        above_chin &= ~not_head
    hair = _clean(above_chin & ~skin_like & ~inner_face, size, brow) & above_chin
    # A bare ear's folds are rough and its bowl is in shadow, which the skin test's roughness and lightness cuts read
    # as hair: beside the face at ear height, skin-coloured pixels nearer the skin's colour than the crown hair's are
    # the ear's (a bare ear under black or grey hair, not brown hair of the skin's hue over an ear). A turned face
    # shows its near ear squarely, down to the lobe (below the nose's base), its bowl in shade: skin in shade counts.
    turned = abs(forward) >= TURNED
    band = _ear_band(oval, eyes, nose_base + (EAR_LOBE_REACH * (mouth - nose_base) if turned else 0.0), forward)
    nearer_skin = _nearer_skin(lab, d2, hair & (rows < brow), spread, shaded=turned)
    hair &= ~(band & nearer_skin)
    # The neck in the jaw's shadow (darker than the lit cheeks, which the skin test reads as hair) is not hair: on a
    # turned face the jaw rises to the ear above the chin's row, and the shadow under it went to the hair.
    if turned:
        hair &= ~(_under_jaw(oval_b) & nearer_skin)
    # Clothes above the chin row (a collar, a suit) are low beside the face, neither hair nor near it;
    # beside a turned face they were cut above, and its neck is in shadow (neither skin nor hair in colour).
    head = above_chin if not_head is not None else above_chin & (hair | face_zone | (rows < mouth))
    head = _attached(head, oval_b & person)
    hair &= head
    # A bald scalp turning away from the light darkens toward the outline, out of the skin colour's range: the
    # share of hair in the crown does not count skin of the face's hue, only darker and no rougher.
    if (
        landmarks is not None
        and len(landmarks) >= 468
        and crown_hair_share(hair & ~_shaded_skin(lab, rough, median, skin_roughness), head, oval_b) < BALD_SHARE
    ):
        # A bald or shaved head: what looked like hair (shadows, a fringe of thin hair, the background's
        # edge) is not enough to grow a hair volume or paint strands on.
        hair = np.zeros_like(hair)
    return HeadSegmentation(person, head, hair, head & ~hair, chin, median.astype(np.float32))


BALD_SHARE = 0.3
"""A head whose crown (above the face oval, as wide as the face) is less hair than this is bald."""


SHADED_SKIN_HUE = 15.0
"""Degrees of hue (CIELAB) from the lit skin's within which a darker pixel can be the skin in shade."""
SHADED_SKIN_CHROMA = (0.6, 1.4)
"""Range of a pixel's chroma per lightness, as a share of the lit skin's, for skin in shade."""
SHADED_SKIN_LIGHTNESS = 0.5
"""Skin in shade is at least this share of the lit skin's lightness (hair of the skin's hue is darker)."""
SHADED_SKIN_ROUGHNESS = 2.0
"""Skin in shade is no rougher than this many times the cheeks' roughness (hair has strands)."""


def _shaded_skin(lab: np.ndarray, roughness: np.ndarray, skin: np.ndarray, skin_roughness: float) -> np.ndarray:
    """(S, S) bool: pixels that can be the skin turning away from the light (a bald scalp toward its outline).

    Darker than the lit skin (``skin``: its median colour, OpenCV 8-bit Lab) down to
    :data:`SHADED_SKIN_LIGHTNESS` of it, of its hue, with about its chroma for that lightness, and smooth. A
    grey photo's skin has no hue to compare: nothing is shaded skin there.
    """
    a, b = lab[..., 1] - 128.0, lab[..., 2] - 128.0
    skin_a, skin_b = float(skin[1]) - 128.0, float(skin[2]) - 128.0
    skin_chroma = float(np.hypot(skin_a, skin_b))
    if skin_chroma < 8.0:
        return np.zeros(lab.shape[:2], bool)
    lightness = lab[..., 0]
    hue = np.degrees(np.arctan2(b, a) - np.arctan2(skin_b, skin_a))
    hue = np.abs((hue + 180.0) % 360.0 - 180.0)
    chroma = (np.hypot(a, b) / np.maximum(lightness, 1.0)) / (skin_chroma / max(float(skin[0]), 1.0))
    low, high = SHADED_SKIN_CHROMA
    return (
        (lightness < skin[0])
        & (lightness > SHADED_SKIN_LIGHTNESS * skin[0])
        & (hue < SHADED_SKIN_HUE)
        & (chroma > low)
        & (chroma < high)
        & (roughness < SHADED_SKIN_ROUGHNESS * max(skin_roughness, 1.0))
    )


def crown_hair_share(hair: np.ndarray, head: np.ndarray, oval: np.ndarray) -> float:
    """Share of hair in the head's crown as the photo shows it: head pixels above the face oval, within the
    oval's width (a bald scalp there is skin, a hairdo or a hat is not). 1.0 when the crop shows no crown."""
    rows = np.nonzero(oval.any(axis=1))[0]
    cols = np.nonzero(oval.any(axis=0))[0]
    if len(rows) == 0:
        return 1.0
    crown = np.zeros_like(head)
    crown[: rows[0], cols[0] : cols[-1] + 1] = True
    crown &= head
    if crown.sum() < 0.02 * oval.sum():  # the crop cuts the head at the forehead: nothing to judge
        return 1.0
    return float((hair & crown).sum() / crown.sum())


PROFILE = (
    10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 164, 0, 11, 12, 13, 14, 15, 16, 17, 18, 200, 199, 175, 152,
)  # fmt: skip
"""Face-mesh indices of the face's mid-plane, forehead to chin (the profile of a turned face)."""
NOSE_BOTTOM = 2
"""Face-mesh index of the point below the nose tip."""
NECK_BEHIND_FACE = 0.4
"""How far the neck reaches behind the back of the face oval on a turned face (face widths: the ear, then
the nape)."""
TURNED = 0.5
"""Sine of the yaw past which the face's landmarks are its outline on the side it turns to (30 degrees)."""


def _forward_x(points: np.ndarray) -> float:
    """The image-x part of the face's forward axis (the sine of its turn; positive: the nose points to +x)."""
    from portrait3d.preprocess.alignment import head_rotation

    return float(head_rotation(points)[0, 2])


def _around_turned_face(points: np.ndarray, size: int, forward: float) -> np.ndarray | None:
    """What stands in front of a turned face (a camera, a hand, a microphone) or behind its neck: (S, S) bool.

    On the side a face turns to, the landmarks' outline (forehead, nose tip, lips, chin) is the head's
    own outline, so whatever the person mask has beyond it, from the forehead down, is not head.
    Above the landmarks (hair over the forehead) a wider margin is left. None for a face turned less
    than :data:`TURNED` (its landmarks' outline is not the head's on either side). ``forward``: :func:`_forward_x`
    of ``points``.
    """
    if abs(forward) < TURNED:
        return None
    side = 1.0 if forward > 0 else -1.0
    # The face's own outline, concave where it is (between brow and nose, under the nose, above the chin):
    # its oval and its profile (the mid-plane's landmarks, forehead to chin).
    hull = np.zeros((size, size), np.uint8)
    cv2.fillPoly(hull, [np.round(points[list(FACE_OVAL), :2]).astype(np.int32)], 1)
    cv2.polylines(hull, [np.round(points[list(PROFILE), :2]).astype(np.int32)], False, 1, 2)
    width = float(np.ptp(points[:, 0])) + 1.0
    xs = np.arange(size, dtype=np.float64)[None, :] + 0.5
    reach = np.where(hull.astype(bool), side * xs, -np.inf).max(axis=1)  # per row, the face's front
    rows_with_face = np.nonzero(np.isfinite(reach))[0]
    if len(rows_with_face) == 0:
        return None
    top, bottom = rows_with_face[0], rows_with_face[-1]
    upper = reach[top : top + max(1, (bottom - top) // 2)].max()
    limit = np.full(size, np.inf)
    limit[top : bottom + 1] = reach[top : bottom + 1] + 0.015 * width
    limit[:top] = upper + 0.15 * width
    out = side * xs > limit[:, None]
    # Below the nose, behind the jaw: the neck goes down behind the ear; what lies farther back
    # (a coat's collar, a chair) is not head. The back of the face oval is in front of the ear.
    back = side * points[list(FACE_OVAL), 0].min() if side > 0 else side * points[list(FACE_OVAL), 0].max()
    low = np.arange(size)[:, None] > points[NOSE_BOTTOM, 1]
    return out | (low & (side * xs < back - NECK_BEHIND_FACE * width))


def _attached(region: np.ndarray, face: np.ndarray) -> np.ndarray:
    """The parts of ``region`` connected to ``face`` (or the largest part when none is): (S, S) bool."""
    count, labels = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    if count <= 2:
        return region
    touching = np.unique(labels[face & region])
    touching = touching[touching > 0]
    if len(touching) == 0:
        touching = [1 + int(np.argmax(np.bincount(labels.ravel())[1:]))]
    return np.isin(labels, touching)


def _nearer_skin(
    lab: np.ndarray, skin_d2: np.ndarray, crown_hair: np.ndarray, skin_spread, shaded: bool = False
) -> np.ndarray:
    """(S, S) bool: pixels of the skin's colour (``skin_d2``, the squared colour distance to the cheeks' skin, under
    :data:`SKIN_DISTANCE`²) nearer it than the crown hair's (``crown_hair``: its pixels). With ``shaded``, a pixel out
    to :data:`SHADE_SKIN_DISTANCE` counts too when it is clearly nearer the skin (:data:`SHADE_NEARER`)."""
    skin = skin_d2 < SKIN_DISTANCE**2
    pixels = lab[crown_hair]
    if len(pixels) < 50:
        return skin
    hair_d2 = _colour_distance2(lab, *_robust_colour(pixels, skin_spread))
    if shaded:
        skin |= (skin_d2 < SHADE_SKIN_DISTANCE**2) & (skin_d2 < SHADE_NEARER**2 * hair_d2)
    return skin & (skin_d2 < hair_d2)


def _under_jaw(oval: np.ndarray) -> np.ndarray:
    """(S, S) bool: below the face oval (``oval``, (S, S) bool), in its columns: the neck under the jaw and chin."""
    rows = np.arange(oval.shape[0])[:, None]
    lowest = np.where(oval.any(axis=0), oval.shape[0] - 1 - np.argmax(oval[::-1], axis=0), oval.shape[0])
    return rows > lowest[None, :]


SKIN_DISTANCE = 3.0
"""A pixel within this many (lightness-discounted) spreads of the skin's colour has the skin's colour."""
SHADE_SKIN_DISTANCE = 6.0
"""How far from the skin's colour skin in shade reaches (:func:`_nearer_skin`): the near ear of a face turned past
:data:`TURNED`, which the photo shows squarely (its bowl and the skin behind the tragus in shade, its rim redder
than the cheeks), and the neck under the jaw. The three-quarter woman's ear (53 degrees; a pale, nearly grey face)
lies a median 3.5 spreads from her cheeks' colour, and within 3 only its lit rim was skin: the rest went to the
hair, and the head's ear took none of the photo's."""
SHADE_NEARER = 0.6
"""Skin in shade past :data:`SKIN_DISTANCE` is skin when its distance to the skin's colour is at most this share of its
distance to the crown hair's: brown hair over the ear (0.7 in the tests' drawing) stays hair; 56 % of the
three-quarter woman's ear beyond 3 spreads lies within it (and all of it within 3)."""
EAR_LOBE_REACH = 0.5
"""How far below the nose's base a turned face's ear band reaches, as a share of the way to the mouth's row: the lobe
(the three-quarter woman's ends 0.45 of the way down from her nose's base to her mouth's row)."""


def _robust_colour(pixels: np.ndarray, floor) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) Lab pixels -> their median and spread (1.4826 median absolute deviations, at least ``floor``)."""
    median = np.median(pixels, axis=0)
    return median, np.maximum(1.4826 * np.median(np.abs(pixels - median), axis=0), floor)


def _colour_distance2(lab: np.ndarray, median: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """(S, S, 3) Lab -> (S, S) squared distance to ``median`` in ``spread`` units. Lightness varies with shading far
    more than chroma does: it is weighed down."""
    return (((lab - median) / (spread * [2.5, 1.0, 1.0])) ** 2).sum(-1)


def _oval_width(oval: np.ndarray) -> float:
    """Width in pixels of the face oval (0.4 of the image without one)."""
    xs = np.nonzero(oval.any(axis=0))[0]
    return float(xs.max() - xs.min() + 1) if len(xs) else oval.shape[1] * 0.4


EAR_REACH = 0.2
"""How far beside the face oval the ears are looked for (face widths)."""


EAR_TURN_REACH = 0.3
"""How much farther the ears are looked for on the side a turned face turns away from (face widths, times the
image-x part of the face's forward axis): the near ear lies farther behind the oval there. The three-quarter
woman's (53 degrees) lies 0.2-0.4 face widths from it, and went to the hair as a skin-coloured hole in it."""


def _ear_band(oval: np.ndarray, eyes: float, nose_base: float, forward: float = 0.0) -> np.ndarray:
    """Where the ears are: beside the oval (up to :data:`EAR_REACH` face widths out; on the side a turned face
    turns away from, by ``forward`` (the image-x part of its forward axis), :data:`EAR_TURN_REACH` times that more),
    from the eyes' row to the nose's base: (S, S) bool."""
    width = _oval_width(oval)
    reach = (int(2 * EAR_REACH * width) | 1) // 2
    farther = int(round(EAR_TURN_REACH * abs(forward) * width))
    left, right = reach + (farther if forward > 0 else 0), reach + (farther if forward < 0 else 0)
    # A kernel's anchor at its column ``right``: it reaches ``right`` columns to the right and ``left`` to the left.
    kernel = np.ones((1, left + right + 1), np.uint8)
    beside = cv2.dilate(oval, kernel, anchor=(right, 0)).astype(bool) & ~oval.astype(bool)
    rows = np.arange(oval.shape[0])[:, None]
    return beside & (rows > eyes) & (rows < nose_base)


def _face_zone(oval: np.ndarray, brow: float, mouth: float) -> np.ndarray:
    """The face oval grown sideways by ear width between brows and mouth, a little elsewhere: (S, S) bool."""
    width = _oval_width(oval)
    ears = cv2.dilate(oval, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(0.5 * width) | 1, int(0.1 * width) | 1)))
    near = cv2.dilate(oval, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(0.1 * width) | 1, int(0.1 * width) | 1)))
    rows = np.arange(oval.shape[0])[:, None]
    return np.where((rows > brow - 0.1 * width) & (rows < mouth), ears, near).astype(bool)


def _clean(hair: np.ndarray, size: int, brow: float) -> np.ndarray:
    """Smooth the hair mask, keep the parts that reach above the brows, fill small holes.

    Hair grows from the scalp, so a hair region that stays below the brows
    (a dark collar, a hand) is not hair unless it hangs from the hair above;
    highlights inside the hair that look like skin are holes to fill.
    """
    m = cv2.medianBlur(hair.astype(np.uint8) * 255, 5)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats((m > 127).astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = (stats[1:, cv2.CC_STAT_AREA] >= 0.002 * size * size) & (stats[1:, cv2.CC_STAT_TOP] < brow)
    hair = keep[labels]
    count, labels, stats, _ = cv2.connectedComponentsWithStats((~hair).astype(np.uint8), connectivity=4)
    small = np.zeros(count, bool)
    small[1:] = stats[1:, cv2.CC_STAT_AREA] < 0.005 * size * size
    return hair | small[labels]
