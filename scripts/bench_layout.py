"""Benchmark of the texture layout's overlaps: how much of each view shows colours meant for another surface.

The proxy head's texture is a longitude/latitude map about one centre (:mod:`portrait3d.proxy.layout`): where a
ray from that centre crosses the head's surface more than once (the hair's front edge leaning over a cheek, a
pocket between hair and temple), the inner surface shows the outer one's texels (rings of hair colour at the
temples). For each photo the real preprocess stage runs, then the proxy head; printed, as a markdown table, the
share of the head's pixels at yaw 0 and ±30 degrees (256 px views, the photo's pitch) that share their texels
(:func:`portrait3d.proxy.layout.layered_share`).

    python scripts/bench_layout.py                                  # the sample
    python scripts/bench_layout.py --photos ../shared/eval/photos
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "samples" / "astronaut.jpg"
YAWS = (0.0, -30.0, 30.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, nargs="*", default=[], help="photos or folders")
    args = parser.parse_args()

    from portrait3d import progress
    from portrait3d.batch.plan import collect_photos
    from portrait3d.cameras import PANOHEAD_FOCAL, camera_from_angles
    from portrait3d.errors import UserError
    from portrait3d.preprocess.pipeline import preprocess
    from portrait3d.proxy.head import build_head
    from portrait3d.proxy.layout import layered_share
    from portrait3d.proxy.stage import read_inputs
    from portrait3d.run import Run

    progress.set_verbosity(progress.QUIET)
    photos = collect_photos(args.photos) if args.photos else [SAMPLE]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores")
    print("| photo | yaw 0 | yaw -30 | yaw +30 |")
    print("| --- | --- | --- | --- |")
    shares = []
    with tempfile.TemporaryDirectory() as tmp:
        for photo in photos:
            run_dir = Path(tmp) / f"run_{photo.stem}"
            try:
                preprocess(photo, run_dir)
            except UserError as exc:
                print(f"| {photo.name} | refused: {str(exc).splitlines()[0]} | | |", flush=True)
                continue
            inputs = read_inputs(Run(run_dir, create=False))
            head = build_head(inputs.photo, inputs.camera, inputs.mask, inputs.landmarks)
            pitch = inputs.camera.angles(target=(0.0, 0.0, 0.0)).pitch
            views = [camera_from_angles(yaw, pitch, target=(0.0, 0.0, 0.0), focal=PANOHEAD_FOCAL) for yaw in YAWS]
            row = [layered_share(head.geometry, view) for view in views]
            shares += row
            print(f"| {photo.name} | {' | '.join(f'{100 * s:.2f} %' for s in row)} |", flush=True)
    if shares:
        print(f"mean {100 * sum(shares) / len(shares):.2f} % of the head's pixels over {len(shares)} views")


if __name__ == "__main__":
    main()
