"""Screenshots of a run's splat files in Debian's chromium: Spark (three.js) on head.spz and head.ply,
three.js's glTF loader on head.glb, and the project's own render of the same Gaussians, side by side.

Usage::

    python scripts/splat_screenshot.py RUN --out splat.png [--yaw 30] [--pitch 5] [--size 384]

This is how ``docs/splat_browser.png`` is made (the bundled sample's fast-preset run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from portrait3d.cameras import camera_from_angles
from portrait3d.run import Run
from portrait3d.splat import ply
from portrait3d.splat.browser import camera_query, file_camera, screenshots, serve
from portrait3d.splat.rasterize import render_numpy
from portrait3d.splat.stage import mesh_placement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder with splat/ (from export-splat)")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--yaw", type=float, default=30.0)
    parser.add_argument("--pitch", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--node-modules", default=str(Path(__file__).resolve().parents[1] / ".tools" / "node_modules"))
    args = parser.parse_args()

    run = Run(args.run, create=False)
    origin, scale = mesh_placement(run)
    camera = camera_from_angles(args.yaw, args.pitch)
    query = camera_query(camera, origin, scale)
    files = {name: run.path("splat", name) for name in ("head.spz", "head.ply", "head.glb")}
    pages = [
        {"file": "head.spz", "client": "spark", **query},
        {"file": "head.ply", "client": "spark", **query},
        {"file": "head.glb", "client": "gltf", **query},
    ]
    with serve(files, Path(args.node_modules)) as url:
        shots = screenshots(url, pages, args.chromium, args.size)
    reference = render_numpy(ply.read_ply(files["head.ply"]), file_camera(camera, origin, scale), args.size, args.size)
    row = [picture if picture is not None else np.zeros_like(reference) for picture, _ in shots] + [reference]
    for (_, state), page in zip(shots, pages):
        print(f"{page['file']} ({page['client']}): {state}")
    Image.fromarray(np.concatenate(row, axis=1)).save(args.out)
    print(f"wrote {args.out}: Spark on head.spz, Spark on head.ply, three.js glTF on head.glb, our rasteriser")


if __name__ == "__main__":
    main()
