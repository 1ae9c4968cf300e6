"""Measures of a rigged head (the benchmark's figures and the tests' bounds)."""

from __future__ import annotations

import numpy as np

from . import landmarks3d as lm
from .arkit import TARGET_NAMES
from .gltf import Rig, StaticMesh
from .parts import _inside_polygon
from .render import frontal_camera, project, render


def mesh(rig: Rig, name: str) -> dict:
    return next(m for m in rig.meshes if m["name"] == name)


def neutral_offset(rig: Rig, static: StaticMesh, away_from: np.ndarray | None = None, radius: float = 0.0) -> float:
    """Largest distance (m) from a vertex of the rigged head at weights 0 to the static head's
    surface, over the vertices farther than ``radius`` from every point of ``away_from`` (K, 3): 0 (to
    float precision) where the neutral head is the static asset (refined, less the cut sockets)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(static.vertices.astype(np.float32)), o3d.core.Tensor(static.faces.astype(np.uint32))
    )
    head = rig.posed()[0].vertices
    if away_from is not None:
        far = np.min(np.linalg.norm(head[:, None] - away_from[None], axis=-1), axis=1) > radius
        head = head[far]
    return float(scene.compute_distance(o3d.core.Tensor(head.astype(np.float32))).numpy().max())


def eye_opening(rig: Rig, face: lm.Face, side: str, camera, size: int) -> np.ndarray:
    """(S, S) bool: the eye opening (between the lid landmarks) in a frontal render."""
    upper, lower = face.lids(side)
    polygon = project(np.concatenate([upper, lower[::-1][1:-1]]), camera, size)
    u, v = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    return _inside_polygon(np.column_stack([u.ravel(), v.ravel()]), polygon).reshape(size, size)


def blink_coverage(rig: Rig, face: lm.Face, side: str = "left", size: int = 384) -> dict:
    """Fraction of the eye opening where the eyeball shows at rest and where skin covers it at
    ``eyeBlink{Side}`` = 1, in a frontal render."""
    camera = frontal_camera(rig.posed())
    opening = eye_opening(rig, face, side, camera, size)
    head = [m["name"] for m in rig.meshes].index("head")
    eye = [m["name"] for m in rig.meshes].index(f"eye_{side}")
    _, rest = render(rig, {}, size, camera=camera)
    _, closed = render(rig, {f"eyeBlink{side.capitalize()}": 1.0}, size, camera=camera)
    return {
        "opening_pixels": int(opening.sum()),
        "eyeball_visible_at_rest": float(np.mean(rest[opening] == eye)),
        "covered_by_lids": float(np.mean(closed[opening] == head)),
    }


def reach_from(rig: Rig, name: str, region: np.ndarray, threshold: float = 1e-4) -> float:
    """Largest distance (m) from ``region`` (K, 3) of a head vertex that ``name`` moves by more than
    ``threshold``."""
    m = mesh(rig, "head")
    moved = np.linalg.norm(m["targets"][name], axis=1) > threshold
    if not moved.any():
        return 0.0
    pts = m["base"][moved]
    return float(np.min(np.linalg.norm(pts[:, None] - region[None], axis=-1), axis=1).max())


def incisor_opening(rig: Rig, weight: float = 1.0) -> float:
    """Gap (m) between the upper and lower incisors' edges at ``jawOpen`` = ``weight``: the front-centre
    vertices of the two rows."""
    posed = {m.name: m.vertices for m in rig.posed({"jawOpen": weight})}
    rest = {m.name: m.vertices for m in rig.posed()}

    def edge(name: str, lowest: bool) -> int:
        v = rest[name]
        centre = np.abs(v[:, 0]) < 0.25 * np.ptp(v[:, 0])
        score = v[:, 2] - (1.0 if lowest else -1.0) * v[:, 1]
        return int(np.flatnonzero(centre)[np.argmax(score[centre])])

    top = posed["teeth_upper"][edge("teeth_upper", True)]
    bottom = posed["teeth_lower"][edge("teeth_lower", False)]
    return float(top[1] - bottom[1])


def largest_moves(rig: Rig) -> dict[str, float]:
    """Per target, the largest displacement (m) of any vertex of any mesh."""
    return {
        name: float(max(np.linalg.norm(m["targets"][name], axis=1).max() for m in rig.meshes)) for name in TARGET_NAMES
    }
