"""Geometry of its own for the eyes and the mouth: sockets and a lip split in the head, eyeballs,
teeth, a tongue and a dark mouth cavity.

Every part is a :class:`Part`: vertices in the file's frame (metres), triangles, per-vertex
colours and the kind of motion the fields give it (``portrait3d.rig.fields.KINDS``). Parts that
sit behind the face are pushed behind the head's surface, so that the neutral head looks exactly
like the static asset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fields import FaceRig, smoothstep
from .landmarks3d import Face

SCLERA = (0.92, 0.9, 0.86)
PUPIL = (0.03, 0.03, 0.03)
TEETH, GUMS = (0.93, 0.9, 0.82), (0.75, 0.38, 0.38)
TONGUE, CAVITY = (0.62, 0.26, 0.27), (0.12, 0.03, 0.04)
EYE_RADIUS = 0.012
"""Adult eyeball radius (m); the cornea bulge is left out."""
IRIS_RADIUS = 0.0059
"""Adult iris radius (m, about 11.8 mm across) when the photo does not show it."""


@dataclass
class Part:
    name: str
    vertices: np.ndarray
    """(V, 3) float, file frame."""
    faces: np.ndarray
    """(F, 3) int."""
    colors: np.ndarray
    """(V, 3) float in [0, 1]."""
    kind: str


# --- the head: sockets and the lip split ------------------------------------------------------
def _inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N,) True where 2D ``points`` (N, 2) lie inside ``polygon`` (K, 2) (even-odd rule)."""
    inside = np.zeros(len(points), dtype=bool)
    x, y = points[:, 0], points[:, 1]
    for (x0, y0), (x1, y1) in zip(polygon, np.roll(polygon, -1, axis=0)):
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < at)
    return inside


def eye_polygon(face: Face, side: str) -> np.ndarray:
    """(K, 2) the eye opening's outline seen from the front (x, y)."""
    upper, lower = face.lids(side)
    return np.concatenate([upper, lower[::-1][1:-1]])[:, :2]


def eyeball_centre(face: Face, side: str, surface: Surface, radius: float = EYE_RADIUS) -> np.ndarray:
    """The eyeball's centre: behind the opening, its front 1 mm behind the head's surface there (the
    median depth of the surface inside the opening, which the socket cut removes)."""
    polygon = eye_polygon(face, side)
    lo, hi = polygon.min(axis=0), polygon.max(axis=0)
    grid = np.stack(np.meshgrid(np.linspace(lo[0], hi[0], 24), np.linspace(lo[1], hi[1], 12)), -1).reshape(-1, 2)
    inside = grid[_inside_polygon(grid, polygon)]
    depth = surface.depth(inside) if len(inside) else np.array([-np.inf])
    centre = face.eye_centre(side).copy()
    front = np.median(depth[np.isfinite(depth)]) if np.isfinite(depth).any() else centre[2]
    centre[2] = front - 0.001 - radius
    # Outside the opening the skin must cover the eyeball: sink it until it does (at most 1 cm).
    theta, phi = np.meshgrid(np.linspace(0.05, 1.3, 12), np.linspace(0.0, 2 * np.pi, 36, endpoint=False))
    unit = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)
    ball = centre + radius * unit.reshape(-1, 3)
    outside = ~_inside_polygon(ball[:, :2], polygon)
    if outside.any():
        skin = surface.depth(ball[outside, :2])
        poke = ball[outside, 2] - (skin - 0.0005)
        poke = poke[np.isfinite(poke)]
        if len(poke):
            centre[2] -= float(np.clip(poke.max(), 0.0, 0.01))
    return centre


def socket_faces(vertices: np.ndarray, faces: np.ndarray, face: Face, centres: dict[str, np.ndarray]) -> np.ndarray:
    """(F,) True for the head's triangles inside an eye opening (seen from the front) and in front of
    the eyeball's centre: cut out, so the eyeball shows through and the lids close over it."""
    centroids = vertices[faces].mean(axis=1)
    cut = np.zeros(len(faces), dtype=bool)
    for side in ("left", "right"):
        front = centroids[:, 2] > centres[side][2]
        cut |= front & _inside_polygon(centroids[:, :2], eye_polygon(face, side))
    return cut


