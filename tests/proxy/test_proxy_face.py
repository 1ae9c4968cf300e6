"""The head's geometry from the photo: the face's learned depth, a synthetic scan measured like a real one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from portrait3d.cameras import camera_from_angles
from portrait3d.preprocess.alignment import landmarks_to_world
from portrait3d.proxy import identity_eval
from portrait3d.proxy.fit import fit_template
from portrait3d.proxy.scan_eval import landmark_points, surface_distance
from portrait3d.proxy.template import template_head

REPO = Path(__file__).resolve().parents[2]
LANDMARKS = Path(__file__).parent / "data" / "astronaut_face_mesh.json"


def _bump(points: np.ndarray, centre: np.ndarray, height: float, width: float = 0.03) -> np.ndarray:
    """A smooth bump toward +z: (N, 3) -> (N, 3) displacements."""
    d2 = ((points - centre) ** 2).sum(1)
    return np.outer(height * np.exp(-0.5 * d2 / width**2), [0.0, 0.0, 1.0])


def _as_landmarks(points: np.ndarray, camera, size: int) -> np.ndarray:
    """World points -> ``camera.json`` landmarks (pixels and the depth offset in pixel units)."""
    uv, depth = camera.project(points, size, size)
    radius = float(np.linalg.norm(camera.position))
    fx = camera.intrinsics[0, 0] * size
    return np.concatenate([uv, ((depth - radius) * fx / radius)[:, None]], axis=1)


@pytest.mark.parametrize(("yaw", "features", "kept"), [(0.0, ("nose_tip", "chin"), 0.6), (60.0, ("nose_tip",), 0.85)])
def test_face_takes_the_landmarks_depth(yaw, features, kept):
    """A head whose nose and chin stand out further than the template's: the fit finds that depth.

    ``kept``: the error left, as a fraction of the image-plane fit's; on a face turned 60 degrees the nose
    tip stands beside the template's outline and the smoothing field reaches only part of it (there the
    chin's depth is seen in the image plane, and the image-plane fit already finds it).
    """
    template = template_head()
    camera = camera_from_angles(yaw)
    # 468 points on the template's face where the sample's landmarks lie, then a known deformation.
    pixels = _sample_on_template(template)[:, :2]
    on_face, hit = landmark_points(template.mesh, camera_from_angles(0), pixels, 512)
    assert hit.mean() > 0.95
    # The few outline landmarks beside the template's face: the surface point nearest to their ray.
    fx = 4.2647 * 512
    beside = np.concatenate([pixels[~hit], np.full((int((~hit).sum()), 1), -0.15 * fx / 2.7)], axis=1)
    on_face[~hit] = template.mesh.nearest.on_surface(landmarks_to_world(beside, camera_from_angles(0), 512))[0]
    nose, chin = template.keypoints["nose_tip"], template.keypoints["chin"]

    def deform(p):
        return p + _bump(p, nose, 0.03, 0.025) + _bump(p, chin, 0.02, 0.03)

    truth = template.mesh.copy()
    truth.vertices = deform(np.asarray(template.mesh.vertices))
    landmarks = _as_landmarks(deform(on_face), camera, 512)
    with_depth = fit_template(template, camera, 512, landmarks)
    flat = fit_template(template, camera, 512, landmarks, face_depth=False)
    for name in features:
        true_point = deform(template.keypoints[name][None])
        error = surface_distance(true_point, _mesh(template, with_depth.vertices))[0]
        error_flat = surface_distance(true_point, _mesh(template, flat.vertices))[0]
        assert error_flat > 0.009  # the image-plane fit alone keeps the template's depth (bumps 0.03, 0.02)
        assert error < kept * error_flat, (name, error, error_flat)
    # Away from the face the head is the template's.
    back = np.asarray(template.mesh.vertices)[:, 2] < -0.15
    moved = np.linalg.norm(with_depth.vertices[back] - flat.vertices[back], axis=1)
    assert moved.max() < 1e-3


def _sample_on_template(template) -> np.ndarray:
    """The sample's landmarks moved (a similarity in the image) onto the template's keypoints, frontal camera."""
    import cv2

    from portrait3d.proxy.template import MEDIAPIPE_INDEX

    sample = np.asarray(json.loads(LANDMARKS.read_text())["points"], dtype=np.float64)[:468]
    names = list(MEDIAPIPE_INDEX)
    target, _ = camera_from_angles(0).project(np.stack([template.keypoints[n] for n in names]), 512, 512)
    source = sample[[MEDIAPIPE_INDEX[n] for n in names], :2]
    matrix, _ = cv2.estimateAffinePartial2D(source.astype(np.float32), target.astype(np.float32))
    out = sample.copy()
    out[:, :2] = sample[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    out[:, 2] *= float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    return out


def _mesh(template, vertices):
    out = template.mesh.copy()
    out.vertices = vertices
    return out


def test_landmarks_without_depth_keep_the_image_plane_fit():
    template = template_head()
    camera = camera_from_angles(0.0)
    sample = _sample_on_template(template)
    flat_landmarks = sample.copy()
    flat_landmarks[:, 2] = 0.0
    a = fit_template(template, camera, 512, flat_landmarks)
    b = fit_template(template, camera, 512, sample[:, :2])
    np.testing.assert_allclose(a.vertices, b.vertices)


@pytest.fixture(scope="module")
def synthetic_scan(tmp_path_factory):
    """A scan-like head of known shape: the sample's textured proxy head (metres) with a nose 6 mm longer
    and a chin 5 mm further forward, measured by the scan benchmark's protocol."""
    from portrait3d.preprocess.pipeline import preprocess
    from portrait3d.proxy.head import build_head
    from portrait3d.proxy.scan_eval import METRES_PER_UNIT, evaluate_scan
    from portrait3d.proxy.stage import read_inputs
    from portrait3d.run import Run

    root = tmp_path_factory.mktemp("scan")
    preprocess(REPO / "data" / "samples" / "astronaut.jpg", root / "source")
    inputs = read_inputs(Run(root / "source", create=False))
    head = build_head(inputs.photo, inputs.camera, inputs.mask, inputs.landmarks)
    scan = head.textured.copy()
    v = np.asarray(scan.vertices)
    nose, chin = head.fit.keypoints["nose_tip"], head.fit.keypoints["chin"]
    v = v + _bump(v, nose, 0.015, 0.02) + _bump(v, chin, 0.0125, 0.03)  # 6 mm and 5 mm in metres
    scan.vertices = v * METRES_PER_UNIT
    centre = (scan.vertices.min(0) + scan.vertices.max(0)) / 2
    return scan, evaluate_scan(scan, centre, root / "eval")


