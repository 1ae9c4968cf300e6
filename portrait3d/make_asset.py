"""``make-asset``: one photo to a GLB, stage by stage through the run folder.

preprocess -> proxy -> (proxy views | back view + orbit views) -> dataset ->
fit-nerf -> export-mesh -> render-turntable -> contact sheet -> report.

Every stage goes through :func:`portrait3d.run.execute`, which hashes the
stage's input files and options: a rerun skips what is up to date and redoes
whatever lies downstream of a change, and a run killed at any moment resumes
from its last complete stage.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from portrait3d import progress
from portrait3d.errors import UserError
from portrait3d.run import Run, atomic_dir, atomic_save_image, atomic_write_json, execute

WEIGHTS_ENV = "PORTRAIT3D_WEIGHTS"
"""Environment variable naming the converted weights folder (``--weights`` wins)."""


@dataclass
class MakeAssetOptions:
    """Options of ``portrait3d make-asset``."""

    generator: str = "proxy"
    """Where the 360-degree views come from: ``proxy`` (template head, no weights, CPU) or ``diffusion``."""
    weights: str | None = None
    """Converted weights folder for the diffusion generator (default: $PORTRAIT3D_WEIGHTS)."""
    conditions: str | None = None
    """Folder of released condition renders with their dataset.json (diffusion generator; default: proxy renders)."""
    views: int = 32
    """Number of views on the orbit."""
    device: str = "auto"
    """``auto``, ``cpu`` or ``cuda``."""
    preset: str = "fast"
    """Preset of every stage's options (``portrait3d.presets``): ``fast``, ``standard`` or ``tiny``."""
    seed: int = 0
    """Random seed for the generator and the fit."""
    allow_cpu: bool = False
    """Let the diffusion generator run on a CPU (very slow)."""
    yaw: float | None = None
    """Manual camera yaw in degrees, for faces the detector misses (with --pitch)."""
    pitch: float | None = None
    """Manual camera pitch in degrees (with --yaw)."""
    force: bool = False
    """Redo every stage even where the run is up to date."""


def copy_proxy_views(run: Run, _options: object) -> dict:
    """The proxy generator: its textured renders are the run's views."""
    with atomic_dir(run.path("views")) as tmp:
        for src in sorted(run.path("proxy", "views").glob("*.png")):
            shutil.copy2(src, tmp / src.name)
        shutil.copy2(run.path("proxy", "cameras.json"), tmp / "cameras.json")
    return {"views": len(list(run.path("views").glob("[0-9]*.png")))}


def write_contact_sheet(run: Run, _options: object) -> dict:
    """``contact_sheet.png``: the aligned input, the back view (if any) and every view with its yaw."""
    from PIL import Image

    from portrait3d.cameras import read_labels
    from portrait3d.proxy.sheet import contact_sheet

    images = [np.asarray(Image.open(run.path("input", "aligned.png")).convert("RGB"))]
    labels = ["input"]
    if run.path("views", "back.png").exists():
        images.append(np.asarray(Image.open(run.path("views", "back.png")).convert("RGB")))
        labels.append("back view")
    for name, camera in read_labels(run.path("views", "cameras.json")).items():
        images.append(np.asarray(Image.open(run.path("views", name))))
        labels.append(f"{Path(name).stem}  yaw {camera.angles().yaw % 360:.0f}")
    atomic_save_image(run.path("contact_sheet.png"), contact_sheet(images, labels))
    return {"tiles": len(images)}


def check_photo(photo: Path) -> Path:
    """Cheap checks before a run folder is touched (preprocess's decoder checks the rest)."""
    if not photo.exists():
        raise UserError(f"{photo}: no such file")
    if photo.is_dir():
        raise UserError(f"{photo}: is a folder, not a photo")
    return photo.resolve()


def prepare_run(out: Path) -> Run:
    """Open or create the run folder (refusing folders that are not runs) and drop a killed run's temporaries."""
    run = Run(out)
    if not os.access(run.root, os.W_OK):
        raise UserError(f"{run.root}: the output folder is not writable")
    run.clean_temporaries()
    return run


def check_diffusion_ready(options: MakeAssetOptions) -> None:
    """Fail before any work if the diffusion generator cannot run (weights, device)."""
    from portrait3d.diffusion.stages import check_weights
    from portrait3d.diffusion.stages import resolve_device as diffusion_device

    if not options.weights:
        raise UserError(
            f"--generator diffusion needs converted weights: pass --weights DIR or set {WEIGHTS_ENV} "
            "(make them with `portrait3d convert-weights --orbit model_state-340000.th "
            "--back-view back_head-230000.th --out DIR`)"
        )
    root = Path(options.weights)
    check_weights(root, root, "Portrait360Pipeline")
    check_weights(root / "back_view", root, "BackViewPipeline")
    diffusion_device(options.device, options.allow_cpu)


