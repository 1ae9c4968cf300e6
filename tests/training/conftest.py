"""Training tests: a tiny dataset made by the proxy stage (the sample photo on the template head)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import portrait3d.diffusion  # noqa: E402, F401 - must precede any diffusers import

# Tiny models are dominated by per-op overhead: on a shared 2-core machine one thread is several times faster.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "data" / "samples" / "astronaut.jpg"
LANDMARKS = REPO / "tests" / "proxy" / "data" / "astronaut_face_mesh.json"
VIEWS = 12
SIZE = 32


def make_subject(root: Path, views: int = VIEWS, size: int = SIZE):
    """A run folder with the proxy stage's views, conditions and cameras copied into views/ (the proxy generator)."""
    from portrait3d.presets import PRESETS
    from portrait3d.proxy import build_proxy
    from portrait3d.proxy.stage import copy_proxy_views
    from portrait3d.proxy.testing import write_fixture_inputs

    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    landmarks = np.asarray(json.loads(LANDMARKS.read_text())["points"])
    run = write_fixture_inputs(root, photo, landmarks, size=128)
    build_proxy(run, dataclasses.replace(PRESETS["tiny"].proxy, views=views, size=max(size, 16)))
    copy_proxy_views(run, None)
    return run


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """A dataset folder of two subjects (12 views of 32 pixels each; the second one with its own views/back.png)."""
    import shutil

    root = tmp_path_factory.mktemp("dataset")
    make_subject(root / "a")
    shutil.copytree(root / "a", root / "b")
    back = Image.open(root / "b" / "views" / "0006.png").convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    back.save(root / "b" / "views" / "back.png")  # mirrored, so that a test can tell it from view 6
    return root
