"""Benchmark group normalisation at the UNet's shapes: the profile of the orbit-view sampler on an H200 put about
a quarter of the kernel time in ``aten::native_group_norm`` (docs/BENCHMARKS.md), most of it in its statistics
kernel. Prints microseconds per call and the largest error against fp32 for each way of computing it.

    python scripts/bench_group_norm.py            # CUDA, fp16, batch 16 (8 views x guidance)
    python scripts/bench_group_norm.py --device cpu --dtype float32 --batch 2 --reps 3   # smoke run

Ways: ``native`` (torch.nn.functional.group_norm), ``var_mean`` (torch.var_mean over each group, then one
``addcmul`` with the per-channel scale and shift), ``compiled`` (torch.compile of the native call and the SiLU that
follows it in every ResNet block; with ``--compile``).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

SHAPES = ((320, 64), (640, 64), (640, 32), (960, 32), (1280, 16), (1280, 8))
"""(channels, side) of the SD 1.5 UNet's group norms at 512² (64² latents)."""


def group_norm_var_mean(x: torch.Tensor, groups: int, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5):
    """Group norm of (N, C, H, W) ``x`` from ``torch.var_mean`` of each group and one ``addcmul``: (N, C, H, W)."""
    n, c = x.shape[:2]
    var, mean = torch.var_mean(x.reshape(n, groups, -1), dim=-1, correction=0, keepdim=True)
    rstd = torch.rsqrt(var.float() + eps)  # (N, G, 1)
    scale = rstd.expand(n, groups, c // groups).reshape(n, c) * weight.float()  # (N, C)
    shift = bias.float() - mean.float().expand(n, groups, c // groups).reshape(n, c) * scale
    return torch.addcmul(shift[..., None, None].to(x.dtype), x, scale[..., None, None].to(x.dtype))


def native(x, groups, weight, bias):
    return F.silu(F.group_norm(x, groups, weight, bias, 1e-5))


def via_var_mean(x, groups, weight, bias):
    return F.silu(group_norm_var_mean(x, groups, weight, bias))


def timed(fn, inputs: tuple, reps: int, device: torch.device) -> float:
    """Microseconds per call of ``fn(*inputs)``, after two warm-up calls."""
    for _ in range(2):
        fn(*inputs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn(*inputs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    parser.add_argument("--batch", type=int, default=16, help="batch (default 16: 8 views x 2 for guidance)")
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of group norm + SiLU")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    ways = {"native": native, "var_mean": via_var_mean}
    if args.compile:
        ways["compiled"] = torch.compile(native, dynamic=False)
    generator = torch.Generator(device=device).manual_seed(0)
    totals = dict.fromkeys(ways, 0.0)
    for channels, side in SHAPES:
        # Activations with an offset and a spread like the UNet's: the statistics' precision matters.
        x = (torch.randn(args.batch, channels, side, side, device=device, generator=generator) * 3 + 1).to(dtype)
        weight = (1 + 0.1 * torch.randn(channels, device=device, generator=generator)).to(dtype)
        bias = (0.1 * torch.randn(channels, device=device, generator=generator)).to(dtype)
        reference = native(x.float(), 32, weight.float(), bias.float())
        row = [f"{channels:5d} x {side:2d}²"]
        for name, fn in ways.items():
            inputs = (x, 32, weight, bias)
            error = float((fn(*inputs).float() - reference).abs().max())
            micros = timed(fn, inputs, args.reps, device)
            totals[name] += micros
            row.append(f"{name} {micros:8.1f} µs (max error {error:.1e})")
        print("  ".join(row))
    print("sum over the shapes: " + ", ".join(f"{name} {micros:.0f} µs" for name, micros in totals.items()))


if __name__ == "__main__":
    main()
