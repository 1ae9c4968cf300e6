"""Helpers for tests and benchmarks of the proxy stage.

:func:`write_fixture_inputs` makes a run folder without the preprocess stage: a photo with known face-mesh
landmarks is aligned to the template head seen from a chosen camera (a similarity transform that puts the photo's
landmarks on the template's projected keypoints), which is what the preprocess stage produces for a real photo.
:func:`vertex_coloured` paints a mesh for a synthetic photo of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from portrait3d.cameras import camera_from_angles
from portrait3d.proxy.template import MEDIAPIPE_INDEX, template_head
from portrait3d.run import Run, atomic_save_image, atomic_write_json


def write_fixture_inputs(
    root: str | Path,
    photo: np.ndarray,
    landmarks: np.ndarray,
    yaw: float = 0.0,
    pitch: float = 0.0,
    size: int = 512,
    landmark_format: str = "mediapipe-478",
) -> Run:
    """Write ``input/aligned.png``, ``input/mask.png`` and ``input/camera.json`` into a new run folder.

    Args:
        root: the run folder.
        photo: (H, W, 3) uint8 photo.
        landmarks: (N >= 468, 3) face-mesh landmarks in photo pixels.
        yaw, pitch: the camera the photo is declared to be seen from (degrees).
        size: side of the aligned crop.
    """
    import cv2

    from portrait3d.render import MeshRenderer

    camera = camera_from_angles(yaw, pitch)
    template = template_head()
    names = list(MEDIAPIPE_INDEX)
    target, _ = camera.project(np.stack([template.keypoints[n] for n in names]), size, size)
    source = np.asarray(landmarks, dtype=np.float64)[[MEDIAPIPE_INDEX[n] for n in names], :2]
    matrix, _ = cv2.estimateAffinePartial2D(source.astype(np.float32), target.astype(np.float32))
    aligned = cv2.warpAffine(photo, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    points = np.asarray(landmarks, dtype=np.float64).copy()
    points[:, :2] = points[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    points[:, 2] *= scale
    silhouette = np.isfinite(MeshRenderer(template.mesh).render_depth(camera, size)).astype(np.uint8) * 255
    mask = cv2.dilate(silhouette, np.ones((9, 9), np.uint8))
    run = Run(root)
    atomic_save_image(run.path("input", "aligned.png"), aligned)
    atomic_save_image(run.path("input", "mask.png"), mask)
    angles = camera.angles()
    atomic_write_json(
        run.path("input", "camera.json"),
        {
            "label": camera.to_label(),
            "yaw": angles.yaw,
            "pitch": angles.pitch,
            "roll": angles.roll,
            "landmarks": {"format": landmark_format, "points": points.round(2).tolist()},
        },
    )
    return run


def vertex_coloured(mesh: trimesh.Trimesh, rgb: np.ndarray) -> trimesh.Trimesh:
    """A copy of ``mesh`` (unprocessed, same vertices and faces) with (V, 3) vertex colours in [0, 1], opaque."""
    out = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    rgba = np.concatenate([np.round(np.clip(rgb, 0.0, 1.0) * 255), np.full((len(rgb), 1), 255.0)], axis=1)
    out.visual.vertex_colors = rgba.astype(np.uint8)
    return out
