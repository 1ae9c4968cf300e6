"""The parts of the web app and the viewer command that need no browser: fast."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from portrait3d import progress, torchvision_compat
from portrait3d.make_asset import MakeAssetOptions
from portrait3d.pipeline import asset_stages
from portrait3d.serve import App, ProgressMap, ServeOptions, list_runs, run_name


def test_resize_follows_torchvision_size_rule():
    image = torch.arange(2 * 3 * 40 * 80, dtype=torch.float32).reshape(2, 3, 40, 80)
    assert torchvision_compat.resize(image, 20).shape == (2, 3, 20, 40)  # shorter edge to 20, aspect kept
    assert torchvision_compat.resize(image, [10, 30]).shape == (2, 3, 10, 30)
    assert torchvision_compat.resize(image, 20, max_size=30).shape == (2, 3, 15, 30)
    flat = torch.full((3, 48, 48), 200, dtype=torch.uint8)
    out = torchvision_compat.resize(flat, 100, antialias=None)
    assert out.dtype == torch.uint8 and out.shape == (3, 100, 100) and bool((out == 200).all())
    ramp = torch.linspace(0, 1, 64).repeat(3, 64, 1)
    half = torchvision_compat.resize(ramp, 32)
    assert torch.allclose(half.mean(), ramp.mean(), atol=1e-3) and bool((half.diff(dim=-1) > 0).all())


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(torchvision_compat.torchvision_loads(), reason="torchvision loads here: no stand-in is used")
def test_standin_covers_what_nerfstudio_and_diffusers_import():
    # nerfstudio first, then diffusers/transformers in the same process: each sees what it needs.
    result = _python(
        """
        import importlib.util, sys
        from nerf import method  # imports nerfstudio's pipelines through the stand-in
        assert sys.modules["torchvision"] is None, "torchvision stays hidden after nerfstudio's import"
        import portrait3d.diffusion, diffusers, transformers
        from diffusers import UNet2DConditionModel
        assert importlib.util.find_spec("torchvision") is None
        from portrait3d import torchvision_compat
        torchvision_compat.install_standin()  # what `portrait3d view` does before nerfstudio's viewer
        import torch, torchvision, torchvision.transforms.functional as TF
        assert TF.resize(torch.zeros(3, 48, 64, dtype=torch.uint8), 100).shape == (3, 100, 133)
        import torchvision.utils
        try:
            torchvision.utils.save_image(None, "x.png")
        except RuntimeError as exc:
            assert "stand-in" in str(exc)
        else:
            raise AssertionError("save_image must refuse")
        print("ok")
        """
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_progress_listen_hears_stages_lines_and_steps():
    events = []
    with progress.listen(events.append), progress.stage("fit-nerf"):
        progress.info("hello")
        list(progress.bar(range(3), desc="steps"))
    progress.info("not heard")
    kinds = [(e.kind, e.stage) for e in events]
    assert kinds[0] == ("stage-start", "fit-nerf") and kinds[-1] == ("stage-end", "fit-nerf")
    assert [e.done for e in events if e.kind == "step"] == [1, 2, 3]
    assert all(e.total == 3 for e in events if e.kind == "step")
    assert any(e.kind == "info" and e.message == "hello" for e in events)
    assert not any(e.message == "not heard" for e in events)
    assert events[-1].seconds is not None and events[-1].seconds >= 0


def test_progress_map_reports_fractions_in_stage_order(tmp_path):
    options = MakeAssetOptions(preset="tiny")
    stages = (*(stage.name for stage in asset_stages(tmp_path / "photo.jpg", options)), "report")
    assert stages.index("render-turntable") < stages.index("export-splat")
    calls = []
    mapping = ProgressMap(lambda fraction, desc: calls.append((fraction, desc)), stages)
    with progress.listen(mapping):
        for name in ("preprocess", "fit-nerf"):
            with progress.stage(name):
                list(progress.bar(range(2), desc="x"))
        # The turntable runs beside the splat stage: its steps after the splat stage started do not move the bar.
        with progress.stage("render-turntable"):
            list(progress.bar(range(2), desc="frames"))
            with progress.stage("export-splat"):
                list(progress.bar(range(2), desc="distil"))
            list(progress.bar(range(2), desc="frames"))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[0] == 0.0
    n, splat = len(stages), stages.index("export-splat") + 1
    assert calls[-1] == (splat / n, f"{splat}/{n} export-splat: distil")
    fit = stages.index("fit-nerf") + 1
    assert ((fit / n), f"{fit}/{n} fit-nerf: x") in calls


def test_run_names_follow_photo_and_options(tmp_path):
    job = {"generator": "proxy", "preset": "tiny", "views": 8, "seed": 0, "yaw": None, "pitch": None}
    name = run_name(b"photo", "my photo!", job)
    assert name == run_name(b"photo", "my photo!", dict(job)) and name.startswith("my-photo-")
    assert name != run_name(b"photo", "my photo!", {**job, "seed": 1})
    assert name != run_name(b"other", "my photo!", job)
    assert list_runs(tmp_path / "missing") == []
    (tmp_path / "not-a-run").mkdir()
    assert list_runs(tmp_path) == []


def test_app_refuses_bad_jobs_before_writing(tmp_path, monkeypatch):
    from portrait3d.errors import UserError

    monkeypatch.delenv("PORTRAIT3D_WEIGHTS", raising=False)
    app = App(ServeOptions(runs=str(tmp_path / "runs")))
    assert app.generators == ["proxy"]  # diffusion only with weights
    assert App(ServeOptions(runs=str(tmp_path), weights=str(tmp_path))).generators == ["proxy", "diffusion"]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    with pytest.raises(UserError, match="not an image"):
        app.make_asset(str(broken), "proxy", "tiny", 8, 0, None, None)
    with pytest.raises(UserError, match="not available"):
        app.make_asset(str(broken), "diffusion", "tiny", 8, 0, None, None)
    with pytest.raises(UserError, match="together"):
        app.make_asset(str(broken), "proxy", "tiny", 8, 0, 10.0, None)
    with pytest.raises(UserError, match="no run named"):
        app.show("nope")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_view_errors_are_one_line(tmp_path, cli):
    result = cli("view", str(tmp_path / "missing"))
    assert result.returncode != 0 and "no such run folder" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "run" / ".portrait3d").mkdir(parents=True)
    result = cli("view", str(tmp_path / "run"))
    assert result.returncode != 0 and "portrait3d make-asset" in result.stderr and "Traceback" not in result.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("serve", "--runs", str(tmp_path / "runs"), "--port", str(port))
    assert result.returncode != 0 and f"port {port}" in result.stderr and "Traceback" not in result.stderr
