"""The names avatar engines drive: Apple ARKit's 52 face blendshapes and the 15 Oculus visemes.

ARKit's names are ``ARFaceAnchor.BlendShapeLocation`` raw values; "Left" and "Right" are the
subject's own sides (the avatar's left eye is at +x in our files). The visemes are the Oculus
Lipsync set that Ready Player Me avatars carry and ``@met4citizen/talkinghead`` drives.
"""

from __future__ import annotations

ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft",
    "eyeLookDownLeft",
    "eyeLookInLeft",
    "eyeLookOutLeft",
    "eyeLookUpLeft",
    "eyeSquintLeft",
    "eyeWideLeft",
    "eyeBlinkRight",
    "eyeLookDownRight",
    "eyeLookInRight",
    "eyeLookOutRight",
    "eyeLookUpRight",
    "eyeSquintRight",
    "eyeWideRight",
    "jawForward",
    "jawLeft",
    "jawRight",
    "jawOpen",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthLeft",
    "mouthRight",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "noseSneerLeft",
    "noseSneerRight",
    "tongueOut",
)
"""The 52 ARKit blendshapes, in Apple's documentation order."""

VISEMES: dict[str, dict[str, float]] = {
    "viseme_sil": {},
    "viseme_PP": {"mouthClose": 0.0, "mouthPressLeft": 0.8, "mouthPressRight": 0.8, "mouthRollUpper": 0.3},
    "viseme_FF": {"jawOpen": 0.12, "mouthRollLower": 0.8, "mouthUpperUpLeft": 0.3, "mouthUpperUpRight": 0.3},
    "viseme_TH": {"jawOpen": 0.25, "tongueOut": 0.4},
    "viseme_DD": {"jawOpen": 0.3, "mouthStretchLeft": 0.2, "mouthStretchRight": 0.2},
    "viseme_kk": {"jawOpen": 0.35, "mouthStretchLeft": 0.3, "mouthStretchRight": 0.3},
    "viseme_CH": {"jawOpen": 0.2, "mouthFunnel": 0.6, "mouthShrugUpper": 0.3},
    "viseme_SS": {"jawOpen": 0.12, "mouthStretchLeft": 0.5, "mouthStretchRight": 0.5},
    "viseme_nn": {"jawOpen": 0.25, "mouthUpperUpLeft": 0.2, "mouthUpperUpRight": 0.2},
    "viseme_RR": {"jawOpen": 0.2, "mouthPucker": 0.5, "mouthFunnel": 0.3},
    "viseme_aa": {"jawOpen": 0.75, "mouthLowerDownLeft": 0.2, "mouthLowerDownRight": 0.2},
    "viseme_E": {"jawOpen": 0.4, "mouthStretchLeft": 0.5, "mouthStretchRight": 0.5},
    "viseme_I": {"jawOpen": 0.25, "mouthSmileLeft": 0.5, "mouthSmileRight": 0.5},
    "viseme_O": {"jawOpen": 0.45, "mouthFunnel": 0.9},
    "viseme_U": {"jawOpen": 0.15, "mouthPucker": 1.0},
}
"""The 15 Oculus visemes, each a recipe of ARKit weights (``viseme_sil``: the rest pose)."""

VISEME_NAMES: tuple[str, ...] = tuple(VISEMES)
TARGET_NAMES: tuple[str, ...] = ARKIT_NAMES + VISEME_NAMES
"""Every morph target of the rigged head, in file order (67)."""