def test_synthetic_scan_meets_the_scan_targets(synthetic_scan):
    _, result = synthetic_scan
    f = result.figures
    assert f["face_points"] > 1000
    assert f["face_median_mm"] <= 2.5 and f["face_mean_mm"] <= 3.5, f
    assert f["head_chamfer_mm"] <= 4.0, f
    assert abs(f["scale_error_pct"]) <= 3.0, f


@pytest.mark.skipif(not identity_eval.available(), reason="dlib is not installed (the dev extra)")
def test_synthetic_scan_head_is_the_person(synthetic_scan):
    # Issue 20's identity target at yaw 0, against the truth: the head's frontal view and the scan's own.
    from portrait3d.proxy.scan_eval import frontal_views

    scan, result = synthetic_scan
    centre = (scan.vertices.min(0) + scan.vertices.max(0)) / 2
    truth, made = frontal_views(scan, result.textured, centre)
    model = identity_eval.IdentityModel()
    distance = model.distance(truth, made)
    assert distance is not None and distance <= identity_eval.TARGETS[0.0], distance
    # The measure can tell: the head's view mirrored upside down is not the person.
    upside_down = model.distance(truth, np.ascontiguousarray(made[::-1]))
    assert upside_down is None or upside_down > identity_eval.TARGETS[0.0]


def test_head_of_the_scan_photo_is_closed(synthetic_scan):
    _, result = synthetic_scan
    assert result.head.is_watertight and result.head.volume > 0


