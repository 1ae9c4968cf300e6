"""Conversion of the released DiffPortrait360 checkpoints into one diffusers-layout weights folder.

The released files are ``state_dict()``s of the reference LDM model (names and shapes in
:mod:`portrait3d.diffusion.ldm_keys`). This module checks a file against those names and shapes, renames every
tensor into its diffusers module, loads each module strictly, and saves the two pipeline folders::

    model_state-340000.th (orbit)   -> WEIGHTS/            Portrait360Pipeline
    back_head-230000.th (back view) -> WEIGHTS/back_view/  BackViewPipeline

Component by component (LDM prefix -> diffusers module):

- ``model.diffusion_model``: SD UNet -> ``UNet2DConditionModel`` (inside ``MultiViewUNet.unet`` for the orbit
  model); its ``*_motion_module`` entries -> ``MultiViewUNet`` view modules (same inner names);
- ``control_model`` (``ControlNetReferenceOnly``) -> ``reference_unet`` (``UNet2DConditionModel``). Its
  ``input_hint_block`` is never used by the reference code and is dropped; it has no output layers, so the
  diffusers ``conv_norm_out``/``conv_out`` are set to identity/zero (their output is never used: the reference
  UNet only fills the bank);
- ``pose_control_model`` -> ``controlnet`` (``ControlNetModel``);
- ``first_stage_model`` -> ``vae`` (``AutoencoderKL``, scaling factor 0.18215);
- ``cond_stage_model.transformer`` -> a CLIP text encoder, run once on the empty prompt; only its output
  (1, 77, 768) is stored (``prompt_embeds``);
- the DDPM schedule buffers are checked against the SD 1.5 scaled-linear schedule and dropped: the scheduler is
  ``pipelines.release_scheduler()``.

diffusers' ``single_file_utils`` LDM converters are not used: importing that module pulls in torchvision
through transformers' image processors, which does not load with the CPU torch build; the renames below follow
the same conventions and every tensor is accounted for (strict loads, no leftover keys).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from portrait3d import progress
from portrait3d.diffusion import ldm_keys
from portrait3d.diffusion.ldm_keys import CheckpointLayout, UNetLayout, VaeLayout
from portrait3d.errors import UserError

#: SD 1.5 latent scaling (``scale_factor`` of the reference config).
VAE_SCALING_FACTOR = 0.18215
#: DDPM schedule of the reference config (``linear_start``, ``linear_end``, ``timesteps``).
LINEAR_START, LINEAR_END = 0.00085, 0.012
_SHOW = 5  # keys listed in an error message


@dataclass(frozen=True)
class ConvertOptions:
    """Options of :func:`convert_weights`."""

    layout: CheckpointLayout = CheckpointLayout()
    """Model sizes of the checkpoints (the released SD 1.5 sizes by default; tests use tiny ones)."""
    dtype: str = "keep"
    """Storage dtype of the converted weights: ``keep`` (as in the checkpoint), ``float16`` or ``float32``."""


# --------------------------------------------------------------------------------------------------------------
# Loading and checking


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a released checkpoint (``torch.save`` file or ``.safetensors``) without running pickled code.

    The state dict may be wrapped in ``{"state_dict": ...}``. Zip-format files are memory-mapped, so a
    multi-GB file costs no RAM until its tensors are used.

    Raises:
        UserError: missing file, not a checkpoint, truncated file, or a pickle that needs code to load.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    with path.open("rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise UserError(f"{path}: not a checkpoint (file of {path.stat().st_size} bytes)")
    if path.suffix == ".safetensors":
        state = _load_safetensors(path)
    else:
        state = _load_torch(path, is_zip=head.startswith(b"PK"))
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise UserError(f"{path}: not a state dict (found {type(state).__name__})")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"{path}: not a state dict of tensors ({len(bad)} entries are not, e.g. {bad[:_SHOW]})")
    return state


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable safetensors file (truncated or corrupt): {exc}") from exc


_SAFE_MODULES = ("torch", "collections", "_codecs")
"""Modules whose globals a plain state dict's pickle names (tensor rebuilders, storages, OrderedDict)."""
UNSAFE_PICKLE = "holds Python code that portrait3d will not run; convert it from a trusted source"


