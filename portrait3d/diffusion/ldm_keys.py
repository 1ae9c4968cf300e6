"""Key names and shapes of the released LDM-style checkpoints, generated from the reference module tree.

The released DiffPortrait360 files (``model_state-340000.th``, ``back_head-230000.th``) are the
``state_dict()`` of the reference ``ControlLDMReferenceOnlyPose`` model (FreedomGu/DiffPortrait3D,
``control_model/ControlNet``), loaded there with ``strict=True``. This module rebuilds the names and
shapes that state dict must have for given model sizes, by walking the same construction loops as the
reference classes:

- ``model.diffusion_model``: ``UNetModel_Temporal`` (orbit model; ``openaimodel.py``) or the plain
  ``UNetModel`` (back-view model): ``time_embed``, ``input_blocks``, ``middle_block``, ``output_blocks``,
  ``out``; the orbit model adds ``input_blocks_motion_module`` (one per input block except the first,
  downsamplers included), ``middle_block_motion_module`` and ``output_blocks_motion_module`` (one per
  output block, a second one in output blocks that upsample), each a ``VanillaTemporalModule``
  (``motion_module.py``);
- ``control_model``: ``ControlNetReferenceOnly`` (``cldm.py``): a UNet with ``input_hint_block`` (stored,
  never used) and no ``out`` layers;
- ``pose_control_model``: ``ControlNet`` (``cldm.py``): ``zero_convs``, ``input_hint_block``,
  ``middle_block_out``;
- ``first_stage_model``: ``AutoencoderKL`` (``autoencoder.py``, ``diffusionmodules/model.py``);
- ``cond_stage_model.transformer``: the transformers ``CLIPTextModel`` of ``FrozenCLIPEmbedder``;
- the DDPM schedule buffers of ``DDPM.register_schedule`` and ``logvar``.

Used to validate real files before conversion, and to build synthetic checkpoints for tests.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

Shape = tuple[int, ...]
KeyShapes = dict[str, Shape]

#: Prefixes of the components inside a released checkpoint.
UNET_PREFIX = "model.diffusion_model."
REFERENCE_PREFIX = "control_model."
CONTROLNET_PREFIX = "pose_control_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
#: CLIP stores this buffer persistently in older transformers versions only.
CLIP_POSITION_IDS = CLIP_PREFIX + "text_model.embeddings.position_ids"

#: Buffers of ``DDPM.register_schedule`` (each of length ``num_timesteps``) plus ``logvar``.
SCHEDULE_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
    "logvar",
)

#: Channels of the ControlNet hint encoder; fixed in the reference code, not configurable.
HINT_BLOCK_CHANNELS = (16, 32, 96, 256)


@dataclass(frozen=True)
class UNetLayout:
    """Sizes of the reference UNets (``unet_config`` and the control stage configs of the model yaml)."""

    in_channels: int = 4
    """Latent channels in."""
    out_channels: int = 4
    """Latent channels out (main UNet only)."""
    model_channels: int = 320
    """Channels of the first level."""
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    """Channel multiplier of each level."""
    num_res_blocks: int = 2
    """Residual blocks per level (output levels have one more)."""
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    """Downsampling factors (``2**level``) whose levels have a spatial transformer."""
    num_heads: int = 8
    """Attention heads of the spatial transformers (head size = channels / heads)."""
    transformer_depth: int = 1
    """Basic transformer blocks per spatial transformer."""
    context_dim: int = 768
    """Width of the text embedding (cross-attention keys and values)."""
    hint_channels: int = 3
    """Channels of the ControlNet condition image."""
    motion_heads: int = 8
    """Heads of the view (motion) modules."""
    motion_attention_blocks: int = 2
    """Temporal self-attention blocks per view module (``Temporal_Self, Temporal_Self``)."""
    motion_max_len: int = 32
    """Length of the sinusoidal position table of the view modules."""

    def level_channels(self) -> list[int]:
        return [self.model_channels * m for m in self.channel_mult]

    def has_attention(self, level: int) -> bool:
        return 2**level in self.attention_resolutions


@dataclass(frozen=True)
class VaeLayout:
    """Sizes of the first-stage ``AutoencoderKL`` (``first_stage_config.ddconfig``)."""

    in_channels: int = 3
    out_channels: int = 3
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    embed_dim: int = 4


@dataclass(frozen=True)
class ClipLayout:
    """Sizes of the CLIP text encoder (SD 1.5: openai/clip-vit-large-patch14's text tower)."""

    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    max_positions: int = 77
    bos_token_id: int | None = None
    """Start-of-text token id; None: ``vocab_size - 2`` (the CLIP tokenizer puts its two special tokens last,
    49406 for SD 1.5)."""
    eos_token_id: int | None = None
    """End-of-text (and padding) token id; None: ``vocab_size - 1`` (49407 for SD 1.5)."""

    def special_token_ids(self) -> tuple[int, int]:
        """(start, end) token ids of this vocabulary."""
        bos = self.vocab_size - 2 if self.bos_token_id is None else self.bos_token_id
        eos = self.vocab_size - 1 if self.eos_token_id is None else self.eos_token_id
        for name, value in (("bos_token_id", bos), ("eos_token_id", eos)):
            if not 0 <= value < self.vocab_size:
                raise ValueError(f"CLIP {name} {value} lies outside the vocabulary of {self.vocab_size} tokens")
        return bos, eos


@dataclass(frozen=True)
class CheckpointLayout:
    """Sizes of every component of a released checkpoint. The defaults are the released SD 1.5 sizes."""

    unet: UNetLayout = field(default_factory=UNetLayout)
    vae: VaeLayout = field(default_factory=VaeLayout)
    clip: ClipLayout = field(default_factory=ClipLayout)
    num_timesteps: int = 1000
    """Training timesteps of the DDPM schedule buffers."""

    @classmethod
    def tiny(cls) -> CheckpointLayout:
        """A small layout with every structural feature of the real one (for tests)."""
        return cls(
            unet=UNetLayout(
                model_channels=32,
                channel_mult=(1, 2),
                num_res_blocks=1,
                attention_resolutions=(1,),
                num_heads=4,
                context_dim=32,
                motion_heads=4,
            ),
            vae=VaeLayout(ch=32, ch_mult=(1, 2), num_res_blocks=1),
            clip=ClipLayout(hidden_size=32, intermediate_size=37, num_layers=2, num_heads=4),
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CheckpointLayout:
        """Inverse of :meth:`to_dict` (lists become tuples); unknown fields raise ``TypeError``."""

        def build(kind, values):
            return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

        return cls(
            unet=build(UNetLayout, data.get("unet", {})),
            vae=build(VaeLayout, data.get("vae", {})),
            clip=build(ClipLayout, data.get("clip", {})),
            num_timesteps=int(data.get("num_timesteps", 1000)),
        )


# --- building blocks (names relative to the module, as registered in the reference classes) ---


def _linear(prefix: str, out_f: int, in_f: int, bias: bool = True) -> Iterator[tuple[str, Shape]]:
    yield f"{prefix}.weight", (out_f, in_f)
    if bias:
        yield f"{prefix}.bias", (out_f,)


def _conv(prefix: str, out_c: int, in_c: int, k: int) -> Iterator[tuple[str, Shape]]:
    yield f"{prefix}.weight", (out_c, in_c, k, k)
    yield f"{prefix}.bias", (out_c,)


def _norm(prefix: str, c: int) -> Iterator[tuple[str, Shape]]:
    yield f"{prefix}.weight", (c,)
    yield f"{prefix}.bias", (c,)


def _resblock(p: str, c_in: int, c_out: int, emb: int) -> Iterator[tuple[str, Shape]]:
    """``openaimodel.ResBlock`` without scale-shift norm; 1x1 skip conv when the channels change."""
    yield from _norm(f"{p}.in_layers.0", c_in)
    yield from _conv(f"{p}.in_layers.2", c_out, c_in, 3)
    yield from _linear(f"{p}.emb_layers.1", c_out, emb)
    yield from _norm(f"{p}.out_layers.0", c_out)
    yield from _conv(f"{p}.out_layers.3", c_out, c_out, 3)
    if c_in != c_out:
        yield from _conv(f"{p}.skip_connection", c_out, c_in, 1)


def _attention(p: str, dim: int, context: int) -> Iterator[tuple[str, Shape]]:
    """``attention.CrossAttention``: bias-free q/k/v, biased output projection."""
    yield from _linear(f"{p}.to_q", dim, dim, bias=False)
    yield from _linear(f"{p}.to_k", dim, context, bias=False)
    yield from _linear(f"{p}.to_v", dim, context, bias=False)
    yield from _linear(f"{p}.to_out.0", dim, dim)


def _geglu_feedforward(p: str, dim: int, mult: int = 4) -> Iterator[tuple[str, Shape]]:
    yield from _linear(f"{p}.net.0.proj", dim * mult * 2, dim)
    yield from _linear(f"{p}.net.2", dim, dim * mult)


def _spatial_transformer(p: str, c: int, layout: UNetLayout) -> Iterator[tuple[str, Shape]]:
    """``attention.SpatialTransformer`` with 1x1 conv projections (``use_linear_in_transformer=False``)."""
    yield from _norm(f"{p}.norm", c)
    yield from _conv(f"{p}.proj_in", c, c, 1)
    for d in range(layout.transformer_depth):
        b = f"{p}.transformer_blocks.{d}"
        yield from _attention(f"{b}.attn1", c, c)
        yield from _geglu_feedforward(f"{b}.ff", c)
        yield from _attention(f"{b}.attn2", c, layout.context_dim)
        for i in (1, 2, 3):
            yield from _norm(f"{b}.norm{i}", c)
    yield from _conv(f"{p}.proj_out", c, c, 1)


def motion_module_keys(p: str, c: int, layout: UNetLayout) -> Iterator[tuple[str, Shape]]:
    """``motion_module.VanillaTemporalModule`` (one transformer block, ``pos_encoder.pe`` stored as a buffer)."""
    t = f"{p}.temporal_transformer"
    yield from _norm(f"{t}.norm", c)
    yield from _linear(f"{t}.proj_in", c, c)
    b = f"{t}.transformer_blocks.0"
    for a in range(layout.motion_attention_blocks):
        yield from _attention(f"{b}.attention_blocks.{a}", c, c)
        yield f"{b}.attention_blocks.{a}.pos_encoder.pe", (1, layout.motion_max_len, c)
    for a in range(layout.motion_attention_blocks):
        yield from _norm(f"{b}.norms.{a}", c)
    yield from _geglu_feedforward(f"{b}.ff", c)
    yield from _norm(f"{b}.ff_norm", c)
    yield from _linear(f"{t}.proj_out", c, c)


def _hint_block(p: str, layout: UNetLayout) -> Iterator[tuple[str, Shape]]:
    """The ControlNet hint encoder: 8 convs at even indices of a Sequential with SiLUs between them."""
    c16, c32, c96, c256 = HINT_BLOCK_CHANNELS
    pairs = [(layout.hint_channels, c16), (c16, c16), (c16, c32), (c32, c32), (c32, c96), (c96, c96), (c96, c256)]
    pairs.append((c256, layout.model_channels))
    for i, (c_in, c_out) in enumerate(pairs):
        yield from _conv(f"{p}.{2 * i}", c_out, c_in, 3)


# --- UNets ---


def _unet_keys(
    layout: UNetLayout, *, motion: bool, output_blocks: bool, out: bool, hint_block: bool, controlnet: bool
) -> KeyShapes:
    """Walk the construction loop shared by ``UNetModel``, ``UNetModel_Temporal``, ``ControlNetReferenceOnly``
    and ``ControlNet`` and return ``{name: shape}`` in registration order (per top-level module)."""
    mc = layout.model_channels
    emb = 4 * mc
    time_embed = [*_linear("time_embed.0", emb, mc), *_linear("time_embed.2", emb, emb)]
    inputs = [*_conv("input_blocks.0.0", mc, layout.in_channels, 3)]
    zero_convs = [*_conv("zero_convs.0.0", mc, mc, 1)]
    in_motion: list[tuple[str, Shape]] = []
    skip_channels = [mc]
    ch, k = mc, 1
    levels = len(layout.channel_mult)
    for level, c_level in enumerate(layout.level_channels()):
        for _ in range(layout.num_res_blocks):
            inputs += _resblock(f"input_blocks.{k}.0", ch, c_level, emb)
            ch = c_level
            if layout.has_attention(level):
                inputs += _spatial_transformer(f"input_blocks.{k}.1", ch, layout)
            in_motion += motion_module_keys(f"input_blocks_motion_module.{k - 1}.0", ch, layout)
            zero_convs += _conv(f"zero_convs.{k}.0", ch, ch, 1)
            skip_channels.append(ch)
            k += 1
        if level != levels - 1:
            inputs += _conv(f"input_blocks.{k}.0.op", ch, ch, 3)
            in_motion += motion_module_keys(f"input_blocks_motion_module.{k - 1}.0", ch, layout)
            zero_convs += _conv(f"zero_convs.{k}.0", ch, ch, 1)
            skip_channels.append(ch)
            k += 1
    middle = [
        *_resblock("middle_block.0", ch, ch, emb),
        *_spatial_transformer("middle_block.1", ch, layout),
        *_resblock("middle_block.2", ch, ch, emb),
    ]
    mid_motion = list(motion_module_keys("middle_block_motion_module.0", ch, layout))
    middle_out = list(_conv("middle_block_out.0", ch, ch, 1))

    outputs: list[tuple[str, Shape]] = []
    out_motion: list[tuple[str, Shape]] = []
    k = 0
    for level in reversed(range(levels)):
        c_level = layout.level_channels()[level]
        for i in range(layout.num_res_blocks + 1):
            outputs += _resblock(f"output_blocks.{k}.0", ch + skip_channels.pop(), c_level, emb)
            ch = c_level
            n_layers = 1
            if layout.has_attention(level):
                outputs += _spatial_transformer(f"output_blocks.{k}.1", ch, layout)
                n_layers += 1
            out_motion += motion_module_keys(f"output_blocks_motion_module.{k}.0", ch, layout)
            if level and i == layout.num_res_blocks:
                outputs += _conv(f"output_blocks.{k}.{n_layers}.conv", ch, ch, 3)
                out_motion += motion_module_keys(f"output_blocks_motion_module.{k}.1", ch, layout)
            k += 1

    keys: list[tuple[str, Shape]] = [*time_embed, *inputs]
    if motion:
        keys += in_motion
    if controlnet:
        keys += zero_convs
    if hint_block:
        keys += _hint_block("input_hint_block", layout)
    keys += middle
    if motion:
        keys += mid_motion
    if controlnet:
        keys += middle_out
    if output_blocks:
        keys += outputs
        if motion:
            keys += out_motion
    if out:
        keys += [*_norm("out.0", ch), *_conv("out.2", layout.out_channels, mc, 3)]
    return dict(keys)


def main_unet_keys(layout: UNetLayout, motion: bool) -> KeyShapes:
    """``model.diffusion_model``: ``UNetModel_Temporal`` (``motion=True``) or ``UNetModel``."""
    return _unet_keys(layout, motion=motion, output_blocks=True, out=True, hint_block=False, controlnet=False)


def reference_unet_keys(layout: UNetLayout) -> KeyShapes:
    """``control_model``: ``ControlNetReferenceOnly`` (no ``out`` layers; ``input_hint_block`` unused)."""
    return _unet_keys(layout, motion=False, output_blocks=True, out=False, hint_block=True, controlnet=False)


def controlnet_keys(layout: UNetLayout) -> KeyShapes:
    """``pose_control_model``: the original ControlNet (encoder half, zero convs, hint encoder)."""
    return _unet_keys(layout, motion=False, output_blocks=False, out=False, hint_block=True, controlnet=True)


# --- VAE and CLIP ---


def _vae_resnet(p: str, c_in: int, c_out: int) -> Iterator[tuple[str, Shape]]:
    yield from _norm(f"{p}.norm1", c_in)
    yield from _conv(f"{p}.conv1", c_out, c_in, 3)
    yield from _norm(f"{p}.norm2", c_out)
    yield from _conv(f"{p}.conv2", c_out, c_out, 3)
    if c_in != c_out:
        yield from _conv(f"{p}.nin_shortcut", c_out, c_in, 1)


def _vae_mid(p: str, c: int) -> Iterator[tuple[str, Shape]]:
    yield from _vae_resnet(f"{p}.block_1", c, c)
    yield from _norm(f"{p}.attn_1.norm", c)
    for name in ("q", "k", "v", "proj_out"):
        yield from _conv(f"{p}.attn_1.{name}", c, c, 1)
    yield from _vae_resnet(f"{p}.block_2", c, c)


def vae_keys(layout: VaeLayout) -> KeyShapes:
    """``first_stage_model``: ``AutoencoderKL`` with ``attn_resolutions: []`` (attention only in the middle)."""
    keys: list[tuple[str, Shape]] = [*_conv("encoder.conv_in", layout.ch, layout.in_channels, 3)]
    n = len(layout.ch_mult)
    in_mult = (1, *layout.ch_mult)
    for level in range(n):
        c_in, c_out = layout.ch * in_mult[level], layout.ch * layout.ch_mult[level]
        for j in range(layout.num_res_blocks):
            keys += _vae_resnet(f"encoder.down.{level}.block.{j}", c_in, c_out)
            c_in = c_out
        if level != n - 1:
            keys += _conv(f"encoder.down.{level}.downsample.conv", c_out, c_out, 3)
    c = layout.ch * layout.ch_mult[-1]
    keys += _vae_mid("encoder.mid", c)
    keys += [*_norm("encoder.norm_out", c), *_conv("encoder.conv_out", 2 * layout.z_channels, c, 3)]

    keys += _conv("decoder.conv_in", c, layout.z_channels, 3)
    keys += _vae_mid("decoder.mid", c)
    up: dict[int, list[tuple[str, Shape]]] = {}
    for level in reversed(range(n)):
        c_out = layout.ch * layout.ch_mult[level]
        block = []
        for j in range(layout.num_res_blocks + 1):
            block += _vae_resnet(f"decoder.up.{level}.block.{j}", c, c_out)
            c = c_out
        if level != 0:
            block += _conv(f"decoder.up.{level}.upsample.conv", c, c, 3)
        up[level] = block
    for level in range(n):  # the reference prepends, so the ModuleList is in level order
        keys += up[level]
    keys += [*_norm("decoder.norm_out", c), *_conv("decoder.conv_out", layout.out_channels, c, 3)]
    keys += _conv("quant_conv", 2 * layout.embed_dim, 2 * layout.z_channels, 1)
    keys += _conv("post_quant_conv", layout.z_channels, layout.embed_dim, 1)
    return dict(keys)


def clip_keys(layout: ClipLayout, position_ids: bool = False) -> KeyShapes:
    """``cond_stage_model.transformer``: transformers' ``CLIPTextModel`` (names under ``text_model.``)."""
    h, m = layout.hidden_size, layout.intermediate_size
    keys: list[tuple[str, Shape]] = [
        ("text_model.embeddings.token_embedding.weight", (layout.vocab_size, h)),
        ("text_model.embeddings.position_embedding.weight", (layout.max_positions, h)),
    ]
    if position_ids:
        keys.append(("text_model.embeddings.position_ids", (1, layout.max_positions)))
    for i in range(layout.num_layers):
        p = f"text_model.encoder.layers.{i}"
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            keys += _linear(f"{p}.self_attn.{proj}", h, h)
        keys += _norm(f"{p}.layer_norm1", h)
        keys += _linear(f"{p}.mlp.fc1", m, h)
        keys += _linear(f"{p}.mlp.fc2", h, m)
        keys += _norm(f"{p}.layer_norm2", h)
    keys += _norm("text_model.final_layer_norm", h)
    return dict(keys)


# --- whole checkpoints ---


def checkpoint_keys(layout: CheckpointLayout, motion: bool, position_ids: bool = False) -> KeyShapes:
    """Every key of a released checkpoint with its shape.

    Args:
        layout: the model sizes.
        motion: True for the orbit model (``model_state-*.th``), False for the back-view model
            (``back_head-*.th``).
        position_ids: whether the CLIP ``position_ids`` buffer is stored (older transformers).
    """
    keys: KeyShapes = {name: (layout.num_timesteps,) for name in SCHEDULE_BUFFERS}
    for prefix, part in (
        (UNET_PREFIX, main_unet_keys(layout.unet, motion)),
        (REFERENCE_PREFIX, reference_unet_keys(layout.unet)),
        (CONTROLNET_PREFIX, controlnet_keys(layout.unet)),
        (VAE_PREFIX, vae_keys(layout.vae)),
        (CLIP_PREFIX, clip_keys(layout.clip, position_ids)),
    ):
        keys.update({prefix + k: v for k, v in part.items()})
    return keys


def ddpm_schedule(num_timesteps: int = 1000, linear_start: float = 0.00085, linear_end: float = 0.012) -> dict:
    """The schedule buffers as ``DDPM.register_schedule`` computes them (``linear`` = SD's scaled-linear)."""
    betas = torch.linspace(linear_start**0.5, linear_end**0.5, num_timesteps, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    posterior_variance = betas * (1.0 - prev) / (1.0 - alphas_cumprod)
    values = {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / alphas_cumprod).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / alphas_cumprod - 1).sqrt(),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": posterior_variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * prev.sqrt() / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (1.0 - prev) * (1.0 - betas).sqrt() / (1.0 - alphas_cumprod),
        "logvar": torch.zeros(num_timesteps, dtype=torch.float64),
    }
    return {k: v.float() for k, v in values.items()}


def sinusoid_table(max_len: int, dim: int) -> torch.Tensor:
    """``motion_module.PositionalEncoding.pe``: (1, max_len, dim), sin on even and cos on odd channels."""
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, max_len, dim)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term)
    return pe


