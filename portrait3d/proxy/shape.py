"""The head's shape from the photo: the fitted template skull united with a hair volume that reaches the
outline of the photo's head mask.

The hair volume is a star-shaped region about the cranium's centre: an outer
radius ``R(d) = skull(d) + t(d)`` on a latitude/longitude grid of directions
``d``, used wherever the hair grows (``A(d)``: above the template's hairline,
lowered at the sides and back to where the photo shows hair beside the face).
The thickness ``t`` is read from the photo where the photo sees it, on the
limb: seen through the photo's camera, a direction nearly perpendicular to
the line of sight lands on the outline at image angle ``alpha(d)``, so the
head's outline radius there fixes ``R(d)`` (weak perspective through the
centre). Every constraint also counts for the mirrored direction (the head is
symmetric where the photo says nothing), and a kernel average over the sphere
carries the thickness to the unseen top and back, pulled toward the median
seen thickness, thinner straight behind the head than at the sides (a hairdo
is fullest beside the face) and thinning to nothing toward the lower hairline
at the back; a profile's outline says nothing of the head's width, and its
thickness is not carried onto the unseen sides (:func:`profile_share`). Only
directions within about 20 degrees of the limb count: farther
from it a direction lies inside the outline, and reading the outline radius
there as its own made the back of the head too wide and too long. Two
correction passes compare the outline of the meshed head with the photo's and
move the constraints by the difference. Beside and behind the head, the
outline below the head's widest point is raised to a curve that hangs from it
and comes down onto the skull along its surface, so the hair slopes into the
neck (:func:`_drape`), and the hair is
softly capped to stay inside the width of every orbit view (:func:`_in_frame`;
where the photo shows the head beyond that, as the back of a profile's head
at the frame's edge, the cap wins). The hair shell ``|p - c| < skull(d) + A t(d)``
(its thickness fading to nothing at the hairline) is smoothly united with the
template's distance field (pulled in where ``t < 0``) and meshed by marching
cubes; the flat cut of the template's neck stays, so the mesh is closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh

from portrait3d.cameras import Camera
from portrait3d.proxy.ear_shape import EAR_CENTRE, pinna_distance
from portrait3d.proxy.face_regions import smoothstep
from portrait3d.proxy.fit import FitResult
from portrait3d.proxy.long_hair import fall_weight, hang, hanging_directions, hanging_lengths, meridian_lengths
from portrait3d.proxy.refine import onto_surface, refine_faces
from portrait3d.proxy.sdf import smooth_union
from portrait3d.proxy.template import (
    CRANIUM_CENTRE,
    NECK_BOTTOM,
    _hairline,
    _narrow_band_sdf,
    ear_distances,
    ear_weight,
    head_sdf,
    model_to_world,
    pinna_weight,
)
from portrait3d.vectors import vector_length

N_LAT, N_LON = 60, 120
"""Resolution of the direction grid (3 degrees)."""
MAX_THICKNESS = 0.12
"""Largest hair thickness (model units; 0.17 world units, a big hairdo: camera()'s hair behind his head needs
0.12), so hats and occluders stay bounded."""
MIN_THICKNESS = -0.02
"""The hair volume may also pull the skull in a little where the photo's outline is inside it."""
DEFAULT_THICKNESS = 0.008
"""Thickness where the photo tells nothing (no mask): a thin layer of hair."""
MIRROR_WEIGHT = 0.2
"""Weight of a constraint's mirror image against the photo's own (the far side of a turned head)."""
FRAME_RADIUS = 0.31
"""World distance from the orbit's axis within which a point stays inside every orbit view's width (the
frame's half-width is 0.317 at the axis; a point 0.31 out reaches at most 0.97 of it, at any yaw). The
top is not capped: the photo's own crop may put the hair at the frame's top."""
SPREAD = 0.15
"""Width (radians) of the kernel that carries the thickness seen on the outline around the head."""
BACK_THINNING = 0.5
"""How much thinner than the median seen thickness the hair is straight behind the head, unseen."""
PROFILE_TURN = (60.0, 75.0)
"""Yaw (degrees) of the photo's camera from which the photo counts as a profile, and fully from
(:func:`profile_share`). Up to 60 degrees the outline runs over part of the head's sides; a bob photographed at 60
degrees needs the thickness its outline shows carried round to them (thinner sides made its head 5.46 mm off
instead of 4.81, docs/BENCHMARKS.md, twenty-first session)."""
FALL_REACH = 0.08
"""Horizontal reach (model units) taken for the hair's fall below the jaw when its surface is told from the neck's
(:func:`portrait3d.proxy.long_hair.hanging_directions`; less than any fall's, so every fall's surface counts)."""
NAPE_TAPER = 0.05
"""Height (model units) over which unseen hair at the back thins to nothing at the lower hairline."""
NAPE_DROP = 15.0
"""Degrees (about the cranium's centre) below the lowest hair at the back where the nape meets the neck."""
HAIR_FILLET = 0.01
"""Size (model units) of the smooth union that joins the hair volume to the head (its fillet). Where the two
surfaces coincide the union swells by a quarter of it."""
FOOT_SINK = 24.0
"""Degrees below the foot of the hair's curve onto the skull (:func:`_drape`) over which the hair sinks into the
skull by :data:`HAIR_FILLET`, so the union's swell over the curve's last stretch fades instead of ending in a ledge."""
LOWEST_HAIR = -0.10
"""Lowest hairline at the sides and back (model units; the jaw is at -0.09, the chin at -0.15)."""
BARE_EAR = (0.2, 0.4)
"""An ear's :func:`ears_uncovered` reading from which it counts as bare, and fully from (:func:`bareness`); from the
middle (0.3) its pinna has texels of its own and takes the photo's ear. The eval photos' bare ears read 0.4-1.0
(the cartoon man's 0.40, between strands of hair), their covered ones 0-0.16. The step is short, so an ear is one
or the other: a reading of 0.4 once left both half-way (a grey ear in a pale ring, neither skin nor hair)."""


def bareness(reading: float) -> float:
    """How bare an ear is, in [0, 1], from its :func:`ears_uncovered` reading (see :data:`BARE_EAR`)."""
    return float(smoothstep((reading - BARE_EAR[0]) / (BARE_EAR[1] - BARE_EAR[0])))


@dataclass
class HeadShape:
    """The photo's head mesh and what is known about its surface.

    Attributes:
        mesh: closed triangle mesh, world units, outward normals.
        hair: (V,) float in [0, 1], how much each vertex is hair.
        ears: (V,) float in [0, 1], how much each vertex belongs to an uncovered ear (the pinna and the skin
            around its root).
        pinna: (V,) float in [0, 1], how much each vertex is on the pinna of a bare ear (its surface and a few
            millimetres around it): the texture gives those triangles texels of their own.
        thickness: (N_LAT, N_LON) hair thickness map (model units) over the direction grid.
        info: figures of the fit (for the stage record).
    """

    mesh: trimesh.Trimesh
    hair: np.ndarray
    ears: np.ndarray
    pinna: np.ndarray
    thickness: np.ndarray
    info: dict = field(default_factory=dict)


