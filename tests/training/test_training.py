"""Training of the back-view module and the orbit model at tiny size on the CPU (data made by the proxy stage)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from portrait3d import cameras
from portrait3d.diffusion import stages
from portrait3d.diffusion.components import random_back_view, random_portrait360
from portrait3d.diffusion.pipelines import BackViewPipeline, Portrait360Pipeline, load_pipeline
from portrait3d.errors import UserError
from portrait3d.run import Run
from portrait3d.training import data as training_data
from portrait3d.training.config import preset
from portrait3d.training.trainer import LOG, WEIGHTS, Trainer

SIZE = 32
ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _log(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / LOG).read_text().splitlines()]


def _trainable(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {f"{i}": p.detach().clone() for i, p in enumerate(trainer.parameters)}


# --- data ------------------------------------------------------------------------------------------------------
def test_orbit_windows_wrap_along_the_trajectory(dataset):
    subjects = training_data.find_subjects(dataset)
    assert [s.root.name for s in subjects] == ["a", "b"]
    windows = training_data.OrbitWindows(subjects, window=8, size=SIZE)
    assert len(windows) == 24  # a window starts at every one of the 12 views of both subjects
    subject, names = windows.names(10)
    assert subject.root.name == "a"
    assert names == [f"{i % 12:04d}.png" for i in range(10, 18)]  # wraps past the last view
    item = windows[10]
    assert item["views"].shape == (8, 3, SIZE, SIZE) and item["conditions"].shape == (8, 3, SIZE, SIZE)
    assert item["references"].shape == (2, 3, SIZE, SIZE)
    assert item["views"].min() >= -1 and item["views"].max() <= 1
    # The conditions are the untextured renders, not the views.
    assert not torch.allclose(item["views"], item["conditions"])
    torch.testing.assert_close(item["views"][0], training_data.load_image(subject.view("0010.png"), SIZE))
    torch.testing.assert_close(item["references"][0], training_data.load_image(subject.front, SIZE))


def test_back_view_samples_use_back_png_or_the_view_behind(dataset):
    subjects = training_data.find_subjects(dataset)
    samples = training_data.BackViews(subjects, SIZE)
    assert all(s.back_name == "0006.png" for s in subjects)  # 180 degrees of 12 views
    a, b = samples[0], samples[1]
    torch.testing.assert_close(a["views"][0], training_data.load_image(subjects[0].view("0006.png"), SIZE))
    torch.testing.assert_close(b["views"][0], training_data.load_image(dataset / "b" / "views" / "back.png", SIZE))
    assert not torch.allclose(a["views"], b["views"])
    torch.testing.assert_close(a["conditions"][0], training_data.load_image(subjects[0].condition("0006.png"), SIZE))


def test_step_sampler_is_deterministic_and_splits_processes():
    one = training_data.StepBatchSampler(10, batch_size=2, seed=3)
    again = training_data.StepBatchSampler(10, batch_size=2, seed=3, start=4)
    batches = [one.batch(m) for m in range(10)]
    assert next(iter(again)) == batches[4]  # a resumed run gets the batches the first run would have
    assert sorted(i for b in batches[:5] for i in b) == list(range(10))  # one epoch is a permutation
    ranks = [training_data.StepBatchSampler(10, 2, 3, rank=r, world=2).batch(0) for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])


def test_missing_files_are_one_line_errors(dataset, tmp_path):
    with pytest.raises(UserError, match="no views/cameras.json"):
        training_data.find_subjects(tmp_path)
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(dataset / "a", broken)
    (broken / "proxy" / "conditions" / "0003.png").unlink()
    with pytest.raises(UserError, match=r"missing proxy/conditions/0003.png"):
        training_data.find_subjects(broken)


def test_nerfstudio_capture_becomes_a_subject(dataset, tmp_path):
    """A capture in another place and scale, frames shuffled: re-centred at PanoHead distance, ordered by yaw."""
    subject = training_data.find_subjects(dataset)[0]
    named = cameras.read_labels(subject.root / training_data.CAMERAS)
    capture = tmp_path / "capture"
    (capture / "images").mkdir(parents=True)
    order = [5, 0, 9, 3, 11, 1, 7, 2, 10, 4, 8, 6]
    placed, paths = [], []
    for k in order:
        name = f"{k:04d}.png"
        cam = named[name]
        c2w = cam.cam2world.copy()
        c2w[:3, 3] = c2w[:3, 3] * 3.0 + np.array([0.5, -1.0, 2.0])
        placed.append(cameras.Camera(c2w, cam.intrinsics))
        paths.append(f"images/frame_{k}.png")
        Image.open(subject.view(name)).convert("RGB").resize((48, 40)).save(capture / paths[-1])
    (capture / "transforms.json").write_text(json.dumps(cameras.transforms_document(placed, paths, 48, 40)))
    out = training_data.convert_nerfstudio(capture / "transforms.json", tmp_path / "subject", size=SIZE)
    converted = cameras.read_labels(out / training_data.CAMERAS)
    assert list(converted) == [f"{i:04d}.png" for i in range(12)]
    for i, cam in enumerate(converted.values()):
        np.testing.assert_allclose(cam.cam2world[:3, 3], named[f"{i:04d}.png"].cam2world[:3, 3], atol=1e-6)
    assert Image.open(out / "views" / "0003.png").size == (SIZE, SIZE)
    assert (out / training_data.FRONT).is_file()
    with pytest.raises(UserError, match="not a nerfstudio transforms.json"):
        (tmp_path / "bad.json").write_text("{}")
        training_data.convert_nerfstudio(tmp_path / "bad.json", tmp_path / "x")


# --- training ----------------------------------------------------------------------------------------------------
def test_thirty_steps_on_one_window_cut_the_loss(dataset, tmp_path):
    config = preset("tiny", steps=30, condition_dropout=0.0, checkpoint_every=30)
    windows = training_data.OrbitWindows(training_data.find_subjects(dataset), 8, SIZE)
    one = torch.utils.data.Subset(windows, [0])
    trainer = Trainer("orbit", config, one, tmp_path / "out", cpu=True)
    batch = torch.utils.data.default_collate([one[0]])
    before = trainer.evaluate(batch)
    losses = trainer.train()
    after = trainer.evaluate(batch)
    assert len(losses) == 30 and all(np.isfinite(losses))
    assert after < 0.85 * before, (before, after)  # seen: 1.07 -> 0.82


def test_gradient_checkpointing_gives_the_same_gradients(dataset, tmp_path):
    windows = training_data.OrbitWindows(training_data.find_subjects(dataset), 8, SIZE)
    batch = torch.utils.data.default_collate([windows[3]])
    grads = []
    for flag in (False, True):
        config = preset("tiny", condition_dropout=0.0, gradient_checkpointing=flag)
        trainer = Trainer("orbit", config, windows, tmp_path / f"out-{flag}", cpu=True)
        trainer.loss(batch, torch.Generator().manual_seed(1)).backward()
        grads.append([p.grad.clone() if p.grad is not None else None for p in trainer.parameters])
    assert sum(g is not None for g in grads[0]) > 100
    for a, b in zip(*grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_interrupted_and_resumed_run_repeats_the_uninterrupted_one(dataset, tmp_path):
    """Same losses step by step (within 1e-5 relative: float sums may be regrouped) and the same weights."""
    config = preset("tiny", steps=6, checkpoint_every=2, ema=True, lr_scheduler="linear", lr_warmup_steps=2)
    whole = Trainer("orbit", config, dataset, tmp_path / "whole", cpu=True)
    whole.train()
    first = Trainer("orbit", config, dataset, tmp_path / "split", cpu=True)
    first.train(stop_after=3)  # "killed" after step 3: the last checkpoint is step 2
    del first
    resumed = Trainer("orbit", config, dataset, tmp_path / "split", resume=True, cpu=True)
    assert resumed.step == 2
    resumed.train()
    expected, got = _log(tmp_path / "whole"), _log(tmp_path / "split")
    assert len(got) == 6
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    for a, b in zip(_trainable(whole).values(), _trainable(resumed).values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(whole.ema.shadow_params[0], resumed.ema.shadow_params[0], rtol=1e-5, atol=1e-7)
    with pytest.raises(UserError, match="pass --resume"):
        Trainer("orbit", config, dataset, tmp_path / "split", cpu=True)
    # The export is the EMA weights and loads in the orbit pipeline, which samples from it.
    pipeline = load_pipeline(Portrait360Pipeline, tmp_path / "split" / WEIGHTS)
    saved = dict(pipeline.unet.named_parameters())["down_view_modules.0.proj_out.weight"]
    trained = dict(resumed.network.unet.named_parameters())["down_view_modules.0.proj_out.weight"]
    index = [p is trained for p in resumed.parameters].index(True)
    torch.testing.assert_close(saved, resumed.ema.shadow_params[index])
    assert saved.abs().sum() > 0  # zero-initialised, trained
    item = training_data.OrbitWindows(training_data.find_subjects(dataset), 8, SIZE)[0]
    images = pipeline(
        item["references"][0] * 0.5 + 0.5,
        item["references"][1] * 0.5 + 0.5,
        item["conditions"] * 0.5 + 0.5,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        height=SIZE,
        width=SIZE,
        output_type="np",
    ).images
    assert images.shape == (8, SIZE, SIZE, 3) and np.isfinite(images).all()


def test_cli_fine_tunes_the_back_view_and_the_folder_drives_the_stages(dataset, tmp_path, cli):
    """train back-view --init WEIGHTS writes a whole weights folder; back-view and orbit-views stages run on it."""
    init = tmp_path / "init"
    random_portrait360().save_pretrained(init)
    random_back_view().save_pretrained(init / stages.BACK_VIEW_SUBFOLDER)
    out = tmp_path / "out"
    result = cli(
        "train", "back-view", "--data", str(dataset), "--out", str(out), "--init", str(init),
        "--config", "tiny", "--steps", "3", "--batch-size", "2", "--lr", "1e-3", "--cpu", env=ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(_log(out)) == 3
    weights = out / WEIGHTS
    trained = load_pipeline(BackViewPipeline, weights / stages.BACK_VIEW_SUBFOLDER)
    original = load_pipeline(BackViewPipeline, init / stages.BACK_VIEW_SUBFOLDER)
    changed = [
        not torch.equal(a, b)
        for a, b in zip(trained.controlnet.parameters(), original.controlnet.parameters(), strict=True)
    ]
    assert any(changed)
    for a, b in zip(trained.unet.parameters(), original.unet.parameters(), strict=True):
        assert torch.equal(a, b)  # the SD backbone is frozen
    run = Run(tmp_path / "run")
    import shutil

    shutil.copytree(dataset / "a" / "input", run.path("input"))
    shutil.copytree(dataset / "a" / "proxy", run.path("proxy"))
    options = stages.OrbitOptions(weights=str(weights), steps=1, size=SIZE, allow_cpu=True, device="cpu")
    stages.back_view(run, options)
    stages.orbit_views(run, options)
    assert Image.open(run.path("views", "back.png")).size == (SIZE, SIZE)
    assert len(list(run.path("views").glob("[0-9]*.png"))) == 12


def test_cli_errors_are_one_line(dataset, tmp_path, capsys):
    from portrait3d.cli import main

    out = str(tmp_path / "o")
    cases = [
        (["--data", str(dataset), "--out", out], "needs --init WEIGHTS"),
        (["--data", str(tmp_path / "none"), "--out", out, "--config", "tiny"], "no such folder"),
        (["--data", str(dataset), "--out", out, "--config", "big"], "--config must be one of"),
        (["--data", str(dataset), "--out", out, "--config", "tiny", "--lr", "-1"], "--lr must be positive"),
    ]
    for arguments, message in cases:
        assert main(["train", "orbit", *arguments, "--cpu"]) != 0
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()  # nothing written by a run that could not start


SCRIPT = """
import sys
import torch
import portrait3d.diffusion
from safetensors.torch import save_file
from portrait3d.training.config import preset
from portrait3d.training.trainer import Trainer

