"""Camera conventions: the only module that knows them.

PanoHead / EG3D label (25 floats)
    A row-major 4x4 camera-to-world matrix in OpenCV camera axes (x right,
    y down, z forward), then a row-major 3x3 intrinsic matrix normalised by the
    image size (focal 4.2647, principal point 0.5, 0.5 in the released data).

World
    y up, the face looks toward +z, the head sits at the origin, PanoHead units.

Angles (this project's convention, used everywhere)
    yaw     rotation of the camera about world +y, 0 = frontal (camera on +z),
            +90 = camera on +x. View N/2 of an N-view orbit (yaw 180) is the back.
    pitch   elevation of the camera above the target's horizontal plane, degrees.
    roll    rotation of the image about the optical axis, degrees.
    radius  distance from the camera centre to the look-at target.

nerfstudio ``transforms.json``
    camera-to-world in OpenGL camera axes (x right, y up, looking down -z),
    pixel intrinsics ``fl_x, fl_y, cx, cy, w, h``, file paths relative to the
    json file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from portrait3d.errors import UserError

PANOHEAD_FOCAL = 4.2647
"""Normalised focal length of the released PanoHead labels."""
PANOHEAD_RADIUS = 2.7
"""Camera distance of the released PanoHead labels (world units)."""
RELEASE_NUM_VIEWS = 32
"""Views in the released ``sphere32`` condition ring; view 16 is the back."""

# Flips OpenCV camera axes (y down, z forward) to OpenGL ones (y up, z backward)
# and back: the matrix is its own inverse.
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])
_WORLD_UP = np.array([0.0, 1.0, 0.0])


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    if n < 1e-12:
        raise ValueError("cannot normalise a zero vector")
    return v / n


def normalised_intrinsics(focal: float = PANOHEAD_FOCAL, cx: float = 0.5, cy: float = 0.5) -> np.ndarray:
    """3x3 intrinsics normalised by the image size: (3, 3)."""
    return np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Camera:
    """A pinhole camera in PanoHead conventions.

    Attributes:
        cam2world: (4, 4) camera-to-world, OpenCV camera axes.
        intrinsics: (3, 3) intrinsics normalised by the image width and height.
    """

    cam2world: np.ndarray = field(repr=False)
    intrinsics: np.ndarray = field(default_factory=normalised_intrinsics, repr=False)

    def __post_init__(self) -> None:
        c2w = np.asarray(self.cam2world, dtype=np.float64).reshape(4, 4)
        k = np.asarray(self.intrinsics, dtype=np.float64).reshape(3, 3)
        if not (np.all(np.isfinite(c2w)) and np.all(np.isfinite(k))):
            raise ValueError("camera matrices must be finite")
        object.__setattr__(self, "cam2world", c2w)
        object.__setattr__(self, "intrinsics", k)

    # --- PanoHead labels -------------------------------------------------
    @classmethod
    def from_label(cls, label: Sequence[float]) -> Camera:
        """Camera from a 25-float PanoHead/EG3D label."""
        values = np.asarray(label, dtype=np.float64).ravel()
        if values.shape != (25,):
            raise ValueError(f"a PanoHead label has 25 floats, got {values.size}")
        return cls(values[:16].reshape(4, 4), values[16:].reshape(3, 3))

    def to_label(self) -> list[float]:
        """The 25-float PanoHead/EG3D label."""
        return [float(v) for v in np.concatenate([self.cam2world.ravel(), self.intrinsics.ravel()])]

    # --- geometry --------------------------------------------------------
    @property
    def position(self) -> np.ndarray:
        """Camera centre in world coordinates: (3,)."""
        return self.cam2world[:3, 3].copy()

    @property
    def forward(self) -> np.ndarray:
        """Unit optical axis in world coordinates: (3,)."""
        return _unit(self.cam2world[:3, 2])

    def orthonormalised(self) -> Camera:
        """The same camera with the nearest proper rotation (polar decomposition).

        The released PanoHead labels come from a 3DDFA pose fit whose x and y
        camera axes are not quite orthogonal (about 0.2 degrees of shear), which
        no rotation can express; this is the closest camera that is a rotation.
        """
        u, _, vt = np.linalg.svd(self.cam2world[:3, :3])
        c2w = self.cam2world.copy()
        c2w[:3, :3] = u @ vt
        return Camera(c2w, self.intrinsics)

    def look_at_point(self) -> np.ndarray:
        """Point on the optical axis nearest the world origin: (3,)."""
        p, f = self.position, self.forward
        return p - np.dot(p, f) * f

    @property
    def world2cam(self) -> np.ndarray:
        """(4, 4) world-to-camera, OpenCV axes."""
        return np.linalg.inv(self.cam2world)

    def pixel_intrinsics(self, width: int, height: int) -> tuple[float, float, float, float]:
        """``(fl_x, fl_y, cx, cy)`` in pixels for an image of ``width`` x ``height``."""
        k = self.intrinsics
        return float(k[0, 0] * width), float(k[1, 1] * height), float(k[0, 2] * width), float(k[1, 2] * height)

    def intrinsic_matrix(self, width: int, height: int) -> np.ndarray:
        """3x3 pixel intrinsics: (3, 3)."""
        fx, fy, cx, cy = self.pixel_intrinsics(width, height)
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    def project(self, points: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Project world points to pixels.

        Args:
            points: (N, 3) world points.
        Returns:
            ``(uv, depth)``: (N, 2) pixel coordinates (x right, y down, pixel
            centres at +0.5) and (N,) depth along the optical axis.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        w2c = self.world2cam
        cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
        depth = cam[:, 2]
        k = self.intrinsic_matrix(width, height)
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (cam[:, :2] / depth[:, None]) * np.array([k[0, 0], k[1, 1]]) + np.array([k[0, 2], k[1, 2]])
        return uv, depth

    def rays(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """World-space rays through pixel centres.

        Returns:
            ``(origins, directions)``: each (H, W, 3); directions are unit length.
        """
        fx, fy, cx, cy = self.pixel_intrinsics(width, height)
        u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        dirs_cam = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)
        dirs = dirs_cam @ self.cam2world[:3, :3].T
        dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
        origins = np.broadcast_to(self.position, dirs.shape).copy()
        return origins, dirs

    # --- angles ----------------------------------------------------------
    def angles(self, target: Sequence[float] | None = None) -> CameraAngles:
        """Recover yaw, pitch, roll, radius and look-at target.

        Args:
            target: (3,) look-at point; default: the point on the optical axis
                nearest the origin, which makes the decomposition exact.
        """
        cam = self.orthonormalised()
        tgt = cam.look_at_point() if target is None else np.asarray(target, dtype=np.float64)
        offset = cam.position - tgt
        radius = float(np.linalg.norm(offset))
        yaw = math.degrees(math.atan2(offset[0], offset[2]))
        pitch = math.degrees(math.asin(np.clip(offset[1] / radius, -1.0, 1.0)))
        x0, y0 = _roll_free_axes(_unit(tgt - cam.position))
        x = cam.cam2world[:3, 0]
        roll = math.degrees(math.atan2(np.dot(x, y0), np.dot(x, x0)))
        return CameraAngles(yaw=yaw, pitch=pitch, roll=roll, radius=radius, target=tuple(float(t) for t in tgt))


@dataclass(frozen=True)
class CameraAngles:
    """Yaw/pitch/roll in degrees, radius and look-at target of a camera."""

    yaw: float
    pitch: float
    roll: float
    radius: float
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _roll_free_axes(forward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV x (right) and y (down) axes of an unrolled camera looking along ``forward``."""
    side = np.cross(forward, _WORLD_UP)
    if np.linalg.norm(side) < 1e-9:  # looking straight up or down: any right vector works
        side = np.array([1.0, 0.0, 0.0])
    x = _unit(side)
    y = np.cross(forward, x)
    return x, y


