"""Benchmark the NeRF stage against ground truth.

Renders a known textured head at 36 orbit cameras (two rings of 18, pitch 0
and 20 degrees) at 512x512, keeps 32 views in a run folder, fits with
``portrait3d fit-nerf``'s code, and prints held-out PSNR and SSIM at the fit
resolution, the fit time and the device. The ground-truth head is the procedural head of
:mod:`nerf.synthetic`, or with ``--proxy-run RUN`` the textured proxy head of
a preprocessed run (``portrait3d.proxy``).

With ``--mesh`` it also runs the mesh stage's ``export-mesh`` on the fitted
run and prints the Chamfer distance (% of the ground truth's bounding-box
diagonal), the F-score at 1%, the mean angle between the surface's normals and
the ground truth's (smoothness: pits and fins) and the export time (:func:`mesh_figures`).

The fit is make-asset's for the proxy's own renders (``--views proxy``, the default with ``--prior exact`` or
``none``) or for generated views (``--views generated``, the default with ``--inconsistent`` or ``--prior
perturbed``: :meth:`nerf.fit.FitConfig.for_views`, with its per-view shift, step count and proxy anchor).

``--prior perturbed`` writes a stand-in proxy head (the ground truth moved by a
smooth field of a few millimetres, colours blurred: :func:`nerf.synthetic.proxy_of`)
as ``proxy/head.ply``, so that the fit warm-starts from it as it does in a
make-asset run; ``--prior exact`` uses the ground truth itself (the proxy
generator's case), ``--prior none`` (default) leaves the run without one (a cold
start). ``--inconsistent`` alters the training views the way a diffusion model
would (:func:`nerf.synthetic.simulate_diffusion`: exposure and colour shifts,
a few pixels of jitter, per-view hallucinated detail, two plainly wrong views);
the held-out views stay clean.

Usage::

    python scripts/bench_nerf.py --out /tmp/bench-nerf [--preset fast] [--device auto] [--proxy-run RUN] [--mesh]
        [--prior none|exact|perturbed] [--inconsistent [--perturb colour,jitter,detail,wrong]] [--cold]
        [--views proxy|generated] [--view-shift] [--outlier-sigmas S]

On a machine without open3d (the lent GPU), render the scene where open3d is, carry it, fit there::

    python scripts/bench_nerf.py --out SCENE --prepare-only            # views + held-out renders, no fit
    python scripts/bench_nerf.py --out RUN --scene SCENE --device cuda --preset standard --json FIG.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from nerf import dataset, fit, synthetic
from nerf.metrics import composite, psnr, ssim
from portrait3d import progress
from portrait3d.run import Run


def ground_truth_mesh(proxy_run: str | None):
    """The ground-truth textured head: ``(mesh, name)``.

    Args:
        proxy_run: a run whose preprocess stage is done: its textured proxy head
            (``portrait3d.proxy.stage.proxy_mesh``) is the ground truth; None: the
            procedural head of :mod:`nerf.synthetic`.
    """
    if proxy_run:
        from portrait3d.proxy.stage import proxy_mesh

        return proxy_mesh(proxy_run), f"proxy head of {proxy_run}"
    return synthetic.head_mesh(), "procedural head (nerf/synthetic.py)"


HELD_OUT = "held_out"
"""Folder of a prepared scene with the held-out ground-truth renders (``NNNN.png``) and their ``cameras.json``."""


def write_held_out(scene: Path, cameras, images) -> None:
    """The ground truth's RGBA ``images`` at the held-out ``cameras`` into ``SCENE/held_out/`` (for ``--scene``)."""
    from portrait3d import cameras as cams
    from portrait3d.run import atomic_save_image

    named = {}
    for index, (camera, image) in enumerate(zip(cameras, images)):
        atomic_save_image(scene / HELD_OUT / f"{index:04d}.png", image)
        named[f"{index:04d}.png"] = camera
    cams.write_labels(scene / HELD_OUT / "cameras.json", named)


def read_held_out(scene: Path):
    """(cameras, RGBA uint8 images) of a prepared scene's held-out views."""
    from PIL import Image

    from portrait3d import cameras as cams

    named = cams.read_labels(scene / HELD_OUT / "cameras.json")
    return list(named.values()), [np.asarray(Image.open(scene / HELD_OUT / name)) for name in named]


