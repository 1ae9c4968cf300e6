"""NeRF subcommands: ``dataset``, ``fit-nerf`` (here), ``export-mesh``, ``render-turntable`` (mesh stage)."""

from __future__ import annotations

import argparse

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
    p.add_argument("--force", action="store_true", help="rewrite even if up to date")
    p.set_defaults(func=run_dataset)


def run_dataset(args: argparse.Namespace) -> None:
    from nerf.dataset import TRANSFORMS, dataset_stage
    from portrait3d import progress
    from portrait3d.run import Run

    run = Run(args.run, create=False)
    info = dataset_stage(run, force=args.force)
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
    p.add_argument(
        "--preset",
        default="fast",
        choices=["fast", "standard"],
        help="fast: 256px, about 3 minutes on 2 CPU cores; standard: 512px, longer (meant for CUDA)",
    )
    p.add_argument("--iterations", type=int, default=None, help="override the preset's optimisation steps")
    p.add_argument("--image-size", type=int, default=None, help="override the preset's training image size (pixels)")
    p.add_argument("--force", action="store_true", help="fit again even if up to date")
    p.set_defaults(func=run_fit)


def run_fit(args: argparse.Namespace) -> None:
    import dataclasses

    from nerf.fit import PRESETS, fit_stage
    from portrait3d import progress
    from portrait3d.run import Run

    run = Run(args.run, create=False)
    config = dataclasses.replace(PRESETS[args.preset])
    if args.iterations is not None:
        if args.iterations < 1:
            raise UserError(f"--iterations must be at least 1, got {args.iterations}")
        config.iterations = args.iterations
    if args.image_size is not None:
        if not 16 <= args.image_size <= 4096:
            raise UserError(f"--image-size must be between 16 and 4096, got {args.image_size}")
        config.image_size = args.image_size
    info = fit_stage(run, config, args.device, force=args.force)
    progress.info(
        f"fit-nerf: {info.get('iterations')} steps on {info.get('device')} in {info.get('train_seconds')} s, "
        f"train PSNR {info.get('train_psnr')} dB -> {run.path('nerf')}"
    )


# --- export-mesh, render-turntable (mesh stage: portrait3d/commands/mesh_commands.py) ---------
def _register_mesh(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from portrait3d.commands.mesh_commands import register_mesh_commands

    register_mesh_commands(subparsers, common)
