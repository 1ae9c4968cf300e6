"""Shared test fixtures: paths, a CLI runner, and the reference labels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_runner import REPO, SAMPLE_PHOTO, run_cli
from missing_tool import missing_tool

SHARED = REPO.parent / "shared"
REFERENCE_LABELS = SHARED / "reference" / "panohead_dataset_example.json"
# A copy that travels with the repository, so tests do not need ../shared.
BUNDLED_LABELS = REPO / "tests" / "data" / "panohead_dataset_example.json"


@pytest.fixture(scope="session")
def reference_labels() -> dict:
    """The released PanoHead sample labels (``{"labels": [[name, [25 floats]], ...]}``)."""
    path = REFERENCE_LABELS if REFERENCE_LABELS.exists() else BUNDLED_LABELS
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def sample_photo() -> Path:
    """The bundled public-domain sample portrait (``skimage.data.astronaut()``)."""
    return SAMPLE_PHOTO


@pytest.fixture
def cli():
    """The CLI runner (see :func:`run_cli`)."""
    return run_cli


def validate_gltf(path: str | Path) -> tuple[dict, int]:
    """The Khronos glTF validator's report on one file and the script's exit code.

    Skips when node or the ``gltf-validator`` npm package is missing (``scripts/setup.sh
    --dev`` installs it into ``.tools/``), except in CI, where its absence fails.
    """
    node = shutil.which("node")
    candidates = [REPO / ".tools" / "node_modules", *map(Path, os.environ.get("NODE_PATH", "").split(os.pathsep))]
    modules = next((p for p in candidates if str(p) != "." and (p / "gltf-validator").is_dir()), None)
    if node is None or modules is None:
        missing_tool("node or the gltf-validator npm package is missing (bash scripts/setup.sh --dev installs it)")
    proc = subprocess.run(
        [node, str(REPO / "scripts" / "validate_gltf.mjs"), str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "NODE_PATH": str(modules)},
        timeout=120,
    )
    return json.loads(proc.stdout)[0], proc.returncode


@pytest.fixture(scope="session")
def gltf_validator():
    """:func:`validate_gltf`, as a fixture."""
    return validate_gltf
