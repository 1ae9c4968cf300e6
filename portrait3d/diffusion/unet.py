"""The main UNet of the orbit model: a diffusers SD UNet with view modules interleaved where the release has them.

:class:`MultiViewUNet` wraps a :class:`diffusers.UNet2DConditionModel` (attribute ``unet``) and runs its blocks
explicitly, inserting :class:`~portrait3d.diffusion.view_attention.ViewConsistencyModule` instances between them.

Placement (read from the reference ``UNetModel_Temporal`` and ``ControlledUnetModelAttn_Temporal_Pose``):

* after every LDM input block except the first (``conv_in``), downsample blocks included; the skip connection
  stores the output *after* the view module;
* after every LDM output block, and a second one right after it in output blocks that upsample (both after the
  upsampler, at the upsampled resolution);
* one in the middle block, between its attention and its second resnet, which runs **only on the unconditional
  guidance branch** (the conditional branch runs the plain middle block).

Index mapping for SD 1.5 (``layers_per_block`` L = 2, four down and four up blocks), LDM -> diffusers::

    LDM input block i (1..11)          diffusers                              view module
      i = 1 + (L+1)*b + r, r < L        down_blocks[b].resnets[r] (+ .attentions[r])   down_view_modules[i-1]
      i = 1 + (L+1)*b + L               down_blocks[b].downsamplers[0]                 down_view_modules[i-1]
      SD 1.5: 1,2 -> b0 r0,r1; 3 -> b0 down; 4,5 -> b1; 6 -> b1 down; 7,8 -> b2; 9 -> b2 down; 10,11 -> b3
    LDM middle block                   mid_block.resnets[0], .attentions[0], .resnets[1]   mid_view_module
    LDM output block j (0..11)         up_blocks[j // (L+1)].resnets[j % (L+1)] (+ .attentions[..])
                                       + .upsamplers[0] when j % (L+1) == L and the block upsamples
                                                                            up_view_modules[j][0] (and [1])
      SD 1.5: output blocks 2, 5, 8 upsample and carry two view modules.

Checkpoint keys -> ours (``REST`` is the same on both sides, see ``view_attention``)::

    model.diffusion_model.input_blocks_motion_module.{k}.0.temporal_transformer.REST    -> down_view_modules.{k}.REST
    model.diffusion_model.middle_block_motion_module.0.temporal_transformer.REST        -> mid_view_module.REST
    model.diffusion_model.output_blocks_motion_module.{k}.{m}.temporal_transformer.REST -> up_view_modules.{k}.{m}.REST
    model.diffusion_model.<SD UNet key>                                                 -> unet.<diffusers key>

ControlNet residuals (13 for SD 1.5: ``conv_in`` and the 11 input blocks, then the middle block) are added to the
skips and the middle-block output of the conditional samples only, as ``UNet2DConditionModel`` does.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from portrait3d.diffusion.reference import ReferenceBank, install_reference_processors
from portrait3d.diffusion.view_attention import RELEASE_MAX_VIEWS, ViewConsistencyModule

_UNSUPPORTED = ("class_embed_type", "addition_embed_type", "encoder_hid_dim", "time_cond_proj_dim")


def _plain_config(config: Any) -> dict:
    """A UNet2DConditionModel config as a JSON-able dict without diffusers' bookkeeping keys."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(config).items() if not k.startswith("_")}


def view_module_channels(unet: UNet2DConditionModel) -> tuple[list[int], int, list[list[int]]]:
    """Channels of each view module: (down modules, middle module, [modules of each up layer])."""
    down: list[int] = []
    for block in unet.down_blocks:
        channels = block.resnets[-1].out_channels
        down += [channels] * len(block.resnets)
        if block.downsamplers is not None:
            down.append(channels)
    mid = unet.mid_block.resnets[-1].out_channels
    up: list[list[int]] = []
    for block in unet.up_blocks:
        channels = block.resnets[-1].out_channels
        for r in range(len(block.resnets)):
            upsamples = r == len(block.resnets) - 1 and block.upsamplers is not None
            up.append([channels] * (2 if upsamples else 1))
    return down, mid, up


