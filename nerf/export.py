"""The ``export-mesh`` stage: density field -> textured GLB, OBJ (+ MTL, PNG) and PLY.

Files (in ``RUN/mesh/``, written together: the folder appears whole or not at all)

    head.glb          glTF 2.0 binary: +Y up, facing +Z, metres, embedded PNG texture;
                      ``asset.extras.portrait3d`` records the scale from PanoHead units
    head.obj, head.mtl, head_texture.png
                      the same mesh and texture (``map_Kd`` is a path relative to the MTL)
    head.ply          binary PLY with per-vertex colours (no texture needed)

PanoHead world axes already match glTF (y up, the face toward +z), so the
conversion is one uniform scale, :attr:`ExportConfig.metres_per_unit`.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from portrait3d import __version__, progress
from portrait3d.errors import UserError
from portrait3d.run import Run, atomic_dir

from .mesh import BakeConfig, MeshConfig, UVMesh, View

STAGE = "export-mesh"
MESH_DIR = "mesh"
GLB_NAME, OBJ_NAME, MTL_NAME, TEXTURE_NAME, PLY_NAME = (
    "head.glb",
    "head.obj",
    "head.mtl",
    "head_texture.png",
    "head.ply",
)
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


# --- the stage -----------------------------------------------------------------------
OUTPUTS = [f"{MESH_DIR}/{name}" for name in (GLB_NAME, OBJ_NAME, MTL_NAME, TEXTURE_NAME, PLY_NAME)]
"""Run-relative files the stage writes."""


def export_mesh(run: Run, config: ExportConfig, field_model=None, force: bool = False) -> dict:
    """Run the ``export-mesh`` stage (skipped when its inputs and options did not change).

    Args:
        run: the run folder; reads ``nerf/`` (through ``nerf.fit.load_field``) and
            ``views/NNNN.png`` + ``views/cameras.json`` (texture, automatic threshold).
        config: options.
        field_model: a field to use instead of loading ``nerf/`` (tests, benchmarks); it
            needs ``density(points)`` and, for colour queries, ``rgb(points, view_dirs)``.
        force: run even if the stage record matches.
    Returns:
        Information for ``report.json`` (see :func:`build_and_write`), plus ``seconds`` and ``skipped``.
    """
    from portrait3d.stages import mesh_stage, run_stage

    return run_stage(run, mesh_stage(config, field_model), force)


def stage_inputs(run: Run, config: ExportConfig, needs_nerf: bool = True) -> list[str]:
    """Check the options and the run's files; the run-relative inputs the stage reads."""
    _check_config(config)
    inputs = []
    if needs_nerf:
        run.require("nerf", hint=f"run `portrait3d fit-nerf {run.root}` first")
        inputs.append("nerf")
    if config.texture_source == "views":
        run.require("views/cameras.json", hint="the views texture needs the run's views and their cameras")
    if run.path("views", "cameras.json").exists():  # texture and automatic threshold
        inputs.append("views")
    return inputs


def stage_function(field_model=None):
    """``fn(run, config) -> info`` of the stage: loads ``nerf/`` unless ``field_model`` is given."""

    def stage(run: Run, config: ExportConfig) -> dict:
        model = field_model if field_model is not None else _load_field(run)
        return build_and_write(run, config, model)

    return stage


