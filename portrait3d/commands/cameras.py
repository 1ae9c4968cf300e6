"""``portrait3d cameras``: write an orbit of PanoHead cameras."""

from __future__ import annotations

import argparse
import math

from portrait3d import cameras, limits, progress
from portrait3d.errors import UserError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "cameras",
        parents=[common],
        help="write an orbit of cameras as PanoHead labels",
        description="Write N cameras evenly spaced in yaw (view 0 frontal, view N/2 the back) "
        "as a PanoHead dataset.json label file.",
    )
    p.add_argument("--views", type=int, default=cameras.RELEASE_NUM_VIEWS, help="views per ring (default: 32)")
    p.add_argument(
        "--pitch", type=float, nargs="+", default=[0.0], help="pitch of each ring in degrees (default: one ring at 0)"
    )
    p.add_argument("--radius", type=float, default=cameras.PANOHEAD_RADIUS, help="camera distance (default: 2.7)")
    p.add_argument("--focal", type=float, default=cameras.PANOHEAD_FOCAL, help="normalised focal (default: 4.2647)")
    p.add_argument("--out", required=True, help="output .json file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    limits.integer("--views", args.views, 1, limits.MAX_CAMERAS)
    for pitch in args.pitch:
        limits.number("--pitch", pitch, *limits.PITCH_RANGE, " degrees")
    limits.integer("rings (--pitch values)", len(args.pitch), 1, 64)
    if not (math.isfinite(args.radius) and math.isfinite(args.focal) and args.radius > 0 and args.focal > 0):
        raise UserError("--radius and --focal must be positive finite numbers")
    cams = cameras.orbit(args.views, radius=args.radius, focal=args.focal, pitches=args.pitch)
    named = {f"{cameras.view_name(i)}.png": cam for i, cam in enumerate(cams)}
    cameras.write_labels(args.out, named)
    progress.info(f"wrote {len(named)} cameras to {args.out}")
