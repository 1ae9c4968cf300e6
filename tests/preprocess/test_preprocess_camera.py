"""Camera accuracy (issue 3 item 3): render a textured head at known yaw/pitch and estimate it back.

The head: the sample photo's 468 landmarks lifted to 3D with its estimated
camera (a face surface with MediaPipe's depth of the photo), in front of an
ellipsoidal skull centred on the head centre, both textured by projecting the
aligned photo. The scene's world frame is the estimator's reading of the
photo, so the render at yaw 0, pitch 0 carries that reading's own error; the
accuracy test therefore also checks that error is small, then compares the
other poses after removing it.

Nothing in the estimator was fitted on this head: its one calibrated constant,
:data:`portrait3d.preprocess.pose.PITCH_TURN_BIAS`, comes from renders of the
proxy head. Measured on this head (yaw -45..45 x pitch -20..20, 55 poses):
|error| <= 3.2 deg in yaw and 4.8 in pitch (rms 1.4 and 1.7); the crop of the
skull moves by 5.5 px and its height by 2.7 % between yaw -40 and 40. Those were
the one-sided readings; the mirror-symmetric ones (issue 11) measure 3.8 / 6.0
deg (rms 1.5 / 2.3) on the 16 poses below and 8 px of crop drift.

That head's face is the face mesh's own depth, flatter than a real face. The last test photographs a real head
scan (Lee Perry-Smith's, ``data/scans/``, CC BY 3.0) at the same poses and checks the face mesh's first reading
on it, which is the accurate one there (see :func:`test_first_reading_of_a_real_head`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from portrait3d.cameras import camera_from_angles
from portrait3d.preprocess import alignment, landmarks_to_world, models, pose
from portrait3d.preprocess.decode import read_photo
from portrait3d.preprocess.pipeline import PreprocessOptions, analyse, warp_crop

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "samples" / "astronaut.jpg"
SCAN = REPO / "data" / "scans" / "lee_perry_smith.glb"
POSES = [
    (-40, 15), (40, -15), (-30, -20), (30, 20), (15, -10), (-20, 10), (30, -20), (-30, 20),
    (0, 20), (0, -20), (45, 0), (-45, 0), (45, -20), (-45, 20), (45, 20), (-45, -20),
]  # fmt: skip
BACKGROUND = 200


def build_head_scene() -> tuple[trimesh.Trimesh, trimesh.Trimesh]:
    """(face+skull textured mesh, skull-only mesh) in PanoHead world units."""
    from scipy.spatial import Delaunay

    result = analyse(read_photo(SAMPLE), PreprocessOptions())
    camera = camera_from_angles(result.record["yaw"], result.record["pitch"], result.record["roll"])
    points = np.asarray(result.record["landmarks"]["points"])
    face = landmarks_to_world(points, camera)
    skull = trimesh.creation.icosphere(subdivisions=5)
    skull.vertices = skull.vertices * np.array([0.16, 0.21, 0.11]) + np.array([0.0, 0.03, 0.0])
    vertices = np.concatenate([face, skull.vertices])
    faces = np.concatenate([Delaunay(points[:, :2]).simplices, skull.faces + len(face)])
    uv_px, _ = camera.project(vertices, 512, 512)
    uv = np.stack([uv_px[:, 0] / 512, 1.0 - uv_px[:, 1] / 512], axis=-1)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(result.aligned))
    return mesh, skull


@pytest.fixture(scope="module")
def head_scene():
    return build_head_scene()


def _render(renderer, yaw: float, pitch: float) -> tuple[np.ndarray, np.ndarray]:
    rgba = renderer.render_rgba(camera_from_angles(yaw, pitch), 512).astype(np.float64)
    alpha = rgba[..., 3:] / 255.0
    return np.round(rgba[..., :3] * alpha + BACKGROUND * (1 - alpha)).astype(np.uint8), alpha[..., 0] > 0.5


def _estimate(image: np.ndarray) -> alignment.Alignment:
    """The pipeline's estimate: landmarks and pose read from the symmetric detection of the face."""
    faces = models.detect_faces(image)
    assert faces, "no face found in the render"
    face = pose.symmetric_detection(image, faces[0])
    return pose.estimate(image, models.face_landmarks(image, faces[0]).points, face=face)


def test_camera_estimate_of_renders(head_scene):
    from portrait3d.render import MeshRenderer

    renderer = MeshRenderer(head_scene[0])
    zero = _estimate(_render(renderer, 0, 0)[0]).camera.angles(target=(0, 0, 0))
    assert abs(zero.yaw) <= 3 and abs(zero.pitch) <= 3, zero
    errors = []
    for yaw, pitch in POSES:
        got = _estimate(_render(renderer, yaw, pitch)[0]).camera.angles(target=(0, 0, 0))
        errors.append((got.yaw - zero.yaw - yaw, got.pitch - zero.pitch - pitch))
    errors = np.array(errors)
    worst = np.abs(errors).max(axis=0)
    rms = np.sqrt(np.mean(errors**2, axis=0))
    report = dict(zip(POSES, np.round(errors, 1).tolist()))
    # Measured on these poses: worst 3.8 deg in yaw (-45, 0) and 6.0 in pitch (40, -15); rms 1.5 and 2.3
    # (readings of the photo and of its mirror image averaged, so that a mirrored photo gets exactly the
    # mirrored camera; the one-sided readings gave 3.2 / 4.8, rms 1.7 / 2.0, but cameras 10 deg of yaw
    # apart for skimage's camera() and its mirror image). One reading without the frontalised second one
    # fails here (worst yaw 14.6 deg).
    assert worst[0] <= 4.5 and worst[1] <= 6.5, report
    assert rms[0] <= 2.0 and rms[1] <= 2.5, (rms, report)


