"""Progress output: one line per stage, bars inside long stages on a terminal.

The CLI sets the verbosity once; library code calls :func:`info`, :func:`stage`
and :func:`bar` and never prints directly.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

QUIET, NORMAL, VERBOSE = 0, 1, 2
_level = NORMAL
_interrupted = False
_signal = 0


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
    info(f"[{name}] ...")
    yield
    raise_if_interrupted()
    info(f"[{name}] done in {time.perf_counter() - start:.1f} s")


def bar(iterable: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """Iterate with a progress bar on a terminal, plain occasional lines otherwise."""
    if _level >= NORMAL and sys.stderr.isatty():
        from tqdm import tqdm

        for item in tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr):
            raise_if_interrupted()
            yield item
        return
    total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
    step = max(1, (total or 0) // 4) if total else 0
    for i, item in enumerate(iterable, 1):
        raise_if_interrupted()
        yield item
        if _level >= VERBOSE or (step and _level >= NORMAL and i % step == 0 and i < (total or 0)):
            info(f"  {desc}: {i}/{total if total else '?'}")