def build_and_write(run: Run, config: ExportConfig, model) -> dict:
    """Extract, texture and write the mesh files of ``model`` into ``run/mesh``.

    Returns:
        ``units``, ``scale_to_metres`` (= ``metres_per_unit``, metres per PanoHead unit), axes,
        ``triangles``, ``vertices``, ``watertight``, ``surface`` (``depth`` or ``density``),
        ``density_threshold`` (None for depth fusion), ``size_m`` (x, y, z extent),
        ``texture_size``, ``texture_source``, ``texels_seen_by_views``, ``files`` and timings.
    """
    import dataclasses
    import time

    import trimesh

    from . import mesh as meshing

    timings = {}
    start = time.perf_counter()
    mesh_config = config.mesh
    if mesh_config.bounds is None:
        mesh_config = dataclasses.replace(mesh_config, bounds=field_bounds(model))
    views = read_views(run) if run.path("views", "cameras.json").exists() else None
    try:
        surface, threshold = meshing.surface_from_field(
            density_function(model), mesh_config, views, depth_function(model)
        )
    except ValueError as exc:
        raise UserError(f"{run.path('nerf')}: cannot extract a surface ({exc}); try another --threshold") from exc
    timings["surface_s"] = time.perf_counter() - start

    start = time.perf_counter()
    size = config.bake.texture_size
    uvmesh = meshing.unwrap(surface, size, config.bake.padding)
    texels = meshing.rasterize_uv(uvmesh, size)
    timings["unwrap_s"] = time.perf_counter() - start

    start = time.perf_counter()
    colour_fn = rgb_function(model)
    if config.texture_source == "views":
        colours, weight = meshing.bake_from_views(uvmesh, texels, views, config.bake)
        known = weight > 0
        if colour_fn is not None and not known.all():
            colours[~known] = meshing.bake_from_field(texels.subset(~known), colour_fn)
            known[:] = True
        seen_fraction = float(np.mean(weight > 0))
    else:
        if colour_fn is None:
            raise UserError("--texture-source field: this field has no colour queries; use --texture-source views")
        colours, known, seen_fraction = meshing.bake_from_field(texels, colour_fn), None, 1.0
    texture = meshing.assemble_texture(texels, colours, known)
    timings["bake_s"] = time.perf_counter() - start

    scale = config.metres_per_unit
    extras = scale_record(scale)
    colours_per_vertex = meshing.vertex_colours(uvmesh, texture, len(surface.vertices))
    with atomic_dir(run.path(MESH_DIR)) as tmp:
        write_glb(tmp / GLB_NAME, uvmesh, texture, scale, extras)
        write_obj(tmp / OBJ_NAME, tmp / MTL_NAME, tmp / TEXTURE_NAME, uvmesh, texture, scale)
        ply = trimesh.Trimesh(
            np.asarray(surface.vertices) * scale, surface.faces, vertex_colors=colours_per_vertex, process=False
        )
        (tmp / PLY_NAME).write_bytes(trimesh.exchange.ply.export_ply(ply, encoding="binary"))
    lo, hi = np.asarray(surface.vertices).min(axis=0) * scale, np.asarray(surface.vertices).max(axis=0) * scale
    progress.info(f"mesh: {len(surface.faces)} triangles, {size}² texture, {(hi - lo)[0]:.3f} m wide")
    return {
        **extras,
        "scale_to_metres": scale,
        "triangles": int(len(surface.faces)),
        "vertices": int(len(surface.vertices)),
        "watertight": bool(surface.is_watertight),
        "surface": "depth" if threshold is None else "density",
        "density_threshold": None if threshold is None else round(threshold, 4),
        "size_m": [round(float(v), 4) for v in hi - lo],
        "texture_size": size,
        "texture_source": config.texture_source,
        "texels_seen_by_views": round(seen_fraction, 4),
        "files": list(OUTPUTS),
        **{k: round(v, 3) for k, v in timings.items()},
    }


def scale_record(metres_per_unit: float) -> dict:
    """What the files say about their units (glTF ``asset.extras.portrait3d`` and report.json)."""
    return {
        "units": "metres",
        "metres_per_unit": metres_per_unit,
        "source_units": "PanoHead world units (head at the origin, y up, face toward +z)",
        "up": "+Y",
        "forward": "+Z",
    }


def _check_config(config: ExportConfig) -> None:
    if config.texture_source not in TEXTURE_SOURCES:
        raise UserError(f"--texture-source: choose one of {', '.join(TEXTURE_SOURCES)}")
    if config.mesh.triangles < 100:
        raise UserError(f"--triangles: at least 100, got {config.mesh.triangles}")
    if not 64 <= config.bake.texture_size <= 8192:
        raise UserError(f"--texture: between 64 and 8192 pixels, got {config.bake.texture_size}")
    if not 16 <= config.mesh.resolution <= 1024:
        raise UserError(f"--resolution: between 16 and 1024, got {config.mesh.resolution}")
    if not config.metres_per_unit > 0:
        raise UserError(f"--scale: must be positive, got {config.metres_per_unit}")


def _load_field(run: Run):
    try:
        from nerf.fit import load_field
    except ImportError as exc:
        raise UserError(f"{run.path('nerf')}: this installation cannot load NeRF fields ({exc})") from exc
    return load_field(run.root)


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
    from .mesh import DEFAULT_BOUNDS

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


