"""The runner: one shape for every stage, and the one function that runs a stage through the run folder.

A :class:`Stage` is a value: its name, the run files it reads, the files it
writes, its options and the function that does the work. :func:`run_stage` is
the only place that decides whether a stage runs:

- the stage's key is the hash of its options and of the content of its inputs
  (run files, and files outside the run such as the photo);
- the stage is skipped when its record has the same key and every file it wrote
  still has the size and SHA-256 recorded; otherwise it is redone, with one line
  saying why (inputs changed, an output missing, truncated or changed, a record
  that cannot be read). A redone stage that writes different bytes changes the
  inputs of the stages after it, so they are redone in turn;
- the run's write lock is held throughout (:meth:`portrait3d.run.Run.lock`).

The runner knows no stage: each stage package builds its own :class:`Stage`, the
pipeline lists them, and the front ends walk that list.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portrait3d import memory, progress
from portrait3d.errors import UserError
from portrait3d.run import Run, hash_files, hash_options

StageFunction = Callable[[Run, Any], "dict | None"]


@dataclass(frozen=True)
class Stage:
    """One stage of a run: what it reads, what it writes, its options and its function."""

    name: str
    """Stage name (``preprocess``, ``proxy``, ``views``, ``back_view``, ``orbit_views``, ``dataset``,
    ``fit-nerf``, ``export-mesh``, ``render-turntable``, ``contact-sheet``); names its record."""
    function: StageFunction
    """``function(run, options) -> dict | None``: writes the outputs atomically, returns information for the report."""
    options: Any = None
    """A dataclass or JSON-serialisable value; part of the stage's key."""
    inputs: tuple[str, ...] = ()
    """Run-relative files or folders the stage reads (their content is part of the key)."""
    outputs: tuple[str, ...] = ()
    """Run-relative files, folders or glob patterns the stage writes (each file's size and SHA-256 is recorded)."""
    optional: tuple[str, ...] = ()
    """Inputs that may be absent."""
    sources: tuple[str, ...] = ()
    """Files or folders outside the run that the stage reads (the photo); hashed by content."""
    needs: str = ""
    """What to do when a required input is missing, e.g. ``run `portrait3d dataset {run}` first``."""
    check: Callable[[Run], None] | None = None
    """Extra checks of the options and the run before anything runs (one-line UserErrors)."""
    beside: bool = False
    """In :func:`run_stages`: may run on a second thread while the stages listed after it go on. For light
    stages that leave the GIL free most of the time and use no torch (torch's thread count is the process's):
    the turntable beside the splat distillation, which keeps one core busy and leaves the other idle."""


def stage_key(run: Run, stage: Stage) -> str:
    """The hash of the stage's options and the content of its inputs."""
    options = dataclasses.asdict(stage.options) if dataclasses.is_dataclass(stage.options) else stage.options
    return hash_options(
        {
            "options": options,
            "inputs": hash_files([run.path(i) for i in stage.inputs], run.root),
            "sources": hash_files([Path(s) for s in stage.sources]),
        }
    )


def run_stage(run: Run, stage: Stage, force: bool = False, wait: bool = False, clean: bool = True) -> dict:
    """Run ``stage`` unless its record says it is done for the same key and its outputs are intact.

    Args:
        run: the run folder.
        stage: the stage.
        force: run even if the stage is up to date.
        wait: wait for another process that holds the run's lock instead of failing.
        clean: first remove temporaries that a killed process left (False while another stage of this
            process may be writing its own).
    Returns:
        The stage's information (from its record when skipped), with ``seconds``, ``skipped`` and
        ``peak_rss_mib`` (the process's peak resident memory while the stage ran, in MiB; None when
        skipped or where the system cannot tell, see :mod:`portrait3d.memory`).
    """
    with run.lock(wait):
        if clean:
            run.clean_temporaries()
        if stage.check is not None:
            stage.check(run)
        missing = [i for i in stage.inputs if i not in stage.optional and not run.path(i).exists()]
        if missing:
            hint = f"; {stage.needs.format(run=run.root)}" if stage.needs else ""
            raise UserError(f"{run.root}: missing {', '.join(missing)}{hint}")
        key = stage_key(run, stage)
        record = run.record(stage.name)
        reason = None
        if force:
            reason = "--force"
        elif record is None:
            if run.path(".portrait3d", "stages", f"{stage.name}.json").exists():
                reason = "its record cannot be read"
        elif record.key != key:
            reason = "its inputs or options changed"
        else:
            reason = run.damaged_outputs(record)
            if reason is None:
                progress.info(f"[{stage.name}] up to date, skipped")
                return {**(record.info or {}), "seconds": record.seconds, "skipped": True, "peak_rss_mib": None}
        if reason is not None:
            progress.info(f"[{stage.name}] redone: {reason}")
        # The old record stays until the new one replaces it: a run killed in between redoes the
        # stage anyway, since the outputs it rewrote no longer match that record.
        start = time.perf_counter()
        measured = memory.reset_peak()
        with progress.stage(stage.name):
            info = stage.function(run, stage.options) or {}
        seconds = time.perf_counter() - start
        peak = memory.peak_rss_mib() if measured else None
        # What the stage freed stays in the C heap, resident under the next stages of this process, unless
        # handed back (after the proxy stage 120-280 MiB).
        memory.release_freed()
        absent = [o for o in stage.outputs if not run.output_files([o])]
        if absent:
            raise RuntimeError(f"stage {stage.name} did not write {', '.join(absent)}")
        run.mark_done(stage.name, key, stage.outputs, seconds, info)
        return {**info, "seconds": round(seconds, 3), "skipped": False, "peak_rss_mib": peak}


