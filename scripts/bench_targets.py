"""Benchmark of export-mesh per target: file sizes, triangles and texture sizes per LOD, export time.

Exports a fitted run (its ``nerf/`` and ``views/``) once per target into a copy of the run, with each
target's own budget, and prints a markdown table. ``--figure`` renders the LODs of one export side by
side (textured above, untextured below) into a PNG.

    python scripts/bench_targets.py --run runs/astronaut                       # every target
    python scripts/bench_targets.py --run runs/astronaut --targets web,unity
    python scripts/bench_targets.py --figure docs/lods_readyplayerme.png --from runs/astronaut-rpm
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def export_target(run_dir: Path, target: str, work: Path) -> tuple[dict, float]:
    """Export ``run_dir``'s field for ``target`` into a copy under ``work``: (stage info, seconds)."""
    from nerf import blender
    from nerf.export import ExportConfig, export_mesh
    from nerf.mesh import BakeConfig, MeshConfig
    from nerf.targets import TARGETS
    from portrait3d.run import Run

    copy = work / target
    copy.mkdir(parents=True)
    for name in ("nerf", "views", "transforms.json", ".portrait3d"):
        source = run_dir / name
        if source.is_dir():
            shutil.copytree(source, copy / name)
        elif source.exists():
            shutil.copy2(source, copy / name)
    t = TARGETS[target]
    formats = t.formats if blender.available() else tuple(f for f in t.formats if f != "fbx")
    config = ExportConfig(
        mesh=MeshConfig(triangles=t.triangles),
        bake=BakeConfig(texture_size=t.texture_size),
        target=target,
        formats=formats,
        normal_map=target != "generic",
    )
    start = time.perf_counter()
    info = export_mesh(Run(copy, create=False), config, force=True)
    return info, time.perf_counter() - start


def lod_figure(mesh_dir: Path, out: Path, size: int = 384) -> None:
    """Every LOD GLB of ``mesh_dir`` at a three-quarter view, textured (top) and untextured (bottom)."""
    from PIL import Image, ImageDraw

    from nerf.turntable import load_head_mesh
    from portrait3d import cameras
    from portrait3d.render import MeshRenderer

    files = sorted(mesh_dir.glob("head.glb")) + sorted(mesh_dir.glob("head_lod*.glb"))
    # 45 degrees to the subject's left, a little farther than the orbit so the hair volume stays in frame.
    camera = cameras.orbit(8, pitch=10.0, radius=1.3 * cameras.PANOHEAD_RADIUS)[1]
    columns = []
    for path in files:
        mesh = load_head_mesh(path)
        renderer = MeshRenderer(mesh)
        rgba = renderer.render_rgba(camera, size).astype(np.float64) / 255.0
        textured = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
        shaded = renderer.render_shaded(camera, size, background=1.0)
        column = np.concatenate([np.uint8(np.round(textured * 255)), shaded], axis=0)
        image = Image.fromarray(column)
        ImageDraw.Draw(image).text((8, 8), f"{path.name}: {len(mesh.faces)} triangles", fill=(0, 0, 0))
        columns.append(np.asarray(image))
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(columns, axis=1)).save(out)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a run with nerf/ and views/ (e.g. from make-asset)")
    parser.add_argument("--targets", default=None, help="comma-separated targets (default: all)")
    parser.add_argument("--figure", type=Path, help="write the LOD picture of --from's mesh/ here")
    parser.add_argument("--from", dest="source", type=Path, help="run whose mesh/ the figure shows")
    parser.add_argument("--keep", type=Path, help="keep the exported copies in this folder (default: a temporary one)")
    args = parser.parse_args()
    if args.figure:
        lod_figure((args.source or args.run) / "mesh", args.figure)
    if not args.run:
        return
    from nerf.targets import TARGETS

    names = args.targets.split(",") if args.targets else list(TARGETS)
    rows = [
        "| target | LOD triangles | LOD textures | files (MB) | watertight | export s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-targets-") as work:
        for name in names:
            info, seconds = export_target(args.run, name, args.keep or Path(work))
            lods = info["lods"]
            sizes = ", ".join(f"{Path(k).name} {v / 1e6:.2f}" for k, v in info["file_sizes"].items())
            rows.append(
                f"| {name} | {' / '.join(str(lod['triangles']) for lod in lods)} | "
                f"{' / '.join(str(lod['texture_size']) for lod in lods)} | {sizes} | "
                f"{all(lod['watertight'] for lod in lods)} | {seconds:.0f} |"
            )
            print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
