"""The photo's light on the head: lightness against the surface normal, fitted on the skin the photo sees.

The head's texture carries the photo's light (its renders add none). A linear model, ``c0 + n . c`` (ambient and
one direction), fitted to the seen skin's lightness, carries that light on where the photo does not show the head:
the fill's relief (:func:`surface_shading`) and, on a turned face, the far side that the near side's mirror image
paints (:func:`far_side_gain`).
"""

from __future__ import annotations

import numpy as np

MIN_LIGHT_TEXELS = 100
"""Seen skin texels below which no light is fitted."""

FAR_SIDE_DARKEST = 0.5
"""The least :func:`far_side_gain`: the far side is made at most this much darker than the near side it mirrors."""
SHADE_FLOOR = 0.3
"""Share of the ambient term below which the model's light counts as that (the ratio of two shades stays finite)."""


def fit_light(normals: np.ndarray, luminance: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """Least-squares light ``(c0, cx, cy, cz)`` with ``luminance ~ c0 + normal . (cx, cy, cz)`` over the texels that
    ``weights`` marks (over 0.5): (..., 3) normals, (...) luminance and weights -> (4,), or None where fewer than
    :data:`MIN_LIGHT_TEXELS` are marked."""
    marked = np.asarray(weights).ravel() > 0.5
    if marked.sum() < MIN_LIGHT_TEXELS:
        return None
    n = np.asarray(normals).reshape(-1, 3)[marked]
    design = np.concatenate([np.ones((len(n), 1)), n], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.asarray(luminance).ravel()[marked], rcond=None)
    return coef


def surface_shading(normals: np.ndarray, luminance: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The photo's lighting fitted to the surface normals (ambient + one direction), evaluated everywhere: (Ht, Wt).

    Fitted by least squares on the texels ``weights`` marks (seen skin); the
    result is relative (1 on average over those texels), and never darker
    than 60 % of the ambient term so the unlit side keeps some colour.
    """
    coef = fit_light(normals, luminance, weights)
    if coef is None:
        coef = np.array([0.8, 0.0, 0.12, 0.16])
    else:
        coef = coef / max(coef[0], 1e-3)
        coef[0] = 1.0
        # A photo lit mostly from the camera side keeps light on the unseen side too (ambient).
        coef[1:] = np.clip(coef[1:], -0.35, 0.35)
    shade = coef[0] + normals.reshape(-1, 3) @ coef[1:]
    return np.maximum(shade, 0.6 * coef[0]).reshape(normals.shape[:-1]).astype(np.float32)


def far_side_gain(normals: np.ndarray, coef: np.ndarray | None, share: float = 1.0) -> np.ndarray:
    """How much darker the photo's light leaves each texel than its mirror image across the mid-plane: (Ht, Wt, 3)
    normals (head frame, x across the face), the light :func:`fit_light` found, or None -> (Ht, Wt) in
    [:data:`FAR_SIDE_DARKEST`, 1].

    The ratio of the model's light at the texel's normal to the light at the mirrored normal (x negated), where the
    mirror image comes from. A turned face lit from the camera's side shows its near side lit and the mid-line
    darker; its mirror image painted the far side lit again, and the frontal views had a dark stripe down the
    forehead, nose and chin between two lit halves (Lee Perry-Smith's scan photographed at 45 degrees: the frontal
    view 13.8 dB PSNR against the scan lit as the photo was, 19.1 with the gain). Never brighter: where the light
    comes from the far side, a brightened copy of the shaded near side brings its noise and its colour cast along
    (the couple's photo: orange patches at 1.5 times). ``share`` (the face's turn, in [0, 1]) scales it down to 1.
    """
    if coef is None or share <= 0:
        return np.ones(normals.shape[:-1], np.float32)
    n = normals.reshape(-1, 3)
    floor = SHADE_FLOOR * max(float(coef[0]), 1e-3)
    own = np.maximum(coef[0] + n @ coef[1:], floor)
    source = np.maximum(coef[0] + (n * [-1.0, 1.0, 1.0]) @ coef[1:], floor)
    gain = np.clip(own / source, FAR_SIDE_DARKEST, 1.0)
    return (1.0 + share * (gain - 1.0)).reshape(normals.shape[:-1]).astype(np.float32)
