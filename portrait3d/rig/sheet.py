"""Expression contact sheet of a rigged head (``docs/rig_expressions.png``)."""

from __future__ import annotations

import numpy as np

from .gltf import Rig
from .render import render

EXPRESSIONS: tuple[tuple[str, dict[str, float]], ...] = (
    ("neutral", {}),
    ("eyeBlinkLeft", {"eyeBlinkLeft": 1.0}),
    ("blink", {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}),
    ("smile", {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0, "cheekSquintLeft": 0.4, "cheekSquintRight": 0.4}),
    ("jawOpen", {"jawOpen": 1.0}),
    ("look left", {"eyeLookOutLeft": 1.0, "eyeLookInRight": 1.0}),
    ("brows up", {"browInnerUp": 1.0, "browOuterUpLeft": 1.0, "browOuterUpRight": 1.0}),
    ("frown", {"browDownLeft": 1.0, "browDownRight": 1.0, "mouthFrownLeft": 1.0, "mouthFrownRight": 1.0}),
    ("pucker", {"mouthPucker": 1.0}),
    ("tongueOut", {"tongueOut": 1.0}),
    ("viseme_aa", {"viseme_aa": 1.0}),
    ("viseme_O", {"viseme_O": 1.0}),
    ("viseme_E", {"viseme_E": 1.0}),
    ("viseme_FF", {"viseme_FF": 1.0}),
    ("viseme_U", {"viseme_U": 1.0}),
    ("smile 3/4", {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0, "jawOpen": 0.3}),
)


def expression_sheet(rig: Rig, size: int = 256, columns: int = 4) -> np.ndarray:
    """(H, W, 3) uint8 grid of renders, each labelled."""
    from portrait3d.proxy.sheet import contact_sheet

    images, labels = [], []
    for label, weights in EXPRESSIONS:
        yaw = 35.0 if label.endswith("3/4") else 0.0
        images.append(render(rig, weights, size, yaw_deg=yaw)[0])
        labels.append(label)
    return contact_sheet(images, labels, columns=columns, tile=size)
