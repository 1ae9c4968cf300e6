"""Conversion of the released LDM-style checkpoints into the diffusers weights folder (tiny synthetic files)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import portrait3d.diffusion  # noqa: F401 - hides an unloadable torchvision before diffusers is imported
from portrait3d.diffusion import convert, ldm_keys
from portrait3d.diffusion.ldm_keys import CheckpointLayout
from portrait3d.errors import UserError

TINY = CheckpointLayout.tiny()
U, V, C = "model.diffusion_model.", "first_stage_model.", "pose_control_model."


@pytest.fixture(scope="module")
def converted(checkpoints) -> Path:
    out = checkpoints["folder"] / "WEIGHTS"
    folder = checkpoints["folder"]
    options = convert.ConvertOptions(layout=TINY)
    convert.convert_weights(folder / "model_state.th", folder / "back_head.th", out, options)
    return out


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "diffusion_pytorch_model.safetensors"))


# --- the reference layout --------------------------------------------------------------------------------------


def test_full_layout_matches_known_sd15_checkpoint_facts():
    """Counts and shapes every SD 1.5 / ControlNet 1.0 LDM checkpoint has (names as in the reference modules)."""
    sd = CheckpointLayout()
    assert len(ldm_keys.main_unet_keys(sd.unet, motion=False)) == 686
    assert len(ldm_keys.vae_keys(sd.vae)) == 248
    assert len(ldm_keys.clip_keys(sd.clip)) == 196
    assert len(ldm_keys.controlnet_keys(sd.unet)) == 340
    # reference UNet: the SD UNet without `out` (4 keys) plus the unused hint encoder (8 convs).
    assert len(ldm_keys.reference_unet_keys(sd.unet)) == 686 - 4 + 16
    # 27 view modules (11 input, 1 middle, 12 + 3 output) of 28 tensors each.
    motion = {k for k in ldm_keys.main_unet_keys(sd.unet, motion=True) if "_motion_module." in k}
    assert len({k.split(".temporal_transformer.")[0] for k in motion}) == 27
    assert len(motion) == 27 * 28
    assert {k.split(".")[1] for k in motion if k.startswith("output_blocks_motion_module.") and ".1.temporal" in k} == {
        "2",
        "5",
        "8",
    }
    keys = ldm_keys.checkpoint_keys(sd, motion=True, position_ids=True)
    assert len(keys) == 13 + 686 + 756 + 698 + 340 + 248 + 197
    assert keys[U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] == (320, 768)
    assert keys[U + "output_blocks.2.1.conv.weight"] == (1280, 1280, 3, 3)
    assert keys[U + "output_blocks.8.2.conv.weight"] == (640, 640, 3, 3)
    assert keys[U + "out.2.weight"] == (4, 320, 3, 3)
    assert keys[U + "input_blocks_motion_module.2.0.temporal_transformer.proj_in.weight"] == (320, 320)
    assert keys[
        U + "middle_block_motion_module.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe"
    ] == (1, 32, 1280)
    assert keys[C + "input_hint_block.14.weight"] == (320, 256, 3, 3)
    assert keys[C + "middle_block_out.0.weight"] == (1280, 1280, 1, 1)
    assert keys["control_model.input_hint_block.0.weight"] == (16, 3, 3, 3)
    assert keys[V + "encoder.mid.attn_1.q.weight"] == (512, 512, 1, 1)
    assert keys[V + "decoder.up.0.block.0.nin_shortcut.weight"] == (128, 256, 1, 1)
    assert keys["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] == (49408, 768)
    assert ldm_keys.checkpoint_keys(sd, motion=False).keys().isdisjoint(motion)


def test_full_size_mapping_fills_the_diffusers_modules_exactly():
    """At full SD 1.5 size, every renamed key lands on a diffusers parameter of the same shape (meta tensors)."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    from portrait3d.diffusion.components import SD15
    from portrait3d.diffusion.unet import MultiViewUNet

    sd = CheckpointLayout()
    u = sd.unet

    def meta(keys):
        return {k: torch.empty(s, device="meta") for k, s in keys.items()}

    def shapes(module_or_state):
        items = module_or_state.state_dict() if isinstance(module_or_state, torch.nn.Module) else module_or_state
        return {k: tuple(v.shape) for k, v in items.items()}

    main = meta(ldm_keys.main_unet_keys(u, motion=True))
    body = convert.convert_unet({k: v for k, v in main.items() if "_motion_module." not in k}, u, "test")
    views = convert.convert_view_modules({k: v for k, v in main.items() if "_motion_module." in k}, "test")
    with torch.device("meta"):
        multiview = MultiViewUNet(unet_config=convert.unet_config(u))
        assert shapes(multiview) == shapes({**{f"unet.{k}": v for k, v in body.items()}, **views})
        reference = convert.convert_reference_unet(meta(ldm_keys.reference_unet_keys(u)), u, "test")
        assert shapes(UNet2DConditionModel(**convert.unet_config(u))) == shapes(reference)
        control = convert.convert_controlnet(meta(ldm_keys.controlnet_keys(u)), u, "test")
        assert shapes(ControlNetModel(**convert.controlnet_config(u))) == shapes(control)
        vae = convert.convert_vae(meta(ldm_keys.vae_keys(sd.vae)), sd.vae, "test")
        assert shapes(AutoencoderKL(**convert.vae_config(sd.vae))) == shapes(vae)
        # The converted configs describe the same architecture as the pipelines' SD 1.5 components.
        assert shapes(UNet2DConditionModel(**SD15.unet)) == shapes(body)
        assert shapes(AutoencoderKL(**SD15.vae)) == shapes(vae)


