"""``portrait3d view``: nerfstudio's viewer on a run's NeRF, on any install.

It runs nerfstudio's own viewer (``nerfstudio.viewer.viewer.Viewer``, what ``ns-viewer``
runs) on ``RUN/nerf/config.yml``. The differences from ``ns-viewer --load-config
RUN/nerf/config.yml``: torchvision's stand-in (:mod:`portrait3d.torchvision_compat`) is
installed first, so it also works beside a CPU build of torch; the server binds
127.0.0.1 unless told otherwise; a new browser tab starts at the run's first view.
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

METHOD_CONFIGS_ENV = "NERFSTUDIO_METHOD_CONFIGS"
"""nerfstudio's own variable naming extra methods; set when the package's entry point is not installed."""


def config_path(run_dir: str | Path) -> Path:
    """``RUN/nerf/config.yml``, or a UserError saying how to make it."""
    from nerf.fit import NERFSTUDIO_CONFIG

    root = Path(run_dir)
    if not root.is_dir():
        raise UserError(f"{root}: no such run folder")
    config = root / NERFSTUDIO_CONFIG
    if not config.is_file():
        raise UserError(
            f"{root}: no fitted NeRF ({NERFSTUDIO_CONFIG} is missing); run `portrait3d make-asset PHOTO --out {root}` "
            f"or `portrait3d fit-nerf {root}` first"
        )
    return config.resolve()


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
    config_file = config_path(run_dir)
    check_port_free(host, port)
    from portrait3d import torchvision_compat

    torchvision_compat.install_standin()  # the viewer imports torchvision lazily, for its camera thumbnails
    _register_method()
    from nerfstudio.configs.base_config import ViewerConfig
    from nerfstudio.utils import writer
    from nerfstudio.utils.eval_utils import eval_setup
    from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO, Viewer

    progress.info(f"loading {config_file}")
    config, pipeline, _, step = eval_setup(config_file, eval_num_rays_per_chunk=None, test_mode="test")
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
