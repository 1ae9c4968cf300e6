"""The ``render-turntable`` stage: the textured head mesh seen from a full circle of cameras.

Writes ``RUN/turntable.mp4`` (H.264 through imageio-ffmpeg) or, where no
encoder is available, ``RUN/turntable.gif``. Frames are ray-cast on the CPU with
the shared :class:`portrait3d.render.MeshRenderer` (a fraction of a second each).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from portrait3d import cameras, progress
from portrait3d.errors import UserError
from portrait3d.run import Run, atomic_path
from portrait3d.runner import Stage, run_stage

from .export import GLB_NAME, MESH_DIR, read_glb_json

STAGE = "render-turntable"


@dataclass
class TurntableConfig:
    """Options of the turntable."""

    frames: int = 72
    """Frames in one revolution (yaw steps of 360 / frames degrees, frame 0 frontal)."""
    size: int = 512
    """Frame width and height in pixels (rounded up to a multiple of 16 for the video encoder)."""
    pitch: float = 10.0
    """Camera elevation in degrees."""
    fps: int = 24
    """Frames per second of the video."""
    background: tuple[int, int, int] = (255, 255, 255)
    """Background colour (RGB)."""


def video_encoder_available() -> bool:
    """True when imageio can write MP4 (an ffmpeg binary from imageio-ffmpeg or the system)."""
    try:
        import imageio_ffmpeg

        return bool(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        return False


def output_name() -> str:
    """``turntable.mp4``, or ``turntable.gif`` without a video encoder."""
    return "turntable.mp4" if video_encoder_available() else "turntable.gif"


def load_head_mesh(path: str | Path) -> trimesh.Trimesh:
    """Load ``head.glb`` back into PanoHead units (undoing the metres scale and the origin shift
    recorded in its extras)."""
    path = Path(path)
    try:
        extras = read_glb_json(path)["asset"]["extras"]["portrait3d"]
        scale = float(extras["metres_per_unit"])
        origin = np.asarray(extras.get("origin_source_units", (0.0, 0.0, 0.0)), dtype=np.float64)
        mesh = trimesh.load(path, force="mesh")
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise UserError(f"{path}: not a head mesh written by export-mesh ({exc})") from exc
    mesh.vertices = np.asarray(mesh.vertices) / scale + origin
    return mesh


FRAME_MARGIN = 1.06
"""Room around the head's bounding sphere in every frame (6 %)."""


def framing(mesh: trimesh.Trimesh) -> tuple[np.ndarray, float]:
    """Target and normalised focal length that keep the whole mesh in every frame of the turntable.

    The cameras circle the centre of the mesh's bounding box at PanoHead's radius, with
    PanoHead's focal length unless the bounding sphere (plus :data:`FRAME_MARGIN`) would
    not fit: then the focal length shrinks until it does (a big hairdo, a long neck).

    Returns:
        ``(target (3,), focal)``.
    """
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    centre = 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
    radius = float(np.linalg.norm(vertices - centre, axis=1).max()) * FRAME_MARGIN
    distance = cameras.PANOHEAD_RADIUS
    # A sphere of radius r at distance D spans tan(half angle) = r / sqrt(D^2 - r^2); image half-width 0.5.
    fitting = 0.5 * np.sqrt(max(distance**2 - radius**2, 1e-6)) / max(radius, 1e-6)
    return centre, float(min(cameras.PANOHEAD_FOCAL, fitting))


def render_frames(mesh: trimesh.Trimesh, config: TurntableConfig, threads: int | None = None):
    """Yield (S, S, 3) uint8 frames of ``mesh`` (PanoHead units) over the background.

    Frames are rendered in ``threads`` threads (None: one per core, :func:`portrait3d.parallel.thread_count`)
    and yielded in order; each frame is the same on any number of threads.
    """
    from portrait3d.parallel import ordered_map
    from portrait3d.render import MeshRenderer

    renderer = MeshRenderer(mesh)
    size = -(-config.size // 16) * 16
    background = np.asarray(config.background, dtype=np.float64)
    target, focal = framing(mesh)

    def frame(cam: cameras.Camera) -> np.ndarray:
        rgba = renderer.render_rgba(cam, size).astype(np.float64)
        alpha = rgba[..., 3:] / 255.0
        return np.round(rgba[..., :3] * alpha + background * (1.0 - alpha)).astype(np.uint8)

    orbit = cameras.orbit(config.frames, pitch=config.pitch, target=target, focal=focal)
    renderer.prepare()
    yield from ordered_map(frame, orbit, threads)


def write_turntable(mesh: trimesh.Trimesh, path: str | Path, config: TurntableConfig) -> Path:
    """Render the turntable of ``mesh`` (PanoHead units) to ``path`` (.mp4 or .gif), atomically."""
    import imageio.v2 as imageio

    path = Path(path)
    frames = progress.bar(render_frames(mesh, config), total=config.frames, desc="turntable")
    with atomic_path(path) as tmp:
        if path.suffix == ".mp4":
            writer = imageio.get_writer(tmp, format="FFMPEG", fps=config.fps, codec="libx264", quality=8)
        else:
            writer = imageio.get_writer(tmp, format="GIF", duration=1000.0 / config.fps, loop=0)
        with writer:
            for frame in frames:
                writer.append_data(frame)
    return path


INPUTS = [f"{MESH_DIR}/{GLB_NAME}"]
"""Run-relative files the stage reads."""


def render_turntable(run: Run, config: TurntableConfig, force: bool = False) -> dict:
    """Run the ``render-turntable`` stage: reads ``mesh/head.glb``, writes ``turntable.mp4`` (or ``.gif``).

    Returns:
        Information for ``report.json`` (the file written, frames, size), plus ``seconds`` and ``skipped``.
    """
    return run_stage(run, stage(config), force)


def stage(config: TurntableConfig) -> Stage:
    """``render-turntable``: ``turntable.mp4`` (or ``.gif``) of the textured mesh."""
    return Stage(
        STAGE,
        turntable_stage,
        config,
        inputs=tuple(INPUTS),
        outputs=(output_name(),),
        needs="run `portrait3d export-mesh {run}` first",
        check=lambda run: check_inputs(run, config),
    )


def check_inputs(run: Run, config: TurntableConfig) -> None:
    """Fail with a one-line message on bad options or a missing mesh."""
    from portrait3d import limits

    limits.integer("--frames", config.frames, 1, limits.MAX_FRAMES)
    if not 16 <= config.size <= 4096:
        raise UserError(f"--size: between 16 and 4096 pixels, got {config.size}")
    limits.integer("--fps", config.fps, 1, 240)
    limits.number("--pitch", config.pitch, *limits.PITCH_RANGE, " degrees")
    run.require(*INPUTS, hint=f"run `portrait3d export-mesh {run.root}` first")


def turntable_stage(run: Run, config: TurntableConfig) -> dict:
    """``fn(run, config) -> info`` of the stage: writes ``turntable.mp4`` (or ``.gif``)."""
    name = output_name()
    write_turntable(load_head_mesh(run.path(INPUTS[0])), run.path(name), config)
    return {"file": name, "frames": config.frames, "size": -(-config.size // 16) * 16}
