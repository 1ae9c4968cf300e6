"""A run folder that heals, locks and reproduces: damaged outputs redone, one writer, same seed same asset."""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import trimesh
from asset_runs import VIEWS, differing, explain_difference, make_asset_command, run_make_asset
from cli_runner import machine_env

UPSTREAM = [
    "preprocess",
    "proxy",
    "views",
    "dataset",
    "fit-nerf",
    "export-mesh",
    "render-turntable",
    "contact-sheet",
    "export-splat",
]


def _copy(tiny_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(tiny_run[0], out)
    return out


def _redone(stderr: str) -> list[str]:
    """Stages that ran (their ``[stage] done`` line) in a make-asset's output."""
    return [name for name in UPSTREAM if f"[{name}] done in" in stderr]


def _truncate(path: Path) -> None:
    path.write_bytes(b"")


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x89 this is not json \xff\xfe")


def _delete_checkpoints(out: Path) -> None:
    for ckpt in (out / "nerf" / "nerfstudio_models").glob("*.ckpt"):
        ckpt.unlink()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("damage", "first_redone", "reason"),
    [
        (lambda out: _truncate(out / "views" / "0005.png"), "views", "views/0005.png is truncated"),
        (lambda out: _garbage(out / "transforms.json"), "dataset", "transforms.json is"),
        (_delete_checkpoints, "fit-nerf", "is missing"),
        (lambda out: _garbage(out / ".portrait3d" / "stages" / "export-mesh.json"), "export-mesh", "record"),
        (lambda out: _garbage(out / "mesh" / "head.glb"), "export-mesh", "mesh/head.glb is"),
    ],
    ids=["truncated-view", "garbage-transforms", "deleted-checkpoint", "random-record", "changed-glb"],
)
def test_damage_then_plain_rerun_heals_only_what_was_damaged(
    tiny_run, tmp_path, sample_photo, damage, first_redone, reason
):  # noqa: E501
    out = _copy(tiny_run, tmp_path)
    damage(out)
    res = run_make_asset(out, sample_photo)
    assert res.returncode == 0, res.stderr
    assert f"[{first_redone}] redone:" in res.stderr and reason in res.stderr, res.stderr
    redone = _redone(res.stderr)
    # Only the damaged stage runs: what it writes again is byte for byte what it wrote before, so the
    # stages after it find their inputs unchanged (a change would redo them, see tests/test_run.py).
    assert redone == [first_redone], (redone, explain_difference(out, tiny_run[0], res.stderr))
    for stage in UPSTREAM:
        if stage != first_redone:
            assert f"[{stage}] up to date, skipped" in res.stderr, stage
    assert differing(out, tiny_run[0]) == []
    assert len(trimesh.load(out / "mesh" / "head.glb", force="mesh").faces) > 100


@pytest.mark.slow
def test_hint_of_a_failing_stage_names_a_command_that_works_with_the_runs_preset(tiny_run, tmp_path, cli):
    out = _copy(tiny_run, tmp_path)
    shutil.rmtree(out / "nerf")
    failed = cli("export-mesh", str(out))
    lines = failed.stderr.strip().splitlines()
    assert failed.returncode == 2 and len(lines) == 1 and "Traceback" not in failed.stderr
    command = re.search(r"`portrait3d ([^`]+)`", lines[0]).group(1)
    assert command.startswith("fit-nerf")
    fitted = cli(*shlex.split(command))
    assert fitted.returncode == 0, fitted.stderr
    # The tiny preset and seed the run was made with, not the fast defaults: the very same field.
    assert differing(out, tiny_run[0]) == [], explain_difference(out, tiny_run[0], fitted.stderr)


