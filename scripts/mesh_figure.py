"""Side-by-side pictures of exported heads: one row pair per mesh, textured above shaded (untextured).

    python scripts/mesh_figure.py OUT.jpg "LABEL=RUN/mesh/head.glb" "LABEL=truth.ply" ...

Columns: front, 45 degrees, 135 degrees and the back, from a little above. A ``.glb`` is read as the
export writes it (``nerf.turntable.load_head_mesh``), anything else with trimesh (vertex colours shown).
"""

from __future__ import annotations

import argparse

import numpy as np
import trimesh
from PIL import Image, ImageDraw

from nerf.turntable import load_head_mesh
from portrait3d import cameras
from portrait3d.render import MeshRenderer

COLUMNS = (0, 1, 3, 4)
"""Which of eight orbit cameras (45 degrees apart) are shown."""


def mesh_rows(label: str, path: str, size: int, distance: float = 0.62) -> np.ndarray:
    """A label strip, the textured row and the shaded row of one mesh: (18 + 2 * size, 4 * size, 3) uint8."""
    mesh = load_head_mesh(path) if path.endswith(".glb") else trimesh.load(path, force="mesh")
    renderer = MeshRenderer(mesh)
    orbit = cameras.orbit(8, pitch=10.0, radius=distance * cameras.PANOHEAD_RADIUS)
    textured, shaded = [], []
    for index in COLUMNS:
        rgba = renderer.render_rgba(orbit[index], size).astype(np.float64) / 255.0
        textured.append(np.uint8(np.round((rgba[..., :3] * rgba[..., 3:] + 1.0 - rgba[..., 3:]) * 255)))
        shaded.append(renderer.render_shaded(orbit[index], size, background=1.0))
    rows = np.concatenate([np.concatenate(textured, 1), np.concatenate(shaded, 1)], 0)
    strip = Image.new("RGB", (rows.shape[1], 18), (255, 255, 255))
    ImageDraw.Draw(strip).text((6, 3), label, fill=(0, 0, 0))
    return np.concatenate([np.asarray(strip), rows], 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="picture to write (.jpg or .png)")
    parser.add_argument("meshes", nargs="+", metavar="LABEL=PATH", help="a label and a mesh file")
    parser.add_argument("--size", type=int, default=200, help="pixels per picture (default 200)")
    parser.add_argument(
        "--distance", type=float, default=0.62, help="camera distance in PanoHead orbit radii (default 0.62)"
    )
    args = parser.parse_args()
    rows = []
    for item in args.meshes:
        label, sep, path = item.rpartition("=")
        if not sep:
            parser.error(f"expected LABEL=PATH, got {item!r}")
        rows.append(mesh_rows(label, path, args.size, args.distance))
    Image.fromarray(np.concatenate(rows, 0)).save(args.out, quality=85)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
