"""Run-folder stages of the diffusion generator: ``back_view`` and ``orbit_views``.

back view   reads ``input/aligned.png`` and the back (180-degree) condition render
            (``proxy/conditions/`` + ``proxy/cameras.json``, or ``--conditions DIR`` with its ``dataset.json``);
            writes ``views/back.png``.
orbit views reads ``input/aligned.png``, ``views/back.png``, one condition render per camera of the label file,
            and initial images of the same names (``proxy/views/`` by default) for 3D-aware initial noise;
            writes ``views/NNNN.png`` (orbit order) and ``views/cameras.json`` (PanoHead labels of those files).

Stage builders: :func:`back_view_stage` and :func:`orbit_views_stage`; :func:`back_view` and :func:`orbit_views`
run them on a run folder.

Weights: ``WEIGHTS/`` (Portrait360Pipeline) and ``WEIGHTS/back_view/`` (BackViewPipeline), written by
``portrait3d fetch-weights`` or ``portrait3d convert-weights``; never downloaded here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from portrait3d import cameras, progress
from portrait3d.errors import UserError
from portrait3d.run import Run, atomic_save_image, read_json
from portrait3d.runner import Stage, run_stage

FRONT = "input/aligned.png"
BACK = "views/back.png"
VIEWS = "views"
PROXY_CONDITIONS = "proxy/conditions"
PROXY_CAMERAS = "proxy/cameras.json"
PROXY_VIEWS = "proxy/views"
LABEL_FILE = "dataset.json"
"""Name of the label file inside a ``--conditions`` folder (as in the released ``sphere32`` renders)."""
BACK_VIEW_SUBFOLDER = "back_view"
CONVERT_HINT = (
    "download and convert the released checkpoints with `portrait3d fetch-weights --out {root}` (needs network), "
    "or convert files you have with `portrait3d convert-weights --orbit model_state-340000.th "
    "--back-view back_head-230000.th --out {root}`"
)
UNCONVERTED_HINT = (
    "convert them with `portrait3d convert-weights --orbit {folder}/model_state-340000.th --back-view "
    "{folder}/back_head-230000.th --out NEW_FOLDER`, or download and convert them with "
    "`portrait3d fetch-weights --out NEW_FOLDER`, and pass --weights NEW_FOLDER"
)
_COMPONENTS = ("unet", "reference_unet", "controlnet", "vae", "scheduler", "prompt_embeds")


@dataclass
class DiffusionOptions:
    """Options shared by both diffusion stages."""

    weights: str
    """Converted weights folder (``portrait3d convert-weights --out``)."""
    device: str = "auto"
    """Torch device: ``auto`` (CUDA when available), ``cuda``, ``cuda:1``, ``cpu``..."""
    seed: int = 0
    """Seed of the noise generator."""
    steps: int = 50
    """DDIM steps (50 as released)."""
    guidance: float = 3.0
    """Classifier-free guidance scale (3 as released)."""
    eta: float = 0.5
    """DDIM eta (0.5 as released)."""
    size: int = 512
    """Output size in pixels (512 as released; a multiple of 8)."""
    allow_cpu: bool = False
    """Run on the CPU when no GPU is there (hours at full size)."""
    conditions: str | None = None
    """Folder of condition renders with a ``dataset.json``; default: the proxy stage's renders."""
    scheduler: str = "ddim"
    """Sampler: ``ddim`` (as released) or ``dpm++`` (DPM-Solver++, good at about 20 steps)."""


@dataclass
class OrbitOptions(DiffusionOptions):
    """Options of the orbit-views stage."""

    window: int = 8
    """Views denoised together (8 as released)."""
    initial: str | None = "auto"
    """Folder of initial images named like the condition renders; ``auto``: ``proxy/views`` when the proxy
    conditions are used; ``none``: start from Gaussian noise."""


# --- weights and device ---------------------------------------------------------------------------------------
def check_weights(folder: Path, root: Path, pipeline_class: str) -> None:
    """Fail with one line if ``folder`` is not a complete converted pipeline folder of ``pipeline_class``."""
    hint = CONVERT_HINT.format(root=root)
    if not folder.is_dir():
        raise UserError(f"{folder}: weights folder not found; {hint}")
    index = folder / "model_index.json"
    if not index.is_file():
        unconverted = sorted(p.name for p in folder.glob("*.th"))
        if unconverted:
            raise UserError(
                f"{folder}: holds unconverted checkpoints ({', '.join(unconverted)}); "
                + UNCONVERTED_HINT.format(folder=folder)
            )
        raise UserError(f"{folder}: has no model_index.json; {hint}")
    document = read_json(index)  # one-line error naming the file for bytes that are not UTF-8 JSON
    if not isinstance(document, dict):
        raise UserError(f"{index}: not a valid model_index.json (not a JSON object); {hint}")
    declared = document.get("_class_name")
    if declared != pipeline_class:
        raise UserError(f"{index}: holds a {declared} pipeline, expected {pipeline_class}; {hint}")
    missing = []
    for name in _COMPONENTS:
        sub = folder / name
        config = "scheduler_config.json" if name == "scheduler" else "config.json"
        if not (sub / config).is_file():
            missing.append(f"{name}/{config}")
        elif name != "scheduler" and not any(sub.glob("*.safetensors")) and not any(sub.glob("*.bin")):
            missing.append(f"{name}/ weights")
    if missing:
        raise UserError(f"{folder}: incomplete weights, missing {', '.join(missing)}; {hint}")


