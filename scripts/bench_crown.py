"""Benchmark of the crown's shape: lobes ("horns") at the hair volume's upper corners, and the fit to the photo.

For each photo the real preprocess stage runs, then the head's geometry
(:func:`portrait3d.proxy.head.head_shape`). Printed, as a markdown table:

- IoU at the photo's camera (the proxy's silhouette against the photo's head mask, rows above the chin);
- the crown's overhang seen from the front (yaw 0) and the back (yaw 180): over the rows from the top of
  the head down to the cranium's centre, the largest amount by which a row above is wider than a row below,
  as a share of the head's width. A dome has none; two lobes over narrower temples have some;
- the dome's cuts (model units) recorded by :func:`portrait3d.proxy.shape.crown_dome`.

    python scripts/bench_crown.py                                           # the sample and skimage's camera()
    python scripts/bench_crown.py --photos ../shared/eval/photos/anime_man_manhwa.jpg
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "samples" / "astronaut.jpg"


def overhang(silhouette: np.ndarray, centre_row: float) -> float:
    """Largest (width of a wider row above) - (width of a row), rows from the top to ``centre_row``, / the
    largest width there: (S, S) bool -> float."""
    filled = silhouette.any(axis=1)
    width = np.where(filled, silhouette.shape[1] - np.argmax(silhouette[:, ::-1], 1) - np.argmax(silhouette, 1), 0)
    top = int(np.argmax(filled))
    rows = width[top : max(top + 1, int(centre_row))].astype(float)
    return float((np.maximum.accumulate(rows) - rows).max() / max(rows.max(), 1.0))


def _camera_photo(folder: Path) -> Path:
    from PIL import Image
    from skimage import data

    path = folder / "skimage_camera.png"
    Image.fromarray(np.repeat(data.camera()[..., None], 3, axis=-1)).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, nargs="*", help="photos (default: the sample and skimage's camera)")
    parser.add_argument("--size", type=int, default=256, help="render size of the front and back silhouettes")
    args = parser.parse_args()

    from portrait3d import progress
    from portrait3d.cameras import camera_from_angles
    from portrait3d.preprocess.pipeline import preprocess
    from portrait3d.proxy.head import head_shape
    from portrait3d.proxy.shape import silhouette_iou
    from portrait3d.proxy.stage import read_inputs
    from portrait3d.proxy.template import CRANIUM_CENTRE, model_to_world
    from portrait3d.render import MeshRenderer
    from portrait3d.run import Run

    progress.set_verbosity(progress.QUIET)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores")
    print("| photo | IoU (photo camera) | overhang front | overhang back | dome cut | overhang cut |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        photos = args.photos or [SAMPLE, _camera_photo(Path(tmp))]
        for index, photo in enumerate(photos):
            root = Path(tmp) / f"run{index}"
            preprocess(photo, root)
            inputs = read_inputs(Run(root, create=False))
            fit, seg, shape = head_shape(inputs.photo, inputs.camera, inputs.mask, inputs.landmarks)
            renderer = MeshRenderer(shape.mesh)
            scale, offset = model_to_world()  # the fit's placement of the template (before its face warp)
            centre_world = CRANIUM_CENTRE * scale * fit.scale + offset * fit.scale + np.asarray(fit.shift)
            figures = []
            for yaw in (0.0, 180.0):
                camera = camera_from_angles(yaw)
                silhouette = np.isfinite(renderer.render_depth(camera, args.size))
                centre, _ = camera.project(centre_world[None], args.size, args.size)
                figures.append(overhang(silhouette, centre[0, 1]))
            iou = silhouette_iou(shape.mesh, inputs.camera, seg) if seg is not None else float("nan")
            cuts = [shape.info.get(k, "-") for k in ("crown_dome_cut", "crown_overhang_cut")]
            print(f"| {photo.name} | {iou:.3f} | {figures[0]:.3f} | {figures[1]:.3f} | {cuts[0]} | {cuts[1]} |")


if __name__ == "__main__":
    main()
