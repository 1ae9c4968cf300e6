"""Fit an instant-NGP-style NeRF to a run's views, on a CPU or on CUDA.

Reads ``RUN/transforms.json`` (see :mod:`nerf.dataset`) and the views it names;
writes, under ``RUN/nerf/``:

- ``nerfstudio_models/step-NNNNNNNNN.ckpt``: the checkpoint, in nerfstudio's
  layout (``{"step", "pipeline": {"_model.volume.…": tensor}}``);
- ``config.yml``: the nerfstudio ``TrainerConfig`` of the ``portrait3d-ngp``
  method pointing at that checkpoint (``ns-viewer --load-config RUN/nerf/config.yml``,
  ``ns-render``, ``nerfstudio.utils.eval_utils.eval_setup``); it holds
  absolute paths, as nerfstudio's own configs do;
- ``volume.json``: the :class:`nerf.volume.VolumeConfig`, so that the field
  loads without nerfstudio (:func:`load_field`).

One training loop for both devices: the model is :class:`nerf.volume.NGPVolume`
(hash grid + small MLPs + occupancy grid). On a CPU everything is pure torch;
on CUDA the hash grid uses tinycudann when installed and rays are marched by
nerfacc. The occupancy grid starts as the visual hull of the alpha masks and
then follows the density, so that rays are sampled only near the head.

API for mesh extraction and turntables::

    from nerf.fit import load_field
    field = load_field(run_dir)            # an NGPVolume in eval mode, on the CPU
    with torch.no_grad():
        sigma = field.density(points)      # (N, 3) PanoHead world points -> (N,)
        rgb = field.rgb(points, view_dirs) # (N, 3), (N, 3) unit dirs -> (N, 3) in [0, 1]
    rgb, alpha = field.render(camera, width, height)  # portrait3d.cameras.Camera ->
                                           # (H, W, 3) float32 over white, (H, W) float32
    field.config.field.half_extent         # the field is empty outside this cube

``field.grid.occupied`` ((R, R, R) bool, index [x, y, z]) tells which voxels
of the cube hold the head.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nerf.appearance import ViewAppearance, ViewReliability, ViewShift
from nerf.dataset import TRANSFORMS, read_views
from nerf.field import FieldConfig
from nerf.volume import NGPVolume, VolumeConfig, photometric_loss
from nerf.warm_start import PROXY_MESH, WarmStartConfig, anchor_loss, load_prior, warm_start
from portrait3d import progress
from portrait3d.errors import UserError
from portrait3d.run import Run, atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from portrait3d.runner import Stage

NERF_DIR = "nerf"
CHECKPOINT_DIR = "nerf/nerfstudio_models"
VOLUME_CONFIG = "nerf/volume.json"
NERFSTUDIO_CONFIG = "nerf/config.yml"


@dataclass
class FitConfig:
    """Options of ``portrait3d fit-nerf``."""

    image_size: int = 256
    """Train on the views resized to this square size (pixels)."""
    iterations: int = 800
    """Optimisation steps (a fixed number, so that one seed gives one result). From the proxy head's warm start,
    on the NeRF benchmark's head with its exact proxy (``scripts/bench_nerf.py --prior exact``): 32.94 dB
    held-out, Chamfer 0.244 %, about 33 s on 2 cores; 1100 steps gave 0.2-0.5 dB more (seeds 0 and 1) in 15 s
    more. On the sample, 34.24 dB of training PSNR against 34.81 with 1100 steps (docs/BENCHMARKS.md, "Fewer
    steps for the proxy's renders")."""
    generated_iterations: int | None = 800
    """Steps when the views are generated (``--generator diffusion``; None: ``iterations``), see
    :meth:`steps_for`; the same as ``iterations`` in the fast preset, kept apart because the two were measured
    apart. Longer fits learn each generated view's own detail and jitter: on the benchmark's
    simulated diffusion views (without the anchor) 800 steps gave 29.42 dB held-out, Chamfer 0.63 % and a
    normal angle of 7.5°, 1100 steps 29.10 dB, 0.78 % and 10.1° (docs/BENCHMARKS.md)."""
    generated_anchor_weight: float = 1.0
    """:attr:`WarmStartConfig.anchor_weight` when the views are generated (see :meth:`for_views`): the density
    keeps to the proxy's shape outside a band of ``warm_start.anchor_tolerance``. On the benchmark's simulated
    diffusion views (800 steps) it takes the Chamfer from 0.63 % to 0.39 %, the normal angle from 7.5° to
    4.1° and the held-out PSNR from 29.4 to 31.1 dB (docs/BENCHMARKS.md, "The proxy anchor")."""
    max_seconds: float = 0.0
    """Stop early after this many seconds of training (0: no limit). A time budget makes the result
    depend on the machine's load: off unless asked for (``--max-seconds``)."""
    rays_per_batch: int = 1024
    """Rays per step."""
    foreground_fraction: float = 0.8
    """Share of each batch drawn from pixels near the foreground (the rest: anywhere)."""
    learning_rate: float = 1e-2
    """Adam learning rate at the start; decays exponentially to a tenth by the last step or the time budget."""
    mask_loss_weight: float = 0.1
    """Weight of the loss between rendered opacity and the views' alpha."""
    carve_votes: int = 2
    """Views that must see a voxel outside their masks before the visual hull drops it
    (:meth:`nerf.occupancy.OccupancyGrid.carve`; 1: the classic hull, where one plainly wrong silhouette, like
    a generated view of the wrong side, cuts the head away)."""
    occupancy_warmup_steps: int = 32
    """Steps on the visual hull alone before the grid follows the density."""
    occupancy_update_every: int = 16
    """Steps between occupancy grid updates (nerfacc's and instant-NGP's interval). The grid's density estimate
    decays at the same rate per step whatever the interval (0.95 per 8 steps)."""
    occupancy_samples: int = 1 << 16
    """Voxels whose density each grid update refreshes (the first update: every voxel of the hull)."""
    occupancy_near_share: float = 0.875
    """Share of ``occupancy_samples`` drawn from the occupied voxels and a ring of one voxel around them, the
    rest from the whole hull (:meth:`nerf.occupancy.OccupancyGrid.update`)."""
    seed: int = 0
    """Random seed."""
    volume: VolumeConfig = field(
        default_factory=lambda: VolumeConfig(
            field=FieldConfig(num_levels=8, max_resolution=512), render_step_size=1.0 / 128
        )
    )
    """Field, occupancy grid and ray marching."""
    view_appearance: bool = True
    """Learn a colour gain and offset per view while fitting (:class:`nerf.appearance.ViewAppearance`), so
    that views with their own exposure or colour cast (generated views) do not stain the field."""
    appearance_penalty: float = 1.0
    """Weight of the penalty that keeps the per-view gains and offsets near identity."""
    view_shift: bool = False
    """Learn an image-plane shift of a few pixels per view while fitting (:class:`nerf.appearance.ViewShift`),
    so that generated views that are off by a few pixels do not blur the head and its silhouette."""
    shift_penalty: float = 1e-3
    """Weight of the penalty on the squared per-view shifts (in pixels)."""
    view_weighting: bool = True
    """Weigh each view's colour loss down when it stays far above the typical view's
    (:class:`nerf.appearance.ViewReliability`): a plainly wrong view stops pulling the field."""
    view_weighting_after: float = 0.2
    """Share of the steps after which the view weights apply (the losses are measured before)."""
    outlier_sigmas: float = 4.0
    """A view whose running colour loss is more than this many robust standard deviations above the median
    view's weighs less, down to 0 at twice that (:class:`nerf.appearance.ViewReliability`; 0: the ratio test
    alone). The view's weight applies to its opacity loss too: a wrong view's silhouette is as wrong as its
    colours."""
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)
    """Start the density, colour and occupancy from the run's proxy head (``proxy/head.ply``) when it has one."""

    def steps_for(self, generated: bool) -> int:
        """The number of steps for rendered (False) or generated (True) views."""
        if generated and self.generated_iterations is not None:
            return self.generated_iterations
        return self.iterations

    def for_views(self, generated: bool) -> FitConfig:
        """This fit for the proxy's exact renders (False: unchanged) or for generated views (True), which are
        off by a pixel or two from each other and disagree in detail: a per-view shift,
        ``generated_iterations`` steps and the proxy anchor."""
        if not generated:
            return self
        return dataclasses.replace(
            self,
            # The shift's bilinear read of the target costs exact renders 0.2 dB (docs/BENCHMARKS.md, "View shift").
            view_shift=True,
            iterations=self.steps_for(True),
            warm_start=dataclasses.replace(self.warm_start, anchor_weight=self.generated_anchor_weight),
        )