def look_at(position: Sequence[float], target: Sequence[float] = (0.0, 0.0, 0.0), roll: float = 0.0) -> np.ndarray:
    """Camera-to-world (OpenCV axes) of a camera at ``position`` looking at ``target``.

    Args:
        position: (3,) camera centre.
        target: (3,) look-at point.
        roll: degrees about the optical axis.
    Returns:
        (4, 4) camera-to-world.
    """
    pos = np.asarray(position, dtype=np.float64)
    z = _unit(np.asarray(target, dtype=np.float64) - pos)
    x0, y0 = _roll_free_axes(z)
    r = math.radians(roll)
    x = math.cos(r) * x0 + math.sin(r) * y0
    y = -math.sin(r) * x0 + math.cos(r) * y0
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, pos
    return c2w


def camera_from_angles(
    yaw: float,
    pitch: float = 0.0,
    roll: float = 0.0,
    radius: float = PANOHEAD_RADIUS,
    target: Sequence[float] = (0.0, 0.0, 0.0),
    focal: float = PANOHEAD_FOCAL,
) -> Camera:
    """A camera on a sphere around ``target`` (angles in degrees, see module docstring)."""
    y, p = math.radians(yaw), math.radians(pitch)
    offset = radius * np.array([math.cos(p) * math.sin(y), math.sin(p), math.cos(p) * math.cos(y)])
    tgt = np.asarray(target, dtype=np.float64)
    return Camera(look_at(tgt + offset, tgt, roll), normalised_intrinsics(focal))


def camera_from_angle_record(angles: CameraAngles, focal: float = PANOHEAD_FOCAL) -> Camera:
    """Inverse of :meth:`Camera.angles`."""
    return camera_from_angles(angles.yaw, angles.pitch, angles.roll, angles.radius, angles.target, focal)


