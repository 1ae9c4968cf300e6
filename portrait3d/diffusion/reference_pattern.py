"""EMULATION of the public DiffPortrait3D sampler's compute pattern, built from this project's modules.

Not the reference code: the same function as :class:`~portrait3d.diffusion.pipelines.Portrait360Pipeline`,
computed the way the reference sampler computes it (FreedomGu/DiffPortrait3D, ``ldm/models/diffusion/ddim.py``
``p_sample_ddim`` with ``controlnet_important`` and ``cldm.py`` ``ControlLDMReferenceOnlyPose.apply_model``):

* windows are sampled one after the other, each through all its steps;
* every step of every window runs the reference UNet on the reference latents repeated to the window
  (``cond_img.repeat(nSample, 1, 1, 1)``: batch 8 per reference), so each view reads its own copy of the bank;
* the conditional and unconditional branches are separate forwards (``apply_model(..., uc=True)``), and the
  ControlNet is evaluated in both (its output is discarded on the unconditional branch);
* the caller chooses the precision; the reference keeps fp32 weights under fp16 autocast.

Two uses: ``scripts/gpu_check.py`` times it beside the pipeline (item 1b of issue 13: the reference code
itself needs its whole LDM tree, pytorch-lightning 1.x, open_clip and a CLIP tokenizer download, which the
device machine cannot give it), and the tests check that the pipeline's faster path computes the same latents.
The step noise is drawn per (step, window) in the pipeline's order, so both give the same result.
"""

from __future__ import annotations

import torch

from portrait3d.diffusion.pipelines import Portrait360Pipeline, window_groups
from portrait3d.diffusion.reference import ReferenceBank


class PerViewBank(ReferenceBank):
    """A bank written by a reference run at batch ``references * views``: one copy of every reference per view.

    Entry ``i`` is (references*views, tokens, C), references outermost; :meth:`tokens` gives each view its own
    copy, the references concatenated along tokens: (views, references*tokens, C).
    """

    def __init__(self, views: int) -> None:
        super().__init__()
        self.views = views

    def tokens(self, block_index: int) -> torch.Tensor | None:
        entries = self._entries.get(block_index)
        if not entries:
            return None
        stacked = torch.cat(entries)
        count, tokens, channels = stacked.shape
        per_view = stacked.reshape(count // self.views, self.views, tokens, channels).transpose(0, 1)
        return per_view.reshape(self.views, -1, channels)


@torch.no_grad()
def sample_reference_pattern(
    pipeline: Portrait360Pipeline,
    front_image,
    back_image,
    condition_images,
    initial_images=None,
    num_inference_steps: int = 50,
    guidance_scale: float = 3.0,
    eta: float = 0.5,
    generator: torch.Generator | None = None,
    window_size: int = 8,
    height: int = 512,
    width: int = 512,
) -> torch.Tensor:
    """Final latents (N, 4, h, w) of the orbit views, computed in the reference code's pattern (DDIM only).

    Same arguments as :meth:`Portrait360Pipeline.__call__`; run it under ``torch.autocast`` for the reference's
    mixed precision.
    """
    references = pipeline.preprocess([front_image, back_image], height, width)
    conditions = pipeline.preprocess(condition_images, height, width)
    initial = None if initial_images is None else pipeline.preprocess(initial_images, height, width)
    count = conditions.shape[0]
    latent_shape = (height // pipeline.vae_scale_factor, width // pipeline.vae_scale_factor)
    reference_latents = pipeline.encode(references, generator)
    latents = pipeline.initial_latents(count, latent_shape, initial, generator)
    scheduler = pipeline.scheduler
    scheduler.set_timesteps(num_inference_steps, device=pipeline._execution_device)
    windows = [group[0] for group in window_groups(count, window_size, 1)]
    # The pipeline draws the step noise step by step, window by window: draw it in that order up front.
    noise_table = {
        (step, w): pipeline.variance_noise([window], latents, eta, generator)
        for step in range(len(scheduler.timesteps))
        for w, window in enumerate(windows)
    }
    for w, window in enumerate(windows):
        views = window.stop - window.start
        x = latents[window]
        repeated = reference_latents.repeat_interleave(views, dim=0)  # front x views, then back x views
        for step, timestep in enumerate(scheduler.timesteps):
            # Conditional branch: reference bank (recomputed at batch 2 * views), ControlNet residuals.
            bank = PerViewBank(views)
            pipeline.reference_unet(
                repeated.to(pipeline.reference_unet.dtype),
                timestep,
                encoder_hidden_states=pipeline.prompt_embeds(repeated.shape[0]).to(pipeline.reference_unet.dtype),
                cross_attention_kwargs={"reference_bank": bank},
                return_dict=False,
            )
            down, mid = pipeline.control_residuals(x, timestep, conditions[window])
            noise_cond = pipeline._main_unet(x, timestep, 0, bank, down, mid, views).float()
            # Unconditional branch: a separate forward; the ControlNet runs and its residuals are dropped.
            pipeline.control_residuals(x, timestep, conditions[window])
            noise_uncond = pipeline._main_unet(x, timestep, views, None, None, None, views).float()
            noise = noise_uncond + guidance_scale * (noise_cond - noise_uncond)
            drawn = noise_table[(step, w)]
            kwargs = {"generator": generator} if drawn is None else {"variance_noise": drawn}
            x = scheduler.step(noise, timestep, x, eta=eta, return_dict=False, **kwargs)[0]
        latents[window] = x
    return latents
