"""The rigged GLB: every moving mesh with the 67 morph targets (names in ``mesh.extras.targetNames``),
the head skinned to ``Neck``/``Head``, eyes under their eye joints, teeth, tongue and cavity under
``Head``. glTF 2.0: metres, +Y up, facing +Z, subject's left = +x.

Morph targets are sparse accessors (only the vertices a blendshape moves are stored), which keeps
67 targets to a fraction of the mesh's own size. :func:`read_static` reads export-mesh's GLB;
:func:`read_rig` reads a rigged one back (tests, benchmark, renders).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from portrait3d import glb

from .skeleton import JOINTS, PARENTS, Skeleton

FLOAT, UINT, UBYTE, USHORT = 5126, 5125, 5121, 5123
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_DTYPES = {FLOAT: np.float32, UINT: np.uint32, UBYTE: np.uint8, USHORT: np.uint16}
MOVE_EPSILON = 1e-6
"""Displacements below this (m) are not stored."""


def _chunks(path: Path) -> tuple[dict, bytes]:
    data = Path(path).read_bytes()
    magic, _version, _length = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF":
        raise ValueError(f"{path}: not a GLB")
    json_len, _ = struct.unpack_from("<I4s", data, 12)
    doc = json.loads(data[20 : 20 + json_len])
    offset = 20 + json_len
    binary = b""
    if offset < len(data):
        bin_len, _ = struct.unpack_from("<I4s", data, offset)
        binary = data[offset + 8 : offset + 8 + bin_len]
    return doc, binary


def _view_bytes(doc: dict, binary: bytes, index: int) -> bytes:
    view = doc["bufferViews"][index]
    start = view.get("byteOffset", 0)
    return binary[start : start + view["byteLength"]]


def _accessor(doc: dict, binary: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    n = _COMPONENTS[acc["type"]]
    dtype = _DTYPES[acc["componentType"]]
    if "bufferView" in acc:
        raw = _view_bytes(doc, binary, acc["bufferView"])
        out = np.frombuffer(raw, dtype=dtype, count=acc["count"] * n, offset=acc.get("byteOffset", 0)).copy()
    else:
        out = np.zeros(acc["count"] * n, dtype=dtype)
    out = out.reshape(acc["count"], n)
    sparse = acc.get("sparse")
    if sparse:
        idx_dtype = _DTYPES[sparse["indices"]["componentType"]]
        idx = np.frombuffer(
            _view_bytes(doc, binary, sparse["indices"]["bufferView"]), dtype=idx_dtype, count=sparse["count"]
        )
        values = np.frombuffer(
            _view_bytes(doc, binary, sparse["values"]["bufferView"]), dtype=dtype, count=sparse["count"] * n
        )
        out[idx.astype(np.int64)] = values.reshape(-1, n)
    return out


@dataclass
class StaticMesh:
    """export-mesh's GLB: one textured mesh."""

    vertices: np.ndarray
    normals: np.ndarray
    uv: np.ndarray
    """(V, 2) glTF texture coordinates."""
    faces: np.ndarray
    texture_png: bytes
    extras: dict


def read_static(path: str | Path) -> StaticMesh:
    doc, binary = _chunks(Path(path))
    prim = doc["meshes"][0]["primitives"][0]
    attrs = prim["attributes"]
    material = doc["materials"][prim["material"]]
    image = doc["images"][doc["textures"][material["pbrMetallicRoughness"]["baseColorTexture"]["index"]]["source"]]
    return StaticMesh(
        vertices=_accessor(doc, binary, attrs["POSITION"]).astype(np.float64),
        normals=_accessor(doc, binary, attrs["NORMAL"]).astype(np.float64),
        uv=_accessor(doc, binary, attrs["TEXCOORD_0"]).astype(np.float64),
        faces=_accessor(doc, binary, prim["indices"]).reshape(-1, 3).astype(np.int64),
        texture_png=_view_bytes(doc, binary, image["bufferView"]),
        extras=doc["asset"].get("extras", {}).get("portrait3d", {}),
    )


@dataclass
class RigMesh:
    """One mesh of the rig, ready to write."""

    name: str
    vertices: np.ndarray
    """(V, 3) in its parent joint's frame (the head mesh: the file's frame)."""
    faces: np.ndarray
    targets: np.ndarray
    """(T, V, 3) morph target displacements."""
    parent: int | None = None
    """Joint index the mesh hangs under; None: the scene root (skinned)."""
    normals: np.ndarray | None = None
    uv: np.ndarray | None = None
    colors: np.ndarray | None = None
    joints: np.ndarray | None = None
    weights: np.ndarray | None = None
    extras: dict = field(default_factory=dict)