def orbit(
    num_views: int = RELEASE_NUM_VIEWS,
    pitch: float = 0.0,
    radius: float = PANOHEAD_RADIUS,
    target: Sequence[float] = (0.0, 0.0, 0.0),
    focal: float = PANOHEAD_FOCAL,
    pitches: Iterable[float] | None = None,
) -> list[Camera]:
    """Cameras evenly spaced in yaw over 360 degrees.

    View 0 is frontal (yaw 0) and view ``num_views // 2`` is the back (yaw 180);
    yaw grows with the view index. With ``pitches``, one such ring per pitch,
    rings in the given order. The default is the release's 32-view ring.
    """
    if num_views < 1:
        raise ValueError("an orbit needs at least one view")
    rings = [pitch] if pitches is None else list(pitches)
    return [
        camera_from_angles(360.0 * i / num_views, ring_pitch, 0.0, radius, target, focal)
        for ring_pitch in rings
        for i in range(num_views)
    ]


def view_name(index: int) -> str:
    """File stem of orbit view ``index`` (``0000``, ``0001``, ...)."""
    return f"{index:04d}"


# --- dataset.json (PanoHead label files) -----------------------------------
def read_labels(path: str | Path) -> dict[str, Camera]:
    """Read a PanoHead ``dataset.json`` (``{"labels": [[name, [25 floats]], ...]}``)."""
    from portrait3d.run import read_json

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such camera file")
    data = read_json(path)
    try:
        labels = data["labels"]
        return {str(name): Camera.from_label(values) for name, values in labels}
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: not a PanoHead label file ({exc})") from exc


def labels_document(cameras: dict[str, Camera]) -> dict:
    """The ``dataset.json`` document for named cameras."""
    return {"labels": [[name, cam.to_label()] for name, cam in cameras.items()]}


def write_labels(path: str | Path, cameras: dict[str, Camera]) -> None:
    """Write named cameras as a PanoHead ``dataset.json`` (atomically)."""
    from portrait3d.run import atomic_write_json

    atomic_write_json(path, labels_document(cameras))


# --- nerfstudio --------------------------------------------------------------
def opencv_to_opengl(cam2world: np.ndarray) -> np.ndarray:
    """Camera-to-world with OpenCV camera axes -> OpenGL camera axes: (4, 4) -> (4, 4)."""
    return np.asarray(cam2world, dtype=np.float64) @ _CV_TO_GL


def opengl_to_opencv(cam2world: np.ndarray) -> np.ndarray:
    """Camera-to-world with OpenGL camera axes -> OpenCV camera axes: (4, 4) -> (4, 4)."""
    return np.asarray(cam2world, dtype=np.float64) @ _CV_TO_GL


def nerfstudio_frame(camera: Camera, width: int, height: int, file_path: str, **extra) -> dict:
    """One ``frames`` entry of a nerfstudio ``transforms.json`` (per-frame intrinsics)."""
    fx, fy, cx, cy = camera.pixel_intrinsics(width, height)
    frame = {
        "file_path": file_path,
        "transform_matrix": opencv_to_opengl(camera.cam2world).tolist(),
        "fl_x": fx,
        "fl_y": fy,
        "cx": cx,
        "cy": cy,
        "w": int(width),
        "h": int(height),
    }
    frame.update(extra)
    return frame


def camera_from_nerfstudio_frame(frame: dict, defaults: dict | None = None) -> Camera:
    """Inverse of :func:`nerfstudio_frame`; intrinsics fall back to ``defaults`` (the file's top level)."""
    merged = {**(defaults or {}), **frame}
    w, h = float(merged["w"]), float(merged["h"])
    k = np.array(
        [[merged["fl_x"] / w, 0.0, merged["cx"] / w], [0.0, merged["fl_y"] / h, merged["cy"] / h], [0.0, 0.0, 1.0]]
    )
    return Camera(opengl_to_opencv(np.asarray(merged["transform_matrix"], dtype=np.float64)), k)


def transforms_document(
    cameras: Sequence[Camera],
    file_paths: Sequence[str],
    width: int,
    height: int,
    frame_extras: Sequence[dict] | None = None,
) -> dict:
    """A nerfstudio ``transforms.json`` document.

    The world frame is PanoHead's (y up); ``applied_transform`` is the identity
    because the poses are written as they are.
    """
    if len(cameras) != len(file_paths):
        raise ValueError("one file path per camera")
    extras = frame_extras or [{} for _ in cameras]
    return {
        "camera_model": "OPENCV",
        "frames": [nerfstudio_frame(c, width, height, p, **e) for c, p, e in zip(cameras, file_paths, extras)],
    }


def cameras_from_transforms(document: dict) -> list[tuple[str, Camera]]:
    """``(file_path, camera)`` for every frame of a ``transforms.json`` document."""
    top = {k: document[k] for k in ("fl_x", "fl_y", "cx", "cy", "w", "h") if k in document}
    return [(f["file_path"], camera_from_nerfstudio_frame(f, top)) for f in document["frames"]]
