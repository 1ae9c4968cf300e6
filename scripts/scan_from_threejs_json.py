"""Turn a head scan kept as a 2011 three.js JSON model (format 2) into a textured GLB that ``bench_scan.py`` reads.

The second scan of the scan benchmark is Infinite-Realities' head scan of Lee Perry-Smith (CC BY 3.0, "Infinite,
3D Head Scan by Lee Perry-Smith ... Based on a work at www.triplegangers.com"), which three.js's examples carried
in this format (``examples/obj/leeperrysmith/LeePerrySmith.js`` and ``Map-COL.jpg``, e.g. in the
``alteredq/three.js`` fork; the newer ``LeePerrySmith.glb`` holds no colour texture). This script made the
repository's copy, ``data/scans/lee_perry_smith.glb`` (byte-identical when run again; attribution in
``data/scans/README.md``):

    python scripts/scan_from_threejs_json.py LeePerrySmith.js Map-COL.jpg --out data/scans/lee_perry_smith.glb
    python scripts/bench_scan.py data/scans/lee_perry_smith.glb --out /tmp/scan_lps

The model carries no units. It is scaled so that the head's length (glabella to the back of the head, the
largest front-to-back extent above the ears) is ``--head-length-mm`` (197 mm, about the adult male mean), so the
benchmark's scale error on it says how the head's size compares with an average man's, not with this man's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

IS_QUAD, HAS_MATERIAL, HAS_FACE_UV, HAS_VERTEX_UVS = 1, 2, 4, 8
HAS_FACE_NORMAL, HAS_VERTEX_NORMALS, HAS_FACE_COLOUR, HAS_VERTEX_COLOURS = 16, 32, 64, 128


def read_model(path: Path) -> dict:
    """The model's JSON object (the file is ``var model = {...};`` JavaScript)."""
    try:
        text = path.read_text()
        start = text.index("{", text.index("var model"))
        model = json.loads(text[start : text.rindex("}") + 1])
    except OSError as error:
        raise SystemExit(f"error: cannot read {path}: {error.strerror}") from None
    except ValueError:
        raise SystemExit(f"error: {path} is not a three.js JSON model (no 'var model = {{...}}' object)") from None
    if model.get("version") != 2 or not model.get("uvs") or not model["uvs"][0]:
        raise SystemExit(f"error: {path} is not a format-2 three.js model with UVs")
    return model


def triangles(model: dict) -> np.ndarray:
    """(F, 3, 2) the triangles' corners, each (vertex index, uv index); quads split in two."""
    faces, out, i = model["faces"], [], 0
    while i < len(faces):
        kind = faces[i]
        i += 1
        corners = 4 if kind & IS_QUAD else 3
        vertex = faces[i : i + corners]
        i += corners + (1 if kind & HAS_MATERIAL else 0) + (1 if kind & HAS_FACE_UV else 0)
        if not kind & HAS_VERTEX_UVS:
            raise SystemExit("error: the model's faces carry no per-corner UVs (no texture can be mapped)")
        uv = faces[i : i + corners]
        i += corners
        i += (1 if kind & HAS_FACE_NORMAL else 0) + (corners if kind & HAS_VERTEX_NORMALS else 0)
        i += (1 if kind & HAS_FACE_COLOUR else 0) + (corners if kind & HAS_VERTEX_COLOURS else 0)
        pairs = list(zip(vertex, uv, strict=True))
        out.append(pairs[:3])
        if corners == 4:
            out.append([pairs[0], pairs[2], pairs[3]])
    return np.asarray(out, dtype=np.int64)


def head_length(vertices: np.ndarray) -> float:
    """Largest front-to-back (z) extent of the mid-line (|x| < 4 % of the width) in the model's upper quarter.

    The quarter lies above the nose, so the extent runs from the brow to the back of the head.
    """
    width = np.ptp(vertices[:, 0])
    top = vertices[:, 1].max()
    upper = vertices[vertices[:, 1] > top - np.ptp(vertices[:, 1]) / 4]
    mid = upper[np.abs(upper[:, 0] - np.median(vertices[:, 0])) < 0.04 * width]
    if len(mid) < 2:
        raise SystemExit("error: the model has no vertices on its mid-line to measure the head's length on")
    return float(np.ptp(mid[:, 2]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="three.js JSON model (format 2), y up, facing +z")
    parser.add_argument("texture", type=Path, help="its colour map")
    parser.add_argument("--head-length-mm", type=float, default=197.0, help="the head's length after scaling")
    parser.add_argument("--out", type=Path, required=True, help="GLB to write")
    args = parser.parse_args()

    import trimesh
    from PIL import Image

    model = read_model(args.model)
    positions = np.asarray(model["vertices"], dtype=np.float64).reshape(-1, 3) * float(model.get("scale", 1.0))
    uvs = np.asarray(model["uvs"][0], dtype=np.float64).reshape(-1, 2)
    corners = triangles(model)
    # One vertex per (position, uv) pair: the UV seams stay cut.
    pairs, inverse = np.unique(corners.reshape(-1, 2), axis=0, return_inverse=True)
    vertices = positions[pairs[:, 0]]
    scale = args.head_length_mm / 1000.0 / head_length(vertices)
    try:
        texture = Image.open(args.texture).convert("RGB")
    except OSError:
        raise SystemExit(f"error: cannot read the colour map {args.texture} as an image") from None
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=texture, metallicFactor=0.0, roughnessFactor=1.0)
    # three.js's old loader flipped the image, not the coordinates: v counts from the image's top here.
    uv = uvs[pairs[:, 1]] * [1.0, -1.0] + [0.0, 1.0]
    mesh = trimesh.Trimesh(
        vertices * scale,
        inverse.reshape(-1, 3),
        visual=trimesh.visual.TextureVisuals(uv=uv, material=material),
        process=False,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".part")
    mesh.export(tmp, file_type="glb")
    tmp.replace(args.out)
    print(f"{args.out}: {len(mesh.vertices)} vertices, {len(mesh.faces)} triangles, {scale * 1000:.2f} mm per unit")


if __name__ == "__main__":
    main()
