"""The head's shape from the photo: hair split, hair volume fitted to the outline, mirror symmetry, closed neck."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from portrait3d.preprocess.hair import split_head
from portrait3d.proxy.head import head_shape
from portrait3d.proxy.shape import DEFAULT_THICKNESS, mirror_iou, outline_radii, silhouette_iou
from portrait3d.proxy.stage import read_inputs
from portrait3d.run import Run

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "data" / "samples" / "astronaut.jpg"


def _preprocessed(photo: Path, root: Path):
    from portrait3d.preprocess.pipeline import preprocess

    preprocess(photo, root)
    return read_inputs(Run(root, create=False))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The sample photo through the real preprocess stage, and its head's geometry."""
    inputs = _preprocessed(PHOTO, tmp_path_factory.mktemp("shape") / "run")
    fit, seg, shape = head_shape(inputs.photo, inputs.camera, inputs.mask, inputs.landmarks)
    return inputs, fit, seg, shape


def test_outline_radii_of_a_disc():
    yy, xx = np.mgrid[:101, :101]
    disc = (xx + 0.5 - 50.5) ** 2 + (yy + 0.5 - 50.5) ** 2 < 30.0**2
    angles = np.radians(np.arange(0, 360, 15.0))
    radius, valid = outline_radii(disc, np.array([50.5, 50.5]), angles)
    assert valid.all()
    np.testing.assert_allclose(radius, 30.0, atol=1.0)
    _, valid = outline_radii(disc, np.array([50.5, 50.5]), angles, stop_row=70.0)
    assert not valid[np.sin(angles) > 0.9].any() and valid[np.sin(angles) < 0].all()  # the chin row stops rays
    _, valid = outline_radii(np.ones_like(disc), np.array([50.5, 50.5]), angles)
    assert not valid.any()  # an outline cut by the frame says nothing


