"""Head pose from face-mesh landmarks, the PanoHead crop, and the landmark record.

Head frame (= PanoHead world): origin at the head's centre, x toward the
subject's left (image right in a frontal photo), y up, z out of the face.

Pose. The 468 landmarks carry a depth (``z``, same pixel scale as ``x``) so the
head's axes can be read off them directly: x from the symmetric pairs
(subject's left minus right), up from the midline (chin to forehead, made
orthogonal to x), forward = x cross up. Those three columns are the head-to-
camera rotation in OpenCV camera axes, which is exactly how the PanoHead camera
sees the world axes, so the camera follows without any fitted face model. On
real heads (two scans photographed at known turns) one such reading is within
about 5 deg of the true yaw up to 45 and falls short beyond;
:func:`portrait3d.preprocess.pose.estimate` takes a second reading on a
frontalised copy of the face from there and passes the rotation in here.
Measured on Lee Perry-Smith's scan at yaw -45..45 and pitch -20..20 (16 poses,
``tests/preprocess/test_preprocess_camera.py``): |error| <= 5.1 deg in yaw and
7.4 in pitch (rms 2.5 and 4.5).

Crop. PanoHead's own cropping (3DDFA_V2 + an FFHQ-style quad, then a 3DDFA
scale and shift) sizes the face by ``max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)``
and keeps the head's centre, not the face, at a fixed place as the head turns.
The constants below were measured on the crops published with PanoHead. Here
the lengths are measured in 3D (so they do not shrink with yaw; the landmark
depth is first stretched by the compression that ``pose.estimate`` measured on
the photo) and the face centre is placed where :data:`FACE_CENTRE` projects
through the estimated camera, which keeps the head centre at the image centre
for every pose. Measured on the same scan: the crop centres of yaw -40..40,
cast back through their photos, pass within 3.8 mm of one point of the head,
and the crop's scale stays within 2.6 % (what is left of the pose error moves
the projected face centre: 1 deg of yaw is about 1.9 px).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from portrait3d.cameras import PANOHEAD_FOCAL, PANOHEAD_RADIUS, Camera, camera_from_angles

ALIGNED_SIZE = 512
"""Side of ``aligned.png`` in pixels."""
FOCAL_PX = PANOHEAD_FOCAL * ALIGNED_SIZE
"""PanoHead focal length in ``aligned.png`` pixels."""

# Framing measured on the four crops published with PanoHead (3DDFA_V2_cropping/crop_samples/img/
# man.jpg, woman.jpg and dataset/testdata_img/000134.jpg, 000157.jpg, resized to 512): with their
# labels' yaw and pitch, the face centre sits at (256, 243.5) + 109 px x (-sin yaw, sin pitch) and
# max(2 |eye_to_eye|, 1.8 |eye_to_mouth|) spans 252 px (spread +-5 px over the four).
FACE_DEPTH = 0.128
"""How far the face centre sits in front of the head centre (world units; the 109 px above)."""
_FACE_PX_PER_UNIT = FOCAL_PX / (PANOHEAD_RADIUS - FACE_DEPTH)
FACE_SCALE = 252.2 / _FACE_PX_PER_UNIT
"""World length of ``max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)`` (3D lengths, so the same at every pose)."""
FACE_CENTRE = np.array([0.0, 12.5 / _FACE_PX_PER_UNIT, FACE_DEPTH])
"""World position of the face centre ``eye_mid + 0.1 eye_to_mouth`` (12.5 px above the image centre)."""

# 468-point face mesh indices (MediaPipe topology). "right" = the subject's right.
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
MOUTH_CORNERS = (61, 291)
# Symmetric pairs (subject's right, subject's left): eyes, brows, nose wings, mouth, cheeks, jaw.
SYMMETRIC_PAIRS = (
    (33, 263),
    (133, 362),
    (159, 386),
    (145, 374),
    (70, 300),
    (105, 334),
    (107, 336),
    (129, 358),
    (98, 327),
    (61, 291),
    (40, 270),
    (91, 321),
    (234, 454),
    (93, 323),
    (132, 361),
    (58, 288),
    (172, 397),
    (136, 365),
    (150, 379),
    (149, 378),
)
MIRROR_INDEX = (
    0, 1, 2, 248, 4, 5, 6, 249, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 250, 251, 252, 253, 254, 255, 256, 257,
    258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 270, 271, 272, 273, 274, 275, 276, 277, 278, 279, 280,
    281, 282, 283, 284, 285, 286, 287, 288, 289, 290, 291, 292, 293, 294, 295, 296, 297, 298, 299, 300, 301, 302, 303,
    304, 305, 306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321, 322, 323, 94, 324, 325,
    326, 327, 328, 329, 330, 331, 332, 333, 334, 335, 336, 337, 338, 339, 340, 341, 342, 343, 344, 345, 346, 347, 348,
    349, 350, 351, 352, 353, 354, 355, 356, 357, 358, 359, 360, 361, 362, 363, 364, 365, 366, 367, 368, 369, 370, 371,
    372, 373, 374, 375, 376, 377, 378, 379, 151, 152, 380, 381, 382, 383, 384, 385, 386, 387, 388, 389, 390, 164, 391,
    392, 393, 168, 394, 395, 396, 397, 398, 399, 175, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412,
    413, 414, 415, 416, 417, 418, 195, 419, 197, 420, 199, 200, 421, 422, 423, 424, 425, 426, 427, 428, 429, 430, 431,
    432, 433, 434, 435, 436, 437, 438, 439, 440, 441, 442, 443, 444, 445, 446, 447, 448, 449, 450, 451, 452, 453, 454,
    455, 456, 457, 458, 459, 460, 461, 462, 463, 464, 465, 466, 467, 3, 7, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
    60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88,
    89, 90, 91, 92, 93, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114,
    115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137,
    138, 139, 140, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150, 153, 154, 155, 156, 157, 158, 159, 160, 161, 162,
    163, 165, 166, 167, 169, 170, 171, 172, 173, 174, 176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188,
    189, 190, 191, 192, 193, 194, 196, 198, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215,
    216, 217, 218, 219, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238,
    239, 240, 241, 242, 243, 244, 245, 246, 247
)  # fmt: skip
"""Face-mesh index of each landmark's mirror image: landmark ``i`` of a face is landmark ``MIRROR_INDEX[i]``
of its mirror image. An involution that keeps the 28 midline points and swaps every pair above; found by
matching the head-frame landmarks of two frontal photos (the sample, skimage's astronaut) to their own
mirror images (optimal assignment; both photos give this table, worst match 0.024 face widths)."""
FOREHEAD_MIDLINE = (10, 151, 9)
CHIN_MIDLINE = (152, 175, 199)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def head_rotation(points: np.ndarray) -> np.ndarray:
    """Head-to-camera rotation read off 3D face-mesh landmarks (one reading: turned too little, see
    :mod:`portrait3d.preprocess.pose`).

    Args:
        points: (468, 3) landmarks in OpenCV camera axes (x right, y down, z away
            from the camera), any common scale.
    Returns:
        (3, 3) rotation whose columns are the head's x (subject's left), y (up)
        and z (out of the face) axes in camera coordinates.
    """
    right = points[[r for r, _ in SYMMETRIC_PAIRS]]
    left = points[[le for _, le in SYMMETRIC_PAIRS]]
    x_axis = _unit((left - right).sum(0))
    up = points[list(FOREHEAD_MIDLINE)].mean(0) - points[list(CHIN_MIDLINE)].mean(0)
    y_axis = _unit(up - np.dot(up, x_axis) * x_axis)
    z_axis = np.cross(x_axis, y_axis)
    return np.stack([x_axis, y_axis, z_axis], axis=1)


def camera_from_rotation(rotation: np.ndarray) -> Camera:
    """The PanoHead camera that sees the head with ``rotation`` (head-to-camera, OpenCV axes).

    The camera looks at the head centre (the world origin) from PanoHead's distance.
    """
    cam2world = np.eye(4)
    cam2world[:3, :3] = rotation.T
    cam2world[:3, 3] = -PANOHEAD_RADIUS * rotation.T[:, 2]
    return Camera(cam2world)


def face_centre_and_scale(points: np.ndarray) -> tuple[np.ndarray, float]:
    """``eye_mid + 0.1 eye_to_mouth`` (3,) and ``max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)``, both in 3D."""
    right_eye = points[list(RIGHT_EYE)].mean(0)
    left_eye = points[list(LEFT_EYE)].mean(0)
    mouth = points[list(MOUTH_CORNERS)].mean(0)
    eye_mid = (right_eye + left_eye) / 2.0
    eye_to_mouth = mouth - eye_mid
    scale = max(2.0 * np.linalg.norm(left_eye - right_eye), 1.8 * np.linalg.norm(eye_to_mouth))
    return eye_mid + 0.1 * eye_to_mouth, float(scale)


def roll_free(rotation: np.ndarray) -> tuple[np.ndarray, float]:
    """Rotate the image about the optical axis so that the camera has no roll.

    Returns:
        ``(q, angle)``: (2, 2) image rotation to apply to pixel offsets and its
        angle in radians.
    """
    # The camera's x axis must stay horizontal in the world: row 0 of the
    # world-to-camera rotation (= rotation) must have no world-y component.
    angle = math.atan2(-rotation[0, 1], -rotation[1, 1])
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]]), angle


@dataclass
class Alignment:
    """The crop of a photo and the camera that sees it.

    Attributes:
        matrix: (2, 3) affine from source pixels to ``aligned.png`` pixels (a similarity).
        camera: the PanoHead camera of ``aligned.png``.
        landmarks: (468, 3) landmarks in ``aligned.png`` pixels; ``z`` as documented in
            :mod:`portrait3d.preprocess` (depth from the head-centre plane, in pixels
            at that plane, positive away from the camera).
    """

    matrix: np.ndarray
    camera: Camera
    landmarks: np.ndarray


def align(
    points: np.ndarray,
    yaw: float | None = None,
    pitch: float | None = None,
    rotation: np.ndarray | None = None,
    depth_gain: float = 1.0,
) -> Alignment:
    """PanoHead crop and camera from the landmarks of one face.

    The crop levels the eyes, so the camera has no roll.

    Args:
        points: (468, 3) landmarks in source pixels (``z`` in the same pixel scale).
        yaw, pitch: degrees that replace the estimated ones (the crop follows them).
        rotation: (3, 3) head-to-camera rotation; default :func:`head_rotation` of ``points``
            (one reading; :func:`portrait3d.preprocess.pose.estimate` gives a better one).
        depth_gain: factor on the landmarks' ``z`` for the 3D face lengths that size the crop
            (how much the landmark depth is compressed; measured by ``pose.estimate``).
    """
    rotation = head_rotation(points) if rotation is None else np.asarray(rotation, dtype=np.float64)
    q, _ = roll_free(rotation)
    rolled = rotation.copy()
    rolled[:2] = q @ rotation[:2]
    camera = camera_from_rotation(rolled)
    if yaw is not None or pitch is not None:
        estimated = camera.angles(target=(0.0, 0.0, 0.0))
        camera = camera_from_angles(estimated.yaw if yaw is None else yaw, estimated.pitch if pitch is None else pitch)
    # The landmark depth is compressed like the yaw (see portrait3d.preprocess.pose); undo it for the 3D lengths.
    scale_src = face_centre_and_scale(points * np.array([1.0, 1.0, depth_gain]))[1]
    centre_src = face_centre_and_scale(points)[0]
    (target,), (depth,) = camera.project(FACE_CENTRE[None], ALIGNED_SIZE, ALIGNED_SIZE)
    k = FOCAL_PX * FACE_SCALE / depth / scale_src
    linear = k * q
    matrix = np.concatenate([linear, (target - linear @ centre_src[:2])[:, None]], axis=1)

    xy = points[:, :2] @ linear.T + matrix[:, 2]
    # Depth along the optical axis, world units: the face centre's depth plus the
    # landmark's depth offset (pixels at the face, k * z) converted at that depth.
    depth_world = depth + (points[:, 2] - centre_src[2]) * k * depth / FOCAL_PX
    z = (depth_world - PANOHEAD_RADIUS) * FOCAL_PX / PANOHEAD_RADIUS
    landmarks = np.concatenate([xy, z[:, None]], axis=1)
    return Alignment(matrix, camera, landmarks)


def landmarks_to_world(landmarks: np.ndarray, camera: Camera, size: int = ALIGNED_SIZE) -> np.ndarray:
    """World positions of ``camera.json`` landmarks (the inverse of the recorded ``x, y, z``).

    Args:
        landmarks: (N, 3) ``x, y`` pixels in the ``size``-pixel aligned image and ``z``
            (see :mod:`portrait3d.preprocess`).
        camera: the camera of ``camera.json``.
    Returns:
        (N, 3) world points.
    """
    fx, fy, cx, cy = camera.pixel_intrinsics(size, size)
    radius = float(np.linalg.norm(camera.position - camera.look_at_point()))
    depth = radius + landmarks[:, 2] * radius / fx
    cam = np.stack([(landmarks[:, 0] - cx) / fx * depth, (landmarks[:, 1] - cy) / fy * depth, depth], axis=-1)
    return cam @ camera.cam2world[:3, :3].T + camera.cam2world[:3, 3]