torch.set_num_threads(1)
data, out = sys.argv[1], sys.argv[2]
trainer = Trainer("orbit", preset("tiny", steps=3, checkpoint_every=3), data, out, cpu=True)
start = {str(i): p.detach().clone() for i, p in enumerate(trainer.parameters)}
trainer.train()
rank = trainer.accelerator.process_index
assert trainer.accelerator.num_processes == 2, trainer.accelerator.num_processes
save_file({str(i): p.detach().contiguous() for i, p in enumerate(trainer.parameters)}, f"{out}/rank-{rank}.safetensors")
save_file(start, f"{out}/start-{rank}.safetensors")
"""


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes_keep_one_model(dataset, tmp_path):
    """DDP over gloo: after 3 steps both ranks hold identical trained weights (and they moved)."""
    from safetensors.torch import load_file

    script = tmp_path / "train_two.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out = tmp_path / "out"
    env = {**os.environ, **ENV, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), *sys.path])}
    # accelerate's own --cpu launcher starts several processes only through mpirun; its torchrun launcher
    # (--multi_gpu) does it on any machine, and the trainer's cpu=True (CLI --cpu) then joins them with gloo.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port"]
    command += ["29517", str(script), str(dataset), str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    zero, one = load_file(str(out / "rank-0.safetensors")), load_file(str(out / "rank-1.safetensors"))
    start = load_file(str(out / "start-0.safetensors"))
    assert zero.keys() == one.keys() and len(zero) > 100
    moved = 0
    for key in zero:
        torch.testing.assert_close(zero[key], one[key], rtol=0, atol=0)
        moved += not torch.equal(zero[key], start[key])
    assert moved > len(zero) // 2
    assert len(_log(out)) == 3 and (out / WEIGHTS / "model_index.json").is_file()