PRESETS: dict[str, FitConfig] = {
    "fast": FitConfig(),
    "standard": FitConfig(
        image_size=512,
        iterations=10000,
        generated_iterations=None,  # not measured at this size
        rays_per_batch=4096,
        volume=VolumeConfig(
            field=FieldConfig(num_levels=16, log2_hashmap_size=19, max_resolution=2048),
            grid_resolution=128,
            render_step_size=1.0 / 384,
        ),
    ),
}
"""Named fits: ``fast`` (256², 800 steps from the proxy head; about 33 s on 2 quiet cores of an AMD EPYC) and
``standard`` (512², for CUDA)."""


def resolve_device(name: str) -> torch.device:
    """``auto`` | ``cuda`` | ``cpu`` -> a torch device (``cuda`` without a GPU is a UserError)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is available to torch (use --device cpu or auto)")
    if name not in ("cuda", "cpu"):
        raise UserError(f"--device: expected auto, cuda or cpu, got {name!r}")
    return torch.device(name)


@dataclass
class _Rays:
    """All training rays, flattened over views: every tensor is (V*H*W, k)."""

    origins: torch.Tensor
    directions: torch.Tensor
    rgba: torch.Tensor
    near_foreground: torch.Tensor


def _training_rays(views, size: int, device: torch.device) -> tuple[_Rays, torch.Tensor]:
    """Rays, colours and masks of all views; also the (V, H, W) bool alpha masks."""
    origins, directions, rgba = [], [], []
    for view in views:
        o, d = view.camera.rays(size, size)
        origins.append(torch.as_tensor(o.reshape(-1, 3), dtype=torch.float32))
        directions.append(torch.as_tensor(d.reshape(-1, 3), dtype=torch.float32))
        rgba.append(torch.as_tensor(view.rgba.reshape(-1, 4), dtype=torch.float32) / 255.0)
    masks = torch.stack([torch.as_tensor(v.rgba[..., 3] > 127) for v in views])
    # Pixels within a few pixels of the foreground: where the colour and the silhouette are learnt.
    near = torch.nn.functional.max_pool2d(masks.float()[:, None], 9, stride=1, padding=4)[:, 0] > 0.5
    rays = _Rays(
        torch.cat(origins).to(device),
        torch.cat(directions).to(device),
        torch.cat(rgba).to(device),
        near.reshape(-1).to(device),
    )
    return rays, masks


def deterministic(device: torch.device) -> None:
    """Make a fit a function of its seed: same command, same seed, same machine -> same checkpoint.

    Every random draw comes from the seeded generators; on a CPU torch's kernels are then
    deterministic for a fixed number of threads (the machine's). On CUDA, deterministic
    kernels would slow the fit down; there the result agrees to floating-point tolerance only.
    """
    if device.type == "cpu":
        # torch.use_deterministic_algorithms also sets torch._inductor's flag, whose import costs 1-2 s of
        # every fit; nothing here is compiled, so only the kernels' flag is set (the same call without it).
        torch._C._set_deterministic_algorithms(True, warn_only=True)


def stage(config: FitConfig, device: str = "auto") -> Stage:
    """``fit-nerf``: the NeRF fitted to ``transforms.json`` (``nerf/``)."""
    device = resolve_device(device).type
    return Stage(
        "fit-nerf",
        lambda run, _opts: fit(run, config, device),
        {"device": device, "config": dataclasses.asdict(config)},
        # The warm start reads the proxy head when the run has one (nerf.warm_start).
        inputs=(TRANSFORMS, "views", PROXY_MESH),
        optional=(PROXY_MESH,),
        outputs=(NERF_DIR,),
        needs="run `portrait3d dataset {run}` first",
    )


def fit(run: Run, config: FitConfig, device: str = "auto") -> dict:
    """Fit the volume to ``RUN/transforms.json`` and write ``RUN/nerf/``.

    Returns:
        Information for the report: ``iterations``, ``train_seconds``,
        ``train_psnr`` (of the last batches), ``device``, ``implementation``, ``sampler``.
    """
    torch_device = resolve_device(device)
    run.require(TRANSFORMS, hint=f"run `portrait3d dataset {run.root}` first")
    deterministic(torch_device)
    torch.manual_seed(config.seed)
    views = read_views(run.root, config.image_size)
    rays, masks = _training_rays(views, config.image_size, torch_device)
    volume = NGPVolume(config.volume, torch_device.type).to(torch_device)
    volume.grid.carve([v.camera for v in views], masks.to(torch_device), dilate_px=2, votes=config.carve_votes)
    start = time.perf_counter()
    prior = load_prior(volume, run.root, config.warm_start)
    warm = warm_start(volume, prior, config.warm_start, config.seed) if prior is not None else None
    anchor = prior if prior is not None and config.warm_start.anchor_weight > 0 else None
    anchor_generator = torch.Generator().manual_seed(config.seed + 1)  # CPU, as the prior's tables
    warm_seconds = time.perf_counter() - start
    if warm is not None:
        progress.info(
            f"fit-nerf: warm start from {PROXY_MESH} in {warm_seconds:.1f} s "
            f"(occupancy narrowed to {warm['occupancy_kept'] * 100:.1f}% of the cube)"
        )
    progress.info(
        f"fit-nerf: {len(views)} views at {config.image_size}px on {torch_device.type} "
        f"(hash grid: {volume.field.implementation}, sampler: {volume.sampler}); "
        f"visual hull {float(volume.grid.hull.float().mean()) * 100:.1f}% of the cube"
    )
    appearance = ViewAppearance(len(views)).to(torch_device) if config.view_appearance else None
    shift = ViewShift(rays.rgba, config.image_size) if config.view_shift else None
    reliability = ViewReliability(len(views), device=torch_device, outlier_sigmas=config.outlier_sigmas)
    params = list(volume.parameters())
    for module in (appearance, shift):
        params += list(module.parameters()) if module is not None else []
    # fused: one kernel for all parameters (4x faster than the per-tensor loop on a CPU; CUDA has one too).
    optimizer = torch.optim.Adam(params, lr=config.learning_rate, betas=(0.9, 0.99), eps=1e-15, fused=True)
    pixels_per_view = config.image_size * config.image_size
    foreground_index = torch.nonzero(rays.near_foreground, as_tuple=True)[0]
    num_rays = rays.origins.shape[0]
    num_fg = int(config.rays_per_batch * config.foreground_fraction) if foreground_index.numel() else 0
    generator = torch.Generator(device=torch_device).manual_seed(config.seed)
    recent_psnr: list[float] = []
    start = time.perf_counter()
    step = 0
    samples = 0
    update_samples = 0
    for step in progress.bar(range(config.iterations), total=config.iterations, desc="fit-nerf"):
        if config.max_seconds and time.perf_counter() - start > config.max_seconds:
            progress.info(f"fit-nerf: stopped at step {step} (time budget of {config.max_seconds:.0f} s)")
            break
        if step >= config.occupancy_warmup_steps and step % config.occupancy_update_every == 0:
            update_samples += volume.grid.update(
                volume.density,
                config.volume.density_threshold,
                decay=0.95 ** (config.occupancy_update_every / 8),
                samples=config.occupancy_samples,
                near_share=config.occupancy_near_share,
            )
        pick = torch.cat(
            [
                foreground_index[
                    torch.randint(foreground_index.numel(), (num_fg,), device=torch_device, generator=generator)
                ],
                torch.randint(num_rays, (config.rays_per_batch - num_fg,), device=torch_device, generator=generator),
            ]
        )
        background = torch.rand(pick.numel(), 3, device=torch_device, generator=generator)
        view = pick // pixels_per_view
        out = volume.render_rays(rays.origins[pick], rays.directions[pick], background, jitter=True)
        rgba = rays.rgba[pick] if shift is None else shift(pick)
        with torch.no_grad():  # the target as the render shows it, for the view weights and the PSNR log
            seen = rgba[:, :3] * rgba[:, 3:] + background * (1 - rgba[:, 3:])
        samples += int(out["num_samples"])
        rgb = out["rgb"]
        if appearance is not None:
            rgb = appearance(rgb, out["accumulation"], background, view)
        ray_weight = None
        if config.view_weighting:
            reliability.update(view, torch.abs(rgb.detach() - seen).mean(dim=-1))
            if step >= config.view_weighting_after * config.iterations:
                ray_weight = reliability.weights()[view]
        losses = photometric_loss(
            rgb,
            out["accumulation"],
            rgba,
            background,
            config.mask_loss_weight,
            ray_weight,
            ray_weight if config.outlier_sigmas > 0 else None,
        )
        if appearance is not None:
            losses["appearance_penalty"] = config.appearance_penalty * appearance.penalty()
        if shift is not None:
            losses["shift_penalty"] = config.shift_penalty * shift.penalty()
        if anchor is not None:
            losses["proxy_anchor"] = config.warm_start.anchor_weight * anchor_loss(
                volume.field, anchor, config.warm_start, anchor_generator
            )
        loss = sum(losses.values())
        if not loss.requires_grad:  # no ray met an occupied voxel this step
            continue
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # Exponential decay over the run, measured in steps or in the time budget, whichever runs out first.
        done = step / max(config.iterations, 1)
        if config.max_seconds:
            done = max(done, (time.perf_counter() - start) / config.max_seconds)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * 0.1 ** min(done, 1.0)
        if step % 10 == 0:
            mse = float(torch.mean((out["rgb"].detach() - seen) ** 2))
            recent_psnr = (recent_psnr + [-10 * math.log10(max(mse, 1e-10))])[-10:]
            if step % 50 == 0:
                progress.debug(
                    f"  step {step}: psnr {recent_psnr[-1]:.2f}, {float(out['num_samples']) / pick.numel():.1f} "
                    f"samples/ray, {time.perf_counter() - start:.0f} s"
                )
    else:
        step = config.iterations
    seconds = time.perf_counter() - start
    dropped = volume.grid.drop_islands()
    progress.debug(f"fit-nerf: {dropped} occupied voxels apart from the head emptied (floaters)")
    volume.eval()
    save(run, volume, config, step)
    return {
        "iterations": step,
        "train_seconds": round(seconds, 2),
        "train_psnr": round(float(np.mean(recent_psnr)), 2) if recent_psnr else None,
        "device": torch_device.type,
        "implementation": volume.field.implementation,
        # A CPU fit is bit-reproducible for one thread count only (see ``deterministic``).
        "cpu_threads": torch.get_num_threads() if torch_device.type == "cpu" else None,
        "sampler": volume.sampler,
        # Field evaluations per training ray: what a step costs, whatever the machine's load.
        "samples_per_ray": round(samples / max(step * config.rays_per_batch, 1), 2),
        # Density evaluations of the occupancy grid's updates, per step (no gradient: cheaper than the above).
        "grid_samples_per_step": round(update_samples / max(step, 1)),
        "views": len(views),
        "image_size": config.image_size,
        "floater_voxels_emptied": dropped,
        "warm_start": warm,
        "view_weights": [round(float(w), 3) for w in reliability.weights()] if config.view_weighting else None,
        "view_losses": [round(float(v), 4) for v in reliability.loss] if config.view_weighting else None,
        "view_shifts_px": (
            [[round(float(p), 2) for p in row] for row in shift.pixels.detach().cpu()] if shift is not None else None
        ),
        "view_gains": (
            [[round(float(g), 3) for g in row] for row in torch.exp(appearance.log_gain.detach()).cpu()]
            if appearance is not None
            else None
        ),
        "warm_start_seconds": round(warm_seconds, 2) if warm is not None else None,
        "proxy_anchor_weight": config.warm_start.anchor_weight if anchor is not None else None,
    }


def checkpoint_state(volume: NGPVolume, step: int) -> dict:
    """The checkpoint in nerfstudio's layout: the pipeline's model (``_model.``) holds the volume."""
    pipeline = {f"_model.volume.{k}": v.detach().cpu() for k, v in volume.state_dict().items()}
    pipeline["_model.device_indicator_param"] = torch.empty(0)
    return {"step": int(step), "pipeline": pipeline, "optimizers": {}, "scalers": {}}


def save(run: Run, volume: NGPVolume, config: FitConfig, step: int) -> None:
    """Write the checkpoint, ``volume.json`` and (when nerfstudio imports) ``config.yml``."""
    checkpoint_dir = run.path(CHECKPOINT_DIR)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for old in checkpoint_dir.glob("step-*.ckpt"):
        old.unlink()
    # Saved through a buffer: torch names the zip's inner folder after the file, and the temporary
    # name is random, so the same weights would give different bytes.
    buffer = io.BytesIO()
    torch.save(checkpoint_state(volume, step), buffer)
    atomic_write_bytes(checkpoint_dir / f"step-{step:09d}.ckpt", buffer.getvalue())
    atomic_write_json(run.path(VOLUME_CONFIG), dataclasses.asdict(config.volume))
    try:
        text = nerfstudio_config_yaml(run.root, config, step)
    except ImportError as exc:
        progress.info(f"fit-nerf: nerfstudio is not installed ({exc}); wrote the checkpoint without config.yml")
        return
    atomic_write_text(run.path(NERFSTUDIO_CONFIG), text)


def nerfstudio_config_yaml(run_dir: str | Path, config: FitConfig, step: int) -> str:
    """The ``config.yml`` that makes nerfstudio load ``RUN/nerf/nerfstudio_models``.

    nerfstudio looks for checkpoints in
    ``output_dir/experiment_name/method_name/timestamp/relative_model_dir``; an
    absolute ``relative_model_dir`` wins that join, which puts the checkpoint
    beside ``config.yml`` whatever the method's name.
    """
    import yaml

    trainer = run_trainer_config(run_dir, config.volume, step)
    trainer.pipeline.model.mask_loss_weight = config.mask_loss_weight
    return yaml.dump(trainer)


def run_trainer_config(run_dir: str | Path, volume: VolumeConfig, step: int):
    """nerfstudio's ``TrainerConfig`` for the run's field, with every path in the run folder where it is now
    (written as ``config.yml`` by :func:`save`; rebuilt by ``portrait3d view`` instead of reading that file)."""
    from nerf import method

    root = Path(run_dir).resolve()
    trainer = method.trainer_config(max_iterations=max(step, 1), volume=volume)
    trainer.output_dir = root
    trainer.experiment_name = NERF_DIR
    trainer.timestamp = ""
    trainer.relative_model_dir = root / CHECKPOINT_DIR
    trainer.pipeline.datamanager.data = root / TRANSFORMS
    trainer.pipeline.datamanager.dataparser.data = root / TRANSFORMS
    return trainer


def load_field(run_dir: str | Path, device: str = "cpu") -> NGPVolume:
    """The fitted volume of a run, in eval mode (see the module docstring for its API).

    Needs only ``RUN/nerf/volume.json`` and the checkpoint (not nerfstudio).
    """
    root = Path(run_dir)
    config_path = root / VOLUME_CONFIG
    checkpoints = sorted((root / CHECKPOINT_DIR).glob("step-*.ckpt"))
    if not config_path.is_file() or not checkpoints:
        raise UserError(f"{root / NERF_DIR}: no fitted NeRF; run `portrait3d fit-nerf {root}` first")
    raw = read_json(config_path)
    try:
        volume_config = VolumeConfig(**{**raw, "field": FieldConfig(**raw["field"])})
    except (KeyError, TypeError) as exc:
        raise UserError(f"{config_path}: not a volume config ({exc})") from exc
    volume = NGPVolume(volume_config, torch.device(device).type)
    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=True)
    prefix = "_model.volume."
    volume.load_state_dict({k[len(prefix) :]: v for k, v in state["pipeline"].items() if k.startswith(prefix)})
    return volume.to(device).eval()
