"""The three.js page that shows a rigged head (``web/avatar.html``) and a folder to serve it from."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PAGE = Path(__file__).with_name("web") / "avatar.html"
THREE_ENV = "PORTRAIT3D_THREE"
"""Folder of the npm package ``three`` (default: ``.tools/node_modules/three`` of the checkout)."""


def three_folder() -> Path | None:
    """The local copy of three.js (npm ``three``; ``scripts/setup.sh --dev`` installs it), or None."""
    candidates = [os.environ.get(THREE_ENV), Path(__file__).resolve().parents[2] / ".tools" / "node_modules" / "three"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "build" / "three.module.js").is_file():
            return Path(candidate)
    return None


def page_folder(folder: Path, glb: Path) -> Path:
    """Fill ``folder`` with ``index.html``, ``head.glb`` and a link to three.js; returns the page."""
    from portrait3d.errors import UserError

    three = three_folder()
    if three is None:
        raise UserError(f"the avatar page needs three.js: npm install --prefix .tools three (or set ${THREE_ENV})")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PAGE, folder / "index.html")
    shutil.copy2(glb, folder / "head.glb")
    link = folder / "three"
    if not link.exists():
        link.symlink_to(three, target_is_directory=True)
    return folder / "index.html"
