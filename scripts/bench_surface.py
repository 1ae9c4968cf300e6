"""Compare surface settings on one fitted run of the synthetic head: Chamfer and normal-angle error.

    python scripts/bench_surface.py RUN [--blur 0 1 2] [--taubin 10 30] [--truncation 0.04 0.06] [--samples 30000]

RUN is a ``scripts/bench_nerf.py --out RUN`` folder (the procedural head of :mod:`nerf.synthetic` is the
ground truth). The field's depth maps at the views are rendered and fused once (the export's defaults);
then, for each ``--truncation`` (the fusion's band), marching cubes runs on the fused grid blurred by each
``--blur`` (in grid cells), followed by each number of Taubin passes, and each surface is measured against
the truth.
"""

from __future__ import annotations

import argparse
import time

import trimesh
from scipy import ndimage

from nerf import synthetic
from nerf.asset import depth_function, field_bounds, read_views
from nerf.cleanup import close_small_holes, keep_largest_component
from nerf.fit import load_field
from nerf.metrics import chamfer_fscore, normal_angle_error
from nerf.surface import MeshConfig, depth_maps, fuse_depth_maps, mesh_from_grid
from portrait3d.run import Run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a bench_nerf.py run folder (fitted)")
    parser.add_argument("--blur", type=float, nargs="+", default=[0.0, 1.0, 2.0], help="grid blur sigmas (cells)")
    parser.add_argument("--taubin", type=int, nargs="+", default=[10, 30], help="Taubin smoothing passes")
    parser.add_argument(
        "--truncation", type=float, nargs="+", default=[MeshConfig.truncation], help="fusion bands (world units)"
    )
    parser.add_argument("--samples", type=int, default=30_000, help="surface samples per side")
    args = parser.parse_args()

    run, truth = Run(args.run), synthetic.head_mesh()
    model = load_field(run.root)
    config, bounds = MeshConfig(), field_bounds(model)
    start = time.perf_counter()
    depths, masks, cameras = depth_maps(depth_function(model), read_views(run), config)
    print(f"depth maps: {time.perf_counter() - start:.1f} s; cell {(bounds[3] - bounds[0]) / config.resolution:.5f}")
    for truncation in args.truncation:
        start = time.perf_counter()
        grid = fuse_depth_maps(depths, masks, cameras, bounds, config.resolution, truncation)
        print(f"truncation {truncation:g}: fusion {time.perf_counter() - start:.1f} s")
        measure(grid, bounds, config, truth, args)


def measure(grid, bounds, config: MeshConfig, truth: trimesh.Trimesh, args) -> None:
    """Print Chamfer and normal angle of the surface of ``grid`` for each blur and Taubin setting."""
    for blur in args.blur:
        blurred = ndimage.gaussian_filter(grid, blur, mode="nearest") if blur > 0 else grid
        base = close_small_holes(keep_largest_component(mesh_from_grid(blurred, bounds, 0.0)), config.max_hole_edges)
        for passes in args.taubin:
            surface = base.copy()
            trimesh.smoothing.filter_taubin(surface, iterations=passes)
            chamfer = chamfer_fscore(surface, truth, samples=args.samples)["chamfer_pct_diag"]
            normals = normal_angle_error(surface, truth, samples=args.samples)
            print(
                f"blur {blur:g} cells, Taubin {passes}: Chamfer {chamfer:.3f} % of the diagonal, "
                f"normal angle {normals['mean_deg']:.2f} deg (over 30 deg: {normals['over_30_pct']:.2f} %)"
            )


if __name__ == "__main__":
    main()
