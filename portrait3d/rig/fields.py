"""Blendshapes as smooth displacement fields defined from the face's landmarks in 3D.

A field maps points (N, 3) to displacements (N, 3); sampled at a mesh's vertices it is that
mesh's morph target. The fields know nothing of the mesh's topology, so any surface the NeRF
gives (and each of its LODs) gets the same motion. Every radius scales with the interocular
distance ``iod`` (about 63 mm). Building blocks:

- a lid field moves the upper lid ring onto the lower one (blink), fading out above the lid;
- the jaw rotates the lower face about an axis near the ears, weighted by the side of the
  mouth line (sharp between the split lips, smooth across the cheeks) and fading out on the neck;
- anchor fields move landmark groups (mouth corners, lips, brows, cheeks, nose wings) with a
  compactly supported (Wendland) falloff.

Parts other than the skin take only what moves them rigidly: the lower teeth and the tongue the
jaw, the eyes their rotations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import landmarks3d as lm
from .arkit import ARKIT_NAMES, VISEMES

INCISOR_OPENING = 0.025
"""Gap between the incisors' edges at ``jawOpen`` = 1 (m): within the 20-30 mm of a wide-open mouth."""
MAX_JAW_TRAVEL = 0.0395
"""The chin moves no further than this at ``jawOpen`` = 1 (m): no vertex moves more than 40 mm."""
EYE_TURN = {"in": np.radians(28.0), "out": np.radians(30.0), "up": np.radians(22.0), "down": np.radians(25.0)}
"""Eye rotation at ``eyeLook*`` = 1."""

