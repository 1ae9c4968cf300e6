"""BackViewPipeline (F) and Portrait360Pipeline (R, C, V): DiffPortrait360 sampling in diffusers terms.

Sampling as released (DiffPortrait360 ``inference.py`` / ``inference.sh``, DiffPortrait3D ``ddim.py``):

* DDIM, 50 steps, eta 0.5, classifier-free guidance 3: ``uncond + 3 * (cond - uncond)``, fp16 autocast on CUDA;
* every image (references, condition renders, initial images) is RGB scaled to [-1, 1]; latents are
  ``vae.encode(x).latent_dist.sample() * 0.18215``;
* the reference latents are never noised (``wonoise``) but the reference UNet sees the current timestep and the
  empty prompt; it runs once per step, its bank shared by every view;
* conditional branch: reference bank + ControlNet residuals + view modules; unconditional branch
  (``controlnet_important``): no bank, no ControlNet residuals (the reference evaluates the ControlNet there and
  discards its output, so it is skipped here), view modules on, middle view module only here. Both branches run
  as one batch (unconditional first), with per-sample masks on bank use, residuals and the middle view module;
* 3D-aware initial noise: each view's initial image encoded and diffused to training timestep 999,
  ``x = sqrt(abar_999) z + sqrt(1 - abar_999) eps``, then the DDIM schedule (981, 961, ..., 1) from there.
  Without initial images, Gaussian noise (the released back-view step uses none);
* the orbit views are generated in windows of 8 consecutive views with the same references (front + back).

Faster than the reference code, same function (``reference_pattern`` is the straightforward path it is tested
against): the reference UNet runs once per step on the two references and its bank is shared by every view
instead of being recomputed at batch 8 per window; several windows can share one UNet batch
(``views_per_batch``; the view modules still see one window at a time); the DDIM noise is drawn per window in
the same order whatever the batching, so batching does not change the result. ``dpm_solver_scheduler()`` is an
optional faster sampler (DPM-Solver++, 20 steps) to assign to ``pipeline.scheduler``; DDIM stays the default.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    UNet2DConditionModel,
)
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from portrait3d import progress
from portrait3d.diffusion.prompt import PromptEmbedding
from portrait3d.diffusion.reference import ReferenceBank, install_reference_processors
from portrait3d.diffusion.unet import MultiViewUNet

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor
"""A PIL image, an (H, W, 3) array (uint8, or float in [0, 1]) or a (3, H, W) tensor in [0, 1]."""

RELEASE_STEPS = 50
RELEASE_GUIDANCE = 3.0
RELEASE_ETA = 0.5
RELEASE_WINDOW = 8
RELEASE_SIZE = 512
INITIAL_NOISE_TIMESTEP = 999
"""Training timestep to which the initial images are diffused (the reference ``q_sample(..., t=999)``)."""
DPM_SOLVER_STEPS = 20
"""Steps suggested for :func:`dpm_solver_scheduler` (not the release setting)."""
SCHEDULERS = ("ddim", "dpm++")
"""Names accepted by :func:`scheduler_by_name`."""


def release_scheduler() -> DDIMScheduler:
    """DDIMScheduler equal to the reference LDM DDIM sampler with SD 1.5 settings (50 steps: 981, 961, ..., 1)."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )


def dpm_solver_scheduler(config: Any = None) -> DPMSolverMultistepScheduler:
    """DPM-Solver++ (2nd order, multistep) on the same noise schedule; "trailing" spacing, so that its first
    timestep is 999, where the 3D-aware initial noise sits. Not the release sampler: an option for fewer steps."""
    config = dict(config or release_scheduler().config)
    keep = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type")
    return DPMSolverMultistepScheduler(
        **{k: config[k] for k in keep if k in config},
        algorithm_type="dpmsolver++",
        solver_order=2,
        timestep_spacing="trailing",
    )


def scheduler_by_name(name: str, config: Any = None) -> DDIMScheduler | DPMSolverMultistepScheduler:
    """``ddim`` (the release sampler) or ``dpm++`` (:func:`dpm_solver_scheduler`) on the schedule of ``config``."""
    if name == "ddim":
        return release_scheduler() if config is None else DDIMScheduler.from_config(config)
    if name == "dpm++":
        return dpm_solver_scheduler(config)
    raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, not {name!r}")


