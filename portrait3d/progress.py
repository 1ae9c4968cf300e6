"""Progress output: one line per stage, bars inside long stages on a terminal.

The CLI sets the verbosity once; library code calls :func:`info`, :func:`stage`
and :func:`bar` and never prints directly. Other front ends (the web app) follow the
same calls with :func:`listen`, whatever the verbosity.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar

T = TypeVar("T")

QUIET, NORMAL, VERBOSE = 0, 1, 2
_level = NORMAL
_interrupted = False
_signal = 0


@dataclass(frozen=True)
class Event:
    """What a listener hears: a stage starting or ending, a line of text, or a step of a bar."""

    kind: Literal["stage-start", "stage-end", "info", "step"]
    stage: str | None
    """The innermost running stage (None outside stages)."""
    message: str = ""
    """The line (``info``), or the bar's description (``step``)."""
    done: int = 0
    """Steps done (``step``)."""
    total: int | None = None
    """Steps in all (``step``), when known."""
    seconds: float | None = None
    """How long the stage took (``stage-end``)."""


_listeners: list[Callable[[Event], None]] = []
_local = threading.local()  # each thread's running stages: stages may run beside each other (runner.run_stages)


def _stages() -> list[str]:
    """This thread's stack of running stages."""
    if not hasattr(_local, "stages"):
        _local.stages = []
    return _local.stages


@contextlib.contextmanager
def listen(callback: Callable[[Event], None]) -> Iterator[None]:
    """Call ``callback(event)`` for every stage start/end, :func:`info` line and :func:`bar` step inside."""
    _listeners.append(callback)
    try:
        yield
    finally:
        _listeners.remove(callback)


def _emit(kind: str, message: str = "", done: int = 0, total: int | None = None, seconds: float | None = None) -> None:
    if _listeners:
        stages = _stages()
        event = Event(kind, stages[-1] if stages else None, message, done, total, seconds)  # type: ignore[arg-type]
        for callback in list(_listeners):
            callback(event)


def interrupt(signum: int, frame: object) -> None:
    """Signal handler for Ctrl-C and SIGTERM: raise KeyboardInterrupt, and remember it.

    Some libraries catch every exception around their optional imports (trimesh wraps
    BaseException), so an interrupt that lands there is lost; stages and progress bars
    raise it again (:func:`raise_if_interrupted`).
    """
    global _interrupted, _signal
    _interrupted = True
    _signal = signum
    raise KeyboardInterrupt


def interrupt_signal() -> int:
    """The number of the signal :func:`interrupt` caught (0 if none): the exit code is 128 + it."""
    return _signal


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if :func:`interrupt` ran, even if its first exception was swallowed."""
    if _interrupted:
        raise KeyboardInterrupt


def set_verbosity(level: int) -> None:
    """Set how much is printed: QUIET (errors only), NORMAL or VERBOSE."""
    global _level
    _level = level


def verbosity() -> int:
    """The current verbosity level."""
    return _level


def info(message: str) -> None:
    """A plain line on stderr (hidden with ``--quiet``)."""
    _emit("info", message)
    if _level >= NORMAL:
        print(message, file=sys.stderr, flush=True)


def debug(message: str) -> None:
    """A line shown only with ``--verbose``."""
    if _level >= VERBOSE:
        print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Announce a stage and print its elapsed time when it ends."""
    raise_if_interrupted()
    start = time.perf_counter()
    _stages().append(name)
    try:
        _emit("stage-start")
        info(f"[{name}] ...")
        yield
        raise_if_interrupted()
        seconds = time.perf_counter() - start
        info(f"[{name}] done in {seconds:.1f} s")
        _emit("stage-end", seconds=seconds)
    finally:
        _stages().pop()


def bar(iterable: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """Iterate with a progress bar on a terminal, plain occasional lines otherwise.

    Only the main thread draws a bar or prints those lines (a stage beside it prints its own only with
    ``--verbose``: two bars on one terminal garble each other); listeners hear every step.
    """
    total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
    main = threading.current_thread() is threading.main_thread()
    if _level >= NORMAL and sys.stderr.isatty() and main:
        from tqdm import tqdm

        for i, item in enumerate(tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr), 1):
            raise_if_interrupted()
            yield item
            _emit("step", desc, i, total)
        return
    step = max(1, (total or 0) // 4) if total else 0
    for i, item in enumerate(iterable, 1):
        raise_if_interrupted()
        yield item
        _emit("step", desc, i, total)
        if _level >= VERBOSE or (main and step and _level >= NORMAL and i % step == 0 and i < (total or 0)):
            info(f"  {desc}: {i}/{total if total else '?'}")