def held_out_metrics(field, cameras, size: int, images) -> dict:
    """Mean PSNR / SSIM of renders over white at ``cameras`` against the ground truth.

    ``images``: the ground truth's RGBA renders at the scene's size (prepared, or from :func:`held_out_renders`).
    They are box-filtered to ``size`` exactly as the dataset shrinks the training views: a ground truth
    rendered at ``size`` directly has aliased edges that no field fitted to filtered views can match (it
    read 1.2 dB lower on the same fit; docs/BENCHMARKS.md, sixth session).
    """
    from PIL import Image

    if images[0].shape[0] != size:
        images = [np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BOX)) for im in images]
    scores_psnr, scores_ssim = [], []
    for camera, gt in zip(cameras, images):
        rgb, _ = field.render(camera, size, size)
        target = composite(gt)  # over white, like the field's renders
        scores_psnr.append(psnr(rgb, target))
        scores_ssim.append(ssim(rgb, target))
    return {
        "psnr_db": round(float(np.mean(scores_psnr)), 2),
        "psnr_db_per_view": [round(s, 2) for s in scores_psnr],
        "ssim": round(float(np.mean(scores_ssim)), 4),
    }


def mesh_figures(run: Run, mesh) -> dict:
    """Chamfer distance / F-score of the exported mesh against the ground truth, and the export time.

    Uses the mesh stage (``nerf.export``, ``nerf.metrics``) with its default options;
    ``scripts/bench_mesh.py --run RUN`` gives the mesh stage's full comparison on the same run.
    """
    try:
        from nerf.export import ExportConfig, export_mesh
        from nerf.metrics import chamfer_fscore, normal_angle_error
        from nerf.turntable import load_head_mesh
    except ImportError as exc:
        return {"mesh": f"not measured (mesh stage not available: {exc})"}
    start = time.perf_counter()
    info = export_mesh(run, ExportConfig(), force=True)
    seconds = time.perf_counter() - start
    surface = load_head_mesh(run.path("mesh", "head.glb"))
    geometry = chamfer_fscore(surface, mesh, threshold=0.01)
    normals = normal_angle_error(surface, mesh)
    return {
        "mesh": {
            "export_seconds": round(seconds, 1),
            **{k: round(info[k], 1) for k in ("surface_s", "unwrap_s", "bake_s") if k in info},
            "surface": info.get("surface"),
            "triangles": info.get("triangles"),
            "chamfer_pct_diag": round(float(geometry["chamfer_pct_diag"]), 3),
            "fscore_1pct": round(float(geometry["fscore"]), 3),
            "normal_angle_mean_deg": round(normals["mean_deg"], 2),
            "normal_angle_over_30_pct": round(normals["over_30_pct"], 2),
        }
    }


def write_prior(run: Run, mesh, kind: str) -> None:
    """``proxy/head.ply`` for the warm start: the ground truth (``exact``), a stand-in (``perturbed``) or none."""
    import trimesh

    from portrait3d.run import atomic_write_bytes

    if kind == "none":
        return
    if not hasattr(mesh.visual, "vertex_colors"):  # a textured ground truth (--proxy-run): colours per vertex
        colours = mesh.visual.to_color().vertex_colors
        mesh = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=colours)  # the UV seam's vertices merged
    prior = mesh if kind == "exact" else synthetic.proxy_of(mesh)
    atomic_write_bytes(run.path("proxy", "head.ply"), trimesh.exchange.ply.export_ply(prior, encoding="binary"))


