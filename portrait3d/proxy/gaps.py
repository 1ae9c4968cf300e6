"""Thin unseen gaps in the head's texture: found, and filled with the seen skin on their two sides.

On a turned face the photo misses thin strips inside what it shows: the nose bridge and the forehead's mid-line
(their own mirror images, on the mesh's outline in the photo), the hidden fold where the head posed as the photo
saw it meets the unmoved ear. The bake's class fill (:mod:`portrait3d.proxy.texture`, step 3) would pull into
them the hair above and the dark eyes and brows around; here they take the seen skin beside them instead.
"""

from __future__ import annotations

import numpy as np

from portrait3d.proxy.pull_push import low_frequency

GAP_HALF_WIDTH = 0.012
"""Unseen gaps up to twice this wide (in texture widths; 49 texels at 2048) take the seen skin on their sides."""


def thin_gaps(confident: np.ndarray, covered: np.ndarray, max_half_width: float) -> np.ndarray:
    """Unseen texels where the seen texels close in from both sides: (Ht, Wt) bool.

    Args:
        confident: (Ht, Wt) confidence of the seen colour in [0, 1]; 0 is unseen.
        covered: (Ht, Wt) texels inside the UV charts.
        max_half_width: half the widest gap, in texels.
    Returns:
        (Ht, Wt) bool: the unseen texels that a morphological closing of the seen texels by a disc of this
        radius covers: gaps and narrow inlets up to ``2 × max_half_width`` wide (the nose bridge and the
        forehead's mid-line of a turned face), not the open unseen regions (the back of the head).
    """
    import cv2

    seen = (confident > 0).astype(np.uint8)
    # On a half-size grid: the disc's cost grows with its area, and a gap's outline need not be exact.
    half = cv2.resize(seen, (seen.shape[1] // 2, seen.shape[0] // 2), interpolation=cv2.INTER_AREA)
    radius = max(1, int(round(max_half_width / 2)))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    closed = cv2.morphologyEx(half, cv2.MORPH_CLOSE, disc)
    closed = cv2.resize(closed, (seen.shape[1], seen.shape[0]), interpolation=cv2.INTER_NEAREST)
    return (closed > 0) & (seen == 0) & (covered > 0.5)


def gap_sides(
    confident: np.ndarray,
    seen_hair: np.ndarray,
    skin_like: np.ndarray,
    lips: np.ndarray,
    beard: np.ndarray | None = None,
) -> np.ndarray:
    """The seen texels whose colours a thin gap may take: (Ht, Wt) bool.

    Seen with full confidence, not hair, and either the photo's skin (``skin_like``, (Ht, Wt) bool: its colour
    model accepts them), its lips (``lips``, (Ht, Wt) in [0, 1], over 0.5) or its beard (``beard``, the same, or
    None). The skin's colour model rejects the lips' red, and the gaps inside a turned face's mirrored lips took the
    pale skin beyond them: thin pale loops over the three-quarter woman's upper lip in every frontal view. It
    rejects a beard's dark strands too: a gap at the bearded man's jaw's angle was a pale spot in his beard.
    """
    sides = skin_like | (lips > 0.5)
    if beard is not None:
        sides = sides | (beard > 0.5)
    return (confident >= 1) & (seen_hair < 0.5) & sides


def across_gaps(rgb: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Values spread from the ``source`` texels into the texels between them, at the texture's own scale:
    (Ht, Wt, C) ``rgb``, (Ht, Wt) bool ``source`` -> (Ht, Wt, C). A gap takes the mean of the source texels
    nearest it on every side (pull-push); texels outside the source fade to the mean of a wider ring."""
    # At the full scale: on a coarser grid the two sides of a gap a few texels wide would mix.
    return low_frequency(rgb, source.astype(np.float32), work_width=rgb.shape[1])


def hair_beside_gaps(
    seen_hair: np.ndarray, seen_skin: np.ndarray, confident: np.ndarray, template_hair: np.ndarray
) -> np.ndarray:
    """How much a thin unseen gap lies in hair, from what its sides show: (Ht, Wt) in [0, 1].

    The photo's hair on the gap's sides, or else the template's hair map (a gap on the scalp keeps the hair fill),
    except where the photo shows skin on both sides: there the template's map is a guess the photo overrules. On
    a profile the head posed as the photo saw it folds between the moved face and the unmoved ear, and the hidden
    fold is a thin gap across the temple's seen skin; the template calls that temple hair, and its strands drew a
    pale streak from the temple down the cheek.

    Args:
        seen_hair: (Ht, Wt) hair share of the seen colour.
        seen_skin: (Ht, Wt) bool, texels seen as skin.
        confident: (Ht, Wt) confidence of the seen colour; the gap's sides are the texels at 1.
        template_hair: (Ht, Wt) the head's hair map.
    """
    sides = across_gaps(np.stack([seen_hair, seen_skin], axis=-1).astype(np.float32), confident >= 1)
    skin_sides = np.clip(sides[..., 1], 0.0, 1.0)
    return np.clip(np.maximum(sides[..., 0], template_hair * (1.0 - skin_sides)), 0.0, 1.0)


def along_rows(rgb: np.ndarray, source: np.ndarray, gaps: np.ndarray, otherwise: np.ndarray) -> np.ndarray:
    """Each ``gaps`` texel's value from the ``source`` texels nearest it to its left and right in its row.

    The two are blended by distance (a gap between two texels of one colour takes that colour); a gap texel
    without a source texel on both sides keeps ``otherwise``.

    Args:
        rgb: (Ht, Wt, C) values.
        source: (Ht, Wt) bool, the texels to take values from.
        gaps: (Ht, Wt) bool, the texels to fill.
        otherwise: (Ht, Wt, C) the values where a row has no source on one side.
    Returns:
        (Ht, Wt, C): ``rgb`` of the filled texels, ``otherwise`` elsewhere.
    """
    import cv2

    height, width = source.shape
    # Not the very edge (the outline's blend with the background), and a few texels' mean, not one texel's noise.
    inset = max(1, width // 512)
    kernel = np.ones((1, 2 * inset + 1), np.uint8)
    source = cv2.erode(source.astype(np.uint8), kernel).astype(bool)
    counts = cv2.blur(source.astype(np.float32), (4 * inset + 1, 1))
    rgb = (
        cv2.blur(np.asarray(rgb, np.float32) * source[..., None], (4 * inset + 1, 1))
        / np.maximum(counts, 1e-6)[..., None]
    )
    columns = np.broadcast_to(np.arange(width), (height, width))
    left = np.maximum.accumulate(np.where(source, columns, -1), axis=1)
    right = np.minimum.accumulate(np.where(source, columns, width)[:, ::-1], axis=1)[:, ::-1]
    both = gaps & (left >= 0) & (right < width)
    rows = np.broadcast_to(np.arange(height)[:, None], (height, width))
    left_value = rgb[rows, np.clip(left, 0, width - 1)]
    right_value = rgb[rows, np.clip(right, 0, width - 1)]
    t = ((columns - left) / np.maximum(right - left, 1))[..., None]
    return np.where(both[..., None], (1 - t) * left_value + t * right_value, otherwise)


def fill_gaps(
    fill: np.ndarray,
    gaps: np.ndarray,
    seen_rgb: np.ndarray,
    seen_hair: np.ndarray,
    seen_skin: np.ndarray,
    confident: np.ndarray,
    covered: np.ndarray,
    template_hair: np.ndarray,
    on_midline: np.ndarray | None = None,
    lips: np.ndarray | None = None,
) -> np.ndarray:
    """The bake's fill with its thin gaps taking the seen skin on their two sides: (Ht, Wt, 3).

    Args:
        fill: (Ht, Wt, 3) the class fill (skin and hair spread from the photo).
        gaps: (Ht, Wt) bool, :func:`thin_gaps` of the seen texels.
        seen_rgb: (Ht, Wt, 3) the seen colour (the photo and its mirror image).
        seen_hair: (Ht, Wt) hair share of the seen colour.
        seen_skin: (Ht, Wt) bool, texels seen as skin (the colours a gap may take).
        confident: (Ht, Wt) confidence of the seen colour in [0, 1].
        covered: (Ht, Wt) texels inside the UV charts.
        template_hair: (Ht, Wt) the head's hair map.
        on_midline: (Ht, Wt) bool, the gap texels on a turned face's mid-line, or None.
        lips: (Ht, Wt) how much each texel shows the photo's lips, or None.
    """
    import cv2

    width = fill.shape[1]
    across = across_gaps(seen_rgb, seen_skin)
    # The share of gap among the unseen texels around: 1 inside a gap, fading where a gap opens into a
    # large unseen region (the chin's underside onto the neck, a forehead inlet onto the crown).
    sigma = 0.003 * width
    unseen = ((confident <= 0) & (covered > 0.5)).astype(np.float32)
    share = cv2.GaussianBlur(gaps.astype(np.float32), (0, 0), sigma) / np.maximum(
        cv2.GaussianBlur(unseen, (0, 0), sigma), 1e-3
    )
    # Gaps between seen hair, or on the template's scalp, keep the hair fill (its strands): only the face's
    # gaps are filled across.
    hair_around = hair_beside_gaps(seen_hair, seen_skin, confident, template_hair)
    share = (np.clip(share, 0.0, 1.0) * (1.0 - hair_around))[..., None]
    # A turned face's mid-line is the photo's outline: the gap there runs down through the nose and the lips,
    # and its two sides are one place and its mirror image. Where those sides are the lips, each row takes the
    # colours at the gap's edges, so the lips meet across the mid-line (the skin fill split them in two).
    if on_midline is not None and on_midline.any() and lips is not None:
        edges = (confident >= 1) & (seen_hair < 0.5)
        rows = along_rows(np.concatenate([seen_rgb, lips[..., None]], axis=-1), edges, on_midline,
                          np.concatenate([across, np.zeros_like(lips)[..., None]], axis=-1))  # fmt: skip
        # Only the lips: the nostrils' row would draw a dark bar under the nose.
        lip_share = np.clip(rows[..., 3:], 0.0, 1.0)
        across = lip_share * rows[..., :3] + (1 - lip_share) * across
    return share * across + (1 - share) * fill
