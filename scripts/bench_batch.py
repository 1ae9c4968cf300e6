"""Throughput of `portrait3d batch`: photos per hour on this machine.

    python scripts/bench_batch.py [--preset tiny] [--photos 4] [--workers 2] [--engine local] [--views 32]

Makes ``--photos`` distinct photos from the bundled sample (mirrored, shifted by a few pixels),
runs one batch from scratch in a child process and prints the wall time, photos per hour and
the per-photo seconds, fit steps and train PSNR. Photos per hour = photos x 3600 / wall seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageChops, ImageOps

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="make-asset preset (default: tiny)")
    parser.add_argument("--views", type=int, default=32, help="orbit views (default: 32)")
    parser.add_argument("--photos", type=int, default=4, help="photos in the batch (default: 4)")
    parser.add_argument("--workers", type=int, default=2, help="photos at a time (default: 2)")
    parser.add_argument("--engine", default="local", choices=["local", "ray"], help="batch engine (default: local)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    sample = Image.open(REPO / "data" / "samples" / "astronaut.jpg").convert("RGB")
    for i in range(args.photos):
        image = ImageChops.offset(ImageOps.mirror(sample) if i % 2 else sample, 2 * (i // 2), 0)
        image.save(root / f"photo{i:02d}.png")
    out = root / "out"
    cmd = [sys.executable, "-m", "portrait3d", "-q", "batch", str(root), "--out", str(out)]
    cmd += ["--preset", args.preset, "--views", str(args.views), "--workers", str(args.workers)]
    cmd += ["--engine", args.engine]
    start = time.perf_counter()
    rc = subprocess.run(cmd).returncode
    wall = time.perf_counter() - start
    summary = json.loads((out / "batch.json").read_text())
    seconds = [row["seconds"] for row in summary["photos"] if row["status"] == "ok"]
    print(
        f"batch --preset {args.preset} --views {args.views} --workers {args.workers} --engine {args.engine}: "
        f"{args.photos} photos in {wall:.1f} s wall on {os.cpu_count()} CPU cores (exit {rc})"
    )
    print(f"  {len(seconds)} ok; per photo {min(seconds, default=0):.1f}-{max(seconds, default=0):.1f} s")
    print(f"  throughput: {len(seconds) * 3600 / wall:.1f} photos per hour")
    # The fast and tiny fits stop at a time budget: photos sharing cores get fewer steps, not more time.
    for row in summary["photos"]:
        if row["status"] == "ok":
            nerf = json.loads((out / row["run"] / "report.json").read_text())["nerf"]
            steps, psnr = nerf["iterations"], nerf["train_psnr"]
            print(f"  {row['run']}: {row['seconds']:.0f} s, fit {steps} steps, train PSNR {psnr} dB")
    print(f"  batch folder: {out}")


if __name__ == "__main__":
    main()
