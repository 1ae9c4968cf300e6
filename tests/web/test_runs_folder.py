"""The web app's runs folder (issue #21, items 8 and 9): only real folders are runs, zips never follow
links, Gradio's cache of run zips stays bounded."""

from __future__ import annotations

import json
import zipfile

import pytest

from portrait3d.errors import UserError
from portrait3d.run import MARKER_DIR
from portrait3d.serve import (
    JOB_FILE,
    App,
    ServeOptions,
    list_runs,
    prepare_runs_dir,
    prune_gradio_cache,
    zip_run,
)

JOB = {"generator": "proxy", "preset": "tiny", "views": 8, "seed": 0, "yaw": None, "pitch": None}


def _run(root):
    (root / MARKER_DIR / "stages").mkdir(parents=True)
    (root / JOB_FILE).write_text(json.dumps({"photo": "p.jpg", **JOB}))
    (root / "photo.jpg").write_bytes(b"jpeg")
    (root / "report.json").write_text("{}")
    return root


def test_symlinked_runs_are_not_listed_and_not_resumed(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    _run(runs / "real")
    elsewhere = _run(tmp_path / "elsewhere")
    (runs / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert list_runs(runs) == ["real"]
    app = App(ServeOptions(runs=str(runs)))
    called = []
    monkeypatch.setattr("portrait3d.make_asset.make_asset", lambda *a, **k: called.append(a))
    with pytest.raises(UserError, match="no run named 'linked'"):
        app.resume("linked")
    with pytest.raises(UserError, match="no run named"):
        app.show("linked")
    assert not called and sorted(p.name for p in elsewhere.iterdir()) == sorted(
        [MARKER_DIR, JOB_FILE, "photo.jpg", "report.json"]
    )


def test_zip_never_follows_links(tmp_path):
    run = _run(tmp_path / "runs" / "run")
    secret = tmp_path / "secret.txt"
    secret.write_text("private key")
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "diary.txt").write_text("dear diary")
    (run / "mesh").mkdir()
    (run / "mesh" / "head.glb").write_bytes(b"glb")
    (run / "mesh" / "stolen.txt").symlink_to(secret)
    (run / "private").symlink_to(tmp_path / "private", target_is_directory=True)
    with zipfile.ZipFile(zip_run(run)) as archive:
        names = archive.namelist()
        data = b"".join(archive.read(n) for n in names)
    assert "run/mesh/head.glb" in names and "run/report.json" in names
    assert not any("stolen" in n or "private" in n for n in names), names
    assert b"private key" not in data and b"dear diary" not in data


def test_gradio_cache_of_run_zips_stays_bounded(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    for name in ("GRADIO_TEMP_DIR", "MPLCONFIGDIR", "GRADIO_EXAMPLES_CACHE", "GRADIO_ANALYTICS_ENABLED"):
        monkeypatch.setenv(name, str(tmp_path / name))  # restored afterwards: prepare_runs_dir sets them
    gradio_dir = prepare_runs_dir(runs)  # as serve does before gradio is imported (its hash seed goes there)
    from gradio import processing_utils

    root = _run(runs / "run")
    upload = gradio_dir / "upload-hash"
    upload.mkdir()
    (upload / "photo.jpg").write_bytes(b"an upload")  # not a run zip: left alone
    calls = []

    def fake_make_asset(photo, out, options):  # what a resume of a finished run changes: its report
        calls.append(out)
        (out / "report.json").write_text(json.dumps({"resumed": len(calls)}))
        return {"seconds_total": 0.0}

    monkeypatch.setattr("portrait3d.make_asset.make_asset", fake_make_asset)
    app = App(ServeOptions(runs=str(runs)))
    for _ in range(5):
        _status, _sheet, _turntable, _glb, downloads, _splat = app.resume("run")
        zipped = [d for d in downloads if d.endswith(".zip")]
        processing_utils.save_file_to_cache(zipped[0], str(gradio_dir))  # what Gradio does with a returned file
    copies = list(gradio_dir.glob("*/run.zip"))
    assert len(calls) == 5 and 1 <= len(copies) <= 2, copies
    assert (upload / "photo.jpg").is_file()
    # Showing an unchanged run hands out the same zip bytes: Gradio caches them once.
    before = (root / "download" / "run.zip").read_bytes()
    app.show("run")
    zip_run(root)
    assert (root / "download" / "run.zip").read_bytes() == before
    assert prune_gradio_cache(gradio_dir) <= 1 and len(list(gradio_dir.glob("*/run.zip"))) == 1
