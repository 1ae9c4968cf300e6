"""A real client: three.js (npm ``three``) in Debian's chromium through Playwright loads the rigged GLB
from a page on 127.0.0.1; each blendshape changes pixels only in its region."""

# ruff: noqa: F811  (the fixtures imported from rig_run are test parameters)
from __future__ import annotations

import functools
import http.server
import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from missing_tool import missing_tool
from rig_run import avatar_run, rigged  # noqa: F401

from portrait3d.rig import landmarks3d as lm
from portrait3d.rig.arkit import VISEME_NAMES

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("PORTRAIT3D_CHROMIUM", "/usr/bin/chromium"))
WEBGL_FLAGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
SIZE = 512
SHOTS = os.environ.get("PORTRAIT3D_RIG_SHOTS")  # a folder to keep the screenshots in (to look at them)
BLINK_REACH_M = 0.015  # how far from the lid contours a blink may move skin: test_rig's bound


@pytest.fixture(scope="module")
def page(avatar_run, tmp_path_factory):
    from portrait3d.rig.web import page_folder, three_folder

    if not CHROMIUM.exists():
        missing_tool(f"{CHROMIUM} is missing (bash scripts/setup.sh --dev installs Debian's chromium when run as root)")
    if three_folder() is None:
        missing_tool("npm three is missing (bash scripts/setup.sh --dev installs it into .tools/)")
    from playwright.sync_api import sync_playwright

    folder = tmp_path_factory.mktemp("avatar-page")
    page_folder(folder, avatar_run / "avatar" / "head.glb")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=WEBGL_FLAGS)
        tab = browser.new_page(viewport={"width": SIZE, "height": SIZE})
        tab.route("**/*", lambda route: route.continue_() if "127.0.0.1" in route.request.url else route.abort())
        tab.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html?bare=1&size={SIZE}", timeout=120_000)
        tab.wait_for_function("window.ready === true || window.loadError !== undefined", timeout=120_000)
        assert tab.evaluate("window.loadError") is None
        yield tab
        browser.close()
    server.shutdown()


def _shot(page, weights: dict, name: str) -> np.ndarray:
    from PIL import Image

    page.evaluate("w => window.setWeights(w)", weights)
    image = Image.open(io.BytesIO(page.locator("#view").screenshot())).convert("RGB")
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        image.save(Path(SHOTS) / f"{name}.png")
    return np.asarray(image, dtype=np.float64)


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b).max(axis=-1) > 24


def _box(page, points: np.ndarray, margin: float) -> tuple[float, float, float, float]:
    pixels = np.array([page.evaluate("p => window.project(p)", p.tolist()) for p in points])
    lo, hi = pixels.min(axis=0) - margin, pixels.max(axis=0) + margin
    return lo[0], lo[1], hi[0], hi[1]


def _pixels(page, point: np.ndarray, metres: float) -> float:
    """Length in pixels of ``metres`` upright at ``point`` (3,), in the page's camera."""
    a, b = (np.array(page.evaluate("p => window.project(p)", q.tolist())) for q in (point, point + [0, metres, 0]))
    return float(np.linalg.norm(a - b))


def _inside(mask: np.ndarray, box) -> float:
    v, u = np.nonzero(mask)
    x0, y0, x1, y1 = box
    return float(np.mean((u >= x0) & (u <= x1) & (v >= y0) & (v <= y1)))


