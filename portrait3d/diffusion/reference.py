"""Appearance reference (R): the reference bank and the attention processors that write and read it.

The reference UNet (a full SD UNet copy) runs on the clean VAE latent(s) of the reference image(s) at the current
timestep. In every basic transformer block its self-attention processor records the block's normalised input
(the ``norm1`` output, which is what diffusers hands to ``attn1``) into a :class:`ReferenceBank`, in
transformer-block order (down blocks, middle block, up blocks). The main UNet's self-attention processor of the
i-th transformer block then takes its keys and values from ``concat(own normalised input, bank entry i)`` along the
token axis; queries stay its own. This matches the reference code (``BasicTransformerBlock`` in ``attention.py``:
``attn1(norm1(x), context=cat([norm1(x), bank[i]], dim=1))``).

Several references (the front photo and the back view: "dual appearance") are written by one batched reference
run and all concatenated along the tokens: :meth:`ReferenceBank.tokens` is the single place that decides how
several references combine. The bank holds one copy per reference; it is broadcast to the views of the window
inside the read processor (keys and values of the bank are projected once, then expanded), so the reference UNet
runs once per denoising step whatever the window size.

The unconditional guidance branch reads no bank (``uc=True`` in the reference code): with batched guidance, the
first ``unconditional_count`` samples of the batch are unconditional and use plain self-attention.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention


class ReferenceBank:
    """Normalised self-attention inputs of the reference UNet, one entry per transformer block.

    Entry ``i`` is a list of tensors (references, tokens, channels), one per reference run that wrote it.
    """

    def __init__(self) -> None:
        self._entries: dict[int, list[torch.Tensor]] = {}

    def record(self, block_index: int, hidden_states: torch.Tensor) -> None:
        """Append the normalised input (references, tokens, channels) of transformer block ``block_index``."""
        self._entries.setdefault(block_index, []).append(hidden_states)

    def tokens(self, block_index: int) -> torch.Tensor | None:
        """All references of block ``block_index`` concatenated along tokens: (1, references*tokens, C), or None."""
        entries = self._entries.get(block_index)
        if not entries:
            return None
        return torch.cat([entry.reshape(1, -1, entry.shape[-1]) for entry in entries], dim=1)

    def clear(self) -> None:
        """Forget every entry (before the next denoising step)."""
        self._entries.clear()

    @property
    def num_blocks(self) -> int:
        """Number of transformer blocks with at least one entry."""
        return len(self._entries)

    def __len__(self) -> int:
        return self.num_blocks


_ORDER = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}


def self_attention_names(unet: UNet2DConditionModel) -> list[str]:
    """Processor names of the self-attentions (``attn1``) of ``unet`` in forward order: down, mid, up blocks.

    The position of a name in this list is the transformer-block index shared by the writer and the reader.
    """

    def order(name: str) -> tuple[int, ...]:
        section = name.split(".", 1)[0]
        return (_ORDER[section], *(int(n) for n in re.findall(r"\.(\d+)\.", "." + name)))

    names = [name for name in unet.attn_processors if name.endswith("attn1.processor")]
    return sorted(names, key=order)


def _attention(
    attn: Attention, query_input: torch.Tensor, key_value_input: torch.Tensor, extra_kv: torch.Tensor | None = None
) -> torch.Tensor:
    """Multi-head attention of ``attn`` (its projections, heads and output layer), via PyTorch SDPA.

    query_input: (B, N, C); key_value_input: (B, M, C); extra_kv: (1, K, C) extra key/value tokens shared by the
    whole batch (the reference bank), appended after ``key_value_input``'s tokens.
    """
    batch = query_input.shape[0]
    query = attn.to_q(query_input)
    key = attn.to_k(key_value_input)
    value = attn.to_v(key_value_input)
    if extra_kv is not None:
        extra_kv = extra_kv.to(key_value_input.dtype)
        key = torch.cat([key, attn.to_k(extra_kv).expand(batch, -1, -1)], dim=1)
        value = torch.cat([value, attn.to_v(extra_kv).expand(batch, -1, -1)], dim=1)
    head_dim = key.shape[-1] // attn.heads

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

    query, key, value = heads(query), heads(key), heads(value)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    out = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
    out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
    out = attn.to_out[1](attn.to_out[0](out))
    if attn.residual_connection:
        out = out + query_input
    return out / attn.rescale_output_factor


class PlainAttnProcessor:
    """Standard attention (used for cross-attention); accepts and ignores the bank arguments."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        reference_bank: ReferenceBank | None = None,
        unconditional_count: int = 0,
    ) -> torch.Tensor:
        if attention_mask is not None:
            raise ValueError("attention masks are not supported by the portrait3d attention processors")
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        return _attention(attn, hidden_states, context)


class ReferenceWriteProcessor(PlainAttnProcessor):
    """Self-attention of the reference UNet: records its normalised input, then attends normally."""

    def __init__(self, block_index: int):
        self.block_index = block_index

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        reference_bank: ReferenceBank | None = None,
        unconditional_count: int = 0,
    ) -> torch.Tensor:
        if reference_bank is not None:
            reference_bank.record(self.block_index, hidden_states)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask)


class ReferenceReadProcessor(PlainAttnProcessor):
    """Self-attention of the main UNet: keys/values from its own normalised input plus bank entry ``block_index``.

    The first ``unconditional_count`` samples (the unconditional guidance branch) do not read the bank.
    """

    def __init__(self, block_index: int):
        self.block_index = block_index

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        reference_bank: ReferenceBank | None = None,
        unconditional_count: int = 0,
    ) -> torch.Tensor:
        bank = reference_bank.tokens(self.block_index) if reference_bank is not None else None
        if bank is None or unconditional_count >= hidden_states.shape[0]:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask)
        if attention_mask is not None:
            raise ValueError("attention masks are not supported by the portrait3d attention processors")
        conditional = hidden_states[unconditional_count:]
        out = _attention(attn, conditional, conditional, extra_kv=bank)
        if unconditional_count == 0:
            return out
        unconditional = hidden_states[:unconditional_count]
        return torch.cat([_attention(attn, unconditional, unconditional), out], dim=0)


def install_reference_processors(unet: UNet2DConditionModel, mode: str) -> int:
    """Give every self-attention of ``unet`` a bank writer (``mode="write"``) or reader (``"read"``).

    Cross-attentions get :class:`PlainAttnProcessor` so that the bank arguments pass through quietly.
    Returns the number of transformer blocks (bank entries).
    """
    if mode not in ("write", "read"):
        raise ValueError(f"mode must be 'write' or 'read', not {mode!r}")
    kind = ReferenceWriteProcessor if mode == "write" else ReferenceReadProcessor
    order = {name: i for i, name in enumerate(self_attention_names(unet))}
    processors = {name: kind(order[name]) if name in order else PlainAttnProcessor() for name in unet.attn_processors}
    unet.set_attn_processor(processors)
    return len(order)
