"""The 3DGS PLY: the layout the original 3D Gaussian splatting code writes, and a reader.

``x y z nx ny nz f_dc_0..2 f_rest_0..M opacity scale_0..2 rot_0..3``, all float32, binary little
endian; log scales, logit opacity, rotation (w, x, y, z), normals zero. ``f_rest`` is channel-major
as 3DGS stores it: all of red's higher coefficients, then green's, then blue's. SuperSplat, the
Unity and Unreal plug-ins and most splat tools read this layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .gaussians import Gaussians, degree_of, with_degree


def property_names(degree: int) -> list[str]:
    """The vertex properties of a 3DGS PLY with spherical harmonics of ``degree``."""
    rest = 3 * ((degree + 1) ** 2 - 1)
    return [
        "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2",
        *(f"f_rest_{i}" for i in range(rest)),
        "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
    ]  # fmt: skip


def ply_bytes(gaussians: Gaussians, degree: int | None = None) -> bytes:
    """The PLY file of ``gaussians`` (with ``degree`` spherical harmonics: padded or cut; None: theirs)."""
    g = with_degree(gaussians, gaussians.sh_degree if degree is None else degree)
    n, k = len(g), g.sh.shape[1]
    rest = g.sh[:, 1:, :].transpose(0, 2, 1).reshape(n, 3 * (k - 1))  # (N, 3, K-1): channel-major
    columns = [
        g.means,
        np.zeros((n, 3), np.float32),
        g.sh[:, 0, :],
        rest,
        g.opacity_logits[:, None],
        g.log_scales,
        g.quats,
    ]
    data = np.ascontiguousarray(np.concatenate(columns, axis=1), dtype="<f4")
    names = property_names(g.sh_degree)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in names] + ["end_header"]
    return ("\n".join(header) + "\n").encode("ascii") + data.tobytes()


def write_ply(path: str | Path, gaussians: Gaussians, degree: int | None = None) -> None:
    Path(path).write_bytes(ply_bytes(gaussians, degree))


def read_ply(path: str | Path) -> Gaussians:
    """A 3DGS PLY (binary little endian, float properties) back into Gaussians."""
    data = Path(path).read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError(f"{path}: not a PLY file")
    count, names = None, []
    for line in data[:end].decode("ascii").splitlines():
        words = line.split()
        if words[:2] == ["format", "binary_little_endian"]:
            continue
        if words[:1] == ["format"]:
            raise ValueError(f"{path}: only binary little-endian PLY is read")
        if words[:2] == ["element", "vertex"]:
            count = int(words[2])
        elif words[:1] == ["property"]:
            if words[1] != "float":
                raise ValueError(f"{path}: property {words[-1]} is {words[1]}, not float")
            names.append(words[2])
    if count is None:
        raise ValueError(f"{path}: no vertex element")
    table = np.frombuffer(data, dtype="<f4", count=count * len(names), offset=end + len("end_header\n"))
    table = table.reshape(count, len(names))
    col = {name: table[:, i] for i, name in enumerate(names)}
    rest_names = sorted((n for n in names if n.startswith("f_rest_")), key=lambda n: int(n[7:]))
    k = 1 + len(rest_names) // 3
    degree_of(k)
    rest = (
        np.stack([col[n] for n in rest_names], 1).reshape(count, 3, k - 1).transpose(0, 2, 1)
        if rest_names
        else np.zeros((count, 0, 3), np.float32)
    )
    sh = np.concatenate([np.stack([col[f"f_dc_{i}"] for i in range(3)], 1)[:, None, :], rest], axis=1)

    def stack(prefix: str, n: int) -> np.ndarray:
        return np.stack([col[f"{prefix}{i}"] for i in range(n)], 1)

    return Gaussians(
        np.stack([col["x"], col["y"], col["z"]], 1), stack("scale_", 3), stack("rot_", 4), col["opacity"].copy(), sh
    ).numpy()
