"""Diffusion tests: import portrait3d.diffusion first (it hides an unloadable torchvision from transformers)."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import portrait3d.diffusion  # noqa: E402, F401 - must precede any diffusers import


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    """Tiny orbit (wrapped in {'state_dict': ...}) and back-view (bare, with CLIP position_ids) files in the
    released key layout, and the tiny layout's JSON (``--layout``)."""
    import torch

    from portrait3d.diffusion import ldm_keys

    tiny = ldm_keys.CheckpointLayout.tiny()
    folder = tmp_path_factory.mktemp("ckpt")
    orbit = ldm_keys.synthetic_checkpoint(tiny, motion=True, seed=1)
    back = ldm_keys.synthetic_checkpoint(tiny, motion=False, seed=2, position_ids=True)
    torch.save({"state_dict": orbit}, folder / "model_state.th")
    torch.save(back, folder / "back_head.th")
    layout = folder / "tiny.json"
    layout.write_text(json.dumps(tiny.to_dict()))
    return {"orbit": orbit, "back": back, "folder": folder, "layout": layout}
