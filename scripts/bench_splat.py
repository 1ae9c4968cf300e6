"""Benchmark the splats against ground truth: held-out PSNR/SSIM of the splat, the textured mesh and the NeRF.

A known textured head (the procedural head of :mod:`nerf.synthetic`, or with ``--proxy-run RUN`` the
textured proxy head of a preprocessed run, the photo's own face) is rendered at 36 orbit cameras (two
rings of 18, pitch 0 and 20 degrees); 32 views make a run folder, 4 are held out. The run is then
fitted (``fit-nerf``), meshed (``export-mesh``) and splatted (``export-splat``) with the preset's
options, and the three are rendered at the held-out cameras at the fit's image size over white.
Prints the figures, the splat files' sizes and the export time.

With ``--run RUN`` (a finished make-asset run) nothing is refitted: the splat is distilled with the
preset's options from all views but every 8th, and the splat, the run's mesh and its NeRF are scored at
those held-out views. The mesh and the NeRF did see them, so this favours them: a cheaper, conservative
check of the splat against the same run's other outputs.

Usage::

    python scripts/bench_splat.py --out /tmp/bench-splat [--preset fast] [--proxy-run RUN] [--json FIG.json]
    python scripts/bench_splat.py --run RUN [--preset fast] [--json FIG.json]
    python scripts/bench_splat.py --run RUN --splat-only --distill resolution=192,steps=150 --distill steps=200 ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_nerf import ground_truth_mesh, held_out_metrics  # noqa: E402

from nerf import dataset, fit, synthetic  # noqa: E402
from nerf.metrics import composite, mesh_render_scores, psnr, ssim  # noqa: E402
from portrait3d.parallel import torch_threads  # noqa: E402
from portrait3d.run import Run  # noqa: E402


def splat_scores(run: Run, cameras, images) -> dict:
    """Held-out PSNR/SSIM of ``splat/head.ply`` rendered by the project's rasteriser (over white)."""
    from portrait3d.splat import ply
    from portrait3d.splat.browser import file_camera
    from portrait3d.splat.stage import mesh_placement

    origin, scale = mesh_placement(run)
    gaussians = ply.read_ply(run.path("splat", "head.ply"))
    from portrait3d.splat.rasterize import render_numpy

    psnrs, ssims = [], []
    for camera, gt in zip(cameras, images):
        size = gt.shape[0]
        got = render_numpy(gaussians, file_camera(camera, origin, scale), size, size).astype(np.float64) / 255.0
        want = composite(gt)
        psnrs.append(psnr(got, want))
        ssims.append(ssim(got, want))
    return {"psnr_db": round(float(np.mean(psnrs)), 2), "ssim": round(float(np.mean(ssims)), 4)}


def mesh_scores(run: Run, cameras, images) -> dict:
    """Held-out PSNR/SSIM of the textured ``mesh/head.glb`` (loaded back into PanoHead units)."""
    from nerf.turntable import load_head_mesh

    mesh = load_head_mesh(run.path("mesh", "head.glb"))
    scores = mesh_render_scores(mesh, list(zip(cameras, images)))
    return {"psnr_db": round(scores["psnr"], 2), "ssim": round(scores["ssim"], 4)}


def distill_overrides(spec: str | None) -> dict:
    """``resolution=192,steps=200`` -> ``{"resolution": 192, "steps": 200}`` (typed as the DistillOptions fields)."""
    from portrait3d.splat.distill import DistillOptions

    if not spec:
        return {}
    defaults = DistillOptions()
    overrides = {}
    for item in spec.split(","):
        key, _, value = item.partition("=")
        if not hasattr(defaults, key):
            raise SystemExit(f"--distill {spec}: {key} is not a DistillOptions field")
        overrides[key] = type(getattr(defaults, key))(value)
    return overrides


def run_mode(run_dir: str, preset_name: str, overrides: dict | None = None, splat_only: bool = False) -> dict:
    """Figures of ``--run``: the splat fitted without every 8th view, scored there with the mesh and the NeRF.

    ``overrides``: DistillOptions fields changed from the preset's; ``splat_only``: skip the mesh and NeRF.
    """
    from nerf.export import read_views
    from portrait3d.presets import PRESETS
    from portrait3d.splat import distill
    from portrait3d.splat.gaussians import placed
    from portrait3d.splat.stage import mesh_placement, surface_in_world

    run = Run(run_dir, create=False)
    options = dataclasses.replace(PRESETS[preset_name].splat.distill, **(overrides or {}))
    field = fit.load_field(run.root)
    views = read_views(run)
    held = [v for i, v in enumerate(views) if i % 8 == 4]
    train = [v for i, v in enumerate(views) if i % 8 != 4]
    start, cpu_start = time.perf_counter(), time.process_time()
    with torch_threads(options.cpu_threads):  # as the export-splat stage
        targets = [distill.resize_target(v.image, v.camera, options.resolution) for v in train]
        targets += distill.nerf_targets(field, options.resolution, options.nerf_views, options.nerf_pitch)
        origin, scale = mesh_placement(run)
        vertices, faces = surface_in_world(run)
        fitted = distill.optimise(
            distill.seed_on_surface(vertices, faces, options.gaussians, field, options.seed), targets, options
        )
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    size = views[0].image.shape[0]
    cameras, images = [v.camera for v in held], [v.image for v in held]
    from portrait3d.splat import ply

    ply.write_ply(run.path("splat_heldout.ply"), placed(fitted, origin, scale))
    try:
        gaussians = ply.read_ply(run.path("splat_heldout.ply"))
        from portrait3d.splat.browser import file_camera
        from portrait3d.splat.rasterize import render_numpy

        psnrs, ssims = [], []
        for camera, gt in zip(cameras, images):
            got = render_numpy(gaussians, file_camera(camera, origin, scale), size, size).astype(np.float64) / 255.0
            psnrs.append(psnr(got, composite(gt)))
            ssims.append(ssim(got, composite(gt)))
    finally:
        run.path("splat_heldout.ply").unlink()
    splat = {"psnr_db": round(float(np.mean(psnrs)), 2), "ssim": round(float(np.mean(ssims)), 4)}
    timing = {
        "gaussians": len(fitted),
        "distill_seconds": round(seconds, 1),
        "distill_cpu_seconds": round(cpu_seconds, 1),
    }
    if splat_only:
        return {"preset": preset_name, "distill": overrides or {}, "size": size, "splat": splat, **timing}
    nerf = held_out_metrics(field, cameras, size, images)
    return {
        "run": str(run.root),
        "preset": preset_name,
        "distill": overrides or {},
        "held_out_views": len(held),
        "size": size,
        "note": "the mesh and the NeRF were fitted with the held-out views; the splat was not",
        "nerf": {"psnr_db": nerf["psnr_db"], "ssim": nerf["ssim"]},
        "mesh": mesh_scores(run, cameras, images),
        "splat": splat,
        **timing,
    }


