"""The Ray engine: each photo a Ray task, on a cluster that ``--ray-address`` names or a local one.

Each task runs :func:`portrait3d.batch.worker.run_photo` in a fresh worker process
(``max_calls=1``: GPU memory and torch threads do not leak from photo to photo). A task
reserves one GPU when the photo needs one (the diffusion generator, a CUDA fit) and
``cpus_per_photo`` CPUs otherwise. A worker that dies is retried by Ray (``max_retries``) and
the retry resumes from the run folder, so run folders must be on storage every node sees.
"""

from __future__ import annotations

import contextlib
import os
import sys

from portrait3d import progress
from portrait3d.batch.summary import Summary
from portrait3d.batch.worker import PhotoTask, run_photo
from portrait3d.errors import UserError

LOCAL_OBJECT_STORE_BYTES = 200 * 2**20
"""Object store of a local cluster: tasks exchange only small dicts, and the machine may be small."""
SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch for a one-machine cluster (its default on macOS and Windows): node address 127.0.0.1.

Without it Ray replaces a node address of 127.0.0.1 by the machine's external address, and its
servers (GCS, raylet, workers, the runtime-env agent) listen there or on every interface.
"""


@contextlib.contextmanager
def _loopback_only():
    """A local cluster started inside binds 127.0.0.1 only (its processes inherit the environment)."""
    before = os.environ.get(SINGLE_NODE_ENV)
    os.environ[SINGLE_NODE_ENV] = "0"
    constants = sys.modules.get("ray._private.ray_constants")  # read at import: patch it if ray is loaded
    saved = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SINGLE_NODE_ENV, None)
        else:
            os.environ[SINGLE_NODE_ENV] = before
        if constants is not None:
            constants.ENABLE_RAY_CLUSTER = saved


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise UserError("--engine ray needs Ray: pip install 'portrait3d[ray]'") from exc
    return ray


def needs_gpu(options: dict, cluster_gpus: float) -> bool:
    """Whether a photo's task reserves a GPU: the diffusion generator, ``--device cuda``, or auto on a GPU cluster."""
    if options.get("generator") == "diffusion" or options.get("device") == "cuda":
        return True
    return options.get("device") == "auto" and cluster_gpus > 0


class RayEngine:
    """Run photo tasks as Ray tasks."""

    def __init__(self, address: str | None, workers: int | None, retries: int, cpus_per_photo: int) -> None:
        self.address = address
        self.workers = workers
        self.retries = max(0, retries)
        self.cpus_per_photo = max(1, cpus_per_photo)

    def _connect(self, ray) -> bool:
        """Join the cluster or start a local one; True when this process started it."""
        try:
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
                return False
            ray.init(
                address="local",
                _node_ip_address="127.0.0.1",
                include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                log_to_driver=False,
            )
            return True
        except Exception as exc:  # noqa: BLE001 - Ray raises bare Exceptions when a node fails to start
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            if self.address:
                raise UserError(f"--engine ray: cannot join the Ray cluster at {self.address} ({first})") from exc
            # Ray gives a new node 30 s to start its agents, which a heavily loaded machine can miss.
            raise UserError(
                f"--engine ray: cannot start a local Ray cluster ({first}); on a busy machine try again, "
                "or start one with `ray start --head` and pass --ray-address"
            ) from exc

    def run(self, tasks: list[PhotoTask], summary: Summary) -> None:
        """Run every task; each result goes to ``summary`` as it arrives."""
        with contextlib.nullcontext() if self.address else _loopback_only():
            ray = _import_ray()
            started_here = self._connect(ray)
            try:
                self._run(ray, tasks, summary)
            finally:
                if started_here:
                    ray.shutdown()

    def _run(self, ray, tasks: list[PhotoTask], summary: Summary) -> None:
        resources = ray.cluster_resources()
        gpus, cpus = resources.get("GPU", 0), resources.get("CPU", 0)
        use_gpu = bool(tasks) and needs_gpu(tasks[0].options, gpus)
        if use_gpu and gpus < 1:
            raise UserError("--engine ray: these photos need a GPU each, and the Ray cluster has none")
        per_task = {"num_gpus": 1, "num_cpus": 1} if use_gpu else {"num_cpus": self.cpus_per_photo}
        capacity = int(gpus) if use_gpu else max(1, int(cpus // self.cpus_per_photo))
        in_flight = self.workers or capacity
        progress.info(
            f"[batch] Ray cluster: {cpus:g} CPUs, {gpus:g} GPUs; each photo reserves "
            + ", ".join(f"{v} {k.removeprefix('num_').upper().rstrip('S')}" for k, v in per_task.items())
            + f"; {in_flight} at a time"
        )
        remote = ray.remote(max_calls=1)(run_photo)
        queue = list(tasks)
        refs: dict = {}
        try:
            while queue or refs:
                while queue and len(refs) < in_flight:
                    task = queue.pop(0)
                    task.threads = per_task["num_cpus"]
                    ref = remote.options(name=f"portrait3d:{task.name}", max_retries=self.retries, **per_task).remote(
                        task
                    )
                    refs[ref] = task
                    summary.started(task.name)
                ready, _ = ray.wait(list(refs), num_returns=1)
                for ref in ready:
                    task = refs.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        # The worker died more often than max_retries allows (or the task could not run).
                        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                        error = f"Ray task failed after {self.retries + 1} attempts: {type(exc).__name__}: {first}"
                        result = {"status": "failed", "error": error}
                    summary.finished(task.name, result)
        except BaseException:
            # Ctrl-C or SIGTERM: cancelled tasks raise KeyboardInterrupt inside, unwind and keep
            # their finished stages for the next run.
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            raise