def split_lips(vertices: np.ndarray, faces: np.ndarray, rig: FaceRig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split the head along the mouth line: vertices shared by triangles above and below the line,
    between the mouth corners, get a second copy for the triangles below.

    Returns:
        ``(copies, faces, side)``: (V',) index of each new vertex's original (V' >= V; the first V
        are the originals), (F, 3) triangles using the copies, (V',) the lower-side weight of each
        vertex (0 or 1 on the split, the smooth field elsewhere).
    """
    face, iod = rig.face, rig.iod
    side = rig.lower_side(vertices)
    line = rig._line
    centroids = vertices[faces].mean(axis=1)
    below = rig.lower_side(centroids) > 0.5
    x_lo, x_hi = line[0, 0] + 0.01 * iod, line[-1, 0] - 0.01 * iod
    y_line = np.interp(vertices[:, 0], line[:, 0], line[:, 1])
    near = (
        (vertices[:, 0] > x_lo)
        & (vertices[:, 0] < x_hi)
        & (np.abs(vertices[:, 1] - y_line) < 0.12 * iod)
        & (vertices[:, 2] > face.mouth_centre[2] - 0.2 * iod)
    )
    used_above = np.zeros(len(vertices), dtype=bool)
    used_below = np.zeros(len(vertices), dtype=bool)
    np.logical_or.at(used_above, faces[~below].ravel(), True)
    np.logical_or.at(used_below, faces[below].ravel(), True)
    seam = np.flatnonzero(near & used_above & used_below)
    copy_of = np.arange(len(vertices))
    new_index = {int(v): len(vertices) + i for i, v in enumerate(seam)}
    faces = faces.copy()
    for f in np.flatnonzero(below):
        for k in range(3):
            faces[f, k] = new_index.get(int(faces[f, k]), faces[f, k])
    copies = np.concatenate([copy_of, seam])
    side = side[copies].copy()
    side[seam] = 0.0
    side[len(vertices) :] = 1.0
    return copies, faces, side


# --- surface clearance ------------------------------------------------------------------------
class Surface:
    """Depth of the head's skin seen from the front, for pushing hidden parts behind it."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        import open3d as o3d

        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(
            o3d.core.Tensor(np.asarray(vertices, np.float32)), o3d.core.Tensor(np.asarray(faces, np.uint32))
        )
        self._o3c = o3d.core
        self.front = float(vertices[:, 2].max()) + 0.05

    def depth(self, xy: np.ndarray) -> np.ndarray:
        """(N,) z of the skin's frontmost point at each (x, y), -inf where there is none."""
        rays = np.zeros((len(xy), 6), np.float32)
        rays[:, :2], rays[:, 2], rays[:, 5] = xy, self.front, -1.0
        t = self._scene.cast_rays(self._o3c.Tensor(rays))["t_hit"].numpy()
        return np.where(np.isfinite(t), self.front - t, -np.inf)

    def behind(self, vertices: np.ndarray, margin: float) -> np.ndarray:
        """``vertices`` with every point at least ``margin`` behind the skin in front of it; a point with no skin in
        front of it (beside the head's outline, or in a hole of a coarse mesh) stays where it is. (It was sent to
        minus infinity: the GLB's JSON then held -Infinity, and Blender refused the file.)"""
        out = vertices.copy()
        skin = self.depth(out[:, :2])
        out[:, 2] = np.where(np.isfinite(skin), np.minimum(out[:, 2], skin - margin), out[:, 2])
        return out


# --- primitive meshes --------------------------------------------------------------------------
def _grid_faces(rows: int, cols: int, wrap: bool) -> np.ndarray:
    """Triangles of a rows x cols vertex grid (columns wrap around when ``wrap``)."""
    faces = []
    for r in range(rows - 1):
        for c in range(cols if wrap else cols - 1):
            a, b = r * cols + c, r * cols + (c + 1) % cols
            faces += [(a, a + cols, b), (b, a + cols, b + cols)]
    return np.asarray(faces, dtype=np.int64)


def eyeball(centre: np.ndarray, radius: float, iris_radius: float, iris_color, name: str, kind: str) -> Part:
    """A sphere looking down +z, with rings at the pupil's and the iris' edges so that vertex colours
    draw sharp circles. Vertices relative to ``centre`` (the eye bone's origin)."""
    iris = np.arcsin(min(iris_radius / radius, 0.9))
    pupil = 0.42 * iris
    polar = np.unique(
        np.concatenate(
            [
                np.linspace(0.0, pupil, 3),
                [pupil + 0.01],
                np.linspace(pupil + 0.02, iris, 4),
                [iris + 0.03],
                np.linspace(iris + 0.15, np.pi, 8),
            ]
        )
    )
    cols = 24
    phi = np.linspace(0.0, 2 * np.pi, cols, endpoint=False)
    theta = polar[:, None]
    verts = (
        np.stack(
            [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta) * np.ones_like(phi)], axis=-1
        ).reshape(-1, 3)
        * radius
    )
    faces = _grid_faces(len(polar), cols, wrap=True)
    angle = np.repeat(polar, cols)
    colors = np.where((angle <= pupil)[:, None], PUPIL, np.where((angle <= iris + 1e-9)[:, None], iris_color, SCLERA))
    # The iris darkens toward its rim (the limbal ring).
    rim = smoothstep(0.6 * iris, iris, angle)[:, None] * (angle <= iris + 1e-9)[:, None]
    colors = colors * (1.0 - 0.35 * rim)
    return Part(name, verts, _drop_degenerate(faces, verts), np.asarray(colors, dtype=np.float64), kind)


def _drop_degenerate(faces: np.ndarray, verts: np.ndarray) -> np.ndarray:
    a, b, c = (verts[faces[:, i]] for i in range(3))
    return faces[np.linalg.norm(np.cross(b - a, c - a), axis=1) > 1e-12]


def ellipsoid_cup(centre: np.ndarray, radii: np.ndarray, name: str, color, kind: str, back_only: bool) -> Part:
    """An ellipsoid (or, with ``back_only``, its back half, open toward +z): (V, 3) file frame."""
    rows, cols = 10, 24
    theta = np.linspace(0.0, np.pi / 2 if back_only else np.pi, rows)[:, None]
    phi = np.linspace(0.0, 2 * np.pi, cols, endpoint=False)
    # Pole at -z (the back); theta = pi/2 is the rim.
    unit = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), -np.cos(theta) * np.ones_like(phi)], -1)
    verts = (unit.reshape(-1, 3) * radii) + centre
    faces = _drop_degenerate(_grid_faces(rows, cols, wrap=True), verts)
    return Part(name, verts, faces, np.tile(color, (len(verts), 1)).astype(np.float64), kind)


