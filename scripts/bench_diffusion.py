"""Benchmark the orbit-view diffusion: seconds per view and peak GPU memory at the release settings.

Full size: the SD 1.5 architecture with random weights (the compute does not depend on the values), 32 views at
512x512, DDIM 50 steps, eta 0.5, guidance 3, windows of 8, 3D-aware initial noise, fp16 on CUDA.

    python scripts/bench_diffusion.py                 # full size, needs a CUDA GPU
    python scripts/bench_diffusion.py --tiny          # tiny architecture, runs on a CPU in seconds (smoke test)
    python scripts/bench_diffusion.py --pattern reference --views 8   # emulated reference compute pattern
    python scripts/bench_diffusion.py --scheduler dpm++ --steps 20 --views-per-batch 32
"""

from __future__ import annotations

import argparse
import time

import portrait3d.diffusion  # noqa: F401 - before torch/diffusers users (hides an unloadable torchvision)


def build(tiny: bool, device, dtype, seed: int = 0):
    """A Portrait360Pipeline with random weights (SD 1.5 or tiny) on ``device`` in ``dtype``; its weight count."""
    import torch
    from diffusers.utils import logging as diffusers_logging

    from portrait3d.diffusion.components import SD15, TINY, random_components
    from portrait3d.diffusion.pipelines import Portrait360Pipeline

    with torch.device(device):
        components = random_components(TINY if tiny else SD15, multiview=True, seed=seed)
    diffusers_logging.set_verbosity_error()  # its note on casting with .to() is noise here
    pipeline = Portrait360Pipeline(**components).to(device=device, dtype=dtype)
    pipeline.set_progress_bar_config(disable=True)
    params = sum(
        p.numel()
        for name in ("unet", "reference_unet", "controlnet", "vae")
        for p in getattr(pipeline, name).parameters()
    )
    return pipeline, params


def measure(
    pipeline,
    views: int,
    size: int,
    steps: int,
    window: int = 8,
    guidance: float = 3.0,
    seed: int = 0,
    views_per_batch: int | None = None,
    scheduler: str = "ddim",
    pattern: str = "pipeline",
) -> dict:
    """Time one generation of ``views`` views (after a one-step warm-up) and read the peak GPU memory.

    ``pattern``: ``pipeline`` (this project's sampler) or ``reference`` (the emulation of the DiffPortrait3D
    sampler's compute pattern, :mod:`portrait3d.diffusion.reference_pattern`; DDIM only, run under fp16
    autocast on CUDA as the reference does).
    """
    import contextlib

    import numpy as np
    import torch

    from portrait3d.diffusion.pipelines import scheduler_by_name
    from portrait3d.diffusion.reference_pattern import sample_reference_pattern

    device = pipeline.device
    rng = np.random.default_rng(seed)

    def images(count: int) -> list[np.ndarray]:
        return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]

    front, back = images(2)
    conditions, initial = images(views), images(views)
    release = pipeline.scheduler
    pipeline.scheduler = scheduler_by_name(scheduler, release.config)
    autocast = (
        torch.autocast("cuda", dtype=torch.float16)
        if device.type == "cuda" and pattern == "reference"
        else contextlib.nullcontext()
    )

    def generate(count: int, num_steps: int) -> None:
        generator = torch.Generator(device=device).manual_seed(seed)
        common = dict(num_inference_steps=num_steps, guidance_scale=guidance, generator=generator)
        common.update(window_size=window, height=size, width=size)
        if pattern == "reference":
            with autocast:
                latents = sample_reference_pattern(pipeline, front, back, conditions[:count], initial[:count], **common)
                pipeline.decode(latents)
        else:
            pipeline(
                front,
                back,
                conditions[:count],
                initial[:count],
                output_type="np",
                views_per_batch=views_per_batch,
                **common,
            )

    try:
        generate(min(views, views_per_batch or window), 1)  # warm-up: kernels, allocator
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        generate(views, steps)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    finally:
        pipeline.scheduler = release
    figures = {
        "pattern": pattern,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "dtype": str(pipeline.unet.dtype).replace("torch.", ""),
        "views": views,
        "size": size,
        "steps": steps,
        "scheduler": scheduler,
        "window": window,
        "guidance": guidance,
        "views_per_batch": views_per_batch or window,
        "seconds": round(seconds, 2),
        "seconds_per_view": round(seconds / views, 3),
    }
    if device.type == "cuda":
        figures["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        figures["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved(device) / 2**30, 2)
    return figures


