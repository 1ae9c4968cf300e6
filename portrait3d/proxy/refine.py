"""Finer triangles where a marching-cubes mesh has detail smaller than its grid (the ears).

:func:`refine_faces` splits chosen triangles in four and their neighbours in two (a conforming "red-green"
split: no vertex lies on another triangle's edge, so a closed mesh stays closed); :func:`onto_surface` then moves
the new vertices onto the distance field's zero set, where the grid's straight edges cut the surface's curves.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_EDGES = np.array([[0, 1], [1, 2], [2, 0]])


def refine_faces(vertices: np.ndarray, faces: np.ndarray, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split the ``chosen`` triangles in four and their neighbours in two.

    A triangle with two of its edges split is split in four as well (and so on until none is left), so every
    triangle ends with none, one or three of its edges split. Orientation is kept.

    Args:
        vertices: (V, 3); faces: (F, 3); chosen: (F,) bool.
    Returns:
        ``(vertices, faces)``: (V + E, 3) with the E edge midpoints after the old vertices, and the new triangles.
    """
    faces = np.asarray(faces)
    edges = np.sort(faces[:, _EDGES], axis=2).reshape(-1, 2)  # (3F, 2): edge k of face f at 3 f + k
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1, 3)
    split = np.zeros(len(unique), bool)
    split[inverse[np.asarray(chosen, bool)]] = True
    while True:
        count = split[inverse].sum(axis=1)
        promote = count == 2
        if not promote.any():
            break
        split[inverse[promote]] = True
    midpoint = np.full(len(unique), -1)
    midpoint[split] = len(vertices) + np.arange(split.sum())
    new_vertices = np.concatenate([vertices, vertices[unique[split]].mean(axis=1)])
    mids = midpoint[inverse]  # (F, 3): midpoint of edge (k, k + 1), or -1
    count = (mids >= 0).sum(axis=1)
    a, b, c = faces.T
    whole = faces[count == 0]
    four = count == 3
    ab, bc, ca = mids[four].T
    fours = np.concatenate([np.stack(t, axis=1) for t in (
        (a[four], ab, ca), (ab, b[four], bc), (ca, bc, c[four]), (ab, bc, ca))])  # fmt: skip
    two = np.nonzero(count == 1)[0]
    k = np.argmax(mids[two] >= 0, axis=1)  # which edge is split: roll it to (first, second)
    corner = faces[two[:, None], (k[:, None] + np.arange(3)) % 3]
    m = mids[two, k]
    twos = np.concatenate([np.stack([corner[:, 0], m, corner[:, 2]], 1), np.stack([m, corner[:, 1], corner[:, 2]], 1)])
    return new_vertices, np.concatenate([whole, fours, twos]).astype(faces.dtype)


def onto_surface(
    points: np.ndarray, field: Callable[[np.ndarray], np.ndarray], largest_move: float, iterations: int = 3
) -> np.ndarray:
    """``points`` (N, 3) moved onto the zero set of ``field`` ((N, 3) -> (N,)) by Newton steps along its gradient.

    Each point moves at most ``largest_move`` in all (a point far from the surface stays near where it was).
    """
    start = np.asarray(points, dtype=np.float64)
    p = start.copy()
    h = 0.1 * largest_move
    offsets = np.eye(3) * h
    for _ in range(iterations):
        value = field(p)
        gradient = np.stack([(field(p + o) - field(p - o)) / (2 * h) for o in offsets], axis=1)
        step = value[:, None] * gradient / np.maximum((gradient**2).sum(axis=1, keepdims=True), 1e-12)
        p = p - step
        move = p - start
        length = np.linalg.norm(move, axis=1, keepdims=True)
        p = start + move * np.minimum(1.0, largest_move / np.maximum(length, 1e-12))
    return p
