"""Time the preprocess stage on the bundled sample photo (prints seconds; no assertions).

Usage: python scripts/bench_preprocess.py [PHOTO] [--repeats N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from portrait3d.preprocess import PreprocessOptions, preprocess

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("photo", nargs="?", default=str(REPO / "data" / "samples" / "astronaut.jpg"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            info = preprocess(args.photo, Path(tmp) / "run", PreprocessOptions())
            times.append(time.perf_counter() - start)
    best = min(times)
    print(f"preprocess {args.photo}: first {times[0]:.2f} s (loads the models), best {best:.2f} s of {len(times)}")
    print(f"camera: yaw {info['yaw']:.1f}, pitch {info['pitch']:.1f}, roll {info['roll']:.1f} degrees")


if __name__ == "__main__":
    main()
