"""The run folder: atomic writes, stage records, skipping and redoing stages."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from portrait3d.errors import UserError
from portrait3d.run import Run, atomic_dir, atomic_path, atomic_save_image, atomic_write_json, execute


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half written")
        raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_dir_replaces_whole_folder(tmp_path):
    folder = tmp_path / "views"
    with atomic_dir(folder) as tmp:
        (tmp / "0.png").write_text("old")
        (tmp / "1.png").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(folder) as tmp:
        (tmp / "0.png").write_text("new")
        raise RuntimeError("killed")
    assert sorted(p.name for p in folder.iterdir()) == ["0.png", "1.png"]
    with atomic_dir(folder) as tmp:
        (tmp / "0.png").write_text("new")
    assert [p.name for p in folder.iterdir()] == ["0.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["views"]


def test_atomic_image(tmp_path):
    from PIL import Image

    img = np.zeros((4, 5, 4), dtype=np.uint8)
    img[..., 3] = 128
    atomic_save_image(tmp_path / "x.png", img)
    back = np.asarray(Image.open(tmp_path / "x.png"))
    assert back.shape == (4, 5, 4) and back[0, 0, 3] == 128


def test_run_refuses_foreign_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a portrait3d run"):
        Run(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["precious.txt"]
    Run(tmp_path / "new")  # empty or missing folders become runs
    Run(tmp_path / "new")  # and reopen


@dataclass
class _Opts:
    scale: int = 2


def _double(run: Run, options: _Opts) -> dict:
    value = int(run.path("in.txt").read_text())
    atomic_write_json(run.path("out.json"), {"value": value * options.scale})
    return {"value": value * options.scale}


def test_execute_skips_and_redoes(tmp_path):
    run = Run(tmp_path / "run")
    run.path("in.txt").write_text("3")
    calls = []

    def fn(r, o):
        calls.append(1)
        return _double(r, o)

    assert execute(run, "double", fn, _Opts(), ["in.txt"], ["out.json"])["value"] == 6
    again = execute(run, "double", fn, _Opts(), ["in.txt"], ["out.json"])
    assert again["skipped"] and again["value"] == 6 and len(calls) == 1
    execute(run, "double", fn, _Opts(scale=3), ["in.txt"], ["out.json"])  # options changed
    assert len(calls) == 2
    run.path("in.txt").write_text("4")  # input changed
    assert execute(run, "double", fn, _Opts(scale=3), ["in.txt"], ["out.json"])["value"] == 12
    run.path("out.json").unlink()  # output lost
    execute(run, "double", fn, _Opts(scale=3), ["in.txt"], ["out.json"])
    execute(run, "double", fn, _Opts(scale=3), ["in.txt"], ["out.json"], force=True)
    assert len(calls) == 5


def test_execute_failed_stage_is_not_recorded(tmp_path):
    run = Run(tmp_path / "run")

    def boom(r, o):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(run, "boom", boom, {}, [], ["x"])
    assert run.record("boom") is None


def test_clean_temporaries(tmp_path):
    run = Run(tmp_path / "run")
    (run.root / "views").mkdir()
    (run.root / "views" / ".tmp-abc.png").write_text("partial")
    (run.root / ".tmp-views-x").mkdir()
    run.clean_temporaries()
    assert not any(p.name.startswith(".tmp-") for p in run.root.rglob("*"))


def test_atomic_outputs_get_ordinary_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