def teeth_row(rig: FaceRig, upper: bool, surface: Surface) -> Part:
    """A horseshoe of teeth behind the lips (a thick ribbon along the dental arch), gums on top.
    The lower row's edge is at the mouth line, just behind the upper row, whose edge overlaps it."""
    face, iod = rig.face, rig.iod
    centre = face.mouth_centre
    half_width = 0.42 * face.mouth_width
    depth = 0.45 * iod  # how far back the molars go
    # Overbite: the upper incisors reach 2.5 mm below the mouth line, in front of the lower ones.
    front_z = centre[2] - (0.13 if upper else 0.19) * iod
    n = 17
    u = np.linspace(-1.0, 1.0, n)
    arch = np.stack([half_width * u, np.zeros(n), front_z - depth * u**2], axis=1)
    tangent = np.gradient(arch, axis=0)
    normal = np.stack([tangent[:, 2], np.zeros(n), -tangent[:, 0]], axis=1)  # outward, in the xz plane
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    height, thickness = 0.16 * iod, 0.05 * iod
    edge = centre[1] - (0.04 if upper else 0.0) * iod
    top, bottom = (edge + height, edge) if upper else (edge, edge - height)
    # Cross-section corners: outer-top, outer-bottom, inner-bottom, inner-top.
    corners = [(0.5, top), (0.5, bottom), (-0.5, bottom), (-0.5, top)]
    verts = np.concatenate(
        [
            np.column_stack(
                [arch[:, 0] + k * thickness * normal[:, 0], np.full(n, y), arch[:, 2] + k * thickness * normal[:, 2]]
            )
            for k, y in corners
        ]
    )
    # Vertex layout: ring r (one corner) x position i -> r * n + i; the four rings wrap around.
    faces = []
    for r in range(4):
        r2 = (r + 1) % 4
        for i in range(n - 1):
            a, b, c, d = r * n + i, r * n + i + 1, r2 * n + i, r2 * n + i + 1
            faces += [(a, c, b), (b, c, d)]
    for i in (0, n - 1):  # end caps
        ring = [r * n + i for r in range(4)]
        faces += [(ring[0], ring[1], ring[2]), (ring[0], ring[2], ring[3])]
    gum_y = top - 0.3 * height if upper else bottom + 0.3 * height
    colors = np.where(((verts[:, 1] > gum_y) if upper else (verts[:, 1] < gum_y))[:, None], GUMS, TEETH)
    # Molars a little darker than the incisors (less light reaches them).
    colors = colors * (1.0 - 0.35 * np.abs(np.tile(u, 4)))[:, None]
    verts = surface.behind(verts, 0.004)
    kind = "upper" if upper else "lower"
    return Part("teeth_upper" if upper else "teeth_lower", verts, np.asarray(faces), colors, kind)


