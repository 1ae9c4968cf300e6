"""NeRF subcommands: ``dataset``, ``fit-nerf`` (here), ``export-mesh``, ``render-turntable`` (mesh stage)."""

from __future__ import annotations

import argparse

from portrait3d.commands import add_stage_flags, open_existing, preset_of, run_default
from portrait3d.errors import UserError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    _register_dataset(subparsers, common)
    _register_fit(subparsers, common)
    _register_mesh(subparsers, common)


# --- dataset -------------------------------------------------------------------
def _register_dataset(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "dataset",
        parents=[common],
        help="write RUN/transforms.json (nerfstudio format) from RUN/views",
        description="Write the nerfstudio dataset of a run: RUN/transforms.json from RUN/views/NNNN.png (RGBA) "
        "and RUN/views/cameras.json (PanoHead labels). Poses stay in the PanoHead world frame.",
    )
    p.add_argument("run", help="run folder")
    add_stage_flags(p)
    p.set_defaults(func=run_dataset)


def run_dataset(args: argparse.Namespace) -> None:
    from nerf.dataset import TRANSFORMS, stage
    from portrait3d import progress
    from portrait3d.runner import run_stage

    run = open_existing(args)
    info = run_stage(run, stage(), force=args.force, wait=args.wait)
    progress.info(f"dataset: {info.get('frames')} frames -> {run.path(TRANSFORMS)}")


# --- fit-nerf --------------------------------------------------------------------
def _register_fit(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "fit-nerf",
        parents=[common],
        help="fit an instant-NGP NeRF to the run's dataset (writes RUN/nerf/)",
        description="Fit an instant-NGP-style NeRF (hash grid, small MLPs, occupancy-guided sampling) to "
        "RUN/transforms.json. Writes RUN/nerf/config.yml and RUN/nerf/nerfstudio_models/ (loadable with "
        "portrait3d view RUN, or ns-viewer --load-config RUN/nerf/config.yml where torchvision loads) and "
        "RUN/nerf/volume.json.",
    )
    p.add_argument("run", help="run folder (with transforms.json: run `portrait3d dataset RUN` first)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"], help="where to train (default: auto)")
    p.add_argument("--iterations", type=int, default=None, help="override the preset's optimisation steps")
    p.add_argument("--image-size", type=int, default=None, help="override the preset's training image size (pixels)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the run's own, else 0)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="stop after this many seconds of training (off by default: a time budget makes the result "
        "depend on the machine's load)",
    )
    p.add_argument(
        "--cold-start",
        action="store_true",
        help="start from empty space, not from the proxy head (for views that do not follow RUN/proxy/head.ply)",
    )
    p.add_argument(
        "--view-shift",
        action="store_true",
        help="learn a shift of a few pixels per view (for generated views that are not pixel-aligned)",
    )
    add_stage_flags(p, preset=True)
    p.set_defaults(func=run_fit)


def run_fit(args: argparse.Namespace) -> None:
    import dataclasses
    import math

    from nerf.fit import stage
    from portrait3d import progress
    from portrait3d.runner import run_stage

    run = open_existing(args)
    from portrait3d import limits

    seed = limits.seed(run_default(args, args.run, "seed", 0))
    # A run whose views the diffusion generator made gets the fit for generated views (FitConfig.for_views).
    generated = run_default(args, args.run, "generator", "proxy") == "diffusion"
    config = dataclasses.replace(preset_of(args, args.run).fit.for_views(generated), seed=seed)
    if args.iterations is not None:
        if args.iterations < 1:
            raise UserError(f"--iterations must be at least 1, got {args.iterations}")
        config.iterations = args.iterations
    if args.image_size is not None:
        if not 16 <= args.image_size <= 4096:
            raise UserError(f"--image-size must be between 16 and 4096, got {args.image_size}")
        config.image_size = args.image_size
    if args.max_seconds is not None:
        if not (math.isfinite(args.max_seconds) and args.max_seconds > 0):
            raise UserError(f"--max-seconds must be a positive number of seconds, got {args.max_seconds}")
        config.max_seconds = args.max_seconds
    if args.cold_start:
        config.warm_start = dataclasses.replace(config.warm_start, enabled=False)
    if args.view_shift:
        config.view_shift = True
    info = run_stage(run, stage(config, args.device), force=args.force, wait=args.wait)
    progress.info(
        f"fit-nerf: {info.get('iterations')} steps on {info.get('device')} in {info.get('train_seconds')} s, "
        f"train PSNR {info.get('train_psnr')} dB -> {run.path('nerf')}"
    )


# --- export-mesh, render-turntable (mesh stage: portrait3d/commands/mesh_commands.py) ---------
def _register_mesh(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from portrait3d.commands.mesh_commands import register_mesh_commands

    register_mesh_commands(subparsers, common)