def speed_ups(pipeline, channels_last: bool = False, compile: bool = False) -> None:
    """The usual diffusers speed-ups, to measure against the release setting (the profile on an H200 put 7.5 % of
    the kernel time in NCHW/NHWC conversions around cuDNN's convolutions and 13 % in waiting to launch kernels):
    channels-last weights and activations, and torch.compile of the denoising networks (in place: the pipeline
    keeps its modules)."""
    import torch

    networks = [pipeline.unet, pipeline.reference_unet, pipeline.controlnet]
    if channels_last:
        for module in [*networks, pipeline.vae]:
            module.to(memory_format=torch.channels_last)
    if compile:
        for module in networks:
            module.compile()


def kernel_table(pipeline, window: int, size: int, rows: int, views_per_batch=None, scheduler="ddim") -> str:
    """torch.profiler's table of the costliest kernels (self time on the device, or on the CPU without one) over
    one window, after a warm-up outside the profile; with the share of the total that attention takes. The
    profiled :func:`measure` runs its own one-step warm-up and then two steps, so three steps are counted."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = pipeline.device.type == "cuda"
    measure(pipeline, window, size, 1, window, views_per_batch=views_per_batch, scheduler=scheduler)  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        measure(pipeline, window, size, 2, window, views_per_batch=views_per_batch, scheduler=scheduler)
        if cuda:
            torch.cuda.synchronize()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = prof.key_averages()
    total = sum(getattr(e, key) for e in events) or 1
    attention = sum(
        getattr(e, key) for e in events if any(w in e.key.lower() for w in ("flash", "attention", "fmha", "sdpa"))
    )
    table = events.table(sort_by=key, row_limit=rows, max_name_column_width=70)
    return f"{table}\nattention kernels: {100 * attention / total:.1f}% of the self time"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny architecture, CPU-friendly sizes")
    parser.add_argument("--views", type=int, help="views to generate (default: 32; tiny: 8)")
    parser.add_argument("--size", type=int, help="image size (default: 512; tiny: 64)")
    parser.add_argument("--steps", type=int, help="sampler steps (default: 50; tiny: 2)")
    parser.add_argument("--window", type=int, default=8, help="views per window (default: 8)")
    parser.add_argument("--views-per-batch", type=int, default=None, help="views per UNet batch (default: a window)")
    parser.add_argument("--scheduler", choices=("ddim", "dpm++"), default="ddim", help="sampler (default: ddim)")
    parser.add_argument(
        "--pattern",
        choices=("pipeline", "reference"),
        default="pipeline",
        help="this project's sampler, or the emulation of the reference code's compute pattern (default: pipeline)",
    )
    parser.add_argument("--guidance", type=float, default=3.0, help="guidance scale (default: 3)")
    parser.add_argument("--device", default="auto", help="torch device (default: cuda when available)")
    parser.add_argument("--fp32", action="store_true", help="keep fp32 weights on CUDA (default: fp16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print torch.profiler's N costliest kernels of one window"
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="UNets, ControlNet and VAE in channels-last memory format (cuDNN's own layout: no NCHW/NHWC copies)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the UNets and the ControlNet (measured after warm-up)"
    )
    args = parser.parse_args()

    import torch

    from portrait3d import progress

    views = args.views or (8 if args.tiny else 32)
    size = args.size or (64 if args.tiny else 512)
    steps = args.steps or (2 if args.tiny else 50)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cpu" and not args.tiny:
        progress.info("warning: full size on a CPU takes hours; pass --tiny for a smoke run")
    # The reference keeps fp32 weights (under fp16 autocast); this project's pipeline runs fp16 weights on CUDA.
    fp32 = args.fp32 or args.pattern == "reference"
    dtype = torch.float16 if device.type == "cuda" and not fp32 else torch.float32

    start = time.perf_counter()
    pipeline, params = build(args.tiny, device, dtype, args.seed)
    build_seconds = time.perf_counter() - start
    speed_ups(pipeline, args.channels_last, args.compile)
    if args.profile:
        print(kernel_table(pipeline, args.window, size, args.profile, args.views_per_batch, args.scheduler))
    figures = measure(
        pipeline,
        views,
        size,
        steps,
        args.window,
        args.guidance,
        args.seed,
        args.views_per_batch,
        args.scheduler,
        args.pattern,
    )
    print(
        f"device: {figures['device']} ({dtype}); architecture: {'tiny' if args.tiny else 'SD 1.5'}, "
        f"{params / 1e6:.0f}M weights; pattern: {args.pattern}"
    )
    print(
        f"setting: {views} views at {size}x{size}, {steps} {args.scheduler} steps, window {args.window}, "
        f"{figures['views_per_batch']} views per batch, guidance {args.guidance}"
    )
    print(f"build: {build_seconds:.1f} s")
    print(f"total: {figures['seconds']:.1f} s; per view: {figures['seconds_per_view']:.2f} s")
    if device.type == "cuda":
        print(
            f"peak GPU memory: {figures['peak_allocated_gib']:.2f} GiB allocated, "
            f"{figures['peak_reserved_gib']:.2f} GiB reserved"
        )


if __name__ == "__main__":
    main()
