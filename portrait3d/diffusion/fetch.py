"""The released DiffPortrait360 checkpoints from the Hugging Face Hub, verified, into a converted weights folder.

This is the only code in portrait3d that reaches the network, and only ``portrait3d fetch-weights`` runs it::

    Hub gym890/diffportrait360 --hf_hub_download--> HF cache --verify--> convert_weights --> WEIGHTS/ (+ source.json)

Downloads go through ``huggingface_hub`` (``hf_hub_download``): files land in the Hugging Face cache (``HF_HOME``,
``HF_HUB_CACHE`` or ``--cache-dir``), a finished file is never downloaded twice, a dropped connection resumes, and
``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE`` work as the library documents. Verification: online, each
file's size and SHA-256 against what the Hub publishes (``model_info(files_metadata=True)``: LFS files carry
``lfs.sha256``); offline, against the hash the cache itself records (an LFS blob is named by its SHA-256, a git
blob by its git id), or the record says it could not be checked.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from portrait3d import progress
from portrait3d.errors import UserError

if TYPE_CHECKING:
    from portrait3d.diffusion.ldm_keys import CheckpointLayout

REPO_ID = "gym890/diffportrait360"
"""The Hub repository of the release (its README links it)."""
ORBIT_FILE = "model_state-340000.th"
BACK_VIEW_FILE = "back_head-230000.th"
SOURCE_FILE = "source.json"
"""Written into the weights folder: where the checkpoints came from and how they were verified."""
COMMAND = "portrait3d fetch-weights"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_SHA1 = re.compile(r"[0-9a-f]{40}")
_CHUNK = 16 * 2**20


@dataclass(frozen=True)
class FetchOptions:
    """Options of :func:`fetch_weights` (the ``fetch-weights`` flags)."""

    out: str
    """Weights folder to write (the ``--weights`` of make-asset)."""
    revision: str = "main"
    """Branch, tag or commit of the Hub repository."""
    cache_dir: str | None = None
    """Hugging Face cache folder (default: the library's, from ``HF_HUB_CACHE`` / ``HF_HOME``)."""
    repo_id: str = REPO_ID
    """Hub repository that holds the two checkpoints."""
    layout: CheckpointLayout | None = None
    """Model sizes of the checkpoints (None: the released SD 1.5 sizes; tests use tiny ones)."""
    dtype: str = "keep"
    """Storage dtype of the converted weights: ``keep``, ``float16`` or ``float32``."""
    force: bool = False
    """Download, verify and convert again even when ``out`` is a complete weights folder."""


@dataclass(frozen=True)
class Published:
    """What the Hub publishes about one file at one commit."""

    size: int | None
    sha256: str | None


@dataclass(frozen=True)
class Fetched:
    """One checkpoint in the cache, verified."""

    name: str
    path: Path
    size: int
    sha256: str | None
    verified: str
    """How it was checked, in words (goes into ``source.json`` and the log)."""


# --- the weights folder ------------------------------------------------------------------------------------------
def folder_state(out: Path) -> str:
    """``new`` (absent or empty), ``complete``, ``damaged`` (a weights folder that is not whole) or ``foreign``."""
    from portrait3d.diffusion.stages import BACK_VIEW_SUBFOLDER, check_weights

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return "new"
    try:
        check_weights(out, out, "Portrait360Pipeline")
        check_weights(out / BACK_VIEW_SUBFOLDER, out, "BackViewPipeline")
        return "complete"
    except UserError:
        return "damaged" if is_weights_folder(out) else "foreign"


OWNER_MARKER = ".portrait3d-folder"
"""The file convert-weights leaves in a folder it wrote (issue 21: ``{"made_by": "convert-weights"}``)."""


def is_weights_folder(folder: Path) -> bool:
    """Whether ``folder`` was written by portrait3d (convert-weights or fetch-weights): only such a one is replaced.

    Its owner marker says so; folders from before the marker are known by this command's ``source.json`` or by the
    ``model_index.json`` of a Portrait360Pipeline.
    """
    import json

    for name in (OWNER_MARKER, SOURCE_FILE, "model_index.json"):
        try:
            document = json.loads((folder / name).read_bytes().decode("utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(document, dict):
            continue
        if name == OWNER_MARKER:
            return document.get("made_by") in ("convert-weights", "fetch-weights")
        if name == SOURCE_FILE or document.get("_class_name") == "Portrait360Pipeline":
            return True
    return False


def recorded_source(out: Path) -> str:
    """``repo@commit`` from the folder's ``source.json``, or an empty string."""
    import json

    try:
        source = json.loads((out / SOURCE_FILE).read_text())
        return f" (from {source['repo']}@{source['commit'][:12]})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


# --- the Hub -------------------------------------------------------------------------------------------------------
def cache_folder(options: FetchOptions) -> Path:
    from huggingface_hub import constants

    return Path(options.cache_dir or constants.HF_HUB_CACHE).expanduser()


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _network_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the Hub cannot be reached: offline mode, no route, DNS, refused, timed out."""
    import importlib

    from huggingface_hub.errors import OfflineModeIsEnabled

    errors: list[type[BaseException]] = [OfflineModeIsEnabled, ConnectionError, TimeoutError]
    # The HTTP client depends on the huggingface_hub version: httpx2 (2.x), httpx (1.x), requests (0.x).
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError")):
        with contextlib.suppress(ImportError, AttributeError):
            errors.append(getattr(importlib.import_module(module), name))
    return tuple(errors)


def _not_found(exc: Exception, options: FetchOptions, name: str | None = None) -> UserError | None:
    """A one-line error for a missing repository, revision or file; None for other errors."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{_endpoint()}/{options.repo_id}"
    if isinstance(exc, GatedRepoError):
        return UserError(f"{where}: the repository is gated; accept its terms on the Hub and set HF_TOKEN")
    if isinstance(exc, RepositoryNotFoundError):
        return UserError(f"{where}: repository not found (or private: set HF_TOKEN to a token that can read it)")
    if isinstance(exc, RevisionNotFoundError):
        return UserError(f"--revision {options.revision}: not found in {where}")
    if isinstance(exc, EntryNotFoundError) and not isinstance(exc, LocalEntryNotFoundError):
        return UserError(f"{where}: has no file {name} at revision {options.revision}")
    return None


def published_files(options: FetchOptions) -> tuple[str, dict[str, Published]]:
    """(commit, name -> size and SHA-256) of the two checkpoints at ``options.revision``, asked of the Hub."""
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(options.repo_id, revision=options.revision, files_metadata=True)
    except Exception as exc:  # noqa: BLE001 - mapped below, network errors pass through
        error = _not_found(exc, options)
        if error is not None:
            raise error from exc
        raise
    files = {s.rfilename: s for s in info.siblings or []}
    published = {}
    for name in (ORBIT_FILE, BACK_VIEW_FILE):
        if name not in files:
            raise UserError(f"{_endpoint()}/{options.repo_id}: has no file {name} at revision {options.revision}")
        sibling = files[name]
        lfs = sibling.lfs
        sha256 = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) if lfs else None
        published[name] = Published(size=sibling.size, sha256=sha256)
    return info.sha, published


def _download(name: str, revision: str, options: FetchOptions, local_only: bool, force: bool = False) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(
            options.repo_id,
            name,
            revision=revision,
            cache_dir=options.cache_dir,
            local_files_only=local_only,
            force_download=force,
        )
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise UserError(f"{cache_folder(options)}: no space left on the device while downloading {name}") from exc
        error = _not_found(exc, options, name)
        if error is not None:
            raise error from exc
        raise
    return Path(path)


def check_space(needed: int, folder: Path, what: str) -> None:
    """Fail with one line if the file system of ``folder`` (or its first existing parent) has under ``needed`` bytes."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise UserError(
            f"{folder}: not enough disk space for {what}: {needed / 2**30:.1f} GiB needed, {free / 2**30:.1f} GiB free"
        )


# --- verification --------------------------------------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_id(path: Path) -> str:
    """The git object id of the file's content (``sha1("blob SIZE\\0" + content)``), as the cache names small blobs."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())  # noqa: S324 - git's id, not security
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, name: str, published: Published | None) -> tuple[str | None, str]:
    """Check one cached file; (its SHA-256 when computed, how it was checked). Raises a one-line UserError.

    Args:
        path: the file in the cache (a snapshot link to its blob).
        name: its name in the repository.
        published: what the Hub publishes (online), or None (offline: the cache's own record is used).
    """
    size = path.stat().st_size
    if published is not None:
        if published.size is not None and size != published.size:
            raise UserError(
                f"{path}: {name} has {size} bytes, the Hub publishes {published.size} (truncated or corrupt)"
            )
        if not published.sha256:
            return None, "size as published (the Hub publishes no SHA-256 for it)"
        progress.info(f"checking the SHA-256 of {name} ({size / 2**30:.2f} GiB)")
        digest = sha256_of(path)
        if digest != published.sha256:
            raise UserError(
                f"{path}: {name}'s SHA-256 {digest[:16]}... is not the published {published.sha256[:16]}..."
            )
        return digest, "size and SHA-256 as the Hub publishes them"
    blob = Path(os.path.realpath(path)).name
    if _SHA256.fullmatch(blob):
        progress.info(f"checking the SHA-256 of {name} ({size / 2**30:.2f} GiB) against the cache's record")
        digest = sha256_of(path)
        if digest != blob:
            raise UserError(
                f"{path}: {name}'s SHA-256 {digest[:16]}... is not the {blob[:16]}... the cache recorded (a corrupt "
                f"or truncated file); run `{COMMAND}` with network access to download it again"
            )
        return digest, "SHA-256 as the Hugging Face cache recorded it (offline: the Hub was not asked)"
    if _GIT_SHA1.fullmatch(blob):
        if git_blob_id(path) != blob:
            raise UserError(
                f"{path}: {name} does not match the git id {blob[:16]}... the cache recorded (a corrupt file); "
                f"run `{COMMAND}` with network access to download it again"
            )
        return None, "git blob id as the Hugging Face cache recorded it (offline: the Hub was not asked)"
    return None, "not checked: offline, and the cache records no hash for it"


# --- the whole command ---------------------------------------------------------------------------------------------
def fetch_checkpoints(options: FetchOptions) -> tuple[str, list[Fetched], str]:
    """Both checkpoints in the cache, verified: (commit or revision, files, why the Hub was not asked or "")."""
    from huggingface_hub import constants

    offline_reason = "HF_HUB_OFFLINE is set" if constants.is_offline_mode() else ""
    published: dict[str, Published] | None = None
    revision = options.revision
    if not offline_reason:
        try:
            revision, published = published_files(options)
        except _network_errors() as exc:
            offline_reason = f"cannot reach {_endpoint()}: {type(exc).__name__}: {str(exc).strip()[:120]}"
            progress.info(f"{offline_reason}; looking in the Hugging Face cache")
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - a Hub answer that is an error (5xx): the cache may still help
            offline_reason = f"the Hub answered {type(exc).__name__}: {str(exc).strip().splitlines()[0][:120]}"
            progress.info(f"{offline_reason}; looking in the Hugging Face cache")
    if published is not None:
        missing = sum(p.size or 0 for n, p in published.items() if not _cached(n, revision, options))
        if missing:  # what is not in the cache yet
            check_space(missing, cache_folder(options), "the download")
    fetched = []
    for name in (ORBIT_FILE, BACK_VIEW_FILE):
        try:
            path = _download(name, revision, options, local_only=published is None)
        except _network_errors() + (FileNotFoundError,) as exc:
            why = offline_reason or f"{type(exc).__name__}: {str(exc).strip()[:120]}"
            raise UserError(
                f"`{COMMAND}` needs network access to download {name} from {_endpoint()}/{options.repo_id} "
                f"({why}), and it is not in the Hugging Face cache {cache_folder(options)}"
            ) from exc
        try:
            digest, how = verify(path, name, published[name] if published else None)
        except UserError:
            if published is None:
                raise
            progress.info(f"{name} in the cache does not match the Hub; downloading it again")
            path = _download(name, revision, options, local_only=False, force=True)
            digest, how = verify(path, name, published[name])
        progress.info(f"{name}: {how}")
        fetched.append(Fetched(name, path, path.stat().st_size, digest, how))
        if published is None and _GIT_SHA1.fullmatch(path.parent.name):
            revision = path.parent.name  # the cache's snapshot folder is named by the commit
    return revision, fetched, offline_reason


def _cached(name: str, revision: str, options: FetchOptions) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(options.repo_id, name, cache_dir=options.cache_dir, revision=revision)
    return isinstance(found, str)


def fetch_weights(options: FetchOptions) -> Path:
    """Download (or find in the cache), verify and convert the released checkpoints into ``options.out``.

    A complete weights folder is left alone (unless ``force``); a folder that portrait3d did not write is never
    replaced; the new folder appears whole or not at all, with ``source.json`` saying what went into it.

    Returns:
        ``options.out`` as a Path.
    """
    from portrait3d.diffusion.convert import ConvertOptions, convert_weights
    from portrait3d.run import atomic_write_json

    out = Path(options.out)
    state = folder_state(out)
    if state == "complete" and not options.force:
        progress.info(f"{out} is already a complete weights folder{recorded_source(out)}; nothing to do")
        return out
    if state == "foreign":
        raise UserError(
            f"--out {out}: folder is not empty and is not a portrait3d weights folder; "
            "choose another --out (nothing was changed)"
        )
    if state == "damaged" and not options.force:
        raise UserError(f"--out {out}: an incomplete weights folder; pass --force to replace it")
    commit, files, offline_reason = fetch_checkpoints(options)
    check_space(sum(f.size for f in files), out.parent if not out.exists() else out, "the converted weights")
    by_name = {f.name: f for f in files}
    convert_options = ConvertOptions(dtype=options.dtype)
    if options.layout is not None:
        convert_options = ConvertOptions(layout=options.layout, dtype=options.dtype)
    try:
        convert_weights(by_name[ORBIT_FILE].path, by_name[BACK_VIEW_FILE].path, out, convert_options)
        atomic_write_json(
            out / SOURCE_FILE,
            {
                "repo": options.repo_id,
                "endpoint": _endpoint(),
                "revision": options.revision,
                "commit": commit,
                "hub_asked": not offline_reason,
                "files": {f.name: {"size": f.size, "sha256": f.sha256, "verified": f.verified} for f in files},
                "dtype": options.dtype,
            },
        )
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise UserError(f"{out}: no space left on the device while writing the converted weights") from exc
        raise
    return out
