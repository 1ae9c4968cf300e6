"""SPZ, Niantic's compressed splat format (version 3, gzip), writer and reader from its published spec.

github.com/nianticlabs/spz: a gzip stream of a 16-byte header (magic ``NGSP``, version, count, SH
degree, fractional bits, flags, reserved) and then, for all Gaussians one attribute after another:
positions as 24-bit signed fixed point (12 fractional bits), alphas as sigmoid(opacity)·255,
colours as ``dc · 0.15 · 255 + 127.5``, scales as ``(log scale + 10) · 16``, rotations as the
"smallest three" (2-bit index of the largest component, three 10-bit signed components scaled by
√2), and higher spherical harmonics coefficient-major with the colour channel inner, as
``round(x · 128) + 128`` in buckets (5 bits for degree 1, 4 bits above). The axes are SPZ's RUB
(x right, y up, z back: glTF's), which is the project's world frame, so nothing is flipped.
Version 3 is what the spz library wrote before its zstd version 4 and what web viewers read.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from .gaussians import Gaussians, logit, normalised_quats, sigmoid

MAGIC = 0x5053474E
VERSION = 3
FRACTIONAL_BITS = 12
COLOUR_SCALE = 0.15
SQRT1_2 = 0.7071067811865476


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _quantise_sh(x: np.ndarray, bits: int) -> np.ndarray:
    bucket = 1 << (8 - bits)
    q = np.round(x * 128.0).astype(np.int32) + 128
    q = (q + bucket // 2) // bucket * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def pack_quats(quats: np.ndarray) -> np.ndarray:
    """(N, 4) (w, x, y, z) -> (N, 4) bytes, smallest-three over SPZ's (x, y, z, w) order."""
    q = normalised_quats(quats)[:, [1, 2, 3, 0]].astype(np.float64)  # xyzw
    largest = np.argmax(np.abs(q), axis=1)
    negate = q[np.arange(len(q)), largest] < 0
    comp = largest.astype(np.uint32)
    for i in range(4):
        keep = largest != i
        negbit = ((q[:, i] < 0) ^ negate).astype(np.uint32)
        mag = (511.0 * (np.abs(q[:, i]) / SQRT1_2) + 0.5).astype(np.uint32)
        comp = np.where(keep, (comp << 10) | (negbit << 9) | mag, comp)
    return np.ascontiguousarray(comp.astype("<u4")).view(np.uint8).reshape(-1, 4)


def unpack_quats(packed: np.ndarray) -> np.ndarray:
    """(N, 4) bytes -> (N, 4) (w, x, y, z) unit quaternions."""
    comp = np.ascontiguousarray(packed).view("<u4").reshape(-1).astype(np.uint64)
    largest = (comp >> 30).astype(np.int64)
    q = np.zeros((len(comp), 4))
    squares = np.zeros(len(comp))
    for i in range(3, -1, -1):
        keep = largest != i
        mag = (comp & 511).astype(np.float64)
        negbit = (comp >> 9) & 1
        value = SQRT1_2 * mag / 511.0 * np.where(negbit == 1, -1.0, 1.0)
        q[:, i] = np.where(keep, value, 0.0)
        squares += np.where(keep, value * value, 0.0)
        comp = np.where(keep, comp >> 10, comp)
    q[np.arange(len(q)), largest] = np.sqrt(np.clip(1.0 - squares, 0.0, None))
    return q[:, [3, 0, 1, 2]].astype(np.float32)


def spz_bytes(gaussians: Gaussians) -> bytes:
    """The SPZ file (gzip-compressed) of ``gaussians`` with their own SH degree."""
    g = gaussians.numpy()
    n, degree = len(g), g.sh_degree
    header = struct.pack("<IIIBBBB", MAGIC, VERSION, n, degree, FRACTIONAL_BITS, 0, 0)
    fixed = np.round(g.means.astype(np.float64) * (1 << FRACTIONAL_BITS)).astype(np.int64)
    if np.abs(fixed).max(initial=0) >= 1 << 23:
        raise ValueError("positions beyond SPZ's 24-bit fixed-point range (about ±2 km)")
    positions = (fixed.reshape(-1, 1) >> np.array([0, 8, 16])) & 0xFF
    alphas = _u8(sigmoid(g.opacity_logits.astype(np.float64)) * 255.0)
    colours = _u8(g.sh[:, 0, :] * (COLOUR_SCALE * 255.0) + 0.5 * 255.0)
    scales = _u8((g.log_scales + 10.0) * 16.0)
    rotations = pack_quats(g.quats)
    rest = g.sh[:, 1:, :]  # (N, K-1, 3): coefficient-major, channel inner
    sh = np.concatenate([_quantise_sh(rest[:, :3], 5), _quantise_sh(rest[:, 3:], 4)], axis=1)
    body = b"".join(
        a.astype(np.uint8).tobytes() for a in (positions, alphas, colours, scales, rotations, sh.reshape(n, -1))
    )
    return gzip.compress(header + body, compresslevel=9, mtime=0)


def write_spz(path: str | Path, gaussians: Gaussians) -> None:
    Path(path).write_bytes(spz_bytes(gaussians))


def read_spz(path: str | Path) -> Gaussians:
    """An SPZ file of version 2 or 3 (gzip) back into Gaussians."""
    try:
        data = gzip.decompress(Path(path).read_bytes())
    except OSError as exc:
        raise ValueError(f"{path}: not a gzip-compressed SPZ file ({exc})") from exc
    magic, version, n, degree, bits, _flags, _ = struct.unpack_from("<IIIBBBB", data, 0)
    if magic != MAGIC or version not in (2, 3) or degree > 3:
        raise ValueError(f"{path}: not an SPZ file of version 2 or 3")
    k = (degree + 1) ** 2
    rot_bytes = 4 if version >= 3 else 3
    sizes = [9 * n, n, 3 * n, 3 * n, rot_bytes * n, 3 * (k - 1) * n]
    if len(data) < 16 + sum(sizes):
        raise ValueError(f"{path}: truncated SPZ data")
    arrays, offset = [], 16
    for size in sizes:
        arrays.append(np.frombuffer(data, np.uint8, size, offset))
        offset += size
    pos, alphas, colours, scales, rotations, sh = arrays
    b = pos.reshape(n, 3, 3).astype(np.int32)
    fixed = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    if version >= 3:
        quats = unpack_quats(rotations.reshape(n, 4))
    else:
        xyz = rotations.reshape(n, 3) / 127.5 - 1.0
        quats = np.concatenate([np.sqrt(np.clip(1 - (xyz**2).sum(1), 0, None))[:, None], xyz], 1)
    dc = (colours.reshape(n, 3) / 255.0 - 0.5) / COLOUR_SCALE
    rest = (sh.reshape(n, k - 1, 3).astype(np.float32) - 128.0) / 128.0
    return Gaussians(
        fixed.astype(np.float32) / (1 << bits),
        scales.reshape(n, 3) / 16.0 - 10.0,
        quats,
        logit(alphas / 255.0),
        np.concatenate([dc[:, None, :], rest], axis=1),
    ).numpy()
