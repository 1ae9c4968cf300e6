"""The proxy head of one photo: the template fitted to the landmarks, textured from the photo."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh

from portrait3d.cameras import Camera
from portrait3d.proxy.fit import FitResult, fit_template
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
        fit: what the landmark fit did.
        info: colours found and fit figures, for the stage record.
    """

    geometry: trimesh.Trimesh
    textured: trimesh.Trimesh
    texture: np.ndarray
    fit: FitResult
    info: dict = field(default_factory=dict)


def build_head(
    photo: np.ndarray,
    camera: Camera,
    mask: np.ndarray | None = None,
    landmarks: np.ndarray | None = None,
    voxel: float = 0.005,
    texture_width: int = 2048,
) -> ProxyHead:
    """Fit the template to a photo and texture it.

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
    template = template_head(voxel)
    fit = fit_template(template, camera, size, landmarks)
    geometry = trimesh.Trimesh(fit.vertices, np.asarray(template.mesh.faces), process=False)
    depth_map = MeshRenderer(geometry).render_depth(camera, size)
    photo_rgb = photo.astype(np.float64) / 255.0
    soft_mask = None if mask is None else _soft_mask(mask)
    texture, uv, uv_faces, source, info = bake_texture(
        geometry, template.hair, template.ears, photo_rgb, soft_mask, camera, depth_map, texture_width
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
    }
    return ProxyHead(geometry, textured, texture, fit, info)


def _soft_mask(mask: np.ndarray) -> np.ndarray:
    """Foreground in [0, 1], pulled a few pixels inside the outline so that background never paints the head."""
    import cv2

    m = np.asarray(mask, dtype=np.float32)
    if m.max() > 1.0:
        m = m / 255.0
    m = cv2.erode(m, np.ones((5, 5), np.uint8))
    return cv2.GaussianBlur(m, (0, 0), 1.5)
