"""``portrait3d export-mesh`` and ``portrait3d render-turntable``: the asset from a fitted NeRF."""

from __future__ import annotations

import argparse

from portrait3d.commands import add_stage_flags, open_existing, preset_of


def register_mesh_commands(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``export-mesh`` and ``render-turntable`` subcommands."""
    p = subparsers.add_parser(
        "export-mesh",
        parents=[common],
        help="textured head mesh (GLB, OBJ, PLY) from the fitted NeRF",
        description="Extract the head surface from the NeRF (depth maps at the views' cameras fused into a "
        "truncated signed distance grid, then marching cubes), keep the largest part, "
        "close small holes, smooth, decimate, unwrap UVs and bake a texture. Writes RUN/mesh/head.glb "
        "(glTF 2.0, +Y up, facing +Z, metres), head.obj + head.mtl + head_texture.png and head.ply. "
        "Options not given come from the preset (the run's own by default).",
    )
    p.add_argument("run", metavar="RUN", help="run folder with nerf/ (from fit-nerf) and views/")
    p.add_argument("--triangles", type=int, default=None, help="triangle budget (fast preset: 50000)")
    p.add_argument("--texture", type=int, default=None, help="texture size in pixels (fast preset: 2048)")
    p.add_argument("--resolution", type=int, default=None, help="marching-cubes cells per axis (fast preset: 192)")
    p.add_argument(
        "--surface",
        choices=("depth", "density"),
        default=None,
        help="depth: fuse depth maps of the NeRF rendered at the views' cameras (default; ignores what the "
        "views never saw, such as the inside of the head); density: iso-surface of the density",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="with --surface density: density iso-level (default: the level whose silhouettes match the views)",
    )
    p.add_argument(
        "--texture-source",
        choices=("views", "field"),
        default=None,
        help="views: project the run's views (default); field: query the NeRF's colour",
    )
    p.add_argument(
        "--scale", type=float, default=None, help="metres per PanoHead world unit in the files (default: 0.4)"
    )
    add_stage_flags(p, preset=True)
    p.set_defaults(func=run_export_mesh)

    p = subparsers.add_parser(
        "render-turntable",
        parents=[common],
        help="video of the textured mesh turning around (RUN/turntable.mp4)",
        description="Render RUN/mesh/head.glb from a full circle of cameras into RUN/turntable.mp4 "
        "(RUN/turntable.gif where no video encoder is installed). Options not given come from the preset.",
    )
    p.add_argument("run", metavar="RUN", help="run folder with mesh/head.glb (from export-mesh)")
    p.add_argument("--frames", type=int, default=None, help="frames per revolution (fast preset: 72)")
    p.add_argument("--size", type=int, default=None, help="frame size in pixels (fast preset: 512)")
    p.add_argument("--pitch", type=float, default=None, help="camera elevation in degrees (default: 10)")
    p.add_argument("--fps", type=int, default=None, help="frames per second (default: 24)")
    add_stage_flags(p, preset=True)
    p.set_defaults(func=run_render_turntable)


def _replace(config, **overrides):
    import dataclasses

    return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})


def run_export_mesh(args: argparse.Namespace) -> None:
    """Handler of ``export-mesh``."""
    from portrait3d.stages import mesh_stage, run_stage

    run = open_existing(args)
    preset = preset_of(args, args.run).export
    mesh = _replace(
        preset.mesh,
        triangles=args.triangles,
        resolution=args.resolution,
        surface=args.surface,
        threshold=args.threshold,
    )
    config = _replace(
        preset,
        mesh=mesh,
        bake=_replace(preset.bake, texture_size=args.texture),
        texture_source=args.texture_source,
        metres_per_unit=args.scale,
    )
    run_stage(run, mesh_stage(config), force=args.force, wait=args.wait)


def run_render_turntable(args: argparse.Namespace) -> None:
    """Handler of ``render-turntable``."""
    from portrait3d.stages import run_stage, turntable_stage

    run = open_existing(args)
    config = _replace(
        preset_of(args, args.run).turntable, frames=args.frames, size=args.size, pitch=args.pitch, fps=args.fps
    )
    run_stage(run, turntable_stage(config), force=args.force, wait=args.wait)