def window_groups(count: int, window_size: int, views_per_batch: int) -> list[list[slice]]:
    """Windows of ``window_size`` consecutive views (the last one may be shorter), grouped into batches.

    A group holds consecutive windows of equal length and at most ``views_per_batch`` views (at least one window).
    """
    windows = [slice(start, min(start + window_size, count)) for start in range(0, count, window_size)]
    groups: list[list[slice]] = []
    for window in windows:
        length = window.stop - window.start
        last = groups[-1] if groups else None
        if last is not None and last[0].stop - last[0].start == length and (len(last) + 1) * length <= views_per_batch:
            last.append(window)
        else:
            groups.append([window])
    return groups


@dataclass
class PortraitViewsOutput(BaseOutput):
    """Generated views: a list of PIL images, an (N, H, W, 3) float array in [0, 1] or an (N, 3, H, W) tensor."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor


def _as_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return list(images)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


class _ReferencePipeline(DiffusionPipeline):
    """What both pipelines share: image handling, the reference bank, guidance, DDIM steps and decoding."""

    model_cpu_offload_seq = "reference_unet->controlnet->unet->vae"

    def __init__(
        self,
        unet: torch.nn.Module,
        reference_unet: UNet2DConditionModel,
        controlnet: ControlNetModel,
        vae: AutoencoderKL,
        scheduler: DDIMScheduler,
        prompt_embeds: PromptEmbedding,
    ):
        super().__init__()
        self.register_modules(
            unet=unet,
            reference_unet=reference_unet,
            controlnet=controlnet,
            vae=vae,
            scheduler=scheduler,
            prompt_embeds=prompt_embeds,
        )
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_normalize=True)
        install_reference_processors(reference_unet, "write")
        install_reference_processors(unet.unet if isinstance(unet, MultiViewUNet) else unet, "read")

    # --- pieces ---------------------------------------------------------------------------------------------
    def preprocess(self, images: ImageInput | Sequence[ImageInput], height: int, width: int) -> torch.Tensor:
        """Images -> (N, 3, height, width) float32 tensor in [-1, 1] on the execution device."""
        prepared = []
        for image in _as_list(images):
            if isinstance(image, np.ndarray) and image.dtype == np.uint8:
                image = PIL.Image.fromarray(image[..., :3])
            if isinstance(image, PIL.Image.Image):
                image = image.convert("RGB")
            prepared.append(self.image_processor.preprocess(image, height=height, width=width))
        return torch.cat(prepared).to(self._execution_device, torch.float32)

    def encode(self, images: torch.Tensor, generator: torch.Generator | None, batch: int = 2) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, 4, H/8, W/8) scaled latents, sampled from the posterior as the reference."""
        latents = []
        for chunk in images.split(batch):
            posterior = self.vae.encode(chunk.to(self.vae.dtype)).latent_dist
            latents.append(posterior.sample(generator=generator).float())
        return torch.cat(latents) * self.vae.config.scaling_factor

    def decode(self, latents: torch.Tensor, batch: int = 1) -> torch.Tensor:
        """(N, 4, h, w) latents -> (N, 3, 8h, 8w) images in [-1, 1], decoded ``batch`` at a time to bound memory."""
        images = [
            self.vae.decode((chunk / self.vae.config.scaling_factor).to(self.vae.dtype)).sample.float()
            for chunk in latents.split(batch)
        ]
        return torch.cat(images).clamp(-1, 1)

    def initial_latents(
        self,
        count: int,
        latent_shape: tuple[int, int],
        initial_images: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """(count, 4, h, w) starting latents: initial images diffused to timestep 999, else Gaussian noise."""
        shape = (count, self.vae.config.latent_channels, *latent_shape)
        noise = randn_tensor(shape, generator=generator, device=self._execution_device, dtype=torch.float32)
        if initial_images is None:
            return noise * self.scheduler.init_noise_sigma
        clean = self.encode(initial_images, generator)
        # q_sample at t=999 written out (DDIMScheduler.add_noise's arithmetic), so any scheduler can follow.
        alpha_bar = self.scheduler.alphas_cumprod.to(device=clean.device, dtype=clean.dtype)[INITIAL_NOISE_TIMESTEP]
        return alpha_bar**0.5 * clean + (1 - alpha_bar) ** 0.5 * noise

    def reference_bank(self, reference_latents: torch.Tensor, timestep: torch.Tensor) -> ReferenceBank:
        """Run the reference UNet once on the clean reference latents (R, 4, h, w) at ``timestep``; return its bank."""
        bank = ReferenceBank()
        count = reference_latents.shape[0]
        self.reference_unet(
            reference_latents.to(self.reference_unet.dtype),
            timestep,
            encoder_hidden_states=self.prompt_embeds(count).to(self.reference_unet.dtype),
            cross_attention_kwargs={"reference_bank": bank},
            return_dict=False,
        )
        return bank

    def control_residuals(
        self, latents: torch.Tensor, timestep: torch.Tensor, conditions: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """ControlNet residuals (skips, middle) for the conditional branch of a window."""
        down, mid = self.controlnet(
            latents.to(self.controlnet.dtype),
            timestep,
            encoder_hidden_states=self.prompt_embeds(latents.shape[0]).to(self.controlnet.dtype),
            controlnet_cond=conditions.to(self.controlnet.dtype),
            return_dict=False,
        )
        return list(down), mid

    def predict_noise(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        conditions: torch.Tensor,
        bank: ReferenceBank,
        guidance_scale: float,
        num_views: int | None = None,
    ) -> torch.Tensor:
        """Guided noise prediction for whole windows of ``num_views`` views (default: one window of all
        ``latents``), the unconditional and conditional branches in one batch."""
        down, mid = self.control_residuals(latents, timestep, conditions)
        guided = guidance_scale != 1.0
        unconditional = latents.shape[0] if guided else 0
        sample = torch.cat([latents, latents]) if guided else latents
        num_views = num_views or latents.shape[0]
        noise = self._main_unet(sample, timestep, unconditional, bank, down, mid, num_views).float()
        if not guided:
            return noise
        noise_uncond, noise_cond = noise.chunk(2)
        return noise_uncond + guidance_scale * (noise_cond - noise_uncond)

    def _main_unet(self, sample, timestep, unconditional, bank, down, mid, num_views) -> torch.Tensor:
        raise NotImplementedError

    def step_kwargs(self, scheduler: Any, eta: float) -> dict:
        """Extra ``scheduler.step`` arguments: ``eta`` where the scheduler takes it (DDIM)."""
        return {"eta": eta} if "eta" in inspect.signature(scheduler.step).parameters else {}

    def variance_noise(self, windows: list[slice], latents: torch.Tensor, eta: float, generator) -> torch.Tensor | None:
        """DDIM's step noise for ``windows``, drawn one window at a time in window order (None when eta is 0).

        Drawing it here, not inside ``scheduler.step``, keeps the random stream the same however the windows
        are batched.
        """
        if eta <= 0 or "variance_noise" not in inspect.signature(self.scheduler.step).parameters:
            return None
        draws = [
            randn_tensor(latents[w].shape, generator=generator, device=latents.device, dtype=latents.dtype)
            for w in windows
        ]
        return torch.cat(draws)

    def _autocast(self) -> contextlib.AbstractContextManager:
        device = self._execution_device
        if device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def generate(
        self,
        references: torch.Tensor,
        conditions: torch.Tensor,
        initial_images: torch.Tensor | None,
        num_inference_steps: int,
        guidance_scale: float,
        eta: float,
        generator: torch.Generator | None,
        window_size: int,
        callback: Callable[[int, int], None] | None = None,
        views_per_batch: int | None = None,
    ) -> torch.Tensor:
        """Denoise all views; returns their final latents (N, 4, h, w).

        The windows advance in lockstep, so the reference UNet runs once per step for all of them; windows are
        batched ``views_per_batch`` views at a time (default: one window per batch).
        """
        count = conditions.shape[0]
        latent_shape = (conditions.shape[2] // self.vae_scale_factor, conditions.shape[3] // self.vae_scale_factor)
        reference_latents = self.encode(references, generator)
        latents = self.initial_latents(count, latent_shape, initial_images, generator)
        self.scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        groups = window_groups(count, window_size, max(views_per_batch or window_size, window_size))
        # Multistep solvers keep a history per sample: one scheduler copy per group of windows.
        schedulers = [copy.deepcopy(self.scheduler) for _ in groups]
        extra = self.step_kwargs(self.scheduler, eta)
        steps = [(i, t, g) for i, t in enumerate(self.scheduler.timesteps) for g in range(len(groups))]
        bank, bank_step = None, -1
        for index, (step, timestep, g) in enumerate(
            progress.bar(steps, total=len(steps), desc=f"denoising {count} view(s)")
        ):
            if bank_step != step:
                bank, bank_step = self.reference_bank(reference_latents, timestep), step
            group, scheduler = groups[g], schedulers[g]
            part = slice(group[0].start, group[-1].stop)
            views = group[0].stop - group[0].start
            noise = self.predict_noise(latents[part], timestep, conditions[part], bank, guidance_scale, views)
            drawn = self.variance_noise(group, latents, eta, generator)
            kwargs = {**extra, "generator": generator} if drawn is None else {**extra, "variance_noise": drawn}
            latents[part] = scheduler.step(noise, timestep, latents[part], return_dict=False, **kwargs)[0]
            if callback is not None:
                callback(index, len(steps))
        return latents

    def finish(self, latents: torch.Tensor, output_type: str, return_dict: bool):
        """Decode and convert to ``output_type`` ("pil", "np", "pt" or "latent")."""
        if output_type == "latent":
            images: Any = latents
        else:
            images = self.image_processor.postprocess(self.decode(latents), output_type=output_type)
        self.maybe_free_model_hooks()
        return PortraitViewsOutput(images=images) if return_dict else (images,)

    @staticmethod
    def check_options(num_inference_steps: int, guidance_scale: float, eta: float, window_size: int) -> None:
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
        if guidance_scale < 1.0:
            raise ValueError(f"guidance_scale must be at least 1, got {guidance_scale}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1], got {eta}")
        if window_size < 1:
            raise ValueError(f"window_size must be at least 1, got {window_size}")


class BackViewPipeline(_ReferencePipeline):
    """Front photo + the 180-degree condition render -> the back view (module F: reference + ControlNet, no V).

    Components: ``unet`` (UNet2DConditionModel), ``reference_unet``, ``controlnet``, ``vae``, ``scheduler``,
    ``prompt_embeds``.
    """

    def _main_unet(self, sample, timestep, unconditional, bank, down, mid, num_views) -> torch.Tensor:
        if unconditional:
            # The unconditional samples get no ControlNet residuals: pad them with zeros.
            down = [torch.cat([torch.zeros_like(r), r]) for r in down]
            mid = torch.cat([torch.zeros_like(mid), mid])
        return self.unet(
            sample.to(self.unet.dtype),
            timestep,
            encoder_hidden_states=self.prompt_embeds(sample.shape[0]).to(self.unet.dtype),
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            cross_attention_kwargs={"reference_bank": bank, "unconditional_count": unconditional},
            return_dict=False,
        )[0]

    @torch.no_grad()
    def __call__(
        self,
        front_image: ImageInput,
        condition_image: ImageInput,
        initial_image: ImageInput | None = None,
        num_inference_steps: int = RELEASE_STEPS,
        guidance_scale: float = RELEASE_GUIDANCE,
        eta: float = RELEASE_ETA,
        generator: torch.Generator | None = None,
        height: int = RELEASE_SIZE,
        width: int = RELEASE_SIZE,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        """Generate the back view.

        Args:
            front_image: the aligned front photo (appearance reference).
            condition_image: the condition render at the back camera (view 16 of ``sphere32`` in the release).
            initial_image: optional image for 3D-aware initial noise (the release starts from Gaussian noise).
            num_inference_steps, guidance_scale, eta: DDIM steps, classifier-free guidance, DDIM eta.
            generator: torch generator for the noise (seed).
            height, width: output size (multiples of 8; 512 as released).
            output_type: "pil", "np", "pt" or "latent".
        """
        # 1. Check the options.
        self.check_options(num_inference_steps, guidance_scale, eta, 1)
        # 2. Images to [-1, 1] tensors.
        front = self.preprocess(front_image, height, width)
        condition = self.preprocess(condition_image, height, width)
        initial = None if initial_image is None else self.preprocess(initial_image, height, width)
        # 3. Denoise with the front bank and the ControlNet, under fp16 autocast on CUDA.
        with self._autocast():
            latents = self.generate(
                front, condition, initial, num_inference_steps, guidance_scale, eta, generator, window_size=1
            )
            # 4. Decode.
            return self.finish(latents, output_type, return_dict)


class Portrait360Pipeline(_ReferencePipeline):
    """Front photo + back view + one condition render per view (+ initial images) -> the orbit views.

    Components: ``unet`` (MultiViewUNet), ``reference_unet``, ``controlnet``, ``vae``, ``scheduler``,
    ``prompt_embeds``. The views are denoised in windows of ``window_size`` consecutive views; the view modules
    connect the views of a window, and every window uses the same two references.
    """

    def _main_unet(self, sample, timestep, unconditional, bank, down, mid, num_views) -> torch.Tensor:
        return self.unet(
            sample.to(self.unet.dtype),
            timestep,
            encoder_hidden_states=self.prompt_embeds(sample.shape[0]).to(self.unet.dtype),
            num_views=num_views,
            unconditional_count=unconditional,
            reference_bank=bank,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        )

    @torch.no_grad()
    def __call__(
        self,
        front_image: ImageInput,
        back_image: ImageInput,
        condition_images: Sequence[ImageInput] | torch.Tensor,
        initial_images: Sequence[ImageInput] | torch.Tensor | None = None,
        num_inference_steps: int = RELEASE_STEPS,
        guidance_scale: float = RELEASE_GUIDANCE,
        eta: float = RELEASE_ETA,
        generator: torch.Generator | None = None,
        window_size: int = RELEASE_WINDOW,
        height: int = RELEASE_SIZE,
        width: int = RELEASE_SIZE,
        output_type: str = "pil",
        return_dict: bool = True,
        views_per_batch: int | None = None,
    ):
        """Generate one view per condition image.

        Args:
            front_image: the aligned front photo (first appearance reference).
            back_image: the generated back view (second appearance reference).
            condition_images: one condition render per target view, in orbit order.
            initial_images: optional, one per view: 3D-aware initial noise (proxy renders); else Gaussian noise.
            num_inference_steps, guidance_scale, eta: DDIM steps, classifier-free guidance, DDIM eta.
            generator: torch generator for the noise (seed).
            window_size: views denoised together (8 as released; at most the view modules' ``max_views``).
            height, width: output size (multiples of 8; 512 as released).
            output_type: "pil", "np", "pt" or "latent".
            views_per_batch: views of several windows run as one UNet batch (default: one window); more is faster
                on a large GPU and needs more memory; the result is the same up to rounding.
        """
        # 1. Check the options and inputs.
        self.check_options(num_inference_steps, guidance_scale, eta, window_size)
        if views_per_batch is not None and views_per_batch < 1:
            raise ValueError(f"views_per_batch must be at least 1, got {views_per_batch}")
        if window_size > self.unet.config.view_max_views:
            raise ValueError(f"window_size {window_size} exceeds the view modules' {self.unet.config.view_max_views}")
        # 2. Images to [-1, 1] tensors; the two references are one batch (one reference-UNet run per step).
        references = self.preprocess([*_as_list(front_image), *_as_list(back_image)], height, width)
        conditions = self.preprocess(condition_images, height, width)
        initial = None
        if initial_images is not None:
            initial = self.preprocess(initial_images, height, width)
            if initial.shape[0] != conditions.shape[0]:
                raise ValueError(f"{initial.shape[0]} initial images for {conditions.shape[0]} condition images")
        # 3. Denoise all windows, under fp16 autocast on CUDA.
        with self._autocast():
            latents = self.generate(
                references,
                conditions,
                initial,
                num_inference_steps,
                guidance_scale,
                eta,
                generator,
                window_size,
                views_per_batch=views_per_batch,
            )
            # 4. Decode.
            return self.finish(latents, output_type, return_dict)


def load_pipeline(kind: type[_ReferencePipeline], folder: str | Path, **kwargs: Any) -> _ReferencePipeline:
    """``kind.from_pretrained(folder)`` offline (local files only)."""
    return kind.from_pretrained(str(folder), local_files_only=True, **kwargs)