def main() -> None:
    from PIL import Image

    from nerf.export import export_mesh
    from portrait3d.presets import PRESETS
    from portrait3d.runner import run_stage
    from portrait3d.splat import stage as splat_stage

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="folder for the benchmark run (replaced)")
    parser.add_argument("--run", default=None, help="score a finished run instead (see above)")
    parser.add_argument("--preset", default="fast", choices=sorted(PRESETS))
    parser.add_argument("--proxy-run", default=None, help="use the textured proxy head of this (preprocessed) run")
    parser.add_argument("--size", type=int, default=512, help="render size of the scene")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument(
        "--distill",
        action="append",
        default=None,
        help="with --run: DistillOptions to change, e.g. resolution=192,steps=200 "
        "(repeat to compare several; each prints a line)",
    )
    parser.add_argument("--splat-only", action="store_true", help="with --run: score only the splat (no mesh, no NeRF)")
    args = parser.parse_args()
    if args.run and args.distill and len(args.distill) > 1:
        reports = []
        for spec in args.distill:
            reports.append(run_mode(args.run, args.preset, distill_overrides(spec), args.splat_only))
            print(json.dumps(reports[-1]), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(reports, indent=1))
        return
    if args.run:
        report = run_mode(args.run, args.preset, distill_overrides((args.distill or [None])[0]), args.splat_only)
        print(json.dumps(report, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
        return
    if not args.out:
        parser.error("--out or --run is required")
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    preset = PRESETS[args.preset]
    cameras = synthetic.orbit_cameras(18, pitches=(0.0, 20.0))
    held = synthetic.held_out_indices(len(cameras), 4)
    train = [c for i, c in enumerate(cameras) if i not in held]
    truth, scene_name = ground_truth_mesh(args.proxy_run)
    run = synthetic.write_scene(out, truth, train, size=args.size)
    held_cameras = [cameras[i] for i in held]
    size = preset.fit.image_size
    held_images = [
        np.asarray(Image.fromarray(im).resize((size, size), Image.LANCZOS))
        for im in synthetic.render_views(truth, held_cameras, args.size)
    ]
    dataset.write_transforms(run)
    device = fit.resolve_device("auto").type
    timings = {}
    start = time.perf_counter()
    fit.fit(run, dataclasses.replace(preset.fit), device)
    timings["fit_s"] = time.perf_counter() - start
    start = time.perf_counter()
    export_mesh(run, preset.export, force=True)
    timings["export_mesh_s"] = time.perf_counter() - start
    start = time.perf_counter()
    info = run_stage(run, splat_stage(preset.splat), force=True)
    timings["export_splat_s"] = time.perf_counter() - start
    field = fit.load_field(out, device)
    nerf = held_out_metrics(field, held_cameras, size, held_images)
    report = {
        "scene": scene_name,
        "preset": args.preset,
        "device": torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)",
        "held_out_views": len(held),
        "size": size,
        "nerf": {"psnr_db": nerf["psnr_db"], "ssim": nerf["ssim"]},
        "mesh": mesh_scores(run, held_cameras, held_images),
        "splat": splat_scores(run, held_cameras, held_images),
        "gaussians": info["gaussians"],
        "file_sizes": info["file_sizes"],
        "spz_fraction_of_ply": info["spz_fraction_of_ply"],
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    n, m, s = report["nerf"], report["mesh"], report["splat"]
    print(
        f"held-out PSNR/SSIM at {size}px: splat {s['psnr_db']:.2f} dB / {s['ssim']:.3f}, mesh {m['psnr_db']:.2f} / "
        f"{m['ssim']:.3f}, NeRF {n['psnr_db']:.2f} / {n['ssim']:.3f}; {info['gaussians']} Gaussians, SPZ "
        f"{info['spz_fraction_of_ply']:.3f} of the PLY; export-splat {timings['export_splat_s']:.1f} s"
    )


if __name__ == "__main__":
    main()
