"""``portrait3d export-mesh`` and ``portrait3d render-turntable``: the asset from a fitted NeRF."""

from __future__ import annotations

import argparse

from nerf.targets import TARGETS


def register_mesh_commands(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``export-mesh`` and ``render-turntable`` subcommands."""
    p = subparsers.add_parser(
        "export-mesh",
        parents=[common],
        help="textured head mesh (GLB, OBJ, PLY) from the fitted NeRF",
        description="Extract the head surface from the NeRF (depth maps at the views' cameras fused into a "
        "truncated signed distance grid, then marching cubes), keep the largest part, "
        "close small holes, smooth, decimate, unwrap UVs and bake a texture. Writes RUN/mesh/head.glb "
        "(glTF 2.0, +Y up, facing +Z, metres), head.obj + head.mtl + head_texture.png and head.ply.",
    )
    p.add_argument("run", metavar="RUN", help="run folder with nerf/ (from fit-nerf) and views/")
    p.add_argument(
        "--target",
        choices=tuple(TARGETS),
        default="generic",
        help="where the asset goes; picks the triangle budget, texture size, LODs and formats "
        "(see the README's table of targets; default: generic, one LOD, GLB + OBJ + PLY)",
    )
    p.add_argument("--triangles", type=int, default=None, help="triangle budget of LOD 0 (default: the target's)")
    p.add_argument(
        "--texture",
        type=int,
        default=None,
        help="texture size in pixels: 1024, 2048, 4096, ... (default: the target's)",
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
    p.add_argument("--resolution", type=int, default=192, help="marching-cubes cells per axis (default: 192)")
    p.add_argument(
        "--surface",
        choices=("depth", "density"),
        default="depth",
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
        default="views",
        help="views: project the run's views (default); field: query the NeRF's colour",
    )
    p.add_argument(
        "--scale", type=float, default=None, help="metres per PanoHead world unit in the files (default: 0.4)"
    )
    p.add_argument("--force", action="store_true", help="run even if the stage is up to date")
    p.set_defaults(func=run_export_mesh)

    p = subparsers.add_parser(
        "render-turntable",
        parents=[common],
        help="video of the textured mesh turning around (RUN/turntable.mp4)",
        description="Render RUN/mesh/head.glb from a full circle of cameras into RUN/turntable.mp4 "
        "(RUN/turntable.gif where no video encoder is installed).",
    )
    p.add_argument("run", metavar="RUN", help="run folder with mesh/head.glb (from export-mesh)")
    p.add_argument("--frames", type=int, default=72, help="frames per revolution (default: 72)")
    p.add_argument("--size", type=int, default=512, help="frame size in pixels (default: 512)")
    p.add_argument("--pitch", type=float, default=10.0, help="camera elevation in degrees (default: 10)")
    p.add_argument("--fps", type=int, default=24, help="frames per second (default: 24)")
    p.add_argument("--force", action="store_true", help="run even if the stage is up to date")
    p.set_defaults(func=run_render_turntable)


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated fractions such as 1.0,0.5,0.25, got {text!r}") from None


def run_export_mesh(args: argparse.Namespace) -> None:
    """Handler of ``export-mesh``."""
    from nerf.export import METRES_PER_UNIT, ExportConfig, export_mesh
    from nerf.mesh import BakeConfig, MeshConfig
    from portrait3d.run import Run

    target = TARGETS[args.target]
    run = Run(args.run, create=False)
    triangles = target.triangles if args.triangles is None else args.triangles
    mesh = MeshConfig(triangles=triangles, resolution=args.resolution, surface=args.surface)
    if args.threshold is not None:
        mesh.threshold = args.threshold
    config = ExportConfig(
        mesh=mesh,
        bake=BakeConfig(texture_size=target.texture_size if args.texture is None else args.texture),
        texture_source=args.texture_source,
        metres_per_unit=METRES_PER_UNIT if args.scale is None else args.scale,
        target=args.target,
        lods=args.lods,
        formats=args.formats,
        normal_map=args.normal_map,
    )
    export_mesh(run, config, force=args.force)


def run_render_turntable(args: argparse.Namespace) -> None:
    """Handler of ``render-turntable``."""
    from nerf.turntable import TurntableConfig, render_turntable
    from portrait3d.run import Run

    run = Run(args.run, create=False)
    config = TurntableConfig(frames=args.frames, size=args.size, pitch=args.pitch, fps=args.fps)
    render_turntable(run, config, force=args.force)