def make_asset(photo: str | Path, out: str | Path, options: MakeAssetOptions) -> dict:
    """Run every stage from ``photo`` to ``out/mesh/head.glb``; returns the report.

    The numbered steps are the stages; each one is skipped when its record in
    the run folder says it is up to date.
    """
    from nerf.dataset import dataset_stage
    from nerf.export import export_mesh
    from nerf.fit import fit_stage, resolve_device
    from nerf.turntable import render_turntable
    from portrait3d.preprocess import PreprocessOptions, preprocess
    from portrait3d.presets import PRESETS
    from portrait3d.proxy.stage import INPUTS as PROXY_INPUTS
    from portrait3d.proxy.stage import OUTPUTS as PROXY_OUTPUTS
    from portrait3d.proxy.stage import STAGE as PROXY_STAGE
    from portrait3d.proxy.stage import build_proxy

    # 0. Check everything that can be checked before a file is written.
    if options.preset not in PRESETS:
        raise UserError(f"--preset must be one of {', '.join(PRESETS)}, not {options.preset!r}")
    preset = PRESETS[options.preset]
    photo = check_photo(Path(photo))
    device = resolve_device(options.device).type
    if options.generator == "diffusion":
        check_diffusion_ready(options)
    root = Path(out)
    if root.exists():
        prepare_run(root)  # refuses folders that are not runs, cleans a killed run's temporaries
    start = time.perf_counter()
    force = options.force
    results: dict[str, dict] = {}

    # 1. Crop, camera estimate and mask (decodes and checks the photo before creating the run).
    manual = options.yaw is not None
    pre = PreprocessOptions(yaw=options.yaw, pitch=options.pitch, centred_crop=manual)
    results["preprocess"] = preprocess(photo, root, pre, force=force)
    run = prepare_run(root)

    # 2. The proxy head and its renders at the orbit cameras.
    proxy_options = dataclasses.replace(preset.proxy, views=options.views)
    results["proxy"] = execute(run, PROXY_STAGE, build_proxy, proxy_options, PROXY_INPUTS, PROXY_OUTPUTS, force)

    # 3. The 360-degree views: the proxy renders, or the DiffPortrait360 back view then orbit views.
    if options.generator == "proxy":
        results["views"] = execute(
            run,
            "views",
            copy_proxy_views,
            {"generator": "proxy"},
            ["proxy/views", "proxy/cameras.json"],
            ["views/cameras.json"],
            force,
        )
    else:
        from portrait3d.diffusion.stages import DiffusionOptions, OrbitOptions, back_view, orbit_views

        common = {
            "weights": options.weights,
            "device": options.device,
            "seed": options.seed,
            "allow_cpu": options.allow_cpu,
            "conditions": options.conditions,
        }
        results["back-view"] = back_view(run, DiffusionOptions(**common), force)
        results["orbit-views"] = orbit_views(run, OrbitOptions(**common), force)

    # 4. The nerfstudio dataset, 5. the NeRF, 6. the mesh, 7. the turntable.
    results["dataset"] = dataset_stage(run, force=force)
    results["fit-nerf"] = fit_stage(run, preset.fit, device, seed=options.seed, force=force)
    results["export-mesh"] = export_mesh(run, preset.export, force=force)
    results["render-turntable"] = render_turntable(run, preset.turntable, force=force)

    # 8. Things to look at: the contact sheet and the report.
    results["contact-sheet"] = execute(
        run, "contact-sheet", write_contact_sheet, {}, ["input/aligned.png", "views"], ["contact_sheet.png"], force
    )
    report = write_report(run, photo, options, device, results, time.perf_counter() - start)
    glb = run.path("mesh", "head.glb")
    progress.info(f"done in {report['seconds_total']:.0f} s. Asset: {glb}")
    progress.info(f"open the NeRF in the nerfstudio viewer: ns-viewer --load-config {run.path('nerf', 'config.yml')}")
    return report


def _versions() -> dict:
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for dist in ("portrait3d", "torch", "diffusers", "transformers", "nerfstudio", "trimesh", "open3d", "numpy"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    return versions


def _peak_memory() -> dict:
    peak = {"cpu_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            peak["cuda_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak


def write_report(run: Run, photo: Path, options: MakeAssetOptions, device: str, results: dict, seconds: float) -> dict:
    """Write ``report.json``: versions, device, options, stage times, quality figures, files."""
    fit = results.get("fit-nerf", {})
    mesh = results.get("export-mesh", {})
    files = sorted(
        p for p in run.root.rglob("*") if p.is_file() and not p.relative_to(run.root).parts[0].startswith(".")
    )
    report = {
        "portrait3d_report": 1,
        "photo": str(photo),
        "device": device,
        "platform": platform.platform(),
        "versions": _versions(),
        "options": dataclasses.asdict(options),
        "stages": {name: {"seconds": r.get("seconds"), "skipped": r.get("skipped")} for name, r in results.items()},
        "seconds_total": round(seconds, 2),
        "peak_memory": _peak_memory(),
        "nerf": {"train_psnr": fit.get("train_psnr"), "iterations": fit.get("iterations"), "preset": options.preset},
        "mesh": {
            "triangles": mesh.get("triangles"),
            "texture_size": mesh.get("texture_size"),
            "units": mesh.get("units", "metres"),
            "scale_to_metres": mesh.get("scale_to_metres"),
            **{key: mesh.get(key) for key in ("target", "origin_source_units", "lods", "file_sizes")},
        },
        "files": {str(p.relative_to(run.root)): p.stat().st_size for p in files},
    }
    atomic_write_json(run.path("report.json"), report)
    return report
