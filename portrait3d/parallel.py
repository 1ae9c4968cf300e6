"""Independent pieces of work (views, frames) in a few threads, their results in order.

numpy, open3d, torch and the video encoder release the GIL for their large operations, so per-view loops
(the bake's views, the turntable's frames, the NeRF's depth maps, the splat's no-gradient renders) run
side by side on the machine's cores. Results come back in the order of the inputs and are combined by the
caller one after the other, so a result never depends on the number of threads. Torch work in such
threads runs best on one torch thread each (:func:`torch_threads`): its small ops gain nothing from
torch's own threads and lose to their synchronisation.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_THREADS = 4
"""At most this many threads (beyond that, the GIL and memory bandwidth give little more)."""


_local = threading.local()


def thread_count() -> int:
    """Threads for per-view work: the CPUs this process may use, at most :data:`MAX_THREADS`, and at most
    what :func:`limited_threads` allows the calling thread."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cpus, getattr(_local, "limit", MAX_THREADS)))


@contextlib.contextmanager
def limited_threads(count: int) -> Iterator[None]:
    """Within the block, :func:`thread_count` in the calling thread is at most ``count`` (a stage that runs
    beside another one takes one core, not both)."""
    before = getattr(_local, "limit", None)
    _local.limit = max(1, int(count))
    try:
        yield
    finally:
        if before is None:
            del _local.limit
        else:
            _local.limit = before


def ordered_map(fn: Callable[[Item], Result], items: Iterable[Item], threads: int | None = None) -> Iterator[Result]:
    """``fn`` of each item, computed in up to ``threads`` threads, yielded in the items' order.

    At most ``threads`` items are in work or waiting at any time (each result may be large: a view's
    samples of a 2048² texture are about 80 MB; more in flight pushed make-asset's peak over 2 GiB).
    ``threads=1`` runs everything in the calling thread. Within a worker, :func:`thread_count` is 1.
    """
    threads = thread_count() if threads is None else max(1, int(threads))
    if threads == 1:
        yield from map(fn, items)
        return

    def alone(item: Item) -> Result:
        with limited_threads(1):  # the workers share the cores already: no threads within threads
            return fn(item)

    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(alone, item))
            if len(pending) >= threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


@contextlib.contextmanager
def torch_threads(count: int, device: str = "cpu") -> Iterator[None]:
    """Run the block with ``count`` torch threads on the CPU (0, or another device: unchanged), then restore."""
    import torch

    before = torch.get_num_threads()
    change = count > 0 and torch.device(device).type == "cpu" and count != before
    if change:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(before)
