"""One photo of a batch, run inside a worker process (a local child process or a Ray worker).

The worker writes everything it prints to the photo's log file and returns a small,
picklable result: the batch summary is written by the driver alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PhotoTask:
    """What a worker needs to turn one photo into one run folder."""

    name: str
    """Run folder name (unique in the batch)."""
    photo: str
    """Absolute path of the photo (on storage that the worker sees)."""
    run: str
    """Absolute path of the run folder."""
    log: str
    """Absolute path of the photo's log file (appended to, one header per attempt)."""
    options: dict
    """``dataclasses.asdict`` of the :class:`portrait3d.make_asset.MakeAssetOptions`."""
    verbosity: int = 1
    """:mod:`portrait3d.progress` level inside the worker."""
    threads: int = 1
    """torch threads inside the worker (the batch shares the machine's cores between photos)."""


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors too, for native libraries) to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab", buffering=0) as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def error_line(exc: BaseException) -> str:
    """The one line the batch summary shows for a photo that failed (the CLI's wording)."""
    from portrait3d.errors import UserError

    if isinstance(exc, UserError):
        message = str(exc)
    elif isinstance(exc, KeyboardInterrupt):
        message = "interrupted; run the batch again to resume"
    elif isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        message = f"no space left on the device while writing {exc.filename or 'the run folder'}"
    elif isinstance(exc, OSError):
        message = f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    else:
        message = f"internal error: {type(exc).__name__}: {exc} (traceback in the photo's log)"
    return (message.splitlines() or ["error"])[0]


def run_photo(task: PhotoTask) -> dict:
    """Run make-asset on one photo in this process; never raises for a bad photo.

    Returns ``{"status": "ok" | "failed", "seconds", "glb", "error", "pid", "host"}``.
    """
    from portrait3d import progress
    from portrait3d.errors import UserError

    host, pid = socket.gethostname(), os.getpid()
    start = time.perf_counter()
    result = {"status": "failed", "seconds": 0.0, "glb": None, "error": None, "pid": pid, "host": host}
    with _output_to(Path(task.log)):
        # The header is also how an operator (or a test) finds the process that runs a photo.
        print(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} {task.photo} -> {task.run}: pid {pid} on {host} ==", flush=True)
        # A polite kill unwinds like Ctrl-C (temporaries removed), as in the CLI; the worker's own
        # handler comes back afterwards (a Ray worker stops itself with SIGTERM).
        previous = None
        with contextlib.suppress(ValueError):  # not the main thread
            previous = signal.signal(signal.SIGTERM, progress.interrupt)
        progress.set_verbosity(max(task.verbosity, progress.NORMAL))
        try:
            import torch

            torch.set_num_threads(max(1, task.threads))
            from portrait3d.make_asset import MakeAssetOptions, make_asset

            make_asset(task.photo, task.run, MakeAssetOptions(**task.options))
            glb = Path(task.run) / "mesh" / "head.glb"
            result.update(status="ok", glb=str(glb))
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - a bad photo fails alone, with one line
            if not isinstance(exc, UserError):
                traceback.print_exc()
            result["error"] = error_line(exc)
            print(f"portrait3d: error: {result['error']}", file=sys.stderr, flush=True)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        result["seconds"] = round(time.perf_counter() - start, 2)
        print(f"== {result['status']} in {result['seconds']:.0f} s ==", flush=True)
    return result
