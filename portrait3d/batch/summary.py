"""The batch summary: ``DIR/batch.json`` and ``DIR/batch.csv``, rewritten atomically at every change.

Only the driver writes them (engines report to it from their threads, hence the lock); a
progress line over the whole batch goes out through :mod:`portrait3d.progress` at each change.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from pathlib import Path

from portrait3d import progress
from portrait3d.run import atomic_write_json, atomic_write_text

SUMMARY_JSON, SUMMARY_CSV = "batch.json", "batch.csv"
CSV_COLUMNS = ("photo", "run", "status", "seconds", "glb", "error")
STATUSES = ("ok", "failed", "running", "pending")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{seconds / 60:.1f} min"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Summary:
    """The rows of a batch (one per photo) and the files that show them.

    A row: ``photo`` (absolute path), ``run`` (folder name), ``status`` (ok, failed, running,
    pending), ``seconds`` (of the last attempt), ``glb`` (relative to the batch folder),
    ``error`` (one line), ``skipped`` (finished by an earlier batch), ``attempts``, ``worker``
    (host:pid of the last attempt), ``sha256`` (of the photo).
    """

    def __init__(self, root: Path, rows: list[dict], meta: dict, runs: dict[str, str]) -> None:
        self.root = root
        self.rows = {row["run"]: row for row in rows}
        self.meta = meta
        self.runs = runs
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._finished_here = 0

    # --- what the engines call -------------------------------------------------
    def started(self, name: str, worker: str | None = None) -> None:
        """A photo's attempt began (``worker``: host:pid, when known)."""
        with self._lock:
            row = self.rows[name]
            row.update(status="running", error=None, attempts=row.get("attempts", 0) + 1)
            if worker:
                row["worker"] = worker
            self._write()
            progress.info(f"[batch] {name}: started{f' ({worker})' if worker else ''}; {self.progress_line()}")

    def finished(self, name: str, result: dict) -> None:
        """A photo ended: ``result`` from :func:`portrait3d.batch.worker.run_photo` (or the engine's own failure)."""
        with self._lock:
            row = self.rows[name]
            glb = result.get("glb")
            row.update(
                status=result["status"],
                seconds=result.get("seconds"),
                glb=str(Path(glb).relative_to(self.root)) if glb and Path(glb).is_relative_to(self.root) else glb,
                error=result.get("error"),
                skipped=False,
            )
            if result.get("pid"):
                row["worker"] = f"{result.get('host')}:{result['pid']}"
            self._finished_here += 1
            self._write()
            what = f"ok in {_duration(row['seconds'] or 0)}" if row["status"] == "ok" else f"FAILED: {row['error']}"
            progress.info(f"[batch] {name}: {what}; {self.progress_line()}")

    def retrying(self, name: str, reason: str) -> None:
        """A photo's worker died; the engine runs it again (it resumes from its run folder)."""
        with self._lock:
            self.rows[name].update(status="pending", error=reason)
            self._write()
            progress.info(f"[batch] {name}: {reason}; retrying")

    def stopped(self) -> None:
        """The batch was interrupted: running photos go back to pending."""
        with self._lock:
            for row in self.rows.values():
                if row["status"] == "running":
                    row.update(status="pending", error="interrupted")
            self._write()

    # --- figures -----------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """How many photos are in each status."""
        counts = dict.fromkeys(STATUSES, 0)
        for row in self.rows.values():
            counts[row["status"]] += 1
        return counts

    def eta_seconds(self) -> float | None:
        """Time left at this batch's own pace (photos finished here per second), None before the first."""
        counts = self.counts()
        left = counts["pending"] + counts["running"]
        if left == 0:
            return 0.0
        if self._finished_here == 0:
            return None
        return left * (time.monotonic() - self._start) / self._finished_here

    def progress_line(self) -> str:
        """``3/10 done, 1 failed, 2 running, ETA 12 min``."""
        c = self.counts()
        eta = self.eta_seconds()
        eta_text = "ETA after the first photo" if eta is None else f"ETA {_duration(eta)}"
        return f"{c['ok']}/{len(self.rows)} done, {c['failed']} failed, {c['running']} running, {eta_text}"

    def final_line(self) -> str:
        """The batch's last line: how many photos succeeded and failed."""
        c = self.counts()
        line = f"batch: {c['ok']} of {len(self.rows)} photos done, {c['failed']} failed"
        if c["pending"] or c["running"]:
            line += f", {c['pending'] + c['running']} not finished"
        return f"{line} (summary: {self.root / SUMMARY_CSV})"

    # --- files -------------------------------------------------------------------
    def write(self) -> None:
        """Rewrite both summary files (atomically)."""
        with self._lock:
            self._write()

    def as_dict(self) -> dict:
        """The content of ``batch.json``."""
        eta = self.eta_seconds()
        return {
            "portrait3d_batch": 1,
            **self.meta,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "counts": self.counts(),
            "eta_seconds": None if eta is None else round(eta, 1),
            "photos": list(self.rows.values()),
            # Every run folder this batch folder has held, so that a later batch keeps the names.
            "runs": self.runs,
        }

    def _write(self) -> None:
        atomic_write_json(self.root / SUMMARY_JSON, self.as_dict())
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in self.rows.values():
            writer.writerow(["" if row.get(col) is None else row.get(col) for col in CSV_COLUMNS])
        atomic_write_text(self.root / SUMMARY_CSV, buf.getvalue())
