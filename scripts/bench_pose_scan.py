"""Benchmark of the camera's yaw estimate on a real head scan photographed at known turns.

The scan (metres, +Y up, facing +Z; ``--turn`` first turns it so its face looks at the camera, as in
``bench_scan.py``) is turned by each of ``--angles`` degrees and rendered as a photo
(:func:`portrait3d.proxy.scan_eval.scan_photo`); the face is detected and read as preprocess reads it. Printed per
angle: the first (mirror-symmetric) reading of the face mesh's yaw, the final estimate
(:func:`portrait3d.preprocess.pose.estimate`, which corrects the first with a reading of a frontalised copy), and
the error of each against the known turn, after removing the reading of the unturned photo (the scan's own pose);
negative: the face is read as turned further than it is.
The estimator was calibrated on heads built from the face mesh's own depth; on real heads the first reading is the
nearer one up to about 45 degrees (``docs/BENCHMARKS.md``).

    python scripts/bench_pose_scan.py data/scans/lee_perry_smith.glb
    python scripts/bench_pose_scan.py ../shared/eval/scan/BustManWreath_ao_textured.glb --turn 35
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_scan import load_scan  # noqa: E402


def readings(image: np.ndarray) -> tuple[float, float] | None:
    """(first reading's yaw, final estimate's yaw) in degrees for a photo, or None when no face is found."""
    from portrait3d.preprocess import alignment, models, pose

    faces = models.detect_faces(image)
    if not faces:
        return None
    face = pose.symmetric_detection(image, faces[0])
    first = alignment.head_rotation(pose.symmetric_landmarks(image, face))
    first_yaw = alignment.camera_from_rotation(first).angles(target=(0.0, 0.0, 0.0)).yaw
    final = pose.estimate(image, models.face_landmarks(image, faces[0]).points, face=face)
    return float(first_yaw), float(final.camera.angles(target=(0.0, 0.0, 0.0)).yaw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scan", type=Path, help="textured head scan (GLB/OBJ/PLY; metres, +Y up, facing +Z)")
    parser.add_argument("--turn", type=float, default=0.0, help="degrees to turn the scan so its face looks at +Z")
    parser.add_argument("--angles", type=float, nargs="+", default=[0.0, 15.0, 30.0, 45.0, 55.0, 60.0])
    parser.add_argument("--head-height", type=float, default=0.28, help="metres from the top that hold the head")
    args = parser.parse_args()
    if not args.scan.is_file():
        raise SystemExit(f"error: {args.scan} is not a file")

    from portrait3d.proxy.scan_eval import head_centre, scan_photo, turn

    base = load_scan(args.scan, args.turn)
    zero = readings(scan_photo(base, head_centre(base, args.head_height)).image)
    if zero is None:
        raise SystemExit("error: no face found in the unturned photo of the scan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"unturned photo reads: first {zero[0]:+.1f}, final {zero[1]:+.1f} degrees (removed below)")
    print("| turn | first reading | final estimate | first's error | final's error |")
    print("| --- | --- | --- | --- | --- |")
    for angle in args.angles:
        scan = turn(base, angle)
        found = readings(scan_photo(scan, head_centre(scan, args.head_height)).image)
        if found is None:
            print(f"| {angle:.0f} | no face found | | | |")
            continue
        # Turning the scan by +angle turns the face toward +x: the camera reads a yaw of -angle.
        errors = [found[k] - zero[k] + angle for k in (0, 1)]
        print(f"| {angle:.0f} | {found[0]:+.1f} | {found[1]:+.1f} | {errors[0]:+.1f} | {errors[1]:+.1f} |")


if __name__ == "__main__":
    main()
