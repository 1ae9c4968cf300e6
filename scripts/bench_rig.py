"""Benchmark of the rig (issue #23) on finished runs: what the rigged head does, per run.

For each RUN (a run folder whose ``mesh/head.glb`` export-mesh wrote; ``make-asset --target avatar``
or ``export-mesh --target avatar`` also wrote ``avatar/head.glb``, else the rig is built here into a
temporary folder) it prints one table row:

- neutral: largest distance of the rigged head at weights 0 from the static asset's surface (mm), away
  from the lips / anywhere (a mouth the photo shows open is closed: that is the second figure);
- blink: share of the left eye opening where the eyeball shows at rest, and that the lids cover at
  ``eyeBlinkLeft`` = 1 (frontal render), and how far from the lid contours the blink moves anything (mm);
- jaw: incisor gap at ``jawOpen`` = 1 (mm); the largest move of any vertex by any blendshape (mm);
- the rig's time (s), triangles and GLB size.

    python scripts/bench_rig.py RUN [RUN ...] [--sheet docs/rig_expressions.png]
    python scripts/bench_rig.py --from-proxy RUN --work /tmp/rig-proxy [--sheet ...]

``--from-proxy`` measures the rig on a clean surface: a copy of RUN (in ``--work``) whose
``mesh/`` export-mesh writes (avatar target) from the run's proxy head (``proxy/head.ply``, the head
the proxy generator's views show) instead of the NeRF, then the rig stage.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def measure(run: Path, work: Path) -> dict:
    from portrait3d.rig import checks
    from portrait3d.rig import landmarks3d as lm
    from portrait3d.rig.build import face_of, rig_head
    from portrait3d.rig.gltf import read_rig, read_static

    camera = json.loads((run / "input" / "camera.json").read_text())
    photo = np.asarray(Image.open(run / "input" / "aligned.png").convert("RGB"))
    glb = run / "avatar" / "head.glb"
    start = time.perf_counter()
    if not glb.exists():
        glb = work / f"{run.name}.glb"
        rig_head(run / "mesh" / "head.glb", glb, camera, photo)
    seconds = time.perf_counter() - start
    static = read_static(run / "mesh" / "head.glb")
    face = face_of(static, camera, photo.shape[0])
    rig = read_rig(glb)
    cover = checks.blink_coverage(rig, face, "left")
    lips = face.curve(lm.LIPS_UPPER_INNER + lm.LIPS_LOWER_INNER)
    upper, lower = face.lids("left")
    moves = checks.largest_moves(rig)
    worst = max(moves, key=moves.get)
    return {
        "run": run.name,
        "neutral_mm": 1000 * checks.neutral_offset(rig, static, lips, 0.3 * face.interocular),
        "mouth_closed_mm": 1000 * checks.neutral_offset(rig, static),
        "eyeball_visible": cover["eyeball_visible_at_rest"],
        "blink_covers": cover["covered_by_lids"],
        "blink_reach_mm": 1000 * checks.reach_from(rig, "eyeBlinkLeft", np.concatenate([upper, lower])),
        "incisors_mm": 1000 * checks.incisor_opening(rig),
        "largest_move_mm": 1000 * moves[worst],
        "largest_move_by": worst,
        "rig_s": seconds,
        "triangles": sum(len(m["faces"]) for m in rig.meshes),
        "glb_mb": glb.stat().st_size / 1e6,
        "glb": glb,
    }


def from_proxy(run: Path, work: Path) -> Path:
    """A copy of ``run`` with ``mesh/`` exported (avatar target) from its proxy head and rigged."""
    import dataclasses
    import shutil

    import trimesh

    from nerf.analytic import MeshField
    from nerf.export import export_mesh
    from portrait3d.presets import PRESETS
    from portrait3d.rig.stage import RigOptions, rig_run
    from portrait3d.run import Run

    if work.exists():
        shutil.rmtree(work)
    copy = Run(work)  # a new run folder, then the parts of ``run`` the export and the rig read
    for part in ("input", "proxy", "views"):
        shutil.copytree(run / part, work / part)
    export = PRESETS["fast"].export
    config = dataclasses.replace(
        export,
        target="avatar",
        mesh=dataclasses.replace(export.mesh, triangles=12_000),
        bake=dataclasses.replace(export.bake, texture_size=1024),
    )
    export_mesh(copy, config, field_model=MeshField(trimesh.load(run / "proxy" / "head.ply", process=False)))
    rig_run(copy, RigOptions(lods=2))
    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--from-proxy", action="store_true", help="rig each run's proxy head exported (see above)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-rig-proxy"), help="folder for --from-proxy")
    parser.add_argument("--sheet", type=Path, default=None, help="expression contact sheet of the first run (PNG)")
    args = parser.parse_args()
    print(
        "| run | neutral: away from lips / anywhere (mm) | eyeball shows / lids cover (blink L) | "
        "blink reach (mm) | incisors (mm) | largest move (mm) | rig s | triangles | GLB MB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="bench-rig-") as work:
        for i, run in enumerate(args.runs):
            if args.from_proxy:
                run = from_proxy(run, args.work / run.name)
            r = measure(run, Path(work))
            print(
                f"| {r['run']} | {r['neutral_mm']:.4f} / {r['mouth_closed_mm']:.1f} | "
                f"{r['eyeball_visible']:.0%} / {r['blink_covers']:.0%} | "
                f"{r['blink_reach_mm']:.1f} | {r['incisors_mm']:.1f} | {r['largest_move_mm']:.1f} "
                f"({r['largest_move_by']}) | {r['rig_s']:.1f} | {r['triangles']} | {r['glb_mb']:.2f} |"
            )
            if i == 0 and args.sheet is not None:
                from portrait3d.rig.gltf import read_rig
                from portrait3d.rig.sheet import expression_sheet

                Image.fromarray(expression_sheet(read_rig(r["glb"]), 320)).save(args.sheet)


if __name__ == "__main__":
    main()
