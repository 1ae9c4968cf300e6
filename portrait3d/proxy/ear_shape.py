"""The ear's shape as a signed distance field (model units; points: (N, 3) -> (N,)).

A pinna seen from the side is an egg-shaped plate, broad at the top and narrowing to the lobe, whose rim (the
helix) is rolled: a groove just inside it (the scapha) runs from the top-front over the top and down the back,
and leaves a second ridge (the antihelix) between it and the deep bowl in front (the concha, which the small
tragus closes toward the face; above it the shallower triangular fossa). The ear stands upright (a real head
scan's ears scored better upright than leaning back 4-8 degrees) and its back edge stands out from the head.
Each part is a few marching-cubes cells across at the head's voxel, so the mesher splits the triangles around
the ears and puts the new vertices on this field (``portrait3d.proxy.shape._finer_ears``).
"""

from __future__ import annotations

import numpy as np

from portrait3d.proxy.face_regions import smoothstep
from portrait3d.proxy.sdf import ellipsoid, smooth_subtract, smooth_union

EAR_CENTRE = np.array([0.138, -0.012, -0.032])
"""Centre of the left ear's pinna (model units; the right one is its mirror image): behind the jaw's hinge, at
the height where the fitted head puts it between the photo's brow and nose base, as on an average adult face.
Set on what the fit does, not on the template's own face: at 0.012 the ears of five frontal photos and of a
head scan projected 20-40 px (about 1.5 cm) above the real ones (docs/BENCHMARKS.md, thirteenth session)."""
EAR_FLARE = 25.0
"""Degrees the pinna stands out from the side of the head, its back rim outermost."""
HALF_HEIGHT, HALF_WIDTH, HALF_THICKNESS = 0.042, 0.029, 0.010
"""The pinna's plate (model units; 0.042 is about 2.4 cm on an average head: the ear and the skin it joins reach
about 6 cm tall. Set on the ears' Chamfer against a real head scan's, docs/BENCHMARKS.md, twenty-sixth session)."""
LOBE_NARROWING = 0.25
"""Share of the plate's width the lower half loses toward the lobe."""
TOP_WIDENING = 0.12
"""Share of width the upper half gains: the helix's arc is broad, the ear widest in its upper third."""
HELIX, HELIX_OUT = 0.0045, 0.003
"""Radius of the helix's rolled rim, and how far out of the plate's mid-plane its core runs."""
HELIX_ARC = (35.0, 250.0)
"""Where the helix runs round the outline, in degrees from the front (90 the top, 180 the back, 270 the bottom):
from the top-front, where it leaves the face, to the lobe, which has no rim."""
RIM = 0.0045
"""Outline to the scapha's groove: the helix's width."""
GROOVE, GROOVE_OUT = 0.0065, 0.0105
"""Radius of the scapha's groove, and the height of its core above the plate's mid-plane."""
GROOVE_ARC = (50.0, 240.0)
"""Where the groove runs round the outline (as :data:`HELIX_ARC`)."""
CONCHA_CENTRE, CONCHA_RADII = (0.013, -0.008, 0.006), (0.012, 0.018, 0.013)
"""The concha's bowl in the pinna's frame (out, up, forward). (Sunk deeper, into the ear's root as a real one is,
its floor left the pinna's texels and took the hair's: docs/BENCHMARKS.md, twenty-sixth session.)"""


def ear_frame(p: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points in one pinna's own frame (side -1: the subject's right): ``(out, up, forward)``, each (N,).

    ``out`` is along the plate's normal away from the head, ``up`` along its long axis, ``forward`` toward the face.
    """
    q = p - EAR_CENTRE * [side, 1.0, 1.0]
    flare = np.radians(EAR_FLARE) * side
    # Turned about the vertical so the back edge flares out from the head.
    out = side * (q[:, 0] * np.cos(flare) + q[:, 2] * np.sin(flare))
    forward = -q[:, 0] * np.sin(flare) + q[:, 2] * np.cos(flare)
    return out, q[:, 1], forward


def pinna_distance(p: np.ndarray, side: float) -> np.ndarray:
    """Distance to one ear's pinna alone (side -1: the subject's right)."""
    out, up, forward = ear_frame(p, side)
    local = np.stack([out, up, forward], axis=-1)
    # Narrower toward the lobe: an egg, broad end up.
    width = 1.0 - LOBE_NARROWING * smoothstep(-(up + 0.005) / 0.04) + TOP_WIDENING * smoothstep(up / 0.03)
    narrowed = forward / width
    d = ellipsoid(np.stack([out, up, narrowed], axis=-1), (0.0, 0.0, 0.0), (HALF_THICKNESS, HALF_HEIGHT, HALF_WIDTH))
    # The helix: a rolled rim along the outline, and inside it the scapha, a groove on the outer face.
    d = smooth_union(d, _along_outline(out, up, narrowed, HELIX, HELIX_ARC, HELIX_OUT), 0.002)
    d = smooth_subtract(d, _along_outline(out, up, narrowed, GROOVE, GROOVE_ARC, GROOVE_OUT, RIM), 0.003)
    d = smooth_subtract(d, ellipsoid(local, CONCHA_CENTRE, CONCHA_RADII), 0.004)
    d = smooth_subtract(d, ellipsoid(local, (0.012, 0.024, 0.004), (0.006, 0.008, 0.009)), 0.003)  # fossa
    d = smooth_union(d, ellipsoid(local, (-0.001, -0.032, 0.0), (0.008, 0.012, 0.014)), 0.006)  # lobe
    return smooth_union(d, ellipsoid(local, (0.002, -0.011, 0.024), (0.007, 0.008, 0.005)), 0.004)  # tragus


def _along_outline(
    out: np.ndarray,
    up: np.ndarray,
    forward: np.ndarray,
    radius: float,
    arc: tuple[float, float],
    height: float,
    inset: float = 0.0,
) -> np.ndarray:
    """Distance to a tube of ``radius`` that follows the plate's outline ``inset`` + ``radius`` inside it, at
    ``height`` out of the plate's mid-plane, over ``arc`` (degrees from the front, 90 the top; the tube thins to
    nothing over 25 degrees at either end). ``forward`` is already divided by the egg's width."""
    ry, rx = HALF_HEIGHT - inset - radius, HALF_WIDTH - inset - radius
    angle = np.mod(np.degrees(np.arctan2(up / ry, forward / rx)), 360.0)
    start, end = arc
    share = smoothstep((angle - start) / 25.0) * smoothstep((end - angle) / 25.0)
    off_outline = (np.hypot(up / ry, forward / rx) - 1.0) * min(ry, rx)
    return np.hypot(off_outline, out - height) - radius * share


def ear_distance(p: np.ndarray, side: float) -> np.ndarray:
    """Distance to one ear: its pinna joined to the head by a root."""
    q = p - EAR_CENTRE * [side, 1.0, 1.0]
    root = ellipsoid(q, (-side * 0.012, 0.0, 0.012), (0.016, 0.03, 0.02))
    return smooth_union(pinna_distance(p, side), root, 0.01)
