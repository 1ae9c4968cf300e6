"""The CLI runner and sample photo that tests import by name (``conftest`` modules cannot be
imported reliably: pytest loads several under the same module name)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PHOTO = REPO / "data" / "samples" / "astronaut.jpg"


def machine_env(**extra: str) -> dict:
    """``os.environ`` with the machine's thread count made explicit, for the CLI in a subprocess.

    A fit is bit-reproducible for one number of threads (``nerf.fit.deterministic``); a child otherwise
    takes it from what the test process carries (an ``OMP_NUM_THREADS`` a library set in it, its CPU
    affinity), and a re-fit compared byte for byte with the session's run can then differ."""
    threads = str(os.cpu_count() or 1)
    return {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, **extra}


def run_cli(*args: str, cwd: str | Path | None = None, timeout: float = 600, env: dict | None = None):
    """Run the installed ``portrait3d`` console script as a subprocess."""
    exe = Path(sys.executable).parent / "portrait3d"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "portrait3d"]
    full_env = {**machine_env(HF_HUB_OFFLINE="1"), **(env or {})}
    return subprocess.run(
        [*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env, stdin=subprocess.DEVNULL
    )
