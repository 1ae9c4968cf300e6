"""Peak memory of the photo decoder on a large RGBA PNG (issue #21): prints the decoder's peak RSS.

    python scripts/bench_decode_memory.py [--side 9990]

The PNG (a few MB: an opaque square on transparency) is written to a temporary folder; the decoder
runs in a fresh process, whose peak resident memory (``ru_maxrss``) is the figure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=9990, help="width and height in pixels (default: 9990)")
    args = parser.parse_args()
    side = args.side
    with tempfile.TemporaryDirectory() as tmp:
        rgba = np.zeros((side, side, 4), np.uint8)
        rgba[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = (200, 120, 90, 255)
        path = Path(tmp) / "large.png"
        Image.fromarray(rgba, "RGBA").save(path, compress_level=1)
        del rgba
        code = (
            "import resource, sys\n"
            "from portrait3d.preprocess.decode import read_photo\n"
            "read_photo(sys.argv[1])\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True, cwd=REPO
        )
        peak = int(out.stdout.split()[-1])
        print(f"{side}x{side} RGBA PNG ({path.stat().st_size / 1e6:.1f} MB on disk): decoder peak RSS {peak} MB")


if __name__ == "__main__":
    main()
