"""Test helper shared by the export tests: views of a known mesh at a two-ring orbit, as a run's ``views/``."""

from __future__ import annotations

import trimesh

from portrait3d import cameras
from portrait3d.render import MeshRenderer
from portrait3d.run import Run, atomic_save_image


def write_views(run: Run, mesh: trimesh.Trimesh, size: int = 128) -> None:
    """Render ``mesh`` (RGBA) at 16 cameras (8 yaws, pitch -25 and 25) into ``run/views/`` with their labels."""
    renderer = MeshRenderer(mesh)
    named = {}
    for i, cam in enumerate(cameras.orbit(8, pitches=[-25.0, 25.0])):
        name = f"{cameras.view_name(i)}.png"
        atomic_save_image(run.path("views", name), renderer.render_rgba(cam, size))
        named[name] = cam
    cameras.write_labels(run.path("views", "cameras.json"), named)
