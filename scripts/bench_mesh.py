"""Benchmark of export-mesh against ground truth: geometry (Chamfer, F-score), texture (held-out PSNR/SSIM), time.

The ground truth is the procedural head of :mod:`nerf.synthetic` seen by 36
orbit cameras (two rings), 4 of them held out. The field is either the head's
own exact field (``--field oracle``: measures the mesh pipeline alone) or a
fitted NeRF (``--run RUN``: a run whose ``nerf/`` was fitted on the training
views of that scene, e.g. by ``scripts/bench_nerf.py``). Both texture sources
(projection of the views, radiance queries of the field) and both surface
extractions (fused depth maps, density iso-surface) are exported and compared;
the figures are printed as a markdown table.

    python scripts/bench_mesh.py                       # oracle field, 256² views
    python scripts/bench_mesh.py --run runs/bench-nerf # a fitted field
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from nerf import synthetic
from nerf.analytic import MeshField
from nerf.export import ExportConfig, export_mesh
from nerf.mesh import BakeConfig, MeshConfig
from nerf.metrics import chamfer_fscore, mesh_render_scores
from nerf.turntable import load_head_mesh
from portrait3d.run import Run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a run with a fitted nerf/ on the synthetic head's training views")
    parser.add_argument("--size", type=int, default=256, help="view size in pixels (default: 256)")
    parser.add_argument("--triangles", type=int, default=50_000)
    parser.add_argument("--texture", type=int, default=2048)
    parser.add_argument("--resolution", type=int, default=192)
    parser.add_argument(
        "--surface", choices=("depth", "density", "both"), default="both", help="surface extraction(s) to compare"
    )
    parser.add_argument("--threshold", type=float, default=None, help="density iso-level (default: from the masks)")
    parser.add_argument(
        "--bake-size",
        type=int,
        action="append",
        help="bake the views' colours at this size, then resize to --texture (repeat to compare; default: --texture)",
    )
    args = parser.parse_args()
    bake_sizes = args.bake_size or [None]

    truth = synthetic.head_mesh()
    cams = synthetic.orbit_cameras()
    held = set(synthetic.held_out_indices(len(cams)))
    train = [c for i, c in enumerate(cams) if i not in held]
    references = [
        (cams[i], image)
        for i, image in zip(sorted(held), synthetic.render_views(truth, [cams[i] for i in sorted(held)], args.size))
    ]

    if args.run:
        from nerf.fit import load_field

        run = Run(args.run, create=False)
        field, label = load_field(run.root), f"fitted ({args.run})"
    else:
        run = synthetic.write_scene(Path(tempfile.mkdtemp(prefix="bench-mesh-")) / "run", truth, train, args.size)
        field, label = MeshField(truth), "oracle (exact field of the ground-truth mesh)"

    print(f"field: {label}; {len(train)} training views, {len(held)} held out, {args.size}²")
    print(
        "| surface | texture source | triangles | texture (baked at) | Chamfer (% diag) | F-score @1% "
        "| held-out PSNR (dB) | SSIM | export s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    surfaces = ("depth", "density") if args.surface == "both" else (args.surface,)
    # Geometry is compared for each surface method, texture sources on the default (depth) surface.
    runs = [(s, "views", b) for s in surfaces for b in bake_sizes] + [(surfaces[0], "field", None)]
    for surface, source, bake_size in runs:
        config = ExportConfig(
            mesh=MeshConfig(
                resolution=args.resolution, triangles=args.triangles, threshold=args.threshold, surface=surface
            ),
            bake=BakeConfig(texture_size=args.texture, bake_size=bake_size),
            texture_source=source,
        )
        start = time.perf_counter()
        info = export_mesh(run, config, field_model=field, force=True)
        seconds = time.perf_counter() - start
        mesh = load_head_mesh(run.path("mesh", "head.glb"))
        geometry = chamfer_fscore(mesh, truth)
        scores = mesh_render_scores(mesh, references)
        print(
            f"| {info['surface']} | {source} | {info['triangles']} | "
            f"{args.texture}² ({config.bake.baked_at(args.texture)}²) | "
            f"{geometry['chamfer_pct_diag']:.3f} | "
            f"{geometry['fscore']:.3f} | {scores['psnr']:.2f} | {scores['ssim']:.4f} | {seconds:.1f} "
            f"(surface {info['surface_s']:.1f}, unwrap {info['unwrap_s']:.1f}, bake {info['bake_s']:.1f}) |"
        )


if __name__ == "__main__":
    main()
