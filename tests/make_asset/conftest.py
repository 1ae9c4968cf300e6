"""One finished tiny make-asset run, shared by the make-asset tests (copy it before changing it)."""

from __future__ import annotations

import pytest
from asset_runs import run_make_asset


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, sample_photo):
    """(run folder, completed process) of one uninterrupted tiny make-asset run with seed 0."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    res = run_make_asset(out, sample_photo)
    assert res.returncode == 0, res.stderr
    return out, res