def _side_reach(mesh, points: np.ndarray, side: float) -> np.ndarray:
    """How far out (world x times ``side``) the surface reaches along rays cast toward the head at ``points``."""
    import trimesh

    origins = points * [0.0, 1.0, 1.0] + [side * 1.0, 0.0, 0.0]
    directions = np.tile([-side, 0.0, 0.0], (len(points), 1))
    locations, index, _ = mesh.ray.intersects_location(origins, directions, multiple_hits=False)
    reach = np.full(len(points), -np.inf)
    reach[index] = side * locations[:, 0]
    assert isinstance(mesh, trimesh.Trimesh)
    return reach


@pytest.mark.parametrize("with_hair", [False, True])
def test_ears_stand_out_of_the_head(with_hair):
    """At the ear the surface stands out of the head's side (a bump), above and below it does not; with the
    default hair layer (no photo split: ears bare) the ears still stand out of the hair shell."""
    from portrait3d.proxy.shape import fit_shape
    from portrait3d.proxy.template import EAR_CENTRE, model_to_world

    template = template_head()
    scale, offset = model_to_world()
    mesh = template.mesh
    if with_hair:
        fit = fit_template(template, camera_from_angles(0), 512, None)
        mesh = fit_shape(fit, camera_from_angles(0), 512, None).mesh
        assert mesh.is_watertight
    for side in (-1.0, 1.0):
        centre = EAR_CENTRE * [side, 1.0, 1.0] * scale + offset
        around = centre + np.array([[0.0, 0.0, 0.0], [0.0, 0.09, 0.0], [0.0, -0.09, 0.0]]) * scale
        reach = _side_reach(mesh, around, side)
        assert reach[0] > max(reach[1], reach[2]) + 0.012 * scale, reach  # 7 mm beyond the head's side


def test_a_bare_ear_is_ear_not_hair_out_to_its_rim():
    """Bare ears (no photo split) stand out of the skull, rim and all, and none of them is hair: the rule that makes
    surface outside the skull hair (a fringe, hair over the ears) leaves a bare ear alone. The skin in front of the
    ear is skin; behind and below it the hair comes down to the pinna, as short hair does (a ring of skin round the
    whole ear's zone looked shaved: docs/BENCHMARKS.md, twenty-sixth session)."""
    from portrait3d.proxy.ear_shape import EAR_CENTRE
    from portrait3d.proxy.shape import fit_shape
    from portrait3d.proxy.template import ear_weight, model_to_world, pinna_weight

    template = template_head()
    scale, offset = model_to_world()
    fit = fit_template(template, camera_from_angles(0), 512, None)
    shape = fit_shape(fit, camera_from_angles(0), 512, None)
    model = (np.asarray(shape.mesh.vertices) - offset) / scale
    zone = ear_weight(model) > 0.9
    pinna = zone & (pinna_weight(model) > 0)
    assert pinna.sum() > 200
    # Measured: 0.07 at most (a trace of the hairline above; 0.8 before the rule left bare ears alone).
    assert shape.hair[pinna].max() < 0.15, shape.hair[pinna].max()
    assert shape.ears[pinna].min() > 0.75
    in_front = zone & ~pinna & (model[:, 2] > EAR_CENTRE[2])
    assert in_front.sum() > 100 and shape.hair[in_front].max() < 0.15, shape.hair[in_front].max()
    # The pinna itself (its own texels, which the photo's ear colours) is part of the ear; the head's side around
    # its root is not.
    outer = model[:, 0] * np.sign(model[:, 0]) > 0.15  # out of the head's side: the pinna's flared rim
    assert outer[pinna].sum() > 20 and shape.pinna[pinna & outer].min() > 0.75
    root_skin = (ear_weight(model) > 0.9) & (pinna_weight(model) == 0)
    assert root_skin.sum() > 100 and shape.pinna[root_skin].max() == 0


