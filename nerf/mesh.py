"""The mesh stage's building blocks under one name (kept so that ``from nerf.mesh import ...`` still works).

The code lives in modules that each do one thing:

- :mod:`nerf.surface`: a field (density, or depth maps rendered from it) to a closed surface;
- :mod:`nerf.cleanup`: largest component, small holes, the neck's cut and cap, the origin;
- :mod:`nerf.decimate`: quadric-error decimation;
- :mod:`nerf.texture`: UV unwrap (xatlas), texels, texture bake from the views or the field;
- :mod:`nerf.normal_map`: tangent frames and tangent-space normal maps.

New code should import from those modules.
"""

from __future__ import annotations

from .cleanup import cap_neck, close_small_holes, keep_largest_component, neck_origin
from .decimate import decimate
from .normal_map import bake_normal_map, vertex_tangents
from .surface import (
    DEFAULT_BOUNDS,
    DEFAULT_THRESHOLD,
    MIN_DEPTH_COVERAGE,
    SURFACES,
    DensityFn,
    DepthFn,
    MeshConfig,
    View,
    choose_threshold,
    density_grid,
    depth_maps,
    extract_mesh,
    fill_cavities,
    fuse_depth_maps,
    fused_grid,
    mesh_from_grid,
    surface_from_field,
)
from .texture import (
    FILL_SOURCES,
    BakeConfig,
    RgbFn,
    Texels,
    UVMesh,
    assemble_texture,
    bake_from_field,
    bake_from_views,
    rasterize_uv,
    unwrap,
    vertex_colours,
)

__all__ = [
    "DEFAULT_BOUNDS",
    "DEFAULT_THRESHOLD",
    "FILL_SOURCES",
    "MIN_DEPTH_COVERAGE",
    "SURFACES",
    "BakeConfig",
    "DensityFn",
    "DepthFn",
    "MeshConfig",
    "RgbFn",
    "Texels",
    "UVMesh",
    "View",
    "assemble_texture",
    "bake_from_field",
    "bake_from_views",
    "bake_normal_map",
    "cap_neck",
    "choose_threshold",
    "close_small_holes",
    "decimate",
    "density_grid",
    "depth_maps",
    "extract_mesh",
    "fill_cavities",
    "fuse_depth_maps",
    "fused_grid",
    "keep_largest_component",
    "mesh_from_grid",
    "neck_origin",
    "rasterize_uv",
    "surface_from_field",
    "unwrap",
    "vertex_colours",
    "vertex_tangents",
]
