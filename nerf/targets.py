"""Where the exported head goes: one budget per target (``export-mesh --target``), with its sources.

This table is the only place that knows the numbers. A number a platform publishes says
where it comes from; the others are this project's choices and say so.
"""

from __future__ import annotations

from dataclasses import dataclass

FORMATS = ("glb", "obj", "ply", "fbx")
"""Every file format ``export-mesh`` can write."""


@dataclass(frozen=True)
class Target:
    """The budget of one destination."""

    triangles: int
    """Triangle budget of LOD 0 (the most detailed mesh)."""
    texture_size: int
    """Default base-colour texture size of LOD 0 (pixels, square, a power of two)."""
    max_texture_size: int
    """Largest texture ``--texture`` may ask for."""
    lods: tuple[float, ...]
    """LOD triangle counts as fractions of LOD 0 (first 1.0)."""
    formats: tuple[str, ...]
    """Files written by default."""
    max_file_mb: float | None
    """Largest allowed GLB (MB, 10^6 bytes) of one LOD; None: no limit."""
    sources: tuple[str, ...]
    """Where each number comes from."""


TARGETS: dict[str, Target] = {
    "generic": Target(
        triangles=50_000,
        texture_size=2048,
        max_texture_size=8192,
        lods=(1.0,),
        formats=("glb", "obj", "ply"),
        max_file_mb=None,
        sources=("portrait3d's own defaults before targets existed (one LOD, GLB + OBJ + PLY)",),
    ),
    "web": Target(
        triangles=20_000,
        texture_size=1024,
        max_texture_size=2048,
        lods=(1.0, 0.5, 0.25),
        formats=("glb",),
        max_file_mb=5.0,
        sources=(
            "project choice: a GLB a web page (three.js, <model-viewer>) loads in about a second; "
            "power-of-two textures for mipmaps in WebGL 1",
        ),
    ),
    "avatar": Target(
        triangles=12_000,
        texture_size=1024,
        max_texture_size=2048,
        lods=(1.0, 0.5),
        formats=("glb",),
        max_file_mb=10.0,
        sources=(
            "the Ready Player Me avatar layout that avatar tools still read (its service closed on 2026-01-31): "
            "GLB at most 10 MB, textures square, power of two, 1024² by default and at most 2048²: "
            "https://docs.readyplayer.me/asset-creation-guide/reference/hero-character",
            "12 000 head triangles: project choice; with the rig's eyes, teeth, tongue and mouth cavity "
            "(about 2 500 more) a head-only avatar stays near 15 000, the most Ready Player Me published "
            "for one asset; two LODs (100 / 50 %) because every LOD carries the 67 morph targets",
            "the rigged files are written by the rig stage (portrait3d.rig) into avatar/: 52 ARKit "
            "blendshapes, 15 Oculus visemes, bones Neck, Head, LeftEye, RightEye",
        ),
    ),
    "unity": Target(
        triangles=30_000,
        texture_size=2048,
        max_texture_size=4096,
        lods=(1.0, 0.5, 0.25),
        formats=("glb", "fbx"),
        max_file_mb=None,
        sources=(
            "LOD meshes named <name>_LOD0, _LOD1, ... in one FBX become a LOD Group on import: "
            "https://docs.unity3d.com/Manual/importing-lod-meshes.html",
            "30 000 triangles and three LODs at 100 / 50 / 25 %: project choice for a hero head",
        ),
    ),
    "unreal": Target(
        triangles=50_000,
        texture_size=2048,
        max_texture_size=8192,
        lods=(1.0, 0.5, 0.25, 0.125),
        formats=("glb", "fbx"),
        max_file_mb=None,
        sources=(
            "LODs as fractions of the triangles (FStaticMeshReductionSettings.PercentTriangles), "
            "halving per LOD: https://dev.epicgames.com/documentation/en-us/unreal-engine/python-api/class/"
            "StaticMeshReductionSettings",
            "LOD meshes named <name>_LOD0, _LOD1, ... in one FBX import as the mesh's LODs (Import Mesh LODs)",
            "50 000 triangles: project choice (portrait3d's generic budget)",
        ),
    ),
}
"""The targets of ``export-mesh --target``."""


RETIRED = {
    "readyplayerme": "--target readyplayerme is gone: Ready Player Me closed its service on 2026-01-31; "
    "use --target avatar (a rigged head in the layout avatar tools read: ARKit blendshapes, visemes, eye bones)",
}
"""Targets that no longer exist, with the one line that says what to use instead."""


def get_target(name: str) -> Target:
    """The target called ``name``; a clear error for an unknown one."""
    from portrait3d.errors import UserError

    if name in RETIRED:
        raise UserError(RETIRED[name])
    if name not in TARGETS:
        raise UserError(f"--target: choose one of {', '.join(TARGETS)}, got {name!r}")
    return TARGETS[name]


def lod_texture_size(texture_size: int, fraction: float) -> int:
    """Texture size of a LOD with ``fraction`` of LOD 0's triangles: the texel density follows the
    triangle density (size ∝ sqrt(fraction)), rounded down to a power of two, at least 256."""
    scaled = texture_size * fraction**0.5
    size = 1 << int(scaled).bit_length() - 1 if scaled >= 1 else 1
    return max(min(size, texture_size), min(256, texture_size))


def budget_table() -> str:
    """The targets as a Markdown table (for the README and ``export-mesh --help``)."""
    rows = [
        "| target | triangles (LOD 0) | texture | LODs | formats | GLB limit |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, t in TARGETS.items():
        lods = " / ".join(f"{f:g}" for f in t.lods)
        limit = "none" if t.max_file_mb is None else f"{t.max_file_mb:g} MB"
        rows.append(
            f"| `{name}` | {t.triangles} | {t.texture_size}² (max {t.max_texture_size}²) | {lods} | "
            f"{', '.join(t.formats)} | {limit} |"
        )
    return "\n".join(rows)