# --- writers -------------------------------------------------------------------------------
def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def write_glb(path: Path, uvmesh: UVMesh, texture: np.ndarray, scale: float, extras: dict) -> None:
    """Write a textured mesh as a glTF 2.0 binary (one node, one primitive, one embedded PNG).

    Args:
        path: the ``.glb`` file.
        uvmesh: mesh with UVs in PanoHead units.
        texture: (S, S, 3) uint8 image.
        scale: metres per PanoHead unit.
        extras: stored as ``asset.extras.portrait3d``.
    """
    positions = (uvmesh.vertices * scale).astype(np.float32)
    normals = uvmesh.normals.astype(np.float32)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    # glTF texture coordinates start at the top-left of the image, ours at the bottom-left.
    texcoords = np.stack([uvmesh.uv[:, 0], 1.0 - uvmesh.uv[:, 1]], axis=1).astype(np.float32)
    indices = uvmesh.faces.astype(np.uint32).ravel()
    png = _png_bytes(texture)

    blobs: list[bytes] = []
    views: list[dict] = []

    def add_view(data: bytes, target: int | None = None) -> int:
        offset = sum(len(b) for b in blobs)
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        blobs.append(data + b"\0" * (-len(data) % 4))
        views.append(view)
        return len(views) - 1

    array_buffer, element_array_buffer = 34962, 34963
    float_type, uint_type = 5126, 5125
    accessors = [
        {
            "bufferView": add_view(positions.tobytes(), array_buffer),
            "componentType": float_type,
            "count": len(positions),
            "type": "VEC3",
            "min": positions.min(axis=0).tolist(),
            "max": positions.max(axis=0).tolist(),
        },
        {
            "bufferView": add_view(normals.tobytes(), array_buffer),
            "componentType": float_type,
            "count": len(normals),
            "type": "VEC3",
        },
        {
            "bufferView": add_view(texcoords.tobytes(), array_buffer),
            "componentType": float_type,
            "count": len(texcoords),
            "type": "VEC2",
        },
        {
            "bufferView": add_view(indices.tobytes(), element_array_buffer),
            "componentType": uint_type,
            "count": len(indices),
            "type": "SCALAR",
        },
    ]
    image_view = add_view(png)
    binary = b"".join(blobs)
    document = {
        "asset": {"version": "2.0", "generator": f"portrait3d {__version__}", "extras": {"portrait3d": extras}},
        "scene": 0,
        "scenes": [{"name": "portrait3d", "nodes": [0]}],
        "nodes": [{"name": "head", "mesh": 0}],
        "meshes": [
            {
                "name": "head",
                "primitives": [
                    {"attributes": {"POSITION": 0, "NORMAL": 1, "TEXCOORD_0": 2}, "indices": 3, "material": 0}
                ],
            }
        ],
        # The texture already holds the lighting of the views: viewers that know KHR_materials_unlit
        # show it as it is; the others fall back to a rough, non-metallic PBR material.
        "extensionsUsed": ["KHR_materials_unlit"],
        "materials": [
            {
                "name": "head",
                "pbrMetallicRoughness": {
                    "baseColorTexture": {"index": 0},
                    "metallicFactor": 0.0,
                    "roughnessFactor": 0.9,
                },
                "extensions": {"KHR_materials_unlit": {}},
            }
        ],
        "textures": [{"sampler": 0, "source": 0}],
        "samplers": [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}],
        "images": [{"bufferView": image_view, "mimeType": "image/png"}],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": len(binary)}],
    }
    json_chunk = json.dumps(document, separators=(",", ":")).encode("utf-8")
    json_chunk += b" " * (-len(json_chunk) % 4)
    total = 12 + 8 + len(json_chunk) + 8 + len(binary)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<4sII", b"glTF", 2, total))
        fh.write(struct.pack("<I4s", len(json_chunk), b"JSON") + json_chunk)
        fh.write(struct.pack("<I4s", len(binary), b"BIN\0") + binary)


def read_glb_json(path: str | Path) -> dict:
    """The JSON chunk of a ``.glb`` file (e.g. to read ``asset.extras.portrait3d``)."""
    data = Path(path).read_bytes()
    magic, _, _ = struct.unpack_from("<4sII", data, 0)
    length, kind = struct.unpack_from("<I4s", data, 12)
    if magic != b"glTF" or kind != b"JSON":
        raise UserError(f"{path}: not a binary glTF file")
    return json.loads(data[20 : 20 + length])


def write_obj(
    obj_path: Path, mtl_path: Path, texture_path: Path, uvmesh: UVMesh, texture: np.ndarray, scale: float
) -> None:
    """Write a Wavefront OBJ with its MTL and texture PNG side by side (texture path relative to the MTL)."""
    from PIL import Image

    Image.fromarray(texture).save(texture_path)
    mtl_path.write_text(
        "# portrait3d head material\n"
        "newmtl head\nKa 1.0 1.0 1.0\nKd 1.0 1.0 1.0\nKs 0.0 0.0 0.0\nd 1.0\nillum 1\n"
        f"map_Kd {texture_path.name}\n"
    )
    faces = uvmesh.faces + 1  # OBJ indices start at 1; position, uv and normal share the index
    lines = [f"# portrait3d {__version__}: metres, +Y up, facing +Z", f"mtllib {mtl_path.name}", "o head"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in uvmesh.vertices * scale]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in uvmesh.uv]
    lines += [f"vn {x:.5f} {y:.5f} {z:.5f}" for x, y, z in uvmesh.normals]
    lines.append("usemtl head")
    lines += [f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}" for a, b, c in faces]
    obj_path.write_text("\n".join(lines) + "\n")
