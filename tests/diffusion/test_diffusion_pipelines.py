"""BackViewPipeline and Portrait360Pipeline end to end with tiny random components (CPU, fixed seeds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from portrait3d.diffusion.components import random_back_view, random_portrait360
from portrait3d.diffusion.pipelines import BackViewPipeline, Portrait360Pipeline, release_scheduler

SIZE = 64
STEPS = 2


def images(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(count)]


@pytest.fixture(scope="module")
def orbit_pipeline() -> Portrait360Pipeline:
    return random_portrait360()


@pytest.fixture(scope="module")
def back_pipeline() -> BackViewPipeline:
    return random_back_view()


@pytest.fixture(scope="module")
def orbit_seed0(orbit_pipeline) -> np.ndarray:
    return run_orbit(orbit_pipeline, seed=0)


@pytest.fixture(scope="module")
def back_seed0(back_pipeline) -> np.ndarray:
    return run_back(back_pipeline, seed=0)


def run_orbit(pipeline: Portrait360Pipeline, seed: int = 0, initial: bool = True, **kwargs) -> np.ndarray:
    front, back = images(2, seed=10)
    return pipeline(
        front,
        back,
        images(8, seed=11),
        images(8, seed=12) if initial else None,
        num_inference_steps=STEPS,
        generator=torch.Generator().manual_seed(seed),
        height=SIZE,
        width=SIZE,
        output_type="np",
        **kwargs,
    ).images


def run_back(pipeline: BackViewPipeline, seed: int = 0) -> np.ndarray:
    front, condition = images(2, seed=20)
    return pipeline(
        front,
        condition,
        num_inference_steps=STEPS,
        generator=torch.Generator().manual_seed(seed),
        height=SIZE,
        width=SIZE,
        output_type="np",
    ).images


def test_release_scheduler_matches_the_ldm_ddim_sampler():
    scheduler = release_scheduler()
    scheduler.set_timesteps(50)
    assert scheduler.timesteps[0] == 981 and scheduler.timesteps[-1] == 1 and len(scheduler.timesteps) == 50
    # Linear-in-sqrt betas from 0.00085 to 0.012 (the LDM "linear" schedule).
    assert np.isclose(scheduler.betas[0].item(), 0.00085) and np.isclose(scheduler.betas[-1].item(), 0.012)
    assert scheduler.config.set_alpha_to_one is False and scheduler.config.clip_sample is False


def test_orbit_pipeline_runs_and_is_deterministic(orbit_pipeline, orbit_seed0):
    first = orbit_seed0
    assert first.shape == (8, SIZE, SIZE, 3) and np.isfinite(first).all()
    again = run_orbit(orbit_pipeline, seed=0)
    other = run_orbit(orbit_pipeline, seed=1)
    assert np.allclose(first, again, atol=1e-5)
    assert np.abs(first - other).max() > 1e-3


def test_orbit_initial_images_change_the_start(orbit_pipeline, orbit_seed0):
    with_initial = orbit_seed0
    gaussian = run_orbit(orbit_pipeline, seed=0, initial=False)
    assert np.abs(with_initial - gaussian).max() > 1e-3


def test_orbit_pipeline_windows_and_latent_output(orbit_pipeline):
    front, back = images(2, seed=10)
    latents = orbit_pipeline(
        front,
        back,
        images(8, seed=11),
        num_inference_steps=1,
        window_size=3,
        height=SIZE,
        width=SIZE,
        output_type="latent",
    ).images  # windows of 3, 3 and 2 views
    assert latents.shape == (8, 4, SIZE // 8, SIZE // 8)
    with pytest.raises(ValueError, match="window_size"):
        run_orbit(orbit_pipeline, window_size=33)


def test_back_view_pipeline_runs_and_is_deterministic(back_pipeline, back_seed0):
    first = back_seed0
    assert first.shape == (1, SIZE, SIZE, 3) and np.isfinite(first).all()
    assert np.allclose(first, run_back(back_pipeline, seed=0), atol=1e-5)


def test_pipelines_round_trip_through_save_pretrained(orbit_pipeline, back_pipeline, orbit_seed0, back_seed0, tmp_path):
    orbit_pipeline.save_pretrained(tmp_path)
    back_pipeline.save_pretrained(tmp_path / "back_view")
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "Portrait360Pipeline"
    assert set(index) >= {"unet", "reference_unet", "controlnet", "vae", "scheduler", "prompt_embeds"}
    orbit = Portrait360Pipeline.from_pretrained(tmp_path, local_files_only=True)
    back = BackViewPipeline.from_pretrained(tmp_path / "back_view", local_files_only=True)
    assert type(orbit.unet).__name__ == "MultiViewUNet"
    assert np.allclose(run_orbit(orbit, seed=0), orbit_seed0, atol=1e-5)
    assert np.allclose(run_back(back, seed=0), back_seed0, atol=1e-5)


def test_guidance_batches_branches_and_calls_the_reference_unet_once_per_step(orbit_pipeline):
    calls = {"reference": [], "controlnet": [], "unet": []}
    hooks = [
        orbit_pipeline.reference_unet.register_forward_hook(
            lambda m, args, out: calls["reference"].append(args[0].shape[0])
        ),
        orbit_pipeline.controlnet.register_forward_hook(
            lambda m, args, out: calls["controlnet"].append(args[0].shape[0])
        ),
        orbit_pipeline.unet.register_forward_hook(
            lambda m, args, kwargs, out: calls["unet"].append((args[0].shape[0], kwargs["unconditional_count"])),
            with_kwargs=True,
        ),
    ]
    try:
        run_orbit(orbit_pipeline, window_size=4)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls["reference"] == [2] * STEPS  # front + back, once per step for both windows
    assert calls["controlnet"] == [4] * (2 * STEPS)  # conditional views only
    assert calls["unet"] == [(8, 4)] * (2 * STEPS)  # unconditional + conditional in one batch


def test_batched_windows_and_shared_bank_match_the_reference_pattern(orbit_pipeline):
    """The fast path (one bank per step, two windows in one batch, branches batched) = the reference pattern."""
    from portrait3d.diffusion.reference_pattern import sample_reference_pattern

    front, back = images(2, seed=10)
    conditions, initial = images(8, seed=11), images(8, seed=12)
    common = dict(num_inference_steps=STEPS, window_size=4, height=SIZE, width=SIZE)
    fast = orbit_pipeline(
        front,
        back,
        conditions,
        initial,
        generator=torch.Generator().manual_seed(3),
        views_per_batch=8,
        output_type="latent",
        **common,
    ).images
    reference = sample_reference_pattern(
        orbit_pipeline, front, back, conditions, initial, generator=torch.Generator().manual_seed(3), **common
    )
    assert fast.shape == reference.shape == (8, 4, SIZE // 8, SIZE // 8)
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-4)
    # The comparison can fail: the reference pattern with other noise differs.
    other = sample_reference_pattern(
        orbit_pipeline, front, back, conditions, initial, generator=torch.Generator().manual_seed(4), **common
    )
    assert (other - reference).abs().max() > 1e-2


def test_dpm_solver_is_an_option_and_ddim_stays_the_default(orbit_pipeline, orbit_seed0):
    from portrait3d.diffusion.pipelines import dpm_solver_scheduler, scheduler_by_name

    assert type(orbit_pipeline.scheduler).__name__ == "DDIMScheduler"
    ddim = orbit_pipeline.scheduler
    try:
        orbit_pipeline.scheduler = scheduler_by_name("dpm++", ddim.config)
        orbit_pipeline.scheduler.set_timesteps(3)
        assert int(orbit_pipeline.scheduler.timesteps[0]) == 999  # where the 3D-aware initial noise sits
        dpm = run_orbit(orbit_pipeline, seed=0)
    finally:
        orbit_pipeline.scheduler = ddim
    assert dpm.shape == orbit_seed0.shape and np.isfinite(dpm).all()
    assert np.abs(dpm - orbit_seed0).max() > 1e-3
    assert np.allclose(run_orbit(orbit_pipeline, seed=0), orbit_seed0, atol=1e-5)
    assert dpm_solver_scheduler().config.algorithm_type == "dpmsolver++"
    with pytest.raises(ValueError, match="scheduler"):
        scheduler_by_name("euler")


def test_channels_last_gives_the_same_views(orbit_seed0):
    """``scripts/bench_diffusion.py --channels-last`` (a GPU speed-up to measure): the view attention, reference
    attention and ControlNet read their activations by shape, not by memory layout, so the views are the same."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "bench_diffusion", Path(__file__).resolve().parents[2] / "scripts" / "bench_diffusion.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    pipeline = random_portrait360()  # its own copy: the module's fixture stays contiguous
    bench.speed_ups(pipeline, channels_last=True)
    conv = next(m for m in pipeline.unet.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(run_orbit(pipeline, seed=0), orbit_seed0, atol=1e-4)


def test_group_norm_of_the_benchmark_matches_torchs():
    """``scripts/bench_group_norm.py`` times its ``var_mean`` group norm against torch's: it must compute the same
    thing (fp32 on the CPU here; the fp16 error against fp32 is printed on the GPU)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "bench_group_norm", Path(__file__).resolve().parents[2] / "scripts" / "bench_group_norm.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, 8, 8, generator=generator) * 3 + 1
    weight, bias = 1 + 0.1 * torch.randn(64, generator=generator), 0.1 * torch.randn(64, generator=generator)
    expected = torch.nn.functional.group_norm(x, 32, weight, bias, 1e-5)
    torch.testing.assert_close(bench.group_norm_var_mean(x, 32, weight, bias), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bench.via_var_mean(x, 32, weight, bias), bench.native(x, 32, weight, bias))
