"""``portrait3d batch``: many photos, one run folder each, on this machine or on a Ray cluster."""

from __future__ import annotations

import argparse
import sys

from portrait3d.commands.make_asset import add_make_asset_options, make_asset_options


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "batch",
        parents=[common],
        help="make-asset on many photos: local processes or a Ray cluster, with a summary",
        description="Run make-asset on every photo (files, or folders of photos) into one run folder each "
        "under --out, and keep a summary in OUT/batch.json and OUT/batch.csv. A bad photo fails alone; the "
        "exit status is 1 when any failed. Rerunning the same command skips finished runs and resumes "
        "interrupted ones.",
    )
    p.add_argument("photos", nargs="+", metavar="PHOTO_OR_DIR", help="photo files and folders of photos")
    p.add_argument("--out", required=True, help="batch folder: one run folder per photo, the summary, logs/")
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: processes on this machine; ray: one Ray task per photo (default: local)",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="photos at a time (local default: 1; ray default: as many as the cluster's GPUs or CPUs hold)",
    )
    p.add_argument("--ray-address", help="join this running Ray cluster (default: start a local one on 127.0.0.1)")
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="runs again a photo whose worker process died; it resumes from its run folder (default: 2)",
    )
    p.add_argument(
        "--cpus-per-photo",
        type=int,
        default=1,
        help="CPUs a Ray task reserves when it needs no GPU, and its torch threads (default: 1)",
    )
    add_make_asset_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from portrait3d import progress
    from portrait3d.batch import BatchOptions, run_batch

    batch = BatchOptions(
        engine=args.engine,
        workers=args.workers,
        ray_address=args.ray_address,
        retries=args.retries,
        cpus_per_photo=args.cpus_per_photo,
    )
    summary = run_batch(args.photos, args.out, make_asset_options(args), batch)
    failed = summary["counts"]["failed"] > 0
    if failed or progress.verbosity() >= progress.NORMAL:
        print(summary["final_line"], file=sys.stderr, flush=True)
    return 1 if failed else 0
