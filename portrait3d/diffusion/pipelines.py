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
  as one batch (unconditional first) where that is equivalent;
* 3D-aware initial noise: each view's initial image encoded and diffused to training timestep 999,
  ``x = sqrt(abar_999) z + sqrt(1 - abar_999) eps``, then the DDIM schedule (981, 961, ..., 1) from there.
  Without initial images, Gaussian noise (the released back-view step uses none);
* the orbit views are generated in windows of 8 consecutive views with the same references (front + back).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
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
        timestep = torch.tensor([INITIAL_NOISE_TIMESTEP], device=clean.device)
        return self.scheduler.add_noise(clean, noise, timestep)

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
    ) -> torch.Tensor:
        """Guided noise prediction for one window of views (batched unconditional + conditional branches)."""
        down, mid = self.control_residuals(latents, timestep, conditions)
        guided = guidance_scale != 1.0
        unconditional = latents.shape[0] if guided else 0
        sample = torch.cat([latents, latents]) if guided else latents
        noise = self._main_unet(sample, timestep, unconditional, bank, down, mid).float()
        if not guided:
            return noise
        noise_uncond, noise_cond = noise.chunk(2)
        return noise_uncond + guidance_scale * (noise_cond - noise_uncond)

    def _main_unet(self, sample, timestep, unconditional, bank, down, mid) -> torch.Tensor:
        raise NotImplementedError

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
    ) -> torch.Tensor:
        """Denoise all views; returns their final latents (N, 4, h, w).

        The windows advance in lockstep, so the reference UNet runs once per step for all of them.
        """
        count = conditions.shape[0]
        latent_shape = (conditions.shape[2] // self.vae_scale_factor, conditions.shape[3] // self.vae_scale_factor)
        reference_latents = self.encode(references, generator)
        latents = self.initial_latents(count, latent_shape, initial_images, generator)
        self.scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        windows = [slice(start, min(start + window_size, count)) for start in range(0, count, window_size)]
        steps = [(i, t, w) for i, t in enumerate(self.scheduler.timesteps) for w in windows]
        bank, bank_step = None, -1
        for index, (step, timestep, window) in enumerate(
            progress.bar(steps, total=len(steps), desc=f"denoising {count} view(s)")
        ):
            if bank_step != step:
                bank, bank_step = self.reference_bank(reference_latents, timestep), step
            noise = self.predict_noise(latents[window], timestep, conditions[window], bank, guidance_scale)
            latents[window] = self.scheduler.step(
                noise, timestep, latents[window], eta=eta, generator=generator, return_dict=False
            )[0]
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

    def _main_unet(self, sample, timestep, unconditional, bank, down, mid) -> torch.Tensor:
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

    def _main_unet(self, sample, timestep, unconditional, bank, down, mid) -> torch.Tensor:
        views = sample.shape[0] - unconditional
        return self.unet(
            sample.to(self.unet.dtype),
            timestep,
            encoder_hidden_states=self.prompt_embeds(sample.shape[0]).to(self.unet.dtype),
            num_views=views,
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
        """
        # 1. Check the options and inputs.
        self.check_options(num_inference_steps, guidance_scale, eta, window_size)
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
                references, conditions, initial, num_inference_steps, guidance_scale, eta, generator, window_size
            )
            # 4. Decode.
            return self.finish(latents, output_type, return_dict)


def load_pipeline(kind: type[_ReferencePipeline], folder: str | Path, **kwargs: Any) -> _ReferencePipeline:
    """``kind.from_pretrained(folder)`` offline (local files only)."""
    return kind.from_pretrained(str(folder), local_files_only=True, **kwargs)
