"""``portrait3d batch``: many photos, one run folder each, on this machine or on a Ray cluster.

The batch adds no stage logic: each photo is one call of
:func:`portrait3d.make_asset.make_asset` in its own worker process, on its own run folder
``DIR/<name>/``, so each photo inherits make-asset's records, resuming and locking. The
driver (this process) plans the batch, hands photos to an engine and keeps the summary
``DIR/batch.json`` / ``DIR/batch.csv``; each photo's output goes to ``DIR/logs/<name>.log``.

1. Collect the photos and give each a run folder name (kept across reruns).
2. Skip the photos whose runs an earlier batch finished with the same options.
3. Run the others: ``local`` (spawned processes) or ``ray`` (one Ray task per photo).
4. The summary is rewritten as photos start and end; the result is its final content.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from portrait3d import progress
from portrait3d.batch.plan import RESERVED_NAMES, collect_photos, file_digest, finished_run, run_names
from portrait3d.batch.summary import SUMMARY_CSV, SUMMARY_JSON, Summary
from portrait3d.batch.worker import PhotoTask
from portrait3d.errors import UserError
from portrait3d.run import MARKER_DIR, writable_folder

ENGINES = ("local", "ray")
LOCK_NAME = ".batch.lock"
LOG_DIR = "logs"


@dataclass
class BatchOptions:
    """Options of ``portrait3d batch`` besides the make-asset ones."""

    engine: str = "local"
    """``local`` (processes on this machine) or ``ray`` (one Ray task per photo)."""
    workers: int | None = None
    """Photos at a time (local default: 1; ray default: as many as the cluster's GPUs or CPUs hold)."""
    ray_address: str | None = None
    """Address of a running Ray cluster to join (default: start a local one on 127.0.0.1)."""
    retries: int = 2
    """Times a photo runs again when its worker process dies; the retry resumes from the run folder."""
    cpus_per_photo: int = 1
    """CPUs a Ray task reserves when it needs no GPU (and its torch threads)."""


def _open_batch_folder(root: Path) -> dict:
    """Create or reopen the batch folder; the previous summary (or {}). Refuses folders that are not batches."""
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: exists and is not a folder")
    if (root / MARKER_DIR).is_dir():
        raise UserError(f"{root}: is a make-asset run folder, not a batch folder; choose another --out")
    summary = root / SUMMARY_JSON
    if root.is_dir() and not summary.exists() and any(p.name != LOCK_NAME for p in root.iterdir()):
        raise UserError(
            f"{root}: folder is not empty and is not a portrait3d batch; choose another --out (nothing was changed)"
        )
    writable_folder(root, "batch folder")
    if not summary.exists():
        return {}
    try:
        previous = json.loads(summary.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{summary}: cannot read the previous summary; move it away to start afresh") from exc
    return previous if isinstance(previous, dict) else {}


def _lock(root: Path, wait: bool = False):
    """The batch folder's lock; with ``wait`` (``--wait``), queue behind the batch that holds it."""
    from filelock import FileLock, Timeout

    lock = FileLock(root / LOCK_NAME, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout as exc:
        if not wait:
            raise UserError(
                f"{root}: another portrait3d batch is running in this folder ({root / LOCK_NAME}); "
                "wait for it to finish, or pass --wait to queue behind it"
            ) from exc
        progress.info(f"[batch] {root}: waiting for the batch running in this folder to finish")
        lock.acquire()
    return lock


def _known_runs(root: Path, previous: dict, photos: list[Path]) -> tuple[dict[str, str], list[str]]:
    """Run names of earlier batches (name -> photo) and the other names already used in the folder."""
    known = {str(k): str(v) for k, v in (previous.get("runs") or {}).items()}
    ours = {str(p) for p in photos}
    taken = []
    skip = {SUMMARY_JSON, SUMMARY_CSV, LOCK_NAME, *RESERVED_NAMES}
    for entry in sorted(root.iterdir()):
        if entry.name in known or entry.name in skip or entry.name.startswith(".tmp-"):
            continue
        # A run folder whose summary was lost still says which photo it holds.
        try:
            photo = json.loads((entry / "report.json").read_text()).get("photo")
        except (OSError, ValueError, AttributeError):
            photo = None
        if photo in ours:
            known[entry.name] = photo
        else:
            taken.append(entry.name)
    return known, taken


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _engine(batch: BatchOptions, options):
    if batch.engine == "ray":
        from portrait3d.batch.ray_engine import RayEngine

        return RayEngine(batch.ray_address, batch.workers, batch.retries, batch.cpus_per_photo)
    from portrait3d.batch.local import LocalEngine

    if options.generator == "diffusion":
        from portrait3d.make_asset import check_diffusion_ready

        check_diffusion_ready(options)
    return LocalEngine(batch.workers or 1, batch.retries)


def run_batch(inputs: list[str | Path], out: str | Path, options, batch: BatchOptions | None = None) -> dict:
    """Run make-asset on every photo of ``inputs`` (files and folders) into run folders under ``out``.

    Args:
        inputs: photo files and folders of photos.
        out: the batch folder (created; an earlier batch there is resumed).
        options: the :class:`portrait3d.make_asset.MakeAssetOptions` of every photo.
        batch: engine, workers, retries.
    Returns:
        The content of ``out/batch.json``: ``counts`` (ok, failed, running, pending) and one
        row per photo.
    """
    batch = batch or BatchOptions()
    # 0. Checks that need no file written.
    if batch.engine not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)}, not {batch.engine!r}")
    if batch.workers is not None and batch.workers < 1:
        raise UserError(f"--workers must be at least 1, got {batch.workers}")
    if batch.retries < 0 or batch.cpus_per_photo < 1:
        raise UserError("--retries must be 0 or more and --cpus-per-photo at least 1")
    if batch.ray_address and batch.engine != "ray":
        raise UserError("--ray-address needs --engine ray")
    opts = dataclasses.asdict(options)

    # 1. The photos and their run folders.
    photos = collect_photos(inputs)
    root = Path(out).expanduser().absolute()
    previous = _open_batch_folder(root)
    engine = _engine(batch, options)
    lock = _lock(root, getattr(options, "wait", False))
    try:
        known, taken = _known_runs(root, previous, photos)
        names = run_names(photos, known, taken)
        before = {row.get("photo"): row for row in previous.get("photos") or [] if isinstance(row, dict)}

        # 2. Finished runs are skipped; missing photos fail without a worker.
        rows, tasks = [], []
        workers = batch.workers or 1
        for photo in photos:
            name = names[str(photo)]
            digest = file_digest(photo)
            row = {
                "photo": str(photo),
                "run": name,
                "status": "pending",
                "seconds": None,
                "glb": None,
                "error": None,
                "skipped": False,
                "attempts": 0,
                "worker": None,
                "sha256": digest,
            }
            prev = before.get(str(photo))
            if finished_run(root / name, opts, prev, digest):
                row.update(
                    {k: prev.get(k) for k in ("seconds", "glb", "worker", "attempts")}, status="ok", skipped=True
                )
            elif not photo.is_file():
                row.update(status="failed", error=f"{photo}: {'is a folder' if photo.is_dir() else 'no such file'}")
            else:
                tasks.append(
                    PhotoTask(
                        name=name,
                        photo=str(photo),
                        run=str(root / name),
                        log=str(root / LOG_DIR / f"{name}.log"),
                        options=opts,
                        verbosity=progress.verbosity(),
                        threads=max(1, _cores() // workers),
                    )
                )
            rows.append(row)
        meta = {
            "out": str(root),
            "engine": batch.engine,
            "batch_options": dataclasses.asdict(batch),
            "make_asset_options": opts,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        summary = Summary(root, rows, meta, {**known, **{n: p for p, n in names.items()}})
        summary.write()
        skipped = sum(row["skipped"] for row in rows)
        progress.info(
            f"[batch] {len(rows)} photos: {skipped} finished earlier (skipped), {len(tasks)} to run "
            f"with the {batch.engine} engine; summary in {root / SUMMARY_CSV}, logs in {root / LOG_DIR}"
        )

        # 3. The engine runs the rest; the summary follows every start and end.
        try:
            if tasks:
                engine.run(tasks, summary)
        except BaseException:
            summary.stopped()
            raise
        return summary.as_dict() | {"final_line": summary.final_line()}
    finally:
        lock.release()
