"""Texture the fitted head: project the photo onto its front, fill the rest from the photo's colours.

The texture is a longitude/latitude map around the head's vertical axis
(front at u = 0.5, the seam at the back of the head where the texture is
uniform hair colour). Every texel knows its surface point, so the photo is
sampled where the input camera sees that point squarely, and texels the
photo does not show (back, top, far sides) take the hair or skin colour that
the photo shows elsewhere, chosen by the template's hair region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from portrait3d.cameras import Camera

UV_CENTRE = np.array([0.0, 0.0, -0.03])
"""Centre of the longitude/latitude map (inside the skull)."""


@dataclass
class TexelSurface:
    """Surface point behind every texel; arrays are (T, T/2[, 3]) over the texture.

    Attributes:
        covered: texels that some triangle covers.
        points: world points (fitted head).
        normals: unit outward normals.
        hair: template hair weight in [0, 1].
        ears: template ear weight in [0, 1].
    """

    covered: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    hair: np.ndarray
    ears: np.ndarray


def spherical_uv(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Longitude/latitude UVs with the seam cut open.

    Args:
        vertices: (V, 3) positions (template frame: y up, face toward +z).
        faces: (F, 3) triangles.
    Returns:
        ``(uv, faces, source)``: (V', 2) UVs, (F, 3) triangles into them and
        (V',) the original vertex of each UV vertex (seam vertices are doubled).
    """
    rel = vertices - UV_CENTRE
    u = 0.5 + np.arctan2(rel[:, 0], rel[:, 2]) / (2 * np.pi)
    v = 0.5 + np.arcsin(np.clip(rel[:, 1] / np.linalg.norm(rel, axis=1), -1, 1)) / np.pi
    uv = np.stack([u, v], axis=1)
    faces = np.asarray(faces).copy()
    fu = u[faces]
    crossing = fu.max(axis=1) - fu.min(axis=1) > 0.5
    # Triangles across the seam: give their low-u corners a copy at u - 1 + 1 = u + 1 (clamped when sampled).
    low = crossing[:, None] & (fu < 0.5)
    dup_src = np.unique(faces[low])
    new_index = np.full(len(vertices), -1)
    new_index[dup_src] = len(vertices) + np.arange(len(dup_src))
    faces[low] = new_index[faces[low]]
    uv = np.concatenate([uv, uv[dup_src] + [1.0, 0.0]])
    source = np.concatenate([np.arange(len(vertices)), dup_src])
    return uv, faces, source


def texel_surface(
    vertices: np.ndarray,
    vertex_normals: np.ndarray,
    hair: np.ndarray,
    ears: np.ndarray,
    uv: np.ndarray,
    uv_faces: np.ndarray,
    source: np.ndarray,
    width: int,
) -> TexelSurface:
    """Find the surface point of every texel by casting rays onto the mesh laid flat in UV space."""
    import open3d as o3d

    height = width // 2
    flat = np.concatenate([uv, np.zeros((len(uv), 1))], axis=1).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(flat), o3d.core.Tensor(uv_faces.astype(np.uint32)))
    us = (np.arange(width) + 0.5) / width
    vs = 1.0 - (np.arange(height) + 0.5) / height  # image row 0 is the top (v = 1)
    gu, gv = np.meshgrid(us, vs)
    rays = np.zeros((height * width, 6), dtype=np.float32)
    rays[:, 0], rays[:, 1], rays[:, 2], rays[:, 5] = gu.ravel(), gv.ravel(), 1.0, -1.0
    out = scene.cast_rays(o3d.core.Tensor(rays))
    tri = out["primitive_ids"].numpy().astype(np.int64)
    covered = np.isfinite(out["t_hit"].numpy())
    bu, bv = out["primitive_uvs"].numpy().astype(np.float64).T
    bary = np.stack([1 - bu - bv, bu, bv], axis=1)[covered].astype(np.float32)
    corners = source[uv_faces[tri[covered]]]  # (M, 3) original vertex ids

    def interpolate(values: np.ndarray) -> np.ndarray:
        values = values.astype(np.float32).reshape(len(values), -1)
        full = np.zeros((height * width, values.shape[1]), np.float32)
        full[covered] = np.einsum("mk,mkc->mc", bary, values[corners])
        return full.reshape(height, width, -1).squeeze(-1) if values.shape[1] == 1 else full.reshape(height, width, -1)

    normals = interpolate(vertex_normals)
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    return TexelSurface(
        covered.reshape(height, width), interpolate(vertices), normals, interpolate(hair), interpolate(ears)
    )


