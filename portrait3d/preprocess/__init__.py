"""The preprocess stage: one photo in; the PanoHead crop, its camera and a head mask out.

Library call::

    from portrait3d.preprocess import PreprocessOptions, preprocess
    info = preprocess("photo.jpg", "runs/me", PreprocessOptions())

Stage builder (what make-asset's pipeline lists): :func:`stage` ``(photo, options) -> Stage``.

CLI: ``portrait3d preprocess PHOTO --out RUN [--yaw DEG --pitch DEG] [--centred-crop]``.

Writes, in the run folder:

``input/aligned.png``
    512x512 RGB in PanoHead framing: the crop puts the head centre (the world
    origin) where the PanoHead camera (focal 4.2647, distance 2.7, looking at
    the origin) sees it, and scales the face as in the crops published with
    PanoHead (see :mod:`portrait3d.preprocess.alignment`). The eyes are level
    (the camera has no roll). Parts outside the photo are a blurred reflection.
``input/mask.png``
    512x512 L, 255 = the person (head, hair, neck, shoulders), 0 = background.
    From the photo's own transparency when it has some, else MediaPipe's
    selfie segmenter (face path) or GrabCut (``--centred-crop``).
``input/camera.json``
    ::

        {
          "label": [25 floats],   # PanoHead label of the aligned.png camera (portrait3d.cameras)
          "yaw": deg, "pitch": deg, "roll": deg,   # of that camera, portrait3d.cameras convention
          "landmarks": {                            # null with --centred-crop
            "format": "mediapipe-face-mesh-468",    # MediaPipe's 468-point face mesh topology
            "points": [[x, y, z], ...]              # 468 points
          },
          "detector": {...} | null,   # models, package, runtime, face_score, face_box (source pixels)
          "source": {"path", "width", "height", "sha256"},   # the photo (size after EXIF rotation)
          "faces_found": n,           # faces the detector saw; the largest is used
          "manual": bool,             # true when --yaw/--pitch/--centred-crop was given
          "crop": [[a, b, tx], [c, d, ty]]   # source pixels -> aligned.png pixels (similarity)
        }

    Landmark ``points``: ``x, y`` are ``aligned.png`` pixel coordinates (x right,
    y down, pixel centres at +0.5 as in :meth:`portrait3d.cameras.Camera.project`);
    ``z`` is the depth along the optical axis relative to the plane through the
    head centre, in pixels at that plane (``FOCAL_PX / 2.7`` = 808.7 px per world
    unit), positive away from the camera. So a landmark's camera-space point is
    ``depth = 2.7 + z * 2.7 / FOCAL_PX``, ``X = ((x - 256) / FOCAL_PX * depth,
    (y - 256) / FOCAL_PX * depth, depth)`` (OpenCV axes, ``FOCAL_PX`` = 4.2647 * 512)
    and its world point is ``cam2world @ X``:
    :func:`portrait3d.preprocess.alignment.landmarks_to_world` does exactly this.
    In world units the face spans about 0.3 (``max(2 |eye_to_eye|,
    1.8 |eye_to_mouth|)`` = :data:`~portrait3d.preprocess.alignment.FACE_SCALE`) and
    its centre lies :data:`~portrait3d.preprocess.alignment.FACE_DEPTH` in front of
    the origin.

Face detection and landmarks run offline from model files that ship in the
``mediapipe==0.10.21`` wheel (installed with ``--no-deps``), through OpenCV; see
:mod:`portrait3d.preprocess.models`.
"""

from portrait3d.preprocess.alignment import landmarks_to_world
from portrait3d.preprocess.pipeline import (
    ALIGNED,
    CAMERA,
    LANDMARK_FORMAT,
    MASK,
    PreprocessOptions,
    analyse,
    preprocess,
    stage,
)

__all__ = [
    "ALIGNED",
    "CAMERA",
    "LANDMARK_FORMAT",
    "MASK",
    "PreprocessOptions",
    "analyse",
    "landmarks_to_world",
    "preprocess",
    "stage",
]
