"""The ``export-splat`` stage: Gaussians distilled from the run, written as PLY, SPZ and glTF.

Reads ``mesh/head.glb`` (the surface the Gaussians are seeded on, and its origin and scale, from
``asset.extras.portrait3d``), the fitted NeRF (``nerf.fit.load_field``) and ``views/``; writes
``splat/head.ply`` (3DGS layout), ``splat/head.spz`` (SPZ v3) and ``splat/head.glb``
(``KHR_gaussian_splatting``), all three in the mesh's frame: metres, +Y up, facing +Z, origin at the
neck cap. The folder appears whole or not at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from portrait3d import progress
from portrait3d.errors import UserError
from portrait3d.parallel import ordered_map, torch_threads
from portrait3d.run import Run, atomic_dir
from portrait3d.runner import Stage

from .distill import DistillOptions

STAGE = "export-splat"
SPLAT_DIR = "splat"
PLY_NAME, SPZ_NAME, GLB_NAME = "head.ply", "head.spz", "head.glb"
OUTPUTS = tuple(f"{SPLAT_DIR}/{name}" for name in (PLY_NAME, SPZ_NAME, GLB_NAME))
MESH_GLB = "mesh/head.glb"
INPUTS = (MESH_GLB, "nerf/volume.json", "nerf/nerfstudio_models", "views/cameras.json", "views")


@dataclass(frozen=True)
class SplatTarget:
    """A budget for the splat files."""

    max_gaussians: int | None
    """At most this many Gaussians are seeded (None: no limit)."""
    max_web_mb: float | None
    """Largest size of each file a browser loads (SPZ and GLB), MB (None: no limit)."""
    note: str = ""


TARGETS = {
    "generic": SplatTarget(None, None, "no limits"),
    "web": SplatTarget(
        100_000,
        10.0,
        "a phone browser: 100k Gaussians sort in a few ms a frame in WebGL viewers, and 10 MB loads in a few "
        "seconds on a mobile link",
    ),
}


@dataclass
class SplatOptions:
    """Options of the ``export-splat`` stage."""

    distill: DistillOptions = field(default_factory=DistillOptions)
    """The distillation (count, steps, resolution, SH degree fitted)."""
    ply_sh_degree: int = 3
    """Spherical-harmonic degree of head.ply (the fitted degree, padded with zeros): 3 is what the Unity and
    Unreal plug-ins expect; SPZ and GLB keep the fitted degree."""
    target: str = "generic"
    """Budget (:data:`TARGETS`): ``generic`` or ``web``."""
    device: str = "auto"
    """``auto`` (CUDA when present, with gsplat's rasteriser where installed), ``cpu`` or ``cuda``."""


def check_options(options: SplatOptions) -> None:
    d = options.distill
    if options.target not in TARGETS:
        raise UserError(f"--target {options.target}: unknown; choose from {', '.join(TARGETS)}")
    if d.gaussians < 16 or d.steps < 0 or d.resolution < 16:
        raise UserError("export-splat: --gaussians must be at least 16, --steps at least 0, --resolution at least 16")
    if not 0 <= d.sh_degree <= 3 or not d.sh_degree <= options.ply_sh_degree <= 3:
        raise UserError("export-splat: --sh-degree must be 0..3 and no more than the PLY's degree (0..3)")


def stage(options: SplatOptions | None = None) -> Stage:
    """The ``export-splat`` stage."""
    options = options or SplatOptions()
    return Stage(
        STAGE,
        export_splat,
        options,
        inputs=INPUTS,
        outputs=OUTPUTS,
        needs="run `portrait3d export-mesh {run}` first",
        check=lambda _run: check_options(options),
    )


def mesh_placement(run: Run) -> tuple[np.ndarray, float]:
    """``(origin, metres_per_unit)`` of the run's mesh: the PanoHead point at the files' origin, and the scale."""
    from nerf.export import read_glb_json

    record = read_glb_json(run.path(MESH_GLB)).get("asset", {}).get("extras", {}).get("portrait3d", {})
    try:
        return np.asarray(record["origin_source_units"], dtype=np.float64), float(record["metres_per_unit"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(
            f"{run.path(MESH_GLB)}: no portrait3d origin and scale; rerun `portrait3d export-mesh`"
        ) from exc


def surface_in_world(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """The mesh's vertices (V, 3) in PanoHead world units and its faces (F, 3)."""
    from nerf.turntable import load_head_mesh

    mesh = load_head_mesh(run.path(MESH_GLB))
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def export_splat(run: Run, options: SplatOptions) -> dict:
    """Distil and write the three splat files; returns the report's figures."""
    import dataclasses

    from nerf.export import read_views
    from nerf.fit import deterministic, load_field, resolve_device

    from . import distill, gltf, ply, spz
    from .gaussians import placed
    from .rasterize import gsplat_available

    timings, start = {}, time.perf_counter()
    target = TARGETS[options.target]
    d = options.distill
    if target.max_gaussians is not None and d.gaussians > target.max_gaussians:
        d = dataclasses.replace(d, gaussians=target.max_gaussians)
    device = resolve_device(options.device)
    deterministic(device)
    # One torch thread on the CPU for all of it (DistillOptions.cpu_threads): the NeRF renders and the
    # rasteriser measured faster so on the shared 2-core machine.
    with torch_threads(d.cpu_threads, device.type):
        field = load_field(run.root, device.type)
        origin, scale = mesh_placement(run)
        vertices, faces = surface_in_world(run)
        views = read_views(run)
        targets = [distill.resize_target(v.image, v.camera, d.resolution) for v in views]
        if d.nerf_views:
            targets += distill.nerf_targets(field, d.resolution, d.nerf_views, d.nerf_pitch)
        seedlings = distill.seed_on_surface(vertices, faces, d.gaussians, field.cpu(), d.seed)
        timings["seed_s"] = time.perf_counter() - start
        start = time.perf_counter()
        steps = progress.bar(range(d.steps), desc="distilling Gaussians")
        fitted = distill.optimise(seedlings, targets, d, device.type, steps=steps)
        timings["optimise_s"] = time.perf_counter() - start
        start = time.perf_counter()
        view_psnr = training_psnr(fitted, targets[: len(views)])
    files = placed(fitted, origin, scale)
    extras = {
        "units": "metres",
        "metres_per_unit": scale,
        "origin": "base of the neck (the cap) on the mid-plane, as mesh/head.glb",
        "origin_source_units": [round(float(v), 6) for v in origin],
        "up": "+Y",
        "forward": "+Z",
    }
    with atomic_dir(run.path(SPLAT_DIR)) as tmp:
        ply.write_ply(tmp / PLY_NAME, files, options.ply_sh_degree)
        spz.write_spz(tmp / SPZ_NAME, files)
        gltf.write_glb(tmp / GLB_NAME, files, extras)
        sizes = {f"{SPLAT_DIR}/{n}": (tmp / n).stat().st_size for n in (PLY_NAME, SPZ_NAME, GLB_NAME)}
        timings["score_and_write_s"] = time.perf_counter() - start
        if target.max_web_mb is not None:
            for name in (SPZ_NAME, GLB_NAME):
                megabytes = sizes[f"{SPLAT_DIR}/{name}"] / 1e6
                if megabytes > target.max_web_mb:
                    raise UserError(
                        f"--target {options.target}: {name} is {megabytes:.1f} MB, over {target.max_web_mb:g} MB; "
                        "ask for fewer --gaussians or a lower --sh-degree"
                    )
    progress.info(
        f"splat: {len(files)} Gaussians, PLY {sizes[OUTPUTS[0]] / 1e6:.2f} MB, SPZ {sizes[OUTPUTS[1]] / 1e6:.2f} MB, "
        f"GLB {sizes[OUTPUTS[2]] / 1e6:.2f} MB, {view_psnr:.2f} dB on the views"
    )
    return {
        **extras,
        "gaussians": len(files),
        "gaussians_seeded": d.gaussians,
        "sh_degree": files.sh_degree,
        "ply_sh_degree": options.ply_sh_degree,
        "target": options.target,
        "rasteriser": "gsplat" if gsplat_available(device) else "binned",
        "views_psnr_db": round(view_psnr, 3),
        "files": list(OUTPUTS),
        "file_sizes": sizes,
        "spz_fraction_of_ply": round(sizes[OUTPUTS[1]] / sizes[OUTPUTS[0]], 4),
        **{k: round(v, 3) for k, v in timings.items()},
    }


def training_psnr(gaussians, targets) -> float:
    """Mean PSNR (dB) of the Gaussians on white against the targets on white (the pictures rendered a few at a
    time: :func:`portrait3d.parallel.ordered_map`)."""
    from .rasterize import render_numpy

    def score(t) -> float:
        size = t.rgb.shape[0]
        image = render_numpy(gaussians, t.camera, size, size).astype(np.float64) / 255.0
        reference = t.rgb * t.alpha[..., None] + (1.0 - t.alpha[..., None])
        return 10 * np.log10(1.0 / max(np.mean((image - reference) ** 2), 1e-10))

    return float(np.mean(list(ordered_map(score, targets))))
