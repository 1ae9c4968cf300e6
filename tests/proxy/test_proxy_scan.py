"""Issue 20's scan targets on a real head scan the repository holds (``data/scans/lee_perry_smith.glb``, CC BY 3.0).

The scan goes through ``scripts/bench_scan.py``'s protocol (:func:`portrait3d.proxy.scan_eval.evaluate_scan`): a
frontal photo of it, the real preprocess stage and proxy head, a similarity alignment to the scan, then the
NoW-style face error, the head Chamfer above the chin and the scale error; and dlib's identity distance between
the head's frontal view and the scan's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from portrait3d.proxy import identity_eval

REPO = Path(__file__).resolve().parents[2]
SCAN = REPO / "data" / "scans" / "lee_perry_smith.glb"


@pytest.fixture(scope="module")
def lee(tmp_path_factory):
    from portrait3d.proxy.scan_eval import evaluate_scan, head_centre

    scan = trimesh.load(SCAN, force="mesh")
    centre = head_centre(scan)
    return scan, centre, evaluate_scan(scan, centre, tmp_path_factory.mktemp("lee"))


def test_a_real_scan_meets_the_scan_targets(lee):
    # Measured (as bench_scan.py prints them): face median 2.05 mm, mean 2.42 mm, head Chamfer 2.80 mm,
    # scale +2.1 % (the scan is sized as an average man's head, 197 mm long; one photo has no absolute scale).
    f = lee[2].figures
    assert f["face_points"] > 1000, f
    assert f["face_median_mm"] <= 2.5 and f["face_mean_mm"] <= 3.5, f
    assert f["head_chamfer_mm"] <= 4.0, f
    assert abs(f["scale_error_pct"]) <= 3.0, f
    assert lee[2].head.is_watertight and lee[2].head.volume > 0


def test_a_real_scans_ears_are_matched_by_the_heads(lee):
    # Measured: 2.96 mm within 30 mm of the ears (the flat plate with a hollow that stood for a pinna before: 3.51).
    # It moves with the whole head's alignment to the scan: placements of the face that leave the ears as they are
    # gave 2.85-3.28 mm (the scan's ears are not symmetric: one wants 3 mm forward, the other 3 mm back).
    f = lee[2].figures
    assert f["ear_chamfer_mm"] is not None and f["ear_chamfer_mm"] <= 3.0, f


def test_a_real_scans_neck_is_nearly_as_thick_as_his(lee):
    # Measured 20 mm below the chin: the head's girth 328 mm, the scan's 380 mm (the template's stalk of a neck before:
    # 292 mm, 0.77 of his). The head's neck is the template's, sized with the face: his is thick for his face.
    f = lee[2].figures
    assert f["neck_girth_mm"] is not None and f["scan_neck_girth_mm"] is not None, f
    assert 0.82 <= f["neck_girth_mm"] / f["scan_neck_girth_mm"] <= 1.1, f


@pytest.mark.skipif(not identity_eval.available(), reason="dlib is not installed (the dev extra)")
def test_the_head_of_a_real_scan_is_the_person(lee):
    from portrait3d.proxy.scan_eval import frontal_views

    scan, centre, result = lee
    truth, made = frontal_views(scan, result.textured, centre)
    model = identity_eval.IdentityModel()
    distance = model.distance(truth, made)
    # Measured: 0.224 (the photo itself against the scan's frontal view: 0.095).
    assert distance is not None and distance <= identity_eval.TARGETS[0.0], distance
    # The measure can tell: another person (the sample photo, Eileen Collins) scores 0.79, over the target.
    from PIL import Image

    other = np.asarray(Image.open(REPO / "data" / "samples" / "astronaut.jpg").convert("RGB"))
    stranger = model.distance(truth, other)
    assert stranger is not None and stranger > identity_eval.TARGETS[0.0], stranger


def _with_a_higher_vault(scan: trimesh.Trimesh, below_top: float = 0.08, stretch: float = 1.2) -> trimesh.Trimesh:
    """``scan`` (metres, standing) with all of it higher than ``below_top`` under its top stretched upward by
    ``stretch``: a higher vault over the same face, no wider."""
    vertices = np.asarray(scan.vertices, dtype=np.float64).copy()
    level = vertices[:, 1].max() - below_top
    above = vertices[:, 1] > level
    vertices[above, 1] = level + (vertices[above, 1] - level) * stretch
    return trimesh.Trimesh(vertices, scan.faces, visual=scan.visual, process=False)


def _width(mesh: trimesh.Trimesh, height: float) -> float:
    """Left-right extent (x) of ``mesh``'s horizontal section at ``height``."""
    section = mesh.section(plane_origin=[0.0, height, 0.0], plane_normal=[0.0, 1.0, 0.0])
    return float(np.ptp(np.concatenate(section.discrete)[:, 0]))