class MultiViewUNet(ModelMixin, ConfigMixin):
    """SD UNet + view-consistency modules; reference-bank reading happens in its attention processors.

    Forward input: (batch, 4, h, w) where the batch is ``unconditional_count`` unconditional samples followed by
    the conditional ones, each part a whole number of windows of ``num_views`` consecutive views.

    ``enable_gradient_checkpointing()`` recomputes every resnet, transformer and view module in the backward pass
    (training); the blocks are run here, not by the wrapped UNet's block classes, so the flag is honoured here.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        unet_config: dict | None = None,
        view_num_attention_heads: int = 8,
        view_num_transformer_blocks: int = 1,
        view_num_attention_blocks: int = 2,
        view_max_views: int = RELEASE_MAX_VIEWS,
        view_norm_num_groups: int = 32,
        view_zero_initialize: bool = True,
    ):
        """
        Args:
            unet_config: keyword arguments of the wrapped ``UNet2DConditionModel`` (its ``config``); None gives
                the diffusers defaults, which are the SD 1.5 architecture.
            view_num_attention_heads: heads of every view attention (8 in the release).
            view_num_transformer_blocks: transformer blocks per view module (1 in the release).
            view_num_attention_blocks: view self-attention blocks per transformer block (2 in the release).
            view_max_views: rows of the view-position table, the longest window (32 in the release).
            view_norm_num_groups: GroupNorm groups at the input of each view module.
            view_zero_initialize: start every view module as the identity (zero output projection).
        """
        super().__init__()
        self.gradient_checkpointing = False
        self.unet = UNet2DConditionModel(**(unet_config or {}))
        for key in _UNSUPPORTED:
            if self.unet.config.get(key) is not None:
                raise ValueError(f"MultiViewUNet does not support UNet2DConditionModel with {key} set")

        def module(channels: int) -> ViewConsistencyModule:
            return ViewConsistencyModule(
                channels,
                num_attention_heads=view_num_attention_heads,
                num_transformer_blocks=view_num_transformer_blocks,
                num_attention_blocks=view_num_attention_blocks,
                max_views=view_max_views,
                norm_num_groups=view_norm_num_groups,
                zero_initialize=view_zero_initialize,
            )

        install_reference_processors(self.unet, "read")
        down, mid, up = view_module_channels(self.unet)
        self.down_view_modules = nn.ModuleList([module(c) for c in down])
        self.mid_view_module = module(mid)
        self.up_view_modules = nn.ModuleList([nn.ModuleList([module(c) for c in layer]) for layer in up])

    @classmethod
    def from_unet(cls, unet: UNet2DConditionModel, **view_kwargs: Any) -> MultiViewUNet:
        """A MultiViewUNet whose SD part is a copy of ``unet``'s weights (view modules freshly initialised)."""
        model = cls(unet_config=_plain_config(unet.config), **view_kwargs)
        model.unet.load_state_dict(unet.state_dict())
        model.to(unet.device)
        return model if unet.dtype == torch.float32 else model.to(dtype=unet.dtype)

    def _call(self, module: nn.Module, *args: Any) -> torch.Tensor:
        """``module(*args)``, recomputed in the backward pass when gradient checkpointing is on."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(module, *args)
        return module(*args)

    def _transformer(self, attn: nn.Module | None, h: torch.Tensor, context: torch.Tensor, kwargs: dict):
        if attn is None:
            return h
        # Transformer2DModel checkpoints its own blocks when the flag is on.
        return attn(h, encoder_hidden_states=context, cross_attention_kwargs=kwargs, return_dict=False)[0]

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        encoder_hidden_states: torch.Tensor,
        num_views: int,
        unconditional_count: int = 0,
        reference_bank: ReferenceBank | None = None,
        down_block_additional_residuals: tuple[torch.Tensor, ...] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Noise prediction (batch, out_channels, h, w).

        Args:
            sample: (batch, in_channels, h, w) noisy latents, unconditional samples first.
            timestep: scalar or (batch,) training timesteps.
            encoder_hidden_states: (batch, 77, cross_dim) text embeddings (the empty prompt).
            num_views: views per window; both batch parts must be whole windows.
            unconditional_count: leading samples of the unconditional branch (no bank, no ControlNet residuals,
                middle view module on).
            reference_bank: filled by the reference UNet for this step; read by the conditional samples.
            down_block_additional_residuals: ControlNet skip residuals for the conditional samples,
                each (batch - unconditional_count, C, h_i, w_i).
            mid_block_additional_residual: ControlNet middle residual for the conditional samples.
        """
        batch = sample.shape[0]
        if unconditional_count % num_views or (batch - unconditional_count) % num_views:
            raise ValueError(
                f"batch {batch} with {unconditional_count} unconditional samples is not whole windows of {num_views}"
            )
        unet = self.unet
        kwargs = {"reference_bank": reference_bank, "unconditional_count": unconditional_count}
        emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), None)

        h = unet.conv_in(sample)
        skips = [h]
        views = iter(self.down_view_modules)
        for block in unet.down_blocks:
            attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
            for resnet, attn in zip(block.resnets, attentions):
                h = self._transformer(attn, self._call(resnet, h, emb), encoder_hidden_states, kwargs)
                h = self._call(next(views), h, num_views)
                skips.append(h)
            if block.downsamplers is not None:
                for downsampler in block.downsamplers:
                    h = downsampler(h)
                h = self._call(next(views), h, num_views)
                skips.append(h)

        if down_block_additional_residuals is not None:
            if len(down_block_additional_residuals) != len(skips):
                count = len(down_block_additional_residuals)
                raise ValueError(f"expected {len(skips)} ControlNet residuals, got {count}")
            skips = [_add_to_tail(s, r, unconditional_count) for s, r in zip(skips, down_block_additional_residuals)]

        mid = unet.mid_block
        h = self._call(mid.resnets[0], h, emb)
        for attn, resnet in zip(mid.attentions, mid.resnets[1:]):
            h = self._transformer(attn, h, encoder_hidden_states, kwargs)
            if unconditional_count:
                # The reference runs the middle view module on the unconditional branch only.
                unconditional = self._call(self.mid_view_module, h[:unconditional_count], num_views)
                h = torch.cat([unconditional, h[unconditional_count:]])
            h = self._call(resnet, h, emb)
        if mid_block_additional_residual is not None:
            h = _add_to_tail(h, mid_block_additional_residual, unconditional_count)

        layers = iter(self.up_view_modules)
        for block in unet.up_blocks:
            attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
            for r, (resnet, attn) in enumerate(zip(block.resnets, attentions)):
                h = torch.cat([h, skips.pop()], dim=1)
                h = self._transformer(attn, self._call(resnet, h, emb), encoder_hidden_states, kwargs)
                if r == len(block.resnets) - 1 and block.upsamplers is not None:
                    for upsampler in block.upsamplers:
                        h = upsampler(h, skips[-1].shape[2:])
                for view_module in next(layers):
                    h = self._call(view_module, h, num_views)

        h = unet.conv_act(unet.conv_norm_out(h)) if unet.conv_norm_out is not None else h
        return unet.conv_out(h)


def _add_to_tail(x: torch.Tensor, residual: torch.Tensor, skip: int) -> torch.Tensor:
    """``x`` with ``residual`` added to its samples from index ``skip`` on (the conditional part)."""
    if skip == 0:
        return x + residual
    return torch.cat([x[:skip], x[skip:] + residual])
