"""From a fitted field to the asset's LODs in memory: surface, neck cap, decimation, UVs, textures.

Knows the order of the mesh stage's steps and how to ask a field for what they need (the field
adapters turn a torch model into the plain numpy functions of :mod:`nerf.surface` and
:mod:`nerf.texture`); :mod:`nerf.export` writes the result to files. Nothing here touches the disk
except reading the run's views.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import trimesh

from portrait3d import memory
from portrait3d.errors import UserError
from portrait3d.run import Run

from .cleanup import cap_neck, neck_origin
from .decimate import decimate
from .export_config import ExportConfig
from .normal_map import bake_normal_map
from .surface import View, surface_from_field
from .texture import (
    UVMesh,
    assemble_texture,
    bake_from_field,
    bake_from_views,
    rasterize_uv,
    resize_texture,
    unwrap,
)


@dataclass
class BuiltLod:
    """One level of detail, ready to write."""

    fraction: float
    """Its triangle budget as a fraction of the LOD 0 budget."""
    surface: trimesh.Trimesh
    """The decimated surface (PanoHead units)."""
    uvmesh: UVMesh
    """The same surface split along its UV seams."""
    texture: np.ndarray
    """(S, S, 3) uint8 colour texture."""
    normal_map: np.ndarray | None
    """(S, S, 3) uint8 tangent-space normal map, or None."""

    def __iter__(self):  # unpacks as (fraction, surface, uvmesh, texture, normal_map)
        return iter((self.fraction, self.surface, self.uvmesh, self.texture, self.normal_map))


@dataclass
class BuiltAsset:
    """Everything :func:`build_asset` made."""

    lods: list[BuiltLod]
    full: trimesh.Trimesh
    """The capped full-resolution surface (before decimation)."""
    origin: np.ndarray
    """(3,) the PanoHead point that becomes the files' origin."""
    threshold: float | None
    """The density iso-level (None: depth fusion)."""
    seen_fraction: float
    """Share of LOD 0's texels that some view saw."""
    timings: dict[str, float]
    """``surface_s``, ``unwrap_s``, ``bake_s``."""


def build_asset(run: Run, config: ExportConfig, model, lods: tuple[float, ...]) -> BuiltAsset:
    """Extract, cap, decimate, unwrap and bake every LOD of ``model`` (PanoHead units)."""
    from .targets import lod_texture_size

    timings: dict[str, float] = {}
    start = time.perf_counter()
    mesh_config = config.mesh
    if mesh_config.bounds is None:
        mesh_config = dataclasses.replace(mesh_config, bounds=field_bounds(model))
    views = read_views(run) if run.path("views", "cameras.json").exists() else None
    try:
        full, threshold = surface_from_field(
            density_function(model), mesh_config, views, depth_function(model), decimated=False
        )
    except ValueError as exc:
        raise UserError(f"{run.path('nerf')}: cannot extract a surface ({exc}); try another --threshold") from exc
    full, cut = cap_neck(full, config.neck_cap)
    origin = neck_origin(full, cut)
    timings["surface_s"] = time.perf_counter() - start
    # The depth maps and fusion freed hundreds of MiB that the C heap would keep resident under the bake.
    memory.release_freed()

    colour_fn = rgb_function(model)
    if config.texture_source == "field" and colour_fn is None:
        raise UserError("--texture-source field: this field has no colour queries; use --texture-source views")
    built, seen_fraction = [], 1.0
    timings["unwrap_s"] = timings["bake_s"] = 0.0
    previous = full
    for i, fraction in enumerate(lods):
        start = time.perf_counter()
        # Each LOD from the one before: the same quadric error, a fraction of the time of starting over.
        surface = decimate(previous, max(4, int(round(config.mesh.triangles * fraction))))
        surface.remove_unreferenced_vertices()
        previous = surface
        size = config.bake.texture_size if i == 0 else lod_texture_size(config.bake.texture_size, fraction)
        uvmesh = unwrap(surface, size, config.bake.padding)
        bake_size = config.bake.baked_at(size)
        texels = rasterize_uv(uvmesh, bake_size)
        timings["unwrap_s"] += time.perf_counter() - start
        start = time.perf_counter()
        if config.texture_source == "views":
            colours, weight = bake_from_views(uvmesh, texels, views, config.bake)
            # Texels no view saw (the crown, the neck cap) take the colour of the seen surface around them.
            known = weight > config.bake.min_weight
            if i == 0:
                seen_fraction = float(np.mean(weight > 0))
        else:
            colours, known = bake_from_field(texels, colour_fn), None
        memory.release_freed()  # the bake's per-view temporaries, before the texture's full-size images
        texture = resize_texture(assemble_texture(texels, colours, known), size)
        if config.normal_map:
            # The geometry's detail is not the views': the normal map is baked at the full size.
            full_texels = texels if bake_size == size else rasterize_uv(uvmesh, size)
            normal_map = bake_normal_map(uvmesh, full_texels, full)
        else:
            normal_map = None
        timings["bake_s"] += time.perf_counter() - start
        built.append(BuiltLod(fraction, surface, uvmesh, texture, normal_map))
    return BuiltAsset(built, full, origin, threshold, seen_fraction, timings)


# --- field adapters --------------------------------------------------------------------
def density_function(model):
    """``model.density`` as a numpy function (N, 3) -> (N,), whatever array type the model takes."""
    return _numpy_call(model.density)


def depth_function(model):
    """``model.render_depth`` as a :data:`nerf.mesh.DepthFn`, or None if the model cannot render depth."""
    fn = getattr(model, "render_depth", None)
    if fn is None:
        return None

    def depth(camera, width: int, height: int, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(fn(camera, width, height, pixels), dtype=np.float32)

    return depth


def rgb_function(model):
    """``model.rgb`` as a numpy function ((N, 3), (N, 3)) -> (N, 3), or None if the model has none."""
    fn = getattr(model, "rgb", None)
    return None if fn is None else _numpy_call(fn)


def field_bounds(model) -> tuple[float, ...]:
    """The cube a field covers (``model.config[.field].half_extent``), else the default search box."""
    from .surface import DEFAULT_BOUNDS

    config = getattr(model, "config", None)
    half = getattr(config, "half_extent", None) or getattr(getattr(config, "field", None), "half_extent", None)
    return DEFAULT_BOUNDS if half is None else (-half, -half, -half, half, half, half)


def _numpy_call(fn):
    import torch

    owner = getattr(fn, "__self__", None)
    params = owner.parameters() if isinstance(owner, torch.nn.Module) else iter(())
    device = next(params, torch.empty(0)).device

    def call(*arrays: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = fn(*(torch.as_tensor(np.asarray(a, dtype=np.float32), device=device) for a in arrays))
        if isinstance(out, torch.Tensor):
            out = out.detach().float().cpu().numpy()
        return np.asarray(out, dtype=np.float64)

    return call


# --- views ---------------------------------------------------------------------------------
def read_views(run: Run) -> list[View]:
    """The run's views with their cameras (``views/cameras.json``, PanoHead labels)."""
    from PIL import Image

    from portrait3d.cameras import read_labels

    labels = read_labels(run.path("views", "cameras.json"))
    views = []
    for name, cam in labels.items():
        path = run.path("views", name)
        if not path.exists():
            raise UserError(f"{path}: listed in views/cameras.json but missing")
        try:
            image = np.asarray(Image.open(path).convert("RGBA"))
        except OSError as exc:
            raise UserError(f"{path}: not a readable image ({exc})") from exc
        views.append(View(image, cam))
    if not views:
        raise UserError(f"{run.path('views', 'cameras.json')}: lists no views")
    return views
