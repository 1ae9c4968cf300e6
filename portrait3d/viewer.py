"""``portrait3d view``: nerfstudio's viewer on a run's NeRF, on any install.

It runs nerfstudio's own viewer (``nerfstudio.viewer.viewer.Viewer``, what ``ns-viewer``
runs) on the run's fitted NeRF. The differences from ``ns-viewer --load-config
RUN/nerf/config.yml``: torchvision's stand-in (:mod:`portrait3d.torchvision_compat`) is
installed first, so it also works beside a CPU build of torch; the server binds
127.0.0.1 unless told otherwise; a new browser tab starts at the run's first view.

``RUN/nerf/config.yml`` is never read: nerfstudio reads it with YAML's unsafe loader, so a
run folder from elsewhere could run code through it, and its paths are absolute, so a
copied run would show the original's NeRF. The configuration is rebuilt instead from the
run's own record (``nerf/volume.json``, the checkpoint) with paths inside the run folder
where it is now (:func:`trainer_config`).
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from pathlib import Path

import numpy as np

from portrait3d import progress
from portrait3d.errors import UserError
from portrait3d.run import read_json

METHOD_CONFIGS_ENV = "NERFSTUDIO_METHOD_CONFIGS"
"""nerfstudio's own variable naming extra methods; set when the package's entry point is not installed."""


def _rerun(root: Path, why: str) -> UserError:
    return UserError(f"{root}: {why}; rerun `portrait3d fit-nerf {root} --force` (or make-asset)")


def fitted_nerf(run_dir: str | Path) -> tuple[Path, dict, Path]:
    """The run folder (absolute), its volume config and its newest checkpoint; one line on what is damaged.

    Returns:
        ``(root, volume, checkpoint)``: ``volume`` is ``nerf/volume.json`` as a dict.
    """
    from nerf.dataset import TRANSFORMS
    from nerf.fit import CHECKPOINT_DIR, NERF_DIR, VOLUME_CONFIG

    root = Path(run_dir).absolute()
    if not root.is_dir():
        raise UserError(f"{root}: no such run folder")
    if not (root / NERF_DIR).is_dir():
        raise UserError(
            f"{root}: no fitted NeRF ({NERF_DIR}/ is missing); run `portrait3d make-asset PHOTO --out {root}` "
            f"or `portrait3d fit-nerf {root}` first"
        )
    checkpoints = sorted((root / CHECKPOINT_DIR).glob("step-*.ckpt"))
    if not checkpoints:
        raise _rerun(root, f"the NeRF has no checkpoint ({CHECKPOINT_DIR}/step-*.ckpt is missing)")
    if not (root / VOLUME_CONFIG).is_file():
        raise _rerun(root, f"the NeRF's {VOLUME_CONFIG} is missing")
    try:
        volume = read_json(root / VOLUME_CONFIG)
    except UserError as exc:
        raise _rerun(root, f"the NeRF's {VOLUME_CONFIG} is damaged") from exc
    if not isinstance(volume, dict) or not isinstance(volume.get("field"), dict):
        raise _rerun(root, f"the NeRF's {VOLUME_CONFIG} is not a volume config")
    dataset_hint = f"rerun `portrait3d dataset {root} --force` (or make-asset)"
    if not (root / TRANSFORMS).is_file():
        raise UserError(f"{root}: {TRANSFORMS} is missing; {dataset_hint}")
    try:
        frames = read_json(root / TRANSFORMS).get("frames")
    except (UserError, AttributeError) as exc:
        raise UserError(f"{root}: {TRANSFORMS} is damaged; {dataset_hint}") from exc
    if not isinstance(frames, list) or not frames:
        raise UserError(f"{root}: {TRANSFORMS} lists no frames; {dataset_hint}")
    inside = root.resolve()
    for frame in frames:  # the viewer reads the views: only files of the run itself
        name = frame.get("file_path") if isinstance(frame, dict) else None
        if not isinstance(name, str) or not (inside / name).resolve().is_relative_to(inside):
            raise UserError(f"{root}: {TRANSFORMS} names a view outside the run ({name!r}); {dataset_hint}")
    return root, volume, checkpoints[-1]


def load_checkpoint(root: Path, checkpoint: Path) -> dict:
    """The checkpoint's ``{"step", "pipeline"}``, read without running pickled code; one line when damaged."""
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, not a zip, pickled code: all one message
        raise _rerun(root, f"{checkpoint.relative_to(root)} cannot be read ({type(exc).__name__})") from exc
    if not (isinstance(state, dict) and isinstance(state.get("pipeline"), dict) and isinstance(state.get("step"), int)):
        raise _rerun(root, f"{checkpoint.relative_to(root)} is not a NeRF checkpoint")
    return state


def trainer_config(root: Path, volume: dict, step: int):
    """nerfstudio's ``TrainerConfig`` of the run, rebuilt from its record (what ``config.yml`` says, but safe).

    Paths are the run folder's where it is now, so a copied or moved run shows its own NeRF.
    """
    from nerf.field import FieldConfig
    from nerf.fit import CHECKPOINT_DIR, VOLUME_CONFIG, run_trainer_config
    from nerf.volume import VolumeConfig

    try:
        volume_config = VolumeConfig(**{**volume, "field": FieldConfig(**volume["field"])})
    except TypeError as exc:
        raise _rerun(root, f"the NeRF's {VOLUME_CONFIG} is not a volume config ({exc})") from exc
    config = run_trainer_config(root, volume_config, step)
    config.load_dir = root / CHECKPOINT_DIR
    return config


