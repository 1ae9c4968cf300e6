"""make-asset end to end on the CPU with the tiny preset: outputs, report, rerun, resume after kill -9."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import pytest
import trimesh
from asset_runs import VIEWS, differing, explain_difference, make_asset_command, run_make_asset
from cli_runner import machine_env
from PIL import Image

STAGES = [
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
BESIDE = ("render-turntable", "contact-sheet")
"""Stages that run beside export-splat (``Stage.beside``)."""
_command = make_asset_command
_make_asset = run_make_asset


@pytest.fixture(scope="module")
def finished_run(tiny_run):
    return tiny_run


@pytest.mark.slow
def test_every_output_exists_and_is_valid(finished_run, gltf_validator):
    out, res = finished_run
    for rel in (
        "input/aligned.png",
        "input/mask.png",
        "input/camera.json",
        "proxy/head.ply",
        "transforms.json",
        "nerf/config.yml",
        "mesh/head.glb",
        "mesh/head.obj",
        "mesh/head.mtl",
        "mesh/head.ply",
        "contact_sheet.png",
        "report.json",
    ):
        assert (out / rel).is_file() and (out / rel).stat().st_size > 0, rel
    assert (out / "turntable.mp4").is_file() or (out / "turntable.gif").is_file()
    views = sorted((out / "views").glob("[0-9]*.png"))
    assert len(views) == VIEWS and Image.open(views[0]).mode == "RGBA"
    assert any((out / "nerf" / "nerfstudio_models").glob("step-*.ckpt"))
    transforms = json.loads((out / "transforms.json").read_text())
    assert len(transforms["frames"]) == VIEWS
    # The asset: a validator-clean GLB that loads as one human-sized textured head.
    report, rc = gltf_validator(out / "mesh" / "head.glb")
    assert report["issues"]["numErrors"] == 0 and rc == 0, report["issues"]["messages"]
    assert report["issues"]["numWarnings"] == 0, report["issues"]["messages"]
    glb = trimesh.load(out / "mesh" / "head.glb", force="mesh")
    assert 100 < len(glb.faces) <= 5000
    assert 0.1 < float(np.ptp(glb.vertices[:, 0])) < 0.4, "head width in metres"
    # Closed at the neck by a flat cap at the origin: watertight once the UV seams are welded.
    assert glb.bounds[0, 1] == pytest.approx(0.0, abs=1e-6)
    glb.merge_vertices(merge_tex=True, merge_norm=True)
    assert glb.is_watertight
    # The final lines say where the GLB is and how to open the NeRF.
    assert "head.glb" in res.stderr and "portrait3d view" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_report_fields_are_present_and_sane(finished_run):
    out, _ = finished_run
    report = json.loads((out / "report.json").read_text())
    assert report["device"] == "cpu" and report["options"]["preset"] == "tiny"
    assert report["versions"]["torch"] and report["versions"]["portrait3d"]
    assert list(report["stages"]) == STAGES
    assert all(stage["seconds"] is not None and stage["seconds"] >= 0 for stage in report["stages"].values())
    # The total covers every stage (no wall-clock bound: the machine's load must not fail a test); the
    # turntable and the contact sheet run beside the splat stage, so they count once with it.
    stages = report["stages"]
    in_turn = sum(stage["seconds"] for name, stage in stages.items() if name not in BESIDE)
    beside = sum(stages[name]["seconds"] for name in BESIDE)
    assert report["seconds_total"] > 0 and report["seconds_total"] >= in_turn - 0.01 * len(STAGES)
    assert report["seconds_total"] >= in_turn - stages["export-splat"]["seconds"] + beside - 0.01 * len(STAGES)
    # Each stage's own peak resident memory (the runner resets the kernel's peak before each stage).
    peaks = [stage["peak_rss_mib"] for stage in report["stages"].values()]
    assert all(peak > 100 for peak in peaks), peaks
    assert report["peak_memory"]["cpu_rss_mib"] >= max(peaks)
    assert 10 < report["nerf"]["train_psnr"] < 60
    assert 100 < report["mesh"]["triangles"] <= 5000 and report["mesh"]["texture_size"] == 256
    assert report["mesh"]["units"] == "metres" and report["mesh"]["scale_to_metres"] > 0
    assert report["mesh"]["target"] == "generic" and len(report["mesh"]["lods"]) == 1
    assert report["mesh"]["file_sizes"]["mesh/head.glb"] == report["files"]["mesh/head.glb"]
    for rel, size in report["files"].items():
        assert (out / rel).stat().st_size == size
    assert "mesh/head.glb" in report["files"]


@pytest.mark.slow
def test_rerun_skips_every_stage(finished_run, sample_photo):
    out, _ = finished_run
    glb_before = (out / "mesh" / "head.glb").stat().st_mtime_ns
    res = _make_asset(out, sample_photo)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("up to date, skipped") == len(STAGES)
    report = json.loads((out / "report.json").read_text())
    assert all(stage["skipped"] and stage["peak_rss_mib"] is None for stage in report["stages"].values())
    assert (out / "mesh" / "head.glb").stat().st_mtime_ns == glb_before


@pytest.mark.slow
def test_resume_after_kill_during_fit(tmp_path, sample_photo, finished_run):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        _command(out, sample_photo),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=machine_env(),
    )
    fit_started = out / ".portrait3d" / "stages" / "dataset.json"
    deadline = time.time() + 600
    while time.time() < deadline and not fit_started.exists() and proc.poll() is None:
        time.sleep(0.05)
    # Killed as the fit starts: the whole fit is the margin (a fixed sleep raced it on a quiet machine).
    assert proc.poll() is None, "the run ended before it could be killed during the fit"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / ".portrait3d" / "stages" / "fit-nerf.json").exists()

    res = _make_asset(out, sample_photo)
    assert res.returncode == 0, res.stderr
    for stage in ("preprocess", "proxy", "views", "dataset"):
        assert f"[{stage}] up to date, skipped" in res.stderr
    assert "[fit-nerf] done" in res.stderr
    assert not list(out.rglob(".tmp-*"))
    # The fit restarts from its seed: every file is the one the uninterrupted run wrote.
    reference, _ = finished_run
    assert differing(out, reference) == [], explain_difference(out, reference, res.stderr)
    assert (out / "mesh" / "head.glb").is_file() and (out / "report.json").is_file()
