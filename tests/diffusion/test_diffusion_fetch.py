"""``portrait3d fetch-weights`` without network: a Hugging Face cache folder pre-filled with tiny checkpoints.

The cache is laid out as ``huggingface_hub`` lays it out (``models--gym890--diffportrait360/{blobs,refs,snapshots}``,
LFS blobs named by their SHA-256, snapshot files linking to them), so ``hf_hub_download`` resolves from it under
``HF_HUB_OFFLINE=1`` exactly as it would after a real download.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch

from portrait3d.diffusion import fetch
from portrait3d.errors import UserError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fill_cache(cache: Path, checkpoints: dict, commit: str = COMMIT, revision: str = "main") -> dict[str, Path]:
    """Put the tiny checkpoints into ``cache`` under the released file names; returns name -> blob path."""
    repo = cache / "models--gym890--diffportrait360"
    sources = {fetch.ORBIT_FILE: "model_state.th", fetch.BACK_VIEW_FILE: "back_head.th"}
    blobs = {}
    for name, source in sources.items():
        data = (checkpoints["folder"] / source).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
        blobs[name] = blob
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return blobs


def _one_line_error(result) -> str:
    """The error line of a failed command: exactly one, the last thing printed, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("portrait3d:")]
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith("portrait3d: error:"), lines
    return errors[0]


def test_offline_fetch_converts_from_the_cache_and_a_second_run_does_nothing(cli, checkpoints, tmp_path):
    from portrait3d.diffusion.pipelines import BackViewPipeline, Portrait360Pipeline, load_pipeline

    home = tmp_path / "hf"
    blobs = fill_cache(home / "hub", checkpoints)  # HF_HOME/hub is the library's default cache
    out = tmp_path / "weights"
    args = ["fetch-weights", "--out", str(out), "--layout", str(checkpoints["layout"])]
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(home)}
    if "HF_HUB_CACHE" in os.environ:  # it would win over HF_HOME
        env["HF_HUB_CACHE"] = str(home / "hub")
    result = cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert "SHA-256 as the Hugging Face cache recorded it" in result.stderr + result.stdout

    source = json.loads((out / fetch.SOURCE_FILE).read_text())
    assert source["repo"] == fetch.REPO_ID and source["commit"] == COMMIT and source["hub_asked"] is False
    assert source["files"][fetch.ORBIT_FILE]["sha256"] == blobs[fetch.ORBIT_FILE].name
    assert source["files"][fetch.BACK_VIEW_FILE]["size"] == blobs[fetch.BACK_VIEW_FILE].stat().st_size

    orbit = load_pipeline(Portrait360Pipeline, out)
    back = load_pipeline(BackViewPipeline, out / "back_view")
    name = "model.diffusion_model.middle_block_motion_module.0.temporal_transformer.proj_out.weight"
    assert torch.equal(orbit.unet.mid_view_module.proj_out.weight, checkpoints["orbit"][name])
    assert torch.equal(back.vae.decoder.conv_in.weight, checkpoints["back"]["first_stage_model.decoder.conv_in.weight"])

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = cli(*args, env=env)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stderr + again.stdout and COMMIT[:12] in again.stderr + again.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_offline_with_an_empty_cache_fails_with_one_line(cli, tmp_path):
    out = tmp_path / "weights"
    result = cli("fetch-weights", "--out", str(out), "--cache-dir", str(tmp_path / "empty"))
    line = _one_line_error(result)
    assert "`portrait3d fetch-weights` needs network access" in line and "HF_HUB_OFFLINE" in line
    assert fetch.ORBIT_FILE in line and not out.exists()


def test_unreachable_hub_fails_with_one_line(cli, tmp_path):
    """No HF_HUB_OFFLINE, but the endpoint refuses connections (a closed port on 127.0.0.1)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens there
    env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HUB_ETAG_TIMEOUT": "5"}
    result = cli(
        "fetch-weights", "--out", str(tmp_path / "w"), "--cache-dir", str(tmp_path / "c"), env=env, timeout=120
    )
    line = _one_line_error(result)
    assert "needs network access" in line and f"cannot reach http://127.0.0.1:{port}" in line


def test_a_corrupt_cached_file_fails_verification(cli, checkpoints, tmp_path):
    cache = tmp_path / "cache"
    blobs = fill_cache(cache, checkpoints)
    blob = blobs[fetch.BACK_VIEW_FILE]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    blob.write_bytes(bytes(data))
    out = tmp_path / "weights"
    args = ["fetch-weights", "--out", str(out), "--cache-dir", str(cache), "--layout", str(checkpoints["layout"])]
    line = _one_line_error(cli(*args))
    assert fetch.BACK_VIEW_FILE in line and "SHA-256" in line and "the cache recorded" in line
    assert not out.exists()


def test_folders_that_are_not_weights_are_never_replaced(cli, checkpoints, tmp_path):
    cache = tmp_path / "cache"
    fill_cache(cache, checkpoints)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    args = ["fetch-weights", "--out", str(mine), "--cache-dir", str(cache), "--layout", str(checkpoints["layout"])]
    for extra in ([], ["--force"]):
        line = _one_line_error(cli(*args, *extra))
        assert "not a portrait3d weights folder" in line and "nothing was changed" in line
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"

    # A weights folder portrait3d wrote but that lost a part: refused without --force, replaced with it.
    (mine / "notes.txt").unlink()
    (mine / "model_index.json").write_text(json.dumps({"_class_name": "Portrait360Pipeline"}))
    assert "--force" in _one_line_error(cli(*args))
    result = cli(*args, "--force")
    assert result.returncode == 0, result.stderr
    assert fetch.folder_state(mine) == "complete"


def test_not_enough_space_is_one_line(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(UserError, match=r"not enough disk space for the download: .* GiB needed") as info:
        fetch.check_space(free + 2**40, tmp_path / "not" / "yet", "the download")
    assert "\n" not in str(info.value)
    fetch.check_space(1, tmp_path / "not" / "yet", "the download")  # the first existing parent is measured
