"""The near eye's gaze kept where its mirror image paints the far eye (:mod:`portrait3d.proxy.gaze`)."""

from __future__ import annotations

import numpy as np

from portrait3d.proxy.face_regions import FACE_FEATURES
from portrait3d.proxy.gaze import IRIS_SHARE, gaze_kept_for_mirror, iris_position

SIZE = 256
SKIN = np.array([0.8, 0.62, 0.52])
SCLERA = np.array([0.93, 0.92, 0.9])
IRIS = np.array([0.25, 0.3, 0.2])
CENTRES = {"right": (80.0, 120.0), "left": (176.0, 120.0)}
HALF_WIDTH, HALF_HEIGHT = 24.0, 9.0


def _eye_landmarks() -> np.ndarray:
    """Landmarks of two almond eyes, 48 pixels corner to corner; each ring starts at the outer corner and reaches
    the inner corner half-way round (the face mesh's order). The nose tip lies under the right eye: it is the far
    one, the left eye the near one."""
    points = np.zeros((468, 2))
    points[:] = (128.0, 170.0)
    for side, (x, y) in CENTRES.items():
        outward = -1.0 if side == "right" else 1.0  # the subject's right eye is on the photo's left
        angles = np.linspace(0.0, 2.0 * np.pi, len(FACE_FEATURES[f"{side}_eye"]), endpoint=False)
        points[list(FACE_FEATURES[f"{side}_eye"])] = np.c_[
            x + outward * HALF_WIDTH * np.cos(angles), y + HALF_HEIGHT * np.sin(angles)
        ]
    points[4] = (CENTRES["right"][0] + 4.0, 150.0)
    return points


def _photo(iris_at: dict[str, float]) -> np.ndarray:
    """Skin, two openings of sclera, and in each an iris at ``iris_at[side]`` along the eye (0 inner corner, 1
    outer), one :data:`IRIS_SHARE` of the eye wide, cut by the lids."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    photo = np.broadcast_to(SKIN, (SIZE, SIZE, 3)).copy()
    for side, (x, y) in CENTRES.items():
        opening = ((cols - x) / HALF_WIDTH) ** 2 + ((rows - y) / HALF_HEIGHT) ** 2 < 1.0
        photo[opening] = SCLERA
        outward = -1.0 if side == "right" else 1.0
        iris_x = x + outward * HALF_WIDTH * (2.0 * iris_at[side] - 1.0)
        iris = np.hypot(cols - iris_x, rows - y) < IRIS_SHARE * HALF_WIDTH
        photo[opening & iris] = IRIS
    return photo


def test_the_iris_is_found_along_the_eye():
    landmarks = _eye_landmarks()
    photo = _photo({"right": 0.5, "left": 0.3})
    assert abs(iris_position(photo, landmarks, "left") - 0.3) < 0.04
    assert abs(iris_position(photo, landmarks, "right") - 0.5) < 0.04
    # Towards the outer corner, on the photo's left for the subject's right eye.
    assert abs(iris_position(_photo({"right": 0.68, "left": 0.5}), landmarks, "right") - 0.68) < 0.04
    # A closed eye (skin all through its opening) shows no iris.
    assert iris_position(np.broadcast_to(SKIN, (SIZE, SIZE, 3)).copy(), landmarks, "left") is None


def test_the_near_eyes_iris_moves_to_its_mirrored_place_inside_the_lids():
    """The near eye looks towards its inner corner (0.3): its copy for the mirror image has the iris at 0.7, so that
    the far eye, its mirror image, looks the same way as the near eye; the lids and the far eye stay the photo's."""
    landmarks = _eye_landmarks()
    photo = _photo({"right": 0.5, "left": 0.3})
    kept = gaze_kept_for_mirror(photo, landmarks)
    assert abs(iris_position(kept, landmarks, "left") - 0.7) < 0.04
    x, y = CENTRES["left"]
    at = {u: (int(round(y)), int(round(x + HALF_WIDTH * (2.0 * u - 1.0)))) for u in (0.3, 0.7)}
    np.testing.assert_allclose(kept[at[0.3]], SCLERA, atol=0.03)  # the sclera where the iris was
    np.testing.assert_allclose(kept[at[0.7]], IRIS, atol=0.03)
    # Outside the opening (the lids, the skin) and the far eye: the photo's own pixels.
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    outside = ((cols - x) / (HALF_WIDTH + 2)) ** 2 + ((rows - y) / (HALF_HEIGHT + 2)) ** 2 > 1.0
    np.testing.assert_allclose(kept[outside], photo[outside], atol=0.01)
    # An iris in the middle of the near eye: nothing moves.
    centred = _photo({"right": 0.3, "left": 0.5})
    assert gaze_kept_for_mirror(centred, landmarks) is centred
