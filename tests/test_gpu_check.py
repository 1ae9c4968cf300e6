"""scripts/gpu_check.py: the device path imports without the CPU-only packages; the --tiny check runs end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What the lent GPU's image lacks and gpu_check.py does not carry (trimesh travels as a wheel; the diffusion and
# fit path must not need it either).
ABSENT_ON_DEVICE = ("open3d", "nerfstudio", "nerfacc", "tinycudann", "xatlas", "mcubes", "trimesh")

DEVICE_PATH = f"""
import sys
for name in {ABSENT_ON_DEVICE!r}:
    sys.modules[name] = None  # import raises ImportError, find_spec says absent
import portrait3d.cli, portrait3d.commands.diffusion, portrait3d.commands.nerf
import portrait3d.diffusion.stages, portrait3d.diffusion.pipelines, portrait3d.diffusion.components
import portrait3d.diffusion.reference_pattern, portrait3d.diffusion.convert, portrait3d.diffusion.ldm_keys
import nerf.dataset, nerf.fit
from nerf.volume import NGPVolume, VolumeConfig
volume = NGPVolume(VolumeConfig(), "cuda")
assert volume.sampler == "torch" and volume.field.implementation == "torch", (volume.sampler,)
leaked = [n for n in {ABSENT_ON_DEVICE!r} if sys.modules.get(n) is not None]
assert not leaked, leaked
print("device path ok")
"""


def _gpu_check():
    """scripts/gpu_check.py as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chain_skips_what_this_machine_cannot_run_and_goes_on(tmp_path):
    """A stage missing a package is skipped, so is a stage that needs its files; an independent later one runs."""
    from portrait3d.run import atomic_write_text
    from portrait3d.runner import Stage

    def write(name):
        return lambda run, _options: atomic_write_text(run.path(name), name) or {}

    def needs_absent_package(run, _options):
        import portrait3d_absent_package  # noqa: F401

    stages = [
        Stage("views", write("views.txt"), {}, outputs=("views.txt",)),
        Stage("mesh", needs_absent_package, {}, inputs=("views.txt",), outputs=("mesh.glb",)),
        Stage("rig", write("rig.glb"), {}, inputs=("mesh.glb",), outputs=("rig.glb",)),
        Stage("splats", write("splats.ply"), {}, inputs=("views.txt",), outputs=("splats.ply",)),
        Stage("broken", lambda run, _o: 1 / 0, {}, inputs=("views.txt",), outputs=("x",)),
    ]
    report = _gpu_check().walk_chain(tmp_path / "run", stages)
    assert report["views"]["status"] == report["splats"]["status"] == "ran"
    assert report["mesh"]["status"] == "skipped: needs portrait3d_absent_package (not on this machine)"
    assert report["rig"]["status"] == "skipped: needs mesh.glb from mesh"
    assert report["broken"]["status"].startswith("error: ZeroDivisionError")
    assert (tmp_path / "run" / "splats.ply").read_text() == "splats.ply"

    # Stages ``prepare`` ran are not run again (the prepared run folder already holds their files).
    again = _gpu_check().walk_chain(tmp_path / "run", stages[:1] + stages[3:4], skip=("views",))
    assert list(again) == ["splats"] and again["splats"]["status"] == "ran"


