"""The run folder: the unit of work.

Every stage reads the files of earlier stages from the run folder and writes
its own there. A stage's record (``.portrait3d/stages/<stage>.json``) holds the
hash of its inputs and options and the size and SHA-256 of every file it wrote;
a stage whose record matches and whose files are intact is skipped, so an
interrupted run resumes and a damaged one heals (:mod:`portrait3d.runner` runs
the stages). All writes are atomic (a temporary name in the same folder, then
``os.replace``), so a file either exists whole or not at all, whatever moment
the process dies. One process at a time writes a run (:meth:`Run.lock`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
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


# --- folders the project may replace ----------------------------------------------
OWNED_MARKER = ".portrait3d-folder"
"""File in every folder a command writes whole (weights, training subjects): who made it.

A command replaces an existing folder only when this file says the same command made it;
any other non-empty folder is refused, so that no folder the project did not create is deleted.
"""


def mark_owned(folder: str | Path, made_by: str) -> None:
    """Write the ownership marker into ``folder`` (called on the temporary folder, before it is renamed)."""
    atomic_write_json(Path(folder) / OWNED_MARKER, {"made_by": made_by})


def check_replaceable(path: str | Path, made_by: str, force: bool = True, flag: str = "--out") -> None:
    """Refuse, in one line, to replace ``path`` unless it is absent, empty, or ``made_by``'s own folder.

    Args:
        path: the folder a command is about to replace.
        made_by: the command that writes it (``"convert-weights"``), as in its marker.
        force: whether the command was told to replace its own earlier output (``--force``).
        flag: the option that named ``path``, for the message.
    """
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise UserError(f"{flag} {path}: exists and is not a folder (nothing was changed)")
    if not path.exists() or not any(path.iterdir()):
        return
    try:
        owner = json.loads((path / OWNED_MARKER).read_text()).get("made_by")
    except (OSError, ValueError, AttributeError):
        owner = None
    if owner != made_by:
        raise UserError(
            f"{flag} {path}: folder is not empty and was not written by portrait3d {made_by}; "
            f"choose another {flag} (nothing was changed)"
        )
    if not force:
        raise UserError(f"{flag} {path}: holds an earlier {made_by} output; pass --force to replace it")


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


def writable_folder(path: str | Path, what: str) -> Path:
    """Create the folder ``path`` (and its parents) and check it is writable; ``what`` names it in the error."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path}: cannot create the {what} ({exc.strerror})") from exc
    if not os.access(path, os.W_OK):
        raise UserError(f"{path}: the {what} is not writable")
    return path


