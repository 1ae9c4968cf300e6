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
    """(H, W, 3) uint8 grid of renders, each labelled underneath."""
    from PIL import Image, ImageDraw

    band = 18
    rows = -(-len(EXPRESSIONS) // columns)
    sheet = Image.new("RGB", (columns * size, rows * (size + band)), (48, 48, 48))
    draw = ImageDraw.Draw(sheet)
    for i, (label, weights) in enumerate(EXPRESSIONS):
        yaw = 35.0 if label.endswith("3/4") else 0.0
        x, y = (i % columns) * size, (i // columns) * (size + band)
        sheet.paste(Image.fromarray(render(rig, weights, size, yaw_deg=yaw)[0]), (x, y))
        draw.text((x + 4, y + size + 3), label, fill=(230, 230, 230))
    return np.asarray(sheet)
