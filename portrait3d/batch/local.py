"""The local engine: each photo in a fresh spawned process, ``workers`` at a time.

A fresh process per photo keeps photos apart (torch threads, the progress module, memory),
and one that dies (killed, out of memory) takes only its photo with it: the photo is run
again, up to ``retries`` times, and resumes from its run folder. Ray is never imported here.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from portrait3d.batch.summary import Summary
from portrait3d.batch.worker import PhotoTask, run_photo

PARENT_GONE_GRACE_SECONDS = 60.0
"""A worker whose driver died gets SIGTERM (it unwinds like Ctrl-C); after this long it is ended outright."""


def _exit_with_parent() -> None:
    """End this worker when its driver dies, even by ``kill -9``: no orphan keeps a run locked.

    The driver's sentinel (a pipe multiprocessing gives every spawned child) reads as ready once
    the driver is gone, whatever killed it.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)  # unwinds like Ctrl-C: temporaries removed, lock released
        time.sleep(PARENT_GONE_GRACE_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="portrait3d-driver-watch", daemon=True).start()


def _child(task: PhotoTask, conn) -> None:
    _exit_with_parent()
    conn.send(run_photo(task))
    conn.close()


class LocalEngine:
    """Run photo tasks in spawned processes on this machine."""

    def __init__(self, workers: int, retries: int) -> None:
        self.workers = max(1, workers)
        self.retries = max(0, retries)
        self._ctx = multiprocessing.get_context("spawn")
        self._live: set = set()
        self._live_lock = threading.Lock()
        self._stopping = threading.Event()

    def _attempt(self, task: PhotoTask, summary: Summary) -> tuple[dict | None, str]:
        """One attempt in one process: its result, or None and why the process died without one."""
        receiver, sender = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_child, args=(task, sender), name=f"portrait3d-batch:{task.name}")
        with self._live_lock:
            if self._stopping.is_set():
                return {"status": "failed", "error": "interrupted; run the batch again to resume"}, ""
            proc.start()
            self._live.add(proc)
        sender.close()
        summary.started(task.name, f"{socket.gethostname()}:{proc.pid}")
        try:
            result = receiver.recv()
        except EOFError:
            result = None
        finally:
            receiver.close()
            proc.join()
            with self._live_lock:
                self._live.discard(proc)
        if result is not None:
            return result, ""
        code = proc.exitcode
        how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit status {code}"
        return None, f"worker process {proc.pid} died ({how})"

    def _run_one(self, task: PhotoTask, summary: Summary) -> tuple[PhotoTask, dict]:
        for attempt in range(self.retries + 1):
            result, reason = self._attempt(task, summary)
            if result is not None:
                return task, result
            if attempt == self.retries or self._stopping.is_set():
                return task, {"status": "failed", "error": f"{reason}; gave up after {attempt + 1} attempts"}
            summary.retrying(task.name, reason)
        raise AssertionError("unreachable")

    def run(self, tasks: list[PhotoTask], summary: Summary) -> None:
        """Run every task; each result goes to ``summary`` as it arrives."""
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="portrait3d-batch")
        try:
            futures = [pool.submit(self._run_one, task, summary) for task in tasks]
            for future in as_completed(futures):
                task, result = future.result()
                summary.finished(task.name, result)
        except BaseException:
            # Ctrl-C or SIGTERM: stop starting photos and let the running ones unwind (they get
            # SIGTERM, remove their temporaries and keep their finished stages for the next run).
            self._stopping.set()
            with self._live_lock:
                for proc in self._live:
                    proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
