"""The ``proxy`` stage: fit and texture the template head, render it at the orbit cameras.

Reads ``input/aligned.png``, ``input/camera.json`` and (when present)
``input/mask.png``; writes ``proxy/`` as one folder, atomically:

- ``proxy/views/NNNN.png``: textured RGBA renders, one per orbit camera;
- ``proxy/conditions/NNNN.png``: RGB camera conditions of the diffusion path,
  made like the PanoHead renders DiffPortrait360 was trained on (see
  :func:`condition_image`);
- ``proxy/cameras.json``: the orbit cameras as PanoHead labels (``0000.png`` ...);
- ``proxy/head.ply``: the closed head with vertex colours;
- ``proxy/texture.png``: the head's texture (longitude/latitude layout; a bare ear's
  pinna in charts at its bottom, :mod:`portrait3d.proxy.layout`);
- ``proxy/hair.png``: the photo's hair-vs-skin split (L, 255 = hair, 128 = skin
  of the head, 0 = not head), what the hair volume and the texture follow.

Stage builders: :func:`stage` (``proxy``) and :func:`views_stage` (``views`` of the proxy
generator: ``views/`` is a copy of the proxy renders).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from portrait3d import cameras, limits, progress
from portrait3d.errors import UserError
from portrait3d.proxy.head import ProxyHead, build_head
from portrait3d.render import Hits, MeshRenderer, rgba_image
from portrait3d.run import Run, atomic_dir
from portrait3d.runner import Stage
from portrait3d.vectors import dot3, vector_length

STAGE = "proxy"
INPUTS = ("input/aligned.png", "input/camera.json", "input/mask.png")
"""Run files the stage reads (the mask is optional)."""
OUTPUTS = ("proxy/views", "proxy/conditions", "proxy/cameras.json", "proxy/head.ply", "proxy/hair.png")
CONDITION_BACKGROUND = 0.5
"""Grey level behind the head in the condition images (PanoHead's renders have a background, never black)."""
TEMPLATE_PROVENANCE = "procedural head built by portrait3d (portrait3d/proxy/template.py), Apache-2.0"


@dataclass
class ProxyOptions:
    """Options of the proxy stage."""

    views: int = cameras.RELEASE_NUM_VIEWS
    """Number of orbit cameras, evenly spaced in yaw (view 0 frontal, view N/2 the back)."""
    size: int = 512
    """Width and height of every render in pixels."""
    pitch: float = 0.0
    """Elevation of the orbit cameras in degrees."""
    texture_width: int = 2048
    """Width of the head texture in texels (its height is half)."""
    voxel: float = 0.005
    """Grid spacing of the template's marching cubes (world units); smaller is finer and slower."""
    fit_landmarks: bool = True
    """Fit the template's scale, position and face shape to the photo's landmarks when there are any."""
    supersample: int = 1
    """Rays per pixel along each axis (2 smooths the outline, at four times the render time)."""


@dataclass
class ProxyInputs:
    """What the proxy stage reads from a run folder.

    Attributes:
        photo: (S, S, 3) uint8 aligned photo.
        mask: (S, S) uint8 foreground (255 = head and shoulders), or None.
        camera: the photo's camera.
        landmarks: (N, 3) landmarks in photo pixels, or None.
        landmark_format: e.g. ``mediapipe-478``, or None.
    """

    photo: np.ndarray
    mask: np.ndarray | None
    camera: cameras.Camera
    landmarks: np.ndarray | None
    landmark_format: str | None


def read_inputs(run: Run) -> ProxyInputs:
    """Read (and check) the preprocess outputs of ``run``."""
    from PIL import Image

    run.require("input/aligned.png", "input/camera.json", hint="run `portrait3d preprocess PHOTO --out RUN` first")
    aligned, camera_path, mask_path = (run.path(p) for p in INPUTS)
    try:
        photo = np.asarray(Image.open(aligned).convert("RGB"))
        mask = np.asarray(Image.open(mask_path).convert("L")) if mask_path.exists() else None
    except OSError as exc:
        raise UserError(f"{aligned.parent}: cannot read the aligned photo or mask ({exc})") from exc
    if photo.shape[0] != photo.shape[1] or photo.shape[0] < 16:
        raise UserError(f"{aligned}: expected a square crop, got {photo.shape[1]}x{photo.shape[0]}")
    if mask is not None and mask.shape != photo.shape[:2]:
        raise UserError(f"{mask_path}: size {mask.shape[::-1]} differs from aligned.png {photo.shape[1::-1]}")
    from portrait3d.run import read_json

    record = read_json(camera_path)
    try:
        camera = cameras.Camera.from_label(record["label"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{camera_path}: not a camera record with a 25-float 'label' ({exc})") from exc
    landmarks, fmt = _landmarks(record.get("landmarks"), camera_path)
    return ProxyInputs(photo, mask, camera, landmarks, fmt)


def _landmarks(entry, path: Path) -> tuple[np.ndarray | None, str | None]:
    """Landmarks of a camera record when they are mediapipe face-mesh points, else None."""
    if not entry:
        return None, None
    fmt = str(entry.get("format", "")) if isinstance(entry, dict) else ""
    try:
        points = np.asarray(entry["points"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: 'landmarks' has no readable 'points' ({exc})") from exc
    if not fmt.startswith("mediapipe") or points.ndim != 2 or len(points) < 468 or points.shape[1] < 2:
        progress.info(f"[proxy] landmarks of format {fmt!r} are not mediapipe face-mesh points; template not fitted")
        return None, fmt or None
    return points, fmt


def proxy_head(inputs: ProxyInputs, options: ProxyOptions | None = None) -> ProxyHead:
    """The fitted, textured head of a run's inputs (see :class:`ProxyHead`)."""
    options = options or ProxyOptions()
    return build_head(
        inputs.photo,
        inputs.camera,
        inputs.mask,
        inputs.landmarks if options.fit_landmarks else None,
        voxel=options.voxel,
        texture_width=options.texture_width,
    )


def proxy_mesh(run: str | Path | Run, options: ProxyOptions | None = None) -> trimesh.Trimesh:
    """The textured proxy head of a run as a ``trimesh.Trimesh`` (UVs + texture image), ready to render."""
    run = run if isinstance(run, Run) else Run(run, create=False)
    return proxy_head(read_inputs(run), options).textured


def orbit_cameras(options: ProxyOptions) -> list[cameras.Camera]:
    """The orbit cameras the stage renders at."""
    return cameras.orbit(options.views, pitch=options.pitch)


def build_proxy(run: Run, options: ProxyOptions) -> dict:
    """The proxy stage's function (:func:`stage`); returns its info."""
    from portrait3d.parallel import ordered_map
    from portrait3d.run import atomic_save_image, atomic_write_bytes

    check_options(options)
    inputs = read_inputs(run)
    if inputs.landmarks is None:
        progress.info("[proxy] no face landmarks: the template keeps its average face shape")
    head = proxy_head(inputs, options)
    cams = orbit_cameras(options)
    textured = MeshRenderer(head.textured)
    # PNG compression level 1: four times faster to write than the default, files about 20 % larger.
    # The PNGs are encoded and written on a second thread while the next view renders (PIL's encoder
    # lets go of the GIL): the same files, the encoding off the critical path.
    with atomic_dir(run.path("proxy")) as tmp, ThreadPoolExecutor(max_workers=1) as writer:
        (tmp / "views").mkdir()
        (tmp / "conditions").mkdir()
        written = []
        # Views side by side (the ray casts and most of the shading let go of the GIL), in order.
        textured.prepare()
        rendered = ordered_map(lambda cam: render_view(textured, cam, options.size, options.supersample), cams)
        for i, (view, condition) in enumerate(progress.bar(rendered, total=len(cams), desc="proxy views")):
            name = f"{cameras.view_name(i)}.png"
            written.append(writer.submit(_save_png, tmp / "views" / name, view))
            written.append(writer.submit(_save_png, tmp / "conditions" / name, condition))
        for future in written:
            future.result()  # a failed write fails the stage
        cameras.write_labels(tmp / "cameras.json", {f"{cameras.view_name(i)}.png": c for i, c in enumerate(cams)})
        atomic_write_bytes(tmp / "head.ply", trimesh.exchange.ply.export_ply(head.geometry, encoding="binary"))
        atomic_save_image(tmp / "texture.png", head.texture)
        atomic_save_image(tmp / "hair.png", hair_image(head, inputs.photo.shape[0]))
    return {**head.info, "views": len(cams), "size": options.size, "template": TEMPLATE_PROVENANCE}


def hair_image(head: ProxyHead, size: int) -> np.ndarray:
    """The photo's split as an image: 255 hair, 128 other head, 0 not head: (S, S) uint8."""
    seg = head.segmentation
    if seg is None:
        return np.zeros((size, size), np.uint8)
    return np.where(seg.hair, 255, np.where(seg.head, 128, 0)).astype(np.uint8)


def condition_image(hits: Hits, colour: np.ndarray, camera: cameras.Camera) -> np.ndarray:
    """A camera condition like DiffPortrait360's, from cast ``hits`` and their (H, W, 3) surface colours: the
    whole head in colour, softly lit, on grey: (H, W, 3) uint8.

    DiffPortrait360's camera ControlNet was trained on renders of PanoHead heads
    (the ``I_cam`` images of its pipeline figure, ``assets/pipeline.png`` of
    FreedomGu/Diffportrait360): colour images of a whole head with its hair and
    shading, on a background. Matched here: colour (the proxy's texture), the
    whole head with its hair volume, Lambert shading lit from above the camera
    with a strong ambient term (PanoHead's renders have soft studio light),
    a neutral grey background. Not matched: PanoHead's shoulders and its
    blurred photographic backgrounds.
    """
    light = -hits.view_dirs - 0.5 * camera.cam2world[:3, 1]  # from the camera, a little above (-down)
    light /= vector_length(light)[..., None]
    shade = 0.45 + 0.65 * np.clip(dot3(hits.normals, light), 0.0, 1.0)
    rgb = np.where(hits.mask[..., None], np.clip(colour * shade[..., None], 0.0, 1.0), CONDITION_BACKGROUND)
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


def render_view(
    renderer: MeshRenderer, camera: cameras.Camera, size: int, supersample: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """One proxy view and its condition image (:func:`condition_image`): (size, size, 4) RGBA and
    (size, size, 3) RGB, uint8, both from one cast of the rays and one texture lookup.
    """
    import cv2

    big = size * supersample
    hits = renderer.cast(camera, big, big)
    colour = renderer.colors(hits)
    rgba, shaded = rgba_image(colour, hits.mask), condition_image(hits, colour, camera)
    if supersample == 1:
        return rgba, shaded
    # Average the rays of each pixel; colours are averaged over the covered rays only (alpha-weighted).
    alpha = rgba[..., 3:].astype(np.float32) / 255.0
    premultiplied = np.concatenate([rgba[..., :3] * alpha, alpha * 255.0], axis=-1)
    small = cv2.resize(premultiplied, (size, size), interpolation=cv2.INTER_AREA)
    cover = small[..., 3:] / 255.0
    small[..., :3] = np.where(cover > 0, small[..., :3] / np.maximum(cover, 1e-6), 0.0)
    condition = cv2.resize(shaded, (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(np.round(small), 0, 255).astype(np.uint8), condition


def _save_png(path: Path, image: np.ndarray) -> None:
    """Write a uint8 image as a quickly compressed PNG, atomically."""
    import io

    from PIL import Image

    from portrait3d.run import atomic_write_bytes

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    atomic_write_bytes(path, buffer.getvalue())


def check_options(options: ProxyOptions) -> None:
    """Refuse options out of range with a one-line :class:`UserError`."""
    limits.integer("--views", options.views, 1, limits.MAX_CAMERAS)
    limits.number("--pitch", options.pitch, *limits.PITCH_RANGE, " degrees")
    if not 16 <= options.size <= 4096:
        raise UserError(f"--size must be between 16 and 4096 pixels, got {options.size}")
    if not 256 <= options.texture_width <= 8192:
        raise UserError(f"--texture-width must be between 256 and 8192, got {options.texture_width}")
    if not 1 <= options.supersample <= 4:
        raise UserError(f"--supersample must be between 1 and 4, got {options.supersample}")
    if not 0.001 <= options.voxel <= 0.02:
        raise UserError(f"--voxel must be between 0.001 and 0.02 world units, got {options.voxel}")


# --- the stages ---------------------------------------------------------------------------------
def stage(options: ProxyOptions | None = None) -> Stage:
    """``proxy``: the template head fitted to the photo and its renders at the orbit cameras (``proxy/``)."""
    options = options or ProxyOptions()
    return Stage(
        STAGE,
        build_proxy,
        options,
        inputs=INPUTS,
        outputs=("proxy",),
        optional=("input/mask.png",),
        needs="run `portrait3d preprocess PHOTO --out {run}` first",
        check=lambda _run: check_options(options),
    )


def copy_proxy_views(run: Run, _options: object) -> dict:
    """The proxy generator: its textured renders are the run's views."""
    import shutil

    with atomic_dir(run.path("views")) as tmp:
        for src in sorted(run.path("proxy", "views").glob("*.png")):
            shutil.copy2(src, tmp / src.name)
        shutil.copy2(run.path("proxy", "cameras.json"), tmp / "cameras.json")
    return {"views": len(list(run.path("views").glob("[0-9]*.png")))}


def views_stage() -> Stage:
    """``views`` of the proxy generator: ``views/`` is a copy of the proxy renders and their cameras."""
    return Stage(
        "views",
        copy_proxy_views,
        {"generator": "proxy"},
        inputs=("proxy/views", "proxy/cameras.json"),
        outputs=("views",),
        needs="run `portrait3d proxy {run}` first",
    )
