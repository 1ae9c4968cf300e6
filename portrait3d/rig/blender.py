"""The rigged head in Blender (``bpy``, the ``blender`` extra), in a subprocess of its own: FBX export
and an import check. This file is also that subprocess's script, so it imports nothing of portrait3d
at the top.

    python portrait3d/rig/blender.py fbx OUT.fbx HEAD.glb      the GLB's meshes, shape keys, armature
    python portrait3d/rig/blender.py inspect FILE.glb|FILE.fbx ...   JSON: meshes (shape keys, parents), bones
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path


def _call(*args: str, timeout: float = 600) -> str:
    from portrait3d.errors import UserError

    if importlib.util.find_spec("bpy") is None:
        raise UserError("--formats fbx needs Blender's Python module bpy: pip install 'portrait3d[blender]'")
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


def export_fbx(out: Path, glbs: list[Path]) -> None:
    """``out``: the rig of the first (most detailed) GLB as FBX: meshes with their shape keys, the
    armature (``Neck``, ``Head``, ``LeftEye``, ``RightEye``), eyes parented to their bones."""
    _call("fbx", str(out), str(glbs[0]))


def inspect(*paths: Path) -> list[dict]:
    """Import each file into a fresh scene and describe its meshes and armatures."""
    return json.loads(_call("inspect", *map(str, paths)).strip().splitlines()[-1])


# --- inside Blender ------------------------------------------------------------------------
def _fresh(path: str):
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    if path.lower().endswith(".fbx"):
        bpy.ops.import_scene.fbx(filepath=path)
    else:
        bpy.ops.import_scene.gltf(filepath=path)
    return bpy


def _fbx(out: str, glb: str) -> None:
    bpy = _fresh(glb)
    bpy.ops.export_scene.fbx(
        filepath=out,
        use_selection=False,
        object_types={"ARMATURE", "MESH"},
        apply_scale_options="FBX_SCALE_UNITS",
        axis_forward="-Z",
        axis_up="Y",
        path_mode="COPY",
        embed_textures=True,
        use_mesh_modifiers=False,  # modifiers applied would drop the shape keys
        add_leaf_bones=False,
        bake_anim=False,
    )


def _inspect(path: str) -> dict:
    bpy = _fresh(path)
    meshes, armatures = [], []
    for obj in bpy.data.objects:
        if obj.type == "MESH":
            keys = obj.data.shape_keys
            meshes.append(
                {
                    "name": obj.name,
                    "shape_keys": [k.name for k in keys.key_blocks][1:] if keys else [],
                    "parent": obj.parent.name if obj.parent else None,
                    "parent_type": obj.parent_type,
                    "parent_bone": obj.parent_bone or None,
                    "vertex_groups": [g.name for g in obj.vertex_groups],
                    "vertices": len(obj.data.vertices),
                }
            )
        elif obj.type == "ARMATURE":
            armatures.append({"name": obj.name, "bones": [b.name for b in obj.data.bones]})
    return {"meshes": meshes, "armatures": armatures}


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