class _Writer:
    def __init__(self) -> None:
        self.blobs: list[bytes] = []
        self.views: list[dict] = []
        self.accessors: list[dict] = []
        self.size = 0

    def view(self, data: bytes, target: int | None = None) -> int:
        entry = {"buffer": 0, "byteOffset": self.size, "byteLength": len(data)}
        if target is not None:
            entry["target"] = target
        padded = data + b"\0" * (-len(data) % 4)
        self.blobs.append(padded)
        self.size += len(padded)
        self.views.append(entry)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, kind: str, target: int | None = ARRAY_BUFFER, bounds: bool = False) -> int:
        array = np.ascontiguousarray(array)
        component = {np.float32: FLOAT, np.uint32: UINT, np.uint8: UBYTE, np.uint16: USHORT}[array.dtype.type]
        entry = {
            "bufferView": self.view(array.tobytes(), target),
            "componentType": component,
            "count": int(array.shape[0]) if kind != "SCALAR" else int(array.size),
            "type": kind,
        }
        if bounds:
            entry["min"], entry["max"] = array.min(axis=0).tolist(), array.max(axis=0).tolist()
        self.accessors.append(entry)
        return len(self.accessors) - 1

    def sparse_target(self, moves: np.ndarray) -> int:
        """A morph target as a sparse accessor (no buffer view: zeros, plus the moved vertices)."""
        moves = moves.astype(np.float32)
        moved = np.flatnonzero(np.abs(moves).max(axis=1) > MOVE_EPSILON)
        entry = {"componentType": FLOAT, "count": int(len(moves)), "type": "VEC3"}
        # Bounds of the whole accessor: the stored values and, where some vertex is not stored, zero.
        stored = (
            moves[moved] if len(moved) == len(moves) else np.concatenate([moves[moved], np.zeros((1, 3), np.float32)])
        )
        entry["min"], entry["max"] = stored.min(axis=0).tolist(), stored.max(axis=0).tolist()
        if len(moved):
            entry["sparse"] = {
                "count": int(len(moved)),
                "indices": {"bufferView": self.view(moved.astype(np.uint32).tobytes()), "componentType": UINT},
                "values": {"bufferView": self.view(np.ascontiguousarray(moves[moved]).tobytes())},
            }
        self.accessors.append(entry)
        return len(self.accessors) - 1


def write_rig(
    path: Path,
    meshes: list[RigMesh],
    skeleton: Skeleton,
    target_names: tuple[str, ...],
    texture_png: bytes,
    extras: dict,
) -> None:
    """Write the rigged GLB. ``meshes[0]`` is the skinned, textured head; the others hang under joints
    and carry vertex colours."""
    w = _Writer()
    nodes: list[dict] = []
    for name, local in zip(JOINTS, skeleton.local):
        nodes.append({"name": name, "translation": local.tolist()})
    for j, parent in enumerate(PARENTS):
        if parent is not None:
            nodes[parent].setdefault("children", []).append(j)
    materials = [
        {
            "name": "head",
            "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 0.0, "roughnessFactor": 0.9},
            "extensions": {"KHR_materials_unlit": {}},
        }
    ]
    gltf_meshes, root_nodes = [], [0]
    for mesh in meshes:
        attributes = {"POSITION": w.accessor(mesh.vertices.astype(np.float32), "VEC3", bounds=True)}
        if mesh.normals is not None:
            normals = mesh.normals / np.maximum(np.linalg.norm(mesh.normals, axis=1, keepdims=True), 1e-12)
            attributes["NORMAL"] = w.accessor(normals.astype(np.float32), "VEC3")
        if mesh.uv is not None:
            attributes["TEXCOORD_0"] = w.accessor(mesh.uv.astype(np.float32), "VEC2")
        if mesh.colors is not None:
            attributes["COLOR_0"] = w.accessor(mesh.colors.astype(np.float32), "VEC3")
        if mesh.joints is not None:
            attributes["JOINTS_0"] = w.accessor(mesh.joints.astype(np.uint8), "VEC4")
            attributes["WEIGHTS_0"] = w.accessor(mesh.weights.astype(np.float32), "VEC4")
        indices = w.accessor(mesh.faces.astype(np.uint32).ravel(), "SCALAR", target=ELEMENT_ARRAY_BUFFER)
        targets = [{"POSITION": w.sparse_target(t)} for t in mesh.targets]
        if mesh.uv is None:
            materials.append(
                {
                    "name": mesh.name,
                    "pbrMetallicRoughness": {
                        "baseColorFactor": [1, 1, 1, 1],
                        "metallicFactor": 0.0,
                        "roughnessFactor": 0.5,
                    },
                    "extensions": {"KHR_materials_unlit": {}},
                }
            )
        primitive = {
            "attributes": attributes,
            "indices": indices,
            "material": 0 if mesh.uv is not None else len(materials) - 1,
            "targets": targets,
        }
        gltf_meshes.append(
            {
                "name": mesh.name,
                "primitives": [primitive],
                "weights": [0.0] * len(target_names),
                "extras": {"targetNames": list(target_names), **mesh.extras},
            }
        )
        node = {"name": mesh.name, "mesh": len(gltf_meshes) - 1}
        if mesh.joints is not None:
            node["skin"] = 0
            root_nodes.append(len(nodes))
        else:
            nodes[mesh.parent].setdefault("children", []).append(len(nodes))
        nodes.append(node)
    ibm = skeleton.inverse_bind().transpose(0, 2, 1).reshape(-1, 16).astype(np.float32)  # column-major
    skin = {
        "name": "Armature",
        "joints": list(range(len(JOINTS))),
        "skeleton": 0,
        "inverseBindMatrices": w.accessor(ibm, "MAT4", target=None),
    }
    images = [{"name": "head_basecolor", "bufferView": w.view(texture_png), "mimeType": "image/png"}]
    document = {
        "asset": {"version": "2.0", "generator": "portrait3d rig", "extras": {"portrait3d": extras}},
        "extensionsUsed": ["KHR_materials_unlit"],
        "scene": 0,
        "scenes": [{"name": "portrait3d", "nodes": root_nodes}],
        "nodes": nodes,
        "meshes": gltf_meshes,
        "skins": [skin],
        "materials": materials,
        "textures": [{"sampler": 0, "source": 0}],
        "samplers": [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}],
        "images": images,
        "accessors": w.accessors,
        "bufferViews": w.views,
        "buffers": [{"byteLength": w.size}],
    }
    binary = b"".join(w.blobs)
    Path(path).write_bytes(glb.pack(document, binary))