def test_crop_keeps_the_head_in_place_across_yaws(head_scene):
    """The skull's box in the aligned crop stays put as the head turns (the crop follows the head centre)."""
    import cv2

    from portrait3d.render import MeshRenderer

    renderer, skull_renderer = MeshRenderer(head_scene[0]), MeshRenderer(head_scene[1])
    boxes = []
    for yaw in (-40, -20, 0, 20, 40):
        image, _ = _render(renderer, yaw, 0)
        matrix = _estimate(image).matrix
        skull = skull_renderer.render_rgba(camera_from_angles(yaw, 0), 512)[..., 3]
        crop = cv2.warpAffine(skull, matrix, (512, 512)) > 127
        aligned = warp_crop(image, matrix)
        assert aligned.shape == (512, 512, 3)
        ys, xs = np.nonzero(crop)
        boxes.append((xs.min(), xs.max(), ys.min(), ys.max()))
    boxes = np.array(boxes, dtype=np.float64)
    centres = np.stack([(boxes[:, 0] + boxes[:, 1]) / 2, (boxes[:, 2] + boxes[:, 3]) / 2], axis=1)
    heights = boxes[:, 3] - boxes[:, 2]
    spread = np.ptp(centres, axis=0)
    # Measured: the centre moves by 8 px (x) and 1.5 px (y), the height by 2 % between yaw -40 and 40
    # (what is left of the pose error moves the projected face centre the crop is anchored on; with the
    # one-sided readings, before the mirror-symmetric ones, 4.5 px and 5.5 px).
    assert spread.max() <= 9.0 and np.ptp(heights) <= 0.04 * heights.mean(), boxes.tolist()
    # The head centre (world origin) lands near the crop centre.
    assert np.all(np.abs(centres - 256) <= 40), centres.tolist()


@pytest.fixture(scope="module")
def real_head() -> tuple[trimesh.Trimesh, np.ndarray]:
    """Lee Perry-Smith's scan (metres, facing +z) and the centre of its top 28 cm's box, which it turns about."""
    from portrait3d.proxy.scan_eval import head_centre

    mesh = trimesh.load(SCAN, force="mesh")
    return mesh, head_centre(mesh)


def _first_reading(real_head, yaw: float, pitch: float):
    """The face mesh's first (mirror-symmetric) reading of the scan photographed by a camera at (yaw, pitch)."""
    from portrait3d.proxy.scan_eval import scan_photo

    mesh, centre = real_head
    # A camera orbiting to (yaw, pitch) sees what a fixed camera sees of the head turned by -yaw, then +pitch.
    turned = mesh.copy()
    turned.apply_transform(trimesh.transformations.rotation_matrix(np.radians(-yaw), [0, 1, 0], centre))
    turned.apply_transform(trimesh.transformations.rotation_matrix(np.radians(pitch), [1, 0, 0], centre))
    image = scan_photo(turned, centre, size=512).image
    faces = models.detect_faces(image)
    assert faces, "no face found in the photo of the scan"
    points = pose.symmetric_landmarks(image, pose.symmetric_detection(image, faces[0]))
    return alignment.camera_from_rotation(alignment.head_rotation(points)).angles(target=(0, 0, 0))


def test_first_reading_of_a_real_head(real_head):
    """On a real head (a scan, CC BY 3.0) the face mesh's first reading is already near the true turn.

    The head above is built from the face mesh's own depth, flatter than a real face, and on it the first reading
    reads 0.75-0.86 of the turn; :func:`pose.estimate`'s frontalised second reading corrects that. On Lee
    Perry-Smith's scan the first reading is the accurate one and the final estimate overshoots (docs/BENCHMARKS.md,
    "The camera on a real head"): this pins what a re-calibrated estimator can start from.
    """
    zero = _first_reading(real_head, 0, 0)
    assert abs(zero.yaw) <= 3 and abs(zero.pitch) <= 5, zero
    errors = []
    for yaw, pitch in POSES:
        got = _first_reading(real_head, yaw, pitch)
        errors.append((got.yaw - zero.yaw - yaw, got.pitch - zero.pitch - pitch))
    errors = np.array(errors)
    report = dict(zip(POSES, np.round(errors, 1).tolist()))
    worst, rms = np.abs(errors).max(axis=0), np.sqrt(np.mean(errors**2, axis=0))
    # Measured: worst 5.1 deg in yaw (-30, -20) and 7.4 in pitch (0, -20), rms 2.4 and 4.5 (the face mesh reads a
    # face tilted down as tilted further). pose.estimate on the same photos: worst 13.7 in yaw (45 deg read as
    # 56.6) and 11.1 in pitch.
    assert worst[0] <= 6.0 and worst[1] <= 9.0, report
    assert rms[0] <= 3.0 and rms[1] <= 5.0, (rms, report)
