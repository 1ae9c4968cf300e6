"""Camera accuracy (issues 3 and 20): photograph a real head scan at known turns and estimate them back.

The head is Lee Perry-Smith's scan (``data/scans/lee_perry_smith.glb``, CC BY 3.0), rendered as
:func:`portrait3d.proxy.scan_eval.scan_photo` renders it (textured, lit from the camera, plain background) after
turning it about the centre of its top 28 cm by a known yaw and pitch. The scan's own pose toward the camera is
whatever its unturned photo reads, so the tests check that reading is small, then compare the other poses after
removing it.

Nothing in the estimator was fitted on these renders. This test once used a head whose face was the face mesh's own
depth of the sample photo (MediaPipe's ``z`` on an ellipsoid skull, flatter than a real face): on it the face mesh's
first reading read 0.75-0.86 of the turn, and the estimator's frontalised second reading was made to correct that.
On this real head the first reading is within 5 degrees up to 45 and the second overshoots (56.6 for 45), which is
why :data:`portrait3d.preprocess.pose.SECOND_READING_TURN` keeps the first reading up to 45 degrees (on the flat
head the estimate now errs by up to 13.2 degrees of yaw; docs/BENCHMARKS.md, twenty-first session).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from portrait3d.preprocess import alignment, models, pose
from portrait3d.proxy.scan_eval import ScanPhoto, head_centre, scan_photo

REPO = Path(__file__).resolve().parents[2]
SCAN = REPO / "data" / "scans" / "lee_perry_smith.glb"
# (camera yaw, camera pitch) in degrees, as camera_from_angles takes them.
POSES = [
    (-40, 15), (40, -15), (-30, -20), (30, 20), (15, -10), (-20, 10), (30, -20), (-30, 20),
    (0, 20), (0, -20), (45, 0), (-45, 0), (45, -20), (-45, 20), (45, 20), (-45, -20),
]  # fmt: skip
SIZE = 512


@pytest.fixture(scope="module")
def scan() -> tuple[trimesh.Trimesh, np.ndarray]:
    """The scan (metres, facing +z) and the centre it is turned about: the centre of its top 28 cm's box."""
    mesh = trimesh.load(SCAN, force="mesh")
    return mesh, head_centre(mesh)


def _turned(scan, yaw: float, pitch: float) -> tuple[ScanPhoto, np.ndarray]:
    """The photo of the scan seen by a camera at (yaw, pitch) about its centre, and the head's (4, 4) turn."""
    mesh, centre = scan
    # The camera orbiting to (yaw, pitch) sees what a fixed camera sees of the head turned by -yaw, then +pitch.
    turn = trimesh.transformations.rotation_matrix(np.radians(pitch), [1, 0, 0], centre) @ (
        trimesh.transformations.rotation_matrix(np.radians(-yaw), [0, 1, 0], centre)
    )
    turned = mesh.copy()
    turned.apply_transform(turn)
    return scan_photo(turned, centre, size=SIZE), turn


def _estimate(image: np.ndarray) -> alignment.Alignment:
    """The pipeline's estimate: landmarks and pose read from the symmetric detection of the face."""
    faces = models.detect_faces(image)
    assert faces, "no face found in the photo of the scan"
    face = pose.symmetric_detection(image, faces[0])
    return pose.estimate(image, models.face_landmarks(image, faces[0]).points, face=face)


def test_camera_estimate_of_a_real_head(scan):
    zero = _estimate(_turned(scan, 0, 0)[0].image).camera.angles(target=(0, 0, 0))
    assert abs(zero.yaw) <= 3 and abs(zero.pitch) <= 5, zero
    errors = []
    for yaw, pitch in POSES:
        got = _estimate(_turned(scan, yaw, pitch)[0].image).camera.angles(target=(0, 0, 0))
        errors.append((got.yaw - zero.yaw - yaw, got.pitch - zero.pitch - pitch))
    errors = np.array(errors)
    worst = np.abs(errors).max(axis=0)
    rms = np.sqrt(np.mean(errors**2, axis=0))
    report = dict(zip(POSES, np.round(errors, 1).tolist()))
    # Measured on these poses: worst 5.1 deg in yaw (-30, -20) and 7.4 in pitch (0, -20); rms 2.5 and 4.5
    # (the face mesh reads a face tilted down as tilted further). The former estimator, the second reading
    # at every yaw, failed here: worst yaw error 13.7 (45 deg read as 56.6), worst pitch 11.1.
    assert worst[0] <= 6.0 and worst[1] <= 9.0, report
    assert rms[0] <= 3.0 and rms[1] <= 5.0, (rms, report)


def test_crop_follows_one_point_of_the_head(scan):
    """The crop's centre (PanoHead's world origin) is one point of the head whichever way it turns, at one scale.

    Each estimate's crop centre is cast back through the photo as a ray, turned back into the scan's frame; the
    rays of yaws -40..40 must pass near one point (their least-squares meeting point), and the crop's scale
    (crop pixels per photo pixel) must stay put.
    """
    origins, directions, scales = [], [], []
    for yaw in (-40, -20, 0, 20, 40):
        photo, turn = _turned(scan, yaw, 0)
        align = _estimate(photo.image)
        linear, shift = align.matrix[:, :2], align.matrix[:, 2]
        pixel = np.linalg.solve(linear, np.full(2, alignment.ALIGNED_SIZE / 2) - shift)
        scales.append(float(np.sqrt(abs(np.linalg.det(linear)))))
        fx, fy, cx, cy = photo.camera.pixel_intrinsics(SIZE, SIZE)
        ray = photo.camera.cam2world[:3, :3] @ np.array([(pixel[0] - cx) / fx, (pixel[1] - cy) / fy, 1.0])
        back = np.linalg.inv(turn)
        origins.append(back[:3, :3] @ photo.camera.position + back[:3, 3])
        directions.append(back[:3, :3] @ (ray / np.linalg.norm(ray)))
    origins, directions = np.array(origins), np.array(directions)
    across = np.eye(3)[None] - directions[:, :, None] * directions[:, None, :]  # (N, 3, 3): off-ray parts
    point = np.linalg.solve(across.sum(0), np.einsum("nij,nj->i", across, origins))
    miss = np.linalg.norm(np.einsum("nij,nj->ni", across, point - origins), axis=1)
    report = {"miss_mm": np.round(miss * 1000, 1).tolist(), "scales": np.round(scales, 3).tolist()}
    # Measured: the rays pass within 3.8 mm of one point 30 mm in front of and 22 mm above the box centre (the
    # box holds the nose and the neck), the scale within 2.6 % (1.705-1.749); with the depth gain taken from the
    # second reading at every yaw, as before the first reading was kept below 45 degrees, the scale fell by 9 %
    # at +-40.
    assert miss.max() <= 0.006, report
    assert np.ptp(scales) <= 0.04 * np.mean(scales), report
    assert np.linalg.norm(point - scan[1]) <= 0.05, np.round((point - scan[1]) * 1000, 1)
