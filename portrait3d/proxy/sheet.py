"""Contact sheets: many images on one labelled grid, for looking at a run's outputs at once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def contact_sheet(
    images: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    columns: int = 8,
    tile: int = 192,
    background: tuple[int, int, int] = (48, 48, 48),
) -> np.ndarray:
    """Lay images out on a grid, each scaled to fit a square tile, with a label under it.

    Args:
        images: (H, W), (H, W, 3) or (H, W, 4) uint8 images; RGBA is composited over ``background``.
        labels: one caption per image (or None).
        columns: tiles per row.
        tile: side of a tile in pixels.
        background: RGB of the sheet and of transparent pixels.
    Returns:
        (rows * (tile + caption), columns * tile, 3) uint8 sheet.
    """
    import cv2

    if not images:
        raise ValueError("a contact sheet needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError("one label per image")
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    caption = 18 if labels is not None else 0
    bg = np.asarray(background, dtype=np.float32)
    sheet = np.empty((rows * (tile + caption), columns * tile, 3), np.uint8)
    sheet[:] = np.asarray(background, dtype=np.uint8)
    for i, image in enumerate(images):
        rgb = _rgb_over(np.asarray(image), bg)
        h, w = rgb.shape[:2]
        scale = tile / max(h, w)
        small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        r, c = divmod(i, columns)
        y0 = r * (tile + caption) + (tile - small.shape[0]) // 2
        x0 = c * tile + (tile - small.shape[1]) // 2
        sheet[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
        if labels is not None:
            cv2.putText(
                sheet, str(labels[i]), (c * tile + 4, r * (tile + caption) + tile + 13),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (230, 230, 230), 1, cv2.LINE_AA,
            )  # fmt: skip
    return sheet


def _rgb_over(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Any uint8 image as RGB, RGBA composited over ``background``: (H, W, 3) uint8."""
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1).astype(np.uint8)
    if image.shape[-1] == 4:
        alpha = image[..., 3:].astype(np.float32) / 255.0
        return np.round(image[..., :3] * alpha + background * (1 - alpha)).astype(np.uint8)
    return image[..., :3].astype(np.uint8)
