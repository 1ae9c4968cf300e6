"""``make-asset``: one photo to a GLB, stage by stage through the run folder.

preprocess -> proxy -> (proxy views | back view + orbit views) -> dataset ->
fit-nerf -> export-mesh -> render-turntable and contact sheet beside export-splat -> report.

The stages are :func:`portrait3d.pipeline.asset_stages`, run by
:func:`portrait3d.runner.run_stages` while this process holds the run's lock: a
rerun skips what is up to date, redoes a stage whose outputs were damaged and
whatever lies downstream of a change, and a run killed at any moment resumes
from its last complete stage.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from portrait3d import limits, progress
from portrait3d.errors import UserError
from portrait3d.pipeline import (
    asset_stages,
    write_contact_sheet,  # noqa: F401  (its old home, for one release)
)
from portrait3d.run import Run, atomic_write_json
from portrait3d.runner import open_run, run_stages

WEIGHTS_ENV = "PORTRAIT3D_WEIGHTS"
"""Environment variable naming the converted weights folder (``--weights`` wins)."""
MIN_VIEWS, MAX_VIEWS = 8, 256
"""Fewer views than 8 leave most of the head unseen (a degenerate asset); more than 256 is no better."""
DIFFUSION_WINDOW = 8
"""The diffusion generator denoises views in windows of 8 (the released view length)."""


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
    """Number of views on the orbit (at least 8; a multiple of 8 for the diffusion generator)."""
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
    wait: bool = False
    """Wait for another process writing the same run folder instead of failing."""
    target: str | None = None
    """Where the asset goes (``export-mesh --target``: generic, web, avatar, unity, unreal); None: the
    preset's export. ``avatar`` adds the ``rig`` stage (``avatar/head.glb``: blendshapes, visemes, bones)."""
    max_seconds: float | None = None
    """Time budget of the NeRF fit in seconds (None: the preset's fixed number of steps; a budget makes
    the result depend on the machine's load)."""

    def validate(self) -> None:
        """Refuse options that cannot give a sensible asset, with a one-line :class:`UserError`."""
        from portrait3d.presets import PRESETS

        if self.generator not in ("proxy", "diffusion"):
            raise UserError(f"--generator must be proxy or diffusion, not {self.generator!r}")
        if self.preset not in PRESETS:
            raise UserError(f"--preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        if not MIN_VIEWS <= self.views <= MAX_VIEWS:
            raise UserError(
                f"--views must be between {MIN_VIEWS} and {MAX_VIEWS}, got {self.views}: "
                "fewer views leave most of the head unseen"
            )
        if self.generator == "diffusion" and self.views % DIFFUSION_WINDOW:
            raise UserError(
                f"--views must be a multiple of {DIFFUSION_WINDOW} for the diffusion generator "
                f"(it denoises views {DIFFUSION_WINDOW} at a time), got {self.views}"
            )
        if (self.yaw is None) != (self.pitch is None):
            raise UserError("--yaw and --pitch go together")
        limits.seed(self.seed)
        if self.yaw is not None:
            limits.number("--yaw", self.yaw, *limits.YAW_RANGE, " degrees")
            limits.number("--pitch", self.pitch, *limits.PITCH_RANGE, " degrees")
        if self.max_seconds is not None and not (math.isfinite(self.max_seconds) and self.max_seconds > 0):
            raise UserError(f"--max-seconds must be a positive number of seconds, got {self.max_seconds}")
        if self.target is not None:
            from nerf.targets import get_target

            get_target(self.target)
        if self.device not in ("auto", "cpu", "cuda"):
            raise UserError(f"--device must be auto, cpu or cuda, not {self.device!r}")


def check_photo(photo: Path) -> Path:
    """Cheap checks before a run folder is touched (preprocess's decoder checks the rest)."""
    if not photo.exists():
        raise UserError(f"{photo}: no such file")
    if photo.is_dir():
        raise UserError(f"{photo}: is a folder, not a photo")
    return photo.resolve()


def check_diffusion_ready(options: MakeAssetOptions) -> None:
    """Fail before any work if the diffusion generator cannot run (weights, device)."""
    from portrait3d.diffusion.stages import check_weights
    from portrait3d.diffusion.stages import resolve_device as diffusion_device

    if not options.weights:
        raise UserError(
            f"--generator diffusion needs converted weights: pass --weights DIR or set {WEIGHTS_ENV} "
            "(download and convert them with `portrait3d fetch-weights --out DIR`, or convert files you have with "
            "`portrait3d convert-weights --orbit model_state-340000.th --back-view back_head-230000.th --out DIR`)"
        )
    root = Path(options.weights)
    check_weights(root, root, "Portrait360Pipeline")
    check_weights(root / "back_view", root, "BackViewPipeline")
    diffusion_device(options.device, options.allow_cpu)


def run_settings_of(options: MakeAssetOptions) -> dict:
    """What the run records about itself, so that each subcommand's defaults match make-asset's."""
    return {"preset": options.preset, "views": options.views, "seed": options.seed, "generator": options.generator}


def make_asset(photo: str | Path, out: str | Path, options: MakeAssetOptions) -> dict:
    """Run every stage from ``photo`` to ``out/mesh/head.glb``; returns the report.

    Holds the run's lock for the whole run (a second process on the same folder fails
    naming this one's PID, or waits with ``options.wait``). Each stage is skipped when
    its record says it is up to date and its outputs are intact.
    """
    from nerf.fit import resolve_device

    # Check everything that can be checked before a file is written.
    options.validate()
    photo = check_photo(Path(photo))
    device = resolve_device(options.device).type
    if options.generator == "diffusion":
        check_diffusion_ready(options)
    stages = asset_stages(photo, options)
    start = time.perf_counter()
    results: dict[str, dict] = {}
    with open_run(out, wait=options.wait) as run:
        run.write_settings(run_settings_of(options))
        for name, info in run_stages(run, stages, force=options.force).items():
            results[{"back_view": "back-view", "orbit_views": "orbit-views"}.get(name, name)] = info
        report = write_report(run, photo, options, device, results, time.perf_counter() - start)
    glb = run.path("avatar" if options.target == "avatar" else "mesh", "head.glb")
    progress.info(f"done in {report['seconds_total']:.0f} s. Asset: {glb}")
    progress.info(f"open the NeRF in nerfstudio's viewer: portrait3d view {run.root}")
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


def _peak_memory(results: dict) -> dict:
    """The process's peak memory: the larger of ``ru_maxrss`` and the stages' own peaks (the runner resets the
    kernel's peak before each stage, which can leave ``ru_maxrss`` with the last stage's alone)."""
    stage_peaks = [r["peak_rss_mib"] for r in results.values() if r.get("peak_rss_mib") is not None]
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    peak = {"cpu_rss_mib": round(max([maxrss, *stage_peaks]), 1)}
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            peak["cuda_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak


def write_report(run: Run, photo: Path, options: MakeAssetOptions, device: str, results: dict, seconds: float) -> dict:
    """Write ``report.json``: versions, device, options, stage times and peak memory, quality figures, files."""
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
        "stages": {
            name: {key: r.get(key) for key in ("seconds", "skipped", "peak_rss_mib")} for name, r in results.items()
        },
        "seconds_total": round(seconds, 2),
        "peak_memory": _peak_memory(results),
        "nerf": {"train_psnr": fit.get("train_psnr"), "iterations": fit.get("iterations"), "preset": options.preset},
        "mesh": {
            "triangles": mesh.get("triangles"),
            "texture_size": mesh.get("texture_size"),
            "units": mesh.get("units", "metres"),
            "scale_to_metres": mesh.get("scale_to_metres"),
            **{key: mesh.get(key) for key in ("target", "origin_source_units", "lods", "file_sizes")},
        },
        **({"avatar": results["rig"].get("lods")} if "rig" in results else {}),
        "splat": {
            key: results.get("export-splat", {}).get(key)
            for key in ("gaussians", "sh_degree", "target", "views_psnr_db", "file_sizes", "spz_fraction_of_ply")
        },
        "files": {str(p.relative_to(run.root)): p.stat().st_size for p in files},
    }
    atomic_write_json(run.path("report.json"), report)
    return report