# --- conversion ------------------------------------------------------------------------------------------------


def test_synthetic_weights_keep_activations_near_one():
    """Ten synthetic 3x3 convolutions of 320 channels (a full-size UNet level) leave unit noise near unit scale, so
    the full-size synthetic checkpoint samples in float16 (0.1 for every weight grew it about 5x per layer and the
    GPU check's views overflowed)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 320, 16, 16, generator=gen)
    for _ in range(10):
        weight = ldm_keys.random_weight("conv.weight", (320, 320, 3, 3), gen, torch.float32, "cpu")
        x = torch.nn.functional.conv2d(x, weight, padding=1)
    assert 0.2 < float(x.std()) < 5.0
    scale = ldm_keys.random_weight("norm.weight", (4096,), gen, torch.float32, "cpu")
    bias = ldm_keys.random_weight("norm.bias", (4096,), gen, torch.float32, "cpu")
    assert abs(float(scale.mean()) - 1) < 0.02 and abs(float(bias.mean())) < 0.02 and 0.09 < float(bias.std()) < 0.11


def test_every_tensor_is_mapped_once(checkpoints):
    """Each component's renaming keeps every tensor (same storage), drops only the unused hint encoder."""
    state = checkpoints["orbit"]
    u = TINY.unet

    def part(prefix):
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

    main = part(U)
    pieces = [
        (convert.convert_unet({k: v for k, v in main.items() if "_motion_module." not in k}, u, "t"), None),
        (convert.convert_view_modules({k: v for k, v in main.items() if "_motion_module." in k}, "t"), None),
        (convert.convert_controlnet(part(C), u, "t"), None),
        (convert.convert_vae(part(V), TINY.vae, "t"), None),
    ]
    mapped = [t.data_ptr() for out, _ in pieces for t in out.values()]
    sources = [t for k, t in state.items() if k.startswith((U, C, V))]
    assert len(mapped) == len(set(mapped)) == len(sources)
    assert set(mapped) == {t.data_ptr() for t in sources}

    reference_in = part("control_model.")
    reference_out = convert.convert_reference_unet(reference_in, u, "t")
    kept = {t.data_ptr() for k, t in reference_in.items() if not k.startswith("input_hint_block.")}
    assert {t.data_ptr() for t in reference_out.values()} >= kept
    assert len(reference_out) == len(kept) + 4  # + identity/zero output layers


