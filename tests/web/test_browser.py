"""The web app (``portrait3d serve``) and nerfstudio's viewer (``portrait3d view``), driven in a real browser.

Debian's chromium through Playwright (``executable_path``; Playwright's own browser
download cannot work offline). One tiny make-asset run, made through ``gradio_client``,
is shared by every test: the browser then sends the same job, which is the same run
folder, so its stages are skipped. Set ``PORTRAIT3D_DOCS_SCREENSHOTS=1`` to refresh the
screenshots kept in ``docs/``.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from missing_tool import missing_tool

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SAMPLE_PHOTO = REPO / "data" / "samples" / "astronaut.jpg"
CHROMIUM = Path(os.environ.get("PORTRAIT3D_CHROMIUM", "/usr/bin/chromium"))
WEBGL_FLAGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
DOCS_SCREENSHOTS = os.environ.get("PORTRAIT3D_DOCS_SCREENSHOTS") == "1"
JOB = ("proxy", "tiny", 8, 0, False, 0, 0)  # generator, preset, views, seed, manual camera, yaw, pitch


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(args: list[str], ready: str, cwd: Path, home: Path, timeout: float = 300) -> tuple[subprocess.Popen, Path]:
    """Start ``portrait3d ARGS`` and wait for the line containing ``ready`` on its stderr (logged to a file)."""
    exe = Path(sys.executable).parent / "portrait3d"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "portrait3d"]
    log = cwd.parent / f"{args[0]}-{time.monotonic_ns()}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    with open(log, "w") as out:
        proc = subprocess.Popen([*cmd, *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    while ready not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"portrait3d {args[0]} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(1)
    return proc, log


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _only_local(route) -> None:
    """The pages may name outside addresses (fonts, analytics): only 127.0.0.1 is reached."""
    url = route.request.url
    if url.startswith(("http://127.0.0.1", "data:", "blob:")):
        route.continue_()
    else:
        route.abort()


def _image(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.float32)


def not_blank(pixels: np.ndarray) -> float:
    """Fraction of pixels that differ clearly from the image's most common colour (its background)."""
    flat = pixels.reshape(-1, 3)
    values, counts = np.unique((flat // 8).astype(np.int32), axis=0, return_counts=True)
    background = values[counts.argmax()] * 8 + 4
    return float((np.abs(flat - background).max(axis=1) > 24).mean())


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """The runs folder, a working directory and a HOME for the servers: the last two must stay empty."""
    root = tmp_path_factory.mktemp("web")
    paths = {name: root / name for name in ("runs", "cwd", "home")}
    for path in paths.values():
        path.mkdir()
    return paths


@pytest.fixture(scope="module")
def server(places):
    """``portrait3d serve`` on a free port with the tiny preset, a 1 MB upload limit."""
    port = _free_port()
    args = ["serve", "--runs", str(places["runs"]), "--port", str(port), "--preset", "tiny", "--max-file-size", "1"]
    proc, log = _start(args, "portrait3d web app:", places["cwd"], places["home"])
    yield {"url": f"http://127.0.0.1:{port}/", "log": log}
    _stop(proc)


@pytest.fixture(scope="module")
def client_result(server, tmp_path_factory):
    """The tiny job, through ``gradio_client`` (as the README shows)."""
    from gradio_client import Client, handle_file

    client = Client(server["url"], verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))
    result = client.predict(handle_file(str(SAMPLE_PHOTO)), *JOB, api_name="/make_asset")
    return client, result


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        missing_tool(f"{CHROMIUM} is missing (bash scripts/setup.sh --dev installs Debian's chromium when run as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=WEBGL_FLAGS)
        yield chromium
        chromium.close()


def _page(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.route("**/*", _only_local)
    page.goto(url, timeout=120_000)
    return page


def _run_folder(places, status: str) -> Path:
    name = re.match(r"([\w-]+): done", status)
    assert name, status
    return places["runs"] / name.group(1)


def test_gradio_client_runs_the_job(client_result, places):
    _, (status, sheet, turntable, glb, downloads, splat) = client_result
    run = _run_folder(places, status)
    assert (run / "report.json").is_file() and (run / "job.json").is_file()
    assert Path(glb).read_bytes() == (run / "mesh" / "head.glb").read_bytes()
    names = {Path(d["path"] if isinstance(d, dict) else d).name for d in downloads}
    assert {"head.glb", "head.obj", "head.mtl", "head_texture.png", "head.ply", f"{run.name}.zip"} <= names
    assert Path(sheet).stat().st_size > 0 and Path(turntable).stat().st_size > 0
    assert Path(splat).read_bytes() == (run / "splat" / "head.ply").read_bytes()
    assert "head.spz" in names  # with splat/head.ply and splat/head.glb beside the mesh files


def test_earlier_run_is_listed_shown_and_resumed(client_result, places):
    client, (status, *_rest) = client_result
    name = status.split(":")[0]
    from portrait3d.serve import list_runs

    assert name in list_runs(places["runs"])  # what a restarted server lists under "Earlier runs"
    assert client.predict(name, api_name="/show")[0] == f"{name}: finished"
    resumed = client.predict(name, api_name="/resume")
    assert resumed[0].startswith(f"{name}: done in")
    report = json.loads((places["runs"] / name / "report.json").read_text())
    assert all(stage["skipped"] for stage in report["stages"].values()), report["stages"]


def test_browser_upload_shows_the_head_and_its_glb(browser, server, client_result, places, tmp_path):
    _, (first_status, *_rest) = client_result
    page = _page(browser, server["url"])
    page.locator("#photo input[type=file]").set_input_files(str(SAMPLE_PHOTO))
    page.get_by_text("Options").click()
    views = page.locator("#views input")
    views.click()
    views.press("Control+A")
    views.press_sequentially("8")
    views.press("Enter")  # Gradio takes a number when it is submitted or loses focus
    page.locator("#start").click()
    status = page.locator("#status textarea")
    page.wait_for_function(
        "() => document.querySelector('#status textarea').value.includes('done in')", timeout=600_000
    )
    # The same photo and options are the same run folder as the gradio_client job: resumed, not redone.
    assert status.input_value().split(":")[0] == first_status.split(":")[0]
    run = _run_folder(places, status.input_value())

    canvas = page.locator("#model canvas")
    canvas.wait_for(timeout=60_000)
    deadline, fraction = time.monotonic() + 120, 0.0
    while time.monotonic() < deadline and fraction <= 0.05:  # the 3D viewer loads the GLB, then draws it
        time.sleep(3)
        fraction = not_blank(_image(canvas.screenshot()))
    if fraction <= 0.05:
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert fraction > 0.05, f"the 3D viewer shows no model (page: {tmp_path / 'page.png'})"
    if DOCS_SCREENSHOTS:
        page.screenshot(path=str(REPO / "docs" / "web_app.png"), full_page=True)

    link = page.locator('#downloads a[href*="head.glb"]').first
    response = page.request.get(link.get_attribute("href"))
    assert response.ok and response.body() == (run / "mesh" / "head.glb").read_bytes()
    page.close()


def test_browser_broken_photo_shows_one_line_error(browser, server, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG at all")
    page = _page(browser, server["url"])
    page.locator("#photo input[type=file]").set_input_files(str(broken))
    page.locator("#start").click()
    message = page.get_by_text(re.compile(r"broken\.jpg: not an image"))
    message.first.wait_for(timeout=120_000)
    assert "Traceback" not in page.content()
    page.close()


def test_upload_over_the_limit_is_refused(server, tmp_path):
    from gradio_client import Client, handle_file

    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + os.urandom(2 << 20))  # 2 MB against a 1 MB limit
    with pytest.raises(Exception, match="(?i)size|large"):
        client = Client(server["url"], verbose=False, download_files=str(tmp_path))
        client.predict(handle_file(str(big)), *JOB, api_name="/make_asset")


def test_nothing_written_outside_runs(client_result, places):
    assert not any(places["cwd"].iterdir()), list(places["cwd"].iterdir())
    assert not [p for p in places["home"].rglob("*") if p.is_file()], list(places["home"].rglob("*"))


def test_viewer_shows_the_nerf(browser, client_result, places):
    _, (status, *_rest) = client_result
    run = _run_folder(places, status)
    port = _free_port()
    proc, _log = _start(["view", str(run), "--port", str(port)], "nerfstudio viewer:", places["cwd"], places["home"])
    try:
        page = _page(browser, f"http://127.0.0.1:{port}")
        page.get_by_text("Connected").first.wait_for(timeout=120_000)
        # The NeRF's render arrives as the canvas background: wait until the canvas is no longer empty.
        canvas = page.locator("canvas").first
        deadline, fraction = time.monotonic() + 180, 0.0
        while time.monotonic() < deadline:
            time.sleep(5)
            fraction = not_blank(_image(canvas.screenshot()))
            if fraction > 0.1:
                break
        assert fraction > 0.1, f"the viewer's canvas is blank ({fraction:.2f} of it drawn)"
        if DOCS_SCREENSHOTS:
            time.sleep(60)  # the full-resolution render comes after the low-resolution one
            page.screenshot(path=str(REPO / "docs" / "viewer.png"))
        page.close()
    finally:
        _stop(proc)
