"""make-asset: bad inputs and hostile environments, through the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "astronaut.jpg"


def _one_line_error(res) -> str:
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert "Traceback" not in res.stderr
    assert lines, "expected an error message"
    return lines[-1]


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def test_missing_photo(cli, tmp_path):
    res = cli("make-asset", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "run"))
    line = _one_line_error(res)
    assert "nope.jpg" in line and "no such file" in line
    assert not (tmp_path / "run").exists()


def test_refuses_foreign_folder(cli, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    res = cli("make-asset", str(SAMPLE), "--out", str(out))
    line = _one_line_error(res)
    assert "not a portrait3d run" in line
    assert _snapshot(out) == {"thesis.tex"}


def test_unwritable_output_folder(cli, tmp_path):
    if os.geteuid() == 0:  # root writes through permission bits: use a folder no one can create
        target = Path("/proc/portrait3d-run")
    else:
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o500)
        target = parent / "run"
    try:
        line = _one_line_error(cli("make-asset", str(SAMPLE), "--out", str(target)))
        assert str(target) in line and ("cannot create" in line or "not writable" in line)
        assert not target.exists()
    finally:
        if os.geteuid() != 0:
            parent.chmod(0o700)


def test_output_is_a_file(cli, tmp_path):
    out = tmp_path / "file"
    out.write_text("x")
    line = _one_line_error(cli("make-asset", str(SAMPLE), "--out", str(out)))
    assert "not a folder" in line


def test_diffusion_without_weights(cli, tmp_path):
    res = cli(
        "make-asset",
        str(SAMPLE),
        "--out",
        str(tmp_path / "run"),
        "--generator",
        "diffusion",
        env={"PORTRAIT3D_WEIGHTS": ""},
    )
    line = _one_line_error(res)
    assert "weights" in line and "convert-weights" in line and "portrait3d fetch-weights --out" in line


def test_diffusion_with_unconverted_folder(cli, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model_state-340000.th").write_bytes(b"\0" * 10)
    res = cli(
        "make-asset", str(SAMPLE), "--out", str(tmp_path / "run"), "--generator", "diffusion", "--weights", str(weights)
    )
    line = _one_line_error(res)
    assert str(weights) in line and "convert-weights" in line and "portrait3d fetch-weights --out" in line
    assert not (tmp_path / "run").exists()


def test_bad_option_values(cli, tmp_path):
    line = _one_line_error(cli("make-asset", str(SAMPLE), "--out", str(tmp_path / "r"), "--views", "0"))
    assert "--views" in line
    line = _one_line_error(cli("make-asset", str(SAMPLE), "--out", str(tmp_path / "r"), "--yaw", "10"))
    assert "--pitch" in line


def _limit_file_size():  # runs in the child: writes past 64 KiB fail like a full disk
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_full_disk_is_one_line_and_resumable(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "portrait3d", "make-asset", str(SAMPLE), "--out", str(out), "--views", "8"]
    res = subprocess.run(
        cmd, capture_output=True, text=True, preexec_fn=_limit_file_size, timeout=600, stdin=subprocess.DEVNULL
    )
    line = _one_line_error(res)
    assert "space" in line or "too large" in line.lower()
    # Nothing half-written is left behind, and nothing outside the run folder.
    assert not [p for p in out.rglob(".tmp-*")]
    assert _snapshot(tmp_path) <= {"run"} | {f"run/{p}" for p in _snapshot(out)}


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_exits_promptly_and_leaves_run_resumable(tmp_path, sig, code):
    """Ctrl-C (SIGINT) exits 130, a polite kill (SIGTERM) 143: 128 + the signal, as shells expect."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "portrait3d", "make-asset", str(SAMPLE), "--out", str(out), "--views", "8"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / ".portrait3d" / "stages" / "preprocess.json").exists():
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    records = out / ".portrait3d" / "stages"
    before = {p.name for p in records.glob("*.json")}
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=600)  # a guard against a hang, not a measure of speed
    # Promptly, whatever the machine's load: at most the stage that was running finishes, no later one.
    assert len({p.name for p in records.glob("*.json")} - before) <= 1, "Ctrl-C must stop the run promptly"
    assert proc.returncode == code
    assert "Traceback" not in err and "resume" in err.splitlines()[-1]
    assert not [p for p in out.rglob(".tmp-*")]
    assert (out / ".portrait3d" / "stages" / "preprocess.json").exists()