def test_values_land_where_they_must(checkpoints, converted):
    orbit, back = checkpoints["orbit"], checkpoints["back"]
    unet = _tensors(converted / "unet")
    # Tiny layout: input blocks 0 conv_in, 1 level-0 resnet+attention, 2 downsampler, 3 level-1 resnet.
    expected = {
        "unet.down_blocks.1.resnets.0.conv1.weight": U + "input_blocks.3.0.in_layers.2.weight",
        "unet.down_blocks.0.downsamplers.0.conv.weight": U + "input_blocks.2.0.op.weight",
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": U
        + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
        "unet.up_blocks.0.upsamplers.0.conv.weight": U + "output_blocks.1.1.conv.weight",
        "unet.up_blocks.1.attentions.1.transformer_blocks.0.attn1.to_q.weight": U
        + "output_blocks.3.1.transformer_blocks.0.attn1.to_q.weight",
        "unet.up_blocks.1.resnets.1.conv_shortcut.weight": U + "output_blocks.3.0.skip_connection.weight",
        "unet.mid_block.resnets.1.time_emb_proj.weight": U + "middle_block.2.emb_layers.1.weight",
        "unet.conv_out.weight": U + "out.2.weight",
        # View modules: after the downsampler, the middle one, the second one of an upsampling output block.
        "down_view_modules.1.transformer_blocks.0.attention_blocks.0.to_q.weight": U
        + "input_blocks_motion_module.1.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight",
        "mid_view_module.proj_out.weight": U + "middle_block_motion_module.0.temporal_transformer.proj_out.weight",
        "up_view_modules.1.1.transformer_blocks.0.attention_blocks.1.to_v.weight": U
        + "output_blocks_motion_module.1.1.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_v.weight",
        "up_view_modules.3.0.transformer_blocks.0.ff.net.0.proj.weight": U
        + "output_blocks_motion_module.3.0.temporal_transformer.transformer_blocks.0.ff.net.0.proj.weight",
    }
    for ours, theirs in expected.items():
        assert torch.equal(unet[ours], orbit[theirs]), ours

    reference = _tensors(converted / "reference_unet")
    assert torch.equal(
        reference["up_blocks.1.attentions.1.transformer_blocks.0.attn1.to_k.weight"],
        orbit["control_model.output_blocks.3.1.transformer_blocks.0.attn1.to_k.weight"],
    )
    assert not reference["conv_out.weight"].any() and torch.equal(reference["conv_norm_out.weight"], torch.ones(32))

    control = _tensors(converted / "controlnet")
    assert torch.equal(control["controlnet_down_blocks.2.weight"], orbit[C + "zero_convs.2.0.weight"])
    assert torch.equal(control["controlnet_mid_block.bias"], orbit[C + "middle_block_out.0.bias"])
    assert torch.equal(control["controlnet_cond_embedding.conv_out.weight"], orbit[C + "input_hint_block.14.weight"])
    assert torch.equal(control["controlnet_cond_embedding.blocks.2.weight"], orbit[C + "input_hint_block.6.weight"])

    vae = _tensors(converted / "vae")
    assert torch.equal(
        vae["encoder.mid_block.attentions.0.to_q.weight"], orbit[V + "encoder.mid.attn_1.q.weight"][:, :, 0, 0]
    )
    assert torch.equal(
        vae["decoder.up_blocks.0.upsamplers.0.conv.weight"], orbit[V + "decoder.up.1.upsample.conv.weight"]
    )
    assert torch.equal(vae["decoder.up_blocks.1.resnets.1.conv2.bias"], orbit[V + "decoder.up.0.block.1.conv2.bias"])

    # The back-view folder holds the back-view file's weights (plain UNet, no view modules).
    back_unet = _tensors(converted / "back_view" / "unet")
    assert torch.equal(
        back_unet["down_blocks.1.resnets.0.conv1.weight"], back[U + "input_blocks.3.0.in_layers.2.weight"]
    )
    assert not any("view_module" in k for k in back_unet)


def _clip_first_token(state: dict[str, torch.Tensor], layout) -> torch.Tensor:
    """Row 0 of CLIP's last hidden state, by hand: under the causal mask the start token attends only to itself."""
    p = "cond_stage_model.transformer.text_model."
    hidden = layout.hidden_size

    def ln(x, name):
        return torch.nn.functional.layer_norm(x, (hidden,), state[p + name + ".weight"], state[p + name + ".bias"])

    def lin(x, name):
        return x @ state[p + name + ".weight"].T + state[p + name + ".bias"]

    x = (
        state[p + "embeddings.token_embedding.weight"][layout.special_token_ids()[0]]
        + state[p + "embeddings.position_embedding.weight"][0]
    )
    for i in range(layout.num_layers):
        layer = f"encoder.layers.{i}."
        x = x + lin(lin(ln(x, layer + "layer_norm1"), layer + "self_attn.v_proj"), layer + "self_attn.out_proj")
        h = lin(ln(x, layer + "layer_norm2"), layer + "mlp.fc1")
        x = x + lin(h * torch.sigmoid(1.702 * h), layer + "mlp.fc2")
    return ln(x, "final_layer_norm")


