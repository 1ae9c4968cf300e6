"""Diffusion tests: import portrait3d.diffusion first (it hides an unloadable torchvision from transformers)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import portrait3d.diffusion  # noqa: E402, F401 - must precede any diffusers import
