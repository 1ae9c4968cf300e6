"""Batch safety (issue #21): --wait waits, killed drivers leave no workers, Ray binds 127.0.0.1 only."""

from __future__ import annotations

import threading

import pytest
from filelock import FileLock

from portrait3d import progress
from portrait3d.batch import LOCK_NAME, _lock
from portrait3d.errors import UserError


def test_batch_wait_queues_behind_the_batch_in_the_folder(tmp_path):
    holder = FileLock(tmp_path / LOCK_NAME)
    holder.acquire()
    with pytest.raises(UserError, match="--wait"):
        _lock(tmp_path)
    waiting, got = threading.Event(), []

    def heard(event: progress.Event) -> None:
        if event.kind == "info" and "waiting" in event.message:
            waiting.set()

    def second() -> None:
        with progress.listen(heard):
            got.append(_lock(tmp_path, wait=True))

    thread = threading.Thread(target=second, daemon=True)
    thread.start()
    assert waiting.wait(60), "the second batch neither waited nor said so"
    assert not got  # it is queued: the first batch still holds the folder
    holder.release()
    thread.join(60)
    assert got and got[0].is_locked
    with pytest.raises(UserError, match="another portrait3d batch"):
        _lock(tmp_path)  # the second batch holds the folder now
    got[0].release()


def _listening(root_pid: int) -> set[tuple[str, str]]:
    """(process name, address) of every listening TCP socket of ``root_pid``'s descendants."""
    import psutil

    found = set()
    for proc in psutil.Process(root_pid).children(recursive=True):
        try:
            found |= {(proc.name(), c.laddr.ip) for c in proc.net_connections("inet") if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            continue  # a process that ended meanwhile
    return found


def test_local_ray_cluster_listens_on_loopback_only():
    """The local cluster of ``batch --engine ray`` (started as RayEngine.run starts it, with one task)."""
    ray = pytest.importorskip("ray")
    import os

    from portrait3d.batch.ray_engine import RayEngine, _loopback_only

    engine = RayEngine(None, None, 0, 1)
    with _loopback_only():
        engine._connect(ray)
        try:
            worker_pid = ray.remote(lambda: __import__("os").getpid())  # pickled by value: no test module needed
            assert ray.get(worker_pid.remote()) != os.getpid()  # a worker process is up
            sockets = _listening(os.getpid())
        finally:
            ray.shutdown()
    names = {name for name, _ in sockets}
    assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names), sockets
    exposed = {(name, ip) for name, ip in sockets if ip not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")}
    assert not exposed, f"listening beyond this machine: {sorted(exposed)}"


def test_killed_local_driver_leaves_no_workers_and_no_locked_run(tmp_path, sample_photo):
    """``kill -9`` of ``batch`` (local engine): its worker ends too, and the photo's run is free at once."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from portrait3d.run import Run

    out = tmp_path / "out"
    driver = subprocess.Popen(
        [sys.executable, "-m", "portrait3d", "batch", str(sample_photo), "--out", str(out), "--preset", "tiny"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    worker = None
    deadline = time.monotonic() + 300  # a guard against a hang only
    while worker is None and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.2)
        logs = list((out / "logs").glob("*.log")) if (out / "logs").is_dir() else []
        found = re.findall(r"pid (\d+) on ", logs[0].read_text()) if logs else []
        if found and (out / logs[0].stem / ".portrait3d" / "lock.pid").is_file():
            worker = int(found[0])  # the worker holds its run's lock
    assert worker is not None and driver.poll() is None, "the worker never started"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    try:
        psutil.Process(worker).wait(timeout=120)  # ends on its own: the test only waits for it
    except psutil.TimeoutExpired:
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("the worker outlived its killed driver") from None
    except psutil.NoSuchProcess:
        pass
    run = out / logs[0].stem
    if run.exists():  # a run with no finished stage is removed as the worker unwinds
        with Run(run, create=False).lock():  # what a rerun needs: the run is not "being written"
            pass
