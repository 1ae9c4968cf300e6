"""batch: photo collection, run folder names, the finished-run check, the summary files, CLI refusals."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from portrait3d.batch.plan import collect_photos, finished_run, run_names
from portrait3d.batch.summary import Summary
from portrait3d.errors import UserError


def test_collect_photos_from_files_and_folders(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("b.JPG", "a.png", "notes.txt", ".hidden.jpg"):
        (tmp_path / "d" / name).write_bytes(b"x")
    single = tmp_path / "single.webp"
    single.write_bytes(b"x")
    missing = tmp_path / "missing.jpg"
    photos = collect_photos([tmp_path / "d", single, missing, single])
    assert [p.name for p in photos] == ["a.png", "b.JPG", "single.webp", "missing.jpg"]
    assert all(p.is_absolute() for p in photos)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no photos"):
        collect_photos([tmp_path / "empty"])


def test_run_names_unique_and_deterministic():
    photos = [Path("/x/a/face.jpg"), Path("/x/b/face.png"), Path("/x/c/other.jpg"), Path("/x/logs.jpg")]
    names = run_names(photos)
    assert names["/x/c/other.jpg"] == "other"
    assert names["/x/a/face.jpg"] != names["/x/b/face.png"]
    assert all(names[str(p)].startswith("face-") for p in photos[:2])
    assert names["/x/logs.jpg"].startswith("logs-"), "the logs folder is not a run name"
    assert run_names(list(reversed(photos))) == names, "the order of the photos does not matter"
    # An earlier batch's names are kept; a new photo does not take a used name.
    known = {"face": "/x/a/face.jpg"}
    again = run_names([Path("/x/a/face.jpg"), Path("/x/b/face.png")], known)
    assert again["/x/a/face.jpg"] == "face" and again["/x/b/face.png"].startswith("face-")
    assert run_names([Path("/y/other.jpg")], taken=["Other"])["/y/other.jpg"].startswith("other-")


def _fake_finished_run(run: Path, options: dict) -> None:
    (run / "mesh").mkdir(parents=True)
    (run / "mesh" / "head.glb").write_bytes(b"glb" * 10)
    files = {"mesh/head.glb": 30, "report.json": 1}
    (run / "report.json").write_text(json.dumps({"options": options, "files": files}))


def test_finished_run_needs_same_photo_options_and_files(tmp_path):
    options = {"preset": "tiny", "views": 8, "force": False}
    run = tmp_path / "run"
    _fake_finished_run(run, options)
    row = {"status": "ok", "sha256": "abc"}
    assert finished_run(run, options, row, "abc")
    assert finished_run(run, {**options, "force": False}, row, "abc")
    assert not finished_run(run, {**options, "force": True}, row, "abc")
    assert not finished_run(run, {**options, "views": 16}, row, "abc")
    assert not finished_run(run, options, row, "another photo")
    assert not finished_run(run, options, {**row, "status": "failed"}, "abc")
    assert not finished_run(run, options, None, "abc")
    (run / "mesh" / "head.glb").write_bytes(b"truncated")
    assert not finished_run(run, options, row, "abc")


def test_summary_files_and_lines(tmp_path):
    rows = [
        {"photo": f"/p/{n}.jpg", "run": n, "status": "pending", "seconds": None, "glb": None, "error": None}
        for n in ("a", "b", "c")
    ]
    summary = Summary(tmp_path, rows, {"engine": "local"}, {"a": "/p/a.jpg"})
    summary.write()
    summary.started("a", "host:1")
    summary.started("b")
    assert summary.counts() == {"ok": 0, "failed": 0, "running": 2, "pending": 1}
    assert summary.eta_seconds() is None
    summary.finished("a", {"status": "ok", "seconds": 3.0, "glb": str(tmp_path / "a" / "mesh" / "head.glb")})
    summary.finished("b", {"status": "failed", "seconds": 1.0, "error": "/p/b.jpg: not an image"})
    assert summary.eta_seconds() > 0
    data = json.loads((tmp_path / "batch.json").read_text())
    assert data["counts"] == {"ok": 1, "failed": 1, "running": 0, "pending": 1}
    assert data["photos"][0]["glb"] == "a/mesh/head.glb" and data["photos"][0]["attempts"] == 1
    with open(tmp_path / "batch.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["status"] for r in table] == ["ok", "failed", "pending"]
    assert table[1]["error"] == "/p/b.jpg: not an image" and table[0]["seconds"] == "3.0"
    assert summary.final_line().startswith("batch: 1 of 3 photos done, 1 failed, 1 not finished")
    assert not list(tmp_path.glob(".tmp-*"))


def test_cli_refusals(cli, tmp_path, sample_photo):
    res = cli("batch", str(sample_photo), "--out", str(tmp_path / "o"), "--workers", "0")
    assert res.returncode == 2 and "--workers must be at least 1" in res.stderr.splitlines()[-1]
    res = cli("batch", str(sample_photo), "--out", str(tmp_path / "o"), "--ray-address", "127.0.0.1:1")
    assert res.returncode == 2 and "--ray-address needs --engine ray" in res.stderr
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    res = cli("batch", str(sample_photo), "--out", str(mine))
    assert res.returncode == 2 and "not a portrait3d batch" in res.stderr and "Traceback" not in res.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    assert not (tmp_path / "o").exists()


def test_local_engine_does_not_import_ray():
    code = (
        "import sys, portrait3d.batch, portrait3d.batch.local, portrait3d.commands.batch; print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
