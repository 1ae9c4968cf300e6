"""Convert the released DiffPortrait360 checkpoints into a local diffusers weights folder.

Same as ``portrait3d convert-weights``::

    python scripts/convert_weights.py --orbit model_state-340000.th --back-view back_head-230000.th --out WEIGHTS
"""

from __future__ import annotations

import sys

from portrait3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert-weights", *sys.argv[1:]]))
