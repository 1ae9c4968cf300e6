"""``portrait3d proxy``: fit and texture the template head, render it at the orbit cameras."""

from __future__ import annotations

import argparse

from portrait3d import cameras


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "proxy",
        parents=[common],
        help="build the proxy head of a run and render its orbit views and condition images",
        description="Fit the template head to the landmarks of RUN/input/, texture it from the aligned photo "
        "and render it at N orbit cameras: RUN/proxy/views/ (textured RGBA), RUN/proxy/conditions/ "
        "(untextured shaded), RUN/proxy/cameras.json and RUN/proxy/head.ply.",
    )
    p.add_argument("run", metavar="RUN", help="run folder written by `portrait3d preprocess`")
    p.add_argument("--views", type=int, default=cameras.RELEASE_NUM_VIEWS, help="orbit cameras (default: 32)")
    p.add_argument("--size", type=int, default=512, help="render width and height in pixels (default: 512)")
    p.add_argument("--pitch", type=float, default=0.0, help="elevation of the orbit in degrees (default: 0)")
    p.add_argument(
        "--supersample", type=int, default=1, help="rays per pixel along each axis; 2 smooths outlines (default: 1)"
    )
    p.add_argument(
        "--no-fit", action="store_true", help="keep the template's average face instead of fitting the landmarks"
    )
    p.add_argument("--force", action="store_true", help="run again even if the outputs are up to date")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from portrait3d import progress
    from portrait3d.proxy.stage import INPUTS, OUTPUTS, STAGE, ProxyOptions, build_proxy, check_options
    from portrait3d.run import Run, execute

    options = ProxyOptions(
        views=args.views,
        size=args.size,
        pitch=args.pitch,
        supersample=args.supersample,
        fit_landmarks=not args.no_fit,
    )
    check_options(options)
    run_folder = Run(args.run, create=False)
    run_folder.require(
        "input/aligned.png", "input/camera.json", hint="run `portrait3d preprocess PHOTO --out RUN` first"
    )
    run_folder.clean_temporaries()
    info = execute(run_folder, STAGE, build_proxy, options, INPUTS, OUTPUTS, force=args.force)
    if not info.get("skipped"):
        progress.info(f"wrote {info['views']} views to {run_folder.path('proxy')}")
