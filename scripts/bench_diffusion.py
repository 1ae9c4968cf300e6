"""Benchmark the orbit-view diffusion: seconds per view and peak GPU memory at the release settings.

Full size: the SD 1.5 architecture with random weights (the compute does not depend on the values), 32 views at
512x512, DDIM 50 steps, eta 0.5, guidance 3, windows of 8, 3D-aware initial noise, fp16 on CUDA.

    python scripts/bench_diffusion.py                 # full size, needs a CUDA GPU
    python scripts/bench_diffusion.py --tiny          # tiny architecture, runs on a CPU in seconds (smoke test)
"""

from __future__ import annotations

import argparse
import time

import portrait3d.diffusion  # noqa: F401 - before torch/diffusers users (hides an unloadable torchvision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny architecture, CPU-friendly sizes")
    parser.add_argument("--views", type=int, help="views to generate (default: 32; tiny: 8)")
    parser.add_argument("--size", type=int, help="image size (default: 512; tiny: 64)")
    parser.add_argument("--steps", type=int, help="DDIM steps (default: 50; tiny: 2)")
    parser.add_argument("--window", type=int, default=8, help="views per window (default: 8)")
    parser.add_argument("--guidance", type=float, default=3.0, help="guidance scale (default: 3)")
    parser.add_argument("--device", default="auto", help="torch device (default: cuda when available)")
    parser.add_argument("--fp32", action="store_true", help="keep fp32 weights on CUDA (default: fp16)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    import torch
    from diffusers.utils import logging as diffusers_logging

    from portrait3d import progress
    from portrait3d.diffusion.components import SD15, TINY, random_components
    from portrait3d.diffusion.pipelines import Portrait360Pipeline

    views = args.views or (8 if args.tiny else 32)
    size = args.size or (64 if args.tiny else 512)
    steps = args.steps or (2 if args.tiny else 50)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cpu" and not args.tiny:
        progress.info("warning: full size on a CPU takes hours; pass --tiny for a smoke run")
    dtype = torch.float16 if device.type == "cuda" and not args.fp32 else torch.float32

    start = time.perf_counter()
    with torch.device(device):
        components = random_components(TINY if args.tiny else SD15, multiview=True, seed=args.seed)
    diffusers_logging.set_verbosity_error()  # its note on casting with .to() is noise here
    pipeline = Portrait360Pipeline(**components).to(device=device, dtype=dtype)
    pipeline.set_progress_bar_config(disable=True)
    build_seconds = time.perf_counter() - start
    params = sum(
        p.numel()
        for name in ("unet", "reference_unet", "controlnet", "vae")
        for p in getattr(pipeline, name).parameters()
    )

    rng = np.random.default_rng(args.seed)

    def images(count: int) -> list[np.ndarray]:
        return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]

    front, back = images(2)
    conditions, initial = images(views), images(views)

    def generate(count: int, num_steps: int) -> None:
        generator = torch.Generator(device=device).manual_seed(args.seed)
        pipeline(
            front,
            back,
            conditions[:count],
            initial[:count],
            num_inference_steps=num_steps,
            guidance_scale=args.guidance,
            generator=generator,
            window_size=args.window,
            height=size,
            width=size,
            output_type="np",
        )

    generate(min(views, args.window), 1)  # warm-up: kernels, allocator
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    generate(views, steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name} ({dtype}); architecture: {'tiny' if args.tiny else 'SD 1.5'}, {params / 1e6:.0f}M weights")
    print(
        f"setting: {views} views at {size}x{size}, {steps} DDIM steps, window {args.window}, guidance {args.guidance}"
    )
    print(f"build: {build_seconds:.1f} s")
    print(f"total: {seconds:.1f} s; per view: {seconds / views:.2f} s")
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        reserved = torch.cuda.max_memory_reserved(device) / 2**30
        print(f"peak GPU memory: {peak:.2f} GiB allocated, {reserved:.2f} GiB reserved")


if __name__ == "__main__":
    main()
