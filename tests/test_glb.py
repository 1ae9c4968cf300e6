"""The GLB container: what pack writes, unpack reads back, padded as glTF 2.0 requires."""

from __future__ import annotations

import struct

import pytest

from portrait3d import glb


@pytest.mark.parametrize("binary", [b"", b"abc", b"abcd", bytes(range(7))])
def test_pack_pads_both_chunks_and_unpack_reads_them_back(binary):
    document = {"asset": {"version": "2.0"}, "buffers": [{"byteLength": len(binary)}], "x": "é"}
    data = glb.pack(document, binary)
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, total) == (b"glTF", 2, len(data)) and len(data) % 4 == 0
    json_length, kind = struct.unpack_from("<I4s", data, 12)
    assert kind == b"JSON" and json_length % 4 == 0 and data[20 + json_length - 1 : 20 + json_length] in (b"}", b" ")
    bin_length, kind = struct.unpack_from("<I4s", data, 20 + json_length)
    assert kind == b"BIN\0" and bin_length % 4 == 0 and bin_length >= len(binary)
    read, read_binary = glb.unpack(data)
    assert read == document and read_binary[: len(binary)] == binary and set(read_binary[len(binary) :]) <= {0}


def test_unpack_refuses_what_is_not_a_glb():
    for data in (b"", b"glTF", b"PK\x03\x04" + bytes(40), glb.pack({}, b"")[:12] + b"\x04\x00\x00\x00BIN\x00{}  "):
        with pytest.raises(ValueError, match="not a binary glTF file"):
            glb.unpack(data)
