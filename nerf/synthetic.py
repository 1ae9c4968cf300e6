"""Ground-truth scenes for measuring the NeRF: a procedural textured head.

The head is an ellipsoid of PanoHead size (about 0.45 units tall, centred at
the origin, facing +z) with a nose, ears and a chin, coloured per vertex by a
procedural pattern (skin, striped hair, eyes, brows, mouth, cheek spots) that
has detail at the pixel scale of a 256² render. :func:`write_scene` renders it
with the shared :class:`portrait3d.render.MeshRenderer` into a run folder
exactly as the view generators would (``views/NNNN.png`` + ``views/cameras.json``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import trimesh

from portrait3d import cameras as cams
from portrait3d.run import Run, atomic_save_image


def _bump(directions: np.ndarray, centre: Sequence[float], width: float) -> np.ndarray:
    """Gaussian bump on the unit sphere around ``centre``: (N, 3) -> (N,) in [0, 1]."""
    c = np.asarray(centre, dtype=np.float64)
    c = c / np.linalg.norm(c)
    return np.exp(-np.sum((directions - c) ** 2, axis=-1) / (2.0 * width**2))


def _colours(d: np.ndarray) -> np.ndarray:
    """Procedural albedo at unit directions of the undeformed sphere: (N, 3) -> (N, 3) in [0, 1]."""
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    yaw = np.arctan2(x, z)
    skin = np.array([0.86, 0.66, 0.55])
    colour = np.tile(skin, (len(d), 1))
    # Freckle-like pattern so that the skin is not flat.
    colour *= (0.93 + 0.07 * np.sin(40 * x) * np.sin(37 * y) * np.sin(33 * z))[:, None]
    hairline = 0.25 - 0.55 * np.clip(-z, 0.0, 1.0) + 0.05 * np.cos(3 * yaw)
    hair = y > hairline
    stripes = 0.5 + 0.5 * np.sin(28 * yaw + 6 * y)
    colour[hair] = (np.array([0.25, 0.15, 0.08]) * (0.6 + 0.6 * stripes[hair, None])).clip(0, 1)
    for side in (-1.0, 1.0):
        eye = _bump(d, (0.33 * side, 0.12, 0.93), 0.07)
        colour = colour * (1 - eye[:, None]) + np.array([0.95, 0.95, 0.95]) * eye[:, None]
        iris = _bump(d, (0.33 * side, 0.12, 0.93), 0.035)
        colour = colour * (1 - iris[:, None]) + np.array([0.15, 0.3, 0.55]) * iris[:, None]
        brow = np.exp(-(((y - 0.27) / 0.03) ** 2) - ((x - 0.33 * side) / 0.14) ** 2) * (z > 0)
        colour = colour * (1 - brow[:, None]) + np.array([0.2, 0.12, 0.06]) * brow[:, None]
        cheek = _bump(d, (0.55 * side, -0.2, 0.8), 0.1) * 0.5
        colour = colour * (1 - cheek[:, None]) + np.array([0.9, 0.4, 0.4]) * cheek[:, None]
    mouth = np.exp(-(((y + 0.38) / 0.035) ** 2) - (x / 0.17) ** 2) * (z > 0)
    colour = colour * (1 - mouth[:, None]) + np.array([0.7, 0.15, 0.2]) * mouth[:, None]
    return colour.clip(0.0, 1.0)


def head_mesh(subdivisions: int = 6) -> trimesh.Trimesh:
    """The procedural head with vertex colours (PanoHead world units, +y up, facing +z).

    Args:
        subdivisions: icosphere subdivisions (6: 40k vertices, 80k faces).
    """
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    d = np.asarray(sphere.vertices, dtype=np.float64)
    radii = np.array([0.155, 0.205, 0.18])
    # Bumps (in units of the local radius) for the nose, ears and chin; the back of the skull bulges a bit.
    push = (
        0.22 * _bump(d, (0.0, -0.08, 1.0), 0.09)
        + 0.12 * _bump(d, (1.0, 0.0, -0.05), 0.1)
        + 0.12 * _bump(d, (-1.0, 0.0, -0.05), 0.1)
        + 0.06 * _bump(d, (0.0, -0.85, 0.5), 0.15)
        + 0.05 * _bump(d, (0.0, 0.3, -1.0), 0.35)
    )
    vertices = d * radii * (1.0 + push)[:, None]
    vertices[:, 1] += 0.02
    colours = np.concatenate([(_colours(d) * 255).round(), np.full((len(d), 1), 255)], axis=1).astype(np.uint8)
    return trimesh.Trimesh(vertices, np.asarray(sphere.faces), vertex_colors=colours, process=False)


def orbit_cameras(views_per_ring: int = 18, pitches: Sequence[float] = (0.0, 20.0)) -> list[cams.Camera]:
    """Rings of PanoHead cameras around the origin (default: 36 cameras, 2 rings)."""
    return cams.orbit(views_per_ring, pitches=pitches)


def held_out_indices(num_views: int, num_held_out: int = 4) -> list[int]:
    """Indices of evenly spread held-out views (never view 0, the frontal one)."""
    step = num_views / num_held_out
    return [int(step * i + step / 2) for i in range(num_held_out)]


def render_views(mesh: trimesh.Trimesh, cameras: Sequence[cams.Camera], size: int) -> list[np.ndarray]:
    """RGBA renders of ``mesh``: one (size, size, 4) uint8 image per camera."""
    from portrait3d.render import MeshRenderer

    renderer = MeshRenderer(mesh)
    return [renderer.render_rgba(cam, size) for cam in cameras]


def write_scene(
    run_dir: str | Path,
    mesh: trimesh.Trimesh,
    cameras: Sequence[cams.Camera],
    size: int = 512,
    alter: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None,
) -> Run:
    """Render ``mesh`` at ``cameras`` into ``RUN/views/`` as a view generator would.

    Args:
        alter: changes the rendered views before they are written (e.g. :func:`simulate_diffusion`).
    Returns:
        The run (created if needed).
    """
    run = Run(run_dir)
    named = {}
    images = render_views(mesh, cameras, size)
    if alter is not None:
        images = alter(images)
    for index, (camera, image) in enumerate(zip(cameras, images)):
        name = f"{cams.view_name(index)}.png"
        atomic_save_image(run.path("views", name), image)
        named[name] = camera
    cams.write_labels(run.path("views", "cameras.json"), named)
    return run


def proxy_of(mesh: trimesh.Trimesh, offset: float = 0.006, seed: int = 0) -> trimesh.Trimesh:
    """A stand-in proxy of ``mesh``: the shape a template fit gets roughly right, not exactly.

    Each vertex moves along its normal by a smooth random field of amplitude ``offset`` (world units;
    0.006 is about 2.4 mm at the export's scale) and the colours are blurred (a proxy texture is
    smoother than the views). For benchmarks of the warm start (:mod:`nerf.warm_start`).
    """
    rng = np.random.default_rng(seed)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    unit = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    # A few low-frequency waves over the sphere of directions.
    field = np.zeros(len(vertices))
    for _ in range(6):
        k = rng.normal(size=3) * 3.0
        field += np.sin(unit @ k + rng.uniform(0, 2 * np.pi))
    field *= offset / max(np.abs(field).max(), 1e-9)
    moved = vertices + np.asarray(mesh.vertex_normals) * field[:, None]
    colours = np.asarray(mesh.visual.vertex_colors, dtype=np.float64)[:, :3]
    neighbours = mesh.vertex_neighbors
    for _ in range(4):
        colours = np.stack([colours[n].mean(axis=0) if n else colours[i] for i, n in enumerate(neighbours)])
    rgba = np.concatenate([colours.round(), np.full((len(colours), 1), 255)], axis=1).astype(np.uint8)
    return trimesh.Trimesh(moved, np.asarray(mesh.faces), vertex_colors=rgba, process=False)


PERTURBATIONS = ("colour", "jitter", "detail", "wrong")
"""What :func:`simulate_diffusion` can do to a ring of views (each can be switched on alone, for ablations)."""


def simulate_diffusion(
    images: Sequence[np.ndarray],
    seed: int = 0,
    exposure: float = 0.15,
    colour: float = 0.05,
    jitter_px: float = 3.0,
    detail: float = 0.08,
    wrong_views: int = 2,
    perturbations: Sequence[str] = PERTURBATIONS,
) -> tuple[list[np.ndarray], dict]:
    """What a diffusion model does to a 360-degree ring of views, applied to consistent renders.

    Per view: an exposure change (log2 gain ~ N(0, ``exposure``)) and a colour cast (per-channel gain
    ~ N(1, ``colour``)), divided by the ring's geometric mean gain (the views are right on average); a
    shift of a few pixels (uniform in ±``jitter_px`` at 512 px, scaled with the image); hallucinated
    high-frequency detail that differs from view to view (blurred noise of amplitude ``detail`` on the
    head); and ``wrong_views`` views that are plainly wrong (the image of the view a quarter turn away).

    Args:
        images: (H, W, 4) uint8 RGBA views of one ring, in orbit order.
        perturbations: which of :data:`PERTURBATIONS` to apply (``colour``: exposure and colour cast,
            ``jitter``, ``detail``, ``wrong``: the wrong views); the random draws are the same whatever
            is switched off, so that one perturbation alone is exactly its share of the full simulation.
    Returns:
        ``(images, record)``: the altered views and what was done to each (for the report).
    """
    from scipy import ndimage

    unknown = sorted(set(perturbations) - set(PERTURBATIONS))
    if unknown:
        raise ValueError(f"unknown perturbations {unknown}; expected some of {PERTURBATIONS}")
    rng = np.random.default_rng(seed)
    n = len(images)
    wrong = sorted(rng.choice(np.arange(1, n), size=min(wrong_views, max(n - 1, 0)), replace=False).tolist())
    if "wrong" not in perturbations:
        wrong = []
    out, record = [], {"perturbations": list(perturbations), "wrong_views": wrong, "views": []}
    draws = []
    for image in images:
        h = image.shape[0]
        shift = np.round(rng.uniform(-jitter_px, jitter_px, size=2) * h / 512.0).astype(int)
        gain = 2.0 ** rng.normal(0.0, exposure) * rng.normal(1.0, colour, size=3)
        noise = ndimage.gaussian_filter(rng.normal(size=image.shape[:2]), 1.0 * h / 512.0 + 0.5)
        draws.append((shift, gain, noise * detail / max(noise.std(), 1e-9)))
    # The ring's exposure is centred on the truth (geometric mean gain 1 per channel): a fit that matches
    # the views on average is then the true head, and a held-out view against the clean render does not
    # charge it for the draw's mean cast.
    centre = np.exp(np.mean([np.log(gain) for _, gain, _ in draws], axis=0))
    for i, (shift, gain, noise) in enumerate(draws):
        src = images[(i + n // 4) % n] if i in wrong else images[i]
        rgba = src.astype(np.float64) / 255.0
        shift = shift if "jitter" in perturbations else np.zeros(2, dtype=int)
        gain = gain / centre if "colour" in perturbations else np.ones(3)
        noise = noise if "detail" in perturbations else np.zeros_like(noise)
        rgba = np.roll(rgba, tuple(shift), axis=(0, 1))
        rgb = np.clip(rgba[..., :3] * gain + noise[..., None], 0.0, 1.0)
        out.append((np.concatenate([rgb, rgba[..., 3:]], axis=-1) * 255.0).round().astype(np.uint8))
        record["views"].append({"shift_px": shift.tolist(), "gain": [round(float(g), 3) for g in gain]})
    return out, record
