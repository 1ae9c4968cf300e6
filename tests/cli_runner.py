"""The CLI runner and sample photo that tests import by name (``conftest`` modules cannot be
imported reliably: pytest loads several under the same module name)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PHOTO = REPO / "data" / "samples" / "astronaut.jpg"


def run_cli(*args: str, cwd: str | Path | None = None, timeout: float = 600, env: dict | None = None):
    """Run the installed ``portrait3d`` console script as a subprocess."""
    exe = Path(sys.executable).parent / "portrait3d"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "portrait3d"]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env, stdin=subprocess.DEVNULL
    )