def resolve_device(device: str, allow_cpu: bool):
    """The torch device to run on; refuses the CPU unless allowed."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"--device: {exc}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    if resolved.type == "cpu" and not allow_cpu:
        raise UserError(
            "--device: no GPU here; the diffusion generator takes hours on a CPU "
            "(pass --allow-cpu to run anyway, or use the proxy generator)"
        )
    return resolved


def load(kind: str, options: DiffusionOptions):
    """Load the BackViewPipeline (``kind="back_view"``) or Portrait360Pipeline (``"orbit"``) offline."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from portrait3d.diffusion.pipelines import BackViewPipeline, Portrait360Pipeline

    root = Path(options.weights)
    pipeline_class = BackViewPipeline if kind == "back_view" else Portrait360Pipeline
    folder = root / BACK_VIEW_SUBFOLDER if kind == "back_view" else root
    check_weights(folder, root, pipeline_class.__name__)
    device = resolve_device(options.device, options.allow_cpu)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    try:
        pipeline = pipeline_class.from_pretrained(str(folder), local_files_only=True, dtype=dtype)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{folder}: cannot load the weights ({first}); {CONVERT_HINT.format(root=root)}") from exc
    if options.scheduler != "ddim":
        from portrait3d.diffusion.pipelines import scheduler_by_name

        pipeline.scheduler = scheduler_by_name(options.scheduler, pipeline.scheduler.config)
    return pipeline.to(device)


# --- inputs -----------------------------------------------------------------------------------------------------
def condition_set(run: Run, options: DiffusionOptions) -> tuple[Path, dict[str, cameras.Camera]]:
    """(folder of condition images, named cameras in orbit order) from ``--conditions`` or the proxy stage."""
    if options.conditions:
        folder = Path(options.conditions)
        labels = folder / LABEL_FILE
        if not labels.is_file():
            raise UserError(f"--conditions {folder}: no {LABEL_FILE} with the cameras of the renders")
    else:
        run.require(PROXY_CAMERAS, PROXY_CONDITIONS, hint="run `portrait3d proxy` first")
        folder, labels = run.path(PROXY_CONDITIONS), run.path(PROXY_CAMERAS)
    named = cameras.read_labels(labels)
    if not named:
        raise UserError(f"{labels}: no cameras")
    missing = [name for name in named if not (folder / name).is_file()]
    if missing:
        raise UserError(f"{folder}: missing condition image(s) {', '.join(missing[:5])} ({len(missing)} in all)")
    return folder, named


def back_camera_name(named: dict[str, cameras.Camera]) -> str:
    """Name of the camera closest to straight behind the head (world -z, level): view 16 of ``sphere32``."""

    def behindness(cam: cameras.Camera) -> float:
        direction = cam.position / max(np.linalg.norm(cam.position), 1e-9)
        return float(direction[2])

    return min(named, key=lambda name: behindness(named[name]))