def read_json(path: str | Path) -> Any:
    """The JSON document in ``path``, or a one-line :class:`UserError` naming the file.

    Bytes that are not UTF-8 and text that is not JSON are both refused here, so that no
    caller meets a ``UnicodeDecodeError``.
    """
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"{path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); the file is damaged") from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}); the file is damaged") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def file_digest(path: str | Path) -> dict:
    """``{"size": bytes, "sha256": hex}`` of one file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return {"size": Path(path).stat().st_size, "sha256": digest.hexdigest()}


# --- the run folder ----------------------------------------------------------
RECORD_VERSION = 2
LOCK_FILE = "lock"
LOCK_PID_FILE = "lock.pid"
SETTINGS_FILE = "run.json"


@dataclass
class StageRecord:
    """What a finished stage leaves behind: the key of its inputs and the digests of its outputs.

    Attributes:
        stage: the stage's name.
        key: hash of the stage's options and input files.
        outputs: run-relative file -> ``{"size", "sha256"}`` of every file the stage wrote.
        seconds: how long the stage ran.
        info: the stage's information for the report.
    """

    stage: str
    key: str
    outputs: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0
    info: dict | None = None
    version: int = RECORD_VERSION


# Locks held by this process, by lock file: a stage run inside make-asset takes the lock make-asset holds.
_held: dict[str, list] = {}
_held_guard = threading.Lock()


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

    # --- one writer at a time ---------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, wait: bool = False) -> Iterator[None]:
        """Hold the run's write lock: one process writes a run at a time.

        The lock is an OS file lock (``filelock``, ``flock`` on Unix), so it dies with its
        process: a run killed with ``kill -9`` never blocks the next one. The holder's PID
        is written beside it, for the message the second process prints. The lock is
        re-entrant within a process (make-asset holds it while each stage takes it again).

        Args:
            wait: wait for the holder to finish instead of failing.
        Raises:
            UserError: another process holds the lock (and ``wait`` is false).
        """
        from filelock import FileLock, Timeout

        marker = self.path(MARKER_DIR)
        key = str(marker.resolve() / LOCK_FILE)
        with _held_guard:
            entry = _held.get(key)
            if entry is not None:
                entry[1] += 1
        if entry is not None:
            try:
                yield
            finally:
                with _held_guard:
                    entry[1] -= 1
            return
        file_lock = FileLock(key, timeout=-1 if wait else 0, thread_local=False)
        try:
            if wait:
                holder = self.lock_holder()
                try:
                    file_lock.acquire(timeout=0)
                except Timeout:
                    from portrait3d import progress

                    progress.info(f"{self.root}: waiting for process {holder or '?'} to finish with this run")
                    file_lock.acquire()
            else:
                file_lock.acquire()
        except Timeout as exc:
            holder = self.lock_holder()
            who = f"process {holder}" if holder else "another process"
            raise UserError(
                f"{self.root}: {who} is writing this run; wait for it to finish, or pass --wait to queue behind it"
            ) from exc
        entry = [file_lock, 1]
        with _held_guard:
            _held[key] = entry
        try:
            atomic_write_text(marker / LOCK_PID_FILE, f"{os.getpid()}\n")
            yield
        finally:
            with _held_guard:
                entry[1] -= 1
                done = entry[1] == 0
                if done:
                    del _held[key]
            if done:
                self.path(MARKER_DIR, LOCK_PID_FILE).unlink(missing_ok=True)
                file_lock.release()

    def lock_holder(self) -> int | None:
        """PID of the process that holds (or last held) the lock, when it says so."""
        try:
            return int(self.path(MARKER_DIR, LOCK_PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None

    # --- settings of the whole run ------------------------------------------------------------
    def settings(self) -> dict:
        """What make-asset recorded about the run (``preset``, ``views``, ``seed``, ``generator``); {} if none."""
        path = self.path(MARKER_DIR, SETTINGS_FILE)
        if not path.exists():
            return {}
        data = read_json(path)
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a settings record; the file is damaged")
        return data

    def write_settings(self, settings: dict) -> None:
        """Record the run's settings (read back by the subcommands as their defaults)."""
        atomic_write_json(self.path(MARKER_DIR, SETTINGS_FILE), settings)

    # --- stage records --------------------------------------------------------------------
    def _record_path(self, stage: str) -> Path:
        return self.path(MARKER_DIR, "stages", f"{stage}.json")

    def record(self, stage: str) -> StageRecord | None:
        """The stage's record, or None if it never finished or its record cannot be read (any bytes)."""
        try:
            data = json.loads(self._record_path(stage).read_bytes().decode("utf-8"))
            record = StageRecord(**data)
        except (OSError, ValueError, TypeError):  # missing, not UTF-8, not JSON, not a record
            return None
        if (
            record.version != RECORD_VERSION
            or not isinstance(record.key, str)
            or not isinstance(record.outputs, dict)
            or not all(isinstance(d, dict) and {"size", "sha256"} <= set(d) for d in record.outputs.values())
        ):
            return None
        return record

    def damaged_outputs(self, record: StageRecord) -> str | None:
        """Why the recorded outputs are no longer what the stage wrote (None when intact)."""
        for rel, expected in record.outputs.items():
            path = self.path(rel)
            if not path.is_file():
                return f"{rel} is missing"
            size = path.stat().st_size
            if size != expected["size"]:
                how = "truncated" if size < expected["size"] else "changed"
                return f"{rel} is {how} ({size} bytes, was {expected['size']})"
            if file_digest(path)["sha256"] != expected["sha256"]:
                return f"{rel} changed"
        return None

    def output_files(self, outputs: Iterable[str]) -> dict[str, Path]:
        """Run-relative name -> path of every file under the given outputs (files, folders or glob patterns)."""
        files: dict[str, Path] = {}
        for out in outputs:
            matches = sorted(self.root.glob(out)) if any(c in out for c in "*?[") else [self.path(out)]
            for match in matches:
                found = sorted(f for f in match.rglob("*") if f.is_file()) if match.is_dir() else [match]
                for f in found:
                    if f.is_file() and not f.name.startswith(_TMP_PREFIX):
                        files[str(f.relative_to(self.root))] = f
        return files

    def mark_done(
        self, stage: str, key: str, outputs: Iterable[str], seconds: float = 0.0, info: dict | None = None
    ) -> None:
        """Record that ``stage`` finished, with the digests of its output files (written last, atomically)."""
        digests = {rel: file_digest(path) for rel, path in self.output_files(outputs).items()}
        rec = StageRecord(stage, key, digests, round(seconds, 3), info)
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