@pytest.mark.slow
def test_a_profile_photo_keeps_the_width_of_the_head_it_cannot_see(tmp_path):
    from portrait3d.proxy.scan_eval import evaluate_scan, head_centre, turn

    # A profile's outline is the crown, the back and the face: where a high vault stands above the template's
    # skull it reads as hair, and carried round to the sides, that hair made the head too wide (the balding man
    # in profile of ../shared/eval: a mushroom seen from the front).
    original = trimesh.load(SCAN, force="mesh")
    yaw = 72.0
    scan = turn(_with_a_higher_vault(original), yaw)
    result = evaluate_scan(scan, head_centre(turn(original, yaw)), tmp_path)  # framed as the plain head is
    truth, head = turn(scan, -yaw), turn(result.head, -yaw)
    eyes = float(result.scan_landmarks[[33, 263], 1].mean())
    # Measured 60 and 80 mm above the eyes: +1.1 % and +3.8 %, head Chamfer 3.54 mm; with the sides' hair carried
    # round from the crown +10.0 % and +14.1 %, 4.27 mm (both aligned two ways, scan_eval.two_way_icp).
    for above in (0.06, 0.08):
        error = _width(head, eyes + above) / _width(truth, eyes + above) - 1.0
        assert abs(error) < 0.06, (above, error)
    assert result.figures["head_chamfer_mm"] <= 4.0, result.figures


@pytest.mark.slow
def test_the_alignment_of_one_head_settles_in_one_place_from_starts_apart(tmp_path):
    from scipy.spatial.transform import Rotation

    from portrait3d.proxy.scan_eval import (
        CHIN,
        Similarity,
        evaluate_scan,
        head_centre,
        head_chamfer,
        outer_surface,
        transformed,
        turn,
        two_way_icp,
    )

    # A head made from a photo turned 47 degrees and aligned, aligned again from starts 8 degrees and 6 % of scale
    # away. Measured: it comes back to within 0.3 % of its scale (0.997-1.000), head Chamfer 3.30-3.46 mm. With the
    # pairs taken one way only (the head's points onto the scan) the first alignment itself was not a resting
    # place: from these starts it moved 2.3-2.6 % in scale (and one head made from photos turned 45, 46 and 47
    # degrees had settled at +2.8, +3.8 and +7.8 %, docs/BENCHMARKS.md).
    scan = turn(trimesh.load(SCAN, force="mesh"), 47.0)
    result = evaluate_scan(scan, head_centre(scan), tmp_path)
    outer, head = outer_surface(scan), result.head
    chin = float(result.scan_landmarks[CHIN, 1])
    head_points = np.asarray(trimesh.sample.sample_surface_even(head, 20000, seed=0)[0])
    scan_points = np.asarray(trimesh.sample.sample_surface_even(outer, 20000, seed=1)[0])
    head_points, scan_points = head_points[head_points[:, 1] > chin], scan_points[scan_points[:, 1] > chin]
    centre = head_points.mean(axis=0)
    scales, chamfers = [], []
    for yaw, pitch, scale in [(8.0, 8.0, 1.06), (-8.0, -8.0, 0.94), (0.0, -8.0, 1.0), (-8.0, 8.0, 0.94)]:
        rotation = Rotation.from_euler("yx", [yaw, pitch], degrees=True).as_matrix()
        start = Similarity(scale, rotation, centre - scale * rotation @ centre)
        found = two_way_icp(head_points, head, scan_points, outer, start)
        scales.append(found.scale)
        chamfers.append(head_chamfer(outer, transformed(head, found), chin))
    assert np.ptp(scales) < 0.01 and abs(np.mean(scales) - 1.0) < 0.01, scales
    assert max(chamfers) <= 4.0, chamfers