def test_bald_head_is_skin_all_round_and_follows_its_outline():
    """A photo split with no hair: no vertex is hair, and the skull still follows the head's outline (here a
    head 8 % wider than the template's; the face below the hairline keeps the landmarks' width)."""
    import cv2

    from portrait3d.preprocess.hair import HeadSegmentation
    from portrait3d.proxy.shape import fit_shape, hair_presence, silhouette_iou
    from portrait3d.render import MeshRenderer

    template = template_head()
    camera = camera_from_angles(0)
    silhouette = np.isfinite(MeshRenderer(template.mesh).render_depth(camera, 256)).astype(np.uint8)
    wider = cv2.resize(silhouette, (276, 256), interpolation=cv2.INTER_NEAREST)[:, 10:266].astype(bool)
    chin, _ = camera.project(template.keypoints["chin"][None], 256, 256)
    bald = HeadSegmentation(
        person=wider, head=wider, hair=np.zeros_like(wider), skin=wider, chin_row=float(chin[0, 1]),
        skin_lab=np.array([180.0, 140.0, 140.0]),
    )  # fmt: skip
    assert hair_presence(bald) == 0.0
    shape = fit_shape(fit_template(template, camera, 256, None), camera, 256, bald)
    assert shape.hair.max() == 0.0 and shape.mesh.is_watertight
    before = silhouette_iou(template.mesh, camera, bald)
    after = silhouette_iou(shape.mesh, camera, bald)
    assert after > 0.94 and after > before + 0.01, (before, after)
    hairy = HeadSegmentation(**{**bald.__dict__, "hair": wider & (np.arange(256)[:, None] < 80)})
    assert hair_presence(hairy) == 1.0


def test_outer_surface_drops_what_no_camera_outside_sees():
    """A scan's eyeball behind a closed lid (here a small sphere inside a big one) is not measured."""
    import trimesh

    from portrait3d.proxy.scan_eval import outer_surface

    skin = trimesh.creation.icosphere(subdivisions=3, radius=0.1)
    eyeball = trimesh.creation.icosphere(subdivisions=2, radius=0.02)
    eyeball.apply_translation([0.0, 0.03, 0.06])
    scan = trimesh.util.concatenate([skin, eyeball])
    outer = outer_surface(scan)
    assert len(outer.faces) == len(skin.faces)
    assert np.linalg.norm(outer.vertices, axis=1).min() > 0.099


def test_a_landmark_just_off_the_outline_takes_the_point_its_ray_grazes():
    """On a face turned far the photo's nose tip can sit a pixel beyond the outline, where its ray misses the
    scan: the face error is then centred on the surface point that ray passes nearest, not on nothing."""
    import trimesh

    from portrait3d.cameras import Camera, look_at, normalised_intrinsics
    from portrait3d.proxy.scan_eval import grazed_point

    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.1)
    camera = Camera(look_at(np.array([0.0, 0.0, 1.0]), np.zeros(3)), normalised_intrinsics(1.0 / 0.42))
    size = 1024
    # The sphere's outline in the image, at its right; the pixel two pixels beyond it.
    edge, _ = camera.project(np.array([[0.1 * np.sqrt(1 - 0.01), 0.0, 0.1 * 0.1]]), size, size)
    beyond = edge[0] + np.array([2.0, 0.0])
    _, hit = landmark_points(sphere, camera, beyond[None], size)
    assert not hit[0]
    point = grazed_point(sphere, camera, beyond, size)
    assert abs(np.linalg.norm(point) - 0.1) < 1e-6  # a surface point ...
    assert point[0] > 0.098 and abs(point[1]) < 0.003  # ... at the outline beside the pixel


