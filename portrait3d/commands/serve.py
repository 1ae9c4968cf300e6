"""``portrait3d serve``: the local web app (Gradio) that runs make-asset from a browser."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from portrait3d.make_asset import WEIGHTS_ENV

    p = subparsers.add_parser(
        "serve",
        parents=[common],
        help="a local web app: drop a photo, watch the stages, look at and download the 3D head",
        description="Serve a Gradio web app that runs make-asset on an uploaded photo. Each job is a run folder "
        "under --runs (nothing is written outside it, Gradio's uploads included); jobs are queued one at a time; "
        "a restarted server lists and resumes earlier runs.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--runs", default="runs", help="folder of the run folders (default: runs)")
    p.add_argument(
        "--preset", choices=["fast", "standard", "tiny"], default="fast", help="preset offered first (default: fast)"
    )
    p.add_argument("--weights", help=f"converted weights: offers the diffusion generator (default: ${WEIGHTS_ENV})")
    p.add_argument("--max-file-size", type=float, default=20.0, help="largest upload in MB (default: 20)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from portrait3d import limits
    from portrait3d.serve import MAX_UPLOAD_MB, ServeOptions, serve
    from portrait3d.viewer import check_port_free

    limits.port(args.port)
    limits.number("--max-file-size", args.max_file_size, 0.001, MAX_UPLOAD_MB, " MB")
    check_port_free(args.host, args.port)
    options = ServeOptions(
        host=args.host,
        port=args.port,
        runs=args.runs,
        preset=args.preset,
        weights=args.weights,
        max_file_size_mb=args.max_file_size,
    )
    try:
        serve(options)
    except KeyboardInterrupt:
        return 0
    return 0