def direction_grid() -> np.ndarray:
    """Unit directions at the centres of the latitude/longitude cells: (N_LAT, N_LON, 3), y up, lon 0 = +z."""
    lat = np.radians(-90 + (np.arange(N_LAT) + 0.5) * 180 / N_LAT)
    lon = np.radians(-180 + (np.arange(N_LON) + 0.5) * 360 / N_LON)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    return np.stack([np.cos(la) * np.sin(lo), np.sin(la), np.cos(la) * np.cos(lo)], axis=-1)


def sample_map(grid: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a (N_LAT, N_LON) map at unit directions (M, 3) -> (M,), wrapping in longitude."""
    from scipy.ndimage import map_coordinates

    lat = np.degrees(np.arcsin(np.clip(directions[:, 1], -1.0, 1.0)))
    lon = np.degrees(np.arctan2(directions[:, 0], directions[:, 2]))
    i = (lat + 90) * N_LAT / 180 - 0.5
    j = (lon + 180) * N_LON / 360 - 0.5 + 1  # +1: the padded column
    padded = np.concatenate([grid[:, -1:], grid, grid[:, :1]], axis=1)
    return map_coordinates(padded, [i, j], order=1, mode="nearest")


def skull_radius(directions: np.ndarray, centre: np.ndarray = CRANIUM_CENTRE, reach: float = 0.4) -> np.ndarray:
    """Distance from ``centre`` to the template surface along each direction, first crossing: (...,)."""
    shape = directions.shape[:-1]
    d = directions.reshape(-1, 3)
    steps = np.linspace(0.0, reach, 81)
    inside = np.stack([head_sdf(centre + s * d) < 0 for s in steps], axis=1)  # (M, S)
    first_out = np.argmax(~inside, axis=1)
    first_out[inside.all(axis=1)] = len(steps) - 1
    lo, hi = steps[np.maximum(first_out - 1, 0)], steps[first_out]
    for _ in range(8):
        mid = (lo + hi) / 2
        out = head_sdf(centre + mid[:, None] * d) >= 0
        hi, lo = np.where(out, mid, hi), np.where(out, lo, mid)
    return ((lo + hi) / 2).reshape(shape)


def hair_region(
    points: np.ndarray, side_hairline: float | None, softness: float = 0.015, turn: float = 0.0
) -> np.ndarray:
    """Where hair grows on the template surface (model units): (N, 3) -> (N,) in [0, 1].

    The template's hairline, lowered at the sides and the back to ``side_hairline``
    (the lowest hair beside the face in the photo) when that is lower. That hair is
    seen on the outline, which lies ``turn`` degrees (the photo's yaw) further back
    on a turned photo: behind the near ear, not in front of it, and the lowering
    starts that much further back.
    """
    azimuth = np.degrees(np.arctan2(points[:, 0], points[:, 2]))
    line = _hairline(azimuth)
    if side_hairline is not None:
        t = np.clip((np.abs(azimuth) - 45.0 - abs(turn)) / 35.0, 0.0, 1.0)
        side = np.minimum(line, max(side_hairline, LOWEST_HAIR))
        line = line + (side - line) * t * t * (3 - 2 * t)
    return np.clip(0.5 + 0.5 * (points[:, 1] - line) / softness, 0.0, 1.0)


@dataclass
class _Frame:
    """The template-to-world map of one fit (before its warp) and the photo camera's view of the centre."""

    k: float
    b: np.ndarray
    centre_px: np.ndarray
    depth: float
    focal_px: float
    right: np.ndarray
    down: np.ndarray

    def to_world(self, model: np.ndarray) -> np.ndarray:
        return model * self.k + self.b

    def px_per_model(self) -> float:
        return self.focal_px * self.k / self.depth


def _frame(fit: FitResult, camera: Camera, size: int) -> _Frame:
    scale, offset = model_to_world()
    k = scale * fit.scale
    b = offset * fit.scale + np.asarray(fit.shift)
    centre_w = CRANIUM_CENTRE * k + b
    px, depth = camera.project(centre_w[None], size, size)
    return _Frame(
        k, b, px[0], float(depth[0]), camera.intrinsics[0, 0] * size, camera.cam2world[:3, 0], camera.cam2world[:3, 1]
    )


def outline_radii(
    region: np.ndarray, centre: np.ndarray, angles: np.ndarray, stop_row: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Where rays from ``centre`` (pixels) first leave ``region``, for image angles (x right, y down).

    Returns:
        ``(radius, valid)``: (A,) pixels and (A,) bool; a ray is not valid when
        it leaves through the frame's border or crosses ``stop_row`` (the chin)
        first, or when the centre is outside the region.
    """
    size_y, size_x = region.shape
    radii = np.arange(0.0, 1.5 * max(size_x, size_y), 0.5)
    xs = centre[0] - 0.5 + np.cos(angles)[:, None] * radii  # pixel centres at +0.5
    ys = centre[1] - 0.5 + np.sin(angles)[:, None] * radii
    inside_frame = (xs >= 0) & (xs <= size_x - 1) & (ys >= 0) & (ys <= size_y - 1)
    xi = np.clip(np.round(xs).astype(int), 0, size_x - 1)
    yi = np.clip(np.round(ys).astype(int), 0, size_y - 1)
    inside = region[yi, xi] & inside_frame
    first_out = np.argmax(~inside, axis=1)
    radius = radii[first_out]
    valid = inside_frame[np.arange(len(angles)), first_out] & inside[:, 0]
    if stop_row is not None:
        valid &= ys[np.arange(len(angles)), first_out] < stop_row
    return radius, valid


def _side_hairline(seg, frame: _Frame, angles: np.ndarray, radius: np.ndarray, valid: np.ndarray) -> float | None:
    """Lowest model-unit height at which the photo shows hair on the outline beside the face, or None."""
    inner = np.maximum(radius - 4.0, 0.0)
    x = frame.centre_px[0] + np.cos(angles) * inner
    y = frame.centre_px[1] + np.sin(angles) * inner
    size = seg.hair.shape[0]
    is_hair = seg.hair[np.clip(y.astype(int), 0, size - 1), np.clip(x.astype(int), 0, size - 1)]
    sideways = np.abs(np.cos(angles)) > np.cos(np.radians(60))
    pick = valid & is_hair & sideways & (np.sin(angles) > 0)  # below the centre
    if not pick.any():
        return None
    # Back to the plane through the centre, then to model height.
    drop_px = float((np.sin(angles) * radius)[pick].max())
    world = frame.to_world(CRANIUM_CENTRE) + frame.down * drop_px * frame.depth / frame.focal_px
    return float((world[1] - frame.b[1]) / frame.k)


BALD_HAIR_FRACTION = 0.02
"""Below this fraction of the head's pixels in hair, the photo shows a bald or shaved head (hair fades in by
three times it)."""


def hair_presence(segmentation) -> float:
    """1 where the photo shows hair on the head, 0 for a bald or shaved head (smooth between); 1 without a split."""
    if segmentation is None:
        return 1.0
    fraction = float(segmentation.hair.sum()) / max(1.0, float(segmentation.head.sum()))
    return float(smoothstep(np.asarray((fraction - BALD_HAIR_FRACTION) / (2.0 * BALD_HAIR_FRACTION))))


def ears_uncovered(frame: _Frame, camera: Camera, size: int, segmentation) -> tuple[float, float]:
    """How much each ear (the subject's right, left) is bare, in [0, 1]: 1 - the photo's hair fraction around
    where the ear projects. An ear the camera does not face takes the other's reading; with no photo
    split, or neither ear seen, both are bare."""
    if segmentation is None:
        return 1.0, 1.0
    readings = []
    for side in (-1.0, 1.0):
        centre = frame.to_world(EAR_CENTRE * [side, 1.0, 1.0])
        outward = np.array([side, 0.0, 0.0])
        facing = float(outward @ (camera.position - centre) / np.linalg.norm(camera.position - centre))
        (px,), _ = camera.project(centre[None], size, size)
        x, y = int(round(px[0])), int(round(px[1]))
        r = max(2, int(round(0.02 * frame.px_per_model())))
        window = segmentation.hair[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
        if facing < -0.2 or window.size == 0:
            readings.append(None)
        else:
            readings.append(1.0 - float(window.mean()))
    seen = [r for r in readings if r is not None]
    if not seen:
        return 1.0, 1.0
    return tuple(seen[0] if r is None else r for r in readings) if len(seen) == 1 else tuple(readings)


def _ear_direction(side: float) -> np.ndarray:
    """(3,) unit direction from the cranium's centre to one ear's pinna (side -1: the subject's right)."""
    toward = EAR_CENTRE * [side, 1.0, 1.0] - CRANIUM_CENTRE
    return toward / np.linalg.norm(toward)


def _ear_directions(dirs: np.ndarray, uncovered: tuple[float, float]) -> np.ndarray:
    """(N_LAT, N_LON) in [0, 1]: directions (about the cranium's centre) through a bare ear and its root: the hollow
    the hair shell leaves for the pinna to stand out of."""
    out = np.zeros(dirs.shape[:-1])
    for side, bare in zip((-1.0, 1.0), uncovered):
        toward = _ear_direction(side)
        # Full within 15 degrees of the ear's direction, fading out by 45 (a soft hollow, not a notch).
        angle = np.degrees(np.arccos(np.clip(dirs @ toward, -1.0, 1.0)))
        out = np.maximum(out, bare * smoothstep((45.0 - angle) / 30.0))
    return out


EAR_SKIN_DEGREES = (12.0, 18.0)
"""Half-width and half-height (degrees about the cranium's centre) of the skin a bare ear keeps clear of hair: the
pinna's own (from 15 degrees below the ear's direction to 21 above, see :data:`EAR_SKIN_RAISE`). The hair comes down
to it all round, as short hair does; the shell's wider hollow (:func:`_ear_directions`) only shapes the geometry."""
EAR_SKIN_RAISE = 3.0
"""Degrees the skin's ellipse is centred above the ear's direction: the pinna reaches higher above it than below."""
EAR_SKIN_FADE = 0.35
"""The hair's colour fades in over this share of :data:`EAR_SKIN_DEGREES` beyond them (at 0.5 of 14 and 22 degrees,
the pinna stood in a pale ring of skin a third of its width, like a shaved ring in short hair)."""


def _ear_skin(dirs: np.ndarray, uncovered: tuple[float, float]) -> np.ndarray:
    """(N_LAT, N_LON) in [0, 1]: directions whose surface a bare ear keeps as skin (not hair colour): an ellipse of
    :data:`EAR_SKIN_DEGREES` about each ear's direction, fading out over :data:`EAR_SKIN_FADE` of it."""
    out = np.zeros(dirs.shape[:-1])
    for side, bare in zip((-1.0, 1.0), uncovered):
        toward = _ear_direction(side)
        up = np.array([0.0, 1.0, 0.0]) - toward[1] * toward
        up /= np.linalg.norm(up)
        across = np.cross(up, toward)
        ahead = np.maximum(dirs @ toward, 1e-6)
        horizontal = np.degrees(np.arctan2(dirs @ across, ahead)) / EAR_SKIN_DEGREES[0]
        vertical = (np.degrees(np.arctan2(dirs @ up, ahead)) - EAR_SKIN_RAISE) / EAR_SKIN_DEGREES[1]
        inside = np.where(dirs @ toward > 0, np.hypot(horizontal, vertical), np.inf)
        out = np.maximum(out, bare * smoothstep((1.0 + EAR_SKIN_FADE - inside) / EAR_SKIN_FADE))
    return out


def _in_frame(frame: _Frame, dirs: np.ndarray, skull: np.ndarray, thickness: np.ndarray) -> np.ndarray:
    """The hair's radius map (model units), softly capped to stay inside every orbit camera's frame.

    The orbit cameras circle the world's y axis at PanoHead's distance: a point is inside the width of
    all their frames when it is within :data:`FRAME_RADIUS` of that axis. The cap is a smooth minimum
    (no flat facets), and never cuts into the skull.

    Args:
        frame: the fit's template-to-world map.
        dirs: (..., 3) unit directions about the cranium's centre.
        skull, thickness: (...) the skull's radius and the hair's thickness along them (model units).
    Returns:
        (...) the hair's outer radius (model units): ``skull + thickness`` where that is well inside the frames,
        about the frames' limit where it reaches past it, never less than ``min(skull, skull + thickness)``.
    """
    centre = frame.to_world(CRANIUM_CENTRE)
    k = frame.k
    dx, dz = dirs[..., 0], dirs[..., 2]
    # |centre_xz + k R d_xz| = FRAME_RADIUS, the larger root.
    a = k * k * (dx * dx + dz * dz)
    b = 2.0 * k * (centre[0] * dx + centre[2] * dz)
    c = centre[0] ** 2 + centre[2] ** 2 - FRAME_RADIUS**2
    root = np.sqrt(np.maximum(b * b - 4.0 * a * c, 0.0))
    side = np.where(a > 1e-12, (-b + root) / np.maximum(2.0 * a, 1e-12), np.inf)
    limit = np.maximum(side, skull)
    radius = skull + thickness
    soft = 0.01
    # softmin(r, L) = L - s log(1 + exp((L - r) / s)): r well inside the limit, L well beyond it. (The sign was once
    # the other way round: hair reaching past the limit came back inside it by as much, and the back of every head
    # whose skull touched the limit had a dish pressed into it, about 5 mm on the bearded man.) At the limit it lies
    # s log 2 inside, so it is held off the skull (or the pulled skull) by a plain maximum: where the skull itself
    # meets the limit it stays.
    capped = np.where(np.isfinite(limit), limit - soft * np.logaddexp(0.0, (limit - radius) / soft), radius)
    return np.maximum(capped, np.minimum(radius, skull))


DOME_ABOVE = 0.2
"""Sine of the latitude (about the cranium's centre) where the crown's dome starts: about 12 degrees,
near the top of the ears; it holds fully from :data:`DOME_FULL` (30 degrees)."""
DOME_FULL = 0.5
DOME_POWER = 2.5
"""Exponent of the dome's superellipse in each meridian plane (2: an ellipse; higher: squarer shoulders)."""
DOME_OVER = 0.02
"""How far (a share of the dome's radius) the hair may stand out of the crown's dome."""
OVERHANG = 0.02
"""How far (a share of the radius) the hair beside the head may reach out beyond the hair below it."""


def crown_dome(
    dirs: np.ndarray, skull: np.ndarray, thickness: np.ndarray, shell: np.ndarray, seen: np.ndarray
) -> tuple[np.ndarray, dict]:
    """Hold the hair's outer radius on the crown under a smooth dome: no lobes at its upper corners.

    Two rules. First, beside the head the hair does not overhang: in each meridian plane the hair's
    horizontal reach ``(skull + shell t) cos(lat)`` may not grow with height above the cranium's centre
    (the running minimum from latitude 0 up, plus :data:`OVERHANG` of the radius), on the sides from 35
    degrees of longitude, not within 12 degrees of straight ahead or behind, and only as far as the
    photo's outline did not decide the thickness there (``seen``: a profile's outline is its own). Without it
    full-thickness hair stood right above a bare ear or the temple's hairline, where the shell fades out,
    and the head seen from the front or back grew two lobes above narrower temples.

    Second, in each meridian plane the dome is the quarter superellipse (exponent :data:`DOME_POWER`) through
    the hair's outline where the crown starts (latitude ``asin(DOME_ABOVE)``, the sides above the ears) and
    through the top of the head (the hair's mean radius within 10 degrees of the pole, or the height of the
    highest hair the photo's outline decided, if higher: a crop that cut the top). Where the photo's
    outline has corners (a spiky hairdo, a mask that took in the background's corners) or where hair
    carried round from the sides stands above a thinner top the photo saw (a turned, balding head), the
    radius ``R = skull + t`` leaves the dome and two lobes grow at the crown's upper corners; there ``t``
    is cut back to ``(1 + DOME_OVER)`` times the dome, fading in with height. The skull is never cut.

    Args:
        dirs: (N_LAT, N_LON, 3) unit directions about the cranium's centre (:func:`direction_grid`).
        skull, thickness: (N_LAT, N_LON) skull radius and hair thickness (model units).
        shell: (N_LAT, N_LON) in [0, 1], how much of the thickness the shell grows (0 below the hairline
            and over a bare ear).
        seen: (N_LAT, N_LON) in [0, 1), how much the photo's outline decided the thickness.
    Returns:
        ``(thickness, info)``: the new thickness map, and the top's radius and the largest cut (model
        units) for the stage record.
    """
    lat = np.arcsin(np.clip(dirs[:, 0, 1], -1.0, 1.0))  # (N_LAT,)
    # 1. No overhang beside the head.
    cos_lat = np.cos(lat)[:, None]
    outer = skull + shell * np.maximum(thickness, 0.0)
    up = lat >= 0.0
    reach = np.minimum.accumulate((outer * cos_lat)[up], axis=0)
    allowed_outer = np.full(skull.shape, np.inf)
    allowed_outer[up] = reach / cos_lat[up] * (1.0 + OVERHANG)
    sin_lon = np.abs(dirs[..., 0]) / np.maximum(np.hypot(dirs[..., 0], dirs[..., 2]), 1e-9)
    sideways = smoothstep((sin_lon - 0.2) / 0.4)  # 0 within 12 degrees of straight ahead or behind
    over = np.maximum(outer - allowed_outer, 0.0)
    overhang_cut = np.where(shell > 0.05, sideways * (1.0 - seen) * over / np.maximum(shell, 0.05), 0.0)
    overhang_cut = np.minimum(overhang_cut, np.maximum(thickness, 0.0))
    thickness = thickness - overhang_cut
    # 2. The dome.
    radius = skull + thickness
    top = float(radius[lat > np.radians(80.0)].mean())
    # Where the crop cut the top of the hair the photo did not see it: the dome is at least as high as the
    # hair the photo saw on the crown.
    seen_crown = (seen > 0.5) & (np.sin(lat)[:, None] > DOME_ABOVE)
    if seen_crown.any():
        top = max(top, float((radius * np.sin(lat)[:, None])[seen_crown].max()))
    base_row = int(np.argmin(np.abs(np.sin(lat) - DOME_ABOVE)))
    sin_b, cos_b = np.sin(lat[base_row]), np.cos(lat[base_row])
    base = radius[base_row]  # (N_LON,)
    p = DOME_POWER
    # The half-width W of each meridian's superellipse (cos/W)^p + (sin/H)^p = 1/R^p through its base point.
    rest = base**-p - (sin_b / top) ** p
    width = np.where(rest > 1e-12, cos_b / np.maximum(rest, 1e-12) ** (1.0 / p), base * cos_b)
    c, s = np.abs(np.cos(lat))[:, None], np.abs(np.sin(lat))[:, None]
    dome = ((c / width[None, :]) ** p + (s / top) ** p) ** (-1.0 / p)
    cap = (1.0 + DOME_OVER) * dome - skull
    fade = smoothstep((np.sin(lat)[:, None] - DOME_ABOVE) / (DOME_FULL - DOME_ABOVE))
    cut = fade * np.maximum(thickness - np.maximum(cap, np.minimum(thickness, 0.0)), 0.0)
    info = {
        "crown_top_radius": round(top, 4),
        "crown_dome_cut": round(float(cut.max()), 4),
        "crown_overhang_cut": round(float(overhang_cut.max()), 4),
    }
    return thickness - cut, info


def profile_share(yaw: float) -> float:
    """How much a photo whose camera has this yaw (degrees) counts as a profile: 0 up to :data:`PROFILE_TURN`'s
    first value, 1 from its second, a smoothstep between.

    A profile's outline is the head's mid-plane: the crown, the back, the forehead. It shows nothing of the head's
    width, and the hair thickness it shows there (where the crown stands above the template's skull: a high vault,
    or hair on top) is no reading of the hair beside the head. :func:`fit_shape` scales what it carries onto the
    unseen sides by ``1 - share * d_x ** 2`` (``d_x``: a direction's left-right part), so a profile's sides are
    the skull's, sized by the face. Carried round in full, the balding man in profile (72 degrees; his crown's
    outline about 23 mm over the skull) got 20 mm of hair on each side, and his head seen from the front was a
    mushroom over a narrow face; Lee Perry-Smith's scan with its vault raised, photographed at 72 degrees, came
    out 6 % too wide 60 mm above the eyes and 10 % at 80 (now +1.1 % and +3.8 %, aligned as the benchmark now
    aligns, both ways; the old code +10.0 % and +14.1 % so aligned).
    """
    start, full = PROFILE_TURN
    return float(smoothstep(np.asarray((abs(yaw) - start) / (full - start))))


def _spread(
    dirs: np.ndarray, points: np.ndarray, values: np.ndarray, weights: np.ndarray, prior, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Kernel average of constraint ``values`` at ``points`` over ``dirs``, pulled to ``prior`` far from them.

    ``prior``: a float or a map like ``dirs[..., 0]``. Returns the average and how much the constraints
    decided it (in [0, 1), 0 where only the prior speaks), both ``dirs.shape[:-1]``.
    """
    flat = dirs.reshape(-1, 3)
    prior = np.broadcast_to(np.asarray(prior, dtype=np.float64), dirs.shape[:-1]).ravel()
    out, seen = np.empty(len(flat)), np.empty(len(flat))
    prior_weight = 0.3
    for start in range(0, len(flat), 2048):
        kernel = np.exp((flat[start : start + 2048] @ points.T - 1.0) / sigma**2) * weights
        total = kernel.sum(1)
        out[start : start + 2048] = (kernel @ values + prior_weight * prior[start : start + 2048]) / (
            total + prior_weight
        )
        seen[start : start + 2048] = total / (total + prior_weight)
    return out.reshape(dirs.shape[:-1]), seen.reshape(dirs.shape[:-1])


def fit_shape(
    fit: FitResult,
    camera: Camera,
    size: int,
    segmentation=None,
    voxel: float = 0.005,
    passes: int = 3,
    photo: np.ndarray | None = None,
) -> HeadShape:
    """Build the photo's head: the fitted template skull and a hair volume fitted to the head mask's outline.

    Args:
        fit: the landmark fit of the template (scale, shift and face warp).
        camera: the photo's camera.
        size: side of the aligned photo (pixels).
        segmentation: :class:`portrait3d.preprocess.hair.HeadSegmentation` of the photo, or None
            (then the hair is a thin default layer).
        voxel: marching-cubes grid spacing (world units).
        passes: fits of the thickness to the outline (each one after the first corrects the last's error).
        photo: (S, S, 3) uint8 aligned photo, to follow hair that hangs below the chin
            (:mod:`portrait3d.proxy.long_hair`); without it the hair ends at the neck.
    """
    frame = _frame(fit, camera, size)
    dirs = direction_grid()
    fall = None
    if photo is not None and segmentation is not None:
        lengths = meridian_lengths(hanging_lengths(photo, segmentation, frame), dirs)
        if lengths is not None:
            fall = (lengths, fall_weight(dirs))
    skull = skull_radius(dirs)
    surface = CRANIUM_CENTRE + skull[..., None] * dirs
    angles = np.radians(np.arange(0.0, 360.0, 0.5))
    # The first meridian is the subject's right (x < 0), the last the left.
    falls_to = None if fall is None else [round(float(fall[0][0]), 3), round(float(fall[0][-1]), 3)]
    info: dict = {"outline_constraints": 0, "hair_falls_to": falls_to}
    if segmentation is not None:
        target, valid = outline_radii(segmentation.head, frame.centre_px, angles, segmentation.chin_row)
        side = _side_hairline(segmentation, frame, angles, target, valid)
    else:
        target, valid, side = None, None, None
    allowed = hair_region(surface.reshape(-1, 3), side).reshape(skull.shape)
    # The shell fades in over a wider band above the hairline than the hair colour does.
    shell = hair_region(surface.reshape(-1, 3) - [0.0, 0.035, 0.0], side, softness=0.045).reshape(skull.shape)
    # Ears the photo shows (or does not show covered by hair) stand out of the hair shell.
    readings = ears_uncovered(frame, camera, size, segmentation)
    info["ears_uncovered"] = [round(u, 2) for u in readings]
    uncovered = tuple(bareness(u) for u in readings)
    ear_map = _ear_directions(dirs, uncovered)
    # The hair's colour comes down to the pinna; the shell keeps clear of a wider hollow around it. On a turned photo
    # the hair seen beside the face lies behind the near ear, and the temple in front of it keeps the template's
    # hairline (only the colour: the shell there shapes the outline the photo does see).
    turn = camera.angles(target=(0.0, 0.0, 0.0)).yaw
    painted = hair_region(surface.reshape(-1, 3), side, turn=turn).reshape(skull.shape)
    coloured = painted * (1.0 - _ear_skin(dirs, uncovered))
    allowed, shell = allowed * (1.0 - ear_map), shell * (1.0 - ear_map)
    info["side_hairline"] = None if side is None else round(side, 4)
    behind = smoothstep((-dirs[..., 2] - 0.1) / 0.7)  # 0 at the sides, 1 straight behind
    sides = smoothstep((0.5 - dirs[..., 2]) / 0.5)  # 0 in front (azimuth < 60 deg), 1 from the sides back
    # 0 at the lower hairline, 1 a taper's height above it.
    nape = hair_region(surface.reshape(-1, 3) - [0.0, NAPE_TAPER, 0.0], side, softness=NAPE_TAPER).reshape(skull.shape)
    nape = smoothstep(nape)

    flat = dirs.reshape(-1, 3)
    a, b = flat @ frame.right, flat @ frame.down
    limb = np.hypot(a, b)
    alpha = np.mod(np.arctan2(b, a), 2 * np.pi)
    index = np.round(alpha / (angles[1] - angles[0])).astype(int) % len(angles)
    weight = np.clip((limb - 0.93) / 0.06, 0.0, 1.0)
    if target is not None:
        weight *= valid[index] * (allowed.ravel() > 0.3)
    else:
        weight[:] = 0.0
    used = weight > 0
    info["outline_constraints"] = int(used.sum())
    px_per_model = frame.px_per_model()
    goal = target[index] / np.maximum(limb, 1e-6) / px_per_model if target is not None else None
    correction = np.zeros(len(flat))
    mesh = None
    for pass_index in range(max(1, passes)):
        final = pass_index == max(1, passes) - 1 or not used.any()
        if used.any():
            t_seen = goal[used] + correction[used] - skull.ravel()[used]
            prior = float(np.median(t_seen))
            mirrored = flat[used] * [-1.0, 1.0, 1.0]
            points = np.concatenate([flat[used], mirrored])
            values = np.clip(np.concatenate([t_seen, t_seen]), MIN_THICKNESS, MAX_THICKNESS)
            # The mirrored side only speaks where the photo does not (a turned head's far side).
            w = np.concatenate([weight[used], MIRROR_WEIGHT * weight[used]])
            # Where the photo says nothing behind the head, the hair lies flatter than the volume it
            # shows at the sides (a bob is fullest beside the face), and it thins out toward the nape.
            prior_map = float(np.clip(prior, 0.0, MAX_THICKNESS)) * (1.0 - BACK_THINNING * behind)
            thickness, seen = _spread(dirs, points, values, w, prior_map, SPREAD)
            thickness = thickness * (1.0 - (1.0 - seen) * behind * (1.0 - nape))
            # A profile shows nothing of the head's width: the unseen sides keep the skull (see profile_share).
            thickness = thickness * (1.0 - profile_share(turn) * (1.0 - seen) * dirs[..., 0] ** 2)
            # Beside and behind the head the hair's underside slopes into the neck.
            drape = sides
        else:
            thickness = np.full(skull.shape, DEFAULT_THICKNESS)
            drape = np.zeros(skull.shape)
        thickness = np.clip(thickness, MIN_THICKNESS, MAX_THICKNESS)
        if used.any():
            # The crown is a dome: no lobes at its upper corners (seen or carried there from the sides).
            thickness, dome_info = crown_dome(dirs, skull, thickness, shell, seen)
            info.update(dome_info)
        if used.any():  # the thin default layer is left as it is
            thickness = np.minimum(thickness, _in_frame(frame, dirs, skull, thickness) - skull)
        # Earlier passes only measure the outline: a grid twice as coarse is enough.
        mesh = _mesh(frame, fit, skull, thickness, shell, voxel if final else 2 * voxel, drape, fall)
        if final:
            break
        # Correct the constraints by how far the meshed outline misses the photo's.
        from portrait3d.render import MeshRenderer

        silhouette = np.isfinite(MeshRenderer(mesh).render_depth(camera, size))
        got, got_valid = outline_radii(silhouette, frame.centre_px, angles, segmentation.chin_row)
        miss = np.where(got_valid & valid, target - got, 0.0)
        correction += miss[index] / np.maximum(limb, 1e-6) / px_per_model
    radius = skull + shell * thickness
    info["hair_thickness_median"] = round(float(np.median(thickness[allowed > 0.5])), 4) if (allowed > 0.5).any() else 0
    model_vertices = (np.asarray(mesh.vertices) - frame.b) / frame.k  # warp ignored: it only moves the face
    rel = model_vertices - CRANIUM_CENTRE
    unit = rel / np.maximum(np.linalg.norm(rel, axis=1, keepdims=True), 1e-9)
    hair = sample_map(coloured, unit)
    # Surface outside the skull is hair whatever the hairline says (:func:`outside_hair`), but for a bare ear itself
    # (its rim flares out of the skull behind the shell's hollow).
    outside = np.linalg.norm(rel, axis=1) - sample_map(skull, unit)
    ear = ear_weight(model_vertices)
    bare_ear = ear * np.where(model_vertices[:, 0] < 0, uncovered[0], uncovered[1])
    if fall is not None:  # the fall's surface, outside the neck, is hair
        allowed = np.maximum(allowed, hanging_directions(dirs, *fall, reach=FALL_REACH))
    hair = np.maximum(hair, outside_hair(outside, sample_map(allowed, unit)) * (1 - bare_ear))
    # A photo that shows (almost) no hair is a bald or shaved head: skin all round; the shell is its skull.
    presence = hair_presence(segmentation)
    info["hair_presence"] = round(presence, 3)
    hair = hair * presence
    ears = ear * (1.0 - hair)
    # A bare ear's pinna has texels of its own; a covered one is hair's, as the hair shell around it.
    bare_side = np.where(model_vertices[:, 0] < 0, uncovered[0], uncovered[1]) >= 0.5
    pinna = pinna_weight(model_vertices) * bare_side
    info.update(vertices=len(mesh.vertices), radius_max=round(float(radius.max()), 4))
    return HeadShape(mesh, np.clip(hair, 0.0, 1.0), ears, pinna, thickness, info)


OUTSIDE_HAIR = (HAIR_FILLET / 4, 0.01)
"""Height (model units) over the skull from which the surface is hair whatever the hairline says (above the smooth
union's swell where the hair shell lies on the skull), and the height over which it becomes hair fully (see
:func:`outside_hair`)."""
OUTSIDE_HAIR_SHELL = (0.05, 0.3)
"""The hair shell's weight (``allowed``) from which the surface outside the skull is hair, and fully from."""


def outside_hair(outside: np.ndarray, shell: np.ndarray) -> np.ndarray:
    """How much of a surface point standing ``outside`` (model units) over the skull, where the hair shell's weight is
    ``shell``, is hair whatever the hairline says (a fringe, hair over the ears): (V,), (V,) -> (V,) in [0, 1].

    Both ramps are soft, and the first starts above the smooth union's swell (:data:`OUTSIDE_HAIR`). Counted from the
    skull and cut at a shell weight of 0.05, the lower edge of every haired head's hair was a band of 0.4 hair (the
    swell, where the shell sinks into the skull at the nape) ending in a jagged line where the 3-degree map crossed
    0.05: a grey collar under the hair in every back view.
    """
    height = np.clip((outside - OUTSIDE_HAIR[0]) / OUTSIDE_HAIR[1], 0.0, 1.0)
    start, full = OUTSIDE_HAIR_SHELL
    return height * smoothstep((shell - start) / (full - start))


def _mesh(
    frame: _Frame,
    fit: FitResult,
    skull: np.ndarray,
    thickness: np.ndarray,
    allowed: np.ndarray,
    voxel: float,
    drape: np.ndarray | None = None,
    fall: tuple[np.ndarray, np.ndarray] | None = None,
) -> trimesh.Trimesh:
    """Marching cubes over the skull joined with the hair shell (model units), placed in the world.

    The shell's radius is ``skull + A t``: its thickness fades to nothing at the
    hairline, so it meets the skull tangentially (no shelf over the forehead);
    a negative ``t`` pulls the skull in along the rays from the cranium's centre
    instead. Where ``drape`` (in [0, 1]) says so, the hair hangs from the head's
    widest point and comes down onto the skull (:func:`_drape`) instead of following
    the hollow of the nape; with ``fall`` (each meridian's length and weight,
    :mod:`portrait3d.proxy.long_hair`) it goes on falling below the jaw.
    """
    import mcubes
    from scipy.ndimage import gaussian_filter

    # Where there is no hair, keep the shell inside the skull and the skull unpulled, so the
    # template's own surface (nose, ears, jaw: not star-shaped) is left alone.
    # Soften where the hair starts, most of all across azimuth, where the side hair's front edge would
    # otherwise stand as a wall beside the cheek.
    allowed = gaussian_filter(allowed, (1.0, 2.5), mode=("nearest", "wrap"))
    # A negative thickness lowers the shell with the pulled skull (at the skull, it would put back what the pull took).
    grow = skull + allowed * thickness - 0.03 * (1.0 - allowed)
    # Where the photo's outline lies inside the skull the skull is pulled in along the rays from the cranium's centre
    # (blurred as the shell is below). Intersected with a trimmed radius map instead, the skull had a step wherever
    # the trim ended: fins behind the ears, a disc at the back of the head, grooves along the hairline, in every lit
    # view of the mesh.
    dent = gaussian_filter(allowed * np.minimum(thickness, 0.0), 1.0, mode=("nearest", "wrap"))
    lifted = np.zeros(grow.shape, bool)
    if drape is not None:
        # The drape comes down onto the skull as pulled in (the unpulled one left a ledge over the dent).
        grow, lifted = _drape(grow, skull + dent, allowed, drape)
    if fall is not None:
        grow, hung = hang(grow, *fall)
        lifted |= hung
    # Below the hair (the neck) the radial map means nothing.
    grow = np.where((allowed > 1e-3) | lifted, grow, 0.0)
    # A little blur across cells: bilinear lookups of a 3-degree map would leave creases.
    grow = gaussian_filter(grow, 1.0, mode=("nearest", "wrap"))

    def field_fn(p: np.ndarray) -> np.ndarray:
        rel = p - CRANIUM_CENTRE
        dist = vector_length(rel)
        unit = rel / np.maximum(dist, 1e-9)[:, None]
        # The template's field at the point as far out as the dent pulls the skull in: its zero set is the skull
        # moved inward by the dent, exactly, and unmoved where there is none.
        inward = sample_map(dent, unit)
        moved = inward < 0.0
        ears = ear_distances(p)
        pulled, pulled_ears = p, ears
        if moved.any():
            # The ears' distances are most of the field's cost: only the moved points need them again.
            pulled = p.copy()
            pulled[moved] = CRANIUM_CENTRE + unit[moved] * (dist[moved] - inward[moved])[:, None]
            pulled_ears = tuple(e.copy() for e in ears)
            for whole, part in zip(pulled_ears, ear_distances(pulled[moved])):
                whole[moved] = part
        trimmed = head_sdf(pulled, pulled_ears)
        # The ears are joined back after the pull: pulled in with the skull on a 3-degree map, their rims came out in
        # steps.
        trimmed = np.minimum(trimmed, np.minimum(*ears))
        return smooth_union(trimmed, dist - sample_map(grow, unit), HAIR_FILLET)

    step = voxel / frame.k
    reach = up = float(grow.max())
    if fall is not None:
        # A fall's radii grow without bound toward its foot (a vertical line seen from the centre): size the grid by
        # the volume's reach across and above the centre instead, with room for the smooth union's swell on top.
        lat = np.arcsin(np.clip(direction_grid()[..., 1], -1.0, 1.0))
        reach = float((grow * np.cos(lat)).max())
        up = float((grow * np.maximum(np.sin(lat), 0.0)).max()) + 0.02
    lo = np.array([min(-0.19, -reach - 0.01), NECK_BOTTOM - 0.02, min(-0.22, CRANIUM_CENTRE[2] - reach - 0.01)])
    hi = np.array([max(0.19, reach + 0.01), max(0.25, CRANIUM_CENTRE[1] + up + 0.01), 0.22])
    axes = [np.arange(a, b + step, step) for a, b in zip(lo, hi)]
    sdf = _narrow_band_sdf(axes, step, field=field_fn)
    verts, faces = mcubes.marching_cubes(-sdf, 0.0)
    mesh = _finer_ears(trimesh.Trimesh(lo + verts * step, faces, process=True), field_fn, step)
    parts = mesh.split(only_watertight=False)
    if len(parts) > 1:
        mesh = max(parts, key=lambda m: len(m.faces))
    if mesh.volume < 0:
        mesh.invert()
    return trimesh.Trimesh(_placed(frame, fit, np.asarray(mesh.vertices), skull, allowed), mesh.faces, process=False)


HAIR_WARP_DEPTH = 0.005
"""Depth (model units) outside the skull from which the hair takes the warp of the skull beneath it (see
:func:`_placed`)."""


def _placed(frame: _Frame, fit: FitResult, model: np.ndarray, skull: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """World positions of mesh vertices in model units, moved by the fit's warp: (V, 3) -> (V, 3).

    The warp puts the face onto the landmarks and fades out past it; beside a face narrower than the template's it
    moves the temples inward by up to 2 cm. Taken point by point in the hair beside the face, it moved the hair's
    inner surface more than its outer one, and the shell's front edge leant over the cheek: seen from the middle of
    the texture's longitude/latitude map, that surface lay in front of another and shared its texels (rings of hair
    colour at the temples of every frontal view of the long-haired woman). The hair outside the skull (``allowed``,
    the shell's (N_LAT, N_LON) map) takes the warp of the skull point beneath it, so each column of hair moves as one.
    """
    vertices = frame.to_world(model)
    if fit.warp is None:
        return vertices
    rel = model - CRANIUM_CENTRE
    dist = vector_length(rel)
    unit = rel / np.maximum(dist, 1e-9)[:, None]
    base = sample_map(skull, unit)
    beneath = np.where((dist > base)[:, None], CRANIUM_CENTRE + unit * base[:, None], model)
    # Fully from a tenth of the shell's weight and half a centimetre out; the skin, the face and the pinnae (which
    # stand out of the skull) keep their own.
    share = np.clip(sample_map(allowed, unit) / 0.1, 0.0, 1.0) * np.clip((dist - base) / HAIR_WARP_DEPTH, 0.0, 1.0)
    share = share * (1.0 - pinna_weight(model))
    own, anchored = fit.warp(vertices), fit.warp(frame.to_world(beneath))
    return vertices + own + share[:, None] * (anchored - own)


EAR_REFINE_REACH = 0.01
"""Model units from a pinna within which the mesh's triangles are split (:func:`_finer_ears`)."""


def _finer_ears(mesh: trimesh.Trimesh, field, step: float) -> trimesh.Trimesh:
    """``mesh`` (model units) with its triangles near the pinnae split and the new vertices put on ``field``'s
    surface: the ear's rim, grooves and bowls are a few grid cells across (:mod:`portrait3d.proxy.ear_shape`)."""
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    near = np.minimum(pinna_distance(vertices, -1.0), pinna_distance(vertices, 1.0)) < EAR_REFINE_REACH
    chosen = near[faces].any(axis=1)
    if not chosen.any():
        return mesh
    vertices, faces = refine_faces(vertices, faces, chosen)
    # The new corners, and the grid's own vertices near a pinna (on the grid's straight edges between samples).
    moving = np.zeros(len(vertices), bool)
    moving[len(mesh.vertices) :] = True
    moving[: len(near)] |= near
    vertices[moving] = onto_surface(vertices[moving], field, largest_move=step)
    return trimesh.Trimesh(vertices, faces, process=False)


def _drape(radius: np.ndarray, skull: np.ndarray, allowed: np.ndarray, weight: np.ndarray):
    """Fill the hollow under the back of the hair down to the nape, meridian by meridian.

    In each meridian's plane the outline below the head's widest point is raised to a curve from that point down to
    the skull's surface, at most :data:`NAPE_DROP` degrees below the lowest hair (where ``allowed`` is 1/2), by
    ``weight``: the back of the head slopes into the neck, as hair over the nape does, instead of ending in a ledge
    over the hollow above the neck (:func:`_hanging_outline`). The curve (:func:`_nape_curve`) leaves the widest
    point straight down and meets the skull along its surface; a straight chord to a fixed latitude met both at an
    angle, and every lit view of a haired head showed a ridge round the back of the head and a crease from behind
    the ear down to the nape. Below the curve's foot the hair goes on along the skull, sinking into it by
    :data:`HAIR_FILLET` over :data:`FOOT_SINK` degrees: the union of hair and head swells where they coincide, and
    where the hair dropped inside at once a ledge 2.5 mm high ran round the back of every short-haired head.

    Returns:
        ``(radius, lifted)``: the new (N_LAT, N_LON) radius map and where it was raised (bool).
    """
    lat = np.radians(-90 + (np.arange(N_LAT) + 0.5) * 180 / N_LAT)
    out = radius.copy()
    lifted = np.zeros(radius.shape, bool)
    drop = int(round(NAPE_DROP * N_LAT / 180))
    sink_rows = max(int(round(FOOT_SINK * N_LAT / 180)), 1)
    for j in range(radius.shape[1]):
        rows = np.nonzero(allowed[:, j] >= 0.5)[0]
        if len(rows) == 0 or weight[:, j].max() < 1e-3:
            continue
        low = rows.min()
        upper = np.arange(low, N_LAT)[lat[low:] < np.radians(30.0)]
        if len(upper) < 2:
            continue
        widest = upper[np.argmax(radius[upper, j] * np.cos(lat[upper]))]
        end = max(low - drop, 1)
        if end >= widest:
            continue
        between = np.arange(end, widest)
        base = np.where(allowed[between, j] > 1e-3, radius[between, j], skull[between, j])
        target = _hanging_outline(
            radius[widest, j], lat[widest], base, lat[end - 1 : widest], skull[end - 1 : widest, j]
        )
        lift = weight[between, j] * np.maximum(target - base, 0.0)
        out[between, j] = np.where(lift > 1e-5, base + lift, radius[between, j])
        lifted[between, j] = lift > 1e-5
        if not lifted[between, j].any():
            continue
        foot = between[np.argmax(lifted[between, j])]
        # The curve touches the skull one row below its lowest lifted row: from there down, along the skull and into it.
        sink = np.arange(foot - 1, max(foot - 2 - sink_rows, -1), -1)
        along = skull[sink, j] - HAIR_FILLET * np.arange(len(sink)) / sink_rows
        rise = weight[sink, j] * np.maximum(along - out[sink, j], 0.0)
        out[sink, j] += rise
        lifted[sink, j] |= rise > 1e-5
    return out, lifted


def _hanging_outline(
    top: float, top_lat: float, base: np.ndarray, skull_lats: np.ndarray, skull: np.ndarray
) -> np.ndarray:
    """Radii (A,) of one meridian's hair outline at latitudes ``skull_lats[1:]``, from the nape up to its widest point.

    ``base`` (A,): the radii below the widest point (at radius ``top``, latitude ``top_lat``), from the lowest up;
    ``skull`` (A + 1,): the skull's radii at ``skull_lats`` (A + 1,), one grid step below ``base``'s lowest
    latitude and then at each of its latitudes. The outline falls from the lowest point that reaches further out
    than everything below it, along :func:`_nape_curve`, and above that point it hangs straight down from whatever
    reaches furthest above it. The curve starts at the widest point when it passes outside everything below it; a
    bulge lower down (hair carried round from the sides lies thickest below the back of the skull) stood out of it
    as a ledge, and the curve then starts at that bulge. Below the curve's foot the outline is ``base``.
    """
    lats = skull_lats[1:]
    radii = np.append(base, top)
    all_lats = np.append(lats, top_lat)
    reach = radii * np.cos(all_lats)
    running = np.maximum.accumulate(reach)  # furthest reach at or below each latitude
    skull_points = _meridian_points(skull, skull_lats)
    # Candidate starts, from the top down: the widest point, then every point that reaches beyond all below it.
    starts = [len(base)] + [k for k in range(len(base) - 1, 0, -1) if reach[k] >= running[k]]
    for start in starts:
        foot, curve = _nape_curve(
            _meridian_points(radii[start], all_lats[start]), skull_points[: start + 1], lats[:start]
        )
        if np.all(curve[foot:] >= base[foot:start] - 1e-4):
            break
    hanging = running[start : len(base)] / np.cos(lats[start:])
    return np.concatenate([base[:foot], curve[foot:], hanging])


def _meridian_points(radius, latitude) -> np.ndarray:
    """Points (..., 2) of a meridian's plane, (horizontal reach, height) about the cranium's centre."""
    return np.stack([radius * np.cos(latitude), radius * np.sin(latitude)], axis=-1)


def _nape_curve(start: np.ndarray, skull: np.ndarray, lats: np.ndarray) -> tuple[int, np.ndarray]:
    """A meridian's curve from the hair's widest point down onto the skull: its foot and its radii at ``lats``.

    A cubic Hermite curve from ``start`` (2,) (a :func:`_meridian_points` point), leaving it straight down (the outline
    is vertical where it is widest), to the skull point (of ``skull`` (A + 1, 2), the first one grid step below
    ``lats`` (A,), the others at them) where the line from ``start`` touches the skull, arriving along it: the curve
    bulges out of that line, so it meets the skull tangentially and stays outside it. (Ending at a fixed latitude
    below the hair, it met the skull at an angle and every lit view of a haired head had a crease from behind the ear
    down to the nape.) Where the curve is not star-shaped about the centre (it turns back on its own ray), the line
    is used.

    Returns:
        ``(foot, radii)``: the index into ``lats`` of the foot, and (A,) radii, meaningful from ``foot`` up.
    """
    points = skull[1:]
    below = start[1] - points[:, 1]
    # The line from the start that touches the skull is the one leaning out furthest.
    lean = np.where(below > 1e-9, (points[:, 0] - start[0]) / np.maximum(below, 1e-9), -np.inf)
    foot = int(np.argmax(lean))
    end = points[foot]
    length = float(np.linalg.norm(end - start))
    along = skull[foot] - end
    # Tangents scaled by the chord's length (a standard Hermite choice): down at the start, along the skull at the end.
    leave = np.array([0.0, -length])
    arrive = along / max(float(np.linalg.norm(along)), 1e-12) * length
    s = np.linspace(0.0, 1.0, 129)[:, None]
    h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
    curve = h00 * start + h10 * leave + h01 * end + h11 * arrive
    angle = np.arctan2(curve[:, 1], curve[:, 0])
    if np.all(np.diff(angle) < 0):
        return foot, np.interp(lats, angle[::-1], np.linalg.norm(curve, axis=1)[::-1])
    # The line: the radius along a ray at angle a through start + u (end - start).
    edge = end - start
    u = _meridian_points(1.0, lats)
    denominator = u[:, 0] * edge[1] - u[:, 1] * edge[0]
    return foot, (start[0] * edge[1] - start[1] * edge[0]) / np.where(np.abs(denominator) > 1e-9, denominator, np.inf)


def silhouette_iou(mesh: trimesh.Trimesh, camera: Camera, segmentation, size: int | None = None) -> float:
    """IoU of the mesh's silhouette through ``camera`` and the photo's head mask, rows above the chin.

    Args:
        mesh: the head (world units).
        camera: the photo's camera.
        segmentation: :class:`portrait3d.preprocess.hair.HeadSegmentation` of the photo.
        size: render size (default the photo's).
    """
    from portrait3d.render import MeshRenderer

    size = size or segmentation.head.shape[0]
    silhouette = np.isfinite(MeshRenderer(mesh).render_depth(camera, size))
    above = np.arange(size)[:, None] < segmentation.chin_row
    photo, proxy = segmentation.head & above, silhouette & above
    return float((photo & proxy).sum() / max(1, (photo | proxy).sum()))


def mirror_iou(
    mesh: trimesh.Trimesh,
    mirrored: trimesh.Trimesh,
    yaws: tuple[float, ...] = (0.0, 45.0, 90.0, 135.0, 180.0, -45.0, -90.0),
    size: int = 256,
) -> float:
    """Worst silhouette IoU of ``mesh`` at yaw ``y`` and ``mirrored`` at yaw ``-y`` flipped left-right.

    ``mirrored`` is the head of the mirror image of ``mesh``'s photo; 1.0 means it is exactly the
    mirror of ``mesh`` from every one of ``yaws``.
    """
    from portrait3d.cameras import camera_from_angles
    from portrait3d.render import MeshRenderer

    a, b = MeshRenderer(mesh), MeshRenderer(mirrored)
    worst = 1.0
    for yaw in yaws:
        sa = np.isfinite(a.render_depth(camera_from_angles(yaw), size))
        sb = np.isfinite(b.render_depth(camera_from_angles(-yaw), size))[:, ::-1]
        worst = min(worst, float((sa & sb).sum() / max(1, (sa | sb).sum())))
    return worst
