"""Texture the fitted head: the photo where the camera sees the head, its mirror image, then the photo's skin and hair.

The texture is a longitude/latitude map around the head's vertical axis
(front at u = 0.5, the seam at the back of the head). Every texel knows its
surface point, so each texel takes, in order of trust:

1. the photo, where the input camera sees the point (not hidden, inside the
   photo's head: skin- or hair-coloured, not an occluder or the background),
   weighted by how squarely it faces the camera;
2. the photo at the texel's mirror image across the face's mid-plane, where
   that one is seen (a turned face is completed by symmetry), but not the
   mirror's skin where the photo glimpses hair (:func:`mirrored_skin_over_hair`),
   lit as the photo's light leaves the far side (:func:`portrait3d.proxy.light.far_side_gain`);
3. a fill that continues the seen skin and hair: their low-frequency colour
   spread outward from where the photo shows them (so the fill meets the photo
   without a seam), the photo's shading carried on by the surface normals, and
   procedural strands along the photo's own hair direction.
"""

from __future__ import annotations

import numpy as np
import trimesh

from portrait3d.cameras import Camera
from portrait3d.proxy.beard import beard_pixels, beard_target
from portrait3d.proxy.face_regions import FACE_FEATURES, feature_hulls, smoothstep
from portrait3d.proxy.far_eye import far_eye_at_outline, far_eye_pixels, with_dark_edges, without_far_eye
from portrait3d.proxy.gaps import GAP_HALF_WIDTH, fill_gaps, gap_sides, thin_gaps
from portrait3d.proxy.gaze import gaze_kept_for_mirror
from portrait3d.proxy.layout import (
    PINNA_CHARTS,
    PINNA_VERTEX,
    band_rows,
    head_uv,
    mirror_coordinates,
    pinna_faces,
    sphere_coordinates,
)
from portrait3d.proxy.light import far_side_gain, fit_light, surface_shading
from portrait3d.proxy.photo_regions import lab_to_rgb, photo_regions, rgb_to_lab
from portrait3d.proxy.pull_push import distance_to_known, low_frequency
from portrait3d.proxy.strands import strand_direction, strand_texture
from portrait3d.proxy.texels import TexelSurface, texel_surface

MIDLINE_BAND = 0.03
"""Width (world units; 12 mm on the head) of the band past a turned face's mid-line where the photo is not used
(:func:`midline_band_weight`); the photo comes back over the next band's width."""
SKIN_FAR_FROM, SKIN_FAR_REACH = 0.02, 0.10
"""Distances (fractions of the texture's width) from the seen texels: beyond the first, over the second, the skin
fill turns from the spread of the seen skin's colours into the photo's overall skin colour and light."""
SKIN_RELIEF_FLOOR = 0.9
"""Least relative light of the unseen skin (the hair's fill may go darker, down to 0.75, as its shadowed side)."""
DEFAULT_SKIN = np.array([0.8, 0.62, 0.52])
SKIN_VIEW = (0.1, 0.35)
"""The ``grazing`` and ``square`` cosines of :func:`view_weight` for the bake's skin (about 84 and 70 degrees from the
view; the strict default, 80 and 53, left the sides of a frontal photo's face to the fill: the bearded man's yaw-0
identity distance 0.250 with it, 0.212 with these and the neck kept strict, :func:`skin_view_weight`)."""
HAIR_GRAZING = 0.45
"""Photo weight (:func:`view_weight`, 1 facing the camera) below which hair texels do not take the photo at
all (the normal about 68 degrees from the view; skin is taken to about 84: :data:`SKIN_VIEW`)."""
MIRROR_LIGHT_LIMIT = 0.4
"""The mirror image is made at most this much (natural log) brighter or darker (:func:`mirror_lit_as_seen`)."""
MIRROR_LIGHT_MIN_OVERLAP = 0.002
"""Share of texels (weighted) that must have both their own photo colour and a mirror image to relight it."""
GLIMPSE_FACING = 0.05
"""Cosine between a visible texel's normal and the view (:func:`texel_view`) from which the photo counts as
glimpsing it, however grazing (:func:`mirrored_skin_over_hair`)."""
GLIMPSED_HAIR = (0.15, 0.45)
"""The photo's hair class at a glimpsed texel is hair from the first value, fully from the second."""
SKIN_OVER_HAIR_BLUR = 6.0
"""Blur (texels at a 2048-texel width) of :func:`mirrored_skin_over_hair`'s share: a soft hairline, not a ragged
one (the photo's split at a grazing angle is noisy)."""


