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
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from portrait3d import progress
from portrait3d.errors import UserError
from portrait3d.run import Run, atomic_dir, atomic_write_json, execute

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
    """NeRF preset: ``fast`` or ``standard``."""
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


@dataclass
class Step:
    """One stage of the run: what it reads, writes and how to run it."""

    name: str
    fn: Callable[[Run, object], dict | None]
    options: object
    inputs: list[str]
    outputs: list[str]
    extra_inputs: list[str] = field(default_factory=list)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA GPU is usable, else ``cpu``; checks an explicit ``cuda``."""
    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, not {device!r}")
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is available to torch here; use --device cpu or auto")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def copy_proxy_views(run: Run, _options: object) -> dict:
    """The proxy generator: its textured renders are the run's views."""
    import shutil

    with atomic_dir(run.path("views")) as tmp:
        for src in sorted(run.path("proxy", "views").glob("*.png")):
            shutil.copy2(src, tmp / src.name)
        shutil.copy2(run.path("proxy", "cameras.json"), tmp / "cameras.json")
    return {"views": len(list(run.path("views").glob("[0-9]*.png")))}


def check_photo(photo: Path) -> Path:
    """Cheap checks before a run folder is touched (the decoder checks the rest)."""
    if not photo.exists():
        raise UserError(f"{photo}: no such file")
    if photo.is_dir():
        raise UserError(f"{photo}: is a folder, not a photo")
    return photo.resolve()


def prepare_run(out: Path) -> Run:
    """Open or create the run folder, refusing folders that are not runs."""
    run = Run(out)
    if not os.access(run.root, os.W_OK):
        raise UserError(f"{run.root}: the output folder is not writable")
    run.clean_temporaries()
    return run


def make_asset(photo: str | Path, out: str | Path, options: MakeAssetOptions) -> dict:
    """Run every stage from ``photo`` to ``out/mesh/head.glb``; returns the report."""
    from portrait3d import stages

    photo = check_photo(Path(photo))
    device = resolve_device(options.device)
    if options.generator not in ("proxy", "diffusion"):
        raise UserError(f"--generator must be proxy or diffusion, not {options.generator!r}")
    if options.generator == "diffusion":
        stages.check_diffusion_ready(options, device)
    run = prepare_run(Path(out))
    start = time.perf_counter()
    results: dict[str, dict] = {}
    for step in stages.plan(photo, options, device):
        inputs = [*step.inputs, *step.extra_inputs]
        results[step.name] = execute(run, step.name, step.fn, step.options, inputs, step.outputs, options.force)
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
        },
        "files": {str(p.relative_to(run.root)): p.stat().st_size for p in files},
    }
    atomic_write_json(run.path("report.json"), report)
    return report
