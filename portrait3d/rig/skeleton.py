"""The skeleton: ``Neck`` -> ``Head`` -> ``LeftEye``, ``RightEye`` (Mixamo-style names), and the
head mesh's skin weights.

Joints carry translations only (their rest rotations are the identity), so each inverse bind
matrix is a translation. The skin is Neck below the chin fading into Head above it; the eyes,
teeth, tongue and mouth cavity are children of the Head and eye joints, so turning ``Head``
turns them all and turning an eye joint turns its eyeball about its centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import landmarks3d as lm
from .fields import FaceRig, smoothstep

JOINTS = ("Neck", "Head", "LeftEye", "RightEye")
PARENTS = (None, 0, 1, 1)


@dataclass
class Skeleton:
    positions: np.ndarray
    """(4, 3) each joint's rest position, file frame (metres)."""

    @property
    def local(self) -> np.ndarray:
        """(4, 3) each joint's translation relative to its parent."""
        return np.array([p - (self.positions[q] if q is not None else 0.0) for p, q in zip(self.positions, PARENTS)])

    def inverse_bind(self) -> np.ndarray:
        """(4, 4, 4) inverse bind matrices (translations)."""
        out = np.repeat(np.eye(4)[None], len(JOINTS), axis=0)
        out[:, :3, 3] = -self.positions
        return out


def build_skeleton(rig: FaceRig, eye_centres: dict[str, np.ndarray]) -> Skeleton:
    """Neck at the neck's base (the file's origin), Head at the top of the spine: behind the jaw's
    hinge and a little below it; the eyes at their eyeballs' centres."""
    iod = rig.iod
    head = np.array([0.0, rig.pivot[1] - 0.35 * iod, rig.pivot[2] - 0.35 * iod])
    neck = np.array([0.0, 0.0, head[2]])
    return Skeleton(np.stack([neck, head, eye_centres["left"], eye_centres["right"]]))


def head_weights(vertices: np.ndarray, rig: FaceRig) -> tuple[np.ndarray, np.ndarray]:
    """Skin of the head mesh: ``(joints, weights)``, (V, 4) uint8 and (V, 4) float32; Head above the
    chin, Neck from about 4 cm below it."""
    chin = rig.face.points[lm.CHIN][1]
    head = smoothstep(chin - 0.65 * rig.iod, chin - 0.05 * rig.iod, vertices[:, 1])
    joints = np.zeros((len(vertices), 4), np.uint8)
    joints[:, 1] = 1
    weights = np.zeros((len(vertices), 4), np.float32)
    weights[:, 0], weights[:, 1] = 1.0 - head, head
    return joints, weights