def _pickle_globals(path: Path, is_zip: bool) -> list[str]:
    """``module.name`` of every global the checkpoint's pickle(s) would import (read, never run)."""
    import pickletools
    import zipfile

    if is_zip:
        with zipfile.ZipFile(path) as archive:
            streams = [archive.read(n) for n in archive.namelist() if n.endswith(".pkl")]
    else:
        streams = [path.read_bytes()]
    found: list[str] = []
    for data in streams:
        stream = io.BytesIO(data)
        while stream.tell() < len(data):  # the legacy format is several pickles in a row
            strings: list[str] = []
            try:
                for op, arg, _ in pickletools.genops(stream):
                    if op.name in ("GLOBAL", "INST"):
                        found.append(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
                    elif isinstance(arg, str):
                        strings.append(arg)
            except Exception:  # noqa: BLE001 - past the pickles (raw storage bytes) or truncated: stop reading
                break
    return found


def _load_torch(path: Path, is_zip: bool) -> object:
    try:
        # Zip-format checkpoints can be memory-mapped; the legacy format cannot. torch's own warnings
        # (pickle protocol, weights_only advice) would only confuse: the errors below say what is wrong.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except Exception as exc:  # noqa: BLE001 - torch.load signals bad files with many exception types
        try:
            code = [g for g in _pickle_globals(path, is_zip) if g.split(".")[0] not in _SAFE_MODULES]
        except Exception:  # noqa: BLE001 - an unreadable archive is reported below as corrupt
            code = []
        if code:
            raise UserError(f"{path}: {UNSAFE_PICKLE} (it imports {', '.join(sorted(set(code))[:3])})") from exc
        text = str(exc)
        if is_zip:
            message = text.strip().splitlines()[0][:160] if text.strip() else type(exc).__name__
            raise UserError(f"{path}: truncated or corrupt checkpoint ({message})") from exc
        raise UserError(f"{path}: not a PyTorch checkpoint, or truncated (torch.load: {type(exc).__name__})") from exc


def check_keys(
    state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], source: str, optional: Iterable[str] = ()
) -> None:
    """Raise a one-line :class:`UserError` unless ``state`` has exactly the ``expected`` names and shapes.

    Args:
        state: the loaded tensors.
        expected: name -> shape.
        source: the file name used in the message.
        optional: names that may be present or absent (and then must have their expected shape).
    """
    optional = set(optional)
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {expected[k]}"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:_SHOW])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:_SHOW])})")
    if wrong:
        problems.append(f"{len(wrong)} keys with the wrong shape (e.g. {'; '.join(wrong[:_SHOW])})")
    if problems:
        raise UserError(
            f"{source}: does not match the expected checkpoint layout "
            f"({len(state)} keys, {len(expected) - len(optional - set(state))} expected): " + "; ".join(problems)
        )


def check_checkpoint(state: dict[str, torch.Tensor], layout: CheckpointLayout, motion: bool, source: str) -> None:
    """Check names, shapes and the fixed buffers (DDPM schedule, view-position tables, CLIP position ids)."""
    has_views = any(k.startswith(ldm_keys.UNET_PREFIX) and _is_motion(k) for k in state)
    if has_views != motion and any(k.startswith(ldm_keys.UNET_PREFIX) for k in state):
        raise UserError(
            f"{source}: holds view (motion) modules, so it is the orbit model: pass it as --orbit"
            if has_views
            else f"{source}: holds no view (motion) modules, so it is not the orbit model (the back-view model "
            "goes to --back-view)"
        )
    expected = ldm_keys.checkpoint_keys(layout, motion, position_ids=True)
    check_keys(state, expected, source, optional=[ldm_keys.CLIP_POSITION_IDS])
    schedule = ldm_keys.ddpm_schedule(layout.num_timesteps, LINEAR_START, LINEAR_END)
    if not torch.allclose(state["betas"].double(), schedule["betas"].double(), rtol=1e-4, atol=1e-7):
        raise UserError(f"{source}: its noise schedule (betas) is not SD 1.5's scaled-linear 0.00085-0.012 schedule")
    ids = state.get(ldm_keys.CLIP_POSITION_IDS)
    if ids is not None and not torch.equal(ids.reshape(-1).long(), torch.arange(ids.numel())):
        raise UserError(f"{source}: {ldm_keys.CLIP_POSITION_IDS} is not 0..{ids.numel() - 1}")