def test_a_common_move_of_the_face_carries_on_past_it_without_a_fold():
    """The face's warp moves the whole face 5 mm forward: the surface meets the moved face, the head in front of and
    beyond it follows over a few centimetres, and nothing folds there.

    One narrow field (12 mm) fell to a fifth of the move 8-13 mm beyond the outermost landmarks and changed fastest
    there: a fold down the temples and cheeks on every head. The broad field under it carries the common move on
    (the front-facing head 20-32 mm beyond the landmarks: 0.14 of the move; the narrow field alone 0.07).
    """
    import trimesh
    from scipy.spatial import cKDTree

    from portrait3d.proxy.face_depth import FacePlacement, face_depth_warp
    from portrait3d.raycast import closest_points

    template = template_head()
    vertices, faces = np.asarray(template.mesh.vertices), np.asarray(template.mesh.faces)
    on_face, hit = landmark_points(template.mesh, camera_from_angles(0), _sample_on_template(template)[:, :2], 512)
    move = 0.0125  # world units (5 mm)
    cloud = on_face[hit] + [0.0, 0.0, move]
    placement = FacePlacement(cloud, cloud, 1.0, np.eye(3), np.zeros(3))  # placed as it is
    moves = face_depth_warp(vertices, faces, cloud, placement=placement)(vertices)
    warped = trimesh.Trimesh(vertices + moves, faces, process=False)
    off_surface = np.linalg.norm(closest_points(warped.vertices, faces, cloud)[0] - cloud, axis=1)
    assert np.median(off_surface) < 0.001 and np.percentile(off_surface, 95) < 0.003  # 0.4 mm, 1.2 mm
    beyond = cKDTree(cloud).query(vertices)[0]
    facing = np.asarray(template.mesh.vertex_normals)[:, 2] > 0.7
    band = (beyond >= 0.05) & (beyond < 0.08) & facing  # 20-32 mm beyond the face's landmarks
    assert moves[band, 2].mean() > 0.11 * move
    centres = template.mesh.triangles_center[template.mesh.face_adjacency[:, 0]]
    bent = warped.face_adjacency_angles - template.mesh.face_adjacency_angles
    assert np.degrees(bent[cKDTree(cloud).query(centres)[0] > 0.02].max()) < 15.0  # no fold beside the face


def test_a_narrower_face_moves_its_sides_inward_without_a_fold():
    """The landmarks at the sides of the face lie 4 mm inside the template's cheeks and temples: the surface moves in
    along its normal, and does not fold.

    Paired with the surface point straight in front of them (the head's +z), these landmarks took the cheek's
    front as their partner and pulled it back along the surface (1.5 times the narrowing): the surface folded over
    itself (a bend of 167 degrees), and every head had a crease from the temple down past the ear (on the eval
    photos 200-370 edges bent by more than 20 degrees, up to 175; now 14-28, at most 41).
    """
    import trimesh
    from scipy.spatial import cKDTree

    from portrait3d.proxy.face_depth import FacePlacement, face_depth_warp

    template = template_head()
    vertices, faces = np.asarray(template.mesh.vertices), np.asarray(template.mesh.faces)
    normals = np.asarray(template.mesh.vertex_normals)
    on_face, hit = landmark_points(template.mesh, camera_from_angles(0), _sample_on_template(template)[:, :2], 512)
    cloud = on_face[hit].copy()
    _, nearest = cKDTree(vertices).query(cloud)
    side = np.abs(normals[nearest, 0]) > 0.6
    assert side.sum() > 50
    inward = 0.01  # world units (4 mm)
    cloud[side] -= normals[nearest[side]] * inward
    placement = FacePlacement(cloud, cloud, 1.0, np.eye(3), np.zeros(3))
    moves = face_depth_warp(vertices, faces, cloud, placement=placement)(vertices)
    at_side = nearest[side]
    along = -np.sum(moves[at_side] * normals[at_side], axis=1)
    across = np.linalg.norm(moves[at_side] + along[:, None] * normals[at_side], axis=1)
    assert along.mean() > 0.75 * inward  # in along the normal ...
    assert across.mean() < 0.15 * inward  # ... not along the surface (straight-behind partners: 1.45 times)
    warped = trimesh.Trimesh(vertices + moves, faces, process=False)
    bent = warped.face_adjacency_angles - template.mesh.face_adjacency_angles
    assert np.degrees(bent.max()) < 60.0  # straight-behind partners: 167