def load_pipeline(run_dir: str | Path):
    """``(config, pipeline, step)``: the run's NeRF in nerfstudio's pipeline, as ``eval_setup`` gives it.

    ``eval_setup`` without ``config.yml``: the config is rebuilt (:func:`trainer_config`), and the
    checkpoint is read with ``weights_only`` (no pickled code either).
    """
    root, volume, checkpoint = fitted_nerf(run_dir)
    return _setup_pipeline(root, volume, checkpoint, load_checkpoint(root, checkpoint))


def _setup_pipeline(root: Path, volume: dict, checkpoint: Path, state: dict):
    import torch

    _register_method()
    config = trainer_config(root, volume, state["step"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        pipeline = config.pipeline.setup(device=device, test_mode="test")
    except Exception as exc:  # noqa: BLE001 - nerfstudio's loader on missing or damaged views: one line
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(
            f"{root}: cannot load the run's views for the viewer ({type(exc).__name__}: {first}); "
            f"rerun `portrait3d make-asset` on it"
        ) from exc
    pipeline.eval()
    try:
        pipeline.load_pipeline(state["pipeline"], state["step"])
    except (RuntimeError, KeyError) as exc:  # weights of another shape than volume.json says
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise _rerun(root, f"{checkpoint.relative_to(root)} does not match the NeRF's volume.json ({first})") from exc
    return config, pipeline, state["step"]


def check_port_free(host: str, port: int) -> None:
    """Fail with one line when ``host:port`` cannot be bound (viser would silently pick another port).

    The probe binds as the servers do (uvicorn, viser: ``SO_REUSEADDR``), so a port whose last
    connections linger in TIME_WAIT after a stop or a crash counts as free: a restart is at once.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} on {host} is in use; pick another with --port") from None
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _register_method() -> None:
    import importlib.metadata as md

    names = {ep.name for ep in md.entry_points(group="nerfstudio.method_configs")}
    if "portrait3d-ngp" not in names and "portrait3d-ngp" not in os.environ.get(METHOD_CONFIGS_ENV, ""):
        os.environ[METHOD_CONFIGS_ENV] = ",".join(
            part for part in (os.environ.get(METHOD_CONFIGS_ENV), "portrait3d-ngp=nerf.method:portrait3d_ngp") if part
        )


def url(host: str, port: int) -> str:
    """The address to open in a browser."""
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}"


def view(run_dir: str | Path, host: str = "127.0.0.1", port: int = 7007) -> None:
    """Load the run's NeRF and serve nerfstudio's viewer at ``host:port`` until interrupted.

    The steps of nerfstudio's ``run_viewer`` (``eval_setup``, its ``Viewer``, the scene),
    plus a starting camera: each browser tab opens at the run's first view instead of
    viser's default camera, which sits inside the head.
    """
    # One line on a damaged NeRF, before nerfstudio loads or a port is bound.
    root, volume, checkpoint = fitted_nerf(run_dir)
    state = load_checkpoint(root, checkpoint)
    check_port_free(host, port)
    from portrait3d import torchvision_compat

    torchvision_compat.install_standin()  # the viewer imports torchvision lazily, for its camera thumbnails
    from nerfstudio.configs.base_config import ViewerConfig
    from nerfstudio.utils import writer
    from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO, Viewer

    progress.info(f"loading {checkpoint}")
    config, pipeline, step = _setup_pipeline(root, volume, checkpoint, state)
    config.viewer = ViewerConfig(
        websocket_host=host, websocket_port=port, num_rays_per_chunk=config.viewer.num_rays_per_chunk
    )
    lock = threading.Lock()
    viewer = Viewer(
        config.viewer,
        log_filename=config.get_base_dir() / config.viewer.relative_log_filename,
        datapath=pipeline.datamanager.get_datapath(),
        pipeline=pipeline,
        train_lock=lock,
    )
    cameras = pipeline.datamanager.train_dataset.cameras
    first = cameras.camera_to_worlds[0].cpu().numpy()
    fov = float(2 * np.arctan(cameras.cy[0].item() / cameras.fy[0].item()))
    # Half-way to the next view and a little further out, so that no training camera's frustum hides the head.
    half = np.pi / max(len(cameras), 2)
    turn = np.array([[np.cos(half), 0, np.sin(half)], [0, 1, 0], [-np.sin(half), 0, np.cos(half)]])
    start = turn @ first[:3, 3] * 1.3 * VISER_NERFSTUDIO_SCALE_RATIO

    @viewer.viser_server.on_client_connect
    def _start_at_first_view(client) -> None:
        with client.atomic():
            client.camera.position = start
            client.camera.look_at = (0.0, 0.0, 0.0)
            client.camera.up_direction = tuple(first[:3, 1])
            client.camera.fov = fov * 1.3  # as wide as the training views at this distance, with some room

    config.logging.local_writer.enable = False  # no training log, but writer's buffer must exist
    writer.setup_local_writer(config.logging, max_iter=config.max_num_iterations, banner_messages=None)
    viewer.init_scene(
        train_dataset=pipeline.datamanager.train_dataset,
        train_state="completed",
        eval_dataset=pipeline.datamanager.eval_dataset,
    )
    viewer.update_scene(step=step)
    progress.info(f"nerfstudio viewer: {url(host, port)}  (Ctrl-C to stop)")
    threading.Event().wait()
