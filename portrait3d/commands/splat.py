"""``portrait3d export-splat``: the head as 3D Gaussians (PLY, SPZ, glTF) from a finished mesh export."""

from __future__ import annotations

import argparse

from portrait3d.commands import add_stage_flags, open_existing, preset_of


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``export-splat`` subcommand."""
    from portrait3d.splat.stage import TARGETS

    p = subparsers.add_parser(
        "export-splat",
        parents=[common],
        help="real-time splats: the head as 3D Gaussians (RUN/splat/head.ply, .spz, .glb)",
        description="Seed 3D Gaussians on RUN/mesh/head.glb, fit them to the run's views (and to the NeRF's "
        "renders above and below them), and write RUN/splat/head.ply (3DGS layout), head.spz (Niantic SPZ) and "
        "head.glb (glTF KHR_gaussian_splatting), in the mesh's frame (metres, +Y up, origin at the neck). "
        "Options not given come from the preset (the run's own by default).",
    )
    p.add_argument("run", metavar="RUN", help="run folder with mesh/head.glb (from export-mesh), nerf/ and views/")
    p.add_argument("--target", choices=tuple(TARGETS), default=None, help="budget: generic (none) or web")
    p.add_argument("--gaussians", type=int, default=None, help="Gaussians seeded (fast preset: 12000)")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (fast preset: 150)")
    p.add_argument("--resolution", type=int, default=None, help="side of the pictures fitted, pixels")
    p.add_argument("--sh-degree", type=int, default=None, help="spherical-harmonic degree fitted (0..3)")
    p.add_argument("--ply-sh-degree", type=int, default=None, help="degree of head.ply, zero-padded (default 3)")
    p.add_argument("--device", default=None, help="auto, cpu or cuda")
    add_stage_flags(p, preset=True)
    p.set_defaults(func=run_export_splat)


def run_export_splat(args: argparse.Namespace) -> None:
    """Handler of ``export-splat``."""
    import dataclasses

    from portrait3d.runner import run_stage
    from portrait3d.splat import stage

    def given(**values):
        return {k: v for k, v in values.items() if v is not None}

    run = open_existing(args)
    preset = preset_of(args, args.run).splat
    distill = dataclasses.replace(
        preset.distill,
        **given(gaussians=args.gaussians, steps=args.steps, resolution=args.resolution, sh_degree=args.sh_degree),
    )
    options = dataclasses.replace(
        preset, distill=distill, **given(target=args.target, ply_sh_degree=args.ply_sh_degree, device=args.device)
    )
    run_stage(run, stage(options), force=args.force, wait=args.wait)
