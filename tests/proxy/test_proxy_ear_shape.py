"""The ear's shape (:mod:`portrait3d.proxy.ear_shape`): a pinna, not a plate."""

from __future__ import annotations

import numpy as np

from portrait3d.proxy.ear_shape import EAR_CENTRE, EAR_FLARE, ear_frame, pinna_distance

OUT = np.linspace(0.03, -0.02, 2001)


def _points(up: float, forward: float) -> np.ndarray:
    """(len(OUT), 3) points of the left pinna's frame on the line at (up, forward), from outside inward."""
    flare = np.radians(EAR_FLARE)
    x = OUT * np.cos(flare) - forward * np.sin(flare)
    z = OUT * np.sin(flare) + forward * np.cos(flare)
    return np.stack([x, np.full_like(OUT, up), z], axis=-1) + EAR_CENTRE


def _relief(up: float, forward: float) -> float:
    """How far out of the pinna's mid-plane its outer face is at (up, forward) (NaN off the pinna)."""
    inside = pinna_distance(_points(up, forward), 1.0) < 0.0
    return float(OUT[np.argmax(inside)]) if inside.any() else float("nan")


def test_the_frame_is_the_pinnas():
    out, up, forward = ear_frame(_points(0.01, -0.02), 1.0)
    np.testing.assert_allclose(out, OUT, atol=1e-12)
    np.testing.assert_allclose(up, 0.01, atol=1e-12)
    np.testing.assert_allclose(forward, -0.02, atol=1e-12)


def test_a_rolled_rim_a_groove_inside_it_a_ridge_and_a_deep_bowl():
    # From the back of the ear to the face at mid-height: helix, scapha, antihelix, concha, tragus.
    forward = np.arange(-0.03, 0.03, 0.001)
    relief = np.array([_relief(0.0, f) for f in forward])

    def highest(a, b):
        return np.nanmax(relief[(forward >= a) & (forward <= b)])

    def lowest(a, b):
        return np.nanmin(relief[(forward >= a) & (forward <= b)])

    helix, scapha = highest(-0.03, -0.022), lowest(-0.022, -0.015)
    antihelix, concha, tragus = highest(-0.015, -0.004), lowest(-0.004, 0.012), highest(0.012, 0.026)
    # Model units: 0.002 is about 1 mm on an average head.
    assert helix - scapha > 0.002, (helix, scapha)
    assert antihelix - scapha > 0.004, (antihelix, scapha)
    assert antihelix - concha > 0.005, (antihelix, concha)
    assert tragus - concha > 0.003, (tragus, concha)
    # The rim runs over the top as well.
    up = np.arange(0.0, 0.05, 0.001)
    top = np.array([_relief(u, -0.005) for u in up])
    rim, groove = np.nanmax(top[up > 0.034]), np.nanmin(top[(up > 0.022) & (up < 0.034)])
    assert rim - groove > 0.0015, (rim, groove)


def test_broad_at_the_top_narrowing_to_the_lobe():
    def width(up: float) -> float:
        forward = np.arange(-0.045, 0.045, 0.0005)
        on = [np.isfinite(_relief(up, f)) for f in forward]
        return float(np.ptp(forward[on]))

    assert width(0.02) > 1.25 * width(-0.03), (width(0.02), width(-0.03))


def test_the_right_pinna_is_the_left_ones_mirror_image():
    rng = np.random.default_rng(1)
    points = EAR_CENTRE + rng.normal(scale=0.03, size=(500, 3))
    np.testing.assert_allclose(pinna_distance(points * [-1.0, 1.0, 1.0], -1.0), pinna_distance(points, 1.0), atol=1e-12)
