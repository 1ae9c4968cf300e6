"""What a fit step costs, in counts that do not depend on the machine's load.

    python scripts/bench_fit_counts.py RUN [--iterations N] [--preset fast] [--threads 1]

Fits a copy of RUN (a run with ``transforms.json``; RUN itself is not touched) with ``fit-nerf``'s code and
prints the field evaluations per training ray (``samples_per_ray`` of the fit's report: what a step
costs), the warm start's occupancy share, the occupied share of the final grid, the PSNR of the last
batches and, for reference only, the training seconds (they do depend on the load).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nerf import fit  # noqa: E402
from portrait3d.run import Run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder with transforms.json (copied, not changed)")
    parser.add_argument("--iterations", type=int, help="override the preset's steps")
    parser.add_argument("--preset", default="fast", choices=sorted(fit.PRESETS), help="fit preset (default: fast)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    source = Path(args.run)
    if not (source / "transforms.json").is_file():
        sys.exit(f"{source}: no transforms.json (run `portrait3d dataset {source}` first)")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = fit.PRESETS[args.preset]
    if args.iterations:
        config = dataclasses.replace(config, iterations=args.iterations)
    with tempfile.TemporaryDirectory(prefix="bench-fit-counts-") as tmp:
        run_dir = Path(tmp) / "run"
        shutil.copytree(source, run_dir, ignore=shutil.ignore_patterns("nerf", "mesh", "turntable*", "splat"))
        info = fit.fit(Run(run_dir), config, "cpu")
        grid = fit.load_field(run_dir).grid
        occupied = float(grid.occupied.float().mean()) * 100
    warm = info["warm_start"]
    print(f"fit of {source} ({args.preset}, {info['iterations']} steps, {info['cpu_threads']} threads)")
    print(f"  field evaluations per ray: {info['samples_per_ray']}")
    if "grid_samples_per_step" in info:  # the occupancy grid's density queries (no gradient)
        print(f"  grid updates' evaluations: {info['grid_samples_per_step']} per step")
    kept = "cold start" if warm is None else f"{warm['occupancy_kept'] * 100:.2f} % of the cube"
    print(f"  warm start occupancy:      {kept}")
    print(f"  occupied at the end:       {occupied:.2f} % of the cube")
    print(f"  train PSNR (last batches): {info['train_psnr']} dB")
    print(f"  train seconds:             {info['train_seconds']} (load-dependent)")


if __name__ == "__main__":
    main()