def test_hair_split_of_the_sample(sample):
    inputs, _, seg, _ = sample
    pts = inputs.landmarks
    assert seg.hair.any() and not (seg.hair & ~seg.head).any() and not (seg.skin & seg.hair).any()
    assert 0.3 < seg.hair.sum() / seg.head.sum() < 0.7
    nose, cheek = pts[1, :2].astype(int), pts[205, :2].astype(int)
    assert seg.skin[nose[1], nose[0]] and seg.skin[cheek[1], cheek[0]]
    # The crown above the face is hair; the collar of the suit is not head at all.
    assert seg.hair[int(pts[10, 1]) - 60, int(pts[10, 0])]
    size = seg.head.shape[0]
    assert not seg.head[int(seg.chin_row) - 5, : size // 8].any()
    assert seg.head[: int(np.ceil(seg.chin_row))].sum() == seg.head.sum()


def test_hair_split_without_landmarks_or_mask():
    photo = np.full((64, 64, 3), 200, np.uint8)
    photo[:20] = 40  # dark "hair" at the top
    seg = split_head(photo, None, None)
    assert seg.head.shape == (64, 64) and seg.hair[:15].mean() > 0.5 and not seg.hair[40:].any()


def test_a_turned_faces_near_ear_is_looked_for_farther_behind_the_oval():
    """On a turned face the near ear lies farther behind the face oval than beside a frontal one: the band where
    bare ears are looked for reaches farther on the side the face turns from (the three-quarter woman's ear,
    0.2-0.4 face widths behind her oval, went to the hair and her head got no pinna)."""
    from portrait3d.preprocess.hair import EAR_REACH, EAR_TURN_REACH, _ear_band

    size = 256
    oval = np.zeros((size, size), np.uint8)
    cv2.ellipse(oval, (128, 128), (50, 70), 0, 0, 360, 1, -1)  # 101 px wide
    row = 128

    def reach(band: np.ndarray) -> tuple[int, int]:
        columns = np.nonzero(band[row])[0]
        return 78 - int(columns.min()), int(columns.max()) - 178  # past the oval's left and right edges

    frontal = reach(_ear_band(oval, 60.0, 180.0))
    assert frontal[0] == frontal[1] and abs(frontal[0] - EAR_REACH * 101) <= 1.5
    left, right = reach(_ear_band(oval, 60.0, 180.0, forward=-0.75))  # the nose points left: the near ear is right
    assert left == frontal[0]
    assert abs(right - (EAR_REACH + EAR_TURN_REACH * 0.75) * 101) <= 1.5
    assert reach(_ear_band(oval, 60.0, 180.0, forward=0.75)) == (right, left)
    assert not _ear_band(oval, 60.0, 180.0, forward=-0.75)[:60].any()  # only from the eyes' row down


def test_silhouette_follows_the_photo(sample):
    inputs, fit, seg, shape = sample
    assert silhouette_iou(shape.mesh, inputs.camera, seg) >= 0.95  # 0.74 for the bald template
    assert shape.mesh.is_watertight and shape.mesh.is_winding_consistent and shape.mesh.volume > 0
    np.testing.assert_array_equal(fit.vertices, shape.mesh.vertices)
    v = np.asarray(shape.mesh.vertices)
    top, nose = np.argmax(v[:, 1]), np.argmax(v[:, 2])
    assert shape.hair[top] > 0.9 and shape.hair[nose] < 0.1 and shape.ears[nose] == 0.0
    assert shape.info["hair_thickness_median"] > 2 * DEFAULT_THICKNESS  # the hairdo has volume


def test_neck_is_closed_by_a_flat_cap(sample):
    mesh = sample[3].mesh
    v = np.asarray(mesh.vertices)
    bottom = v[:, 1] < v[:, 1].min() + 1e-4
    assert bottom.sum() > 50  # a flat cut, not a point
    normals = np.asarray(mesh.face_normals)
    cap = np.all(bottom[np.asarray(mesh.faces)], axis=1)
    assert cap.sum() > 50 and np.all(normals[cap][:, 1] < -0.99)  # facing down, outward
    assert mesh.is_watertight


def test_no_mask_gives_a_thin_default_hair(sample):
    inputs = sample[0]
    _, seg, shape = head_shape(inputs.photo, inputs.camera, None, inputs.landmarks, voxel=0.01)
    assert seg is None and shape.mesh.is_watertight
    np.testing.assert_allclose(shape.thickness, DEFAULT_THICKNESS)


@pytest.mark.slow
def test_mirrored_photo_gives_the_mirrored_head(sample, tmp_path):
    mirrored = tmp_path / "mirror.png"
    ImageOps.mirror(Image.open(PHOTO).convert("RGB")).save(mirrored)
    inputs = _preprocessed(mirrored, tmp_path / "run")
    _, seg, shape = head_shape(inputs.photo, inputs.camera, inputs.mask, inputs.landmarks)
    assert silhouette_iou(shape.mesh, inputs.camera, seg) >= 0.95
    assert mirror_iou(sample[3].mesh, shape.mesh) >= 0.95


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    """skimage's camera() (a man in profile behind a camera on a tripod) and its mirror image, preprocessed."""
    from skimage import data

    folder = tmp_path_factory.mktemp("profile")
    image = Image.fromarray(np.repeat(data.camera()[..., None], 3, axis=-1))
    image.save(folder / "camera.png")
    ImageOps.mirror(image).save(folder / "mirror.png")
    return _preprocessed(folder / "camera.png", folder / "run"), _preprocessed(folder / "mirror.png", folder / "run_m")


def _front_of_face(inputs, seg, margin: float):
    """Person pixels more than ``margin`` face widths in front of the nose tip, rows from the brows to the chin."""
    pts = inputs.landmarks
    width = float(np.ptp(pts[:, 0]))
    rows = np.arange(seg.person.shape[0])[:, None]
    xs = np.arange(seg.person.shape[1])[None, :] + 0.5
    side = np.sign(pts[1, 0] - pts[234, 0] + pts[1, 0] - pts[454, 0])  # the way the nose points
    band = (rows > pts[list((70, 300)), 1].min()) & (rows < seg.chin_row)
    return seg.person & band & (side * xs > side * pts[1, 0] + margin * width)


def test_what_stands_in_front_of_a_turned_face_is_not_head(profile):
    inputs = profile[0]
    seg = split_head(inputs.photo, inputs.mask, inputs.landmarks)
    front = _front_of_face(inputs, seg, 0.1)
    assert front.sum() > 2000  # the photo's camera, which the person mask takes for the man
    assert not (seg.head & front).any() and not (seg.hair & front).any()
    # A synthetic occluder (a hand, a microphone) joined to the face in front of the mouth is cut too.
    mask = inputs.mask.copy()
    mouth = inputs.landmarks[13, :2].astype(int)
    side = 1 if inputs.landmarks[1, 0] > inputs.landmarks[234, 0] else -1
    x0, x1 = sorted((mouth[0], mouth[0] + side * 120))
    mask[mouth[1] - 15 : mouth[1] + 15, max(x0, 0) : x1] = 255
    occluded = split_head(inputs.photo, mask, inputs.landmarks)
    blob = np.zeros_like(seg.person)
    blob[mouth[1] - 15 : mouth[1] + 15, max(x0, 0) : x1] = True
    assert not (occluded.head & blob & _front_of_face(inputs, occluded, 0.1)).any()
    # The face itself stays head.
    nose = inputs.landmarks[4, :2].astype(int)
    assert seg.head[nose[1], nose[0]] and occluded.head[nose[1], nose[0]]


def test_mirrored_profile_gets_mirrored_landmarks(profile):
    from portrait3d.preprocess.pose import mirror_points

    a, b = profile
    yaw_a = a.camera.angles(target=(0.0, 0.0, 0.0)).yaw
    yaw_b = b.camera.angles(target=(0.0, 0.0, 0.0)).yaw
    assert yaw_a < -45 and abs(yaw_a + yaw_b) < 0.5  # -67.9 and 67.9; one-sided readings: -68.8 and 58.3
    pa = a.landmarks[:, :2]
    pb = mirror_points(b.landmarks, a.photo.shape[1])[:, :2]
    np.testing.assert_allclose(pa, pb, atol=0.5)  # the same landmarks, mirrored


@pytest.mark.slow
def test_profile_head_follows_the_photo_and_its_mirror(profile):
    heads = []
    for inputs in profile:
        _, seg, shape = head_shape(inputs.photo, inputs.camera, inputs.mask, inputs.landmarks)
        # 0.948 (0.952 without the in-frame cap: the photo shows the back of his head at its edge); 0.88 / 0.90
        # before the occluder was cut.
        assert silhouette_iou(shape.mesh, inputs.camera, seg) >= 0.94
        heads.append(shape.mesh)
    assert mirror_iou(*heads) >= 0.95  # 0.80 with the one-sided readings of the pose


def test_unseen_back_hair_is_thinner_and_tapers_to_the_nape(sample):
    from portrait3d.proxy.shape import direction_grid

    shape = sample[3]
    dirs = direction_grid()
    t = shape.thickness
    lat = np.degrees(np.arcsin(dirs[:, 0, 1]))
    back = np.argmin(np.abs(np.degrees(np.arctan2(dirs[0, :, 0], dirs[0, :, 2])) - 180.0 + 1.5))
    side = np.argmin(np.abs(np.degrees(np.arctan2(dirs[0, :, 0], dirs[0, :, 2])) - 90.0))
    level = (lat > -15) & (lat < 20)
    assert t[level, back].max() < 0.7 * t[level, side].mean()  # a bob is fullest beside the face
    nape = (lat > -50) & (lat < -35)
    assert t[nape, back].max() < 0.2 * t[level, side].mean()  # thinning to the lower hairline, no ledge


def test_the_hair_ends_at_the_nape_in_a_soft_edge_not_a_jagged_band(sample):
    from portrait3d.proxy.shape import HAIR_FILLET, outside_hair

    # The smooth union's swell where the shell lies on the skull is not hair; the shell's weight fades the rest in.
    assert outside_hair(np.array([HAIR_FILLET / 4]), np.array([1.0]))[0] == 0.0
    assert outside_hair(np.array([0.02]), np.array([1.0]))[0] == 1.0
    assert outside_hair(np.array([0.02]), np.array([0.06]))[0] < 0.01  # no step where the shell's weight passes 0.05
    # Behind and below the head's middle, no edge of the mesh steps from hair to skin at once. Measured: 0.14 here
    # (0.17 and 0.15 on the eval photos' child and three-quarter woman); with the old rule (thresholds at the skull and
    # at a shell weight of 0.05) 0.35 (0.48, 0.37): a band of 0.4 hair round the nape and a jagged line under it.
    mesh, hair = sample[3].mesh, sample[3].hair
    vertices = np.asarray(mesh.vertices)
    centre = vertices.mean(axis=0)
    back = (vertices[:, 2] < centre[2] - 0.05) & (vertices[:, 1] < centre[1])
    edges = np.asarray(mesh.edges_unique)
    edges = edges[back[edges].all(axis=1)]
    assert len(edges) > 1000 and hair[back].max() > 0.9 and hair[back].min() < 0.1  # the nape's hairline is there
    assert np.abs(hair[edges[:, 0]] - hair[edges[:, 1]]).max() < 0.25


def test_whole_head_is_inside_every_orbit_view(sample):
    from portrait3d.cameras import camera_from_angles
    from portrait3d.render import MeshRenderer

    renderer = MeshRenderer(sample[3].mesh)
    for yaw in np.arange(0.0, 360.0, 22.5):
        silhouette = np.isfinite(renderer.render_depth(camera_from_angles(float(yaw)), 128))
        assert silhouette.any()
        # Measured: at least 5 px of 256 on each side; before the cap the back of the hair left the frame.
        assert not silhouette[:, :1].any() and not silhouette[:, -1:].any(), yaw


def _with_corner_lobes(inputs, fit, seg):
    """The sample with two hair-coloured lobes added to the head mask's upper corners (a spiky hairdo, or a
    mask that took in the background's corners), and where they are: (photo, mask, lobes (S, S) bool)."""
    import cv2

    from portrait3d.proxy.shape import _frame

    size = inputs.photo.shape[0]
    centre = _frame(fit, inputs.camera, size).centre_px
    angles = np.radians([215.0, 325.0])  # 35 degrees above the cranium's centre, either side
    radius, valid = outline_radii(seg.head, centre, angles)
    assert valid.all()
    drawn = np.zeros((size, size), np.uint8)
    for angle, r in zip(angles, radius):
        at = (int(centre[0] + np.cos(angle) * r), int(centre[1] + np.sin(angle) * r))
        cv2.ellipse(drawn, at, (int(0.22 * r), int(0.12 * r)), float(np.degrees(angle)), 0, 360, 1, -1)
    lobes = drawn.astype(bool) & ~seg.head
    photo, mask = inputs.photo.copy(), inputs.mask.copy()
    photo[lobes], mask[lobes] = np.median(inputs.photo[seg.hair], axis=0), 255
    return photo, mask, lobes


def test_corner_lobes_of_the_outline_do_not_grow_horns(sample):
    from portrait3d.render import MeshRenderer

    inputs, fit, seg, _ = sample
    photo, mask, lobes = _with_corner_lobes(inputs, fit, seg)
    _, lobed_seg, shape = head_shape(photo, inputs.camera, mask, inputs.landmarks)
    assert lobed_seg.head[lobes].mean() > 0.9  # the split keeps them: they are the outline's
    silhouette = np.isfinite(MeshRenderer(shape.mesh).render_depth(inputs.camera, photo.shape[0]))
    # The crown is a dome under the lobes: 0.56 of their pixels were covered before the dome, 0.31 now.
    assert silhouette[lobes].mean() < 0.4
    assert shape.info["crown_dome_cut"] > 0.01
    assert silhouette_iou(shape.mesh, inputs.camera, seg) >= 0.93  # the photo's own head: 0.942


def _ear_patch(centre: np.ndarray, size: int, half: tuple[int, int]) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((xx - centre[0]) / half[0]) ** 2 + ((yy - centre[1]) / half[1]) ** 2 < 1.0


def test_an_ears_folds_and_shadow_are_skin_but_hair_over_an_ear_is_hair(sample):
    """Beside the face, between the eyes' row and the nose's base, a pixel of the skin's colour that is nearer the
    skin's than the crown hair's is skin, rough or shaded: an ear drawn there in the cheeks' colour with folds in
    shadow (rough: the old split read all of it as hair) is skin; dark brown hair drawn over the other ear stays
    hair."""
    from portrait3d.preprocess.hair import FACE_OVAL, NOSE_BOTTOM

    inputs = sample[0]
    photo, pts = inputs.photo.copy(), inputs.landmarks[:, :2]
    size = photo.shape[0]
    mask = np.zeros((size, size), np.uint8) if inputs.mask is None else inputs.mask.copy()
    oval = pts[list(FACE_OVAL)]
    width = float(np.ptp(oval[:, 0]))
    row = 0.5 * (pts[[33, 263], 1].mean() + pts[NOSE_BOTTOM, 1])
    cheek = np.median(photo[int(pts[205, 1]) - 3 : int(pts[205, 1]) + 4, int(pts[205, 0]) - 3 : int(pts[205, 0]) + 4]
                      .reshape(-1, 3), axis=0)  # fmt: skip
    half = (max(3, int(0.05 * width)), max(5, int(0.1 * width)))
    ear = _ear_patch(np.array([oval[:, 0].min() - 1.2 * half[0], row]), size, half)
    hair = _ear_patch(np.array([oval[:, 0].max() + 1.2 * half[0], row]), size, half)
    folds = (np.arange(size)[None, :] // 2 + np.arange(size)[:, None] // 3) % 3 == 0
    photo[ear] = cheek
    photo[ear & folds] = (cheek * 0.7).astype(np.uint8)  # the folds in shadow
    strands = np.where(folds, 25, 70)[..., None] * np.array([1.0, 0.75, 0.55])
    photo[hair] = strands[hair].astype(np.uint8)
    mask[ear | hair] = 255
    seg = split_head(photo, mask, inputs.landmarks)
    assert seg.skin[ear].mean() > 0.85, seg.skin[ear].mean()
    assert seg.hair[hair].mean() > 0.85, seg.hair[hair].mean()


def test_a_turned_faces_near_ear_in_shade_is_skin_down_to_its_lobe(sample, monkeypatch):
    """Turned past 30 degrees, a face shows its near ear squarely: an ear there in shade and redder than the cheeks
    (past the frontal test's 3 spreads from their colour, though nearer it than the crown hair's), reaching below the
    nose's base (its lobe), is skin; dark brown hair drawn over the same place stays hair."""
    import portrait3d.preprocess.hair as hair_split
    from portrait3d.preprocess.hair import FACE_OVAL, MOUTH, NOSE_BOTTOM

    monkeypatch.setattr(hair_split, "_forward_x", lambda points: -0.75)  # turned 49 degrees: the near ear is right
    inputs = sample[0]
    pts = inputs.landmarks[:, :2]
    size = inputs.photo.shape[0]
    oval = pts[list(FACE_OVAL)]
    width = float(np.ptp(oval[:, 0]))
    nose_base, mouth = pts[NOSE_BOTTOM, 1], pts[list(MOUTH), 1].mean()
    top, bottom = 0.5 * (pts[[33, 263], 1].mean() + nose_base), nose_base + 0.4 * (mouth - nose_base)
    half = (max(3, int(0.05 * width)), max(5, int(0.5 * (bottom - top))))
    ear = _ear_patch(np.array([oval[:, 0].max() + 1.2 * half[0], 0.5 * (top + bottom)]), size, half)
    cheek = np.median(inputs.photo[int(pts[205, 1]) - 3 : int(pts[205, 1]) + 4, int(pts[205, 0]) - 3
                                   : int(pts[205, 0]) + 4].reshape(-1, 3), axis=0)  # fmt: skip
    mask = np.zeros((size, size), np.uint8) if inputs.mask is None else inputs.mask.copy()
    mask[ear] = 255
    shaded, hairy = inputs.photo.copy(), inputs.photo.copy()
    shaded[ear] = (cheek * [0.5, 0.4, 0.4]).astype(np.uint8)  # in shade, redder: 3.15 spreads from the cheeks
    folds = (np.arange(size)[None, :] // 2 + np.arange(size)[:, None] // 3) % 3 == 0
    hairy[ear] = (np.where(folds, 25, 70)[..., None] * np.array([1.0, 0.75, 0.55]))[ear].astype(np.uint8)
    assert np.nonzero(ear)[0].max() > nose_base + 3  # the lobe reaches below the nose's base
    assert split_head(shaded, mask, inputs.landmarks).skin[ear].mean() > 0.85
    assert split_head(hairy, mask, inputs.landmarks).hair[ear].mean() > 0.85


def test_the_neck_in_the_jaws_shadow_is_skin_beside_the_hair_that_hangs_there(sample, monkeypatch):
    """Under a turned face's jaw, where it rises to the ear above the chin's row, the neck lies in the jaw's shadow
    (darker than the lit cheeks: the skin test reads it as hair, and strands hanging behind the jaw joined it to the
    hair): a shadow there that is nearer the skin's colour than the crown hair's is skin; the strands stay hair."""
    import portrait3d.preprocess.hair as hair_split
    from portrait3d.preprocess.hair import BROWS, FACE_OVAL, _under_jaw

    monkeypatch.setattr(hair_split, "_forward_x", lambda points: -0.75)
    inputs = sample[0]
    pts = inputs.landmarks[:, :2]
    size = inputs.photo.shape[0]
    oval = np.zeros((size, size), np.uint8)
    cv2.fillPoly(oval, [np.round(pts[list(FACE_OVAL)]).astype(np.int32)], 1)
    rows, cols = np.mgrid[:size, :size]
    under = _under_jaw(oval.astype(bool))
    lowest = np.where(oval.any(axis=0), size - 1 - np.argmax(oval[::-1], axis=0), size)
    # The shadow: 24 rows under the jaw's right half, above the chin's row; strands from the temple (above the brows)
    # down past it, which it touches.
    right = pts[list(FACE_OVAL), 0].max()
    shadow = under & (rows <= lowest[None, :] + 24) & (cols > pts[1, 0] + 0.4 * (right - pts[1, 0]))
    shadow &= rows < pts[152, 1]
    strands = (cols > right - 3) & (cols < right + 10) & (rows > pts[list(BROWS), 1].min() - 10) & (rows < pts[152, 1])
    assert shadow.sum() > 100
    cheek = np.median(inputs.photo[int(pts[205, 1]) - 3 : int(pts[205, 1]) + 4, int(pts[205, 0]) - 3
                                   : int(pts[205, 0]) + 4].reshape(-1, 3), axis=0)  # fmt: skip
    photo = inputs.photo.copy()
    photo[shadow] = (cheek * [0.5, 0.4, 0.4]).astype(np.uint8)  # in shade, redder: 3.15 spreads from the cheeks
    photo[strands] = [40, 30, 22]  # dark brown strands
    mask = np.zeros((size, size), np.uint8) if inputs.mask is None else inputs.mask.copy()
    mask[shadow | strands] = 255
    seg = split_head(photo, mask, inputs.landmarks)
    assert seg.skin[shadow].mean() > 0.85, (seg.skin[shadow].mean(), seg.hair[shadow].mean())  # before: all hair
    assert seg.hair[strands].mean() > 0.85
    assert not under[oval.astype(bool)].any() and under[int(pts[152, 1]) + 2, int(pts[152, 0])]


def test_the_ears_sit_between_the_eyes_and_the_nose_base(sample):
    """The fitted head's ear centres project between the photo's eye row and the nose's base, a little above the
    middle: an average face's ear reaches from the brow to the nose's base (Farkas's norms), so its centre lies up to
    about a third of the eye-to-nose-base span above that span's middle, never below it by much. (The template's
    first ears, 1.5 cm higher, projected 0.55 of the span above the middle on this photo.)"""
    from portrait3d.preprocess.hair import NOSE_BOTTOM
    from portrait3d.proxy.shape import _frame
    from portrait3d.proxy.template import EAR_CENTRE

    inputs, fit, _, _ = sample
    size = inputs.photo.shape[0]
    frame = _frame(fit, inputs.camera, size)
    eyes, nose_base = inputs.landmarks[[33, 263], 1].mean(), inputs.landmarks[NOSE_BOTTOM, 1]
    for side in (-1.0, 1.0):
        (px,), _ = inputs.camera.project(frame.to_world(EAR_CENTRE * [side, 1.0, 1.0])[None], size, size)
        below_middle = (px[1] - 0.5 * (eyes + nose_base)) / (nose_base - eyes)  # image rows grow downward
        assert -0.3 < below_middle < 0.15, (px[1], eyes, nose_base)


def test_a_turned_photos_side_hair_starts_behind_the_ear_it_was_seen_at():
    from portrait3d.proxy.shape import hair_region
    from portrait3d.proxy.template import EAR_CENTRE

    # The photo shows hair on its outline beside the face down to below the ear (side hairline -0.08). Seen from
    # the front, that outline lies beside the ear; from a photo turned 25 degrees it lies 25 degrees behind the
    # near ear, and says nothing about the temple in front of the ear (the couple's photo, read at 19 degrees,
    # grew a dark strip of hair from the temple down to the jaw in front of her ear).
    height = EAR_CENTRE[1]
    radius = float(np.hypot(EAR_CENTRE[0], EAR_CENTRE[2]))

    def point(azimuth: float) -> np.ndarray:
        a = np.radians(azimuth)
        return np.array([[radius * np.sin(a), height, radius * np.cos(a)]])

    in_front, behind = point(78.0), point(125.0)
    assert hair_region(in_front, -0.08)[0] > 0.9  # frontal photo: the side hair comes down in front of the ear
    assert hair_region(in_front, -0.08, turn=25.0)[0] < 0.1
    assert hair_region(in_front, -0.08, turn=-25.0)[0] < 0.1  # either way the photo is turned
    assert hair_region(behind, -0.08, turn=25.0)[0] > 0.9  # behind the ear it comes down as before
    assert hair_region(in_front, None, turn=25.0)[0] < 0.1  # the template's own hairline is above the ear


def test_a_column_of_hair_takes_the_warp_of_the_skull_beneath_it():
    from portrait3d.proxy.fit import FitResult
    from portrait3d.proxy.shape import CRANIUM_CENTRE, N_LAT, N_LON, _Frame, _placed

    # A warp like a narrow face's: beside the face it pulls the surface inward, less the farther out from the
    # cranium's centre (point by point it sheared the hair's front edge over the cheek).
    def warp(points):
        out = np.zeros_like(points)
        out[:, 0] = (
            -0.02
            * np.sign(points[:, 0])
            * np.exp(-(((np.linalg.norm(points - CRANIUM_CENTRE, axis=1) - 0.15) / 0.05) ** 2))
        )
        return out

    frame = _Frame(1.0, np.zeros(3), np.zeros(2), 1.0, 1.0, np.array([1.0, 0, 0]), np.array([0, -1.0, 0]))
    fit = FitResult(np.zeros((1, 3)), {}, warp=warp)
    skull = np.full((N_LAT, N_LON), 0.15)
    allowed = np.zeros((N_LAT, N_LON))
    allowed[:, : N_LON // 2] = 1.0  # hair on the -x half, none on the +x half (the face's)
    side = np.array([-1.0, 0.0, 0.2]) / np.linalg.norm([-1.0, 0.0, 0.2])
    column = CRANIUM_CENTRE + side * np.array([[0.15], [0.17], [0.19], [0.21]])
    moved = _placed(frame, fit, column, skull, allowed) - column
    np.testing.assert_allclose(moved, np.repeat(warp(column[:1]), 4, axis=0), atol=1e-9)
    assert np.abs(warp(column[-1:])[0, 0]) < 0.5 * np.abs(warp(column[:1])[0, 0])  # point by point: sheared
    # Without hair (the face's side) each point keeps its own warp.
    mirrored = column * [-1.0, 1.0, 1.0]
    np.testing.assert_allclose(_placed(frame, fit, mirrored, skull, allowed) - mirrored, warp(mirrored), atol=1e-9)


def test_where_the_outline_lies_inside_the_skull_the_skull_is_pulled_in_smoothly():
    """Hair from the cranium's centre up the back of the head, the photo's outline 5.7 mm inside the skull there:
    the back of the head is pulled in by all of that, and its profile has no step.

    The skull was intersected with a trimmed radius map and the hair shell, never thinner than the skull, united
    back on top: where there was hair only 28 % of the cut was left (1.6 mm), and a step stood where the trim met
    the skull (fins behind the ears, a disc at the back of the head, grooves along the hairline in lit views).
    """
    import open3d as o3d

    from portrait3d.cameras import camera_from_angles
    from portrait3d.proxy.face_regions import smoothstep
    from portrait3d.proxy.fit import FitResult
    from portrait3d.proxy.shape import _frame, _mesh, direction_grid, skull_radius
    from portrait3d.proxy.template import CRANIUM_CENTRE, template_head

    template = template_head()
    fit = FitResult(np.asarray(template.mesh.vertices), dict(template.keypoints))
    frame = _frame(fit, camera_from_angles(0), 512)
    dirs = direction_grid()
    skull = skull_radius(dirs)
    hair = smoothstep(np.degrees(np.arcsin(np.clip(dirs[..., 1], -1, 1))) / 15.0)  # from the centre's level up
    angles = np.radians(np.arange(-30.0, 60.0, 0.5))  # up the back of the head, in its mid-plane
    rays = np.stack([np.zeros_like(angles), np.sin(angles), -np.cos(angles)], axis=1)
    centre = frame.to_world(np.asarray(CRANIUM_CENTRE))

    def radii(thickness: np.ndarray) -> np.ndarray:
        mesh = _mesh(frame, fit, skull, thickness, hair, 0.005)
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(
            o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)), o3d.core.Tensor(np.asarray(mesh.faces, np.uint32))
        )
        cast = np.concatenate([np.broadcast_to(centre, rays.shape), rays], axis=1).astype(np.float32)
        return scene.cast_rays(o3d.core.Tensor(cast))["t_hit"].numpy()

    cut = 0.01  # model units
    pulled = radii(np.zeros(skull.shape)) - radii(np.full(skull.shape, -cut))
    assert pulled[-20:].mean() > 0.9 * cut * frame.k  # the whole cut where the hair is (was 28 %)
    assert np.abs(np.diff(pulled)).max() < 0.0007  # world units between rays 0.5 degrees apart (a step: 0.001)


def test_hair_past_the_orbit_frames_is_held_at_their_limit_and_never_cuts_the_skull():
    """The cap that keeps the hair inside every orbit view: thicker hair never comes out thinner, hair reaching
    past the frames' limit stops at it, and a skull that itself reaches the limit keeps its surface.

    The soft minimum once had its sign the other way round: hair reaching past the limit came back inside it by as
    much, and where the skull touched the limit (the back of most heads) it was pressed in by up to 1 cm (a dish in
    every lit view of the back of the head).
    """
    from portrait3d.cameras import camera_from_angles
    from portrait3d.proxy.fit import FitResult
    from portrait3d.proxy.shape import FRAME_RADIUS, _frame, _in_frame, direction_grid, skull_radius
    from portrait3d.proxy.template import CRANIUM_CENTRE, template_head

    template = template_head()
    fit = FitResult(np.asarray(template.mesh.vertices), dict(template.keypoints))
    frame = _frame(fit, camera_from_angles(0), 512)
    dirs = direction_grid()
    skull = skull_radius(dirs)
    level = np.abs(dirs[..., 1]) < 0.3  # about the cranium's centre's height, all round

    def axis_distance(radius: np.ndarray) -> np.ndarray:
        world = frame.to_world(CRANIUM_CENTRE + radius[..., None] * dirs)
        return np.hypot(world[..., 0], world[..., 2])

    thicknesses = [0.0, 0.01, 0.03, 0.06, 0.12, 0.3]
    capped = [_in_frame(frame, dirs, skull, np.full(skull.shape, t)) for t in thicknesses]
    for thinner, thicker in zip(capped, capped[1:]):
        assert np.all(thicker >= thinner - 1e-9)  # more hair never gives a smaller head
    for t, radius in zip(thicknesses, capped):
        assert np.all(radius >= skull - 1e-9)  # the skull is never cut
        assert np.all(radius <= skull + t + 1e-9)
    # Hair far past the limit ends within the cap's softness (0.01 model units) of it, where the skull is inside it.
    inside = level & (axis_distance(skull) < FRAME_RADIUS - 0.03)
    assert inside.any()
    reach = axis_distance(capped[-1])[inside]
    assert reach.max() <= FRAME_RADIUS + 1e-6
    assert reach.min() > FRAME_RADIUS - 0.01 * frame.k
    # A skull enlarged past the limit keeps its surface (the old cap pressed it in by 0.007).
    big = skull * 1.4
    assert (axis_distance(big)[level] > FRAME_RADIUS).any()
    assert np.all(_in_frame(frame, dirs, big, np.full(skull.shape, 0.02)) >= big - 1e-9)


def test_the_hair_falls_from_its_widest_point_onto_the_skull_along_it_and_takes_in_a_lower_bulge():
    """One meridian's hair (the same all round): widest well above the centre, a hollow below it and a bulge lower
    down, as the thickness carried round from the sides left the child's and the bearded man's heads. The draped
    outline never reaches out further than the hair above it (no ledge), never dips under the skull, and leaves the
    skull tangentially.

    The old drape ran a straight chord from the widest point to the skull at a fixed latitude below the hair: the
    bulge stood out under it as a ledge round the back of the head, and the chord crossed the skull at an angle (a
    crease from behind the ear down to the nape in every lit view).
    """
    from portrait3d.proxy.shape import FOOT_SINK, HAIR_FILLET, N_LAT, N_LON, _drape

    lat = np.degrees(np.radians(-90 + (np.arange(N_LAT) + 0.5) * 180 / N_LAT))
    skull = np.full((N_LAT, N_LON), 0.15)
    hair_lat = lat[:, None] * np.ones((1, N_LON))
    allowed = np.clip((hair_lat + 15.0) / 6.0, 0.0, 1.0)  # hair from 15 degrees below the centre up
    thickness = (
        0.03 * np.exp(-(((hair_lat - 25.0) / 10.0) ** 2))  # widest at 25 degrees
        + 0.014 * np.exp(-(((hair_lat + 8.0) / 5.0) ** 2))  # the lower bulge
        + 0.004
    )
    radius = skull + allowed * thickness - 0.03 * (1.0 - allowed)
    out, lifted = _drape(radius, skull, allowed, np.ones((N_LAT, N_LON)))
    assert lifted.any()
    assert np.all(out >= radius - 1e-12)
    reach = out[:, 0] * np.cos(np.radians(lat))
    widest = int(np.argmax(np.where(lat < 30.0, reach, -np.inf)))
    surface = np.maximum(out[:, 0], skull[:, 0])  # what the mesh is: the hair united with the skull
    surface_reach = surface * np.cos(np.radians(lat))
    rows = np.arange(N_LAT)
    below = (rows <= widest) & (lat > -60.0)
    # Going down from the widest point the outline never reaches further out again (the bulge is taken in).
    assert np.all(np.diff(surface_reach[below]) >= -1e-9)
    # Where the drape lifts the outline it is on or outside the skull down to the curve's foot, and it leaves the skull
    # tangentially: its height over the skull grows from nothing as the square of the distance from its foot, not in
    # proportion to it.
    lowest = rows[lifted[:, 0] & (out[:, 0] >= skull[:, 0] - 1e-9)].min()
    assert np.all(out[lowest:widest, 0] >= skull[lowest:widest, 0] - 1e-9)
    over = surface - skull[:, 0]
    assert over[lowest - 1] < 1e-9  # the row below the lowest lift is on the skull
    assert over[lowest] < 0.35 * over[lowest + 1]  # measured 0.30 (a square: 0.25, in proportion: 0.5)
    # Below the foot the hair sinks into the skull by the union's fillet a little at a time: dropped inside at once, the
    # union's swell over the curve's last stretch ended in a ledge round the back of every short-haired head.
    depth = skull[: lowest + 1, 0] - out[: lowest + 1, 0]  # upward, ending at the row the curve touches the skull at
    assert abs(depth[-1]) < 1e-9
    steps = int(round(FOOT_SINK * N_LAT / 180))
    sinking = np.diff(depth[::-1])[:steps]  # downward
    assert np.all(sinking <= HAIR_FILLET / steps + 1e-9), sinking
    assert depth[-1 - steps] >= HAIR_FILLET - 1e-9