def test_empty_prompt_uses_the_token_ids_of_the_checkpoints_own_vocabulary():
    """A text encoder with a small vocabulary (as in tiny training runs): no IndexError, its own start/end ids."""
    import dataclasses

    layout = dataclasses.replace(TINY, clip=dataclasses.replace(TINY.clip, vocab_size=100, max_positions=12))
    assert layout.clip.special_token_ids() == (98, 99)
    state = ldm_keys.synthetic_checkpoint(layout, motion=False, seed=3)
    clip_state = convert._strip(state, ldm_keys.CLIP_PREFIX)
    embedding = convert.empty_prompt_embedding(clip_state, layout.clip)
    assert embedding.shape == (1, 12, TINY.clip.hidden_size)
    torch.testing.assert_close(embedding[0, 0], _clip_first_token(state, layout.clip), rtol=1e-4, atol=1e-5)
    # Another end token changes the padded rows, not the start row: the ids really come from the layout.
    other = convert.empty_prompt_embedding(clip_state, dataclasses.replace(layout.clip, eos_token_id=5))
    torch.testing.assert_close(other[0, 0], embedding[0, 0])
    assert not torch.allclose(other[0, 1:], embedding[0, 1:])
    with pytest.raises(UserError, match="outside the vocabulary"):
        convert.empty_prompt_embedding(clip_state, dataclasses.replace(layout.clip, bos_token_id=100))


def test_empty_prompt_embedding_is_clip_last_hidden_state(checkpoints, converted):
    orbit_embedding = _tensors(converted / "prompt_embeds")["embedding"]
    back_embedding = _tensors(converted / "back_view" / "prompt_embeds")["embedding"]
    assert orbit_embedding.shape == (1, 77, TINY.clip.hidden_size)
    expected = _clip_first_token(checkpoints["orbit"], TINY.clip)
    torch.testing.assert_close(orbit_embedding[0, 0], expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        back_embedding[0, 0], _clip_first_token(checkpoints["back"], TINY.clip), rtol=1e-4, atol=1e-5
    )
    # End tokens at different positions see different prefixes and positions.
    assert not torch.allclose(orbit_embedding[0, 1], orbit_embedding[0, 2])


def test_converted_folder_loads_with_both_pipelines(checkpoints, converted):
    from diffusers import UNet2DConditionModel

    from portrait3d.diffusion.pipelines import BackViewPipeline, Portrait360Pipeline, load_pipeline
    from portrait3d.diffusion.unet import MultiViewUNet

    orbit = load_pipeline(Portrait360Pipeline, converted)
    back = load_pipeline(BackViewPipeline, converted / "back_view")
    assert isinstance(orbit.unet, MultiViewUNet) and type(back.unet) is UNet2DConditionModel
    assert torch.equal(
        orbit.unet.mid_view_module.transformer_blocks[0].attention_blocks[0].to_k.weight,
        checkpoints["orbit"][
            U + "middle_block_motion_module.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_k.weight"
        ],
    )
    assert torch.equal(back.vae.decoder.conv_in.weight, checkpoints["back"][V + "decoder.conv_in.weight"])
    assert orbit.vae.config.scaling_factor == pytest.approx(0.18215)
    assert orbit.scheduler.config.steps_offset == 1 and orbit.scheduler.config.beta_schedule == "scaled_linear"


# --- bad input -------------------------------------------------------------------------------------------------


