"""Time the splat distillation step by step: where a step's time goes, and the fitted splat's view PSNR.

The stage's inputs (the resized views, the NeRF targets, the seeded Gaussians) are built once from a
finished run and cached (``--cache FILE.pt``), so that runs before and after a change fit the same
pictures from the same seeds. Then :func:`portrait3d.splat.distill.optimise` runs with the default
options (one torch thread), its steps timed; with ``--profile`` a step's time is split by phase
(projection, binning, composite forward, composite backward, Adam) with a second, instrumented pass.
Prints ms per step, the stage's view PSNR (:func:`portrait3d.splat.stage.training_psnr`) and, with
``--png``, writes the first view rendered at twice the fitting size, to look for softening.

Usage::

    python scripts/bench_distill.py RUN --cache /tmp/distill_inputs.pt [--profile] [--png OUT.png] [--json OUT.json]
        [--save-pairs N] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from portrait3d.parallel import torch_threads
from portrait3d.run import Run
from portrait3d.splat import distill, rasterize, tiles

stage = importlib.import_module("portrait3d.splat.stage")  # the package's ``stage`` is the stage's constructor


def inputs(run_dir: Path, cache: Path | None, options: distill.DistillOptions):
    """``(seedlings, targets, number of views)``, from ``cache`` when it exists (else built and saved there)."""
    if cache is not None and cache.exists():
        saved = torch.load(cache, weights_only=False)
        return saved["seedlings"], saved["targets"], saved["views"]
    from nerf.export import read_views
    from nerf.fit import load_field

    run = Run(run_dir)
    with torch_threads(options.cpu_threads):
        field = load_field(run.root, "cpu")
        vertices, faces = stage.surface_in_world(run)
        views = read_views(run)
        targets = [distill.resize_target(v.image, v.camera, options.resolution) for v in views]
        targets += distill.nerf_targets(field, options.resolution, options.nerf_views, options.nerf_pitch)
        seedlings = distill.seed_on_surface(vertices, faces, options.gaussians, field.cpu(), options.seed)
    if cache is not None:
        torch.save({"seedlings": seedlings, "targets": targets, "views": len(views)}, cache)
    return seedlings, targets, len(views)


class StepClock:
    """Wall time of each step of an iterable of step indices."""

    def __init__(self, count: int):
        self.count, self.times = count, []

    def __iter__(self):
        last = time.perf_counter()
        for step in range(self.count):
            yield step
            now = time.perf_counter()
            self.times.append(now - last)
            last = now


def phase_profile(seedlings, targets, options) -> dict[str, float]:
    """ms per step in each phase, by wrapping the phases' functions with timers for one more fit."""
    totals: dict[str, float] = defaultdict(float)

    def timed(name, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[name] += time.perf_counter() - start

        return wrapper

    patches = [
        (rasterize, "project"),
        (tiles, "bin_to_tiles"),
        (tiles.CompositeTiles, "forward"),
        (tiles.CompositeTiles, "backward"),
        (torch.optim.Adam, "step"),
    ]
    originals = [(owner, name, owner.__dict__[name]) for owner, name in patches]
    try:
        for owner, name, original in originals:
            function = original.__func__ if isinstance(original, staticmethod) else original
            wrapped = timed(name, function)
            setattr(owner, name, staticmethod(wrapped) if isinstance(original, staticmethod) else wrapped)
        start = time.perf_counter()
        distill.optimise(seedlings, targets, options)
        totals["total"] = time.perf_counter() - start
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
    return {k: round(1000 * v / options.steps, 1) for k, v in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--cache", type=Path, help="the inputs, built once and reused (a .pt file)")
    parser.add_argument("--profile", action="store_true", help="also time each phase (one more fit)")
    parser.add_argument("--png", type=Path, help="write view 0 of the fitted splat at twice the fitting size")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--save-pairs", type=int, help="tiles.SAVE_PAIRS for this run (0: the backward recomputes every chunk)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a DistillOptions field, e.g. steps=100"
    )
    args = parser.parse_args()
    if args.save_pairs is not None:
        tiles.SAVE_PAIRS = args.save_pairs  # read by render_binned at each call
    options = distill.DistillOptions()
    for assignment in args.set:
        key, value = assignment.split("=", 1)
        options = dataclasses.replace(options, **{key: type(getattr(options, key))(value)})
    torch.manual_seed(0)
    seedlings, targets, views = inputs(args.run, args.cache, options)
    clock = StepClock(options.steps)
    start = time.perf_counter()
    fitted = distill.optimise(seedlings, targets, options, steps=clock)
    fit_s = time.perf_counter() - start
    with torch_threads(options.cpu_threads):
        start = time.perf_counter()
        view_psnr = stage.training_psnr(fitted, targets[:views])
        psnr_s = time.perf_counter() - start
    times = 1000 * np.asarray(clock.times)
    figures = {
        "steps": options.steps,
        "gaussians_kept": len(fitted),
        "fit_s": round(fit_s, 2),
        "ms_per_step_mean": round(float(times.mean()), 1),
        "ms_per_step_median": round(float(np.median(times)), 1),
        "training_psnr_s": round(psnr_s, 2),
        "views_psnr_db": round(view_psnr, 3),
        "load": Path("/proc/loadavg").read_text().split()[:3],
    }
    if args.profile:
        with torch_threads(options.cpu_threads):
            figures["phases_ms_per_step"] = phase_profile(seedlings, targets, options)
    if args.png:
        from PIL import Image

        size = 2 * targets[0].rgb.shape[0]
        with torch_threads(options.cpu_threads):
            Image.fromarray(rasterize.render_numpy(fitted, targets[0].camera, size, size)).save(args.png)
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
