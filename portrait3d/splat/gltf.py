"""glTF 2.0 binary with ``KHR_gaussian_splatting`` (ratified), writer and reader.

One mesh with one ``POINTS`` primitive whose attributes are, as the extension specifies:
``POSITION`` (VEC3), ``KHR_gaussian_splatting:ROTATION`` (VEC4 unit quaternion, glTF's x, y, z, w
order), ``KHR_gaussian_splatting:SCALE`` (VEC3, linear), ``KHR_gaussian_splatting:OPACITY``
(SCALAR, after the sigmoid) and ``KHR_gaussian_splatting:SH_DEGREE_l_COEF_n`` (VEC3 RGB,
m = -l..l), all float32; plus ``COLOR_0`` (the diffuse colour and opacity) so that a viewer without
the extension shows a point cloud. Kernel ``ellipse``, colour space ``srgb_rec709_display``.
Metres, +Y up, facing +Z, the node at the identity: the same frame and origin as ``mesh/head.glb``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from portrait3d import glb

from .gaussians import Gaussians, logit, normalised_quats, sh0_to_rgb, sigmoid

EXTENSION = "KHR_gaussian_splatting"
FLOAT, POINTS, ARRAY_BUFFER = 5126, 0, 34962
_TYPES = {1: "SCALAR", 3: "VEC3", 4: "VEC4"}


def sh_attribute(degree: int, index: int) -> str:
    return f"{EXTENSION}:SH_DEGREE_{degree}_COEF_{index}"


def glb_bytes(gaussians: Gaussians, extras: dict | None = None) -> bytes:
    """The GLB file of ``gaussians`` (already in metres, +Y up); ``extras`` go to ``asset.extras.portrait3d``."""
    g = gaussians.numpy()
    n = len(g)
    quats = normalised_quats(g.quats)[:, [1, 2, 3, 0]]  # glTF order: x, y, z, w
    opacity = sigmoid(g.opacity_logits)
    colour = np.concatenate([np.clip(sh0_to_rgb(g.sh[:, 0]), 0, 1), opacity[:, None]], 1)
    attributes = {
        "POSITION": g.means,
        "COLOR_0": colour,
        f"{EXTENSION}:ROTATION": quats,
        f"{EXTENSION}:SCALE": np.exp(g.log_scales),
        f"{EXTENSION}:OPACITY": opacity,
    }
    for degree in range(g.sh_degree + 1):
        for m in range(2 * degree + 1):
            attributes[sh_attribute(degree, m)] = g.sh[:, degree * degree + m]
    binary, views, accessors, indices = bytearray(), [], [], {}
    for name, values in attributes.items():
        array = np.ascontiguousarray(values, dtype="<f4").reshape(n, -1)
        accessor = {
            "bufferView": len(views),
            "componentType": FLOAT,
            "count": n,
            "type": _TYPES[array.shape[1]],
        }
        if name == "POSITION":
            accessor["min"] = [float(v) for v in array.min(0)]
            accessor["max"] = [float(v) for v in array.max(0)]
        views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": array.nbytes, "target": ARRAY_BUFFER})
        binary += array.tobytes()
        indices[name] = len(accessors)
        accessors.append(accessor)
    document = {
        "asset": {"version": "2.0", "generator": "portrait3d", "extras": {"portrait3d": extras or {}}},
        "extensionsUsed": [EXTENSION],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "head_splat"}],
        "meshes": [
            {
                "name": "head_splat",
                "primitives": [
                    {
                        "attributes": indices,
                        "mode": POINTS,
                        "extensions": {
                            EXTENSION: {
                                "kernel": "ellipse",
                                "colorSpace": "srgb_rec709_display",
                                "projection": "perspective",
                                "sortingMethod": "cameraDistance",
                            }
                        },
                    }
                ],
            }
        ],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": len(binary)}],
    }
    return glb.pack(document, binary)


def write_glb(path: str | Path, gaussians: Gaussians, extras: dict | None = None) -> None:
    Path(path).write_bytes(glb_bytes(gaussians, extras))


def read_glb(path: str | Path) -> tuple[Gaussians, dict]:
    """The Gaussians of the first ``KHR_gaussian_splatting`` primitive of a GLB, and its JSON document."""
    try:
        document, binary = glb.unpack(Path(path).read_bytes())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    primitive = next(
        (p for mesh in document.get("meshes", []) for p in mesh["primitives"] if EXTENSION in p.get("extensions", {})),
        None,
    )
    if primitive is None:
        raise ValueError(f"{path}: no {EXTENSION} primitive")

    def attribute(name: str) -> np.ndarray:
        accessor = document["accessors"][primitive["attributes"][name]]
        view = document["bufferViews"][accessor["bufferView"]]
        if accessor["componentType"] != FLOAT:
            raise ValueError(f"{path}: {name} is not float32 (only float attributes are read)")
        width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[accessor["type"]]
        offset = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
        return np.frombuffer(binary, "<f4", accessor["count"] * width, offset).reshape(accessor["count"], width)

    degree = 0
    while sh_attribute(degree + 1, 0) in primitive["attributes"]:
        degree += 1
    sh = np.stack([attribute(sh_attribute(d, m)) for d in range(degree + 1) for m in range(2 * d + 1)], axis=1)
    quats = attribute(f"{EXTENSION}:ROTATION")[:, [3, 0, 1, 2]]
    gaussians = Gaussians(
        attribute("POSITION"),
        np.log(np.clip(attribute(f"{EXTENSION}:SCALE"), 1e-30, None)),
        quats,
        logit(attribute(f"{EXTENSION}:OPACITY")[:, 0]),
        sh,
    ).numpy()
    return gaussians, document