KINDS = ("skin", "upper", "lower", "cavity", "eye_left", "eye_right")
"""What a mesh is: the head's skin, parts rigid with the skull (upper teeth) or the jaw (lower teeth,
tongue), the mouth cavity (its lower half follows the jaw), an eyeball."""


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((np.asarray(x, dtype=np.float64) - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def wendland(r: np.ndarray) -> np.ndarray:
    """Wendland's C2 kernel: 1 at 0, 0 from 1 on, smooth."""
    r = np.clip(r, 0.0, 1.0)
    return (1.0 - r) ** 4 * (4.0 * r + 1.0)


def anchor_field(points: np.ndarray, anchors: np.ndarray, moves: np.ndarray, radius: float) -> np.ndarray:
    """Shepard blend of the anchors' moves times their joint coverage: the anchors move by ``moves``
    and nothing beyond ``radius`` of every anchor moves.

    Args:
        points: (N, 3). anchors: (K, 3). moves: (K, 3) or (3,). radius: metres.
    Returns:
        (N, 3) displacements.
    """
    moves = np.broadcast_to(np.asarray(moves, dtype=np.float64), anchors.shape)
    dist = np.linalg.norm(points[:, None, :] - anchors[None], axis=-1) / radius
    weight = wendland(dist)  # (N, K)
    total = weight.sum(axis=1, keepdims=True)
    blend = (weight[..., None] * moves[None]).sum(axis=1) / np.maximum(total, 1e-12)
    cover = 1.0 - np.prod(1.0 - weight, axis=1, keepdims=True)
    return blend * cover


def rotation(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


@dataclass
class FaceRig:
    """The fields of one face."""

    face: lm.Face

    def __post_init__(self) -> None:
        f = self.face
        self.iod = f.interocular
        line = f.mouth_line
        self._line = line[np.argsort(line[:, 0])]
        # The jaw's hinge (the condyles) sits in front of the ears: about 80 mm behind the incisors and
        # 30 mm above the mouth line on an adult (1.35 and 0.5 interocular distances).
        front = f.points[list(lm.LIPS_UPPER_OUTER + lm.LIPS_LOWER_OUTER), 2].max()
        self.pivot = np.array([0.0, f.mouth_centre[1] + 0.5 * self.iod, front - 1.35 * self.iod])
        self.incisor = np.array([0.0, f.mouth_centre[1], front - 0.1 * self.iod])
        self.jaw_angle = self._opening_angle(INCISOR_OPENING, MAX_JAW_TRAVEL)

    def fit_jaw(self, incisor: np.ndarray, moving: list[tuple[np.ndarray, np.ndarray]], overlap: float = 0.0) -> None:
        """Open the jaw so that the lower incisors' edge at ``incisor`` (3,) drops the full gap, unless
        a point of ``moving`` ((points (N, 3), jaw weights (N,)) pairs: the skin and the parts) would
        then travel further than :data:`MAX_JAW_TRAVEL`. ``overlap``: how far the upper incisors reach
        below the lower ones' edge at rest (the drop that opens no gap)."""
        self.incisor = np.asarray(incisor, dtype=np.float64)
        reach = max(float((np.linalg.norm((p - self.pivot)[:, 1:], axis=1) * w).max()) for p, w in moving)
        angle = self._opening_angle(INCISOR_OPENING + max(overlap, 0.0), MAX_JAW_TRAVEL)
        self.jaw_angle = min(angle, 2.0 * np.arcsin(min(MAX_JAW_TRAVEL / (2.0 * reach), 1.0)))

    def _opening_angle(self, gap: float, limit: float) -> float:
        """The jaw angle whose rotation lowers the incisors by ``gap``, unless that moves the chin
        further than ``limit``."""
        chin = self.face.points[lm.CHIN]
        angles = np.radians(np.linspace(0.0, 40.0, 801))
        best = angles[0]
        for angle in angles:
            rot = rotation("x", angle)
            drop = self.incisor[1] - ((self.incisor - self.pivot) @ rot.T + self.pivot)[1]
            travel = np.linalg.norm((chin - self.pivot) @ rot.T + self.pivot - chin)
            if travel > limit:
                break
            best = angle
            if drop >= gap:
                break
        return float(best)

    # --- regions ---------------------------------------------------------------------------
    def lower_side(self, points: np.ndarray) -> np.ndarray:
        """(N,) 1 below the mouth line, 0 above: sharp in the middle of the mouth (the lips are split
        there), widening toward the corners and blending over a few centimetres across the cheeks."""
        line, iod = self._line, self.iod
        y_line = np.interp(points[:, 0], line[:, 0], line[:, 1])
        centre, half = 0.5 * (line[0, 0] + line[-1, 0]), 0.5 * (line[-1, 0] - line[0, 0])
        across = np.abs(points[:, 0] - centre)
        widen = smoothstep(0.6 * half, half + 0.15 * iod, across)
        # Mostly below the line: the jaw pulls the cheeks down, it does not lift the upper face.
        above, below = 0.02 * iod + 0.1 * iod * widen, 0.02 * iod + 0.45 * iod * widen
        return smoothstep(-above, below, y_line - points[:, 1])

    def jaw_weight(self, points: np.ndarray, side: np.ndarray) -> np.ndarray:
        """(N,) how much of the jaw's motion a skin point takes."""
        iod, chin = self.iod, self.face.points[lm.CHIN]
        front = smoothstep(self.pivot[2] - 0.05 * iod, self.pivot[2] + 0.45 * iod, points[:, 2])
        neck = 1.0 - smoothstep(0.0, 0.6 * iod, chin[1] - points[:, 1])
        return side * front * neck

    def lip_region(self, points: np.ndarray) -> np.ndarray:
        """(N,) 1 on the lips, fading out over the mouth's surroundings."""
        d = (points - self.face.mouth_centre) / np.array(
            [0.5 * self.face.mouth_width + 0.12 * self.iod, 0.3 * self.iod, 0.4 * self.iod]
        )
        return wendland(np.linalg.norm(d, axis=1))

    @property
    def lip_gap(self) -> float:
        """Opening between the inner lips at the middle of the mouth (m): a photo's open mouth."""
        upper, lower = self.face.curve(lm.LIPS_UPPER_INNER)[3:8], self.face.curve(lm.LIPS_LOWER_INNER)[3:8]
        return float(np.median(upper[:, 1] - lower[:, 1]))

    def mouth_closing(self, points: np.ndarray, side: np.ndarray) -> np.ndarray:
        """(N, 3) moves that close a mouth the photo shows open (a gap over 3 mm): the inner lips meet on
        the mouth line, so the neutral head has a closed mouth that the jaw opens. Zero otherwise."""
        gap = self.lip_gap
        if gap <= 0.003:
            return np.zeros_like(points)
        radius = 0.3 * self.iod
        upper = anchor_field(points, self.face.curve(lm.LIPS_UPPER_INNER), [0.0, -0.5 * gap, 0.0], radius)
        lower = anchor_field(points, self.face.curve(lm.LIPS_LOWER_INNER), [0.0, 0.5 * gap, 0.0], radius)
        # Nothing crosses the mouth line: what lay between an inner lip and the line (the photo's teeth)
        # is pressed onto the line, not pushed past it.
        y_line = np.interp(points[:, 0], self._line[:, 0], self._line[:, 1])
        upper[:, 1] = -np.minimum(-upper[:, 1], np.maximum(points[:, 1] - y_line, 0.0))
        lower[:, 1] = np.minimum(lower[:, 1], np.maximum(y_line - points[:, 1], 0.0))
        return (1.0 - side)[:, None] * upper + side[:, None] * lower

    # --- building blocks -----------------------------------------------------------------------
    def jaw_rotation(self, points: np.ndarray, fraction: float) -> np.ndarray:
        """(N, 3) displacement of points rigid with the jaw, opened ``fraction`` of the way."""
        rot = rotation("x", self.jaw_angle * fraction)
        return (points - self.pivot) @ rot.T + self.pivot - points

    def lid(self, points: np.ndarray, side: str, close: float, lower_rise: float, overshoot: bool) -> np.ndarray:
        """Upper lid moved ``close`` of the way onto the lower (negative: opened wider), lower lid raised
        ``lower_rise`` of the way onto the upper: (N, 3)."""
        upper, lower = self.face.lids(side)
        iod = self.iod
        inner, outer = upper[0], upper[-1]
        axis = outer - inner
        length = np.linalg.norm(axis)
        axis = axis / length

        def along(curve: np.ndarray, t: np.ndarray) -> np.ndarray:
            tc = (curve - inner) @ axis / length
            order = np.argsort(tc)
            return np.stack([np.interp(t, tc[order], curve[order, i]) for i in range(3)], axis=1)

        t = (points - inner) @ axis / length
        up, low = along(upper, t), along(lower, t)
        gap = np.maximum(up[:, 1] - low[:, 1], 1e-4)
        frac = np.clip((points[:, 1] - low[:, 1]) / gap, 0.0, 1.0)
        above = points[:, 1] - up[:, 1]
        below = low[:, 1] - points[:, 1]
        w_upper = np.where(above >= 0, 1.0 - smoothstep(0.0, 0.18 * iod, above), frac)
        w_lower = np.where(below >= 0, 1.0 - smoothstep(0.0, 0.12 * iod, below), 1.0 - frac)
        horizontal = 1.0 - smoothstep(0.0, 0.2, np.maximum(np.maximum(-t, t - 1.0), 0.0))
        centre = self.face.eye_centre(side)
        depth = smoothstep(centre[2] - 0.3 * iod, centre[2] - 0.12 * iod, points[:, 2])
        # Nothing beyond about 13 mm of the lid contours moves.
        contour = np.concatenate([upper, lower])
        near = np.min(np.linalg.norm(points[:, None] - contour[None], axis=-1), axis=1)
        gate = horizontal * depth * (1.0 - smoothstep(0.15 * iod, 0.21 * iod, near))
        travel = low - up
        travel[:, 0] = 0.0  # straight down: the lid does not slide sideways
        if overshoot:
            # The closed upper lid passes a little below the lower one and in front of it.
            travel = travel + np.array([0.0, -0.02 * iod, 0.03 * iod])
        return gate[:, None] * (close * w_upper[:, None] * travel + lower_rise * w_lower[:, None] * (up - low))

    def anchors(self, points: np.ndarray, indices, move, radius: float) -> np.ndarray:
        return anchor_field(points, self.face.curve(indices), np.asarray(move) * self.iod, radius * self.iod)

    def corner(self, points: np.ndarray, side: str, move, radius: float = 0.45) -> np.ndarray:
        """A mouth corner moved by ``move`` (iod units; x toward the subject's ``side``)."""
        sign = 1.0 if side == "left" else -1.0
        move = np.array([sign * move[0], move[1], move[2]]) * self.iod
        index = 291 if side == "left" else 61
        return anchor_field(points, self.face.points[[index]], move, radius * self.iod)

    # --- the blendshapes ---------------------------------------------------------------------
    def displacement(self, name: str, points: np.ndarray, kind: str, side: np.ndarray | None = None) -> np.ndarray:
        """Morph target ``name`` (an ARKit name or a viseme) of a mesh of ``kind``: (N, 3).

        ``side`` (N,) overrides the skin's lower-side weight (the split lips' two copies of a vertex)."""
        if name in VISEMES:
            out = np.zeros_like(points, dtype=np.float64)
            for part, weight in VISEMES[name].items():
                out += weight * self.displacement(part, points, kind, side)
            return out
        if name not in ARKIT_NAMES:
            raise KeyError(name)
        points = np.asarray(points, dtype=np.float64)
        if kind in ("eye_left", "eye_right"):
            return self._eye(name, points, kind[4:])
        if kind == "skin":
            s = self.lower_side(points) if side is None else side
            return self._skin(name, points, s, self.jaw_weight(points, s))
        # Rigid parts: the upper teeth never move, the lower teeth and tongue follow the jaw.
        s = {"upper": 0.0, "lower": 1.0}.get(kind)
        s = self.lower_side(points) if s is None else np.full(len(points), s)
        out = self._jaw(name, points, s)
        if name == "tongueOut" and kind == "lower":
            out += self._tongue_out(points)
        return out

    def _jaw(self, name: str, points: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """The jaw's own motion (open, forward, sideways) scaled per point by ``weight``."""
        iod = self.iod
        move = {
            "jawOpen": lambda: self.jaw_rotation(points, 1.0),
            "jawForward": lambda: np.broadcast_to([0.0, 0.0, 0.09 * iod], points.shape),
            "jawLeft": lambda: np.broadcast_to([0.1 * iod, 0.0, 0.0], points.shape),
            "jawRight": lambda: np.broadcast_to([-0.1 * iod, 0.0, 0.0], points.shape),
            "tongueOut": lambda: self.jaw_rotation(points, 0.3),
        }.get(name)
        if move is None:
            return np.zeros_like(points)
        return weight[:, None] * move()

    def _tongue_out(self, points: np.ndarray) -> np.ndarray:
        """The tongue's tip slides out past the lips; its root stays."""
        front = smoothstep(self.incisor[2] - 0.6 * self.iod, self.incisor[2], points[:, 2])
        return front[:, None] * np.array([0.0, 0.1, 0.42]) * self.iod

    def _eye(self, name: str, points: np.ndarray, eye: str) -> np.ndarray:
        """Eyeball rotations (points relative to the eyeball's centre)."""
        if not name.startswith("eyeLook") or not name.endswith(eye.capitalize()):
            return np.zeros_like(points)
        direction = name[len("eyeLook") : -len(eye)].lower()
        # Toward +x is "out" for the left eye and "in" for the right one.
        outward = 1.0 if eye == "left" else -1.0
        angle = EYE_TURN[direction]
        rot = {
            "out": rotation("y", outward * angle),
            "in": rotation("y", -outward * angle),
            "up": rotation("x", -angle),
            "down": rotation("x", angle),
        }[direction]
        return points @ rot.T - points

    def _skin(self, name: str, p: np.ndarray, s: np.ndarray, jaw: np.ndarray) -> np.ndarray:
        f, iod = self.face, self.iod
        upper, lower = 1.0 - s, s
        lips_up = lm.LIPS_UPPER_OUTER + lm.LIPS_UPPER_INNER
        lips_low = lm.LIPS_LOWER_OUTER + lm.LIPS_LOWER_INNER
        eye = "left" if name.endswith("Left") else "right"
        sgn = 1.0 if eye == "left" else -1.0

        def half(indices, side_sign):
            # The lip landmarks on one side of the mouth's centre.
            xs = f.points[list(indices), 0] - f.mouth_centre[0]
            return tuple(i for i, x in zip(indices, xs) if x * side_sign > -0.05 * iod)

        def toward_centre(indices, amount, forward):
            pts = f.curve(indices)
            move = np.zeros_like(pts)
            move[:, 0] = -amount * (pts[:, 0] - f.mouth_centre[0])
            move[:, 2] = forward * iod
            return anchor_field(p, pts, move, 0.4 * iod)

        if name.startswith("eyeBlink"):
            return self.lid(p, eye, 1.0, 0.12, overshoot=True)
        if name.startswith("eyeSquint"):
            return self.lid(p, eye, 0.12, 0.35, overshoot=False) + self.anchors(
                p, lm.CHEEK_LEFT if eye == "left" else lm.CHEEK_RIGHT, [0.0, 0.03, 0.01], 0.3
            )
        if name.startswith("eyeWide"):
            return self.lid(p, eye, -0.3, -0.08, overshoot=False)
        if name.startswith("eyeLookDown"):
            return self.lid(p, eye, 0.3, -0.05, overshoot=False)
        if name.startswith("eyeLookUp"):
            return self.lid(p, eye, -0.12, 0.0, overshoot=False)
        if name.startswith("eyeLook"):
            return np.zeros_like(p)
        if name in ("jawOpen", "jawForward", "jawLeft", "jawRight"):
            return self._jaw(name, p, jaw)
        if name == "tongueOut":
            return self._jaw(name, p, jaw)
        if name == "mouthClose":
            return -self.lip_region(p)[:, None] * self._jaw("jawOpen", p, jaw)
        if name == "mouthFunnel":
            return (
                upper[:, None] * toward_centre(lips_up, 0.3, 0.09)
                + lower[:, None] * toward_centre(lips_low, 0.3, 0.09)
                + upper[:, None] * self.anchors(p, lm.LIPS_UPPER_INNER, [0, 0.05, 0], 0.3)
                + lower[:, None] * self.anchors(p, lm.LIPS_LOWER_INNER, [0, -0.05, 0], 0.3)
            )
        if name == "mouthPucker":
            return toward_centre(lips_up + lips_low, 0.4, 0.12)
        if name in ("mouthLeft", "mouthRight"):
            sign = 1.0 if name == "mouthLeft" else -1.0
            return self.anchors(p, lips_up + lips_low, [sign * 0.12, 0, 0], 0.5)
        if name.startswith("mouthSmile"):
            cheek = lm.CHEEK_LEFT if eye == "left" else lm.CHEEK_RIGHT
            return self.corner(p, eye, [0.09, 0.11, -0.03]) + self.anchors(p, cheek, [0.02 * sgn, 0.05, 0.02], 0.35)
        if name.startswith("mouthFrown"):
            return self.corner(p, eye, [0.02, -0.1, 0.0])
        if name.startswith("mouthDimple"):
            return self.corner(p, eye, [0.05, 0.01, -0.06], 0.35)
        if name.startswith("mouthStretch"):
            return self.corner(p, eye, [0.1, -0.03, -0.02])
        if name.startswith("mouthPress"):
            side = half(lips_up, sgn)
            side_low = half(lips_low, sgn)
            return upper[:, None] * self.anchors(p, side, [0, -0.025, 0.0], 0.3) + lower[:, None] * self.anchors(
                p, side_low, [0, 0.025, 0.0], 0.3
            )
        if name == "mouthRollLower":
            return lower[:, None] * self.anchors(p, lm.LIPS_LOWER_OUTER, [0, 0.05, -0.07], 0.3)
        if name == "mouthRollUpper":
            return upper[:, None] * self.anchors(p, lm.LIPS_UPPER_OUTER, [0, -0.04, -0.06], 0.3)
        if name == "mouthShrugLower":
            return lower[:, None] * self.anchors(p, lm.LIPS_LOWER_OUTER + (lm.CHIN,), [0, 0.06, 0.02], 0.4)
        if name == "mouthShrugUpper":
            return upper[:, None] * self.anchors(p, lm.LIPS_UPPER_OUTER, [0, 0.05, 0.01], 0.35)
        if name.startswith("mouthLowerDown"):
            return lower[:, None] * self.anchors(p, half(lm.LIPS_LOWER_OUTER, sgn), [0, -0.11, 0.0], 0.35)
        if name.startswith("mouthUpperUp"):
            return upper[:, None] * self.anchors(p, half(lm.LIPS_UPPER_OUTER, sgn), [0, 0.09, 0.0], 0.35)
        if name.startswith("browDown"):
            brow = (
                (lm.BROW_LEFT_INNER + lm.BROW_LEFT_OUTER)
                if eye == "left"
                else (lm.BROW_RIGHT_INNER + lm.BROW_RIGHT_OUTER)
            )
            return self.anchors(p, brow, [-0.03 * sgn, -0.09, 0.0], 0.3)
        if name == "browInnerUp":
            return self.anchors(p, lm.BROW_LEFT_INNER + lm.BROW_RIGHT_INNER, [0, 0.11, 0.0], 0.3)
        if name.startswith("browOuterUp"):
            brow = lm.BROW_LEFT_OUTER if eye == "left" else lm.BROW_RIGHT_OUTER
            return self.anchors(p, brow, [0, 0.11, 0.0], 0.3)
        if name == "cheekPuff":
            out = np.zeros_like(p)
            for cheek, sign in ((lm.CHEEK_LEFT, 1.0), (lm.CHEEK_RIGHT, -1.0)):
                out += self.anchors(p, cheek, [0.1 * sign, -0.02, 0.05], 0.45)
            return out
        if name.startswith("cheekSquint"):
            cheek = lm.CHEEK_LEFT if eye == "left" else lm.CHEEK_RIGHT
            return self.anchors(p, cheek, [0.0, 0.07, 0.02], 0.3) + self.lid(p, eye, 0.0, 0.2, overshoot=False)
        if name.startswith("noseSneer"):
            ala = lm.NOSE_ALA_LEFT if eye == "left" else lm.NOSE_ALA_RIGHT
            return self.anchors(p, ala, [0.01 * sgn, 0.07, 0.0], 0.25)
        raise KeyError(name)
