"""The ``export-mesh`` stage: density field -> textured GLB, OBJ (+ MTL, PNG) and PLY.

Files (in ``RUN/mesh/``, written together: the folder appears whole or not at all)

    head.glb          glTF 2.0 binary: +Y up, facing +Z, metres, embedded PNG texture;
                      ``asset.extras.portrait3d`` records the scale from PanoHead units
    head.obj, head.mtl, head_texture.png
                      the same mesh and texture (``map_Kd`` is a path relative to the MTL)
    head.ply          binary PLY with per-vertex colours (no texture needed)
    head_lod1.glb ... the lower LODs (``--lods``; each its own file with its own texture)
    head.fbx          every LOD as head_LOD0, head_LOD1, ... (``--formats ...,fbx``; Blender's exporter)

``--target`` (:mod:`nerf.targets`) picks the budget, LODs and formats. PanoHead world axes already
match glTF (y up, the face toward +z), so the conversion is a shift of the origin to the base of the
neck (the flat cap that closes the mesh) and one uniform scale, :attr:`ExportConfig.metres_per_unit`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from portrait3d import __version__, glb, progress
from portrait3d.errors import UserError
from portrait3d.run import Run, atomic_dir
from portrait3d.runner import Stage, run_stage

from .asset import density_function, depth_function, field_bounds, read_views, rgb_function  # noqa: F401 (aliases)
from .export_config import METRES_PER_UNIT, TEXTURE_SOURCES, ExportConfig  # noqa: F401 (re-exported)
from .surface import MeshConfig, View  # noqa: F401 (View: alias)
from .texture import UVMesh

STAGE = "export-mesh"
MESH_DIR = "mesh"
GLB_NAME, OBJ_NAME, MTL_NAME, TEXTURE_NAME, PLY_NAME = (
    "head.glb",
    "head.obj",
    "head.mtl",
    "head_texture.png",
    "head.ply",
)
# --- the stage -----------------------------------------------------------------------
LOD_GLB = "head_lod{}.glb"
"""Name of the GLB of LOD i >= 1 (LOD 0 is :data:`GLB_NAME`)."""
FBX_NAME, NORMAL_NAME = "head.fbx", "head_normal.png"


def resolved(config: ExportConfig) -> tuple[tuple[float, ...], tuple[str, ...]]:
    """The LOD fractions and formats of ``config``, with the target's where it leaves them unset."""
    from .targets import get_target

    target = get_target(config.target)
    lods = tuple(config.lods) if config.lods is not None else target.lods
    formats = tuple(config.formats) if config.formats is not None else target.formats
    return lods, ("glb", *(f for f in formats if f != "glb"))


def output_files(config: ExportConfig) -> list[str]:
    """Run-relative files the stage writes with ``config``."""
    lods, formats = resolved(config)
    names = [GLB_NAME, *(LOD_GLB.format(i) for i in range(1, len(lods)))]
    if "obj" in formats:
        names += [OBJ_NAME, MTL_NAME, TEXTURE_NAME]
    if "ply" in formats:
        names.append(PLY_NAME)
    if "fbx" in formats:
        names.append(FBX_NAME)
    return [f"{MESH_DIR}/{name}" for name in names]


OUTPUTS = output_files(ExportConfig())
"""Run-relative files the stage writes with the default options."""


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
    return run_stage(run, stage(config, field_model), force)


