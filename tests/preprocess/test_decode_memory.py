"""The photo decoder's peak memory is bounded (issue #21, item 3): a 9990x9990 RGBA PNG under 2 GB."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image

SIDE = 9990  # 99.8 megapixels: under the 100-megapixel limit, as the probe's photo
LIMIT_MB = 2048


def test_large_rgba_png_decodes_in_bounded_memory(tmp_path):
    # A few hundred KB on disk: transparent corners around an opaque disc, so the alpha path runs.
    alpha = np.zeros((SIDE, SIDE), np.uint8)
    alpha[SIDE // 4 : 3 * SIDE // 4, SIDE // 4 : 3 * SIDE // 4] = 255
    rgba = np.zeros((SIDE, SIDE, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, alpha
    path = tmp_path / "huge.png"
    Image.fromarray(rgba, "RGBA").save(path, compress_level=1)
    del rgba, alpha
    code = textwrap.dedent(
        f"""
        import resource
        from portrait3d.preprocess.decode import read_photo
        photo = read_photo({str(path)!r})
        assert photo.rgb.shape == ({SIDE}, {SIDE}, 3) and photo.alpha is not None
        assert tuple(photo.rgb[0, 0]) == (255, 255, 255) and tuple(photo.rgb[{SIDE} // 2, {SIDE} // 2]) == (200, 0, 0)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    peak_mb = int(result.stdout.strip().splitlines()[-1])
    assert peak_mb < LIMIT_MB, f"decoding took {peak_mb} MB at peak"
