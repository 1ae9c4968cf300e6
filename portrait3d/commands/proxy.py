"""``portrait3d proxy``: fit and texture the template head, render it at the orbit cameras."""

from __future__ import annotations

import argparse

from portrait3d import cameras
from portrait3d.commands import add_stage_flags, open_existing, preset_of, run_default


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "proxy",
        parents=[common],
        help="build the proxy head of a run and render its orbit views and condition images",
        description="Fit the template head to the landmarks of RUN/input/, texture it from the aligned photo "
        "and render it at N orbit cameras: RUN/proxy/views/ (textured RGBA), RUN/proxy/conditions/ "
        "(untextured shaded), RUN/proxy/cameras.json and RUN/proxy/head.ply. For the proxy generator it "
        "also writes RUN/views/ (the proxy renders are the run's views), so that `portrait3d dataset RUN` "
        "comes next. Options not given come from the preset (the run's own by default).",
    )
    p.add_argument("run", metavar="RUN", help="run folder written by `portrait3d preprocess`")
    p.add_argument(
        "--views", type=int, default=None, help=f"orbit cameras (default: the run's, else {cameras.RELEASE_NUM_VIEWS})"
    )
    p.add_argument("--size", type=int, default=None, help="render width and height in pixels (fast preset: 512)")
    p.add_argument("--pitch", type=float, default=0.0, help="elevation of the orbit in degrees (default: 0)")
    p.add_argument(
        "--supersample", type=int, default=1, help="rays per pixel along each axis; 2 smooths outlines (default: 1)"
    )
    p.add_argument(
        "--no-fit", action="store_true", help="keep the template's average face instead of fitting the landmarks"
    )
    add_stage_flags(p, preset=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import dataclasses

    from portrait3d import progress
    from portrait3d.proxy.stage import check_options, stage, views_stage
    from portrait3d.runner import run_settings, run_stage

    preset = preset_of(args, args.run).proxy
    options = dataclasses.replace(
        preset,
        views=int(run_default(args, args.run, "views", cameras.RELEASE_NUM_VIEWS)),
        size=args.size if args.size is not None else preset.size,
        pitch=args.pitch,
        supersample=args.supersample,
        fit_landmarks=not args.no_fit,
    )
    check_options(options)
    run_folder = open_existing(args)
    with run_folder.lock(args.wait):
        info = run_stage(run_folder, stage(options), force=args.force)
        if not info.get("skipped"):
            progress.info(f"wrote {info['views']} views to {run_folder.path('proxy')}")
        # The proxy generator's views are the proxy renders; a diffusion run makes its own (orbit-views).
        if run_settings(args.run).get("generator", "proxy") == "proxy":
            run_stage(run_folder, views_stage(), force=args.force)
