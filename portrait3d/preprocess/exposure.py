"""Exposure of the photo: a photo too dark or too flat is normalised, one with no picture in it is refused.

The face detector, the landmarks, the hair/skin split and the texture all read
the photo's colours; a near-black or washed-out photo gives a black or grey head
with no word said. So before anything reads it, the photo's luminance is
measured (robust percentiles) and

- one with almost no grey levels left (a black frame, a flat grey card) is
  refused with a one-line reason;
- one that is dark (its bright end well below white) or flat (its luminance
  spans a small part of the range) is stretched: one affine map of the levels,
  the same for the three channels (so hues stay), then a gamma that brings
  the median up to a mid grey when it is still dark;
- anything else is left exactly as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from portrait3d.errors import UserError

LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5
"""Percentiles of the luminance taken as the photo's black and white points (ignores specks and glints)."""
MIN_LEVELS = 6.0
"""Fewest grey levels (of 255) between the black and white points of a usable photo."""
DARK_WHITE_POINT = 110.0
"""A photo whose white point is below this (of 255) is dark: its brightest parts are dim grey."""
FLAT_RANGE = 80.0
"""A photo whose black-to-white range is below this (of 255) is flat."""
TARGET_MEDIAN = 0.42
"""Median luminance (0..1) a dark photo is brought up to, when the stretch alone leaves it darker."""


@dataclass
class Exposure:
    """What the exposure check found and did.

    Attributes:
        black: luminance of the black point (0..255).
        white: luminance of the white point (0..255).
        median: median luminance (0..255).
        normalised: whether the photo was changed.
        reason: why it was changed ("dark", "flat", "dark and flat"), or None.
    """

    black: float
    white: float
    median: float
    normalised: bool = False
    reason: str | None = None

    def record(self) -> dict:
        """A small JSON-able summary for the stage record."""
        return {
            "black": round(self.black, 1),
            "white": round(self.white, 1),
            "median": round(self.median, 1),
            "normalised": self.normalised,
            "reason": self.reason,
        }


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an (H, W, 3) uint8 image: (H, W) float32 in 0..255."""
    return rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def measure(rgb: np.ndarray) -> Exposure:
    """Black point, white point and median of a photo's luminance (see :class:`Exposure`)."""
    luma = luminance(rgb).ravel()
    if luma.size > 1_000_000:  # percentiles of a large photo from a regular subsample
        luma = luma[:: luma.size // 1_000_000 + 1]
    black, median, white = np.percentile(luma, [LOW_PERCENTILE, 50.0, HIGH_PERCENTILE])
    return Exposure(float(black), float(white), float(median))


def normalise_exposure(rgb: np.ndarray, name: str = "the photo") -> tuple[np.ndarray, Exposure]:
    """Check a photo's exposure and stretch it when it is too dark or too flat.

    Args:
        rgb: (H, W, 3) uint8 photo.
        name: what to call the photo in an error.
    Returns:
        ``(rgb, exposure)``: the photo (the same array when nothing was done, else a new
        (H, W, 3) uint8 array) and what was found.
    Raises:
        UserError: the photo has fewer than :data:`MIN_LEVELS` grey levels between its black and white points.
    """
    found = measure(rgb)
    span = found.white - found.black
    if span < MIN_LEVELS:
        raise UserError(
            f"{name}: too dark or too flat to use (its pixels span only {span:.0f} of 255 grey levels, "
            f"around {found.median:.0f}); use a photo with a visible face"
        )
    dark = found.white < DARK_WHITE_POINT
    flat = span < FLAT_RANGE
    if not (dark or flat):
        return rgb, found
    # One affine map of the levels for all channels keeps every hue; a little headroom keeps highlights.
    scale = 0.97 / span
    out = (rgb.astype(np.float32) - found.black) * scale
    median = (found.median - found.black) * scale
    if dark and 0.0 < median < TARGET_MEDIAN:
        # Lift the shadows and mid-tones of a dark photo toward a mid grey (gamma < 1; white stays white).
        gamma = float(np.clip(np.log(TARGET_MEDIAN) / np.log(max(median, 1e-3)), 0.35, 1.0))
        out = np.clip(out, 0.0, 1.0) ** gamma
    out = np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
    reason = "dark and flat" if dark and flat else "dark" if dark else "flat"
    return out, Exposure(found.black, found.white, found.median, True, reason)
