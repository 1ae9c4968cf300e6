"""The template head: a closed, PanoHead-sized head built from a signed distance field.

The template is built by this project (no third-party asset): smooth unions of
ellipsoids and capsules (cranium, face, jaw, chin, nose, lips, cheeks, ears,
neck) with eye sockets carved in, turned into a triangle mesh by marching
cubes. It is modelled in "model units" (outer eye corners 0.15 apart, an
average adult face) and then scaled and placed in the PanoHead world (y up,
the face looks toward +z, head centre at the origin) by the face measure that
the preprocess crop uses (:func:`model_to_world`), so that the head seen
through the crop's camera covers the photo's face. The crown-to-chin height
then fills about 80 % of the 0.63-unit frame, as in PanoHead's crops.

Named points of the template (``KEYPOINTS``) carry the indices of the
mediapipe face-mesh landmarks at the same place on a face, which is how the
template is fitted to a photo (:mod:`portrait3d.proxy.fit`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import trimesh

from portrait3d.proxy.ear_shape import EAR_CENTRE, ear_distance, pinna_distance
from portrait3d.proxy.sdf import capsule, ellipsoid, smooth_subtract, smooth_union

NECK_BOTTOM = -0.40
"""Height (model units) of the flat cut that closes the neck, below the frame of an orbit camera at pitch 0."""
NECK_HALF_WIDTH = (0.076, 0.09)
"""Half-width (model units) of the neck where it meets the head and at its foot (see :data:`NECK_DEPTH`)."""
NECK_DEPTH = 1.18
"""The neck's depth front to back over its width across. With :data:`NECK_HALF_WIDTH` and :data:`NECK_AXIS_Z`,
measured 20 mm below the chin on Lee Perry-Smith's scan: his neck is 109 mm across and 132 mm deep, its back 178 mm
behind his chin; the template's neck on his head was 88 x 98 mm there, its back 136 mm behind the chin (a stalk under
the skull in every side view; the head's Chamfer above the chin 3.11 mm); it is 95 x 113 mm now, its back 151 mm
behind the chin (2.80 mm). A neck deeper still, or wider under the jaw, moved the statue bust's whole-head alignment
and its face error with it (mean 2.2 -> 3.2-3.9 mm; docs/BENCHMARKS.md, thirty-seventh session)."""
NECK_AXIS_Z = -0.053
"""Depth (model z) of the neck's axis, set so that its front (the throat) stays where it was (0.08 behind the
chin's front) while it grows backward."""
_EYE_DEPTH = 0.11
"""Depth (model z) of the eye corners on the template surface."""

# Front view positions (x, y) of named face points; z is found on the surface.
# Proportions follow an average adult face measured in eye-corner distances.
_FRONT_POINTS: dict[str, tuple[float, float]] = {
    "forehead": (0.0, 0.11),
    "nose_bridge": (0.0, 0.035),
    "nose_tip": (0.0, -0.028),
    "upper_lip": (0.0, -0.060),
    "lower_lip": (0.0, -0.094),
    "chin": (0.0, -0.150),
    "right_eye_outer": (-0.075, 0.035),
    "right_eye_inner": (-0.029, 0.035),
    "left_eye_outer": (0.075, 0.035),
    "left_eye_inner": (0.029, 0.035),
    "mouth_right": (-0.054, -0.062),
    "mouth_left": (0.054, -0.062),
    "jaw_right": (-0.085, -0.086),
    "jaw_left": (0.085, -0.086),
    "cheek_right": (-0.108, 0.010),
    "cheek_left": (0.108, 0.010),
}

MEDIAPIPE_INDEX: dict[str, int] = {
    "forehead": 10,
    "nose_bridge": 168,
    "nose_tip": 1,
    "upper_lip": 0,
    "lower_lip": 17,
    "chin": 152,
    "right_eye_outer": 33,
    "right_eye_inner": 133,
    "left_eye_outer": 263,
    "left_eye_inner": 362,
    "mouth_right": 61,
    "mouth_left": 291,
    "jaw_right": 172,
    "jaw_left": 397,
    "cheek_right": 234,
    "cheek_left": 454,
}
"""Mediapipe face-mesh landmark index of each named template point ("right" is the subject's right)."""


@dataclass(frozen=True)
class TemplateHead:
    """The template mesh and what is known about its parts.

    Attributes:
        mesh: closed triangle mesh, world units.
        hair: (V,) float in [0, 1], how much each vertex lies in the hair region.
        ears: (V,) float in [0, 1], how much each vertex belongs to an ear (the photo sees ears badly).
        keypoints: name -> (3,) surface point (see ``MEDIAPIPE_INDEX``).
    """

    mesh: trimesh.Trimesh
    hair: np.ndarray
    ears: np.ndarray
    keypoints: dict[str, np.ndarray]


