"""The run folder: atomic writes, stage records, skipping, healing and redoing stages, the write lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from portrait3d import memory
from portrait3d.errors import UserError
from portrait3d.run import Run, atomic_dir, atomic_path, atomic_save_image, atomic_write_json, read_json
from portrait3d.runner import Stage, run_stage


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half written")
        raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_dir_replaces_whole_folder(tmp_path):
    folder = tmp_path / "views"
    with atomic_dir(folder) as tmp:
        (tmp / "0.png").write_text("old")
        (tmp / "1.png").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(folder) as tmp:
        (tmp / "0.png").write_text("new")
        raise RuntimeError("killed")
    assert sorted(p.name for p in folder.iterdir()) == ["0.png", "1.png"]
    with atomic_dir(folder) as tmp:
        (tmp / "0.png").write_text("new")
    assert [p.name for p in folder.iterdir()] == ["0.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["views"]


def test_atomic_image(tmp_path):
    from PIL import Image

    img = np.zeros((4, 5, 4), dtype=np.uint8)
    img[..., 3] = 128
    atomic_save_image(tmp_path / "x.png", img)
    back = np.asarray(Image.open(tmp_path / "x.png"))
    assert back.shape == (4, 5, 4) and back[0, 0, 3] == 128


def test_run_refuses_foreign_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a portrait3d run"):
        Run(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["precious.txt"]
    Run(tmp_path / "new")  # empty or missing folders become runs
    Run(tmp_path / "new")  # and reopen


@dataclass
class _Opts:
    scale: int = 2


def _double(run: Run, options: _Opts) -> dict:
    value = int(run.path("in.txt").read_text())
    atomic_write_json(run.path("out.json"), {"value": value * options.scale})
    return {"value": value * options.scale}


def _stage(calls: list, scale: int = 2) -> Stage:
    def fn(r, o):
        calls.append(1)
        return _double(r, o)

    return Stage("double", fn, _Opts(scale), inputs=("in.txt",), outputs=("out.json",), needs="write in.txt")


def test_run_stage_skips_and_redoes(tmp_path, capsys):
    run = Run(tmp_path / "run")
    run.path("in.txt").write_text("3")
    calls: list = []
    assert run_stage(run, _stage(calls))["value"] == 6
    again = run_stage(run, _stage(calls))
    assert again["skipped"] and again["value"] == 6 and len(calls) == 1
    assert "[double] up to date, skipped" in capsys.readouterr().err
    run_stage(run, _stage(calls, scale=3))  # options changed
    assert len(calls) == 2 and "redone: its inputs or options changed" in capsys.readouterr().err
    run.path("in.txt").write_text("4")  # input changed
    assert run_stage(run, _stage(calls, scale=3))["value"] == 12
    run_stage(run, _stage(calls, scale=3), force=True)
    assert len(calls) == 4


def _big_stage(megabytes: int) -> Stage:
    """A stage that holds ``megabytes`` MiB (written to, so resident) while it runs."""

    def fn(r, o):
        block = np.ones(megabytes * 2**20 // 8)
        return {**_double(r, o), "block_sum": float(block.sum())}

    return Stage("big", fn, _Opts(), inputs=("in.txt",), outputs=("out.json",))


@pytest.mark.skipif(memory.rss_mib() is None, reason="no /proc/self/status: the peak memory is unknown")
def test_run_stage_reports_the_stage_own_peak_memory(tmp_path):
    run = Run(tmp_path / "run")
    run.path("in.txt").write_text("3")
    before = memory.rss_mib()
    big = run_stage(run, _big_stage(96))
    assert big["peak_rss_mib"] >= before + 90
    # The next stage's peak is its own, not the process's so far; a skipped stage measured nothing.
    small = run_stage(run, _stage([]), force=True)
    assert small["peak_rss_mib"] < big["peak_rss_mib"] - 60
    assert run_stage(run, _stage([]))["peak_rss_mib"] is None


@pytest.mark.skipif(memory.rss_mib() is None or memory._malloc_trim() is None, reason="not Linux with glibc")
def test_release_freed_hands_the_heap_back():
    blocks = [np.ones(8192) for _ in range(3000)]  # 64 KiB each: below glibc's mmap threshold, in the heap
    kept = blocks[-1]  # pins the heap's top, so that free() alone cannot shrink it
    held = memory.rss_mib()
    del blocks
    memory.release_freed()
    assert memory.rss_mib() < held - 100 and kept.sum() == 8192


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: p.unlink(), "out.json is missing"),
        (lambda p: p.write_bytes(p.read_bytes()[:5]), "out.json is truncated"),
        (lambda p: p.write_text(p.read_text().replace("6", "7")), "out.json changed"),
    ],
    ids=["deleted", "truncated", "changed"],
)
def test_damaged_output_is_redone_with_the_reason(tmp_path, capsys, damage, reason):
    run = Run(tmp_path / "run")
    run.path("in.txt").write_text("3")
    calls: list = []
    run_stage(run, _stage(calls))
    damage(run.path("out.json"))
    capsys.readouterr()
    assert not run_stage(run, _stage(calls))["skipped"]
    err = capsys.readouterr().err
    assert f"[double] redone: {reason}" in err, err
    assert json.loads(run.path("out.json").read_text()) == {"value": 6} and len(calls) == 2


def test_downstream_stage_follows_a_redone_stage(tmp_path):
    run = Run(tmp_path / "run")
    run.path("in.txt").write_text("3")
    calls: list = []
    run_stage(run, _stage(calls))
    later = Stage(
        "later",
        lambda r, o: atomic_write_json(r.path("final.json"), read_json(r.path("out.json"))),
        inputs=("out.json",),
        outputs=("final.json",),
    )
    assert not run_stage(run, later)["skipped"]
    assert run_stage(run, later)["skipped"]
    run.path("in.txt").write_text("5")
    run_stage(run, _stage(calls))
    assert not run_stage(run, later)["skipped"]  # its input's content changed
    assert read_json(run.path("final.json")) == {"value": 10}


@pytest.mark.parametrize("content", [os.urandom(64), b"\xff\xfe{not json", b'{"stage": 1}', b"[]"])
def test_record_that_cannot_be_read_means_not_done(tmp_path, capsys, content):
    run = Run(tmp_path / "run")
    run.path("in.txt").write_text("3")
    calls: list = []
    run_stage(run, _stage(calls))
    run.path(".portrait3d", "stages", "double.json").write_bytes(content)
    assert run.record("double") is None
    assert not run_stage(run, _stage(calls))["skipped"]
    assert "redone: its record cannot be read" in capsys.readouterr().err
    assert run_stage(run, _stage(calls))["skipped"] and len(calls) == 2


def test_missing_input_names_it_and_the_hint(tmp_path):
    run = Run(tmp_path / "run")
    with pytest.raises(UserError, match="missing in.txt; write in.txt"):
        run_stage(run, _stage([]))


def test_failed_stage_is_not_recorded(tmp_path):
    run = Run(tmp_path / "run")

    def boom(r, o):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage(run, Stage("boom", boom, outputs=("x",)))
    assert run.record("boom") is None


@pytest.mark.parametrize(("content", "what"), [(b"\xff\xfe\x00bad", "not UTF-8"), (b'{"a": ', "not valid JSON")])
def test_unreadable_json_is_one_line_naming_the_file(tmp_path, content, what):
    from portrait3d.diffusion.stages import check_weights

    path = tmp_path / "model_index.json"
    path.write_bytes(content)
    with pytest.raises(UserError, match=what) as exc:
        read_json(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(UserError, match=what):  # a weights folder whose model_index.json is damaged
        check_weights(tmp_path, tmp_path, "Portrait360Pipeline")


_HOLD_LOCK = """
import sys
from portrait3d.run import Run
with Run(sys.argv[1]).lock():
    print("locked", flush=True)
    sys.stdin.readline()  # hold the lock until the test says so
