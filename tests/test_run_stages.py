"""run_stages: stages marked ``beside`` run on a second thread while the list goes on."""

from __future__ import annotations

import threading
import time

import pytest

from portrait3d import parallel, progress
from portrait3d.run import _TMP_PREFIX, Run, atomic_write_json
from portrait3d.runner import Stage, run_stages

PATIENCE = 60.0
"""Seconds a stage waits for the other one before it gives up (only a broken runner waits that long)."""


def _writes(name: str, body=None, beside: bool = False, inputs: tuple[str, ...] = ()) -> Stage:
    """A stage that runs ``body()`` (if any) and writes ``{name}.json``."""

    def fn(run: Run, _options) -> dict:
        info = body() if body else {}
        atomic_write_json(run.path(f"{name}.json"), {"stage": name})
        return info or {}

    return Stage(name, fn, inputs=inputs, outputs=(f"{name}.json",), beside=beside)


def test_a_stage_beside_runs_while_the_next_stage_does(tmp_path):
    run = Run(tmp_path / "run")
    started, answered = threading.Event(), threading.Event()

    def side() -> dict:
        started.set()
        return {"saw_the_next_stage": answered.wait(PATIENCE), "thread": threading.current_thread().name}

    def main() -> dict:
        return {"saw_the_side_stage": started.wait(PATIENCE), "answered": answered.set()}

    results = run_stages(run, [_writes("first"), _writes("side", side, beside=True), _writes("main", main)])
    assert list(results) == ["first", "side", "main"]
    assert results["side"]["saw_the_next_stage"] and results["main"]["saw_the_side_stage"]
    assert results["side"]["thread"].startswith("beside")
    assert all(run.record(name) is not None for name in results)


def test_a_stage_that_reads_a_side_stages_output_waits_for_it(tmp_path):
    run = Run(tmp_path / "run")

    def slow() -> None:
        time.sleep(0.5)  # a runner that does not wait starts the reader now, and its input is missing

    results = run_stages(run, [_writes("side", slow, beside=True), _writes("reader", inputs=("side.json",))])
    assert not results["reader"]["skipped"] and run.path("reader.json").is_file()


def test_a_side_stage_keeps_its_temporaries_while_the_next_stage_starts(tmp_path):
    run = Run(tmp_path / "run")
    run.path(f"{_TMP_PREFIX}left_by_a_killed_run").write_text("x")
    written, checked = threading.Event(), threading.Event()

    def side() -> dict:
        temporary = run.path(f"{_TMP_PREFIX}side_work")
        temporary.write_text("in progress")
        written.set()
        checked.wait(PATIENCE)
        return {"kept": temporary.exists()}

    def main() -> None:
        written.wait(PATIENCE)

    def after() -> None:
        checked.set()

    results = run_stages(run, [_writes("side", side, beside=True), _writes("main", main), _writes("after", after)])
    assert results["side"]["kept"]
    assert not run.path(f"{_TMP_PREFIX}left_by_a_killed_run").exists()  # a killed run's are cleaned, once


def test_a_failing_side_stage_fails_the_list_after_the_others(tmp_path):
    run = Run(tmp_path / "run")

    def boom() -> None:
        raise RuntimeError("side stage failed")

    with pytest.raises(RuntimeError, match="side stage failed"):
        run_stages(run, [_writes("side", boom, beside=True), _writes("main")])
    assert run.record("main") is not None and run.record("side") is None


def test_side_stages_take_one_core_and_report_their_own_stage(tmp_path):
    run = Run(tmp_path / "run")
    events: list[tuple[str | None, str]] = []
    both = threading.Barrier(2, timeout=PATIENCE)

    def side() -> dict:
        both.wait()
        for _ in progress.bar(range(3), desc="side work"):
            pass
        return {"threads": parallel.thread_count()}

    def main() -> dict:
        both.wait()
        for _ in progress.bar(range(3), desc="main work"):
            pass
        return {"threads": parallel.thread_count()}

    with progress.listen(lambda e: events.append((e.stage, e.message)) if e.kind == "step" else None):
        results = run_stages(run, [_writes("side", side, beside=True), _writes("main", main)])
    assert results["side"]["threads"] == 1
    assert results["main"]["threads"] == parallel.thread_count()
    assert {stage for stage, message in events if message == "side work"} == {"side"}
    assert {stage for stage, message in events if message == "main work"} == {"main"}


def test_only_the_main_threads_bars_print_lines(capsys):
    before = progress.verbosity()
    progress.set_verbosity(progress.NORMAL)
    try:
        side = threading.Thread(target=lambda: list(progress.bar(range(8), desc="side frames")))
        side.start()
        side.join()
        list(progress.bar(range(8), desc="main steps"))
    finally:
        progress.set_verbosity(before)
    err = capsys.readouterr().err
    assert "main steps: 2/8" in err and "side frames" not in err