# --------------------------------------------------------------------------------------------------------------
# Renaming: LDM module prefixes -> diffusers module prefixes

_RESNET_INNER = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
_VAE_RESNET_INNER = {"nin_shortcut": "conv_shortcut"}
_VAE_ATTENTION_INNER = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


@dataclass(frozen=True)
class _Target:
    """Where an LDM module lands: the diffusers prefix, and a rename of the names inside the module."""

    prefix: str
    inner: dict[str, str] | None = None


def unet_prefix_map(layout: UNetLayout, controlnet: bool = False) -> dict[str, _Target]:
    """LDM UNet / ControlNet module prefixes -> diffusers ``UNet2DConditionModel`` / ``ControlNetModel`` ones.

    LDM numbers the encoder as one flat list of ``input_blocks`` (``conv_in`` first, then ``num_res_blocks``
    residual blocks and a downsampler per level) and the decoder as a flat list of ``output_blocks``; diffusers
    groups both per level.
    """
    n = layout.num_res_blocks
    levels = len(layout.channel_mult)
    m: dict[str, _Target] = {
        "time_embed.0": _Target("time_embedding.linear_1"),
        "time_embed.2": _Target("time_embedding.linear_2"),
        "input_blocks.0.0": _Target("conv_in"),
        "middle_block.0": _Target("mid_block.resnets.0", _RESNET_INNER),
        "middle_block.1": _Target("mid_block.attentions.0"),
        "middle_block.2": _Target("mid_block.resnets.1", _RESNET_INNER),
        "out.0": _Target("conv_norm_out"),
        "out.2": _Target("conv_out"),
    }
    k = 1
    for level in range(levels):
        for r in range(n):
            m[f"input_blocks.{k}.0"] = _Target(f"down_blocks.{level}.resnets.{r}", _RESNET_INNER)
            m[f"input_blocks.{k}.1"] = _Target(f"down_blocks.{level}.attentions.{r}")
            k += 1
        if level != levels - 1:
            m[f"input_blocks.{k}.0.op"] = _Target(f"down_blocks.{level}.downsamplers.0.conv")
            k += 1
    for j in range(levels * (n + 1)):
        block, r = divmod(j, n + 1)
        m[f"output_blocks.{j}.0"] = _Target(f"up_blocks.{block}.resnets.{r}", _RESNET_INNER)
        m[f"output_blocks.{j}.1"] = _Target(f"up_blocks.{block}.attentions.{r}")
        # The upsampler follows the attention when the level has one.
        m[f"output_blocks.{j}.1.conv"] = _Target(f"up_blocks.{block}.upsamplers.0.conv")
        m[f"output_blocks.{j}.2.conv"] = _Target(f"up_blocks.{block}.upsamplers.0.conv")
    if controlnet:
        for z in range(k):
            m[f"zero_convs.{z}.0"] = _Target(f"controlnet_down_blocks.{z}")
        m["middle_block_out.0"] = _Target("controlnet_mid_block")
        hint = ["conv_in", *(f"blocks.{i}" for i in range(6)), "conv_out"]
        for i, name in enumerate(hint):
            m[f"input_hint_block.{2 * i}"] = _Target(f"controlnet_cond_embedding.{name}")
    return m


def vae_prefix_map(layout: VaeLayout) -> dict[str, _Target]:
    """LDM ``AutoencoderKL`` module prefixes -> diffusers ``AutoencoderKL`` ones (decoder levels reversed)."""
    levels = len(layout.ch_mult)
    m: dict[str, _Target] = {}
    for part in ("encoder", "decoder"):
        m[f"{part}.mid.block_1"] = _Target(f"{part}.mid_block.resnets.0", _VAE_RESNET_INNER)
        m[f"{part}.mid.block_2"] = _Target(f"{part}.mid_block.resnets.1", _VAE_RESNET_INNER)
        m[f"{part}.mid.attn_1"] = _Target(f"{part}.mid_block.attentions.0", _VAE_ATTENTION_INNER)
        m[f"{part}.norm_out"] = _Target(f"{part}.conv_norm_out")
        for name in ("conv_in", "conv_out"):
            m[f"{part}.{name}"] = _Target(f"{part}.{name}")
    for level in range(levels):
        up = levels - 1 - level
        for j in range(layout.num_res_blocks + 1):
            down_resnet, up_resnet = f"encoder.down_blocks.{level}.resnets.{j}", f"decoder.up_blocks.{up}.resnets.{j}"
            m[f"encoder.down.{level}.block.{j}"] = _Target(down_resnet, _VAE_RESNET_INNER)
            m[f"decoder.up.{level}.block.{j}"] = _Target(up_resnet, _VAE_RESNET_INNER)
        m[f"encoder.down.{level}.downsample.conv"] = _Target(f"encoder.down_blocks.{level}.downsamplers.0.conv")
        m[f"decoder.up.{level}.upsample.conv"] = _Target(f"decoder.up_blocks.{up}.upsamplers.0.conv")
    m["quant_conv"] = _Target("quant_conv")
    m["post_quant_conv"] = _Target("post_quant_conv")
    return m


