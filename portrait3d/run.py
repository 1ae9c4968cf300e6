"""The run folder: the unit of work.

Every stage reads the files of earlier stages from the run folder and writes
its own there. A stage's record (``.portrait3d/stages/<stage>.json``) holds the
hash of its inputs and options and the list of files it wrote; a stage whose
record matches is skipped, so an interrupted run resumes. All writes are atomic
(a temporary name in the same folder, then ``os.replace``), so a file either
exists whole or not at all, whatever moment the process dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portrait3d.errors import UserError

MARKER_DIR = ".portrait3d"
"""Folder inside a run that marks it as a portrait3d run and holds stage records."""
_TMP_PREFIX = ".tmp-"


# --- atomic writes -----------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``.

    A folder of many files (``views/``) appears whole or not at all.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX + path.name + "-", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f"{_TMP_PREFIX}old-{path.name}-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (fsynced before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically."""
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def atomic_save_image(path: str | Path, image: Any) -> None:
    """Save a PIL image or an (H, W[, C]) uint8 array atomically; the format follows the suffix."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format=Image.registered_extensions()[Path(path).suffix.lower()])
    atomic_write_bytes(path, buf.getvalue())


# --- hashing -----------------------------------------------------------------
def hash_files(paths: Iterable[str | Path], root: str | Path | None = None) -> str:
    """SHA-256 over the names (relative to ``root``) and contents of files; folders are walked."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        files.extend(sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p])
    for f in files:
        # Files inside the run are named by their relative path; others (the
        # user's photo) by content alone, so moving them does not redo work.
        name = str(f.relative_to(root)) if root and f.is_relative_to(root) else ""
        digest.update(name.encode())
        digest.update(b"\0")
        if f.exists():
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        else:
            digest.update(b"<missing>")
        digest.update(b"\0")
    return digest.hexdigest()


def hash_options(options: Any) -> str:
    """SHA-256 of JSON-serialisable options (keys sorted)."""
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()


# --- the run folder ----------------------------------------------------------
@dataclass
class StageRecord:
    """What a finished stage leaves behind: the key of its inputs and its outputs."""

    stage: str
    key: str
    outputs: list[str]
    seconds: float = 0.0
    info: dict | None = None


class Run:
    """A run folder. Creating one refuses a non-empty folder that is not a run."""

    def __init__(self, root: str | Path, create: bool = True) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{self.root}: exists and is not a folder")
        if self.root.is_dir() and any(self.root.iterdir()) and not (self.root / MARKER_DIR).is_dir():
            raise UserError(
                f"{self.root}: folder is not empty and is not a portrait3d run; "
                "choose another --out (nothing was changed)"
            )
        if create:
            try:
                (self.root / MARKER_DIR / "stages").mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"{self.root}: cannot create the run folder ({exc.strerror})") from exc
        elif not (self.root / MARKER_DIR).is_dir():
            raise UserError(f"{self.root}: not a portrait3d run folder (run an earlier stage first)")

    def path(self, *parts: str) -> Path:
        """A path inside the run."""
        return self.root.joinpath(*parts)

    def require(self, *relative: str, hint: str = "") -> None:
        """Fail with a one-line message if any of the run's files is missing."""
        missing = [r for r in relative if not self.path(r).exists()]
        if missing:
            extra = f"; {hint}" if hint else ""
            raise UserError(f"{self.root}: missing {', '.join(missing)}{extra}")

    def _record_path(self, stage: str) -> Path:
        return self.path(MARKER_DIR, "stages", f"{stage}.json")

    def record(self, stage: str) -> StageRecord | None:
        """The stage's record, or None if it never finished."""
        try:
            data = json.loads(self._record_path(stage).read_text())
            return StageRecord(**data)
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    def is_done(self, stage: str, key: str) -> bool:
        """True when ``stage`` finished with the same input key and its outputs still exist."""
        rec = self.record(stage)
        return rec is not None and rec.key == key and all(self.path(o).exists() for o in rec.outputs)

    def mark_done(
        self, stage: str, key: str, outputs: Iterable[str], seconds: float = 0.0, info: dict | None = None
    ) -> None:
        """Record that ``stage`` finished (written last, atomically)."""
        rec = StageRecord(stage, key, sorted(str(o) for o in outputs), round(seconds, 3), info)
        atomic_write_json(self._record_path(stage), rec.__dict__)

    def forget(self, stage: str) -> None:
        """Drop a stage's record so that it runs again."""
        self._record_path(stage).unlink(missing_ok=True)

    def clean_temporaries(self) -> None:
        """Remove temporary files left by a killed process."""
        for tmp in self.root.rglob(_TMP_PREFIX + "*"):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def execute(
    run: Run,
    stage: str,
    fn,
    options: Any,
    inputs: Iterable[str],
    outputs: Iterable[str],
    force: bool = False,
) -> dict:
    """Run one stage unless its record says it is done for the same inputs and options.

    Args:
        run: the run folder.
        stage: stage name (``preprocess``, ``proxy``, ...).
        fn: ``fn(run, options) -> dict | None``; writes the stage's outputs
            atomically and returns information for the report.
        options: a dataclass (or JSON-serialisable value) of the stage's options.
        inputs: run-relative files or folders the stage reads (hashed).
        outputs: run-relative files or folders the stage writes (checked).
        force: run even if the record matches.
    Returns:
        The stage's information dict (from the record when skipped), with
        ``skipped`` set.
    """
    import dataclasses
    import time

    from portrait3d import progress

    opts = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else options
    key = hash_options({"options": opts, "inputs": hash_files([run.path(i) for i in inputs], run.root)})
    outputs = list(outputs)
    if not force and run.is_done(stage, key):
        rec = run.record(stage)
        progress.info(f"[{stage}] up to date, skipped")
        return {**(rec.info or {}), "seconds": rec.seconds, "skipped": True}
    run.forget(stage)
    start = time.perf_counter()
    with progress.stage(stage):
        info = fn(run, options) or {}
    seconds = time.perf_counter() - start
    missing = [o for o in outputs if not run.path(o).exists()]
    if missing:
        raise RuntimeError(f"stage {stage} did not write {', '.join(missing)}")
    run.mark_done(stage, key, outputs, seconds, info)
    return {**info, "seconds": round(seconds, 3), "skipped": False}