def run_stages(run: Run, stages: Sequence[Stage], force: bool = False, wait: bool = False) -> dict[str, dict]:
    """Run ``stages`` in the list's order (:func:`run_stage` each) under the run's lock.

    A stage marked :attr:`Stage.beside` goes to a second thread (one, its stages in the list's order) and
    the stages after it go on; a stage that reads what such a stage writes waits for it first. Every
    stage has ended when this returns or raises; the first failure is raised once the other thread's
    stage has ended too (an interrupt stops it at its next progress step).

    Returns:
        Each stage's information (:func:`run_stage`) by stage name, in the list's order.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    results: dict[str, dict] = {}
    beside: list[tuple[Stage, Future]] = []

    def finish(done: list[tuple[Stage, Future]]) -> None:
        for other, future in done:
            results[other.name] = future.result()
            beside.remove((other, future))

    with run.lock(wait), ThreadPoolExecutor(max_workers=1, thread_name_prefix="beside") as side:
        run.clean_temporaries()  # once: from here on a stage's temporaries may be another thread's work
        try:
            for stage in stages:
                finish([(other, future) for other, future in beside if _reads_output_of(stage, other)])
                if stage.beside:
                    beside.append((stage, side.submit(_run_beside, run, stage, force, wait)))
                else:
                    results[stage.name] = run_stage(run, stage, force, wait, clean=False)
            finish(list(beside))
        except BaseException:
            for _, future in beside:
                future.cancel()  # the ones not started; the executor waits for the one running
            raise
    return {stage.name: results[stage.name] for stage in stages}


def _run_beside(run: Run, stage: Stage, force: bool, wait: bool) -> dict:
    """:func:`run_stage` on the second thread: one core's worth of threads (the other stages have the rest)."""
    from portrait3d.parallel import limited_threads

    with limited_threads(1):
        return run_stage(run, stage, force, wait, clean=False)


def _reads_output_of(stage: Stage, other: Stage) -> bool:
    """Whether ``stage`` reads a file or folder that ``other`` writes (either path inside the other; a
    pattern stands for its whole folder)."""
    written = [Path(o).parent if any(c in o for c in "*?[") else Path(o) for o in other.outputs]
    for name in stage.inputs:
        read = Path(name)
        if any(read == w or w in read.parents or read in w.parents for w in written):
            return True
    return False


@contextlib.contextmanager
def open_run(root: str | Path, create: bool = True, wait: bool = False) -> Iterator[Run]:
    """Open (or create) a run folder and hold its lock; a killed run's temporaries are removed.

    A folder this call created is removed again when the work fails before any stage
    finished (a bad photo leaves nothing behind).
    """
    root = Path(root)
    created = create and not root.exists()
    run = Run(root, create=create)
    if not os.access(run.root, os.W_OK):
        raise UserError(f"{run.root}: the output folder is not writable")
    try:
        with run.lock(wait):
            run.clean_temporaries()
            yield run
    except BaseException:
        if created and not any(run.path(".portrait3d", "stages").glob("*.json")):
            shutil.rmtree(run.root, ignore_errors=True)
        raise


def run_settings(root: str | Path) -> dict:
    """The settings make-asset recorded in a run (``preset``, ``views``, ``seed``, ``generator``); {} if none."""
    root = Path(root)
    return Run(root, create=False).settings() if (root / ".portrait3d").is_dir() else {}