def test_blank_views_are_counted(tmp_path):
    """NaN latents decode to one flat colour: the chain step counts such views (all blank fails the chain)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "0000.png")
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(tmp_path / "0001.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "0002.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "mask.png")  # not a view
    assert _gpu_check().blank_views(tmp_path) == 2


def test_merge_gathers_the_steps_of_separate_processes(tmp_path):
    """gpu_device.sh runs each step in its own process and folder; merge makes one figures.json of them, moves the
    field parts and contact sheet up beside it, and names a step that wrote nothing."""
    machine = {"gpu": "test"}
    nerf = {"held_out": {"psnr_db": 33.0}, "fit_seconds": 30.0}
    (tmp_path / "nerf").mkdir()
    (tmp_path / "nerf" / "figures.json").write_text(json.dumps({"machine": machine, "steps": {"nerf": nerf}}))
    (tmp_path / "nerf" / "field.part0").write_bytes(b"x")
    (tmp_path / "chain").mkdir()
    chain = {"stages": {"fit-nerf": {"status": "ran"}}}
    (tmp_path / "chain" / "figures.json").write_text(json.dumps({"machine": machine, "steps": {"chain": chain}}))
    (tmp_path / "chain" / "chain_views.png").write_bytes(b"png")
    assert _gpu_check().merge(tmp_path) == 0
    merged = json.loads((tmp_path / "figures.json").read_text())
    assert merged["machine"] == machine and merged["steps"]["nerf"] == nerf
    assert "error" in merged["steps"]["diffusion"]  # its process never wrote figures
    summary = merged["steps"]["summary"]
    assert summary["nerf_psnr_db"] == 33.0 and summary["chain_ran"] == ["fit-nerf"]
    assert (tmp_path / "field.part0").read_bytes() == b"x" and (tmp_path / "chain_views.png").is_file()
    assert not (tmp_path / "nerf" / "figures.json").exists()


def test_device_path_imports_without_cpu_only_packages():
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", DEVICE_PATH], capture_output=True, text=True, env=env, timeout=300, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "device path ok" in proc.stdout


def test_device_builds_the_chain_from_the_pipeline_list():
    """The device (no open3d, mediapipe, ...; trimesh travels as a wheel) can build make-asset's list for the chain."""
    absent = tuple(n for n in ABSENT_ON_DEVICE if n != "trimesh") + ("mediapipe",)
    code = f"""
import sys
for name in {absent!r}:
    sys.modules[name] = None
sys.path.insert(0, {str(REPO / "scripts")!r})
import gpu_check
names = [stage.name for stage in gpu_check.chain_stages("weights", "cpu", tiny=False)]
print(",".join(names))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = proc.stdout.strip().splitlines()[-1].split(",")
    assert names[:2] == ["preprocess", "proxy"] and {"back_view", "orbit_views", "fit-nerf"} <= set(names)


def test_device_path_check_notices_a_missing_package():
    """The blocker really hides a package (so the test above can fail)."""
    code = "import sys; sys.modules['trimesh'] = None; import portrait3d.render"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert proc.returncode != 0 and "trimesh" in proc.stderr


@pytest.mark.slow
def test_gpu_check_tiny_runs_every_step(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "run", "--tiny"]
    command += ["--out", str(out), "--work", str(tmp_path / "work")]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1500)
    assert (out / "figures.json").is_file(), (proc.stdout + proc.stderr)[-3000:]
    figures = json.loads((out / "figures.json").read_text())
    steps = figures["steps"]
    assert figures["mode"] == "tiny" and "error" not in steps["diffusion"] and "error" not in steps["nerf"]
    diffusion = steps["diffusion"]
    assert diffusion["reference"]["pattern"] == "reference" and diffusion["dpm20"]["scheduler"] == "dpm++"
    assert diffusion["batched"]["views_per_batch"] == 4 and diffusion["release"]["seconds_per_view"] > 0
    assert set(diffusion["speedup_vs_reference"]) == {"release", "batched", "dpm20"}
    nerf = steps["nerf"]
    assert 0 < nerf["held_out"]["psnr_db"] < 60 and nerf["field_parts"] >= 1
    chain = steps["chain"]
    assert "error" not in chain, chain.get("error")
    assert chain["glb_bytes"] > 1000 and chain["views"] == 8 and (out / "chain_views.png").is_file()
    assert chain["blank_views"] == 0
    # The chain is make-asset's own list: every stage of it ran, in its order.
    names = [stage.name for stage in _gpu_check().chain_stages("w", "cpu", tiny=True)]
    assert list(chain["stages"]) == names and {v["status"] for v in chain["stages"].values()} == {"ran"}
    assert steps["summary"]["chain_ran"] == names and steps["summary"]["chain_skipped"] == {}
    assert (out / "field.part0").stat().st_size > 0
    assert steps["summary"]["chain"] == "ran" and proc.returncode == 0


@pytest.mark.slow
def test_device_script_runs_each_step_apart_and_merges(tmp_path):
    """scripts/gpu_device.sh, what the lent GPU runs, at tiny size: each step in its own process, then one
    figures.json with the field parts and the contact sheet beside it (at most 8 files come back)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    prepared = tmp_path / "prepared"
    command = [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "prepare", str(prepared), "--tiny"]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    out = tmp_path / "out"
    env.update(OUT=str(out), WORK=str(tmp_path), PYTHON=sys.executable)
    script = ["bash", str(REPO / "scripts" / "gpu_device.sh"), "--tiny", "--stages"]
    proc = subprocess.run(
        [*script, "--prepared", str(prepared)], capture_output=True, text=True, env=env, timeout=1500, cwd=tmp_path
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    figures = json.loads((out / "figures.json").read_text())
    assert set(figures["steps"]) == {"nerf", "diffusion", "chain", "summary"}
    assert not [step for step, value in figures["steps"].items() if "error" in value]
    assert figures["steps"]["chain"]["blank_views"] == 0 and figures["steps"]["summary"]["nerf_psnr_db"] > 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "log.txt" in files and "chain_views.png" in files and "field.part0" in files and len(files) <= 8, files
    assert "== chain" in (out / "log.txt").read_text()
