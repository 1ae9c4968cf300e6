"""Benchmark of the proxy head's shape: silhouette IoU against the photo's head mask, left-right symmetry, time.

For each photo (the bundled sample, skimage's astronaut and camera, and the
mirror image of each) the real preprocess stage runs, then the head's
geometry (:func:`portrait3d.proxy.head.head_shape`). Printed, as a markdown table:

- IoU at the photo's camera: the proxy's silhouette against the photo's head
  mask (``HeadSegmentation.head``: the person mask above the chin, clothes
  left out), rows above the chin landmark;
- mirror IoU: the proxy of the mirrored photo rendered at the mirrored orbit
  cameras (yaw -> -yaw) and flipped back, against the proxy of the photo, the
  worst over yaw 0, 45, 90, 135, 180, -45, -90;
- the face's depth warp's bends: how many edges of the fitted template the warp onto the landmarks' 3D cloud
  bends by more than 20 degrees beyond the image-plane fit's, and the largest bend (a fold of the surface over
  itself reads as 90-180 degrees);
- seconds of preprocess and of the head's geometry.

    python scripts/bench_proxy_shape.py
    python scripts/bench_proxy_shape.py --photos data/samples/astronaut.jpg
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "samples" / "astronaut.jpg"


def _skimage_photos(folder: Path) -> list[Path]:
    from PIL import Image
    from skimage import data

    paths = []
    for name in ("astronaut", "camera"):
        image = getattr(data, name)()
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        path = folder / f"skimage_{name}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def _mirror(path: Path, folder: Path) -> Path:
    from PIL import Image, ImageOps

    out = folder / f"{path.stem}_mirror.png"
    ImageOps.mirror(Image.open(path).convert("RGB")).save(out)
    return out


def _shape(photo: Path, folder: Path):
    from portrait3d.preprocess.pipeline import preprocess
    from portrait3d.proxy.head import head_shape
    from portrait3d.proxy.stage import read_inputs
    from portrait3d.run import Run

    run_dir = folder / f"run_{photo.stem}"
    start = time.perf_counter()
    preprocess(photo, run_dir)
    seconds_pre = time.perf_counter() - start
    inputs = read_inputs(Run(run_dir, create=False))
    start = time.perf_counter()
    _, seg, shape = head_shape(inputs.photo, inputs.camera, inputs.mask, inputs.landmarks)
    seconds_shape = time.perf_counter() - start
    return inputs, seg, shape, seconds_pre, seconds_shape


BEND = 20.0
"""Degrees by which the depth warp must bend an edge of the fitted template to count (see :func:`_depth_bends`)."""


def _depth_bends(inputs) -> tuple[int, float]:
    """Edges the face's depth warp bends by more than :data:`BEND` degrees, and the largest bend (degrees)."""
    import trimesh

    from portrait3d.proxy.fit import fit_template
    from portrait3d.proxy.template import template_head

    template = template_head()
    size = inputs.photo.shape[0]
    angles = []
    for face_depth in (False, True):
        fit = fit_template(template, inputs.camera, size, inputs.landmarks, face_depth=face_depth)
        angles.append(trimesh.Trimesh(fit.vertices, template.mesh.faces, process=False).face_adjacency_angles)
    bend = np.degrees(angles[1] - angles[0])
    return int((bend > BEND).sum()), float(bend.max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, nargs="*", help="photos (default: the sample and skimage's portraits)")
    args = parser.parse_args()

    from portrait3d import progress
    from portrait3d.proxy.shape import mirror_iou, silhouette_iou
    from portrait3d.proxy.template import template_head

    progress.set_verbosity(progress.QUIET)
    template_head()  # built once per process; not part of a photo's time
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores")
    print("| photo | yaw | IoU (photo camera, above chin) | IoU mirrored photo | mirror IoU (worst of 7 yaws) |"
          f" depth warp: edges bent > {BEND:.0f} deg, largest | preprocess s | shape s |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photos = args.photos or [SAMPLE, *_skimage_photos(folder)]
        for photo in photos:
            inputs, seg, shape, pre, seconds = _shape(photo, folder)
            m_inputs, m_seg, m_shape, _, _ = _shape(_mirror(photo, folder), folder)
            iou = silhouette_iou(shape.mesh, inputs.camera, seg)
            m_iou = silhouette_iou(m_shape.mesh, m_inputs.camera, m_seg)
            mirror = mirror_iou(shape.mesh, m_shape.mesh)
            yaw = inputs.camera.angles(target=(0.0, 0.0, 0.0)).yaw
            bent, largest = _depth_bends(inputs)
            print(f"| {photo.name} | {yaw:.1f} | {iou:.3f} | {m_iou:.3f} | {mirror:.3f} | {bent}, {largest:.0f} deg |"
                  f" {pre:.1f} | {seconds:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
