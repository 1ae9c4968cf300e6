"""The photo's 468 face-mesh landmarks lifted onto the exported surface, and the face's parts in 3D.

Each landmark (a pixel of ``input/aligned.png``) is a ray from the photo's camera
(``input/camera.json``); its first hit on the mesh is the landmark in 3D. A ray that misses
(a landmark on the outline) takes the mesh vertex nearest the ray. Everything is in the
file's frame: metres, +Y up, facing +Z, subject's left = +x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from portrait3d.cameras import Camera

# MediaPipe face-mesh indices ("left" is the subject's left, at +x). Lids run inner -> outer corner,
# lips from the subject's right corner (-x) to the left corner (+x).
LEFT_EYE_UPPER = (362, 398, 384, 385, 386, 387, 388, 466, 263)
LEFT_EYE_LOWER = (362, 382, 381, 380, 374, 373, 390, 249, 263)
RIGHT_EYE_UPPER = (133, 173, 157, 158, 159, 160, 161, 246, 33)
RIGHT_EYE_LOWER = (133, 155, 154, 153, 145, 144, 163, 7, 33)
LIPS_UPPER_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_LOWER_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
BROW_LEFT_INNER, BROW_LEFT_OUTER = (285, 295, 336, 296), (282, 283, 276, 334, 293, 300)
BROW_RIGHT_INNER, BROW_RIGHT_OUTER = (55, 65, 107, 66), (52, 53, 46, 105, 63, 70)
CHEEK_LEFT, CHEEK_RIGHT = (425, 411, 280, 346), (205, 187, 50, 117)
NOSE_ALA_LEFT, NOSE_ALA_RIGHT = (358, 327, 294), (129, 98, 64)
NOSE_TIP, NOSE_BOTTOM, CHIN = 1, 2, 152
FACE_SIDE_LEFT, FACE_SIDE_RIGHT = 454, 234
JAW_LEFT, JAW_RIGHT = (397, 365, 379, 378, 400), (172, 136, 150, 149, 176)


def lift_landmarks(
    pixels: np.ndarray,
    camera: Camera,
    image_size: int,
    vertices: np.ndarray,
    faces: np.ndarray,
    origin: np.ndarray,
    metres_per_unit: float,
    tolerance: float = 0.008,
    neighbours: int = 9,
) -> np.ndarray:
    """Ray-cast landmark pixels onto a mesh.

    Grazing rays (the eyes' outer corners, the face's sides) and crevices of a coarse surface give hits
    far from their neighbours': a landmark whose hit distance is more than ``tolerance`` from the median
    of its ``neighbours`` nearest landmarks (in the photo) sits on its ray at that median instead.

    Args:
        pixels: (K, 2) pixel coordinates in the aligned photo (x right, y down).
        camera: the photo's camera (PanoHead world units).
        image_size: the aligned photo's side in pixels.
        vertices: (V, 3) mesh vertices in the file's frame (metres, origin moved to ``origin``).
        faces: (F, 3) triangles.
        origin: (3,) PanoHead point that is the file's origin.
        metres_per_unit: the file's scale.
        tolerance: metres.
        neighbours: how many landmarks (itself included) the median takes.
    Returns:
        (K, 3) points on the surface, file frame.
    """
    import open3d as o3d

    fx, fy, cx, cy = camera.pixel_intrinsics(image_size, image_size)
    pix = np.asarray(pixels, dtype=np.float64)[:, :2]
    dirs = np.stack([(pix[:, 0] - cx) / fx, (pix[:, 1] - cy) / fy, np.ones(len(pix))], axis=1)
    dirs = dirs @ camera.cam2world[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    start = (camera.position - np.asarray(origin)) * metres_per_unit
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(vertices, np.float32)), o3d.core.Tensor(np.asarray(faces, np.uint32))
    )
    rays = np.concatenate([np.broadcast_to(start, dirs.shape), dirs], axis=1).astype(np.float32)
    t = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy().astype(np.float64)
    hit = np.isfinite(t)
    if hit.sum() >= neighbours:
        # A hit far from its neighbours' (a grazing ray that found the ear, a crevice of a coarse
        # surface), or a miss, takes the median hit distance of its nearest landmarks in the photo.
        from scipy.spatial import cKDTree

        tree = cKDTree(pix[hit])
        _, nearest = tree.query(pix, k=neighbours)
        median = np.median(t[hit][nearest], axis=1)
        t = np.where(hit & (np.abs(t - median) < tolerance), t, median)
        hit = np.ones_like(hit)
    points = start + dirs * np.where(hit, t, 0.0)[:, None]
    for k in np.flatnonzero(~hit):  # too few hits for medians: the vertex nearest the ray
        # Missed (beyond the outline): the vertex nearest the ray, on the camera's side.
        rel = vertices - start
        along = rel @ dirs[k]
        dist = np.linalg.norm(rel - along[:, None] * dirs[k], axis=1) + 1e-3 * along
        points[k] = vertices[np.argmin(dist)]
    return points


@dataclass
class Face:
    """The face's parts in 3D (file frame, metres). Curves are (K, 3) point rows."""

    points: np.ndarray
    """(468, 3) every landmark."""

    def curve(self, indices) -> np.ndarray:
        return self.points[list(indices)]

    def lids(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """(upper, lower) lid contours of ``side`` ("left" = +x), inner -> outer corner: (9, 3) each."""
        if side == "left":
            return self.curve(LEFT_EYE_UPPER), self.curve(LEFT_EYE_LOWER)
        return self.curve(RIGHT_EYE_UPPER), self.curve(RIGHT_EYE_LOWER)

    def eye_centre(self, side: str) -> np.ndarray:
        """Centre of the eye opening: (3,)."""
        upper, lower = self.lids(side)
        return np.concatenate([upper, lower]).mean(axis=0)

    @property
    def interocular(self) -> float:
        """Distance between the eye openings' centres (about 63 mm on an adult): every radius scales with it."""
        return float(np.linalg.norm(self.eye_centre("left") - self.eye_centre("right")))

    @property
    def mouth_line(self) -> np.ndarray:
        """(11, 3) midline between the inner lip contours, subject's right -> left corner."""
        return 0.5 * (self.curve(LIPS_UPPER_INNER) + self.curve(LIPS_LOWER_INNER))

    @property
    def mouth_corners(self) -> tuple[np.ndarray, np.ndarray]:
        """(right, left) outer mouth corners: (3,) each."""
        return self.points[61], self.points[291]

    @property
    def mouth_centre(self) -> np.ndarray:
        return 0.5 * (self.points[13] + self.points[14])

    @property
    def mouth_width(self) -> float:
        right, left = self.mouth_corners
        return float(np.linalg.norm(left - right))