def test_the_photo_pose_does_not_fold_the_head():
    """The head posed as the photo saw it: the face turned 15 degrees back, the skull left where it is, and no fold
    between them.

    With the move fading out over a fixed 14 mm, a move of 12 mm (the couple's face, turned 24 degrees) folded the
    posed surface between the face and the ear: texels there were hidden in the photo's view and painted by the
    class fill (the profile's pale band in front of the ear). The fade now spans at least 3 times the move.
    """
    from scipy.spatial import cKDTree

    from portrait3d.proxy.face_depth import FacePlacement, photo_pose_field

    template = template_head()
    mesh = template.mesh
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    on_face, hit = landmark_points(mesh, camera_from_angles(0), _sample_on_template(template)[:, :2], 512)
    placed = on_face[hit]
    turn = np.radians(15.0)
    rotation = np.array([[np.cos(turn), 0.0, np.sin(turn)], [0.0, 1.0, 0.0], [-np.sin(turn), 0.0, np.cos(turn)]])
    # The camera saw the face turned 15 degrees about the head's vertical axis (a move of up to 16 mm here).
    placement = FacePlacement(placed @ rotation, placed, 1.0, rotation, np.zeros(3))
    posed = vertices + photo_pose_field(placement)(vertices)
    distance = cKDTree(placed).query(vertices)[0]
    face = distance < 0.005
    np.testing.assert_allclose(posed[face], placement.unplace(vertices[face]), atol=1e-3)  # the face takes the move
    largest = np.linalg.norm(placement.unplace(placed) - placed, axis=1).max()
    beyond = distance > 0.01 + 3.0 * largest
    assert beyond.mean() > 0.3 and np.abs(posed[beyond] - vertices[beyond]).max() < 1e-9  # the skull stays

    def triangle_normals(points: np.ndarray) -> np.ndarray:
        return np.cross(points[faces[:, 1]] - points[faces[:, 0]], points[faces[:, 2]] - points[faces[:, 0]])

    before, after = triangle_normals(vertices), triangle_normals(posed)
    # Marching cubes leaves slivers (down to a hundredth of the median area) whose area ratio says nothing of a fold.
    size = np.linalg.norm(before, axis=1)
    whole = size > 0.1 * np.median(size)
    before, after = before[whole], after[whole]
    area = np.linalg.norm(after, axis=1) / np.linalg.norm(before, axis=1)
    turned = np.sum(before * after, axis=1) / (np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1))
    # Measured: areas 0.58-1.42 times the unposed, no triangle turned by more than 23 degrees (the face itself turns
    # 15; 0.50-2.39 and 41 degrees before the ears' slivers were left out); with the fixed 14 mm fade 0.004-5.3 and
    # 180 degrees: 3546 triangles squeezed or stretched past 2x or turned over, the surface folded.
    assert area.min() > 0.3 and area.max() < 3.0, (area.min(), area.max())
    assert turned.min() > np.cos(np.radians(60.0)), np.degrees(np.arccos(turned.min()))


def test_a_move_across_the_photos_line_of_sight_counts_half_where_it_sees_the_surface_edge_on():
    """The outline fit has put an edge-on surface on the photo's outline: a move across the line of sight there
    counts half; a move along it (the face's depth seen from the front) counts whole."""
    from portrait3d.proxy.face_depth import edge_on_trust

    camera = np.array([0.0, 0.0, 2.7])
    centres = np.zeros((3, 3))
    moves = np.array([[0.01, 0.0, 0.0], [0.0, 0.0, -0.01], [0.01, 0.0, 0.01]])  # across, along, 45 degrees
    trust = edge_on_trust(centres, moves, camera)
    assert trust[0] == pytest.approx(0.5) and trust[1] == pytest.approx(1.0) and trust[2] == pytest.approx(1.0)