@pytest.mark.slow
def test_a_profile_photo_keeps_the_height_of_the_face(tmp_path):
    from portrait3d.proxy.scan_eval import evaluate_scan, head_centre, turn

    # The face mesh's landmarks of a face turned 72 degrees lie 15 % closer together from forehead to chin than the
    # frontal photo's; fitted as they come, the head had a short face under a full skull (face mean 3.38 mm, median
    # 2.09). Measured with the profile's landmarks stretched to the face's height: 2.35 mm, median 1.82.
    scan = trimesh.load(SCAN, force="mesh")
    yaw = 72.0
    result = evaluate_scan(turn(scan, yaw), head_centre(turn(scan, yaw)), tmp_path)
    f = result.figures
    assert f["face_mean_mm"] <= 2.8 and f["face_median_mm"] <= 2.0, f


THREE_QUARTER = 45.0


@pytest.fixture(scope="module")
def three_quarter(tmp_path_factory):
    """The scan, and its photo turned :data:`THREE_QUARTER` degrees through the benchmark's protocol."""
    from portrait3d.proxy.scan_eval import evaluate_scan, head_centre, turn

    scan = trimesh.load(SCAN, force="mesh")
    turned = turn(scan, THREE_QUARTER)
    return scan, evaluate_scan(turned, head_centre(turned), tmp_path_factory.mktemp("three_quarter"))


@pytest.mark.slow
def test_a_three_quarter_photo_does_not_stand_the_nose_out_too_far(three_quarter):
    # The face mesh's landmarks of a face turned 45 degrees stand the nose out further than the truth; taken as they
    # come, the face's mean error was 2.69 mm (median 1.84). With the nose's relief at 0.7 on turned photos
    # (face_depth.TURNED_NOSE_RELIEF): 2.38 mm (median 1.88).
    f = three_quarter[1].figures
    assert f["face_mean_mm"] <= 2.5 and f["face_median_mm"] <= 2.0, f


@pytest.mark.slow
def test_a_three_quarter_photos_far_side_is_lit_as_the_photo_was(three_quarter):
    from portrait3d.proxy.scan_eval import CHIN, frontal_psnr_as_lit, head_centre, photo_light, turn

    # The head's texture carries the photo's light. Lit from the camera at 45 degrees, the near side is lit and the
    # mid-line darker; the near side's mirror image painted the far side lit again, and the frontal view had a dark
    # stripe down the forehead, nose and chin between two lit halves: 13.8 dB against the scan lit as the photo was.
    # With the far side's light carried on by the light fitted to the seen skin (light.far_side_gain): 19.1 dB.
    scan, result = three_quarter
    heads = [turn(result.textured, -THREE_QUARTER), turn(result.face_anchored, -THREE_QUARTER)]
    truth, ((psnr, made), (anchored, _)) = frontal_psnr_as_lit(
        scan, heads, head_centre(scan), photo_light(THREE_QUARTER), result.scan_landmarks[CHIN, 1]
    )
    assert psnr >= 17.0, psnr
    # With the head anchored at the face (aligned by the landmarks alone): 14.1 dB before, 20.3 with the gain.
    assert anchored >= 18.0, anchored
    # The far half (the scan's left, +x, turned away from the camera) is the darker one, as on the truth.
    half = truth.shape[1] // 2
    made_sides = made[:, :half].mean(), made[:, half:].mean()
    truth_sides = truth[:, :half].mean(), truth[:, half:].mean()
    assert (made_sides[0] > made_sides[1]) == (truth_sides[0] > truth_sides[1]), (made_sides, truth_sides)


def test_only_a_profile_has_its_landmarks_stretched_to_the_face_height():
    from portrait3d.cameras import camera_from_angles
    from portrait3d.proxy.fit import HEIGHT_COMPRESSION, face_height_factor, with_face_height

    assert face_height_factor(camera_from_angles(52.6)) == 1.0  # the three-quarter woman's turn
    full = 1.0 / (1.0 - HEIGHT_COMPRESSION * (1.0 - np.cos(np.radians(80.0))))
    assert face_height_factor(camera_from_angles(80.0)) == pytest.approx(full)
    assert face_height_factor(camera_from_angles(-80.0)) == pytest.approx(full)
    assert 1.0 < face_height_factor(camera_from_angles(68.0)) < full
    landmarks = np.zeros((478, 3))
    landmarks[:, 1] = np.linspace(100.0, 400.0, 478)
    landmarks[[33, 263], 1] = 200.0  # the eyes' row
    stretched = with_face_height(landmarks, 1.2)
    np.testing.assert_allclose(stretched[:, 1] - 200.0, 1.2 * (landmarks[:, 1] - 200.0))
    np.testing.assert_array_equal(stretched[:, [0, 2]], landmarks[:, [0, 2]])