def rename(state: dict[str, torch.Tensor], prefix_map: dict[str, _Target], source: str) -> dict[str, torch.Tensor]:
    """Rename every key of ``state`` through the longest matching module prefix of ``prefix_map``.

    Raises:
        UserError: a key matches no prefix, or two keys land on the same name.
    """
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            target = prefix_map.get(".".join(parts[:cut]))
            if target is not None:
                break
        else:
            raise UserError(f"{source}: no diffusers module for key {key}")
        rest = ".".join(parts[cut:])
        if target.inner:
            head, _, tail = rest.rpartition(".")
            rest = f"{target.inner.get(head, head)}.{tail}"
        new = f"{target.prefix}.{rest}"
        if new in out:
            raise UserError(f"{source}: two keys map to {new}")
        out[new] = tensor
    return out


def _strip(state: dict[str, torch.Tensor], prefix: str, drop: Callable[[str], bool] = lambda k: False) -> dict:
    """The entries under ``prefix`` with the prefix removed (minus those ``drop`` selects)."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and not drop(k[len(prefix) :])}


def _is_motion(key: str) -> bool:
    return "_motion_module." in key


def convert_unet(state: dict[str, torch.Tensor], layout: UNetLayout, source: str) -> dict[str, torch.Tensor]:
    """``model.diffusion_model`` SD part (prefix stripped, no motion modules) -> ``UNet2DConditionModel`` keys."""
    return rename(state, unet_prefix_map(layout), source)


def convert_reference_unet(state: dict[str, torch.Tensor], layout: UNetLayout, source: str) -> dict:
    """``control_model`` (prefix stripped) -> ``UNet2DConditionModel`` keys.

    The unused ``input_hint_block`` is dropped; the missing output layers become an identity norm and a zero
    convolution (the reference UNet's output is discarded, only its attention inputs are used).
    """
    body = {k: v for k, v in state.items() if not k.startswith("input_hint_block.")}
    out = rename(body, unet_prefix_map(layout), source)
    c, dtype = layout.model_channels, next(iter(state.values())).dtype
    out["conv_norm_out.weight"] = torch.ones(c, dtype=dtype)
    out["conv_norm_out.bias"] = torch.zeros(c, dtype=dtype)
    out["conv_out.weight"] = torch.zeros(layout.out_channels, c, 3, 3, dtype=dtype)
    out["conv_out.bias"] = torch.zeros(layout.out_channels, dtype=dtype)
    return out


def convert_controlnet(state: dict[str, torch.Tensor], layout: UNetLayout, source: str) -> dict:
    """``pose_control_model`` (prefix stripped) -> ``ControlNetModel`` keys."""
    return rename(state, unet_prefix_map(layout, controlnet=True), source)


def convert_vae(state: dict[str, torch.Tensor], layout: VaeLayout, source: str) -> dict:
    """``first_stage_model`` (prefix stripped) -> ``AutoencoderKL`` keys; 1x1-conv attention weights -> linear."""
    out = rename(state, vae_prefix_map(layout), source)
    for key, tensor in out.items():
        if ".attentions." in key and key.endswith(".weight") and tensor.ndim == 4:
            out[key] = tensor[:, :, 0, 0]
    return out


def convert_view_modules(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """``*_motion_module`` entries of ``model.diffusion_model`` (prefix stripped) -> ``MultiViewUNet`` keys.

    ``input_blocks_motion_module.{k}.0`` -> ``down_view_modules.{k}``, ``middle_block_motion_module.0`` ->
    ``mid_view_module``, ``output_blocks_motion_module.{k}.{m}`` -> ``up_view_modules.{k}.{m}``; the names inside
    (after ``temporal_transformer.``) are the same on both sides.
    """
    out = {}
    for key, tensor in state.items():
        head, sep, rest = key.partition(".temporal_transformer.")
        parts = head.split(".")
        if not sep:
            raise UserError(f"{source}: unexpected view-module key {key}")
        if parts[0] == "input_blocks_motion_module" and len(parts) == 3 and parts[2] == "0":
            new = f"down_view_modules.{parts[1]}.{rest}"
        elif parts[0] == "middle_block_motion_module" and parts[1:] == ["0"]:
            new = f"mid_view_module.{rest}"
        elif parts[0] == "output_blocks_motion_module" and len(parts) == 3:
            new = f"up_view_modules.{parts[1]}.{parts[2]}.{rest}"
        else:
            raise UserError(f"{source}: unexpected view-module key {key}")
        out[new] = tensor
    return out


def convert_clip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``cond_stage_model.transformer`` (prefix stripped) -> transformers ``CLIPTextModel`` keys (no buffers)."""
    return {k: v for k, v in state.items() if not k.endswith("embeddings.position_ids")}


# --------------------------------------------------------------------------------------------------------------
# diffusers configs


def unet_config(layout: UNetLayout) -> dict:
    """``UNet2DConditionModel`` config equal to the LDM UNet (SD 1.5 for the default layout)."""
    levels = len(layout.channel_mult)
    down = ["CrossAttnDownBlock2D" if layout.has_attention(i) else "DownBlock2D" for i in range(levels)]
    up = ["CrossAttnUpBlock2D" if layout.has_attention(i) else "UpBlock2D" for i in reversed(range(levels))]
    return {
        "sample_size": 64,
        "in_channels": layout.in_channels,
        "out_channels": layout.out_channels,
        "down_block_types": down,
        "up_block_types": up,
        "block_out_channels": layout.level_channels(),
        "layers_per_block": layout.num_res_blocks,
        "cross_attention_dim": layout.context_dim,
        # diffusers' legacy name: for SD 1.x "attention_head_dim" is the number of heads.
        "attention_head_dim": layout.num_heads,
        "transformer_layers_per_block": layout.transformer_depth,
        "norm_num_groups": 32,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
    }


def controlnet_config(layout: UNetLayout) -> dict:
    """``ControlNetModel`` config equal to the LDM ControlNet (RGB hint, hint encoder 16-32-96-256)."""
    config = unet_config(layout)
    for key in ("sample_size", "out_channels", "up_block_types"):
        config.pop(key)
    config.update(
        conditioning_channels=layout.hint_channels,
        conditioning_embedding_out_channels=list(ldm_keys.HINT_BLOCK_CHANNELS),
        controlnet_conditioning_channel_order="rgb",
    )
    return config


def vae_config(layout: VaeLayout) -> dict:
    """``AutoencoderKL`` config equal to the LDM first stage."""
    if layout.embed_dim != layout.z_channels:
        raise UserError(f"VAE layout: embed_dim {layout.embed_dim} != z_channels {layout.z_channels} is not supported")
    levels = len(layout.ch_mult)
    return {
        "in_channels": layout.in_channels,
        "out_channels": layout.out_channels,
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": [layout.ch * m for m in layout.ch_mult],
        "layers_per_block": layout.num_res_blocks,
        "latent_channels": layout.z_channels,
        "norm_num_groups": 32,
        "sample_size": 512,
        "scaling_factor": VAE_SCALING_FACTOR,
    }


# --------------------------------------------------------------------------------------------------------------
# Building the diffusers modules


def _cast(state: dict[str, torch.Tensor], dtype: str) -> dict[str, torch.Tensor]:
    if dtype == "keep":
        return state
    target = {"float16": torch.float16, "float32": torch.float32}[dtype]
    return {k: (v.to(target) if v.is_floating_point() else v) for k, v in state.items()}


def load_strict(factory: Callable[[], torch.nn.Module], state: dict[str, torch.Tensor], what: str) -> torch.nn.Module:
    """Build a module on the meta device and give it exactly ``state`` (no copy, no random init).

    Raises:
        UserError: ``state`` does not match the module's parameters and buffers exactly (names or shapes).
    """
    with torch.device("meta"):
        module = factory()
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    check_keys(state, expected, what)
    module.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise UserError(f"{what}: {len(left)} tensors were not set by the checkpoint (e.g. {left[:_SHOW]})")
    return module.eval()


def empty_prompt_embedding(clip_state: dict[str, torch.Tensor], layout: ldm_keys.ClipLayout) -> torch.Tensor:
    """The SD 1.5 CLIP text encoder's output for the empty prompt: (1, max_positions, hidden), float32.

    As ``FrozenCLIPEmbedder`` (layer "last"): token ids ``[BOS] + [EOS] * 76`` (the tokenizer pads with the end
    token), ``last_hidden_state`` after the final layer norm. The two ids come from the layout's vocabulary
    (:meth:`~portrait3d.diffusion.ldm_keys.ClipLayout.special_token_ids`), not from SD 1.5's.
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    try:
        bos, eos = layout.special_token_ids()
    except ValueError as exc:
        raise UserError(f"CLIP text encoder: {exc}") from exc
    config = CLIPTextConfig(
        vocab_size=layout.vocab_size,
        hidden_size=layout.hidden_size,
        intermediate_size=layout.intermediate_size,
        num_hidden_layers=layout.num_layers,
        num_attention_heads=layout.num_heads,
        max_position_embeddings=layout.max_positions,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        bos_token_id=bos,
        eos_token_id=eos,
    )
    model = CLIPTextModel(config)
    state = {k: v.float() for k, v in convert_clip(clip_state).items()}
    if not any(k.startswith("text_model.") for k in model.state_dict()):
        # transformers 5 dropped the ``text_model`` wrapper of CLIPTextModel.
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    check_keys(state, expected, "CLIP text encoder")
    missing, unexpected = model.load_state_dict(state, strict=False)
    leftover = [k for k in missing if not k.endswith("position_ids")]
    if leftover or unexpected:
        raise UserError(f"CLIP text encoder: keys not set {leftover[:_SHOW]}, unexpected {unexpected[:_SHOW]}")
    ids = torch.full((1, layout.max_positions), eos, dtype=torch.long)
    ids[0, 0] = bos
    with torch.no_grad():
        return model.eval()(input_ids=ids).last_hidden_state.detach().clone()


def build_components(
    state: dict[str, torch.Tensor], layout: CheckpointLayout, motion: bool, source: str, dtype: str = "keep"
) -> dict[str, object]:
    """The diffusers components of one checked checkpoint.

    Returns ``{"unet", "reference_unet", "controlnet", "vae", "scheduler", "prompt_embeds"}``; ``unet`` is a
    ``MultiViewUNet`` when ``motion`` (orbit model), else a ``UNet2DConditionModel`` (back-view model).
    """
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    from portrait3d.diffusion.pipelines import release_scheduler
    from portrait3d.diffusion.prompt import PromptEmbedding
    from portrait3d.diffusion.unet import MultiViewUNet

    u = layout.unet
    progress.info(f"{source}: converting the UNet")
    main = _strip(state, ldm_keys.UNET_PREFIX)
    unet_state = convert_unet({k: v for k, v in main.items() if not _is_motion(k)}, u, source)
    if motion:
        views = convert_view_modules({k: v for k, v in main.items() if _is_motion(k)}, source)
        full = {**{f"unet.{k}": v for k, v in unet_state.items()}, **views}
        unet = load_strict(
            lambda: MultiViewUNet(
                unet_config=unet_config(u),
                view_num_attention_heads=u.motion_heads,
                view_num_attention_blocks=u.motion_attention_blocks,
                view_max_views=u.motion_max_len,
            ),
            _cast(full, dtype),
            f"{source}: UNet with view modules",
        )
    else:
        unet = load_strict(lambda: UNet2DConditionModel(**unet_config(u)), _cast(unet_state, dtype), f"{source}: UNet")
    progress.info(f"{source}: converting the reference UNet, ControlNet and VAE")
    reference = convert_reference_unet(_strip(state, ldm_keys.REFERENCE_PREFIX), u, source)
    reference_unet = load_strict(
        lambda: UNet2DConditionModel(**unet_config(u)), _cast(reference, dtype), f"{source}: reference UNet"
    )
    control = convert_controlnet(_strip(state, ldm_keys.CONTROLNET_PREFIX), u, source)
    controlnet = load_strict(
        lambda: ControlNetModel(**controlnet_config(u)), _cast(control, dtype), f"{source}: ControlNet"
    )
    vae_state = convert_vae(_strip(state, ldm_keys.VAE_PREFIX), layout.vae, source)
    vae = load_strict(lambda: AutoencoderKL(**vae_config(layout.vae)), _cast(vae_state, dtype), f"{source}: VAE")
    progress.info(f"{source}: computing the empty-prompt embedding with its CLIP text encoder")
    embedding = empty_prompt_embedding(_strip(state, ldm_keys.CLIP_PREFIX), layout.clip)
    prompt_embeds = load_strict(
        lambda: PromptEmbedding(sequence_length=embedding.shape[1], hidden_size=embedding.shape[2]),
        _cast({"embedding": embedding}, dtype),
        f"{source}: prompt embedding",
    )
    return {
        "unet": unet,
        "reference_unet": reference_unet,
        "controlnet": controlnet,
        "vae": vae,
        "scheduler": release_scheduler(),
        "prompt_embeds": prompt_embeds,
    }


# --------------------------------------------------------------------------------------------------------------
# The whole conversion


def convert_checkpoint(
    path: str | Path, out_dir: str | Path, motion: bool, options: ConvertOptions = ConvertOptions(), label: str = ""
) -> None:
    """Convert one released file into the pipeline folder ``out_dir`` (new or empty); ``label`` names it in logs."""
    from portrait3d.diffusion.pipelines import BackViewPipeline, Portrait360Pipeline

    source = Path(path).name
    progress.info(f"reading {path}")
    state = load_checkpoint(path)
    check_checkpoint(state, options.layout, motion, str(path))
    components = build_components(state, options.layout, motion, source, options.dtype)
    pipeline_class = Portrait360Pipeline if motion else BackViewPipeline
    pipeline = pipeline_class(**components)
    progress.info(f"writing {label or out_dir}")
    pipeline.save_pretrained(str(out_dir), safe_serialization=True)


def convert_weights(
    orbit: str | Path, back_view: str | Path, out: str | Path, options: ConvertOptions = ConvertOptions()
) -> Path:
    """Convert both released checkpoints into one weights folder, written atomically.

    Args:
        orbit: the orbit model (``model_state-340000.th``).
        back_view: the back-view model (``back_head-230000.th``).
        out: the folder to write: the ``Portrait360Pipeline`` folder, with the ``BackViewPipeline`` folder in
            ``out/back_view``. An existing folder is replaced only when the conversion succeeds.

    Returns:
        ``out`` as a Path.
    """
    from portrait3d.run import atomic_dir, check_replaceable, mark_owned

    check_replaceable(out, "convert-weights")  # the command checked --force; no foreign folder, ever
    if options.dtype not in ("keep", "float16", "float32"):
        raise UserError(f"--dtype must be keep, float16 or float32, got {options.dtype}")
    for name, path in (("--orbit", orbit), ("--back-view", back_view)):
        if not Path(path).is_file():
            raise UserError(f"{name} {path}: no such file")
    out = Path(out)
    # Check both files before the long conversion (cheap: zip checkpoints are memory-mapped).
    for path, motion in ((orbit, True), (back_view, False)):
        check_checkpoint(load_checkpoint(path), options.layout, motion, str(path))
    with atomic_dir(out) as tmp:
        convert_checkpoint(orbit, tmp, motion=True, options=options, label=str(out))
        convert_checkpoint(back_view, tmp / "back_view", motion=False, options=options, label=str(out / "back_view"))
        mark_owned(tmp, "convert-weights")
    progress.info(f"converted weights written to {out}")
    return out


def load_layout(path: str | Path | None) -> CheckpointLayout:
    """The model sizes from a JSON file (a :meth:`CheckpointLayout.to_dict` dump); None gives the release sizes."""
    import json

    if path is None:
        return CheckpointLayout()
    try:
        return CheckpointLayout.from_dict(json.loads(Path(path).read_text()))
    except OSError as exc:
        raise UserError(f"--layout {path}: cannot read it ({exc.strerror or exc})") from exc
    except (ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"--layout {path}: not a checkpoint layout JSON ({exc})") from exc
