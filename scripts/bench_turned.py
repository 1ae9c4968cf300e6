"""Benchmark of turned faces: does the photo's mid-line land on the head's mirror plane?

For each photo the real preprocess stage runs, then the proxy head
(:func:`portrait3d.proxy.head.build_head`). Printed, as a markdown table: the
photo's yaw and how far beside the head's mirror plane the photo's mid-line
landmarks (forehead, nose ridge, lips, chin) land, in millimetres (mean of the
absolute values and the largest), projected onto the head as it is (the
projection before branch ``turned``) and onto the head posed as the photo's
camera saw it (what the texture uses now). The texture mirrors the photo across
that plane, so a nose that lands ``d`` beside it is doubled ``2 d`` apart.

With ``--sheet FILE`` it also writes one row per photo (aligned photo, renders
at yaw -45, 0, 45); keep sheets of the eval photos out of the repository.

    python scripts/bench_turned.py                          # skimage's camera() (a profile)
    python scripts/bench_turned.py --photos ../shared/eval/photos/three_quarter_woman_left.jpg --sheet /tmp/t.png
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

SHEET_YAWS = (-45.0, 0.0, 45.0)


def skimage_camera(folder: Path) -> Path:
    """skimage's camera() as an RGB PNG in ``folder``."""
    from PIL import Image
    from skimage import data

    path = folder / "skimage_camera.png"
    Image.fromarray(np.repeat(data.camera()[..., None], 3, axis=-1)).save(path)
    return path


def measure(photo: Path, work: Path):
    """Preprocess ``photo`` into ``work`` and build its head: (yaw, offsets before, offsets now, head, inputs)."""
    from portrait3d.preprocess.pipeline import preprocess
    from portrait3d.proxy.stage import proxy_head, read_inputs
    from portrait3d.proxy.symmetry import midline_landing
    from portrait3d.run import Run

    preprocess(photo, work)
    inputs = read_inputs(Run(work, create=False))
    head = proxy_head(inputs)
    size = inputs.photo.shape[0]
    vertices, faces = np.asarray(head.geometry.vertices), np.asarray(head.geometry.faces)
    before = midline_landing(vertices, faces, inputs.camera, inputs.landmarks, size)
    now = midline_landing(vertices, faces, inputs.camera, inputs.landmarks, size, head.photo_vertices, head.mirror_x)
    return inputs.camera.angles(target=(0.0, 0.0, 0.0)).yaw, before, now, head, inputs


def sheet_row(head, inputs, size: int = 256) -> np.ndarray:
    """Aligned photo and the head's renders at :data:`SHEET_YAWS` on grey: (size, 4 size, 3) uint8."""
    import cv2

    from portrait3d.cameras import camera_from_angles
    from portrait3d.render import MeshRenderer

    renderer = MeshRenderer(head.textured)
    tiles = [cv2.resize(inputs.photo, (size, size), interpolation=cv2.INTER_AREA)]
    for yaw in SHEET_YAWS:
        rgba = renderer.render_rgba(camera_from_angles(yaw, 0.0), size).astype(np.float32)
        alpha = rgba[..., 3:] / 255.0
        tiles.append(np.round(rgba[..., :3] * alpha + 128.0 * (1 - alpha)).astype(np.uint8))
    return np.concatenate(tiles, axis=1)


def _figures(offsets: np.ndarray) -> str:
    """Mean |d| and max |d| in mm, and the misses."""
    d = np.abs(offsets[np.isfinite(offsets)]) * 1000
    missed = int((~np.isfinite(offsets)).sum())
    return f"{d.mean():.1f} / {d.max():.1f}" + (f" ({missed} missed)" if missed else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, nargs="*", default=[], help="photos (default: skimage's camera())")
    parser.add_argument("--sheet", type=Path, help="write a sheet PNG here (aligned photo, renders at -45, 0, 45)")
    args = parser.parse_args()

    from PIL import Image

    from portrait3d import progress

    progress.set_verbosity(progress.QUIET)
    rows, tiles = [], []
    with tempfile.TemporaryDirectory() as tmp:
        photos = list(args.photos) or [skimage_camera(Path(tmp))]
        for i, photo in enumerate(photos):
            yaw, before, now, head, inputs = measure(photo, Path(tmp) / f"run{i}")
            rows.append(f"| {photo.stem} | {yaw:.1f} | {_figures(before)} | {_figures(now)} |")
            if args.sheet:
                tiles.append(sheet_row(head, inputs))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores")
    print("| photo | yaw | mid-line beside the mirror plane (mean / max mm): head as it is | as the photo saw it |")
    print("| --- | --- | --- | --- |")
    print("\n".join(rows))
    if args.sheet:
        Image.fromarray(np.concatenate(tiles, axis=0)).save(args.sheet)


if __name__ == "__main__":
    main()
