"""Architectures of the pipeline components: SD 1.5 (the release) and a tiny one for tests and CPU smoke runs.

Random weights only: nothing here downloads or reads a file. The released weights come in through
``portrait3d convert-weights`` and ``from_pretrained``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

from portrait3d.diffusion.pipelines import BackViewPipeline, Portrait360Pipeline, release_scheduler
from portrait3d.diffusion.prompt import PromptEmbedding
from portrait3d.diffusion.unet import MultiViewUNet


@dataclass(frozen=True)
class Architecture:
    """Keyword arguments of every component (diffusers config names)."""

    unet: dict
    """UNet2DConditionModel config, shared by the main UNet, the reference UNet and the ControlNet."""
    vae: dict
    """AutoencoderKL config."""
    controlnet: dict
    """Extra ControlNetModel.from_unet arguments."""
    prompt: dict
    """PromptEmbedding config."""
    view: dict
    """MultiViewUNet view-module arguments."""


SD15 = Architecture(
    unet=dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        cross_attention_dim=768,
        attention_head_dim=8,
    ),
    vae=dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
        scaling_factor=0.18215,
    ),
    controlnet=dict(conditioning_channels=3),
    prompt=dict(sequence_length=77, hidden_size=768),
    view=dict(view_num_attention_heads=8, view_num_transformer_blocks=1, view_num_attention_blocks=2),
)
"""The released architecture: Stable Diffusion 1.5 UNet/VAE, SD ControlNet, 8-head view modules."""

TINY = Architecture(
    unet=dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=2,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    ),
    vae=dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
        scaling_factor=0.18215,
    ),
    controlnet=dict(conditioning_channels=3, conditioning_embedding_out_channels=(8, 8, 8, 8)),
    prompt=dict(sequence_length=8, hidden_size=32),
    view=dict(view_num_attention_heads=8, view_num_transformer_blocks=1, view_num_attention_blocks=2),
)
"""A tiny architecture with the same structure (view modules after downsamplers, two in upsampling blocks)."""


def random_components(arch: Architecture, multiview: bool, seed: int = 0) -> dict:
    """Components with random weights: ``unet`` is a MultiViewUNet when ``multiview`` else a UNet2DConditionModel.

    View modules and ControlNet zero-convolutions keep their zero initialisation.
    """
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        reference_unet = UNet2DConditionModel(**arch.unet)
        base = UNet2DConditionModel(**arch.unet)
        unet = MultiViewUNet.from_unet(base, **arch.view) if multiview else base
        controlnet = ControlNetModel.from_unet(base, **arch.controlnet)
        vae = AutoencoderKL(**arch.vae)
        prompt = PromptEmbedding(**arch.prompt)
        torch.nn.init.normal_(prompt.embedding, std=1.0)
    finally:
        torch.random.set_rng_state(generator_state)
    return dict(
        unet=unet,
        reference_unet=reference_unet,
        controlnet=controlnet,
        vae=vae,
        scheduler=release_scheduler(),
        prompt_embeds=prompt,
    )


def random_portrait360(arch: Architecture = TINY, seed: int = 0) -> Portrait360Pipeline:
    """A Portrait360Pipeline with random weights."""
    return Portrait360Pipeline(**random_components(arch, multiview=True, seed=seed))


def random_back_view(arch: Architecture = TINY, seed: int = 0) -> BackViewPipeline:
    """A BackViewPipeline with random weights."""
    return BackViewPipeline(**random_components(arch, multiview=False, seed=seed))
