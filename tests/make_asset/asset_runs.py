"""Helpers of the make-asset tests: the tiny make-asset command and comparisons of run folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cli_runner import machine_env

VIEWS = 8
# Files that hold the run's absolute path or its timings; every other file is the same for one seed.
RUN_SPECIFIC = {"nerf/config.yml", "report.json"}


def make_asset_command(out: Path, photo: Path, *extra: str) -> list[str]:
    """``portrait3d make-asset PHOTO --out OUT --views 8 --preset tiny EXTRA...``."""
    return [
        sys.executable,
        "-m",
        "portrait3d",
        "make-asset",
        str(photo),
        "--out",
        str(out),
        "--views",
        str(VIEWS),
        "--preset",
        "tiny",
        *extra,
    ]


def run_make_asset(out: Path, photo: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        make_asset_command(out, photo, *extra),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=900,
        env=machine_env(),
    )


def asset_files(root: Path) -> dict[str, bytes]:
    """Every file a run wrote, by run-relative name (records, run-specific files and the lock left out)."""
    files = {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}
    return {
        name: p.read_bytes()
        for name, p in files.items()
        if not name.startswith(".portrait3d/") and name not in RUN_SPECIFIC
    }


def differing(a: Path, b: Path) -> list[str]:
    """Names of the files that differ (or exist in only one) between two runs."""
    fa, fb = asset_files(a), asset_files(b)
    return sorted(name for name in fa.keys() | fb.keys() if fa.get(name) != fb.get(name))


def explain_difference(a: Path, b: Path, stderr: str) -> str:
    """Why two runs differ, for a failing assertion: the ``redone`` lines, the differing files and, for
    checkpoints, the tensors that differ and by how much (a fit that is not bit-reproducible shows here)."""
    import json
    import os

    import torch

    lines = [line for line in stderr.splitlines() if "redone:" in line]
    lines.append(
        f"test process: affinity {sorted(os.sched_getaffinity(0))}, load {os.getloadavg()}, "
        f"threads {torch.get_num_threads()}, "
        + ", ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith(("OMP_", "MKL_", "KMP_", "GOMP")))
    )
    for run in (a, b):
        record = run / ".portrait3d" / "stages" / "fit-nerf.json"
        info = json.loads(record.read_text()).get("info") if record.is_file() else None
        lines.append(f"fit of {run}: {info}")
    names = differing(a, b)
    lines.append(f"differing files: {names}")
    for name in names:
        if name.endswith(".ckpt") and (a / name).is_file() and (b / name).is_file():
            sa = torch.load(a / name, map_location="cpu", weights_only=True)["pipeline"]
            sb = torch.load(b / name, map_location="cpu", weights_only=True)["pipeline"]
            for key in sorted(sa.keys() | sb.keys()):
                ta, tb = sa.get(key), sb.get(key)
                if ta is None or tb is None or ta.shape != tb.shape:
                    lines.append(f"  {key}: only in one, or shapes differ")
                elif not torch.equal(ta, tb):
                    gap = (ta.double() - tb.double()).abs().max().item() if ta.is_floating_point() else "int"
                    lines.append(f"  {key}: {int((ta != tb).sum())} of {ta.numel()} differ, max gap {gap}")
    return "\n".join(lines)
