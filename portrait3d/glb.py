"""The glTF 2.0 binary container (GLB): a 12-byte header, a JSON chunk and a BIN chunk, each chunk padded to
4 bytes (JSON with spaces, BIN with zeros), as the glTF 2.0 specification's "Binary glTF Layout" says.

What the document holds is the writers' business (``nerf.export``: the textured mesh, ``portrait3d.rig.gltf``:
the rigged head, ``portrait3d.splat.gltf``: ``KHR_gaussian_splatting``); this module only packs and unpacks.
"""

from __future__ import annotations

import json
import struct

MAGIC, VERSION = b"glTF", 2
JSON_CHUNK, BIN_CHUNK = b"JSON", b"BIN\0"


def pack(document: dict, binary: bytes) -> bytes:
    """A GLB file's bytes from its JSON ``document`` and its one ``binary`` buffer (``buffers[0]``)."""
    json_chunk = json.dumps(document, separators=(",", ":")).encode("utf-8")
    json_chunk += b" " * (-len(json_chunk) % 4)
    binary = bytes(binary) + b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(json_chunk) + 8 + len(binary)
    return b"".join(
        (
            struct.pack("<4sII", MAGIC, VERSION, total),
            struct.pack("<I4s", len(json_chunk), JSON_CHUNK),
            json_chunk,
            struct.pack("<I4s", len(binary), BIN_CHUNK),
            binary,
        )
    )


def unpack(data: bytes) -> tuple[dict, bytes]:
    """``(document, binary)`` of a GLB file's bytes (``binary`` empty without a BIN chunk).

    Raises:
        ValueError: the bytes are not a binary glTF file.
    """
    if len(data) < 20:
        raise ValueError("not a binary glTF file (too short)")
    magic, _, _ = struct.unpack_from("<4sII", data, 0)
    json_length, kind = struct.unpack_from("<I4s", data, 12)
    if magic != MAGIC or kind != JSON_CHUNK:
        raise ValueError("not a binary glTF file")
    document = json.loads(data[20 : 20 + json_length])
    start = 20 + json_length
    binary = b""
    if len(data) >= start + 8:
        bin_length, kind = struct.unpack_from("<I4s", data, start)
        if kind == BIN_CHUNK:
            binary = data[start + 8 : start + 8 + bin_length]
    return document, binary
