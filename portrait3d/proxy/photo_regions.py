"""Where the photo shows the head's skin and hair: robust colour models of each, and per-pixel acceptance maps.

:func:`photo_regions` reads the skin inside the face's landmark hull and the hair where the photo's hair split says
hair, fits a :class:`ColourModel` (median and spread in CIELAB) to each, and marks the photo's pixels whose colours
belong to them; the texture bake (:mod:`portrait3d.proxy.texture`) takes the photo only there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from portrait3d.proxy.face_regions import FACE_FEATURES, feature_hulls
from portrait3d.proxy.texels import TexelSurface

SKIN_SPREAD_FLOOR = (8.0, 4.0, 4.0)
"""Smallest Lab spread of the skin model: shading varies lightness more than colour."""
HAIR_SPREAD_FLOOR = (14.0, 6.0, 6.0)
"""Smallest Lab spread of the hair model (highlights and shadows of hair vary widely, and darker hair is greyer)."""


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] (..., 3) to CIELAB (OpenCV's float scale: L in [0, 100])."""
    import cv2

    return cv2.cvtColor(np.clip(rgb, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (..., 3) to RGB in [0, 1]."""
    import cv2

    return np.clip(cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2RGB), 0, 1)


def face_hull(landmarks: np.ndarray | None, size: int, fallback: np.ndarray) -> np.ndarray:
    """(S, S) bool: inside the convex hull of the landmarks (or of ``fallback`` (M, 2) pixels)."""
    import cv2

    points = fallback if landmarks is None else np.asarray(landmarks, dtype=np.float64)[:, :2]
    points = points[np.all(np.isfinite(points), axis=1)]
    hull = np.zeros((size, size), np.uint8)
    if len(points) >= 3:
        cv2.fillConvexPoly(hull, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    return hull.astype(bool)


def _features(landmarks: np.ndarray | None, face: np.ndarray, grow: int = 6) -> np.ndarray:
    """(S, S) bool: eyes, brows, lips and nostrils (grown a little); the whole face hull without landmarks."""
    if landmarks is None or len(landmarks) < 468:
        return face
    points = np.asarray(landmarks, dtype=np.float64)[:, :2]
    return feature_hulls(points, FACE_FEATURES.values(), face.shape[0], grow) & face


def _clean_rejection(accept: np.ndarray, trusted: np.ndarray, grow: int = 5, speck: int = 5) -> np.ndarray:
    """Soft acceptance map with specks of rejection (pores, glints) removed and real rejections grown a little."""
    import cv2

    reject = ((accept < 0.5) & ~trusted).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (speck, speck))
    reject = cv2.morphologyEx(reject, cv2.MORPH_OPEN, kernel)
    reject = cv2.dilate(reject, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    return 1.0 - cv2.GaussianBlur(reject.astype(np.float32), (0, 0), 1.5)


@dataclass
class ColourModel:
    """Robust colour statistics of one region of the photo in CIELAB: median and spread per channel."""

    median: np.ndarray
    spread: np.ndarray

    @classmethod
    def fit(cls, lab: np.ndarray, floor: tuple[float, float, float]) -> ColourModel:
        """Median and scaled MAD of (N, 3) Lab samples, after two passes of trimming the outliers."""
        keep = np.ones(len(lab), bool)
        for _ in range(3):
            median = np.median(lab[keep], axis=0)
            spread = np.maximum(1.4826 * np.median(np.abs(lab[keep] - median), axis=0), floor)
            trimmed = np.all(np.abs(lab - median) < 2.0 * spread, axis=1)
            if trimmed.sum() < 20:
                break
            keep = trimmed
        return cls(median, spread)

    def distance(self, lab: np.ndarray, brighter: float = 1.0) -> np.ndarray:
        """Normalised distance of Lab colours (..., 3) to the model: (...,).

        Lightness above the median counts ``brighter`` times as far.
        """
        scaled = (lab - self.median) / self.spread
        if brighter != 1.0:
            scaled[..., 0] *= np.where(scaled[..., 0] > 0, brighter, 1.0)
        return np.sqrt((scaled**2).sum(-1))

    def accept(self, lab: np.ndarray, limit: float = 3.5, softness: float = 1.0, brighter: float = 1.0) -> np.ndarray:
        """1 for colours of this region, falling to 0 beyond ``limit`` spreads: (...,)."""
        return np.clip((limit + softness - self.distance(lab, brighter)) / softness, 0.0, 1.0)

    def rgb(self) -> np.ndarray:
        """The median as an RGB colour in [0, 1]: (3,)."""
        return lab_to_rgb(self.median[None, None])[0, 0]

    def upper_lightness(self) -> float:
        """The top of the model's usual lightness (median plus one spread; CIELAB L)."""
        return float(self.median[0] + self.spread[0])


HAIR_SECOND_SHARE = 0.25
"""Share of the hair split's pixels that the hair's first colour model rejects from which those pixels get a model of
their own (:func:`fit_hair_colours`): a black hat over golden hair, 45 %; highlights and background specks in the
eval photos' hair, 2-8 %."""


@dataclass
class ColourModels:
    """One region's colours as one or two :class:`ColourModel` (hair of two tones, or a hat over the hair): a colour
    belongs where it belongs to either. ``rgb`` is the first's (the commoner tone)."""

    models: tuple[ColourModel, ...]

    def distance(self, lab: np.ndarray, brighter: float = 1.0) -> np.ndarray:
        """The nearest model's :meth:`ColourModel.distance`: (...,)."""
        return np.min([model.distance(lab, brighter) for model in self.models], axis=0)

    def accept(self, lab: np.ndarray, limit: float = 3.5, softness: float = 1.0, brighter: float = 1.0) -> np.ndarray:
        """The most accepting model's :meth:`ColourModel.accept`: (...,)."""
        return np.max([model.accept(lab, limit, softness, brighter) for model in self.models], axis=0)

    def rgb(self) -> np.ndarray:
        """The first model's :meth:`ColourModel.rgb`."""
        return self.models[0].rgb()

    def upper_lightness(self) -> float:
        """The lightest model's :meth:`ColourModel.upper_lightness`."""
        return max(model.upper_lightness() for model in self.models)


def fit_hair_colours(lab: np.ndarray) -> ColourModels:
    """The hair's colour models from its (N, 3) Lab samples: one, and a second for what the first rejects when that is
    :data:`HAIR_SECOND_SHARE` of the samples or more (the painted woman's black hat took the first model, and her
    golden hair, rejected, was painted over with the hat's dark brown)."""
    first = ColourModel.fit(lab, HAIR_SPREAD_FLOOR)
    rejected = lab[first.accept(lab) < 0.5]
    if len(rejected) < max(100, HAIR_SECOND_SHARE * len(lab)):
        return ColourModels((first,))
    return ColourModels((first, ColourModel.fit(rejected, HAIR_SPREAD_FLOOR)))


@dataclass
class PhotoRegions:
    """Where the photo shows the head, in photo pixels ((S, S) floats in [0, 1]).

    Attributes:
        skin: colour of the face's skin (or inside the face's landmark hull).
        neck_skin: the same, stricter (below the chin, where collars and scarves are).
        hair: colour of the seen hair.
        hair_class: how much a pixel is hair rather than skin.
        skin_model, hair_model: the colour statistics (hair is None when the photo shows none).
        face: (S, S) bool, the face's landmark hull.
    """

    skin: np.ndarray
    neck_skin: np.ndarray
    hair: np.ndarray
    hair_class: np.ndarray
    skin_model: ColourModel | None
    hair_model: ColourModels | None
    face: np.ndarray


def photo_regions(
    photo_rgb: np.ndarray,
    seen_photo: np.ndarray,
    seen_weight: np.ndarray,
    surface: TexelSurface,
    pixels: np.ndarray,
    landmarks: np.ndarray | None,
    photo_hair: np.ndarray | None,
) -> PhotoRegions:
    """Skin and hair colour models from the photo, and where the photo's colours belong to them.

    Skin is read inside the face's landmark hull (without landmarks: the seen
    face of the fitted template), hair where the photo's hair split says hair
    (without one: the template's hair region, less what is skin-coloured).
    """
    size = photo_rgb.shape[0]
    lab = rgb_to_lab(photo_rgb)
    seen = seen_weight > 0.6
    pts = surface.points
    face_box = (np.abs(pts[..., 0]) < 0.14) & (pts[..., 1] > -0.22) & (pts[..., 1] < 0.13) & (pts[..., 2] > 0.05)
    face_texels = seen & face_box & (surface.hair < 0.05)
    face = face_hull(landmarks, size, pixels[face_texels])
    import cv2

    # Skin is read well inside the hull: its rim holds hair, brows and background.
    side = max(7, int(0.2 * np.sqrt(face.sum())) | 1)
    inner = cv2.erode(face.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))).astype(bool)
    skin_lab = lab[inner]
    skin_model = ColourModel.fit(skin_lab, SKIN_SPREAD_FLOOR) if len(skin_lab) > 50 else None
    seen_lab = rgb_to_lab(seen_photo)
    hair_lab = lab[(np.asarray(photo_hair) > 0.5) & ~face] if photo_hair is not None else lab[:0]
    if len(hair_lab) < 100 and (photo_hair is None or (np.asarray(photo_hair) > 0.5).any()):
        hair_texels = seen & (surface.hair > 0.9)
        if skin_model is not None:
            hair_texels &= skin_model.distance(seen_lab) > 2.0
        hair_lab = seen_lab[hair_texels]
    hair_model = fit_hair_colours(hair_lab) if len(hair_lab) > 100 else None
    if skin_model is None:
        # No face to learn skin from: accept the whole mask.
        ones = np.ones((size, size), np.float32)
        return PhotoRegions(ones, ones, ones * 0, ones * 0, None, hair_model, face)
    # Eyes, brows, lips and nostrils are the face's own; anything else in the face must look like skin or hair.
    features = _features(landmarks, face)
    # Shadowed skin is common, skin much lighter than the face is not (collars, background, white objects).
    skin = _clean_rejection(skin_model.accept(lab, brighter=1.6), features)
    neck_skin = _clean_rejection(skin_model.accept(lab, limit=2.0, brighter=1.6), features)
    if hair_model is None:
        hair = np.zeros((size, size), np.float32)
        hair_class = hair
    else:
        # Hair is patchy in colour (highlights, shadows): only large non-hair blobs are occluders.
        hair = _clean_rejection(hair_model.accept(lab), np.zeros_like(face), speck=11)
        if photo_hair is not None and (np.asarray(photo_hair) > 0.5).sum() >= 100:
            hair_class = np.clip(np.asarray(photo_hair, dtype=np.float32), 0, 1)
        else:
            margin = skin_model.distance(lab) - hair_model.distance(lab)
            hair_class = (1.0 / (1.0 + np.exp(-2.0 * margin))).astype(np.float32)
        hair_class = np.where(face, 0.0, hair_class).astype(np.float32)
    return PhotoRegions(skin, neck_skin, hair, hair_class, skin_model, hair_model, face)