def with_setting(config, item: str):
    """A copy of the (nested) dataclass ``config`` with ``item`` = "a.b.c=value" applied."""
    name, value = item.split("=", 1)
    head, _, rest = name.partition(".")
    current = getattr(config, head)
    if rest:
        return dataclasses.replace(config, **{head: with_setting(current, f"{rest}={value}")})
    parsed = value in ("1", "true", "True") if isinstance(current, bool) else type(current)(value)
    return dataclasses.replace(config, **{head: parsed})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the benchmark run (replaced)")
    parser.add_argument("--preset", default="fast", choices=sorted(fit.PRESETS))
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--proxy-run", default=None, help="use the textured proxy head of this (preprocessed) run")
    parser.add_argument("--iterations", type=int, default=None, help="override the preset's steps")
    parser.add_argument("--mesh", action="store_true", help="also export the mesh and measure Chamfer / F-score")
    parser.add_argument("--size", type=int, default=512, help="render size of the scene (default: 512)")
    parser.add_argument("--max-seconds", type=float, default=None, help="override the preset's time budget")
    parser.add_argument("--rays-per-batch", type=int, default=None, help="override the preset's rays per step")
    parser.add_argument("--image-size", type=int, default=None, help="override the preset's training image size")
    parser.add_argument("--prepare-only", action="store_true", help="write the scene (views, held-out) and stop")
    parser.add_argument("--scene", default=None, help="scene from --prepare-only: copied to --out")
    parser.add_argument("--json", default=None, help="also write the report to this JSON file")
    parser.add_argument(
        "--prior", default="none", choices=["none", "exact", "perturbed"], help="proxy head for the warm start"
    )
    parser.add_argument("--inconsistent", action="store_true", help="alter the training views like diffusion")
    parser.add_argument(
        "--perturb",
        default=",".join(synthetic.PERTURBATIONS),
        help="with --inconsistent: which perturbations, comma-separated (default: all of "
        f"{','.join(synthetic.PERTURBATIONS)}; one alone for an ablation)",
    )
    parser.add_argument(
        "--views",
        choices=["proxy", "generated"],
        default=None,
        help="fit as make-asset fits the proxy's own renders or generated views (FitConfig.for_views); default: "
        "generated with --inconsistent or --prior perturbed (the proxy is not the views' head), else proxy",
    )
    parser.add_argument("--view-shift", action="store_true", help="learn a per-view image shift (FitConfig)")
    parser.add_argument(
        "--outlier-sigmas", type=float, default=None, help="override FitConfig.outlier_sigmas (0: the ratio test alone)"
    )
    parser.add_argument("--appearance-penalty", type=float, default=None, help="override FitConfig.appearance_penalty")
    parser.add_argument("--cold", action="store_true", help="no warm start even with a --prior")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a FitConfig field, dotted for nested ones (e.g. volume.field.view_degree=1; bools 0/1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="fit seed (and of the simulated inconsistency)")
    args = parser.parse_args()

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    cameras = synthetic.orbit_cameras(18, pitches=(0.0, 20.0))
    held = synthetic.held_out_indices(len(cameras), 4)
    train = [c for i, c in enumerate(cameras) if i not in held]
    start = time.perf_counter()
    scene_info: dict = {}
    if args.scene:
        shutil.copytree(args.scene, out)
        run, mesh, scene_name = Run(out), None, f"prepared scene {args.scene}"
        held_cameras, held_images = read_held_out(out)
    else:
        mesh, scene_name = ground_truth_mesh(args.proxy_run)
        alter = None
        perturbs = [p for p in args.perturb.split(",") if p]
        if set(perturbs) - set(synthetic.PERTURBATIONS):
            parser.error(f"--perturb: expected some of {','.join(synthetic.PERTURBATIONS)}, got {args.perturb}")
        if args.inconsistent:

            def alter(images):
                altered, record = synthetic.simulate_diffusion(images, seed=args.seed, perturbations=perturbs)
                scene_info["inconsistency"] = record
                return altered

        run = synthetic.write_scene(out, mesh, train, size=args.size, alter=alter)
        write_prior(run, mesh, args.prior)
        held_cameras = [cameras[i] for i in held]
        held_images = synthetic.render_views(mesh, held_cameras, args.size)
        if args.prepare_only:
            write_held_out(out, held_cameras, held_images)
            print(f"scene written to {out}")
            return
    scene_seconds = time.perf_counter() - start
    dataset.write_transforms(run)

    views = args.views or ("generated" if args.inconsistent or args.prior == "perturbed" else "proxy")
    config = dataclasses.replace(fit.PRESETS[args.preset].for_views(views == "generated"))  # a copy to change
    if args.iterations:
        config.iterations = args.iterations
    if args.max_seconds is not None:
        config.max_seconds = args.max_seconds
    if args.image_size:
        config.image_size = args.image_size
    if args.rays_per_batch:
        config.rays_per_batch = args.rays_per_batch
    config.seed = args.seed
    if args.view_shift:
        config.view_shift = True
    if args.appearance_penalty is not None:
        config.appearance_penalty = args.appearance_penalty
    if args.outlier_sigmas is not None:
        config.outlier_sigmas = args.outlier_sigmas
    for item in args.set:
        try:
            config = with_setting(config, item)
        except (ValueError, AttributeError) as error:
            parser.error(f"--set {item}: {error}")
    if args.cold:
        config.warm_start = dataclasses.replace(config.warm_start, enabled=False)
    device = fit.resolve_device(args.device).type
    start = time.perf_counter()
    info = fit.fit(run, config, device)
    fit_seconds = time.perf_counter() - start
    field = fit.load_field(out, device)
    quality = held_out_metrics(field, held_cameras, config.image_size, held_images)

    device_name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    report = {
        "scene": scene_name,
        "prior": args.prior,
        "fit_for": f"{views} views (FitConfig.for_views)",
        "warm_start": info.get("warm_start") is not None,
        "inconsistent": scene_info.get("inconsistency", False),
        "views": {"train": len(train), "held_out": len(held), "render_size": args.size, "fit_size": config.image_size},
        "preset": args.preset,
        "device": device_name,
        "scene_render_seconds": round(scene_seconds, 1),
        "fit_seconds": round(fit_seconds, 1),
        "fit": info,
        "held_out": quality,
        **(mesh_figures(run, mesh) if args.mesh and mesh is not None else {"mesh": "not measured (pass --mesh)"}),
    }
    progress.info(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    print(
        f"held-out PSNR {quality['psnr_db']:.2f} dB, SSIM {quality['ssim']:.4f} at {config.image_size}px; "
        f"fit {fit_seconds:.1f} s ({info['iterations']} steps) on {device_name}"
    )


if __name__ == "__main__":
    main()