# --- reading a rig back ---------------------------------------------------------------------
@dataclass
class PosedMesh:
    name: str
    vertices: np.ndarray
    """(V, 3) world (file) frame, with the requested weights applied."""
    faces: np.ndarray
    uv: np.ndarray | None
    colors: np.ndarray | None


@dataclass
class Rig:
    document: dict
    meshes: list[dict]
    """Per mesh node: name, base (V, 3), faces, uv, colors, targets {name: (V, 3)}, offset (3,)."""
    texture: np.ndarray
    """(S, S, 3) uint8 head texture."""

    def posed(self, weights: dict[str, float] | None = None) -> list[PosedMesh]:
        """Every mesh in the file's frame at the morph weights ``weights`` (others 0), bones at rest."""
        weights = weights or {}
        out = []
        for m in self.meshes:
            verts = m["base"].copy()
            for name, value in weights.items():
                if value:
                    verts += value * m["targets"][name]
            out.append(PosedMesh(m["name"], verts + m["offset"], m["faces"], m["uv"], m["colors"]))
        return out


def read_rig(path: str | Path) -> Rig:
    import io

    from PIL import Image

    doc, binary = _chunks(Path(path))
    parent = {c: i for i, n in enumerate(doc["nodes"]) for c in n.get("children", [])}

    def offset(i: int) -> np.ndarray:
        total = np.zeros(3)
        while i in parent:
            i = parent[i]
            total += doc["nodes"][i].get("translation", [0, 0, 0])
        return total

    meshes = []
    for i, node in enumerate(doc["nodes"]):
        if "mesh" not in node:
            continue
        mesh = doc["meshes"][node["mesh"]]
        prim = mesh["primitives"][0]
        attrs = prim["attributes"]
        names = mesh.get("extras", {}).get("targetNames", [])
        meshes.append(
            {
                "name": mesh["name"],
                "base": _accessor(doc, binary, attrs["POSITION"]).astype(np.float64),
                "faces": _accessor(doc, binary, prim["indices"]).reshape(-1, 3).astype(np.int64),
                "uv": _accessor(doc, binary, attrs["TEXCOORD_0"]).astype(np.float64) if "TEXCOORD_0" in attrs else None,
                "colors": _accessor(doc, binary, attrs["COLOR_0"]).astype(np.float64) if "COLOR_0" in attrs else None,
                "targets": {
                    n: _accessor(doc, binary, t["POSITION"]).astype(np.float64)
                    for n, t in zip(names, prim.get("targets", []))
                },
                "offset": np.zeros(3) if "skin" in node else offset(i) + node.get("translation", [0, 0, 0]),
            }
        )
    image = doc["images"][0]
    texture = np.asarray(Image.open(io.BytesIO(_view_bytes(doc, binary, image["bufferView"]))).convert("RGB"))
    return Rig(doc, meshes, texture)