def ear_distances(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance to each ear (the subject's right, then left) in model units: (N, 3) -> two (N,)."""
    return ear_distance(points, -1.0), ear_distance(points, 1.0)


def head_sdf(points: np.ndarray, ears: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Signed distance (negative inside) of the template head in model units: (N, 3) -> (N,).

    ``ears``: :func:`ear_distances` of the same points, where the caller needs them too (they are most of the cost).
    """
    p = points
    cranium = ellipsoid(p, CRANIUM_CENTRE, (0.132, 0.165, 0.158))
    # The face narrows toward the jaw: squeeze x more the lower the point.
    t = np.clip((-0.02 - p[:, 1]) / 0.13, 0.0, 1.0)
    taper = 1.0 + 0.3 * t * t * (3.0 - 2.0 * t)
    face_p = p * np.stack([taper, np.ones_like(taper), np.ones_like(taper)], axis=-1)
    face = ellipsoid(face_p, (0.0, -0.02, 0.02), (0.116, 0.13, 0.10))
    d = smooth_union(cranium, face, 0.04)
    d = smooth_union(d, ellipsoid(p, (0.0, -0.122, 0.072), (0.042, 0.034, 0.042)), 0.02)  # chin
    for side in (-1.0, 1.0):
        d = smooth_union(d, ellipsoid(p, (side * 0.058, -0.015, 0.075), (0.045, 0.038, 0.045)), 0.02)  # cheek
    d = smooth_subtract(d, ellipsoid(p, (-0.047, 0.036, 0.128), (0.03, 0.016, 0.022)), 0.012)
    d = smooth_subtract(d, ellipsoid(p, (0.047, 0.036, 0.128), (0.03, 0.016, 0.022)), 0.012)
    # The nose: a bridge narrower across than deep, a tip a little wider than deep, and the wings beside its base.
    nose = capsule(p * [1.35, 1.0, 1.0], (0.0, 0.04, 0.118), (0.0, -0.006, 0.152), 0.009, 0.011)
    nose = smooth_union(nose, ellipsoid(p, (0.0, -0.015, 0.153), (0.0135, 0.012, 0.0125)), 0.012)  # tip
    nose = smooth_union(nose, ellipsoid(p, (0.0, -0.022, 0.128), (0.029, 0.0135, 0.017)), 0.016)  # wings
    d = smooth_union(d, nose, 0.012)
    d = smooth_union(d, ellipsoid(p, (0.0, -0.074, 0.106), (0.04, 0.022, 0.02)), 0.012)  # lips
    for ear in ear_distances(p) if ears is None else ears:
        d = smooth_union(d, ear, 0.008)
    top, foot = NECK_HALF_WIDTH
    axis_z = NECK_AXIS_Z / NECK_DEPTH  # in the squeezed coordinates the capsule is round in
    neck = capsule(p * [1.0, 1.0, 1.0 / NECK_DEPTH], (0.0, NECK_BOTTOM - 0.1, axis_z), (0.0, -0.05, axis_z), foot, top)
    neck = np.maximum(neck, NECK_BOTTOM - p[:, 1])  # flat bottom
    return smooth_union(d, neck, 0.045)


CRANIUM_CENTRE = np.array([0.0, 0.045, -0.025])
"""Centre of the template's cranium (model units): the centre of the hair volume's radial map."""


def _hairline(azimuth_deg: np.ndarray) -> np.ndarray:
    """Height of the hairline at each azimuth around the head (0 = front, 180 = back)."""
    return np.interp(np.abs(azimuth_deg), [0.0, 30.0, 55.0, 80.0, 100.0, 120.0, 180.0],
                     [0.118, 0.112, 0.085, 0.065, 0.055, -0.055, -0.085])  # fmt: skip


def ear_weight(points: np.ndarray) -> np.ndarray:
    """How much each template point (model units) belongs to an ear or its root: (N, 3) -> (N,) in [0, 1]."""
    distance = np.full(len(points), np.inf)
    for side in (-1.0, 1.0):
        scaled = (points - EAR_CENTRE * [side, 1.0, 1.0]) / [0.045, 0.06, 0.042]
        distance = np.minimum(distance, np.linalg.norm(scaled, axis=-1))
    return np.clip((1.1 - distance) / 0.2, 0.0, 1.0)


def pinna_weight(points: np.ndarray, reach: float = 0.006) -> np.ndarray:
    """How much each template point (model units) is on a pinna itself, not the skin around its root: 1 on and
    inside it, falling to 0 at ``reach`` from it: (N, 3) -> (N,) in [0, 1]."""
    distance = np.minimum(pinna_distance(points, -1.0), pinna_distance(points, 1.0))
    return np.clip(1.0 - distance / reach, 0.0, 1.0)


def hair_weight(points: np.ndarray, softness: float = 0.012) -> np.ndarray:
    """How much each template point (model units) lies under the hair: (N, 3) -> (N,) in [0, 1].

    Hair covers the skull above a hairline that runs over the forehead, above
    the ears and down to the nape; ears and the front of the face stay skin.
    """
    azimuth = np.degrees(np.arctan2(points[:, 0], points[:, 2]))
    above = (points[:, 1] - _hairline(azimuth)) / softness
    return np.clip(0.5 + 0.5 * above, 0.0, 1.0) * (1.0 - ear_weight(points))


def model_to_world() -> tuple[float, np.ndarray]:
    """Scale and offset that place the model-unit template in the PanoHead world.

    The face is sized and placed by the same measure the preprocess crop uses
    (``max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)`` and the face centre
    ``eye_mid + 0.1 eye_to_mouth``, measured on PanoHead's published crops),
    so a head seen through the crop's camera lands where the photo's face is.
    """
    from portrait3d.preprocess.alignment import FACE_CENTRE, FACE_SCALE

    front = {n: np.array([x, y, 0.0]) for n, (x, y) in _FRONT_POINTS.items()}
    right_eye = (front["right_eye_outer"] + front["right_eye_inner"]) / 2
    left_eye = (front["left_eye_outer"] + front["left_eye_inner"]) / 2
    eye_mid = (right_eye + left_eye) / 2
    eye_to_mouth = (front["mouth_right"] + front["mouth_left"]) / 2 - eye_mid
    model_scale = max(2.0 * np.linalg.norm(left_eye - right_eye), 1.8 * np.linalg.norm(eye_to_mouth))
    scale = float(FACE_SCALE / model_scale)
    centre = eye_mid + 0.1 * eye_to_mouth
    centre[2] = _EYE_DEPTH
    return scale, np.asarray(FACE_CENTRE, dtype=float) - scale * centre


@functools.lru_cache(maxsize=4)
def template_head(voxel: float = 0.005) -> TemplateHead:
    """Build the template head by marching cubes over its distance field, in world units.

    Args:
        voxel: grid spacing in world units (0.005 gives about 60k vertices).
    """
    import mcubes

    scale, offset = model_to_world()
    step = voxel / scale
    lo = np.array([-0.19, NECK_BOTTOM - 0.02, -0.22])
    hi = np.array([0.19, 0.25, 0.22])
    axes = [np.arange(a, b + step, step) for a, b in zip(lo, hi)]
    sdf = _narrow_band_sdf(axes, step)
    verts, faces = mcubes.marching_cubes(-sdf, 0.0)
    verts = lo + verts * step
    mesh = trimesh.Trimesh(verts, faces, process=True)
    parts = mesh.split(only_watertight=False)
    if len(parts) > 1:
        mesh = max(parts, key=lambda m: len(m.faces))
    if mesh.volume < 0:  # outward normals
        mesh.invert()
    model_vertices = np.asarray(mesh.vertices)
    hair, ears = hair_weight(model_vertices), ear_weight(model_vertices)
    keypoints = {n: p * scale + offset for n, p in _surface_keypoints(mesh).items()}
    mesh.apply_transform(trimesh.transformations.scale_and_translate(scale, offset))
    return TemplateHead(mesh=mesh, hair=hair, ears=ears, keypoints=keypoints)


def _narrow_band_sdf(axes: list[np.ndarray], step: float, block: int = 4, field=None) -> np.ndarray:
    """A distance field on a grid (default the head's), exact only near the surface (where marching cubes looks).

    The field is first sampled every ``block`` cells; fine samples are taken
    only in blocks whose coarse value is near zero or whose coarse neighbours
    differ in sign, the rest keep the coarse value (its sign is all marching
    cubes needs there).
    """
    from scipy.ndimage import maximum_filter, minimum_filter

    shape = tuple(len(a) for a in axes)
    coarse_axes = [a[::block] for a in axes]
    coarse_grid = np.stack(np.meshgrid(*coarse_axes, indexing="ij"), axis=-1).reshape(-1, 3)
    field = head_sdf if field is None else field
    coarse = field(coarse_grid).reshape(tuple(len(a) for a in coarse_axes))
    # A field that is no distance can read far from zero right beside its surface: the hair's radial one where a
    # long fall's front runs along the rays from the cranium's centre. Left coarse, such blocks put a staircase of
    # 4-cell steps on the fall. Every block next to a sign change is sampled finely too.
    outside = coarse > 0
    crossing = maximum_filter(outside, size=3) != minimum_filter(outside, size=3)

    def fine(coarse_map: np.ndarray) -> np.ndarray:
        return coarse_map.repeat(block, 0).repeat(block, 1).repeat(block, 2)[: shape[0], : shape[1], : shape[2]]

    sdf = fine(coarse)
    # The ellipsoid distances are approximate (off by up to their axis ratio): keep a wide band.
    near = (np.abs(sdf) < 3.0 * block * step) | fine(crossing)
    index = np.nonzero(near)
    points = np.stack([axes[k][index[k]] for k in range(3)], axis=-1)
    sdf = sdf.copy()
    sdf[index] = field(points)
    return sdf


def _surface_keypoints(mesh: trimesh.Trimesh) -> dict[str, np.ndarray]:
    """Drop each front-view point onto the mesh along -z."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)),
    )
    names = list(_FRONT_POINTS)
    rays = np.array([[x, y, 1.0, 0.0, 0.0, -1.0] for x, y in _FRONT_POINTS.values()], dtype=np.float32)
    t = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    if not np.all(np.isfinite(t)):
        raise RuntimeError("template keypoint off the head surface")
    return {n: rays[i, :3].astype(float) + t[i] * np.array([0.0, 0.0, -1.0]) for i, n in enumerate(names)}
