"""``portrait3d make-asset``: photo in, GLB out, every stage in one command."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "make-asset",
        parents=[common],
        help="photo -> 360-degree views -> NeRF -> GLB/OBJ/PLY, turntable and report",
        description="Run every stage on one photo. The run folder is the unit of work: rerunning the same "
        "command skips finished stages and resumes an interrupted run.",
    )
    p.add_argument("photo", help="portrait photo (JPEG, PNG, WebP, BMP, TIFF)")
    p.add_argument("--out", required=True, help="run folder (created; an existing run is resumed)")
    add_make_asset_options(p)
    p.set_defaults(func=run)


def add_make_asset_options(p: argparse.ArgumentParser) -> None:
    """Add every option of make-asset except the photo and ``--out`` (a batch command reuses them)."""
    from portrait3d.make_asset import WEIGHTS_ENV

    p.add_argument(
        "--generator",
        choices=["proxy", "diffusion"],
        default="proxy",
        help="views from the template proxy head (no weights, CPU) or from DiffPortrait360 (default: proxy)",
    )
    p.add_argument("--weights", help=f"converted weights folder for --generator diffusion (default: ${WEIGHTS_ENV})")
    p.add_argument("--conditions", help="folder of released condition renders + dataset.json (diffusion generator)")
    p.add_argument("--views", type=int, default=32, help="views on the orbit (default: 32)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="compute device (default: auto)")
    p.add_argument(
        "--preset",
        choices=["fast", "standard", "tiny"],
        default="fast",
        help="stage options (configs/NAME.yaml): fast = CPU default, standard = for a GPU, tiny = smoke tests",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--allow-cpu", action="store_true", help="let the diffusion generator run on a CPU (very slow)")
    p.add_argument("--yaw", type=float, help="manual camera yaw in degrees when no face is detected (with --pitch)")
    p.add_argument("--pitch", type=float, help="manual camera pitch in degrees (with --yaw)")
    p.add_argument("--force", action="store_true", help="redo every stage")
    p.add_argument(
        "--wait", action="store_true", help="wait for another process writing the same --out, instead of failing"
    )
    p.add_argument(
        "--target",
        default=None,
        help="where the asset goes, as export-mesh --target (generic, web, avatar, unity, unreal); "
        "avatar also writes the rigged head RUN/avatar/head.glb (default: the preset's export)",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="time budget of the NeRF fit in seconds (off by default: the preset fixes the number of steps, "
        "so one seed gives one asset; a budget makes the result depend on the machine's load)",
    )


def make_asset_options(args: argparse.Namespace):
    """The :class:`portrait3d.make_asset.MakeAssetOptions` of parsed make-asset arguments."""
    from portrait3d.make_asset import WEIGHTS_ENV, MakeAssetOptions

    options = MakeAssetOptions(
        generator=args.generator,
        weights=args.weights or os.environ.get(WEIGHTS_ENV),
        conditions=args.conditions,
        views=args.views,
        device=args.device,
        preset=args.preset,
        seed=args.seed,
        allow_cpu=args.allow_cpu,
        yaw=args.yaw,
        pitch=args.pitch,
        force=args.force,
        wait=args.wait,
        max_seconds=args.max_seconds,
        target=args.target,
    )
    options.validate()  # one-line errors for bad combinations before anything runs (make_asset checks again)
    return options


def run(args: argparse.Namespace) -> None:
    from portrait3d.make_asset import make_asset

    make_asset(args.photo, args.out, make_asset_options(args))
