"""batch end to end (tiny preset): three photos, one broken, on the local engine and on a local Ray
cluster; in each, the worker process of one photo is killed during its fit and the batch still ends
with every good photo done (the retry resumes from the run folder)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageOps

ARGS = ["--preset", "tiny", "--views", "8"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory, sample_photo) -> dict[str, Path]:
    """The sample and its mirror, under the same stem in two folders (a name clash), and a broken file."""
    root = tmp_path_factory.mktemp("photos")
    (root / "a").mkdir()
    (root / "b").mkdir()
    shutil.copy(sample_photo, root / "a" / "astronaut.jpg")
    ImageOps.mirror(Image.open(sample_photo)).save(root / "b" / "astronaut.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG" * 50)
    return {
        "sample": root / "a" / "astronaut.jpg",
        "mirror": root / "b" / "astronaut.png",
        "broken": root / "broken.jpg",
    }


def _command(photos: dict[str, Path], out: Path, *extra: str) -> list[str]:
    inputs = [str(photos["sample"].parent), str(photos["mirror"]), str(photos["broken"])]
    return [sys.executable, "-m", "portrait3d", "batch", *inputs, "--out", str(out), *ARGS, *extra]


def _row(out: Path, photo: Path) -> dict:
    rows = json.loads((out / "batch.json").read_text())["photos"]
    return next(r for r in rows if r["photo"] == str(photo.resolve()))


def _run_killing_one(photos: dict[str, Path], out: Path, victim: Path, *extra: str):
    """Run the batch; SIGKILL the worker process of ``victim`` once its fit has started."""
    proc = subprocess.Popen(
        _command(photos, out, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    killed = None
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None and killed is None:
        time.sleep(0.2)
        try:
            log = (out / "logs" / f"{_row(out, victim)['run']}.log").read_text()
        except (OSError, ValueError, StopIteration):
            continue
        if "[fit-nerf] ..." in log:
            killed = int(re.findall(r"pid (\d+) on ", log)[-1])
            os.kill(killed, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=900)
    assert killed is not None, f"the victim's fit was never seen running:\n{stderr}"
    return proc.returncode, stderr, killed


def _check_batch(out: Path, photos: dict[str, Path], stderr: str, rc: int) -> None:
    assert rc == 1, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("batch: 2 of 3 photos done, 1 failed"), stderr
    data = json.loads((out / "batch.json").read_text())
    assert data["counts"] == {"ok": 2, "failed": 1, "running": 0, "pending": 0}
    good = [_row(out, photos["sample"]), _row(out, photos["mirror"])]
    assert good[0]["run"] != good[1]["run"] and all(r["run"].startswith("astronaut-") for r in good)
    for row in good:
        assert row["status"] == "ok" and row["error"] is None
        assert (out / row["glb"]).is_file() and (out / row["run"] / "report.json").is_file()
    broken = _row(out, photos["broken"])
    assert (
        broken["status"] == "failed"
        and broken["error"] == f"{photos['broken']}: not an image (or a format that cannot be read)"
    )
    assert not (out / broken["run"]).exists(), "a broken photo leaves no run folder"
    csv_lines = (out / "batch.csv").read_text().splitlines()
    assert csv_lines[0] == "photo,run,status,seconds,glb,error" and len(csv_lines) == 4
    assert not list(out.rglob(".tmp-*"))


def _check_resumed(out: Path, row: dict, killed: int) -> None:
    """The victim's log: a first attempt cut in its fit, then a retry that skipped the finished stages."""
    log = (out / "logs" / f"{row['run']}.log").read_text()
    attempts = log.split("\n== 20")
    pids = [int(p) for p in re.findall(r"pid (\d+) on ", log)]
    assert killed in pids and pids[-1] != killed, log
    last = attempts[-1]
    for stage in ("preprocess", "proxy", "views", "dataset"):
        assert f"[{stage}] up to date, skipped" in last, last
    assert "[fit-nerf] done" in last and "== ok in" in last


@pytest.fixture(scope="module")
def local_batch(tmp_path_factory, photos):
    out = tmp_path_factory.mktemp("batch") / "out"
    rc, stderr, killed = _run_killing_one(photos, out, photos["sample"], "--workers", "2", "--retries", "1")
    return out, rc, stderr, killed


@pytest.mark.slow
def test_local_batch_survives_a_killed_worker(local_batch, photos):
    out, rc, stderr, killed = local_batch
    _check_batch(out, photos, stderr, rc)
    victim = _row(out, photos["sample"])
    assert victim["attempts"] == 2 and "died (signal SIGKILL)" in stderr
    _check_resumed(out, victim, killed)
    assert _row(out, photos["mirror"])["attempts"] == 1


@pytest.mark.slow
def test_rerun_skips_finished_runs(local_batch, photos, tmp_path):
    out, *_ = local_batch
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    glb = copy / _row(copy, photos["mirror"])["glb"]
    before = glb.stat().st_mtime_ns
    res = subprocess.run(_command(photos, copy), capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    assert res.returncode == 1 and "2 finished earlier (skipped), 1 to run" in res.stderr, res.stderr
    assert glb.stat().st_mtime_ns == before
    assert _row(copy, photos["mirror"])["skipped"] is True


@pytest.mark.slow
def test_ray_batch_survives_a_killed_worker(local_batch, photos, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    shutil.copytree(local_batch[0], out)
    # The mirror's run is removed so that Ray has a whole photo to run; the sample is finished.
    mirror = _row(out, photos["mirror"])
    shutil.rmtree(out / mirror["run"])
    (out / "logs" / f"{mirror['run']}.log").unlink()
    rc, stderr, killed = _run_killing_one(photos, out, photos["mirror"], "--engine", "ray")
    _check_batch(out, photos, stderr, rc)
    assert "Ray cluster: " in stderr and "1 finished earlier (skipped), 2 to run" in stderr
    assert _row(out, photos["sample"])["skipped"] is True
    assert _row(out, photos["mirror"])["run"] == mirror["run"], "a rerun maps a photo to the same folder"
    _check_resumed(out, _row(out, photos["mirror"]), killed)
