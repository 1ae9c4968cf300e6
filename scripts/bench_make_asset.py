"""Time `portrait3d make-asset` on the bundled sample photo (the README's main command).

    python scripts/bench_make_asset.py [--preset fast] [--views 32] [--out DIR]

Runs the whole pipeline from scratch (``--force``) in a child process and
prints the wall time, each stage's seconds and own peak resident memory from
report.json, the process's peak memory and the quality figures the report holds.
Targets on 2 CPU cores: at most 4 minutes (issue #11), peak memory at most 2 GiB (issue #24).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast", help="make-asset preset (default: fast)")
    parser.add_argument("--views", type=int, default=32, help="orbit views (default: 32)")
    parser.add_argument("--photo", default=str(REPO / "data" / "samples" / "astronaut.jpg"), help="input photo")
    parser.add_argument("--out", help="run folder (default: a temporary folder)")
    args = parser.parse_args()

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-make-asset-")) / "run"
    cmd = [
        sys.executable,
        "-m",
        "portrait3d",
        "-q",
        "make-asset",
        args.photo,
        "--out",
        str(out),
        "--preset",
        args.preset,
        "--views",
        str(args.views),
        "--force",
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    report = json.loads((out / "report.json").read_text())
    print(f"make-asset --preset {args.preset} --views {args.views}: {wall:.1f} s wall ({report['device']})")
    for name, stage in report["stages"].items():
        peak = stage.get("peak_rss_mib")
        print(f"  {name:17s} {stage['seconds']:8.1f} s" + (f"  peak {peak:7.1f} MiB" if peak is not None else ""))
    print(f"peak memory: {report['peak_memory']}")
    print(f"NeRF train PSNR: {report['nerf']['train_psnr']} dB after {report['nerf']['iterations']} steps")
    print(f"mesh: {report['mesh']['triangles']} triangles, texture {report['mesh']['texture_size']} px")
    print(f"run folder: {out}")


if __name__ == "__main__":
    main()
