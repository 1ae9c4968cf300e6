"""Time and peak memory of ``portrait3d convert-weights`` on full-size synthetic checkpoints.

Writes two checkpoints with the released key names and SD 1.5 shapes (constant values: conversion cost does
not depend on them) into a scratch folder, converts them in a child process and prints the wall time, the
child's peak resident memory and the checkpoint sizes. Needs about 3x the checkpoint size in free disk
(fp16: ~10 GB of checkpoints + ~10 GB of output; fp32 twice that).

    python scripts/bench_convert.py --scratch /tmp/bench-convert [--dtype float16|float32] [--keep]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from portrait3d.diffusion import ldm_keys


def write_checkpoint(path: Path, motion: bool, dtype: torch.dtype) -> int:
    """Save a full-size state dict with the released names; returns its size in bytes."""
    layout = ldm_keys.CheckpointLayout()
    schedule = ldm_keys.ddpm_schedule(layout.num_timesteps)
    state = {}
    for name, shape in ldm_keys.checkpoint_keys(layout, motion, position_ids=True).items():
        if name in schedule:
            state[name] = schedule[name]
        elif name == ldm_keys.CLIP_POSITION_IDS:
            state[name] = torch.arange(shape[1]).unsqueeze(0)
        else:
            state[name] = torch.full(shape, 0.01, dtype=dtype)
    torch.save({"state_dict": state}, path)
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scratch", required=True, help="scratch folder for the checkpoints and the output")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="checkpoint dtype")
    parser.add_argument("--keep", action="store_true", help="keep the scratch files")
    args = parser.parse_args()

    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    dtype = getattr(torch, args.dtype)
    orbit, back = scratch / "model_state.th", scratch / "back_head.th"
    try:
        start = time.perf_counter()
        orbit_bytes = write_checkpoint(orbit, motion=True, dtype=dtype)
        back_bytes = write_checkpoint(back, motion=False, dtype=dtype)
        print(
            f"wrote synthetic checkpoints in {time.perf_counter() - start:.0f} s: "
            f"orbit {orbit_bytes / 2**30:.2f} GiB, back view {back_bytes / 2**30:.2f} GiB"
        )

        out = scratch / "WEIGHTS"
        command = [sys.executable, "-m", "portrait3d", "convert-weights", "-q", "--orbit", str(orbit)]
        command += ["--back-view", str(back), "--out", str(out), "--force"]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
        written = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        print(
            f"convert-weights: {seconds:.0f} s, peak RSS {peak / 2**30:.2f} GiB "
            f"({peak / orbit_bytes:.2f}x the larger checkpoint), wrote {written / 2**30:.2f} GiB"
        )
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