def texel_view(
    surface: TexelSurface, camera: Camera, depth_map: np.ndarray, image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """How squarely the camera sees each texel, and where it lands in the photo.

    Args:
        surface: texel surface points.
        camera: the input camera.
        depth_map: (S, S) depth of the fitted head seen by ``camera`` (inf off the head).
        image_size: S.
    Returns:
        ``(cosine, pixels)``: (Ht, Wt) cosine between each texel's normal and its direction to the camera (-1
        where the camera does not see the texel: hidden, or outside the photo) and (Ht, Wt, 2) photo pixel
        coordinates.
    """
    posed = surface.photo_points is not None
    pts = (surface.photo_points if posed else surface.points).reshape(-1, 3)
    normals = (surface.photo_normals if posed else surface.normals).reshape(-1, 3)
    pix, depth = camera.project(pts, image_size, image_size)
    col = np.clip(np.floor(pix[:, 0]).astype(int), 0, image_size - 1)
    row = np.clip(np.floor(pix[:, 1]).astype(int), 0, image_size - 1)
    inside = (pix[:, 0] >= 0) & (pix[:, 0] < image_size) & (pix[:, 1] >= 0) & (pix[:, 1] < image_size)
    visible = inside & (depth <= depth_map[row, col] + 0.006)
    to_camera = camera.position - pts
    to_camera /= np.maximum(np.linalg.norm(to_camera, axis=1, keepdims=True), 1e-12)
    cosine = np.where(visible, np.sum(normals * to_camera, axis=1), -1.0)
    shape = surface.covered.shape
    return cosine.reshape(shape), pix.reshape(shape + (2,))


def view_weight(surface: TexelSurface, cosine: np.ndarray, grazing: float = 0.18, square: float = 0.6) -> np.ndarray:
    """How much each texel takes the photo, from its view's ``cosine`` (:func:`texel_view`): (Ht, Wt) in [0, 1].

    The weight rises from 0 at the ``grazing`` cosine to 1 at the ``square`` one: grazing views smear the photo,
    so full trust only where the surface faces the camera, none past ~80 degrees by default.
    """
    weight = smoothstep((cosine - grazing) / (square - grazing)) * surface.covered
    # The skin around an ear's root takes no photo (the photo sees it edge-on, ear and hair mixed); the pinna, on
    # charts of its own, does.
    return weight * (1.0 - surface.ear_root)


def skin_view_weight(wide: np.ndarray, strict: np.ndarray, below_chin: np.ndarray) -> np.ndarray:
    """How much each skin texel takes the photo: (Ht, Wt) in [0, 1].

    Above the chin the ``wide`` weight (:func:`view_weight` with :data:`SKIN_VIEW`); the neck (``below_chin``, (Ht,
    Wt) in [0, 1]) keeps the ``strict`` one: seen obliquely below the jaw, the photo there is the jaw's outline and
    its shadow (a brown patch on the cartoon man's neck at +-60 degrees). All three (Ht, Wt).
    """
    return wide + below_chin * (strict - wide)


def sample_photo(photo_rgb: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Bilinear photo lookup at pixel coordinates (pixel centres at +0.5): (H, W, C) floats."""
    import cv2

    map_x = (pixels[..., 0] - 0.5).astype(np.float32)
    map_y = (pixels[..., 1] - 0.5).astype(np.float32)
    out = cv2.remap(photo_rgb.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def grow_into_gaps(texture: np.ndarray, covered: np.ndarray, steps: int = 4) -> np.ndarray:
    """Spread colours a few texels into uncovered texels, so bilinear lookups at UV edges stay clean."""
    import cv2

    tex = texture.astype(np.float32).copy()
    known = covered.astype(np.float32)
    for _ in range(steps):
        total = cv2.blur(tex * known[..., None], (3, 3))
        count = cv2.blur(known, (3, 3))
        fill = (count > 0) & (known == 0)
        tex[fill] = total[fill] / count[fill][:, None]
        known = np.maximum(known, fill.astype(np.float32))
    return tex


def mirrored_skin_over_hair(
    glimpsed_hair: np.ndarray, head_hair: np.ndarray, mirrored_hair: np.ndarray, width: int
) -> np.ndarray:
    """Where the mirror image brings skin onto hair the photo glimpses: (Ht, Wt) share in [0, 1] to take from it.

    A turned photo sees its far temple at a grazing angle: too grazing to paint it (:func:`view_weight`), so the
    near temple's mirror image does, and where the near temple is bare skin and the far one hair pulled back, that
    painted a pale wedge of skin into the hair (``two_people_couple`` at +30 to +90 degrees, the long-haired
    woman's far temple at +60). Where the photo does glimpse hair (its hair class at the texel, seen at any angle)
    and the head's hair map says hair too, the mirrored skin gives way to the fill, which is the hair's.

    Args:
        glimpsed_hair: (Ht, Wt) the photo's hair class at each texel it sees at all (0 where it does not).
        head_hair: (Ht, Wt) the head's hair map.
        mirrored_hair: (Ht, Wt) the mirror image's hair class.
        width: texture width (the blur scales with it).
    """
    import cv2

    seen_hair = smoothstep((glimpsed_hair - GLIMPSED_HAIR[0]) / (GLIMPSED_HAIR[1] - GLIMPSED_HAIR[0]))
    share = seen_hair * np.clip(head_hair, 0, 1) * (1.0 - np.clip(mirrored_hair, 0, 1))
    share = cv2.GaussianBlur(share.astype(np.float32), (0, 0), SKIN_OVER_HAIR_BLUR * width / 2048)
    return np.clip(1.5 * share, 0.0, 1.0)  # the blur lowers a narrow strip's middle: lift it back to whole


def bake_texture(
    mesh: trimesh.Trimesh,
    hair: np.ndarray,
    ears: np.ndarray,
    photo_rgb: np.ndarray,
    mask: np.ndarray | None,
    camera: Camera,
    depth_map: np.ndarray,
    width: int,
    *,
    landmarks: np.ndarray | None = None,
    photo_hair: np.ndarray | None = None,
    head_mask: np.ndarray | None = None,
    neck_mask: np.ndarray | None = None,
    photo_vertices: np.ndarray | None = None,
    mirror_x: float | None = None,
    turn: float = 0.0,
    pinna: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """Bake the head texture.

    Args:
        mesh: the fitted head (closed, outward normals).
        hair: (V,) hair weight per vertex (where the surface is hair).
        ears: (V,) ear weight per vertex: the skin around an ear's root takes no photo; its pinna takes the
            photo's skin, never its hair.
        photo_rgb: (S, S, 3) float aligned photo in [0, 1].
        mask: (S, S) float foreground in [0, 1] (the person), or None.
        camera: the photo's camera.
        depth_map: (S, S) depth of ``mesh`` seen by ``camera`` (posed as ``photo_vertices`` when given).
        width: texture width (height is half).
        landmarks: (N, 2+) face-mesh landmarks in photo pixels, or None.
        photo_hair: (S, S) float hair-vs-skin split of the photo (1 = hair; all 0: a bald head), or None.
        head_mask: (S, S) float head-and-hair mask of the photo, or None.
        neck_mask: (S, S) float mask of the person below the chin (the neck), or None: its skin is taken too.
        photo_vertices: (V, 3) the head posed as the photo's camera saw it (the face where the camera saw
            it), which the photo is projected onto; default the mesh's own vertices.
        mirror_x: x of the plane the photo is mirrored across (the face's mid-plane); default the middle
            of the head's left-right extent (:func:`portrait3d.proxy.symmetry.head_mid_x`).
        turn: how much the photo's face is turned (:attr:`portrait3d.proxy.fit.FitResult.turn`, in [0, 1]). Above 0,
            a band just past the mid-line, and a far eye at the head's outline, take the mirror image (needs
            ``mirror_x``), and what the photo does not paint takes the photo's light on the far side
            (:func:`portrait3d.proxy.light.far_side_gain`, scaled by ``turn``).
        pinna: (V,) how much each vertex is a pinna (:attr:`portrait3d.proxy.shape.HeadShape.pinna`): those
            triangles have texels of their own (:func:`portrait3d.proxy.layout.head_uv`); default none.
        seed: seed of the procedural strands.
    Returns:
        ``(texture, uv, uv_faces, source, info)``: (width/2, width, 3) uint8
        texture, the UV layout (see :func:`portrait3d.proxy.layout.head_uv`) and the
        colours found.
    """
    import cv2

    from portrait3d.proxy import symmetry

    size = photo_rgb.shape[0]
    mirror_rgb = photo_rgb
    if landmarks is not None:
        far_eye = with_dark_edges(far_eye_pixels(landmarks, camera, size), photo_rgb, mask)
        photo_rgb = without_far_eye(photo_rgb, far_eye, head_mask)
        # What the mirror image is taken from: the near eye's gaze kept where it paints the far eye.
        mirror_rgb = gaze_kept_for_mirror(photo_rgb, landmarks)
    beard = beard_pixels(photo_rgb, landmarks)
    vertices = np.asarray(mesh.vertices)
    uv, uv_faces, source = head_uv(vertices, np.asarray(mesh.faces), pinna)
    bald = photo_hair is not None and not (np.asarray(photo_hair) > 0.5).any()
    if bald:
        # The photo's split found no hair on this head (bald, shaved): skin all round, no strands.
        hair = np.zeros_like(np.asarray(hair, dtype=np.float64))
    posed = None if photo_vertices is None else trimesh.Trimesh(photo_vertices, mesh.faces, process=False)
    surface = texel_surface(
        vertices, np.asarray(mesh.vertex_normals), hair, ears, uv, uv_faces, source, width,
        None if posed is None else np.asarray(posed.vertices), None if posed is None else posed.vertex_normals,
        ear_zone(vertices, pinna),
    )  # fmt: skip
    cosine, pixels = texel_view(surface, camera, depth_map, size)
    # Skin is taken at wider angles than the strict weight allows (the cheeks and temples of a frontal photo, seen
    # at 55-80 degrees, hold the person's detail); hair (:data:`HAIR_GRAZING`) and the neck keep the strict one.
    strict = view_weight(surface, cosine)
    facing = view_weight(surface, cosine, *SKIN_VIEW)
    photo = sample_photo(photo_rgb, pixels)
    mirror_source = photo if mirror_rgb is photo_rgb else sample_photo(mirror_rgb, pixels)

    # 1. The photo, only where it shows this head: skin- or hair-coloured, inside the head mask.
    regions = photo_regions(photo_rgb, photo, facing, surface, pixels, landmarks, photo_hair)
    below_chin = _below_chin(surface, regions.face, pixels, strict)
    facing = skin_view_weight(facing, strict, below_chin)
    allow_hair = np.maximum(1.0 - below_chin, surface.hair)  # no hair-coloured collars painted on the neck
    # The split's skin (the head less its hair): an ear's folds and shade, which the skin's colour test rejects.
    split_skin = regions.skin if photo_hair is None or head_mask is None else np.asarray(head_mask) * (1 - photo_hair)
    stacked = np.stack([regions.skin, regions.neck_skin, regions.hair, regions.hair_class, split_skin], axis=-1)
    if mask is not None:
        stacked = stacked * mask[..., None]
    # Where the mesh's outline and the photo's disagree, the outline's texels would sample the background.
    stacked = stacked * _inside_outline(depth_map)[..., None]
    if head_mask is not None:
        # A few pixels in from the mask's edge: on a profile the lips and nose tip are the outline, and
        # its rim pixels blend the background in (white specks between the mirrored lips).
        rim = max(1, size // 170)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim + 1, 2 * rim + 1))
        inside_head = cv2.erode(np.asarray(head_mask, dtype=np.float32), kernel)
        # The neck's skin below the chin row is the photo's too (its shadow under the jaw draws the jaw line); its
        # hair is not (a fall of hair in front of the neck).
        inside_person = inside_head
        if neck_mask is not None:
            person = np.maximum(np.asarray(head_mask, dtype=np.float32), np.asarray(neck_mask, dtype=np.float32))
            inside_person = cv2.erode(person, kernel)
        stacked = stacked * np.stack([inside_person, inside_person, inside_head, inside_head, inside_head], axis=-1)
    at_texel = sample_photo(stacked, pixels)
    skin = (1 - below_chin) * at_texel[..., 0] + below_chin * at_texel[..., 1]
    # A pinna takes what the split calls skin: the photo's ear, its bowl in shade and its redder rim (which the
    # cheeks' colour test rejected: the three-quarter woman's ear, seen squarely, took 0.1 of the photo).
    skin = np.maximum(skin, surface.on_pinna * at_texel[..., 4])
    # An ear takes the photo's skin only: the photo's hair beside a smaller ear is not painted on the pinna.
    ear = np.maximum(smoothstep((surface.ears - 0.5) / 0.4), surface.on_pinna)
    belongs = np.maximum(skin, at_texel[..., 2] * allow_hair * (1.0 - ear))
    hair_class = np.clip(at_texel[..., 3] * allow_hair * (1.0 - ear), 0, 1)
    # Hair seen at a grazing angle is the photo's sheen stretched over the crown (a pale patch where the crop
    # or the head's outline meets the crown): hair texels need a squarer view than skin.
    hair_facing = smoothstep((strict - HAIR_GRAZING) / (1.0 - HAIR_GRAZING))
    facing = facing + np.clip(surface.hair, 0, 1) * (np.minimum(facing, hair_facing) - facing)
    direct = facing * np.clip(belongs, 0, 1)
    # Feather the photo's edge inward only, so its border pixels never stretch onto unseen texels.
    sigma = 8.0 * width / 2048
    direct = np.minimum(direct, cv2.GaussianBlur(direct.astype(np.float32), (0, 0), sigma))
    if turn > 0 and mirror_x is not None:
        direct = direct * midline_band_weight(surface.points, camera, mirror_x, sample_photo(regions.face, pixels))
        if landmarks is not None and head_mask is not None:
            at_outline = np.clip(sample_photo(far_eye_at_outline(landmarks, head_mask), pixels), 0.0, 1.0)
            direct = direct * (1.0 - at_outline * (far_side_of(surface.points, camera, mirror_x) > 0.0))

    at_beard = sample_photo(beard, pixels)
    # 2. The mirror image across the face's mid-plane, where the texel itself is not seen.
    mid_x = symmetry.head_mid_x(vertices) if mirror_x is None else mirror_x
    coords = mirror_coordinates(surface.points, mid_x, width)
    mirrored = symmetry.mirror(
        np.concatenate([mirror_source, direct[..., None], hair_class[..., None], at_beard[..., None]], axis=-1), coords
    )
    mirror_weight = np.clip(mirrored[..., 3], 0, 1) * surface.covered * (1.0 - surface.ear_root)
    glimpse = view_weight(surface, cosine, grazing=0.0, square=GLIMPSE_FACING)
    mirror_weight = mirror_weight * (
        1.0 - mirrored_skin_over_hair(glimpse * hair_class, surface.hair, mirrored[..., 4], width)
    )
    # The far side's light, not the near side's, on the mirror image (no pale or dark blocks where it takes over).
    mirrored[..., :3] = mirror_lit_as_seen(
        photo, direct, mirrored[..., :3], mirror_weight, hair_class, mirrored[..., 4]
    )
    a = direct
    b = (1.0 - a) * mirror_weight
    known = a + b
    seen_rgb = (a[..., None] * photo + b[..., None] * mirrored[..., :3]) / np.maximum(known, 1e-6)[..., None]
    seen_hair = (a * hair_class + b * mirrored[..., 4]) / np.maximum(known, 1e-6)
    seen_beard = (a * at_beard + b * mirrored[..., 5]) / np.maximum(known, 1e-6)

    # 3. The fill: the seen skin and hair spread out at low frequency, shaded, with strands in the hair.
    confident = np.clip((known - 0.3) / 0.4, 0.0, 1.0)
    lum = seen_rgb.mean(-1)
    # The ears' own colours (redder, their folds in shadow) stay on the ears: the light and the skin's fill around
    # them come from the rest of the seen skin.
    skin_weight = confident * (1.0 - seen_hair) * (1.0 - ear)
    hair_weight = confident * seen_hair
    shade = surface_shading(surface.normals, lum, skin_weight * (surface.hair < 0.05))
    skin_rgb = regions.skin_model.rgb() if regions.skin_model is not None else DEFAULT_SKIN
    hair_rgb = regions.hair_model.rgb() if regions.hair_model is not None else skin_rgb * 0.35
    # Where a class is not seen at all, its overall colour stands in.
    skin_low = (
        low_frequency(seen_rgb, skin_weight) if skin_weight.sum() > 200 else np.broadcast_to(skin_rgb, photo.shape)
    )
    hair_low = (
        low_frequency(seen_rgb, hair_weight) if hair_weight.sum() > 200 else np.broadcast_to(hair_rgb, photo.shape)
    )
    if regions.hair_model is not None:
        # The fill carries the hair's colour, not its highlights: no lighter than the seen hair's upper range.
        hair_low = _no_lighter(hair_low, regions.hair_model.upper_lightness())
    distance = distance_to_known(confident)
    # Next to the photo the class follows what the photo shows (hair over the ear stays hair); far away, the mesh's.
    near = np.exp(-distance / 0.03)
    hair_share = low_frequency(seen_hair[..., None], confident)[..., 0]
    target_hair = np.clip((near * hair_share + (1 - near) * surface.hair) * allow_hair, 0, 1)
    # Hair falling below the chin (:mod:`portrait3d.proxy.long_hair`) is hair beside the seen throat too.
    target_hair = np.maximum(target_hair, below_chin * np.clip(surface.hair, 0, 1))
    if surface.ear_zone is not None:
        # Around a bare ear the head's hair map decides: the photo's skin share, spread from the cheek and the ear
        # it sees edge-on, painted a skin halo around the pinna onto the hair behind and above it.
        zone = surface.ear_zone
        target_hair = zone * np.clip(surface.hair * allow_hair, 0, 1) + (1 - zone) * target_hair
    # An ear the hair does not cover is skin, even where the photo's hair beside it is near (an ear half under the
    # hair shell keeps the hair's fill: a skin patch on the hair would show where the shell is thin).
    target_hair = (target_hair * (1.0 - ear))[..., None]
    # The spread colours carry the photo's shading where they were seen: relight relative to that.
    relief = np.clip(shade / np.maximum(low_frequency(shade[..., None], confident)[..., 0], 1e-3), 0.75, 1.2)
    direction = strand_direction(lum, hair_weight, distance)
    strands = strand_texture(direction, 1.0 * width / 2048, 28.0 * width / 2048, seed=seed)
    hair_detail = _detail_amplitude(lum, hair_weight, 0.04, 0.3)
    skin_detail = _detail_amplitude(lum, skin_weight, 0.0, 0.02)
    grain = cv2.GaussianBlur(
        np.random.default_rng(seed + 1).standard_normal(lum.shape).astype(np.float32), (0, 0), 1.5 * width / 2048
    )
    grain /= max(float(grain.std()), 1e-6)
    # Far from what the photo saw (a bald head's back, the nape), the skin is the photo's overall skin colour,
    # not the colour at the seen region's edge, which a front-lit photo darkens (the surface turns away there).
    far = smoothstep((distance - SKIN_FAR_FROM) / SKIN_FAR_REACH)[..., None]
    skin_low = (1 - far) * skin_low + far * skin_rgb
    fill_skin = skin_low * (1.0 + skin_detail * grain)[..., None]
    fill_hair = hair_low * (1.0 + hair_detail * strands)[..., None]
    # The unseen skin keeps nearly the face's light: the texture is the surface's colour, the viewer lights it, and
    # a back baked darker than the face reads as dirt (the scan benchmark's bald heads, yaw 90-180).
    # So does the skin around an ear's root, which takes no photo: its normals (the root's fillet, the head behind
    # the pinna) would bake a dark ring there that the pinna's unseen part takes too.
    unlit = np.maximum(far[..., 0], surface.ear_root)
    skin_relief = relief + unlit * (np.maximum(relief, SKIN_RELIEF_FLOOR) - relief)
    fill = target_hair * fill_hair * relief[..., None] + (1 - target_hair) * fill_skin * skin_relief[..., None]
    if beard.any():
        # A beard goes on round the unseen jaw in its own colour and strands (:mod:`portrait3d.proxy.beard`), not
        # faded into the skin's; not onto the hair, the ears or the neck below the photo's chin.
        beard_weight = confident * seen_beard
        target_beard = beard_target(seen_beard, confident) * (1 - target_hair[..., 0]) * (1 - ear) * (1 - below_chin)
        beard_detail = _detail_amplitude(lum, beard_weight, 0.04, 0.3)
        fill_beard = low_frequency(seen_rgb, beard_weight) * (1.0 + beard_detail * strands)[..., None]
        fill = fill + target_beard[..., None] * (fill_beard * relief[..., None] - fill)
    # Thin unseen gaps inside what was seen take the seen skin on their two sides, not the low-frequency class
    # fill, which pulls in the hair above and the dark eyes and brows around them (:mod:`portrait3d.proxy.gaps`).
    gaps = thin_gaps(confident, surface.covered, GAP_HALF_WIDTH * width)
    if gaps.any():
        lips = _lips_texels(landmarks, size, pixels, a, b, coords)
        skin_like = np.ones(confident.shape, bool)
        if regions.skin_model is not None:
            skin_like = regions.skin_model.accept(rgb_to_lab(seen_rgb), brighter=1.6) > 0.5
        seen_skin = gap_sides(confident, seen_hair, skin_like, lips, seen_beard)
        on_midline = None
        if turn > 0 and mirror_x is not None:
            on_midline = gaps & (np.abs(surface.points[..., 0] - mirror_x) < MIDLINE_BAND)
        fill = fill_gaps(
            fill, gaps, seen_rgb, seen_hair, seen_skin, confident, surface.covered, surface.hair, on_midline, lips,
        )  # fmt: skip

    if surface.on_pinna.any():
        fill = _pinna_fill(fill, surface, width, photo, a)
        fill = _pinna_shading(fill, surface, mesh, pinna)
    # A turned face's far side is lit as the photo's light leaves it, not as the near side it mirrors.
    light = None
    if turn > 0:
        light = fit_light(surface.normals, photo.mean(-1), a * (1.0 - hair_class) * (surface.hair < 0.05) * (1.0 - ear))
    far_light = far_side_gain(surface.normals, light, turn)[..., None]
    texture = a[..., None] * photo + far_light * (b[..., None] * mirrored[..., :3] + (1 - known)[..., None] * fill)
    texture = grow_into_gaps(np.clip(texture, 0, 1), surface.covered)
    info = {
        "skin_rgb": [round(float(c), 4) for c in skin_rgb],
        "hair_rgb": [round(float(c), 4) for c in hair_rgb],
        "photo_texels": float((a > 0.5).mean()),
        "mirrored_texels": float((b > 0.5).mean()),
        "bald": bool(bald),
    }
    return np.clip(np.round(texture * 255), 0, 255).astype(np.uint8), uv, uv_faces, source, info


PINNA_SEEN = (0.02, 0.08)
"""Share of the pinnae's texels the photo paints from which what it does not show of them takes the seen ear's
colour (:func:`_pinna_fill`), and fully from: an ear the photo shows is one colour, redder than the cheeks, and the
three-quarter woman's ear, its top under her hair in the photo, had a grey rim of the head's side around the
photo's ear."""


def _pinna_fill(
    fill: np.ndarray, surface: TexelSurface, width: int, photo: np.ndarray, photo_weight: np.ndarray
) -> np.ndarray:
    """The fill (Ht, Wt, 3) with the pinnae's and their roots' texels from the head's side around the ear.

    What the photo does not show of a pinna takes the fill of the head's side where the ear stands (the band's own
    neighbours in the texture are the neck's underside), spread smoothly over the hole the pinna's root leaves in
    the map. The skin around the root lies within a hair of the pinna's back, and views from behind see the two by
    turns: it takes the same smooth colour. Where the photo (``photo`` (Ht, Wt, 3) at the texels, taken with
    ``photo_weight`` (Ht, Wt)) shows enough of the ears (:data:`PINNA_SEEN`), their unseen texels and the skin at
    their roots take the seen ear's colour instead, spread from it.
    """
    import cv2

    on_map = surface.covered & ~surface.on_pinna
    around = low_frequency(fill, on_map.astype(np.float32))
    root = surface.ear_root[..., None] * on_map[..., None]
    seen = photo_weight * surface.on_pinna
    share = smoothstep((seen.sum() / max(float(surface.on_pinna.sum()), 1.0) - PINNA_SEEN[0]) / np.ptp(PINNA_SEEN))
    if share > 0:
        # The skin at the root shows through the concha and behind the pinna: it takes the ear's colour too.
        ear_colour = low_frequency(photo, seen)
        around = around + share * root * (ear_colour - around)
    fill = fill + root * (around - fill)
    band = band_rows(len(fill))  # look-ups for the band's rows alone (full 2048 maps: 100 MB more)
    at = sphere_coordinates(surface.points[band], width)
    behind = cv2.remap(around, at[..., 0], at[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    if share > 0:
        behind += share * (ear_colour[band] - behind)
    fill[band] = np.where(surface.on_pinna[band][..., None], behind, fill[band])
    return fill


PINNA_SHADING = 1.0
"""How dark a pinna's fill gets where its own folds close its sky: ``1 - PINNA_SHADING (1 - open)``, with ``open``
the share of the sky they leave (:func:`portrait3d.proxy.occlusion.open_share`)."""


def _pinna_shading(fill: np.ndarray, surface: TexelSurface, mesh: trimesh.Trimesh, pinna: np.ndarray) -> np.ndarray:
    """The fill (Ht, Wt, 3) on the pinnae's outer faces darkened in their folds (the concha, the scapha, the fossa):
    what the photo does not show of an ear would otherwise be one flat colour, and the proxy's renders add no
    shading. The backs are left as they are: the head a centimetre behind them would darken them all.

    Only the pinna's own triangles (``pinna`` (V,) per vertex) close its sky: the hair over an ear's top lies within
    the reach too, and darkened the helix under it to a black scribble that views from behind showed."""
    from portrait3d.proxy.occlusion import open_share

    chart = (np.arange(fill.shape[1]) * PINNA_CHARTS) // fill.shape[1]  # charts 0 and 2 are the outer faces
    on = surface.on_pinna & (chart % 2 == 0)[None, :]
    faces = np.asarray(mesh.faces)
    own = faces[pinna_faces(faces, pinna)]
    share = open_share(np.asarray(mesh.vertices), own, surface.points[on], surface.normals[on])
    fill = fill.copy()
    fill[on] *= (1.0 - PINNA_SHADING * (1.0 - share))[:, None]
    return fill


EAR_ZONE = (0.1, 0.15)
"""The surface within the first distance (world units, 4 cm on the head) of a bare ear's pinna is its zone (see
:func:`ear_zone`), fading out by the second (6 cm)."""


def ear_zone(vertices: np.ndarray, pinna: np.ndarray | None) -> np.ndarray | None:
    """(V, 3) vertices, (V,) pinna weight -> (V,) in [0, 1]: how near each vertex is to a bare ear's pinna
    (:data:`EAR_ZONE`): the skin and hair around it, whose class the photo cannot tell. None without a pinna."""
    from scipy.spatial import cKDTree

    on_pinna = None if pinna is None else np.asarray(pinna) >= PINNA_VERTEX
    if on_pinna is None or not on_pinna.any():
        return None
    distance, _ = cKDTree(vertices[on_pinna]).query(vertices)
    return smoothstep((EAR_ZONE[1] - distance) / (EAR_ZONE[1] - EAR_ZONE[0]))


def mirror_lit_as_seen(
    photo: np.ndarray,
    direct: np.ndarray,
    mirrored: np.ndarray,
    mirror_weight: np.ndarray,
    hair: np.ndarray,
    mirrored_hair: np.ndarray,
) -> np.ndarray:
    """The mirror image's colours, lit as the photo shows the far side: (Ht, Wt, 3).

    The far side of a turned face is lit differently from the near side that its mirror image comes from
    (a pale block on the far temple where the mirror takes over). Where a texel has both its own photo colour
    and a mirror image of the same class, their ratio is the light's difference; spread smoothly over the
    texture (:func:`~portrait3d.proxy.pull_push.low_frequency`) and bounded, it scales the mirror image everywhere.
    """
    overlap = direct * mirror_weight * (1.0 - np.abs(hair - mirrored_hair))
    if overlap.sum() < MIRROR_LIGHT_MIN_OVERLAP * overlap.size:
        return mirrored
    log_ratio = np.log(np.maximum(photo, 1e-3)) - np.log(np.maximum(mirrored, 1e-3))
    gain = np.exp(np.clip(low_frequency(log_ratio, overlap), -MIRROR_LIGHT_LIMIT, MIRROR_LIGHT_LIMIT))
    return np.clip(mirrored * gain, 0.0, 1.0)


def far_side_of(points: np.ndarray, camera: Camera, mid_x: float) -> np.ndarray:
    """How far each point lies past the face's mid-plane on the side turned away from the camera (negative on the
    near side): (..., 3) head-frame points -> (...) world units."""
    toward = 1.0 if camera.position[0] >= mid_x else -1.0
    return (mid_x - points[..., 0]) * toward


def midline_band_weight(points: np.ndarray, camera: Camera, mid_x: float, face: np.ndarray) -> np.ndarray:
    """Weight of the photo on a turned face's texels: 0 in a band just past the face's mid-line, 1 elsewhere.

    On a turned face the mid-line lies near the photo's outline of the face, and just past it, on the far
    side, the photo shows what lies behind the nose on the real face (the far eye's lashes, the far brow's
    end) where this head's surface is: dark marks on the nose bridge and between the brows. The near side's
    mirror image takes that band; past it the far side's own photo comes back.

    Args:
        points: (Ht, Wt, 3) the texels' surface points (head frame).
        camera: the photo's camera.
        mid_x: x of the face's mid-plane.
        face: (Ht, Wt) how much each texel's photo pixel lies in the face's landmark hull.
    Returns:
        (Ht, Wt) weights in [0, 1].
    """
    far = far_side_of(points, camera, mid_x)
    comeback = smoothstep((far - MIDLINE_BAND) / MIDLINE_BAND)
    past = np.where(far > 0.0, comeback, 1.0)
    return 1.0 - np.clip(face, 0.0, 1.0) * (1.0 - past)


def _lips_texels(
    landmarks: np.ndarray | None,
    size: int,
    pixels: np.ndarray,
    direct: np.ndarray,
    mirror: np.ndarray,
    coords: np.ndarray,
) -> np.ndarray:
    """(Ht, Wt) how much each texel shows the photo's lips, seen directly (``direct``) or mirrored (``mirror``)."""
    from portrait3d.proxy import symmetry

    if landmarks is None or len(landmarks) < 468:
        return np.zeros(direct.shape, np.float32)
    hull = feature_hulls(np.asarray(landmarks, dtype=np.float64)[:, :2], [FACE_FEATURES["lips"]], size, 0)
    lips = sample_photo(hull.astype(np.float32), pixels) * direct
    mirrored = symmetry.mirror(lips, coords)
    return np.clip(lips + mirror * mirrored, 0.0, 1.0).astype(np.float32)


def _no_lighter(rgb: np.ndarray, lightness: float) -> np.ndarray:
    """RGB colours (..., 3) in [0, 1] with their CIELAB lightness capped at ``lightness`` (0-100), hue kept."""
    lab = rgb_to_lab(np.asarray(rgb, dtype=np.float32))
    lab[..., 0] = np.minimum(lab[..., 0], lightness)
    return lab_to_rgb(lab)


def _inside_outline(depth_map: np.ndarray, margin: int = 6) -> np.ndarray:
    """(S, S) soft 1 inside the mesh's outline in the photo, pulled ``margin`` pixels in."""
    import cv2

    inside = np.isfinite(depth_map).astype(np.uint8)
    inside = cv2.erode(inside, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1)))
    return cv2.GaussianBlur(inside.astype(np.float32), (0, 0), 1.0)


def _below_chin(surface: TexelSurface, face: np.ndarray, pixels: np.ndarray, facing: np.ndarray) -> np.ndarray:
    """How far below the chin each texel lies, as a soft 0 (above) .. 1 (neck): (Ht, Wt).

    The chin height is the lowest seen texel inside the face hull.
    """
    size = face.shape[0]
    col = np.clip(pixels[..., 0].astype(int), 0, size - 1)
    row = np.clip(pixels[..., 1].astype(int), 0, size - 1)
    in_face = face[row, col] & (facing > 0.5)
    if in_face.sum() < 50:
        return np.zeros(facing.shape, np.float32)
    chin = float(np.percentile(surface.points[..., 1][in_face], 1))
    return np.clip((chin - surface.points[..., 1]) / 0.03, 0.0, 1.0).astype(np.float32)


def _detail_amplitude(luminance: np.ndarray, weights: np.ndarray, low: float, high: float) -> float:
    """Relative spread of the photo's fine luminance detail where ``weights`` marks a region (clipped to a range)."""
    import cv2

    w = weights > 0.6
    if w.sum() < 200:
        return low
    smooth = cv2.GaussianBlur(luminance.astype(np.float32), (0, 0), 3.0)
    detail = (luminance - smooth)[w]
    return float(np.clip(detail.std() / max(float(smooth[w].mean()), 1e-3), low, high))
