"""Measure whether a head looks like the person: dlib's face-recognition distance between a photo and renders.

dlib's ResNet (PyPI ``face-recognition-models`` for the model files, ``dlib-bin`` for dlib; the dev extra, offline)
embeds the largest face of an image in 128 numbers; two embeddings closer than 0.6 are the same person by dlib's
own threshold. Issue 20's targets on the proxy head's renders: at most 0.45 at yaw 0 and 0.50 at yaw +-30 (on the
photo's pitch). ``scripts/bench_identity.py`` runs it on photos, ``scripts/bench_scan.py`` against a head scan's
own frontal view, and ``tests/proxy/test_proxy_identity.py`` on the sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from portrait3d import cameras

TARGETS = {0.0: 0.45, -30.0: 0.50, 30.0: 0.50}
"""Largest identity distance per yaw (degrees) that issue 20 accepts."""


def available() -> bool:
    """Whether dlib and the model files are installed (the dev extra)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("dlib", "face_recognition_models"))


class IdentityModel:
    """dlib's face detector, 68-point predictor and face-recognition ResNet, from ``face-recognition-models``.

    The package's own ``__init__`` needs ``pkg_resources`` (gone from recent setuptools), so its model
    folder is found without importing it.
    """

    def __init__(self) -> None:
        import importlib.util

        import dlib

        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("face-recognition-models is not installed (pip install 'portrait3d[dev]')")
        models = Path(next(iter(spec.submodule_search_locations))) / "models"
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def embed(self, rgb: np.ndarray) -> np.ndarray | None:
        """128-d embedding of the largest face in an (H, W, 3) uint8 image, or None when none is found."""
        import dlib

        image = np.ascontiguousarray(rgb[..., :3])
        faces = self.detector(image, 1)
        if not faces:
            return None
        face = max(faces, key=lambda r: r.width() * r.height())
        shape = self.predictor(image, face)
        chip = dlib.get_face_chip(image, shape, size=150, padding=0.25)
        return np.asarray(self.encoder.compute_face_descriptor(chip, 1), dtype=np.float64)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float | None:
        """Identity distance between the largest faces of two (H, W, 3) uint8 images; None if either has none."""
        first = self.embed(a)
        second = None if first is None else self.embed(b)
        return None if second is None else float(np.linalg.norm(first - second))


def over_grey(rgba: np.ndarray, grey: int = 128) -> np.ndarray:
    """An (H, W, 4) uint8 render over a plain grey background: (H, W, 3) uint8."""
    alpha = rgba[..., 3:].astype(np.float32) / 255.0
    return np.round(rgba[..., :3] * alpha + grey * (1 - alpha)).astype(np.uint8)


def head_views(textured, pitch: float, yaws, size: int = 512) -> dict[float, np.ndarray]:
    """Renders of a textured head at each yaw (degrees, on ``pitch``) over grey: {yaw: (size, size, 3) uint8}."""
    from portrait3d.render import MeshRenderer

    renderer = MeshRenderer(textured)
    return {yaw: over_grey(renderer.render_rgba(cameras.camera_from_angles(yaw, pitch), size)) for yaw in yaws}


def identity_distances(model: IdentityModel, photo: np.ndarray, views: dict[float, np.ndarray]) -> dict | None:
    """{yaw: distance photo <-> view, or None where dlib finds no face in the view}; None if the photo has none."""
    reference = model.embed(photo)
    if reference is None:
        return None
    out = {}
    for yaw, view in views.items():
        found = model.embed(view)
        out[yaw] = None if found is None else float(np.linalg.norm(found - reference))
    return out


def meets_targets(distances: dict) -> bool:
    """Whether every yaw of :data:`TARGETS` was measured and is within its target."""
    return all(distances.get(yaw) is not None and distances[yaw] <= bound for yaw, bound in TARGETS.items())


NEARBY_YAWS = (-3.0, -1.5, 0.0, 1.5, 3.0)
NEARBY_PITCHES = (-2.0, 0.0, 2.0)
"""Offsets (degrees) of the views :func:`nearby_distances` measures about a target's yaw and the photo's pitch."""


def nearby_distances(model: IdentityModel, textured, photo: np.ndarray, pitch: float, yaw: float) -> list[float]:
    """Identity distances photo <-> the head's views at :data:`NEARBY_YAWS` about ``yaw`` and
    :data:`NEARBY_PITCHES` about ``pitch``: how far dlib's figure for one view moves with a turn too small to
    change the likeness, pitch by pitch. Views without a face are left out; [] when the photo has none.
    """
    views = {}
    for offset in NEARBY_PITCHES:
        around = head_views(textured, pitch + offset, tuple(yaw + step for step in NEARBY_YAWS))
        views.update({(offset, turned): view for turned, view in around.items()})
    # One call: the photo is embedded once for all fifteen views.
    return [d for d in (identity_distances(model, photo, views) or {}).values() if d is not None]
