"""Options of the ``export-mesh`` stage (its own module: :mod:`nerf.asset` builds the mesh from them and
:mod:`nerf.export` writes the files, and neither may import the other's module for them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .surface import MeshConfig
from .texture import BakeConfig

METRES_PER_UNIT = 0.4
"""Default scale. A PanoHead head is about 0.5 units wide and a human head with
hair about 0.2 m, so one PanoHead unit is taken as 0.4 m."""
TEXTURE_SOURCES = ("views", "field")


@dataclass
class ExportConfig:
    """Options of the ``export-mesh`` stage."""

    mesh: MeshConfig = field(default_factory=MeshConfig)
    """Surface extraction and clean-up."""
    bake: BakeConfig = field(default_factory=BakeConfig)
    """Texture baking."""
    texture_source: str = "views"
    """``views``: project the run's views (visibility- and angle-weighted), texels no view saw
    take the field's colour; ``field``: radiance queries of the field along the surface normal."""
    metres_per_unit: float = METRES_PER_UNIT
    """Scale from PanoHead world units to metres in the written files."""
    target: str = "generic"
    """Where the asset goes (:data:`nerf.targets.TARGETS`): its limits on triangles, texture size and
    file size are checked, and it gives the LODs and formats left unset here."""
    lods: tuple[float, ...] | None = None
    """LOD triangle counts as fractions of ``mesh.triangles``, first 1.0 (e.g. ``(1.0, 0.5, 0.25)``): LOD i
    is decimated from LOD i-1 (LOD 0 from the full-resolution surface), unwrapped and baked on its own and written as
    ``head_lod{i}.glb`` (LOD 0 is ``head.glb``); None: the target's."""
    formats: tuple[str, ...] | None = None
    """Files to write, from ``glb obj ply fbx`` (GLB always); None: the target's. FBX needs ``bpy``
    (the ``blender`` extra) and holds every LOD as ``head_LOD0``, ``head_LOD1``, ..."""
    normal_map: bool = False
    """Bake a tangent-space normal map (OpenGL, +Y up) of the full-resolution surface onto each LOD."""
    neck_cap: float = 0.02
    """Cut the neck flat this far (PanoHead units) above the surface's lowest point and close it with a cap,
    so that the mesh is closed and sits on a body; the cap is the asset's base and origin; 0: no cut."""
    roughness: float = 0.6
    """PBR roughness of the material (skin and hair are rough dielectrics; metallic is 0)."""