def test_three_js_drives_every_blendshape_in_its_region(page, rigged):
    _rig, _static, face = rigged
    neutral = _shot(page, {}, "neutral")
    assert np.ptp(neutral) > 100  # the head is drawn
    assert not _changed(neutral, _shot(page, {}, "neutral-again")).any()  # rendering is deterministic

    # eyeBlinkLeft: only the left eye's box changes (the subject's left: the image's right). The box is
    # the lids' contours widened by the 15 mm the rig may move skin from them (test_rig checks that reach
    # in 3-D), so a sharp brow just above the lids may shift without leaving it.
    blink = _changed(neutral, _shot(page, {"eyeBlinkLeft": 1.0}, "eyeBlinkLeft"))
    upper, lower = face.lids("left")
    eye_box = _box(page, np.concatenate([upper, lower]), _pixels(page, face.eye_centre("left"), BLINK_REACH_M))
    assert blink.sum() > 30 and _inside(blink, eye_box) >= 0.97, (blink.sum(), _inside(blink, eye_box), eye_box)
    assert np.nonzero(blink)[1].mean() > SIZE / 2

    # jawOpen: below the nose only, and the mouth gets darker inside.
    jaw_image = _shot(page, {"jawOpen": 1.0}, "jawOpen")
    jaw = _changed(neutral, jaw_image)
    nose_y = page.evaluate("p => window.project(p)", face.points[lm.NOSE_BOTTOM].tolist())[1]
    assert jaw.sum() > 200 and np.mean(np.nonzero(jaw)[0] > nose_y) >= 0.97
    mouth_box = [int(round(v)) for v in _box(page, face.curve(lm.LIPS_UPPER_INNER + lm.LIPS_LOWER_INNER), 0)]
    x0, y0, x1, y1 = mouth_box
    inside_mouth = (slice(y0, y1 + 1), slice(x0, x1 + 1))
    assert jaw_image[inside_mouth].mean() < neutral[inside_mouth].mean() - 10

    # A smile moves the lower face; the visemes move the mouth and jaw, below the eyes.
    eyes_y = max(page.evaluate("p => window.project(p)", face.eye_centre(s).tolist())[1] for s in ("left", "right"))
    smile = _changed(neutral, _shot(page, {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0}, "smile"))
    assert smile.sum() > 100 and np.mean(np.nonzero(smile)[0] > eyes_y) >= 0.97
    shots = {}
    for viseme in VISEME_NAMES:
        image = _shot(page, {viseme: 1.0}, viseme)
        changed = _changed(neutral, image)
        if viseme == "viseme_sil":
            assert not changed.any()
            continue
        assert changed.sum() > 50, viseme
        assert np.mean(np.nonzero(changed)[0] > eyes_y) >= 0.97, viseme
        shots[viseme] = image
    # Open vowels open the mouth wider than closed consonants.
    openness = {v: neutral[inside_mouth].mean() - shots[v][inside_mouth].mean() for v in ("viseme_aa", "viseme_PP")}
    assert openness["viseme_aa"] > openness["viseme_PP"] + 5, openness


def test_turning_the_head_bone_turns_the_eyes_with_it(page):
    page.evaluate("window.setWeights({})")
    page.evaluate("window.turnHead(25)")
    turned = page.locator("#view").screenshot()
    page.evaluate("window.turnHead(0)")
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(turned)).convert("RGB"), dtype=np.float64)
    rest = _shot(page, {}, "rest")
    assert _changed(rest, image).mean() > 0.05


def test_web_app_shows_the_avatar_page(avatar_run, page, tmp_path):
    """The web app's Avatar button: an iframe of the three.js page, served by the app itself (Gradio's
    file route: the page, three.js and the GLB), which loads in the browser."""
    import json
    import shutil
    import socket

    from portrait3d.rig.web import three_folder
    from portrait3d.serve import JOB_FILE, App, ServeOptions, serve

    if not CHROMIUM.exists() or three_folder() is None:
        missing_tool("chromium or npm three is missing (bash scripts/setup.sh --dev installs them)")
    runs = tmp_path / "runs"
    shutil.copytree(avatar_run, runs / "sample", symlinks=True)
    (runs / "sample" / JOB_FILE).write_text(json.dumps({"photo": "astronaut.jpg", "preset": "tiny"}))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = ServeOptions(port=port, runs=str(runs), preset="tiny")
    html = App(options).rig("sample")
    assert html.startswith("<iframe") and (runs / "sample" / "web" / "avatar" / "index.html").is_file()
    src = html.split('src="', 1)[1].split('"', 1)[0]
    demo = serve(options, block=False)
    try:
        tab = page.context.browser.new_page()  # the module's browser session
        tab.route("**/*", lambda route: route.continue_() if "127.0.0.1" in route.request.url else route.abort())
        tab.goto(f"http://127.0.0.1:{port}{src}", timeout=120_000)
        tab.wait_for_function("window.ready === true || window.loadError !== undefined", timeout=120_000)
        assert tab.evaluate("window.loadError") is None
        assert tab.locator("input[type=range]").count() == 5 and tab.locator("button").count() == 1
        tab.close()
    finally:
        demo.close()
