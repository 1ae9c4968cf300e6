"""The nerfstudio dataset of a run: ``RUN/transforms.json`` from ``RUN/views/``.

Input: ``RUN/views/NNNN.png`` (RGBA; alpha is the foreground mask) and
``RUN/views/cameras.json`` (PanoHead labels). Output: ``RUN/transforms.json``
whose frames point at the views themselves (``views/NNNN.png``, relative to
the file). The alpha channel stays in the images instead of going to
``mask_path``: nerfstudio's masks mark pixels to *ignore*, whereas the
transparent background must be learnt as empty space.

The poses are PanoHead's world frame as it is (y up, head at the origin,
PanoHead units). nerfstudio's ``NerfstudioDataParser`` would by default
re-orient, re-centre and re-scale them; :data:`DATAPARSER_SETTINGS` switches
that off, and both the fit and the viewer config use it, so that nerfstudio's
cameras are exactly the run's cameras.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from portrait3d import cameras as cams
from portrait3d.errors import UserError
from portrait3d.run import Run, atomic_write_json, read_json
from portrait3d.runner import Stage

TRANSFORMS = "transforms.json"
VIEWS_DIR = "views"
LABELS = "views/cameras.json"

DATAPARSER_SETTINGS = {
    "orientation_method": "none",
    "center_method": "none",
    "auto_scale_poses": False,
    "scale_factor": 1.0,
    "scene_scale": 1.0,
    "downscale_factor": 1,
    "eval_mode": "all",
}
"""``NerfstudioDataParserConfig`` values that keep the run's poses unchanged.

orientation_method / center_method "none" and auto_scale_poses False keep the
PanoHead world frame; scale_factor 1 keeps its units; scene_scale 1 gives the
scene box [-1, 1]^3, which holds the head (about 0.5 units tall); eval_mode
"all" trains on every view (held-out views are kept outside the run).
"""


@dataclass
class DatasetOptions:
    """Options of the ``dataset`` stage."""

    views_dir: str = VIEWS_DIR
    """Folder of the run that holds the views and their ``cameras.json``."""


@dataclass
class View:
    """One training view: its camera and image.

    Attributes:
        name: file name inside the views folder.
        camera: PanoHead camera.
        rgba: (H, W, 4) uint8 image (alpha 255 everywhere when the file had none).
    """

    name: str
    camera: cams.Camera
    rgba: np.ndarray


def _image_size(path: Path) -> tuple[int, int, str]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.width, im.height, im.mode
    except OSError as exc:
        raise UserError(f"{path}: not a readable image ({exc})") from exc


def write_transforms(run: Run, options: DatasetOptions | None = None) -> dict:
    """Write ``RUN/transforms.json`` from the run's views and cameras.

    Returns:
        ``{"frames": N, "width": W, "height": H, "alpha": bool}`` for the report.
    """
    options = options or DatasetOptions()
    labels_path = run.path(options.views_dir, "cameras.json")
    run.require(f"{options.views_dir}/cameras.json", hint="generate views first (proxy or orbit-views)")
    labelled = cams.read_labels(labels_path)
    if not labelled:
        raise UserError(f"{labels_path}: holds no cameras")
    sizes = set()
    has_alpha = True
    file_paths, cameras = [], []
    for name, camera in labelled.items():
        image_path = run.path(options.views_dir, name)
        if not image_path.is_file():
            raise UserError(f"{labels_path}: names {name}, but {image_path} does not exist")
        width, height, mode = _image_size(image_path)
        sizes.add((width, height))
        has_alpha &= mode in ("RGBA", "LA")
        file_paths.append(f"{options.views_dir}/{name}")
        cameras.append(camera)
    if len(sizes) != 1:
        raise UserError(f"{run.path(options.views_dir)}: views differ in size ({sorted(sizes)}); all must match")
    (width, height) = sizes.pop()
    document = cams.transforms_document(cameras, file_paths, width, height)
    document["portrait3d"] = {"world": "PanoHead (y up, face toward +z)", "dataparser": DATAPARSER_SETTINGS}
    atomic_write_json(run.path(TRANSFORMS), document)
    return {"frames": len(cameras), "width": width, "height": height, "alpha": bool(has_alpha)}


def stage(options: DatasetOptions | None = None) -> Stage:
    """``dataset``: ``transforms.json`` (nerfstudio format) from ``views/``."""
    options = options or DatasetOptions()
    return Stage(
        "dataset",
        write_transforms,
        options,
        inputs=(f"{options.views_dir}/cameras.json", options.views_dir),
        outputs=(TRANSFORMS,),
        needs="generate the views first (`portrait3d proxy {run}`, or `portrait3d orbit-views {run}`)",
    )


def read_views(run_dir: str | Path, size: int | None = None) -> list[View]:
    """The training views named by ``RUN/transforms.json``.

    Args:
        run_dir: the run folder.
        size: resize images to ``size`` x ``size`` (area filter); None keeps them.
    Returns:
        One :class:`View` per frame, in file order.
    """
    from PIL import Image

    path = Path(run_dir) / TRANSFORMS
    if not path.exists():
        raise UserError(f"{path}: missing; run `portrait3d dataset {run_dir}` first")
    document = read_json(path)
    try:
        frames = cams.cameras_from_transforms(document)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{path}: not a nerfstudio transforms file ({exc})") from exc
    views = []
    for file_path, camera in frames:
        image_path = path.parent / file_path
        try:
            with Image.open(image_path) as im:
                image = im.convert("RGBA")
                if size is not None and image.size != (size, size):
                    image = image.resize((size, size), Image.Resampling.BOX)
                rgba = np.asarray(image).copy()
        except OSError as exc:
            raise UserError(f"{image_path}: not a readable image ({exc})") from exc
        views.append(View(Path(file_path).name, camera, rgba))
    return views
