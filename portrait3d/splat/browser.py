"""Splat files in a real browser: ``web/viewer.html`` served on 127.0.0.1, screenshotted by Chromium.

Used by the browser tests and by ``scripts/splat_screenshot.py``. Needs Playwright for Python, a
Chromium (Debian's ``chromium``; WebGL through SwiftShader) and the npm packages ``three`` and
``@sparkjsdev/spark`` in a ``node_modules`` folder (``scripts/setup.sh --dev`` puts them in ``.tools/``).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

VIEWER = Path(__file__).with_name("web") / "viewer.html"
WEBGL_FLAGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(files: dict[str, Path], node_modules: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 with the viewer, ``files`` (name -> path) and ``node_modules/``; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="p3d-splat-web-") as root:
        shutil.copy(VIEWER, Path(root) / "index.html")
        os.symlink(node_modules, Path(root) / "node_modules")
        for name, path in files.items():
            os.symlink(Path(path).resolve(), Path(root) / name)
        handler = functools.partial(_Quiet, directory=root)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            server.server_close()


def camera_query(camera, origin: np.ndarray, metres_per_unit: float) -> dict:
    """The viewer's ``eye``, ``target`` and ``fov`` for a project camera, in the files' frame (metres)."""
    eye = (camera.position - origin) * metres_per_unit
    target = (camera.position + camera.forward - origin) * metres_per_unit
    fov = math.degrees(2 * math.atan(0.5 / camera.intrinsics[1, 1]))

    def text(v):
        return ",".join(f"{x:.6f}" for x in v)

    return {"eye": text(eye), "target": text(target), "fov": f"{fov:.6f}"}


def file_camera(camera, origin: np.ndarray, metres_per_unit: float):
    """The same camera in the files' frame (for reference renders of the files' Gaussians)."""
    from portrait3d.cameras import Camera

    c2w = camera.cam2world.copy()
    c2w[:3, 3] = (c2w[:3, 3] - origin) * metres_per_unit
    return Camera(c2w, camera.intrinsics)


def screenshots(
    url: str, pages: list[dict], chromium: str, size: int = 256, timeout_ms: float = 120_000
) -> list[tuple[np.ndarray | None, dict]]:
    """Open the viewer once per query in ``pages`` and return ``(RGB (size, size, 3) uint8 or None, window.p3d)``."""
    import io

    from PIL import Image
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=WEBGL_FLAGS)
        try:
            for query in pages:
                page = browser.new_page(viewport={"width": size, "height": size})
                # Nothing but the local server: the page must not reach the network.
                page.route(
                    "**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort()
                )
                page.goto(url + "index.html?" + urlencode({"size": size, **query}))
                page.wait_for_function("window.p3d && window.p3d.status !== 'loading'", timeout=timeout_ms)
                state = page.evaluate("window.p3d")
                picture = None
                if state.get("status") == "ready":
                    png = page.locator("canvas").screenshot()
                    picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
                results.append((picture, state))
                page.close()
        finally:
            browser.close()
    return results