def stage(config: ExportConfig, field_model=None) -> Stage:
    """``export-mesh``: GLB, OBJ and PLY of the head (``mesh/``); ``field_model`` replaces ``nerf/`` (tests)."""

    def check(run: Run) -> None:
        stage_inputs(run, config, needs_nerf=field_model is None)

    views = ("views/cameras.json", "views")
    return Stage(
        STAGE,
        stage_function(field_model),
        config,
        # The field's files, not nerf/config.yml: that holds the run's absolute path, not the field.
        inputs=(("nerf/volume.json", "nerf/nerfstudio_models") if field_model is None else ()) + views,
        outputs=tuple(output_files(config)),
        optional=views if config.texture_source != "views" else (),
        needs="run `portrait3d fit-nerf {run}` first (the views texture also needs the run's views)",
        check=check,
    )


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
        ``origin_source_units`` (the PanoHead point at the files' origin), ``target``,
        ``triangles``, ``vertices``, ``watertight`` (of LOD 0), ``surface`` (``depth`` or ``density``),
        ``density_threshold`` (None for depth fusion), ``size_m`` (x, y, z extent),
        ``texture_size``, ``texture_source``, ``texels_seen_by_views``, ``lods`` (per LOD: file,
        fraction, triangles, vertices, texture size, watertight), ``files``, ``file_sizes`` (bytes per
        run-relative file) and timings.
    """
    import time

    import trimesh

    from .asset import build_asset
    from .targets import get_target
    from .texture import vertex_colours

    lods, formats = resolved(config)
    asset = build_asset(run, config, model, lods)
    built, origin, threshold, timings = asset.lods, asset.origin, asset.threshold, asset.timings
    seen_fraction = asset.seen_fraction
    target = get_target(config.target)
    scale = config.metres_per_unit
    extras = {
        **scale_record(scale),
        "origin": "base of the neck (the cap) on the mid-plane",
        "origin_source_units": [round(float(v), 6) for v in origin],
        "target": config.target,
        "generator": f"portrait3d {__version__}",
        "provenance": "export-mesh of a NeRF fitted to the run's generated views (portrait3d make-asset)",
    }
    names = [Path(f).name for f in output_files(config)]
    unlit = config.target == "generic" and not config.normal_map
    lod_info = []
    with atomic_dir(run.path(MESH_DIR)) as tmp:
        glbs = []
        for i, (fraction, surface, uvmesh, texture, normal_map) in enumerate(built):
            glb = tmp / (GLB_NAME if i == 0 else LOD_GLB.format(i))
            lod_extras = {**extras, "lod": i, "lod_fraction": fraction, "lods": len(built)}
            # LOD 0's PNG is encoded once, for the GLB and the OBJ's texture file alike (about a second at 2048²).
            png = _png_bytes(texture)
            if i == 0:
                texture_png = png
            write_glb(
                glb, uvmesh, texture, scale, lod_extras, origin=origin, normal_map=normal_map,
                name=f"head_LOD{i}" if len(built) > 1 else "head", roughness=config.roughness, unlit=unlit,
                texture_png=png,
            )  # fmt: skip
            glbs.append(glb)
            megabytes = glb.stat().st_size / 1e6
            if target.max_file_mb is not None and megabytes > target.max_file_mb:
                raise UserError(
                    f"--target {config.target}: {glb.name} is {megabytes:.1f} MB, over the target's "
                    f"{target.max_file_mb:g} MB; ask for a smaller --texture or fewer --triangles"
                )
            lod_info.append(
                {
                    "file": f"{MESH_DIR}/{glb.name}",
                    "fraction": fraction,
                    "triangles": int(len(uvmesh.faces)),
                    "vertices": int(len(surface.vertices)),
                    "texture_size": int(texture.shape[0]),
                    "watertight": bool(surface.is_watertight),
                }
            )
        _, surface, uvmesh, texture, normal_map = built[0]
        if "obj" in formats:
            write_obj(
                tmp / OBJ_NAME,
                tmp / MTL_NAME,
                tmp / TEXTURE_NAME,
                uvmesh,
                texture,
                scale,
                origin,
                texture_png=texture_png,
            )
        if "ply" in formats:
            colours_per_vertex = vertex_colours(uvmesh, texture, len(surface.vertices))
            ply = trimesh.Trimesh(
                (np.asarray(surface.vertices) - origin) * scale,
                surface.faces,
                vertex_colors=colours_per_vertex,
                process=False,
            )
            (tmp / PLY_NAME).write_bytes(trimesh.exchange.ply.export_ply(ply, encoding="binary"))
        if "fbx" in formats:
            from . import blender

            start = time.perf_counter()
            blender.export_fbx(tmp / FBX_NAME, glbs, [f"head_LOD{i}" for i in range(len(glbs))])
            timings["fbx_s"] = time.perf_counter() - start
        sizes = {f"{MESH_DIR}/{name}": (tmp / name).stat().st_size for name in names}
    vertices = np.asarray(surface.vertices)
    lo, hi = vertices.min(axis=0) * scale, vertices.max(axis=0) * scale
    progress.info(
        f"mesh: {len(surface.faces)} triangles, {config.bake.texture_size}² texture, {(hi - lo)[0]:.3f} m wide, "
        f"{len(built)} LOD(s), {sizes[f'{MESH_DIR}/{GLB_NAME}'] / 1e6:.2f} MB GLB"
    )
    return {
        **extras,
        "scale_to_metres": scale,
        "triangles": int(len(surface.faces)),
        "vertices": int(len(surface.vertices)),
        "watertight": bool(surface.is_watertight),
        "surface": "depth" if threshold is None else "density",
        "density_threshold": None if threshold is None else round(threshold, 4),
        "size_m": [round(float(v), 4) for v in hi - lo],
        "texture_size": config.bake.texture_size,
        "texture_baked_at": config.bake.baked_at(config.bake.texture_size),
        "texture_source": config.texture_source,
        "texels_seen_by_views": round(seen_fraction, 4),
        "normal_map": config.normal_map,
        "lods": lod_info,
        "files": output_files(config),
        "file_sizes": sizes,
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
    from .targets import FORMATS, get_target

    target = get_target(config.target)
    lods, formats = resolved(config)
    if not lods or lods[0] != 1.0 or any(not 0.0 < b < a for a, b in zip(lods, lods[1:])):
        raise UserError(f"--lods: fractions that start at 1 and decrease, each above 0, got {list(lods)}")
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise UserError(f"--formats: unknown {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if "fbx" in formats:
        from . import blender

        if not blender.available():
            raise UserError(f"--formats fbx needs Blender's Python module bpy: {blender.EXTRA_HINT}")
    if config.target != "generic" and config.mesh.triangles > target.triangles:
        raise UserError(
            f"--triangles: the {config.target} target allows at most {target.triangles}, got {config.mesh.triangles}"
        )
    size = config.bake.texture_size
    if size > target.max_texture_size or (config.target != "generic" and size & (size - 1)):
        raise UserError(
            f"--texture: the {config.target} target wants a power of two up to {target.max_texture_size}, got {size}"
        )
    if config.bake.bake_size is not None and config.bake.bake_size < 16:
        raise UserError(f"bake_size: at least 16 texels (or none: the texture's size), got {config.bake.bake_size}")
    if not 0.0 <= config.roughness <= 1.0:
        raise UserError(f"roughness: between 0 and 1, got {config.roughness}")
    if config.neck_cap < 0:
        raise UserError(f"neck_cap: at least 0, got {config.neck_cap}")
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


# --- writers -------------------------------------------------------------------------------
def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def write_glb(
    path: Path,
    uvmesh: UVMesh,
    texture: np.ndarray,
    scale: float,
    extras: dict,
    origin: np.ndarray | None = None,
    normal_map: np.ndarray | None = None,
    name: str = "head",
    roughness: float = 0.9,
    unlit: bool = True,
    texture_png: bytes | None = None,
) -> None:
    """Write a textured mesh as a glTF 2.0 binary (one node, one primitive, embedded PNGs).

    Args:
        path: the ``.glb`` file.
        uvmesh: mesh with UVs in PanoHead units.
        texture: (S, S, 3) uint8 base colour.
        scale: metres per PanoHead unit.
        extras: stored as ``asset.extras.portrait3d``.
        origin: (3,) PanoHead point that becomes the file's origin (default: the PanoHead origin).
        normal_map: (S', S', 3) uint8 tangent-space normal map (OpenGL convention), written with
            per-vertex tangents; None: none.
        name: of the node, mesh and material.
        roughness: the material's PBR roughness (metallic is 0).
        unlit: mark the material ``KHR_materials_unlit`` (the texture already holds the views' lighting).
        texture_png: ``texture`` already encoded as PNG (None: encoded here).
    """
    from .normal_map import vertex_tangents

    offset = np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64)
    positions = ((uvmesh.vertices - offset) * scale).astype(np.float32)
    normals = uvmesh.normals.astype(np.float32)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    # glTF texture coordinates start at the top-left of the image, ours at the bottom-left.
    texcoords = np.stack([uvmesh.uv[:, 0], 1.0 - uvmesh.uv[:, 1]], axis=1).astype(np.float32)
    indices = uvmesh.faces.astype(np.uint32).ravel()

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
    attributes = {"POSITION": 0, "NORMAL": 1, "TEXCOORD_0": 2}
    material = {
        "name": name,
        "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 0.0, "roughnessFactor": roughness},
    }
    images = [
        {
            "name": f"{name}_basecolor",
            "bufferView": add_view(texture_png or _png_bytes(texture)),
            "mimeType": "image/png",
        }
    ]
    if normal_map is not None:
        # glTF's texture v runs down the image, ours up: the bitangent flips with it.
        tangents = vertex_tangents(uvmesh)
        tangents[:, 3] *= -1.0
        accessors.append(
            {
                "bufferView": add_view(tangents.astype(np.float32).tobytes(), array_buffer),
                "componentType": float_type,
                "count": len(tangents),
                "type": "VEC4",
            }
        )
        attributes["TANGENT"] = len(accessors) - 1
        images.append(
            {"name": f"{name}_normal", "bufferView": add_view(_png_bytes(normal_map)), "mimeType": "image/png"}
        )
        material["normalTexture"] = {"index": 1}
    document = {
        "asset": {"version": "2.0", "generator": f"portrait3d {__version__}", "extras": {"portrait3d": extras}},
        "scene": 0,
        "scenes": [{"name": "portrait3d", "nodes": [0]}],
        "nodes": [{"name": name, "mesh": 0}],
        "meshes": [{"name": name, "primitives": [{"attributes": attributes, "indices": 3, "material": 0}]}],
        "materials": [material],
        "textures": [{"sampler": 0, "source": i} for i in range(len(images))],
        "samplers": [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}],
        "images": images,
        "accessors": accessors,
    }
    if unlit:
        # Viewers that know KHR_materials_unlit show the texture (which holds the views' lighting) as it
        # is; the others fall back to the rough, non-metallic PBR material.
        document["extensionsUsed"] = ["KHR_materials_unlit"]
        material["extensions"] = {"KHR_materials_unlit": {}}
    binary = b"".join(blobs)
    document["bufferViews"] = views
    document["buffers"] = [{"byteLength": len(binary)}]
    Path(path).write_bytes(glb.pack(document, binary))


def read_glb_json(path: str | Path) -> dict:
    """The JSON chunk of a ``.glb`` file (e.g. to read ``asset.extras.portrait3d``)."""
    try:
        return glb.unpack(Path(path).read_bytes())[0]
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from exc


def write_obj(
    obj_path: Path,
    mtl_path: Path,
    texture_path: Path,
    uvmesh: UVMesh,
    texture: np.ndarray,
    scale: float,
    origin: np.ndarray | None = None,
    texture_png: bytes | None = None,
) -> None:
    """Write a Wavefront OBJ with its MTL and texture PNG side by side (texture path relative to the MTL);
    ``texture_png``: ``texture`` already encoded as PNG (None: encoded here)."""
    texture_path.write_bytes(texture_png or _png_bytes(texture))
    mtl_path.write_text(
        "# portrait3d head material\n"
        "newmtl head\nKa 1.0 1.0 1.0\nKd 1.0 1.0 1.0\nKs 0.0 0.0 0.0\nd 1.0\nillum 1\n"
        f"map_Kd {texture_path.name}\n"
    )
    faces = uvmesh.faces + 1  # OBJ indices start at 1; position, uv and normal share the index
    lines = [f"# portrait3d {__version__}: metres, +Y up, facing +Z", f"mtllib {mtl_path.name}", "o head"]
    offset = np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64)
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in (uvmesh.vertices - offset) * scale]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in uvmesh.uv]
    lines += [f"vn {x:.5f} {y:.5f} {z:.5f}" for x, y, z in uvmesh.normals]
    lines.append("usemtl head")
    lines += [f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}" for a, b, c in faces]
    obj_path.write_text("\n".join(lines) + "\n")
