"""What a batch will do: which photos, which run folder each, and which runs are already finished."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from portrait3d.errors import UserError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
"""Files a folder given to the batch contributes (a file named on the command line is always taken)."""
RESERVED_NAMES = ("logs",)
"""Names in the batch folder that are not run folders."""


def collect_photos(inputs: Iterable[str | Path]) -> list[Path]:
    """The photos named by files and folders (a folder: its photo files, not recursive), absolute, in order.

    A missing file is kept (it fails alone, in the summary); a folder without photos is an error.
    """
    photos: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser().absolute()
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith(".")
            )
            if not found:
                raise UserError(f"{path}: no photos in this folder ({', '.join(PHOTO_SUFFIXES)})")
            photos.extend(p.resolve() for p in found)
        else:
            photos.append(path.resolve() if path.exists() else path)
    unique = list(dict.fromkeys(photos))  # a photo named twice is one photo
    if not unique:
        raise UserError("no photos given")
    return unique


def _clean(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-") or "photo"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def run_names(photos: Iterable[Path], known: dict[str, str] | None = None, taken: Iterable[str] = ()) -> dict[str, str]:
    """A run folder name for each photo: its stem, with a short hash of its path where stems clash.

    Deterministic: the name depends on the photo's path and the set of stems only, never on the
    order. ``known`` (run name -> photo) holds the names of earlier batches in the same folder,
    which a photo keeps; ``taken`` are names already used by something else.

    Returns:
        photo path (str) -> run folder name.
    """
    known = known or {}
    by_photo = {photo: name for name, photo in known.items()}
    used = {n.casefold() for n in (*known, *taken, *RESERVED_NAMES)}
    photos = [str(p) for p in photos]
    new = [p for p in photos if p not in by_photo]
    stems = Counter(_clean(Path(p).stem).casefold() for p in new)
    names = {p: by_photo[p] for p in photos if p in by_photo}
    for photo in sorted(new):
        base = _clean(Path(photo).stem)
        name = base
        if stems[base.casefold()] > 1 or base.casefold() in used:
            name = f"{base}-{_short_hash(photo)}"
            salt = 0
            while name.casefold() in used:  # a hash clash: vanishingly rare, still deterministic
                salt += 1
                name = f"{base}-{_short_hash(f'{photo}#{salt}')}"
        used.add(name.casefold())
        names[photo] = name
    return {p: names[p] for p in photos}


def file_digest(path: Path) -> str | None:
    """SHA-256 of a file's bytes, or None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def finished_run(run: Path, options: dict, previous: dict | None, digest: str | None) -> bool:
    """True when ``run`` is a finished run of this photo with these options, with every file it reported.

    ``previous`` is the photo's row in the last summary (status ``ok``, the same photo digest);
    the run's ``report.json`` must list the same make-asset options and every file it lists must
    still be there with its size. Anything else is left to make-asset, which resumes or redoes
    only what is needed.
    """
    if options.get("force") or not previous or previous.get("status") != "ok" or digest is None:
        return False
    if previous.get("sha256") != digest:
        return False
    try:
        report = json.loads((run / "report.json").read_text())
    except (OSError, ValueError):
        return False

    def comparable(opts: dict) -> dict:
        return {k: v for k, v in opts.items() if k != "force"}

    if not isinstance(report, dict) or comparable(report.get("options") or {}) != comparable(options):
        return False
    files = report.get("files")
    if not isinstance(files, dict) or "mesh/head.glb" not in files:
        return False
    for rel, size in files.items():
        if rel == "report.json":  # rewritten after its own listing
            continue
        path = run / rel
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True
