"""UV charts of a surface: xatlas on the mesh's two halves at once, packed into one square atlas.

xatlas's chart computation (segmentation and parameterisation) holds the GIL on one core and takes
about 17 s for the fast preset's 50k triangles with its default options (5 s with
:data:`CHART_MAX_COST`); its time grows about linearly with the triangles. So the
surface is cut in two by the plane ``x = median`` (the head's mid-plane: left and right halves cost the
same), each half is charted on its own, one of them in a worker process (``python -m nerf.charts``),
and the charts of both are packed into one atlas by xatlas from their UVs (under a second). The cut is
made whether or not a worker runs, so the atlas is the same on one core or many.

Run as a module, it is that worker: an ``.npz`` of ``vertices``, ``faces`` on stdin, the half's charts
(``vmapping``, ``faces``, ``uv``) as an ``.npz`` on stdout.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

SPLIT_MIN_FACES = 2_000
"""Meshes with fewer triangles are charted whole (a worker would cost more than it saves)."""
CHART_MAX_COST = 0.5
"""xatlas's ``ChartOptions.max_cost`` (its default 2): how far a chart may grow before its cost (normal
deviation, roundness, straightness, seams) stops it. On the sample's 50k-triangle LOD 0, 0.5 charts in
5.1 CPU-s instead of 19.1 with a 1.3 % higher texel density, utilisation 57.5 % (56.0), the same stretch
and 10 % fewer split vertices (``docs/BENCHMARKS.md``, "Export speed (export24)")."""


def chart_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xatlas's charts of one mesh, with UVs in world units (texels over xatlas's texels per unit).

    Args:
        vertices: (V, 3) positions; faces: (F, 3) vertex indices.
    Returns:
        ``(vmapping, faces, uv)``: (V',) source vertex of each split vertex, (F, 3) faces over the split
        vertices, (V', 2) float64 UVs whose scale is the surface's own (so that charts of different meshes
        can be packed together at one texel density).
    """
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(np.asarray(vertices, dtype=np.float32), np.asarray(faces, dtype=np.uint32))
    options = xatlas.ChartOptions()
    options.max_cost = CHART_MAX_COST
    atlas.generate(chart_options=options)
    vmapping, split_faces, uv = atlas[0]
    # xatlas normalises UVs by the atlas size; back to texels, then to world units.
    scale = np.array([atlas.width, atlas.height], dtype=np.float64) / float(atlas.texels_per_unit)
    return np.asarray(vmapping, np.int64), np.asarray(split_faces, np.int64), np.asarray(uv, np.float64) * scale


def pack_charts(
    vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, texture_size: int, padding: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pack existing charts (a mesh split along its seams, UVs in world units) into one square atlas.

    Returns:
        ``(vmapping, faces, uv)``: as :func:`chart_mesh` over the given vertices, UVs in [0, 1].
    """
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(
        np.asarray(vertices, dtype=np.float32), np.asarray(faces, dtype=np.uint32), uvs=np.asarray(uv, np.float32)
    )
    charts = xatlas.ChartOptions()
    charts.use_input_mesh_uvs = True
    atlas.generate(chart_options=charts, pack_options=_pack_options(texture_size, padding))
    vmapping, packed_faces, packed_uv = atlas[0]
    return np.asarray(vmapping, np.int64), np.asarray(packed_faces, np.int64), np.asarray(packed_uv, np.float64)


def unwrap_charts(
    vertices: np.ndarray, faces: np.ndarray, texture_size: int, padding: int, workers: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Charts of the whole mesh packed into a ``texture_size`` square: the two halves charted at once.

    Args:
        vertices: (V, 3) positions; faces: (F, 3) vertex indices.
        texture_size: atlas width and height in texels; padding: texels between charts.
        workers: chart one half in a worker process (False: both here, one after the other; same result).
    Returns:
        ``(vmapping, faces, uv)``: (V',) source vertex of each split vertex, (F', 3) faces, (V', 2) UVs in [0, 1].
    """
    vertices, faces = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    halves = split_halves(vertices, faces) if len(faces) >= SPLIT_MIN_FACES else [np.arange(len(faces))]
    parts = [_submesh(vertices, faces, face_ids) for face_ids in halves]
    worker = _Worker(parts[1][1]) if workers and len(parts) > 1 else None
    charted = [chart_mesh(*mesh) for _, mesh in (parts if worker is None else parts[:1])]
    if worker is not None:
        charted.append(worker.result())
    # One mesh of both halves' split vertices (each half's indices offset), in source vertex numbers.
    source, split_faces, uv, offset = [], [], [], 0
    for (used, _), (vmapping, half_faces, half_uv) in zip(parts, charted):
        source.append(used[vmapping])
        split_faces.append(half_faces + offset)
        uv.append(half_uv)
        offset += len(vmapping)
    source = np.concatenate(source)
    vmapping, packed_faces, packed_uv = pack_charts(
        vertices[source], np.concatenate(split_faces), np.concatenate(uv), texture_size, padding
    )
    return source[vmapping], packed_faces, packed_uv


def split_halves(vertices: np.ndarray, faces: np.ndarray) -> list[np.ndarray]:
    """The faces on each side of the plane ``x = median`` of the face centres: two (F_i,) index arrays."""
    centres = vertices[faces].mean(axis=1)[:, 0]
    left = centres < np.median(centres)
    return [np.flatnonzero(left), np.flatnonzero(~left)]


def _submesh(vertices: np.ndarray, faces: np.ndarray, face_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(used, (vertices, faces))`` of the faces ``face_ids``: (U,) source indices of its vertices."""
    chosen = faces[face_ids]
    used = np.unique(chosen)
    return used, (vertices[used], np.searchsorted(used, chosen))


class _Worker:
    """``python -m nerf.charts`` charting one mesh while this process does something else."""

    def __init__(self, mesh: tuple[np.ndarray, np.ndarray]) -> None:
        self.mesh = mesh
        self.output: bytes | None = None
        self.returncode: int | None = None
        # The package this module came from, whatever the caller's sys.path or working directory.
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "nerf.charts"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        except OSError:
            self.process = None
            return
        # communicate() in a thread: feeds stdin and drains stdout without blocking either process.
        self.thread = threading.Thread(target=self._communicate, args=(_npz(vertices=mesh[0], faces=mesh[1]),))
        self.thread.start()

    def _communicate(self, data: bytes) -> None:
        self.output, _ = self.process.communicate(data)
        self.returncode = self.process.returncode

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The worker's charts, or the same charts computed here if it did not start or failed."""
        if self.process is not None:
            self.thread.join()
            if self.returncode == 0:
                try:
                    with np.load(io.BytesIO(self.output)) as data:
                        return data["vmapping"], data["faces"], data["uv"]
                except (OSError, ValueError, KeyError):
                    pass
        return chart_mesh(*self.mesh)


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _pack_options(texture_size: int, padding: int):
    import xatlas

    pack = xatlas.PackOptions()
    pack.resolution = int(texture_size)
    pack.padding = int(padding)
    pack.bilinear = True
    return pack


def main() -> None:
    """The worker: charts of the mesh on stdin (``.npz``: vertices, faces) to stdout (``.npz``)."""
    with np.load(io.BytesIO(sys.stdin.buffer.read())) as data:
        vmapping, faces, uv = chart_mesh(data["vertices"], data["faces"])
    sys.stdout.buffer.write(_npz(vmapping=vmapping, faces=faces, uv=uv))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