def synthetic_checkpoint(
    layout: CheckpointLayout,
    motion: bool,
    seed: int = 0,
    position_ids: bool = False,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """A state dict with the released names and shapes: random weights, real schedule and sinusoid buffers.

    For tests and benchmarks; every value is distinct so that a misplaced tensor shows. ``dtype`` applies to the
    random weights (the schedule stays float32); ``device`` is where they are drawn (a GPU draws the 2.7 billion
    weights of the full size in seconds); the returned tensors are on the CPU. The weights are scaled as
    :func:`random_weight` says, so that the full-size models sample without overflow in float16.
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    schedule = ddpm_schedule(layout.num_timesteps)
    state: dict[str, torch.Tensor] = {}
    for name, shape in checkpoint_keys(layout, motion, position_ids).items():
        if name in schedule:
            state[name] = schedule[name]
        elif name.endswith("pos_encoder.pe"):
            state[name] = sinusoid_table(shape[1], shape[2])
        elif name == CLIP_POSITION_IDS:
            state[name] = torch.arange(shape[1]).unsqueeze(0)
        else:
            state[name] = random_weight(name, shape, gen, dtype, device).cpu()
    return state


def random_weight(
    name: str, shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype, device: str | torch.device
) -> torch.Tensor:
    """One random tensor of a synthetic checkpoint, at the scale that keeps activations near 1 through every layer.

    A matrix or kernel gets standard deviation 1/sqrt(fan-in) (its outputs keep the variance of its inputs); a
    vector named ``weight`` is a norm's scale, 1 + N(0, 0.1²); any other vector (a bias) N(0, 0.1²). The same
    0.1 for everything made each 3x3 convolution of 320 channels multiply its input by about 5: the full-size
    views overflowed float16 and came back black from the GPU check (docs/BENCHMARKS.md, GPU check).
    """
    values = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if len(shape) >= 2:
        return values / math.sqrt(math.prod(shape[1:]))
    if name.endswith("weight"):
        return values * 0.1 + 1.0
    return values * 0.1
