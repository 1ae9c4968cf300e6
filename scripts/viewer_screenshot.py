"""Screenshot nerfstudio's viewer on a run, in Debian's chromium (how ``docs/viewer.png`` is made).

Starts ``portrait3d view RUN`` on a free port of 127.0.0.1, opens it with
Playwright (``executable_path``: no browser download), waits for the
full-resolution render and saves the page::

    python scripts/viewer_screenshot.py RUN --out docs/viewer.png [--wait 60]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WEBGL_FLAGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def log_text(log) -> str:
    """What the server has written so far to the file ``log`` (read through a second handle)."""
    return Path(log.name).read_text(errors="replace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder with a fitted NeRF")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait after connecting (default: 60)")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="chromium executable")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "portrait3d", "view", str(args.run), "--port", str(port)]
    # A file, not a pipe: the server's output never blocks it.
    with tempfile.TemporaryDirectory() as folder, open(Path(folder) / "view.log", "w") as log:
        server = subprocess.Popen(cmd, stderr=log, stdout=log, text=True)
        try:
            while "nerfstudio viewer:" not in log_text(log):
                if server.poll() is not None:
                    sys.exit(f"portrait3d view exited with {server.returncode}:\n{log_text(log)[-2000:]}")
                time.sleep(1)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=WEBGL_FLAGS)
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}", timeout=120_000)
                page.get_by_text("Connected").first.wait_for(timeout=120_000)
                time.sleep(args.wait)
                page.screenshot(path=str(args.out))
                browser.close()
            print(f"wrote {args.out}")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
