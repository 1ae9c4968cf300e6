"""The diffusion modules: reference attention, view modules, the multi-view UNet and its two guidance branches."""

from __future__ import annotations

import pytest
import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from portrait3d.diffusion import MultiViewUNet, ReferenceBank, ViewConsistencyModule, install_reference_processors
from portrait3d.diffusion.components import SD15, TINY
from portrait3d.diffusion.reference import PlainAttnProcessor, ReferenceReadProcessor, self_attention_names
from portrait3d.diffusion.unet import view_module_channels
from portrait3d.diffusion.view_attention import sinusoidal_table

ATOL = 1e-5


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(**TINY.unet).eval()


def randomise(module: torch.nn.Module, seed: int, std: float = 0.2) -> None:
    """Give every parameter random values (so zero-initialised outputs stop being zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * std)


def inputs(batch: int, seed: int = 1, size: int = 8):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 4, size, size, generator=generator)
    context = torch.randn(batch, TINY.prompt["sequence_length"], TINY.unet["cross_attention_dim"], generator=generator)
    return sample, context


# --- placement ---------------------------------------------------------------------------------------------------
def test_view_module_placement_matches_the_sd15_checkpoint():
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15.unet)
    down, mid, up = view_module_channels(unet)
    # input_blocks_motion_module.0..10: after every input block but conv_in, downsamplers included.
    assert down == [320, 320, 320, 640, 640, 640, 1280, 1280, 1280, 1280, 1280]
    assert mid == 1280
    # output_blocks_motion_module.0..11: two modules in the upsampling output blocks 2, 5 and 8.
    assert [len(layer) for layer in up] == [1, 1, 2, 1, 1, 2, 1, 1, 2, 1, 1, 1]
    assert [layer[0] for layer in up] == [1280] * 3 + [1280] * 3 + [640] * 3 + [320] * 3


def test_view_module_parameter_names_mirror_the_reference_module():
    names = set(ViewConsistencyModule(32).state_dict())
    for expected in (
        "norm.weight",
        "proj_in.weight",
        "transformer_blocks.0.attention_blocks.1.to_q.weight",
        "transformer_blocks.0.attention_blocks.0.to_out.0.bias",
        "transformer_blocks.0.attention_blocks.0.pos_encoder.pe",
        "transformer_blocks.0.norms.1.weight",
        "transformer_blocks.0.ff.net.0.proj.weight",
        "transformer_blocks.0.ff.net.2.weight",
        "transformer_blocks.0.ff_norm.weight",
        "proj_out.bias",
    ):
        assert expected in names
    assert "transformer_blocks.0.attention_blocks.0.to_q.bias" not in names
    table = ViewConsistencyModule(32).transformer_blocks[0].attention_blocks[0].pos_encoder.pe
    assert table.shape == (1, 32, 32)
    assert torch.allclose(table[0, 3, 0::2], torch.sin(3 * torch.exp(torch.arange(0, 32, 2) * -(9.2103404 / 32))))
    assert torch.equal(table, sinusoidal_table(32, 32))


# --- zero initialisation ------------------------------------------------------------------------------------------
def test_zero_initialised_view_modules_and_controlnet_leave_the_unet_unchanged():
    unet = tiny_unet()
    randomise(unet, seed=5, std=0.05)
    model = MultiViewUNet.from_unet(unet, **TINY.view).eval()
    controlnet = ControlNetModel.from_unet(unet, **TINY.controlnet).eval()
    sample, context = inputs(8)
    condition = torch.rand(8, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        plain = unet(sample, 500, context).sample
        down, mid = controlnet(sample, 500, context, controlnet_cond=condition, return_dict=False)
        ours = model(
            sample, 500, context, num_views=8, down_block_additional_residuals=down, mid_block_additional_residual=mid
        )
        batched = model(
            torch.cat([sample, sample]),
            500,
            torch.cat([context, context]),
            num_views=8,
            unconditional_count=8,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        )
    assert plain.abs().max() > 1e-3
    assert torch.allclose(ours, plain, atol=ATOL)
    assert torch.allclose(batched[:8], plain, atol=ATOL)
    assert torch.allclose(batched[8:], plain, atol=ATOL)


# --- reference attention ------------------------------------------------------------------------------------------
def _attention(seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    return Attention(query_dim=32, heads=4, dim_head=8).eval()


def test_reference_attention_reduces_to_self_attention():
    attn = _attention()
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(1, 10, 32, generator=generator)
    with torch.no_grad():
        plain = AttnProcessor2_0()(attn, x)
        read = ReferenceReadProcessor(0)
        empty = read(attn, x, reference_bank=ReferenceBank())
        no_bank = read(attn, x, reference_bank=None)
        same = ReferenceBank()
        same.record(0, x.clone())  # bank = own normalised input: every key/value duplicated
        duplicated = read(attn, x, reference_bank=same)
        other = ReferenceBank()
        other.record(0, torch.randn(1, 10, 32, generator=generator))
        changed = read(attn, x, reference_bank=other)
    assert torch.allclose(empty, plain, atol=ATOL)
    assert torch.allclose(no_bank, plain, atol=ATOL)
    assert torch.allclose(duplicated, plain, atol=ATOL)
    assert (changed - plain).abs().max() > 1e-2


def test_reference_bank_concatenates_references_and_skips_unconditional_samples():
    attn = _attention()
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 32, generator=generator)
    front, back = torch.randn(1, 6, 32, generator=generator), torch.randn(1, 6, 32, generator=generator)
    bank = ReferenceBank()
    bank.record(0, torch.cat([front, back]))  # one batched reference-UNet run: front and back
    assert bank.tokens(0).shape == (1, 12, 32)
    with torch.no_grad():
        out = ReferenceReadProcessor(0)(attn, x, reference_bank=bank, unconditional_count=1)
        plain = AttnProcessor2_0()(attn, x)
        # Keys/values of the conditional sample: own tokens, then front tokens, then back tokens.
        kv = torch.cat([x[1:], front, back], dim=1)
        expected = PlainAttnProcessor()(attn, x[1:], encoder_hidden_states=kv)
    assert torch.allclose(out[:1], plain[:1], atol=ATOL)
    assert torch.allclose(out[1:], expected, atol=ATOL)


def test_reference_unet_writes_one_entry_per_transformer_block_in_forward_order():
    reference = tiny_unet(seed=1)
    count = install_reference_processors(reference, "write")
    names = self_attention_names(reference)
    assert count == len(names) == 6  # tiny: 2 down, 1 middle, 3 up transformer blocks
    assert names[0].startswith("down_blocks.0.attentions.0") and names[2].startswith("mid_block")
    assert names[-1].startswith("up_blocks.1.attentions.2")
    bank = ReferenceBank()
    sample, context = inputs(2)
    with torch.no_grad():
        reference(sample, 10, context, cross_attention_kwargs={"reference_bank": bank})
    assert bank.num_blocks == count
    tokens = [bank.tokens(i).shape[1] for i in range(count)]
    assert tokens == [2 * 64, 2 * 64, 2 * 16, 2 * 64, 2 * 64, 2 * 64]  # two references, 8x8 and 4x4


def test_reference_bank_with_own_features_keeps_the_unet_output():
    """A bank written by an identical UNet on the same single input duplicates every key: output unchanged."""
    unet = tiny_unet(seed=2)
    model = MultiViewUNet.from_unet(unet, **TINY.view).eval()
    reference = tiny_unet(seed=2)
    install_reference_processors(reference, "write")
    sample, context = inputs(1)
    bank = ReferenceBank()
    with torch.no_grad():
        reference(sample, 10, context, cross_attention_kwargs={"reference_bank": bank})
        with_bank = model(sample, 10, context, num_views=1, reference_bank=bank)
        plain = unet(sample, 10, context).sample
        other = ReferenceBank()
        reference(sample + 1, 10, context, cross_attention_kwargs={"reference_bank": other})
        changed = model(sample, 10, context, num_views=1, reference_bank=other)
    assert torch.allclose(with_bank, plain, atol=1e-4)
    assert (changed - plain).abs().max() > 1e-3


# --- view modules -------------------------------------------------------------------------------------------------
def test_view_module_connects_views_of_a_window_only():
    module = ViewConsistencyModule(32, zero_initialize=False).eval()
    randomise(module, seed=4)
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(16, 32, 4, 4, generator=generator)  # two windows of 8 views
    changed = x.clone()
    changed[3] += torch.randn(32, 4, 4, generator=generator)  # view 3 of window 0
    with torch.no_grad():
        a, b = module(x, num_views=8), module(changed, num_views=8)
    difference = (a - b).flatten(1).abs().amax(dim=1)
    assert difference[0] > 1e-4 and difference[7] > 1e-4  # other views of window 0 see view 3
    assert torch.all(difference[8:] == 0)  # window 1 does not
    with torch.no_grad():
        assert torch.allclose(ViewConsistencyModule(32)(x, num_views=8), x)  # zero-initialised: identity


def test_multiview_unet_windows_are_independent():
    model = MultiViewUNet.from_unet(tiny_unet(), **TINY.view).eval()
    for module in [*model.down_view_modules, model.mid_view_module, *model.up_view_modules]:
        randomise(module, seed=6, std=0.05)
    sample, context = inputs(8)
    changed = sample.clone()
    changed[1] += 1.0
    with torch.no_grad():
        a = model(sample, 10, context, num_views=4)
        b = model(changed, 10, context, num_views=4)
    difference = (a - b).flatten(1).abs().amax(dim=1)
    assert difference[0] > 1e-4 and difference[3] > 1e-4
    assert torch.all(difference[4:] == 0)
    with pytest.raises(ValueError, match="whole windows"):
        model(sample, 10, context, num_views=3)


# --- guidance branches ----------------------------------------------------------------------------------------------
def test_unconditional_branch_has_no_bank_no_control_and_its_own_middle_module():
    unet = tiny_unet()
    model = MultiViewUNet.from_unet(unet, **TINY.view).eval()
    for module in [*model.down_view_modules, model.mid_view_module, *model.up_view_modules]:
        randomise(module, seed=7, std=0.05)
    reference = tiny_unet(seed=3)
    install_reference_processors(reference, "write")
    sample, context = inputs(4)
    bank = ReferenceBank()
    with torch.no_grad():
        reference(sample[:1], 10, context[:1], cross_attention_kwargs={"reference_bank": bank})
    residuals = [torch.randn_like(s[:2]) for s in _skip_shapes(model, sample[:2], context[:2])]
    mid_residual = torch.randn(2, 64, 4, 4)

    middle_batches, bank_reads = [], []
    model.mid_view_module.register_forward_hook(lambda m, args, out: middle_batches.append(args[0].shape[0]))
    original_tokens = bank.tokens

    def spy(index):
        bank_reads.append(index)
        return original_tokens(index)

    bank.tokens = spy
    with torch.no_grad():
        batched = model(
            sample,
            10,
            context,
            num_views=2,
            unconditional_count=2,
            reference_bank=bank,
            down_block_additional_residuals=residuals,
            mid_block_additional_residual=mid_residual,
        )
        assert middle_batches == [2]  # the middle view module saw only the two unconditional samples
        assert sorted(bank_reads) == list(range(6))
        uncond_alone = model(sample[:2], 10, context[:2], num_views=2, unconditional_count=2)
        cond_alone = model(
            sample[2:],
            10,
            context[2:],
            num_views=2,
            reference_bank=bank,
            down_block_additional_residuals=residuals,
            mid_block_additional_residual=mid_residual,
        )
        cond_plain = model(sample[2:], 10, context[2:], num_views=2)
    assert middle_batches == [2, 2]  # and not at all on the conditional-only call
    assert torch.allclose(batched[:2], uncond_alone, atol=ATOL)  # no bank, no residuals reach these samples
    assert torch.allclose(batched[2:], cond_alone, atol=ATOL)
    assert (cond_alone - cond_plain).abs().max() > 1e-3  # whereas the conditional ones use both


def _skip_shapes(model: MultiViewUNet, sample: torch.Tensor, context: torch.Tensor) -> list[torch.Tensor]:
    controlnet = ControlNetModel.from_unet(model.unet, **TINY.controlnet)
    with torch.no_grad():
        down, _ = controlnet(sample, 10, context, controlnet_cond=torch.zeros(2, 3, 64, 64), return_dict=False)
    return list(down)
