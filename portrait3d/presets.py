"""Presets of the whole run: one dataclass config per stage, by name.

``configs/<name>.yaml`` are dumps of these (``python scripts/dump_presets.py``);
a test keeps them in sync. ``fast`` is the CPU default (about 80-90 seconds on two
cores), ``standard`` is meant for a CUDA GPU, ``tiny`` is for tests and smoke
runs (low resolution, seconds per stage, poor quality).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from nerf.export import ExportConfig
from nerf.fit import PRESETS as FIT_PRESETS
from nerf.fit import FitConfig
from nerf.mesh import BakeConfig, MeshConfig
from nerf.turntable import TurntableConfig
from nerf.warm_start import WarmStartConfig
from portrait3d.proxy.stage import ProxyOptions
from portrait3d.splat.distill import DistillOptions
from portrait3d.splat.stage import SplatOptions


@dataclass
class DiffusionPreset:
    """Sampling options of the diffusion generator's two stages (back view, orbit views)."""

    steps: int = 50
    """Denoising steps (50 as released)."""
    size: int = 512
    """Generated image size in pixels (512 as released)."""
    scheduler: str = "ddim"
    """``ddim`` (as released) or ``dpm++``."""


@dataclass
class AssetPreset:
    """The per-stage options that make-asset uses."""

    proxy: ProxyOptions = field(default_factory=ProxyOptions)
    """Proxy head and its renders (the number of views comes from ``--views``)."""
    fit: FitConfig = field(default_factory=FitConfig)
    """The NeRF fit."""
    export: ExportConfig = field(default_factory=ExportConfig)
    """Mesh extraction, texture bake and export."""
    turntable: TurntableConfig = field(default_factory=TurntableConfig)
    """The turntable video."""
    diffusion: DiffusionPreset = field(default_factory=DiffusionPreset)
    """Sampling of the diffusion generator (``--generator diffusion`` only)."""
    splat: SplatOptions = field(default_factory=SplatOptions)
    """The real-time splats (``export-splat``)."""


PRESETS: dict[str, AssetPreset] = {
    # The fast preset's views are 512²: a 1024² bake holds all their detail (same held-out PSNR as 2048², 40 % of
    # the bake's time; docs/BENCHMARKS.md), resized to the 2048² texture.
    "fast": AssetPreset(fit=FIT_PRESETS["fast"], export=ExportConfig(bake=BakeConfig(bake_size=1024))),
    "standard": AssetPreset(
        fit=FIT_PRESETS["standard"],
        export=ExportConfig(
            mesh=MeshConfig(resolution=256, triangles=100_000, depth_size=512, depth_views=32),
            bake=BakeConfig(texture_size=4096),
        ),
        splat=SplatOptions(distill=DistillOptions(gaussians=100_000, steps=2000, resolution=256, sh_degree=3)),
    ),
    "tiny": AssetPreset(
        proxy=ProxyOptions(size=128, texture_width=512, voxel=0.01),
        fit=dataclasses.replace(
            FIT_PRESETS["fast"],
            image_size=48,
            iterations=40,
            generated_iterations=None,  # 40 steps already
            rays_per_batch=256,
            warm_start=WarmStartConfig(steps=20, points_per_step=2048),
        ),
        export=ExportConfig(
            mesh=MeshConfig(resolution=64, triangles=5_000, depth_size=64), bake=BakeConfig(texture_size=256)
        ),
        turntable=TurntableConfig(frames=8, size=128),
        diffusion=DiffusionPreset(steps=2, size=64),
        splat=SplatOptions(distill=DistillOptions(gaussians=600, steps=4, resolution=32, sh_degree=0, nerf_views=0)),
    ),
}
"""Named presets for ``make-asset --preset``."""


def preset_document(name: str) -> dict:
    """The preset as plain data (what ``configs/<name>.yaml`` holds)."""
    return {"preset": name, **dataclasses.asdict(PRESETS[name])}
