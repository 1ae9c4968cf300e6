"""The ``rig`` stage: export-mesh's GLBs (``mesh/head.glb`` and its LODs) -> the rigged avatar
(``avatar/head.glb``, ``avatar/head_lod1.glb``, ..., ``avatar/head.fbx``).

It runs after export-mesh when the target is ``avatar``. It reads only files of the run
(the static GLBs, ``input/camera.json``, ``input/aligned.png``), never the NeRF, so the export's
internals can change freely; export-mesh knows nothing of the rig.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from portrait3d.errors import UserError
from portrait3d.run import Run, atomic_dir
from portrait3d.runner import Stage

STAGE = "rig"
AVATAR_DIR = "avatar"
GLB_NAME, LOD_GLB, FBX_NAME = "head.glb", "head_lod{}.glb", "head.fbx"
STATIC_GLB, STATIC_LOD_GLB = "mesh/head.glb", "mesh/head_lod{}.glb"
INPUTS = ("input/camera.json", "input/aligned.png")


@dataclass
class RigOptions:
    """Options of the ``rig`` stage."""

    lods: int = 2
    """How many LODs export-mesh wrote (``mesh/head.glb``, ``mesh/head_lod1.glb``, ...): each gets rigged."""
    fbx: bool = False
    """Also write ``avatar/head.fbx`` (every LOD, shape keys and bones) through Blender (``bpy``)."""
    max_file_mb: float | None = 10.0
    """Largest rigged GLB of one LOD (MB); None: no limit."""


def output_files(options: RigOptions) -> list[str]:
    names = [GLB_NAME, *(LOD_GLB.format(i) for i in range(1, options.lods))]
    if options.fbx:
        names.append(FBX_NAME)
    return [f"{AVATAR_DIR}/{name}" for name in names]


def static_files(options: RigOptions) -> list[str]:
    return [STATIC_GLB, *(STATIC_LOD_GLB.format(i) for i in range(1, options.lods))]


def rig_run(run: Run, options: RigOptions) -> dict:
    """Rig every LOD of the run's static head into ``avatar/``."""
    from PIL import Image

    from portrait3d.run import read_json

    from .build import rig_head

    camera = read_json(run.path("input", "camera.json"))
    if not camera.get("landmarks", {}).get("points"):
        raise UserError(
            "rig: input/camera.json has no face landmarks (a photo run with --yaw/--pitch and no detected "
            "face cannot be rigged); use a photo whose face is detected"
        )
    photo = np.asarray(Image.open(run.path("input", "aligned.png")).convert("RGB"))
    lods = []
    with atomic_dir(run.path(AVATAR_DIR)) as tmp:
        glbs = []
        for i, static in enumerate(static_files(options)):
            out = tmp / (GLB_NAME if i == 0 else LOD_GLB.format(i))
            info = rig_head(run.path(static), out, camera, photo, extras={"target": "avatar", "lod": i})
            if options.max_file_mb is not None and info["mb"] > options.max_file_mb:
                raise UserError(
                    f"rig: {out.name} is {info['mb']:.2f} MB, over the avatar target's {options.max_file_mb:g} MB"
                )
            lods.append({"file": f"{AVATAR_DIR}/{out.name}", **info})
            glbs.append(out)
        if options.fbx:
            from .blender import export_fbx

            export_fbx(tmp / FBX_NAME, glbs)
    print(
        f"rig: {len(lods)} LOD(s), 67 morph targets, bones Neck/Head/LeftEye/RightEye, "
        f"{lods[0]['triangles']} triangles, {lods[0]['mb']:.2f} MB GLB"
    )
    return {"lods": lods}


def stage(options: RigOptions | None = None) -> Stage:
    """The ``rig`` stage of a run."""
    options = options or RigOptions()
    return Stage(
        STAGE,
        rig_run,
        options,
        inputs=(*static_files(options), *INPUTS),
        outputs=tuple(output_files(options)),
        needs="run `portrait3d export-mesh {run} --target avatar` first",
    )
