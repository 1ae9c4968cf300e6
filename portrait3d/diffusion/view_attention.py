"""View-consistency module (V): temporal self-attention across the views of a window.

An AnimateDiff-style "motion module" whose "frames" are the views of one window: at every spatial location the
features of the ``num_views`` views attend to each other. Two self-attention blocks, each preceded by a LayerNorm
and a sinusoidal position encoding over the view index (table of ``max_views`` = 32 rows), then a GEGLU feed-forward.
The output projection is zero-initialised, so a fresh module is the identity.

Parameter names mirror the reference ``VanillaTemporalModule.temporal_transformer`` so that converting a released
checkpoint is a prefix rename (``<ldm prefix>.temporal_transformer.REST`` -> ``<our prefix>.REST``)::

    norm.{weight,bias}                                   GroupNorm over channels
    proj_in.{weight,bias}                                Linear C -> inner
    transformer_blocks.{k}.attention_blocks.{j}.to_q.weight      (no bias)
    transformer_blocks.{k}.attention_blocks.{j}.to_k.weight      (no bias)
    transformer_blocks.{k}.attention_blocks.{j}.to_v.weight      (no bias)
    transformer_blocks.{k}.attention_blocks.{j}.to_out.0.{weight,bias}
    transformer_blocks.{k}.attention_blocks.{j}.pos_encoder.pe   buffer (1, max_views, inner)
    transformer_blocks.{k}.norms.{j}.{weight,bias}       LayerNorm before attention block j
    transformer_blocks.{k}.ff.net.0.proj.{weight,bias}   GEGLU projection inner -> 2*4*inner
    transformer_blocks.{k}.ff.net.2.{weight,bias}        Linear 4*inner -> inner
    transformer_blocks.{k}.ff_norm.{weight,bias}
    proj_out.{weight,bias}                               Linear inner -> C (zero-initialised)

The released configuration is one transformer block (``num_transformer_blocks=1``) holding two attention blocks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

RELEASE_MAX_VIEWS = 32
"""Rows of the sinusoidal view-position table in the released modules."""


def sinusoidal_table(max_len: int, dim: int) -> torch.Tensor:
    """Transformer position table: (1, max_len, dim), sin on even channels and cos on odd channels."""
    position = torch.arange(max_len, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, max_len, dim)
    table[0, :, 0::2] = torch.sin(position * frequency)
    table[0, :, 1::2] = torch.cos(position * frequency)
    return table


class ViewPositionEncoding(nn.Module):
    """Adds the position of each view in its window; the table is a buffer (``pe``) as in the checkpoint."""

    def __init__(self, dim: int, max_len: int = RELEASE_MAX_VIEWS):
        super().__init__()
        self.register_buffer("pe", sinusoidal_table(max_len, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, views, dim) -> same, with row ``v`` of the table added to view ``v``."""
        if x.shape[1] > self.pe.shape[1]:
            raise ValueError(f"window of {x.shape[1]} views exceeds the position table ({self.pe.shape[1]})")
        return x + self.pe[:, : x.shape[1]].to(x.dtype)


class ViewSelfAttention(nn.Module):
    """Self-attention over the view axis at each spatial location (multi-head, scaled dot product)."""

    def __init__(self, dim: int, heads: int, max_views: int = RELEASE_MAX_VIEWS):
        super().__init__()
        if dim % heads:
            raise ValueError(f"view attention: {dim} channels are not divisible by {heads} heads")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])
        self.pos_encoder = ViewPositionEncoding(dim, max_views)

    def forward(self, x: torch.Tensor, num_views: int) -> torch.Tensor:
        """x: (windows*num_views, tokens, dim) normalised features -> attention output of the same shape."""
        batch, tokens, dim = x.shape
        windows = batch // num_views
        # (w f) d c -> (w d) f c: every spatial token of a window becomes one sequence over its views.
        seq = x.reshape(windows, num_views, tokens, dim).permute(0, 2, 1, 3).reshape(windows * tokens, num_views, dim)
        seq = self.pos_encoder(seq)
        head_dim = dim // self.heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(windows * tokens, num_views, self.heads, head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.to_q(seq)), heads(self.to_k(seq)), heads(self.to_v(seq)))
        out = out.transpose(1, 2).reshape(windows * tokens, num_views, dim)
        out = self.to_out[1](self.to_out[0](out))
        return out.reshape(windows, tokens, num_views, dim).permute(0, 2, 1, 3).reshape(batch, tokens, dim)


class ViewTransformerBlock(nn.Module):
    """Pre-norm residual attention blocks over views, then a pre-norm GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, num_attention_blocks: int, max_views: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            [ViewSelfAttention(dim, heads, max_views) for _ in range(num_attention_blocks)]
        )
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(num_attention_blocks)])
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, num_views: int) -> torch.Tensor:
        """x: (windows*num_views, tokens, dim) -> same shape."""
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = attention(norm(x), num_views) + x
        return self.ff(self.ff_norm(x)) + x


class ViewConsistencyModule(ModelMixin, ConfigMixin):
    """One view module: residual temporal transformer over the views of each window.

    Input and output: (windows*num_views, channels, height, width), windows stacked along the batch, the views of
    a window consecutive. Windows never interact.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int,
        num_attention_heads: int = 8,
        num_transformer_blocks: int = 1,
        num_attention_blocks: int = 2,
        max_views: int = RELEASE_MAX_VIEWS,
        norm_num_groups: int = 32,
        zero_initialize: bool = True,
    ):
        """
        Args:
            in_channels: feature channels at the UNet position where the module sits.
            num_attention_heads: heads of each view attention (8 in the release).
            num_transformer_blocks: transformer blocks (1 in the release).
            num_attention_blocks: view self-attention blocks per transformer block (2 in the release).
            max_views: rows of the sinusoidal view-position table (32 in the release); the window length limit.
            norm_num_groups: groups of the input GroupNorm.
            zero_initialize: zero the output projection so the module starts as the identity.
        """
        super().__init__()
        self.norm = nn.GroupNorm(norm_num_groups, in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(in_channels, in_channels)
        self.transformer_blocks = nn.ModuleList(
            [
                ViewTransformerBlock(in_channels, num_attention_heads, num_attention_blocks, max_views)
                for _ in range(num_transformer_blocks)
            ]
        )
        self.proj_out = nn.Linear(in_channels, in_channels)
        if zero_initialize:
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)

    def forward(self, sample: torch.Tensor, num_views: int) -> torch.Tensor:
        """sample: (windows*num_views, C, H, W) -> same shape; ``num_views`` must divide the batch."""
        batch, channels, height, width = sample.shape
        if num_views < 1 or batch % num_views:
            raise ValueError(f"a batch of {batch} is not a whole number of windows of {num_views} views")
        hidden = self.norm(sample).permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        hidden = self.proj_in(hidden)
        for block in self.transformer_blocks:
            hidden = block(hidden, num_views)
        hidden = self.proj_out(hidden)
        return hidden.reshape(batch, height, width, channels).permute(0, 3, 1, 2) + sample