print("released", flush=True)
sys.stdin.readline()  # then stay alive until the test closes stdin
"""


def _holder(root) -> subprocess.Popen:
    """A process that holds the run's lock until :func:`_release` (no timing involved)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _release(proc: subprocess.Popen) -> None:
    proc.stdin.write("release\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "released"


def test_second_writer_is_refused_naming_the_pid_or_waits(tmp_path):
    """The waiter gets the lock only after the holder released it: ordered by messages, not by time or load."""
    import threading

    from portrait3d import progress

    run = Run(tmp_path / "run")
    holder = _holder(run.root)
    try:
        with pytest.raises(UserError, match=f"process {holder.pid} is writing this run.*--wait"), run.lock():
            pass
        waiting, released, got = threading.Event(), threading.Event(), []

        def heard(event: progress.Event) -> None:
            if event.kind == "info" and f"waiting for process {holder.pid}" in event.message:
                waiting.set()

        def waiter() -> None:
            with progress.listen(heard), run.lock(wait=True):
                got.append((released.is_set(), run.lock_holder()))

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        assert waiting.wait(120), "the second writer neither waited nor said so"
        assert not got  # queued while the holder holds the lock
        released.set()
        _release(holder)
        thread.join(120)
        assert got == [(True, os.getpid())]  # got the lock only once the holder had released it
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_process_does_not_block(tmp_path):
    run = Run(tmp_path / "run")
    holder = _holder(run.root)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert run.lock_holder() == holder.pid  # its PID file is left behind, but the OS lock died with it
    with run.lock():
        assert run.lock_holder() == os.getpid()
    assert run.lock_holder() is None


def test_lock_is_reentrant_within_a_process(tmp_path):
    run = Run(tmp_path / "run")
    with run.lock(), Run(run.root).lock():
        assert run.lock_holder() == os.getpid()
    holder = _holder(run.root)  # released: another process gets it
    _release(holder)
    holder.stdin.close()
    holder.wait()


def test_clean_temporaries(tmp_path):
    run = Run(tmp_path / "run")
    (run.root / "views").mkdir()
    (run.root / "views" / ".tmp-abc.png").write_text("partial")
    (run.root / ".tmp-views-x").mkdir()
    run.clean_temporaries()
    assert not any(p.name.startswith(".tmp-") for p in run.root.rglob("*"))


def test_atomic_outputs_get_ordinary_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