def tongue(rig: FaceRig, surface: Surface) -> Part:
    face, iod = rig.face, rig.iod
    centre = face.mouth_centre + np.array([0.0, -0.14 * iod, -0.42 * iod])
    radii = np.array([0.3 * face.mouth_width, 0.08 * iod, 0.32 * iod])
    part = ellipsoid_cup(centre, radii, "tongue", TONGUE, "lower", back_only=False)
    part.vertices = surface.behind(part.vertices, 0.005)
    return part


def cavity(rig: FaceRig, surface: Surface) -> Part:
    """The mouth's inside: a dark cup behind the lips, open toward them; its lower half follows the jaw."""
    face, iod = rig.face, rig.iod
    centre = face.mouth_centre + np.array([0.0, -0.05 * iod, -0.16 * iod])
    radii = np.array([0.6 * face.mouth_width, 0.42 * iod, 0.75 * iod])
    part = ellipsoid_cup(centre, radii, "mouth_cavity", CAVITY, "cavity", back_only=True)
    part.vertices = surface.behind(part.vertices, 0.003)
    return part


# --- eyes from the photo ----------------------------------------------------------------------
def iris_from_photo(photo: np.ndarray, pixels: np.ndarray, side: str) -> tuple[np.ndarray, float]:
    """Iris colour (3,) in [0, 1] and iris diameter as a fraction of the eye opening's width, read on
    the aligned photo between the lid landmarks (the darkest part of the opening is the iris)."""
    from . import landmarks3d as lm

    upper = pixels[list(lm.LEFT_EYE_UPPER if side == "left" else lm.RIGHT_EYE_UPPER), :2]
    lower = pixels[list(lm.LEFT_EYE_LOWER if side == "left" else lm.RIGHT_EYE_LOWER), :2]
    polygon = np.concatenate([upper, lower[::-1][1:-1]])
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int)
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int)
    h, w = photo.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
    width = np.linalg.norm(upper[-1] - upper[0])
    if x1 <= x0 or y1 <= y0:
        return np.array([0.35, 0.25, 0.18]), 2 * IRIS_RADIUS / 0.03
    yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    grid = np.column_stack([xx.ravel() + 0.5, yy.ravel() + 0.5])
    inside = _inside_polygon(grid, polygon)
    rgb = photo[yy.ravel()[inside], xx.ravel()[inside], :3].astype(np.float64) / 255.0
    if len(rgb) < 4:
        return np.array([0.35, 0.25, 0.18]), 2 * IRIS_RADIUS / 0.03
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    dark = luma <= np.quantile(luma, 0.5)
    color = np.clip(np.median(rgb[dark], axis=0) * 1.15, 0.0, 1.0)
    cols = grid[inside][dark][:, 0]
    span = (np.quantile(cols, 0.95) - np.quantile(cols, 0.05)) / max(width, 1e-6)
    return color, float(np.clip(span, 0.32, 0.5))
