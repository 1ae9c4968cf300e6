"""``portrait3d preprocess``: crop the photo, estimate the camera, segment the head."""

from __future__ import annotations

import argparse

from portrait3d.commands import add_stage_flags


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "preprocess",
        parents=[common],
        help="crop a portrait photo, estimate its camera and mask the head",
        description="Detect the face in PHOTO and write RUN/input/aligned.png (512x512, PanoHead framing), "
        "RUN/input/mask.png and RUN/input/camera.json (PanoHead label, yaw/pitch/roll, landmarks). "
        "For faces the detector misses (animals, cartoons) give --centred-crop with --yaw and --pitch.",
    )
    p.add_argument("photo", metavar="PHOTO", help="JPEG, PNG, WebP, BMP or TIFF portrait")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder (created if missing)")
    p.add_argument("--yaw", type=float, default=None, help="camera yaw in degrees, instead of the estimate")
    p.add_argument("--pitch", type=float, default=None, help="camera pitch in degrees, instead of the estimate")
    p.add_argument(
        "--centred-crop",
        action="store_true",
        help="no face detection: crop the largest centred square (camera from --yaw/--pitch, default 0)",
    )
    add_stage_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from portrait3d import limits, progress
    from portrait3d.preprocess import PreprocessOptions, preprocess

    if args.yaw is not None:
        limits.number("--yaw", args.yaw, *limits.YAW_RANGE, " degrees")
    if args.pitch is not None:
        limits.number("--pitch", args.pitch, *limits.PITCH_RANGE, " degrees")
    options = PreprocessOptions(yaw=args.yaw, pitch=args.pitch, centred_crop=args.centred_crop)
    info = preprocess(args.photo, args.out, options, force=args.force, wait=args.wait)
    progress.info(
        f"camera: yaw {info['yaw']:.1f}, pitch {info['pitch']:.1f}, roll {info['roll']:.1f} degrees"
        f"{' (manual)' if info['manual'] else ''}; wrote {args.out}/input/"
    )