def read_rgb(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 (alpha dropped)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise UserError(f"{path}: cannot read the image ({exc})") from exc


def _sampling(options: DiffusionOptions, device) -> dict:
    """The sampler arguments both pipelines take, from the options (seeded generator on ``device``)."""
    import torch

    return {
        "num_inference_steps": options.steps,
        "guidance_scale": options.guidance,
        "eta": options.eta,
        "generator": torch.Generator(device=device).manual_seed(options.seed),
        "height": options.size,
        "width": options.size,
    }


# --- stages -------------------------------------------------------------------------------------------------
def _check_options(options: DiffusionOptions) -> None:
    if options.steps < 1:
        raise UserError(f"--steps must be at least 1, got {options.steps}")
    if options.guidance < 1:
        raise UserError(f"--guidance must be at least 1, got {options.guidance}")
    if not 0 <= options.eta <= 1:
        raise UserError(f"--eta must lie in [0, 1], got {options.eta}")
    if options.scheduler not in ("ddim", "dpm++"):
        raise UserError(f"--scheduler must be ddim or dpm++, got {options.scheduler!r}")
    if options.size < 8 or options.size % 8:
        raise UserError(f"--size must be a positive multiple of 8, got {options.size}")
    if isinstance(options, OrbitOptions) and not 1 <= options.window <= 32:
        raise UserError(f"--window must lie in 1..32, got {options.window}")


def _run_back_view(run: Run, options: DiffusionOptions) -> dict:
    folder, named = condition_set(run, options)
    name = back_camera_name(named)
    pipeline = load("back_view", options)
    progress.info(f"back view from condition {folder / name}")
    image = pipeline(
        read_rgb(run.path(FRONT)),
        read_rgb(folder / name),
        **_sampling(options, pipeline.device),
    ).images[0]
    atomic_save_image(run.path(BACK), image)
    return {"condition": name, "device": str(pipeline.device)}


def _initial_folder(run: Run, options: OrbitOptions) -> Path | None:
    if options.initial in (None, "none"):
        return None
    if options.initial == "auto":
        return None if options.conditions else run.path(PROXY_VIEWS)
    return Path(options.initial)


def _run_orbit_views(run: Run, options: OrbitOptions) -> dict:
    folder, named = condition_set(run, options)
    initial_folder = _initial_folder(run, options)
    initial = None
    if initial_folder is not None:
        missing = [n for n in named if not (initial_folder / n).is_file()]
        if missing:
            raise UserError(
                f"{initial_folder}: missing initial image(s) {', '.join(missing[:5])} ({len(missing)} in all); "
                "pass --initial none to start from Gaussian noise"
            )
        initial = [read_rgb(initial_folder / n) for n in named]
    pipeline = load("orbit", options)
    images = pipeline(
        read_rgb(run.path(FRONT)),
        read_rgb(run.path(BACK)),
        [read_rgb(folder / n) for n in named],
        initial,
        window_size=options.window,
        **_sampling(options, pipeline.device),
    ).images
    written, masked = {}, 0
    for index, (image, (name, camera)) in enumerate(zip(images, named.items())):
        file = f"{cameras.view_name(index)}.png"
        rgb = np.asarray(image.convert("RGB"))  # the pipeline returns PIL images
        alpha = foreground_alpha(run, folder, name, rgb.shape[:2])
        if alpha is not None:
            masked += 1
        atomic_save_image(run.path(VIEWS, file), rgb if alpha is None else np.dstack([rgb, alpha]))
        written[file] = camera
    cameras.write_labels(run.path(VIEWS, "cameras.json"), written)
    return {
        "views": len(written),
        "masked_views": masked,
        "initial_noise": initial is not None,
        "device": str(pipeline.device),
    }


def foreground_alpha(run: Run, conditions: Path, name: str, shape: tuple[int, int]) -> np.ndarray | None:
    """(H, W) uint8 foreground mask of the generated view at camera ``name``, or None.

    The views are generated to follow the condition render at the same camera, so the head's
    silhouette there is the view's mask: the alpha of the proxy render (``proxy/views``) or of an
    RGBA condition image. Without a mask the NeRF would have to model the background as well,
    and the mesh stage would find no head to extract.
    """
    from PIL import Image

    for candidate in (run.path(PROXY_VIEWS, name), conditions / name):
        if not candidate.is_file():
            continue
        with Image.open(candidate) as im:
            if im.mode not in ("RGBA", "LA"):
                continue
            alpha = im.getchannel("A")
            if alpha.size != (shape[1], shape[0]):
                alpha = alpha.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
            return np.asarray(alpha)
    return None


def back_view_stage(options: DiffusionOptions) -> Stage:
    """``back_view`` (diffusion): ``views/back.png`` from the front photo and the back condition render."""
    inputs = [FRONT]
    if not options.conditions:
        inputs += [PROXY_CONDITIONS, PROXY_CAMERAS]
    return Stage(
        "back_view",
        _run_back_view,
        options,
        inputs=tuple(inputs),
        outputs=(BACK,),
        sources=(options.conditions,) if options.conditions else (),
        needs="run `portrait3d preprocess PHOTO --out {run}` and `portrait3d proxy {run}` first",
        check=lambda _run: _check_options(options),
    )


def orbit_views_stage(options: OrbitOptions) -> Stage:
    """``orbit_views`` (diffusion): ``views/NNNN.png`` + ``views/cameras.json`` around the head."""
    inputs = [FRONT, BACK]
    sources = []
    if options.conditions:
        sources.append(options.conditions)
    else:
        inputs += [PROXY_CONDITIONS, PROXY_CAMERAS]
    if options.initial == "auto" and not options.conditions:
        inputs.append(PROXY_VIEWS)
    elif options.initial not in (None, "none", "auto"):
        sources.append(options.initial)
    return Stage(
        "orbit_views",
        _run_orbit_views,
        options,
        inputs=tuple(inputs),
        outputs=(f"{VIEWS}/[0-9][0-9][0-9][0-9].png", f"{VIEWS}/cameras.json"),
        optional=(PROXY_VIEWS,),
        sources=tuple(sources),
        needs="run `portrait3d proxy {run}` and `portrait3d back-view {run}` first",
        check=lambda _run: _check_options(options),
    )


def back_view(run: Run, options: DiffusionOptions, force: bool = False) -> dict:
    """Stage: generate ``views/back.png`` with the BackViewPipeline (:func:`back_view_stage`)."""
    return run_stage(run, back_view_stage(options), force)


def orbit_views(run: Run, options: OrbitOptions, force: bool = False) -> dict:
    """Stage: generate ``views/NNNN.png`` + ``views/cameras.json`` (:func:`orbit_views_stage`)."""
    return run_stage(run, orbit_views_stage(options), force)