def test_the_clouds_placement_follows_the_face_not_a_nose_that_stands_out(monkeypatch):
    """Landmarks on the template's face, moved off it, with the nose 12 mm further forward (a broad bump, as a real
    nose differs from the template's): the placement puts the rest of the face back onto the surface, where plain
    least squares let the nose pull it back."""
    from portrait3d.proxy import face_depth

    template = template_head()
    vertices, faces = np.asarray(template.mesh.vertices), np.asarray(template.mesh.faces)
    points, hit = landmark_points(template.mesh, camera_from_angles(0), _sample_on_template(template)[:, :2], 512)
    points = points[hit]
    bump = _bump(points, template.keypoints["nose_tip"], 0.03, 0.025)
    rest = np.linalg.norm(bump, axis=1) < 0.003
    assert 0.7 < rest.mean() < 0.95
    cloud = points + bump + [0.004, -0.003, 0.012]

    def rest_off_surface(spread: float) -> float:
        monkeypatch.setattr(face_depth, "PLACEMENT_SPREAD", spread)
        placed = face_depth.place_cloud(vertices, faces, cloud).placed
        return float(np.median(surface_distance(placed[rest], template.mesh)))

    robust, least_squares = rest_off_surface(face_depth.PLACEMENT_SPREAD), rest_off_surface(1e9)
    assert robust < 0.001, robust  # 0.4 mm (measured 0.29 mm)
    assert least_squares > 1.5 * robust, (least_squares, robust)  # measured 0.66 mm


def test_a_nose_relief_scales_along_the_cameras_rays_and_leaves_the_rest_of_the_face():
    from portrait3d.proxy.face_depth import NOSE_BASE_RING, NOSE_REACH, nose_relief

    landmarks = np.asarray(json.loads(LANDMARKS.read_text())["points"], dtype=np.float64)[:468]
    flatter = nose_relief(landmarks, 0.7)
    np.testing.assert_array_equal(flatter[:, :2], landmarks[:, :2])  # each landmark stays on its pixel's ray
    np.testing.assert_allclose(nose_relief(landmarks, 1.0), landmarks, atol=1e-9)
    width = np.linalg.norm(landmarks[234, :3] - landmarks[454, :3])
    reach = np.linalg.norm(landmarks[:, :3] - landmarks[1, :3], axis=1) / width
    ring = (reach > NOSE_BASE_RING[0]) & (reach < NOSE_BASE_RING[1])
    base = np.median(landmarks[ring, 2])
    assert landmarks[1, 2] - base < -10  # the tip stands out toward the camera (z: toward it is negative)
    assert flatter[1, 2] - base == pytest.approx(0.7 * (landmarks[1, 2] - base))
    far = reach >= NOSE_REACH  # the cheeks, the eyes, the mouth's corners, the chin
    assert far.sum() > 340
    np.testing.assert_allclose(flatter[far], landmarks[far], atol=1e-9)


def test_a_flattened_nose_keeps_its_ridge_where_the_unflattened_one_was_placed():
    """A turned face's nose relief scaled along the camera's rays moves its ridge sideways in the head's frame, off
    the mid-plane the texture mirrors across; the placement puts the mid-line's x back."""
    from portrait3d.proxy.face_depth import face_cloud, place_cloud
    from portrait3d.proxy.symmetry import MIDLINE_LANDMARKS

    template = template_head()
    vertices, faces = np.asarray(template.mesh.vertices), np.asarray(template.mesh.faces)
    camera = camera_from_angles(45.0)
    points, hit = landmark_points(template.mesh, camera_from_angles(0), _sample_on_template(template)[:, :2], 512)
    assert hit.mean() > 0.95
    landmarks = _as_landmarks(points, camera, 512)
    whole, flatter = face_cloud(landmarks, camera, 512), face_cloud(landmarks, camera, 512, nose_gain=0.7)
    placement = place_cloud(vertices, faces, flatter)
    kept = placement.with_midline_x_of(whole)
    midline, ridge = list(MIDLINE_LANDMARKS), [168, 6, 197, 195, 5, 4, 1]
    moved = placement.scale * whole @ placement.rotation.T + placement.shift
    # Without it the ridge leaves the plane (the rays run partly sideways at 45 degrees); with it, it is back.
    assert np.abs(placement.placed[ridge, 0] - moved[ridge, 0]).max() > 0.002  # 0.8 mm
    np.testing.assert_allclose(kept.placed[midline, 0], moved[midline, 0])
    np.testing.assert_array_equal(kept.placed[midline, 1:], placement.placed[midline, 1:])
    rest = np.setdiff1d(np.arange(len(whole)), midline)
    np.testing.assert_array_equal(kept.placed[rest], placement.placed[rest])
    np.testing.assert_allclose(kept.unplace(kept.placed[rest]), flatter[rest], atol=1e-9)
