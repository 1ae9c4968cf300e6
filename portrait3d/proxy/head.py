"""The proxy head of one photo: the template fitted to the landmarks, a hair volume fitted to the head's
outline in the photo (:mod:`portrait3d.proxy.shape`), textured from the photo."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import trimesh

from portrait3d.cameras import Camera
from portrait3d.preprocess.hair import HeadSegmentation, split_head
from portrait3d.proxy.fit import FitResult, fit_template
from portrait3d.proxy.shape import HeadShape, fit_shape
from portrait3d.proxy.template import template_head
from portrait3d.proxy.texture import bake_texture


@dataclass
class ProxyHead:
    """A fitted, textured proxy head.

    Attributes:
        geometry: closed (watertight) mesh with vertex colours sampled from the texture.
        textured: the same surface with UVs and the texture image (seam vertices doubled,
            so it is not watertight); what the renders use.
        texture: (Ht, Wt, 3) uint8 texture image.
        fit: what the landmark fit did (``fit.vertices`` are the vertices of ``geometry``).
        info: colours found and fit figures, for the stage record.
        segmentation: the photo's head, hair and skin (None without a mask).
        hair: (V,) float in [0, 1], how much each vertex of ``geometry`` is hair.
        ears: (V,) float in [0, 1], how much each vertex of ``geometry`` is an uncovered ear.
        photo_vertices: (V, 3) ``geometry`` posed as the photo's camera saw it (the face where the
            landmarks put it; what the photo was projected onto), or None: ``geometry`` itself.
        mirror_x: x of the plane the texture mirrors the photo across, the face's mid-plane (None without
            landmarks: the head's left-right middle).
    """

    geometry: trimesh.Trimesh
    textured: trimesh.Trimesh
    texture: np.ndarray
    fit: FitResult
    info: dict = field(default_factory=dict)
    segmentation: HeadSegmentation | None = None
    hair: np.ndarray | None = None
    ears: np.ndarray | None = None
    photo_vertices: np.ndarray | None = None
    mirror_x: float | None = None


def build_head(
    photo: np.ndarray,
    camera: Camera,
    mask: np.ndarray | None = None,
    landmarks: np.ndarray | None = None,
    voxel: float = 0.005,
    texture_width: int = 2048,
) -> ProxyHead:
    """Fit the template and a hair volume to a photo and texture the head.

    Args:
        photo: (S, S, 3) uint8 aligned photo.
        camera: the photo's camera.
        mask: (S, S) uint8 or float foreground (255 or 1 = head), or None for all foreground.
        landmarks: (N, 2 or 3) mediapipe face-mesh landmarks in photo pixels, or None.
        voxel: template grid spacing (world units).
        texture_width: texture width in texels (height is half).
    """
    from PIL import Image

    from portrait3d.render import MeshRenderer, sample_texture

    size = photo.shape[0]
    if photo.shape[:2] != (size, size):
        raise ValueError(f"the aligned photo must be square, got {photo.shape[:2]}")
    fit, segmentation, shape = head_shape(photo, camera, mask, landmarks, voxel)
    geometry = shape.mesh
    # The photo is projected onto the head posed as its camera saw it (the face where the landmarks put it).
    photo_vertices = None
    seen = geometry
    if fit.photo_pose is not None:
        photo_vertices = fit.vertices + fit.photo_pose(fit.vertices)
        seen = trimesh.Trimesh(photo_vertices, geometry.faces, process=False)
    depth_map = MeshRenderer(seen).render_depth(camera, size)
    # Mirrored across the face's own mid-plane, turned or not: the mesh's left-right middle is the hair's too, and
    # long hair falling on one side put it 10 mm beside the nose (a second far eye beside the first).
    mirror_x = fit.mid_x
    photo_rgb = photo.astype(np.float64) / 255.0
    soft_mask = None if mask is None else _soft_mask(mask)
    texture, uv, uv_faces, source, info = bake_texture(
        geometry,
        shape.hair,
        shape.ears,
        photo_rgb,
        soft_mask,
        camera,
        depth_map,
        texture_width,
        landmarks=landmarks,
        photo_vertices=photo_vertices,
        mirror_x=mirror_x,
        turn=fit.turn,
        pinna=shape.pinna,
        **_segmentation_arguments(segmentation),
    )
    visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(texture))
    textured = trimesh.Trimesh(fit.vertices[source], uv_faces, visual=visual, process=False)
    # The first len(vertices) UV vertices are the original ones, in order (seam copies come after).
    vertex_rgb = np.round(sample_texture(texture, uv[: len(fit.vertices)]) * 255).astype(np.uint8)
    geometry.visual.vertex_colors = np.concatenate([vertex_rgb, np.full((len(vertex_rgb), 1), 255, np.uint8)], axis=1)
    info = {
        **info,
        "landmarks_used": fit.used,
        "fit_scale": round(fit.scale, 4),
        "fit_shift": [round(s, 4) for s in fit.shift],
        "landmark_residual_px": None if fit.residual_px is None else round(fit.residual_px, 2),
        "vertices": len(fit.vertices),
        "triangles": len(geometry.faces),
        **shape.info,
    }
    return ProxyHead(
        geometry, textured, texture, fit, info, segmentation, shape.hair, shape.ears, photo_vertices, mirror_x
    )


def head_shape(
    photo: np.ndarray,
    camera: Camera,
    mask: np.ndarray | None = None,
    landmarks: np.ndarray | None = None,
    voxel: float = 0.005,
) -> tuple[FitResult, HeadSegmentation | None, HeadShape]:
    """The geometry of :func:`build_head` alone: landmark fit, the photo's hair split, the head mesh.

    Returns:
        ``(fit, segmentation, shape)``; ``fit.vertices`` are the vertices of ``shape.mesh``.
    """
    size = photo.shape[0]
    fit = fit_template(template_head(voxel), camera, size, landmarks)
    segmentation = None
    if mask is not None:
        chin, _ = camera.project(fit.keypoints["chin"][None], size, size)
        segmentation = split_head(photo, mask, landmarks, chin_row=float(chin[0, 1]))
    shape = fit_shape(fit, camera, size, segmentation, voxel=voxel, photo=photo)
    if segmentation is not None and shape.pinna.any():
        shape = _ears_onto_photo(shape, camera, segmentation, landmarks)
    return dataclasses.replace(fit, vertices=np.asarray(shape.mesh.vertices)), segmentation, shape


def _ears_onto_photo(
    shape: HeadShape, camera: Camera, segmentation: HeadSegmentation, landmarks: np.ndarray | None
) -> HeadShape:
    """``shape`` with its bare ears moved onto the ears the photo shows (:mod:`portrait3d.proxy.ear_placement`)."""
    from portrait3d.proxy.ear_placement import ear_shifts, move_ears, photo_ear_region

    mesh = shape.mesh
    region = photo_ear_region(segmentation.skin, landmarks)
    moves = ear_shifts(np.asarray(mesh.vertices), np.asarray(mesh.vertex_normals), shape.pinna, camera, region)
    if not moves:
        return shape
    moved = trimesh.Trimesh(move_ears(np.asarray(mesh.vertices), shape.pinna, moves), mesh.faces, process=False)
    info = {**shape.info, "ear_moves": {("right" if s < 0 else "left"): [round(float(c), 4) for c in m]
                                        for s, m in moves.items()}}  # fmt: skip
    return dataclasses.replace(shape, mesh=moved, info=info)


def _segmentation_arguments(segmentation: HeadSegmentation | None) -> dict:
    """The photo's hair split, head mask and neck as :func:`bake_texture` takes them ((S, S) floats), if known."""
    if segmentation is None:
        return {}
    return {
        "photo_hair": segmentation.hair.astype(np.float64),
        "head_mask": segmentation.head.astype(np.float64),
        "neck_mask": segmentation.neck.astype(np.float64),
    }


def _soft_mask(mask: np.ndarray) -> np.ndarray:
    """Foreground in [0, 1], pulled a few pixels inside the outline so that background never paints the head."""
    import cv2

    m = np.asarray(mask, dtype=np.float32)
    if m.max() > 1.0:
        m = m / 255.0
    m = cv2.erode(m, np.ones((5, 5), np.uint8))
    return cv2.GaussianBlur(m, (0, 0), 1.5)
