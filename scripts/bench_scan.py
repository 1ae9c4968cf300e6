"""Benchmark of the proxy head's shape against a textured head scan rendered as a photo.

The scan (metres, +Y up, facing +Z) is turned by ``--turn`` degrees about the
vertical axis so that its face looks at the camera (the DanishStatues bust's
head is turned about 35 degrees to its right: ``--turn 35``), rendered as a
1024-pixel photo on a plain grey background through a camera about 0.42 m wide
at the head (wider than PanoHead's 0.25 m crop), and that photo goes through
the real preprocess stage and the proxy head (``portrait3d.proxy.head.build_head``:
the proxy generator's asset shape, and the diffusion generator's condition).
The head, in metres (0.4 m a PanoHead unit), is aligned to the scan by a
similarity from the photo's landmarks cast onto both surfaces, refined by ICP
above the chin that pairs the surfaces both ways (see ``portrait3d.proxy.scan_eval``). Printed:

- NoW-style face error: scan points within 95 mm of the nose tip, rigid face ICP,
  distance to the head's surface (median, mean; mm);
- head Chamfer above the chin (mm) and the scale error (head size / scan size - 1);
- the ears' Chamfer (mm): both surfaces within 30 mm of the head's uncovered ears' centres (pinna shape and place);
- the neck's girth 20 mm below the chin, the head's and the scan's (mm; the Chamfer stops at the chin);
- renders of both at yaw 0, +-30, +-60, +-90, 180 about the head: masked PSNR,
  SSIM and silhouette IoU (above the chin);
- seconds of preprocess + proxy head.

    python scripts/bench_scan.py ../shared/eval/scan/BustManWreath_ao_textured.glb --turn 35 --out /tmp/scan

``--photo-turn`` then turns the face that many degrees away from the camera for the photo (a three-quarter or
profile portrait of the scan); the figures are measured the same way and the views still go round the face
(yaw 0 is its frontal view), so the frontal face made from a turned photo is compared with the truth.

``--out`` keeps the photo, the run folder, the aligned head (``head_aligned.ply``, metres, the turned scan's
frame), a contact sheet (scan above, head below) and the two frontal views side by side (``frontal.png``;
``frontal_as_lit.png``: the scan lit as the photo was, the head, and the head aligned by the landmarks alone) there.

The last line compares the head's frontal view with the scan's lit from the photo's camera (PSNR over the head above
the chin, and dlib's distance): the head's texture carries the photo's light, so this is how well a turned photo's
unseen side is completed (for a frontal photo it is the frontal view's own figure). The second PSNR aligns the head by
the landmarks alone, its face on the scan's: the whole-head alignment lets a face slide to fit the skull (Lee
Perry-Smith's head is long for his eyes: 16 mm), which blurs details near the mid-line out of the first figure.

With dlib installed (the dev extra) it also prints two identity distances at yaw 0: the head's frontal view against
the scan's (the truth; a head made from a frontal photo of Lee Perry-Smith scores about 0.26), and the photo against
the scan's frontal view: what a perfect head would score on ``bench_identity.py``'s yaw-0 measure, which compares
the renders with the photo (for a turned photo that floor is well above 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

YAWS = (0.0, 30.0, -30.0, 60.0, -60.0, 90.0, -90.0, 180.0)


def load_scan(path: Path, turn_deg: float):
    import trimesh

    from portrait3d.proxy.scan_eval import turn

    loaded = trimesh.load(path)
    mesh = loaded.to_geometry() if isinstance(loaded, trimesh.Scene) else loaded
    return turn(mesh, turn_deg)


def _render_pair(scan, head, centre: np.ndarray, chin_height: float, size: int = 256):
    """Renders of scan and head at each yaw: masked PSNR, SSIM, IoU per yaw, and the images."""
    from portrait3d.cameras import Camera, look_at, normalised_intrinsics
    from portrait3d.render import MeshRenderer

    scores, rows = {}, ([], [])
    renderers = (MeshRenderer(scan), MeshRenderer(head))
    for yaw in YAWS:
        a = np.radians(yaw)
        position = centre + 1.08 * np.array([np.sin(a), 0.0, np.cos(a)])
        camera = Camera(look_at(position, centre), normalised_intrinsics(1.08 / 0.34))
        images, masks = [], []
        for renderer, row in zip(renderers, rows):
            hits = renderer.cast(camera, size, size)
            mask = hits.mask & (hits.points[..., 1] > chin_height - 0.03)
            light = np.clip(np.sum(hits.normals * -hits.view_dirs, axis=-1), 0.0, 1.0)
            rgb = renderer.colors(hits) * (0.35 + 0.65 * light)[..., None]
            rgb = np.where(mask[..., None], rgb, 0.45)
            images.append(rgb)
            masks.append(mask)
            row.append(np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8))
        union = masks[0] | masks[1]
        mse = float(np.mean((images[0] - images[1])[union] ** 2))
        scores[int(yaw)] = {
            "psnr": round(-10 * np.log10(max(mse, 1e-10)), 2),
            "ssim": round(_ssim(images[0], images[1]), 3),
            "iou": round(float((masks[0] & masks[1]).sum() / max(1, union.sum())), 3),
        }
    sheet = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    return scores, sheet


def _identity(truth: np.ndarray, made: np.ndarray, photo: np.ndarray) -> dict:
    """dlib identity distances at yaw 0: the head's frontal view against the scan's, and the photo (the aligned crop
    the head was made from) against the scan's frontal view: what a perfect head scores on ``bench_identity.py``'s
    yaw-0 measure, which compares renders with the photo (views of
    :func:`~portrait3d.proxy.scan_eval.frontal_views`). Empty without dlib (the dev extra)."""
    from portrait3d.proxy import identity_eval

    if not identity_eval.available():
        return {}
    model = identity_eval.IdentityModel()
    return {"head_vs_scan": model.distance(truth, made), "photo_vs_scan": model.distance(truth, photo)}


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=-1, data_range=1.0, gaussian_weights=True, sigma=1.5))


def measure(scan_path: Path, turn_deg: float, out: Path, head_height: float = 0.28, photo_turn: float = 0.0) -> dict:
    """Run the benchmark on one scan; returns the figures (also written to ``out/figures.json``)."""
    from PIL import Image

    from portrait3d.proxy.scan_eval import (
        CHIN,
        evaluate_scan,
        frontal_psnr_as_lit,
        frontal_views,
        head_centre,
        photo_light,
        turn,
    )

    scan = load_scan(scan_path, turn_deg + photo_turn)
    result = evaluate_scan(scan, head_centre(scan, head_height), out)
    result.head.export(out / "head_aligned.ply")
    np.save(out / "scan_landmarks.npy", result.scan_landmarks)
    figures = {"scan": scan_path.name, "turn_deg": turn_deg, "photo_turn_deg": photo_turn, **result.figures}
    figures["load"] = os.getloadavg()[0]
    # The views go round the face, not the photo's camera: both turned back so the face looks at yaw 0.
    facing, head = turn(scan, -photo_turn), turn(result.textured, -photo_turn)
    centre = head_centre(facing, head_height)
    figures["views"], sheet = _render_pair(facing, head, centre, result.scan_landmarks[CHIN, 1])
    Image.fromarray(sheet).save(out / "sheet.png")
    truth, made = frontal_views(facing, head, centre)
    Image.fromarray(np.concatenate([truth, made], axis=1)).save(out / "frontal.png")
    figures["identity_0"] = _identity(truth, made, result.photo)
    # The frontal views again with the scan lit as the photo was: how the unseen side of a turned photo is completed;
    # and with the head aligned by the landmarks alone, its face on the scan's (the whole-head alignment lets it slide).
    truth, ((psnr, made), (anchored_psnr, anchored)) = frontal_psnr_as_lit(
        facing, [head, turn(result.face_anchored, -photo_turn)], centre, photo_light(photo_turn),
        result.scan_landmarks[CHIN, 1],
    )  # fmt: skip
    Image.fromarray(np.concatenate([truth, made, anchored], axis=1)).save(out / "frontal_as_lit.png")
    figures["frontal_as_lit"] = {
        "psnr": round(psnr, 2),
        "psnr_face_anchored": round(anchored_psnr, 2),
        **_identity(truth, made, result.photo),
    }
    (out / "figures.json").write_text(json.dumps(figures, indent=1))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scan", type=Path, help="textured head scan (GLB/OBJ/PLY; metres, +Y up, facing +Z)")
    parser.add_argument("--turn", type=float, default=0.0, help="degrees to turn the scan so its face looks at +Z")
    parser.add_argument(
        "--photo-turn",
        type=float,
        default=0.0,
        help="then turn the face this many degrees away from the camera for the photo (a turned-face portrait)",
    )
    parser.add_argument("--head-height", type=float, default=0.28, help="metres from the top that hold the head")
    parser.add_argument("--out", type=Path, help="keep the photo, run and contact sheet here")
    args = parser.parse_args()

    from portrait3d import progress
    from portrait3d.proxy.scan_eval import NECK_BELOW_CHIN

    progress.set_verbosity(progress.QUIET)
    with tempfile.TemporaryDirectory() as tmp:
        f = measure(args.scan, args.turn, args.out or Path(tmp), args.head_height, args.photo_turn)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {f['load']:.2f}")
    print(
        f"| {f['scan']} | face median {f['face_median_mm']:.2f} mm | face mean {f['face_mean_mm']:.2f} mm "
        f"| head Chamfer {f['head_chamfer_mm']:.2f} mm | scale {f['scale_error_pct']:+.1f} % "
        f"| {f['seconds_preprocess_proxy']:.1f} s |"
    )
    ears = f.get("ear_chamfer_mm")
    print("ears: no uncovered ear" if ears is None else f"ears: Chamfer {ears:.2f} mm within 30 mm of their centres")
    neck, scan_neck = f.get("neck_girth_mm"), f.get("scan_neck_girth_mm")
    if neck is not None and scan_neck is not None:
        below, change = 1000 * NECK_BELOW_CHIN, neck / scan_neck - 1
        print(f"neck girth {below:.0f} mm below the chin: head {neck:.0f} mm, scan {scan_neck:.0f} mm ({change:+.1%})")
    print("| yaw | PSNR | SSIM | IoU |\n| --- | --- | --- | --- |")
    for yaw, s in f["views"].items():
        print(f"| {yaw} | {s['psnr']:.2f} | {s['ssim']:.3f} | {s['iou']:.3f} |")
    identity = f["identity_0"]
    if identity:
        cell = lambda d: "no face found" if d is None else f"{d:.3f}"  # noqa: E731
        print(
            f"identity at yaw 0 (dlib): head vs scan {cell(identity['head_vs_scan'])}; "
            f"photo vs scan {cell(identity['photo_vs_scan'])} (a perfect head's score against the photo)"
        )
    else:
        print("identity: not measured (dlib is not installed: pip install 'portrait3d[dev]')")
    lit = f["frontal_as_lit"]
    line = (
        f"frontal view against the scan lit as the photo was: PSNR {lit['psnr']:.2f} dB "
        f"({lit['psnr_face_anchored']:.2f} with the head anchored at the face)"
    )
    if lit.get("head_vs_scan") is not None:
        line += f", identity {lit['head_vs_scan']:.3f}"
    print(line)


if __name__ == "__main__":
    main()
