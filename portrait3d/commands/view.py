"""``portrait3d view``: nerfstudio's viewer on a run's NeRF (works beside a CPU build of torch)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "view",
        parents=[common],
        help="open the run's NeRF in nerfstudio's viewer (prints the URL)",
        description="Serve nerfstudio's viewer on the run's fitted NeRF, as `ns-viewer --load-config` does, on any "
        "install (a CPU build of torch included). The configuration is rebuilt from RUN/nerf/volume.json and the "
        "checkpoint where the run is now (RUN/nerf/config.yml is never read: no file of a run can run code). "
        "Stop it with Ctrl-C.",
    )
    p.add_argument("run", help="run folder with a fitted NeRF (RUN/nerf/)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7007, help="port (default: 7007)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from portrait3d import limits
    from portrait3d.viewer import view

    limits.port(args.port)
    try:
        view(args.run, args.host, args.port)
    except KeyboardInterrupt:
        return 0
    return 0
