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
