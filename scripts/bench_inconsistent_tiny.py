"""Tiny-scale ablation of the simulated diffusion inconsistency: held-out PSNR of a short fit, in a minute.

A 16-view ring (two rings of 9, two held out) of the procedural head rendered at 2×SIZE, altered by
:func:`nerf.synthetic.simulate_diffusion` with the chosen perturbations, fitted at SIZE with the fast
preset's settings (fewer steps, 512 rays) from the stand-in proxy head; prints the held-out PSNR of the
field (no per-view codes) against clean renders, the train PSNR and the views weighed down.
For the real figures use ``scripts/bench_nerf.py --inconsistent --perturb ...``.

Usage::

    python scripts/bench_inconsistent_tiny.py --out DIR [--size 64] [--iterations 200] [--perturb clean|all|wrong,...]
        [--set outlier_sigmas=0 --set view_shift=1 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import trimesh
from bench_nerf import held_out_metrics, with_setting  # the scripts folder is on sys.path when a script runs

from nerf import dataset, fit, synthetic
from nerf.warm_start import WarmStartConfig
from portrait3d.run import atomic_write_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the run")
    parser.add_argument("--size", type=int, default=64, help="fit size (views are rendered at twice this)")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--perturb", default="all", help="clean, all, or some of colour,jitter,detail,wrong")
    parser.add_argument(
        "--set", action="append", default=[], help="FitConfig field=value, dotted for nested ones (bool fields: 0/1)"
    )
    args = parser.parse_args()

    perturb = {"clean": [], "all": list(synthetic.PERTURBATIONS)}.get(args.perturb, args.perturb.split(","))
    mesh = synthetic.head_mesh(subdivisions=5)
    cameras = synthetic.orbit_cameras(9, pitches=(0.0, 20.0))
    held = synthetic.held_out_indices(len(cameras), 2)
    train = [c for i, c in enumerate(cameras) if i not in held]
    record: dict = {}

    def alter(images):
        if not perturb:
            return images
        altered, info = synthetic.simulate_diffusion(images, seed=0, perturbations=perturb)
        record.update(info)
        return altered

    run = synthetic.write_scene(args.out, mesh, train, size=2 * args.size, alter=alter)
    prior = trimesh.exchange.ply.export_ply(synthetic.proxy_of(mesh), encoding="binary")
    atomic_write_bytes(run.path("proxy", "head.ply"), prior)
    dataset.write_transforms(run)
    config = dataclasses.replace(
        fit.PRESETS["fast"],
        image_size=args.size,
        rays_per_batch=512,
        iterations=args.iterations,
        warm_start=WarmStartConfig(steps=40, points_per_step=4096),
    )
    for item in args.set:
        config = with_setting(config, item)
    start = time.perf_counter()
    info = fit.fit(run, config, "cpu")
    seconds = time.perf_counter() - start
    field = fit.load_field(args.out)
    held_cameras = [cameras[i] for i in held]
    # The truth at the views' 2×SIZE, box-filtered to SIZE as the training views are (not aliased).
    truths = synthetic.render_views(mesh, held_cameras, 2 * args.size)
    held_psnr = held_out_metrics(field, held_cameras, args.size, truths)["psnr_db"]
    weighed_down = {i: w for i, w in enumerate(info["view_weights"] or []) if w < 1}
    print(
        f"{args.perturb} {' '.join(args.set)}: held-out {held_psnr:.2f} dB, train {info['train_psnr']} dB, "
        f"fit {seconds:.0f} s; wrong views {record.get('wrong_views')}, weighed down {weighed_down}"
    )


if __name__ == "__main__":
    main()
