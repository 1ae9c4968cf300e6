"""``portrait3d export-mesh`` and ``portrait3d render-turntable``: the asset from a fitted NeRF."""

from __future__ import annotations

import argparse

from nerf.targets import TARGETS, get_target
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
    p.add_argument(
        "--target",
        default=None,
        help=f"where the asset goes ({', '.join(TARGETS)}); picks the triangle budget, texture size, LODs and "
        "formats (see the README's table of targets; default: generic with the preset's budget, one LOD, "
        "GLB + OBJ + PLY); avatar also rigs the head into RUN/avatar/ (blendshapes, visemes, bones)",
    )
    p.add_argument(
        "--triangles",
        type=int,
        default=None,
        help="triangle budget of LOD 0 (default: the --target's, else the preset's: fast 50000)",
    )
    p.add_argument(
        "--texture",
        type=int,
        default=None,
        help="texture size in pixels: 1024, 2048, 4096, ... (default: the --target's, else the preset's: fast 2048)",
    )
    p.add_argument(
        "--lods",
        type=_fractions,
        default=None,
        help="LOD triangle counts as fractions of LOD 0, e.g. 1.0,0.5,0.25 (LOD i>0: mesh/head_lod{i}.glb; "
        "default: the target's)",
    )
    p.add_argument(
        "--formats",
        type=lambda text: tuple(f.strip().lower() for f in text.split(",") if f.strip()),
        default=None,
        help="files to write, from glb,obj,ply,fbx (fbx needs the blender extra; default: the target's)",
    )
    p.add_argument(
        "--normal-map",
        action="store_true",
        help="bake a normal map of the full-resolution surface onto each LOD",
    )
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


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated fractions such as 1.0,0.5,0.25, got {text!r}") from None


def run_export_mesh(args: argparse.Namespace) -> None:
    """Handler of ``export-mesh``."""
    from nerf.export import stage
    from portrait3d.runner import run_stage

    run = open_existing(args)
    preset = preset_of(args, args.run).export
    # A named target sets the budgets; without one the preset's apply (generic limits).
    target = get_target(args.target) if args.target else None
    triangles = args.triangles if args.triangles is not None or target is None else target.triangles
    texture = args.texture if args.texture is not None or target is None else target.texture_size
    mesh = _replace(
        preset.mesh,
        triangles=triangles,
        resolution=args.resolution,
        surface=args.surface,
        threshold=args.threshold,
    )
    config = _replace(
        preset,
        mesh=mesh,
        bake=_replace(preset.bake, texture_size=texture),
        texture_source=args.texture_source,
        metres_per_unit=args.scale,
        target=args.target,
        lods=args.lods,
        formats=args.formats,
        normal_map=args.normal_map or None,
    )
    if args.target == "avatar":
        _export_avatar(run, config, args)
        return
    run_stage(run, stage(config), force=args.force, wait=args.wait)


def _export_avatar(run, config, args: argparse.Namespace) -> None:
    """The avatar target: the static head (GLB LODs), then the ``rig`` stage writes the rigged files
    into ``RUN/avatar/`` (FBX there too when asked: the rig's, with shape keys and bones)."""
    import dataclasses

    from nerf.export import resolved, stage
    from portrait3d.rig import RigOptions
    from portrait3d.rig import stage as rig_stage
    from portrait3d.runner import run_stage

    lods, formats = resolved(config)
    config = dataclasses.replace(config, formats=tuple(f for f in formats if f != "fbx"))
    run_stage(run, stage(config), force=args.force, wait=args.wait)
    options = RigOptions(lods=len(lods), fbx="fbx" in formats, max_file_mb=get_target("avatar").max_file_mb)
    run_stage(run, rig_stage(options), force=args.force, wait=args.wait)


def run_render_turntable(args: argparse.Namespace) -> None:
    """Handler of ``render-turntable``."""
    from nerf.turntable import stage
    from portrait3d.runner import run_stage

    run = open_existing(args)
    config = _replace(
        preset_of(args, args.run).turntable, frames=args.frames, size=args.size, pitch=args.pitch, fps=args.fps
    )
    run_stage(run, stage(config), force=args.force, wait=args.wait)