def photo_weights(
    surface: TexelSurface, camera: Camera, depth_map: np.ndarray, mask: np.ndarray | None, image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """How much to trust the photo at each texel, and where each texel lands in it.

    Args:
        surface: texel surface points.
        camera: the input camera.
        depth_map: (S, S) depth of the fitted head seen by ``camera`` (inf off the head).
        mask: (S, S) float foreground in [0, 1], or None.
        image_size: S.
    Returns:
        ``(weight, pixels)``: (Ht, Wt) in [0, 1] and (Ht, Wt, 2) photo pixel coordinates.
    """
    pts = surface.points.reshape(-1, 3)
    pix, depth = camera.project(pts, image_size, image_size)
    col = np.clip(np.floor(pix[:, 0]).astype(int), 0, image_size - 1)
    row = np.clip(np.floor(pix[:, 1]).astype(int), 0, image_size - 1)
    inside = (pix[:, 0] >= 0) & (pix[:, 0] < image_size) & (pix[:, 1] >= 0) & (pix[:, 1] < image_size)
    visible = inside & (depth <= depth_map[row, col] + 0.006)
    to_camera = camera.position - pts
    to_camera /= np.maximum(np.linalg.norm(to_camera, axis=1, keepdims=True), 1e-12)
    facing = np.sum(surface.normals.reshape(-1, 3) * to_camera, axis=1)
    # Grazing views smear the photo: trust it fully only where the surface faces the camera.
    weight = np.clip((facing - 0.3) / 0.35, 0.0, 1.0) * visible * surface.covered.ravel()
    weight *= 1.0 - surface.ears.ravel()
    if mask is not None:
        weight *= mask[row, col]
    shape = surface.covered.shape
    return weight.reshape(shape), pix.reshape(shape + (2,))


def region_colours(photo_rgb: np.ndarray, weight: np.ndarray, hair: np.ndarray, surface: TexelSurface):
    """Median photo colour of the seen hair and of the seen face skin: two (3,) floats in [0, 1].

    Skin is read on the cheeks and forehead of the template (not eyes, brows,
    nostrils or lips); hair wherever the hair region is seen. Without seen
    hair (bald head, hat, tight crop) the hair colour is a darkened skin.
    """
    seen = weight > 0.8
    pts = surface.points
    x, y = np.abs(pts[..., 0]), pts[..., 1]
    cheeks = (y > -0.045) & (y < 0.005) & (x > 0.035) & (x < 0.09)
    forehead = (y > 0.07) & (y < 0.1) & (x < 0.05)
    skin_region = seen & (hair < 0.05) & (cheeks | forehead)
    skin = np.median(photo_rgb[skin_region], axis=0) if skin_region.sum() > 50 else np.array([0.8, 0.62, 0.52])
    hair_region = seen & (hair > 0.95)
    hair_colour = np.median(photo_rgb[hair_region], axis=0) if hair_region.sum() > 100 else skin * 0.35
    return skin, hair_colour


def fill_texture(skin: np.ndarray, hair_colour: np.ndarray, hair: np.ndarray, seed: int = 0) -> np.ndarray:
    """Colour the unseen surface: skin or hair by the hair region, with faint strands in the hair: (Ht, Wt, 3)."""
    import cv2

    height, width = hair.shape
    rng = np.random.default_rng(seed)
    # Strands run down the head (along v): noise stretched vertically.
    noise = rng.standard_normal((height // 8, width)).astype(np.float32)
    noise = cv2.resize(noise, (width, height), interpolation=cv2.INTER_LINEAR)
    noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=1.5, sigmaY=6.0)
    noise /= max(float(noise.std()), 1e-6)
    strands = 1.0 + 0.12 * noise[..., None] * hair[..., None]
    base = skin * (1 - hair[..., None]) + hair_colour * hair[..., None]
    return np.clip(base * strands, 0.0, 1.0)


def fill_shading(normals: np.ndarray, light=(0.0, 0.6, 0.8)) -> np.ndarray:
    """Soft light from above the front baked into the filled colours, so unseen parts keep their relief: (...,)."""
    direction = np.asarray(light) / np.linalg.norm(light)
    return 0.8 + 0.2 * np.clip(normals @ direction, 0.0, 1.0)


def sample_photo(photo_rgb: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Bilinear photo lookup at pixel coordinates (pixel centres at +0.5): (H, W, 3) floats."""
    import cv2

    map_x = (pixels[..., 0] - 0.5).astype(np.float32)
    map_y = (pixels[..., 1] - 0.5).astype(np.float32)
    return cv2.remap(photo_rgb.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


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


def bake_texture(
    mesh: trimesh.Trimesh,
    hair: np.ndarray,
    ears: np.ndarray,
    photo_rgb: np.ndarray,
    mask: np.ndarray | None,
    camera: Camera,
    depth_map: np.ndarray,
    width: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """Bake the head texture.

    Args:
        mesh: the fitted head (closed, outward normals).
        hair: (V,) template hair weight per vertex.
        ears: (V,) template ear weight per vertex (the photo is not used on ears).
        photo_rgb: (S, S, 3) float aligned photo in [0, 1].
        mask: (S, S) float foreground in [0, 1], or None.
        camera: the photo's camera.
        depth_map: (S, S) depth of ``mesh`` seen by ``camera``.
        width: texture width (height is half).
    Returns:
        ``(texture, uv, uv_faces, source, info)``: (width/2, width, 3) uint8
        texture, the seam-cut UV layout (see :func:`spherical_uv`) and the
        colours found.
    """
    import cv2

    vertices = np.asarray(mesh.vertices)
    uv, uv_faces, source = spherical_uv(vertices, np.asarray(mesh.faces))
    surface = texel_surface(vertices, np.asarray(mesh.vertex_normals), hair, ears, uv, uv_faces, source, width)
    weight, pixels = photo_weights(surface, camera, depth_map, mask, photo_rgb.shape[0])
    photo = sample_photo(photo_rgb, pixels)
    skin, hair_colour = region_colours(photo, weight, surface.hair, surface)
    fill = fill_texture(skin, hair_colour, surface.hair) * fill_shading(surface.normals)[..., None]
    # Feather the edge of the seen region inward only, so the photo never leaks onto unseen texels.
    soft = np.minimum(weight, cv2.GaussianBlur(weight.astype(np.float32), (0, 0), 3.0))[..., None]
    texture = soft * photo + (1 - soft) * fill
    texture = grow_into_gaps(texture, surface.covered)
    info = {
        "skin_rgb": [round(float(c), 4) for c in skin],
        "hair_rgb": [round(float(c), 4) for c in hair_colour],
        "photo_texels": float((weight > 0.5).mean()),
    }
    return np.clip(np.round(texture * 255), 0, 255).astype(np.uint8), uv, uv_faces, source, info