@pytest.fixture(scope="module")
def concurrent_runs(tmp_path_factory, sample_photo):
    """A fresh tiny run, a second make-asset started on the same folder meanwhile, and a third with --wait."""
    out = tmp_path_factory.mktemp("concurrent") / "run"
    first = subprocess.Popen(
        make_asset_command(out, sample_photo),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=machine_env(),
    )
    pid_file = out / ".portrait3d" / "lock.pid"
    deadline = time.time() + 300
    while time.time() < deadline and not pid_file.exists() and first.poll() is None:
        time.sleep(0.05)
    # The first run is paused while the others meet its lock, so that the order is the same on any
    # machine and under any load (it used to race a quick first run).
    first.send_signal(signal.SIGSTOP)
    # A guard against a hang only (the waiter never saying it waits): the first run goes on after 10 minutes.
    guard = threading.Timer(600, first.send_signal, (signal.SIGCONT,))
    guard.start()
    try:
        refused = run_make_asset(out, sample_photo)
        waiting = subprocess.Popen(
            make_asset_command(out, sample_photo, "--wait"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=machine_env(),
        )
        heard = []
        for line in waiting.stderr:  # until it says it waits for the first run
            heard.append(line)
            if "waiting for process" in line:
                break
    finally:
        guard.cancel()
        first.send_signal(signal.SIGCONT)
    first_err = first.communicate(timeout=900)[1]
    waited_err = "".join(heard) + waiting.communicate(timeout=900)[1]
    return out, first, first_err, refused, waiting, waited_err


@pytest.mark.slow
def test_second_make_asset_on_one_folder_is_refused_naming_the_pid(concurrent_runs):
    _, first, first_err, refused, _, _ = concurrent_runs
    assert first.returncode == 0, first_err
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert f"process {first.pid} is writing this run" in lines[0] and "--wait" in lines[0]


@pytest.mark.slow
def test_make_asset_with_wait_queues_behind_the_writer(concurrent_runs, gltf_validator):
    out, first, _, _, waiting, waited_err = concurrent_runs
    assert waiting.returncode == 0, waited_err
    assert f"waiting for process {first.pid}" in waited_err
    assert waited_err.count("up to date, skipped") == len(UPSTREAM)  # the writer had finished everything
    report, rc = gltf_validator(out / "mesh" / "head.glb")
    assert rc == 0 and report["issues"]["numErrors"] == 0


@pytest.mark.slow
def test_two_runs_with_one_seed_give_identical_files(concurrent_runs, tiny_run):
    out = concurrent_runs[0]
    assert differing(out, tiny_run[0]) == [], explain_difference(out, tiny_run[0], "")
    assert (out / "mesh" / "head.glb").read_bytes() == (tiny_run[0] / "mesh" / "head.glb").read_bytes()


@pytest.mark.slow
def test_by_hand_stage_order_of_the_proxy_generator(tmp_path, cli, sample_photo, tiny_run):
    """preprocess, proxy, dataset, fit-nerf, export-mesh: the order the README lists, on the tiny preset."""
    out = tmp_path / "run"
    tiny = ("--preset", "tiny")
    for args in (
        ("preprocess", str(sample_photo), "--out", str(out)),
        ("proxy", str(out), "--views", str(VIEWS), *tiny),
        ("dataset", str(out)),
        ("fit-nerf", str(out), *tiny),
        ("export-mesh", str(out), *tiny),
    ):
        res = cli(*args)
        assert res.returncode == 0, (args, res.stderr)
    # The same stages with the same options as make-asset: the same asset.
    reference = tiny_run[0]
    for rel in ("views/0003.png", "transforms.json", "mesh/head.glb", "mesh/head.obj", "mesh/head_texture.png"):
        assert (out / rel).read_bytes() == (reference / rel).read_bytes(), rel


def test_extreme_photo_is_refused_by_the_decoder(cli, tmp_path):
    import numpy as np
    from PIL import Image

    for size in ((1, 20000), (3000, 200)):
        photo = tmp_path / f"strip_{size[0]}x{size[1]}.png"
        Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(photo)
        out = tmp_path / f"run_{size[0]}"
        res = cli("make-asset", str(photo), "--out", str(out), "--preset", "tiny")
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and "Traceback" not in res.stderr and "internal error" not in res.stderr
        assert str(photo) in lines[-1] and f"{size[0]}x{size[1]}" in lines[-1]
        assert ("too small" in lines[-1]) or ("aspect ratio" in lines[-1])
        assert not out.exists(), "a refused photo leaves no run folder"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("--views", "1"), "--views must be between 8 and 256"),
        (("--views", "7"), "--views must be between 8 and 256"),
        (("--views", "12", "--generator", "diffusion"), "multiple of 8"),
        (("--max-seconds", "0"), "--max-seconds"),
    ],
)
def test_bad_view_counts_are_refused_with_the_reason(cli, tmp_path, sample_photo, extra, needle):
    out = tmp_path / "run"
    res = cli("make-asset", str(sample_photo), "--out", str(out), *extra)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and needle in lines[0], res.stderr
    assert not out.exists()


def test_library_validates_options_too(tmp_path, sample_photo):
    from portrait3d.errors import UserError
    from portrait3d.make_asset import MakeAssetOptions, make_asset

    with pytest.raises(UserError, match="--views"):
        make_asset(sample_photo, tmp_path / "run", MakeAssetOptions(views=1))
    with pytest.raises(UserError, match="--preset"):
        make_asset(sample_photo, tmp_path / "run", MakeAssetOptions(preset="huge"))
    assert not (tmp_path / "run").exists()


def test_unsafe_pickle_is_named_unsafe_without_a_torch_warning(cli, tmp_path):
    evil = tmp_path / "model_state-340000.th"
    script = (
        "import os, sys, torch\n"
        "class Evil:\n"
        "    def __reduce__(self):\n"
        "        return (os.system, ('echo pwned',))\n"
        "torch.save({'state_dict': Evil()}, sys.argv[1])\n"
    )
    subprocess.run([sys.executable, "-c", script, str(evil)], check=True)
    res = cli("convert-weights", "--orbit", str(evil), "--back-view", str(evil), "--out", str(tmp_path / "w"))
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "holds Python code that portrait3d will not run; convert it from a trusted source" in lines[0]
    assert str(evil) in lines[0] and "Warning" not in res.stderr and "pwned" not in res.stdout + res.stderr
