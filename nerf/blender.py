"""Blender as a client of the exported head: FBX export and import checks through ``bpy``.

``bpy`` (Blender on PyPI, the ``blender`` extra) runs in a subprocess of its own, one fresh
scene per call: Blender in the same process as torch and open3d can clash, and a subprocess
keeps each check independent. The same file is that subprocess's script
(``python nerf/blender.py fbx|inspect ...``), so it imports nothing of portrait3d at the top.

    python nerf/blender.py fbx OUT.fbx LOD0.glb [LOD1.glb ...]   one FBX, objects head_LOD0, head_LOD1, ...
    python nerf/blender.py inspect FILE.glb|FILE.fbx ...        JSON on stdout: objects, triangles, ...
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

EXTRA_HINT = "pip install 'portrait3d[blender]' (bash scripts/setup.sh --dev installs it)"


def available() -> bool:
    """True when Blender's Python module ``bpy`` is installed."""
    return importlib.util.find_spec("bpy") is not None


def _call(*args: str, timeout: float = 600) -> str:
    from portrait3d.errors import UserError

    if not available():
        raise UserError(f"{args[0]} needs Blender's Python module bpy: {EXTRA_HINT}")
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"Blender {args[0]} failed: {tail}")
    return proc.stdout


def export_fbx(out: Path, glbs: list[Path], names: list[str]) -> None:
    """Write ``out`` (FBX, metres, +Y up, -Z forward as Blender's exporter writes for Unity/Unreal) from
    the GLB LODs, one object each, named ``names`` (``head_LOD0``, ...; the engines' LOD naming)."""
    _call("fbx", str(out), *(f"{name}={glb}" for name, glb in zip(names, glbs)))


def inspect(*paths: Path) -> list[dict]:
    """Import each of ``paths`` (GLB or FBX) into a fresh Blender scene of its own and describe it
    (see :func:`_inspect`); one Blender process for all of them."""
    out = _call("inspect", *map(str, paths))
    return json.loads(out.strip().splitlines()[-1])


# --- inside Blender ------------------------------------------------------------------------
def _fresh_scene():
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.unit_settings.system = "METRIC"
    bpy.context.scene.unit_settings.scale_length = 1.0
    return bpy


def _import(bpy, path: str) -> None:
    if path.lower().endswith(".fbx"):
        bpy.ops.import_scene.fbx(filepath=path)
    else:
        bpy.ops.import_scene.gltf(filepath=path)


def _fbx(out: str, *pairs: str) -> None:
    bpy = _fresh_scene()
    for pair in pairs:
        name, glb = pair.split("=", 1)
        before = set(bpy.data.objects)
        _import(bpy, glb)
        for obj in set(bpy.data.objects) - before:
            if obj.type == "MESH":
                obj.name = name
                obj.data.name = name
    bpy.ops.export_scene.fbx(
        filepath=out,
        use_selection=False,
        object_types={"MESH"},
        apply_scale_options="FBX_SCALE_UNITS",
        axis_forward="-Z",
        axis_up="Y",
        path_mode="COPY",
        embed_textures=True,
        use_mesh_modifiers=False,
    )


def _inspect(path: str) -> dict:
    """Objects (name, triangles, dimensions, origin, bounds, loose and non-manifold geometry),
    materials (image textures linked to the Principled BSDF's inputs) of one imported file."""
    bpy = _fresh_scene()
    import bmesh  # only importable once bpy is

    _import(bpy, path)
    bpy.context.view_layer.update()
    objects = []
    for obj in bpy.data.objects:
        if obj.type != "MESH":
            continue
        mesh = bmesh.new()
        mesh.from_mesh(obj.data)
        mesh.transform(obj.matrix_world)
        bmesh.ops.remove_doubles(mesh, verts=mesh.verts, dist=1e-6)  # glTF splits vertices at UV seams
        coords = [v.co for v in mesh.verts]
        lo = [min(c[i] for c in coords) for i in range(3)]
        hi = [max(c[i] for c in coords) for i in range(3)]
        materials = []
        for slot in obj.material_slots:
            mat = slot.material
            links = {}
            if mat is not None and mat.node_tree is not None:
                for link in mat.node_tree.links:
                    if link.from_node.type == "TEX_IMAGE" and link.from_node.image is not None:
                        image = link.from_node.image
                        links[f"{link.to_node.type}:{link.to_socket.name}"] = list(image.size)
            materials.append({"name": None if mat is None else mat.name, "image_links": links})
        objects.append(
            {
                "name": obj.name,
                "triangles": sum(len(f.verts) - 2 for f in mesh.faces),
                "dimensions": [hi[i] - lo[i] for i in range(3)],
                "bounds": [lo, hi],
                "origin": list(obj.matrix_world.translation),
                "loose_vertices": sum(1 for v in mesh.verts if not v.link_edges),
                "loose_edges": sum(1 for e in mesh.edges if not e.link_faces),
                "non_manifold_edges": sum(1 for e in mesh.edges if not e.is_manifold),
                "boundary_edges": sum(1 for e in mesh.edges if e.is_boundary),
                "materials": materials,
                "uv_layers": len(obj.data.uv_layers),
            }
        )
        mesh.free()
    unit = bpy.context.scene.unit_settings
    return {"objects": objects, "unit_system": unit.system, "scale_length": unit.scale_length}


def _main(argv: list[str]) -> int:
    command, *args = argv
    if command == "fbx":
        _fbx(*args)
    elif command == "inspect":
        print(json.dumps([_inspect(path) for path in args]))
    else:
        print(f"unknown command {command}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