def test_bad_files_are_refused_with_a_clear_message(checkpoints, tmp_path):
    good = checkpoints["folder"] / "back_head.th"
    truncated = tmp_path / "truncated.th"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError, match="truncated"):
        convert.load_checkpoint(truncated)

    text = tmp_path / "notes.th"
    text.write_text("these are not weights\n" * 20)
    with pytest.raises(UserError, match="not a PyTorch checkpoint"):
        convert.load_checkpoint(text)

    with pytest.raises(UserError, match="no such checkpoint"):
        convert.load_checkpoint(tmp_path / "absent.th")

    code = tmp_path / "code.th"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=1e-5)}, code)
    with pytest.raises(UserError, match=r"holds Python code that portrait3d will not run.*argparse\.Namespace"):
        convert.load_checkpoint(code)

    safetensors_file = tmp_path / "vae.safetensors"
    save_file({"w": torch.ones(3)}, str(safetensors_file))
    assert torch.equal(convert.load_checkpoint(safetensors_file)["w"], torch.ones(3))
    safetensors_file.write_bytes(safetensors_file.read_bytes()[:40])
    with pytest.raises(UserError, match="safetensors"):
        convert.load_checkpoint(safetensors_file)


def test_missing_unexpected_and_misshapen_keys_are_listed(checkpoints):
    state = dict(checkpoints["back"])
    del state[U + "out.2.bias"]
    del state[C + "zero_convs.1.0.weight"]
    state["model_ema.decay"] = torch.tensor(0.99)
    state[V + "quant_conv.bias"] = torch.zeros(5)
    with pytest.raises(UserError) as info:
        convert.check_checkpoint(state, TINY, motion=False, source="back_head.th")
    message = str(info.value)
    assert "\n" not in message and message.startswith("back_head.th:")
    assert "2 missing keys" in message and U + "out.2.bias" in message
    assert "1 unexpected keys" in message and "model_ema.decay" in message
    assert "1 keys with the wrong shape" in message and "quant_conv.bias (5,) != (8,)" in message

    # The two files swapped.
    with pytest.raises(UserError, match="model_state.th: holds view .* pass it as --orbit"):
        convert.check_checkpoint(checkpoints["orbit"], TINY, motion=False, source="model_state.th")
    with pytest.raises(UserError, match="back_head.th: holds no view"):
        convert.check_checkpoint(checkpoints["back"], TINY, motion=True, source="back_head.th")

    wrong_schedule = dict(checkpoints["back"], betas=torch.linspace(1e-4, 2e-2, 1000))
    with pytest.raises(UserError, match="noise schedule"):
        convert.check_checkpoint(wrong_schedule, TINY, motion=False, source="x.th")


def test_cli_converts_and_refuses_to_overwrite(cli, checkpoints, tmp_path):
    folder = checkpoints["folder"]
    out = tmp_path / "weights"
    args = ["convert-weights", "--orbit", str(folder / "model_state.th"), "--back-view", str(folder / "back_head.th")]
    args += ["--out", str(out), "--layout", str(checkpoints["layout"])]
    result = cli(*args, "--dtype", "float16")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "Portrait360Pipeline"
    assert json.loads((out / "back_view" / "model_index.json").read_text())["_class_name"] == "BackViewPipeline"
    unet = _tensors(out / "unet")
    assert unet["unet.conv_in.weight"].dtype == torch.float16

    again = cli(*args)
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr

    assert _tensors(out / "unet")["unet.conv_in.weight"].dtype == torch.float16  # the old folder is intact


def test_force_replaces_only_a_weights_folder_convert_weights_wrote(cli, checkpoints, tmp_path):
    folder = checkpoints["folder"]
    args = ["convert-weights", "--orbit", str(folder / "model_state.th"), "--back-view", str(folder / "back_head.th")]
    args += ["--layout", str(checkpoints["layout"]), "--force"]
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"precious")
    refused = cli(*args, "--out", str(foreign))
    assert refused.returncode == 2 and "not written by portrait3d convert-weights" in refused.stderr
    assert refused.stderr.count("\n") == 1 and "--force" not in refused.stderr.split(";")[-1]
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]
    assert (foreign / "holiday.jpg").read_bytes() == b"precious"

    own = tmp_path / "weights"
    assert cli(*args, "--out", str(own)).returncode == 0
    (own / "stale.txt").write_text("from an older conversion")
    result = cli(*args, "--out", str(own))
    assert result.returncode == 0, result.stderr
    assert not (own / "stale.txt").exists() and (own / "model_index.json").is_file()
