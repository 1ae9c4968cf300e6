"""The precomputed empty-prompt text embedding, so that no tokenizer or text encoder is needed at run time."""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

SD15_EMPTY_PROMPT_IDS = [49406] + [49407] * 76
"""SD 1.5 CLIP token ids of the empty prompt: the start token, then end tokens up to length 77."""


class PromptEmbedding(ModelMixin, ConfigMixin):
    """Holds one text-encoder output (1, sequence_length, hidden_size): the empty prompt of SD 1.5 in the release."""

    @register_to_config
    def __init__(self, sequence_length: int = 77, hidden_size: int = 768):
        """
        Args:
            sequence_length: tokens of the embedding (77 for CLIP ViT-L/14).
            hidden_size: channels per token; the UNet's ``cross_attention_dim`` (768 for SD 1.5).
        """
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(1, sequence_length, hidden_size), requires_grad=False)

    def forward(self, batch_size: int = 1) -> torch.Tensor:
        """The embedding repeated to (batch_size, sequence_length, hidden_size)."""
        return self.embedding.expand(batch_size, -1, -1)
