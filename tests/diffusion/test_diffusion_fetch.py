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

    # The folder loses a part: refused without --force (it says so), made whole with it.
    shutil.rmtree(out / "controlnet")
    assert fetch.folder_state(out) == "damaged"
    assert "an incomplete weights folder; pass --force" in _one_line_error(cli(*args, env=env))
    result = cli(*args, "--force", env=env)
    assert result.returncode == 0, result.stderr
    assert fetch.folder_state(out) == "complete" and (out / "controlnet" / "config.json").is_file()


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
    (mine / "notes.txt").unlink()
    (mine / "weights.th").write_bytes(b"\0" * 10)  # checkpoints are not a converted folder either
    assert "not a portrait3d weights folder" in _one_line_error(cli(*args, "--force"))
    assert [p.name for p in mine.iterdir()] == ["weights.th"]


def test_not_enough_space_is_one_line(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(UserError, match=r"not enough disk space for the download: .* GiB needed") as info:
        fetch.check_space(free + 2**40, tmp_path / "not" / "yet", "the download")
    assert "\n" not in str(info.value)
    fetch.check_space(1, tmp_path / "not" / "yet", "the download")  # the first existing parent is measured


# --- the online path, against a stand-in Hub on 127.0.0.1 ----------------------------------------------------------
class FakeHub:
    """The few Hub routes ``fetch-weights`` uses (model info with file metadata, HEAD and GET of a file), served
    on 127.0.0.1 in a thread. ``corrupt`` names a file served with one byte flipped (its published hash stays)."""

    def __init__(self, files: dict[str, bytes], repo: str = fetch.REPO_ID) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.files, self.repo, self.corrupt, self.requests = files, repo, set(), []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
                hub.serve(self, body=False)

            def do_GET(self) -> None:  # noqa: N802
                hub.serve(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, handler, body: bool) -> None:
        path = handler.path.split("?")[0]
        self.requests.append((handler.command, path, handler.headers.get("authorization")))
        api = f"/api/models/{self.repo}/revision/"
        resolve = f"/{self.repo}/resolve/"
        if path.startswith(api):
            siblings = [
                {
                    "rfilename": n,
                    "size": len(d),
                    "lfs": {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d), "pointerSize": 134},
                }
                for n, d in self.files.items()
            ]
            self.reply(handler, 200, json.dumps({"id": self.repo, "sha": COMMIT, "siblings": siblings}).encode(), body)
        elif path.startswith(resolve) and path.rsplit("/", 1)[-1] in self.files:
            name = path.rsplit("/", 1)[-1]
            data = bytearray(self.files[name])
            if name in self.corrupt:
                data[len(data) // 2] ^= 0xFF
            headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(self.files[name]).hexdigest()}"'}
            self.reply(handler, 200, bytes(data), body, headers)
        else:
            self.reply(handler, 404, b"{}", body, {"X-Error-Code": "RepoNotFound"})

    @staticmethod
    def reply(handler, status: int, data: bytes, body: bool, headers: dict | None = None) -> None:
        handler.send_response(status)
        for key, value in {"Content-Length": str(len(data)), **(headers or {})}.items():
            handler.send_header(key, value)
        handler.end_headers()
        if body:
            handler.wfile.write(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(checkpoints):
    files = {
        fetch.ORBIT_FILE: (checkpoints["folder"] / "model_state.th").read_bytes(),
        fetch.BACK_VIEW_FILE: (checkpoints["folder"] / "back_head.th").read_bytes(),
    }
    server = FakeHub(files)
    yield server
    server.close()


def test_online_fetch_downloads_verifies_and_redownloads_a_corrupt_cached_file(cli, checkpoints, hub, tmp_path):
    env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": "hf_fetch_test"}
    cache, out = tmp_path / "cache", tmp_path / "weights"
    args = ["fetch-weights", "--out", str(out), "--cache-dir", str(cache), "--layout", str(checkpoints["layout"])]
    result = cli(*args, "--revision", "v1.0", env=env)
    assert result.returncode == 0, result.stderr
    source = json.loads((out / fetch.SOURCE_FILE).read_text())
    assert source["hub_asked"] is True and source["commit"] == COMMIT and source["revision"] == "v1.0"
    orbit_sha = hashlib.sha256(hub.files[fetch.ORBIT_FILE]).hexdigest()
    assert source["files"][fetch.ORBIT_FILE] == {
        "size": len(hub.files[fetch.ORBIT_FILE]),
        "sha256": orbit_sha,
        "verified": "size and SHA-256 as the Hub publishes them",
    }
    # --revision reached the Hub, both files came from the commit it named, HF_TOKEN went along.
    assert ("GET", f"/api/models/{fetch.REPO_ID}/revision/v1.0", "Bearer hf_fetch_test") in hub.requests
    gets = [p for method, p, _ in hub.requests if method == "GET" and "/resolve/" in p]
    assert sorted(gets) == sorted(f"/{fetch.REPO_ID}/resolve/{COMMIT}/{n}" for n in hub.files)
    blob = cache / "models--gym890--diffportrait360" / "blobs" / orbit_sha
    assert blob.read_bytes() == hub.files[fetch.ORBIT_FILE]
    assert fetch.folder_state(out) == "complete"

    # A cached file damaged since: the Hub's hash catches it and the file is downloaded again.
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    hub.requests.clear()
    again = cli(*args, "--force", env=env)
    assert again.returncode == 0, again.stderr
    assert "does not match the Hub; downloading it again" in again.stderr + again.stdout
    assert blob.read_bytes() == hub.files[fetch.ORBIT_FILE]
    assert [p for m, p, _ in hub.requests if m == "GET" and "/resolve/" in p] == [
        f"/{fetch.REPO_ID}/resolve/{COMMIT}/{fetch.ORBIT_FILE}"
    ]


def test_online_errors_are_one_line(cli, checkpoints, hub, tmp_path):
    env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1"}
    out = tmp_path / "weights"
    args = ["fetch-weights", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    args += ["--layout", str(checkpoints["layout"])]

    line = _one_line_error(cli(*args, "--repo", "someone/elsewhere", env=env))
    assert f"{hub.url}/someone/elsewhere: repository not found" in line

    hub.corrupt.add(fetch.BACK_VIEW_FILE)  # served damaged on every try
    line = _one_line_error(cli(*args, env=env))
    assert fetch.BACK_VIEW_FILE in line and "is not the published" in line

    del hub.files[fetch.BACK_VIEW_FILE]
    line = _one_line_error(cli(*args, env=env))
    assert f"has no file {fetch.BACK_VIEW_FILE} at revision main" in line
    assert not out.exists()


def test_only_fetch_weights_downloads():
    """No other module of the project calls a download API (the one exception of DESIGN.md's rule)."""
    import re

    repo = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"hf_hub_download|snapshot_download|HfApi|urlopen|urlretrieve|requests\.get|httpx2?\.")
    sources = [p for folder in ("portrait3d", "nerf", "scripts") for p in (repo / folder).rglob("*.py")]
    callers = sorted(str(p.relative_to(repo)) for p in sources if pattern.search(p.read_text(encoding="utf-8")))
    assert callers == ["portrait3d/diffusion/fetch.py"]
