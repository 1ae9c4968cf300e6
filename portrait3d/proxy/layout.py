"""The proxy head's texture layout: a longitude/latitude map of the head, and charts of its own for each pinna.

Seen from the middle of the skull, a pinna lies in front of the head's side behind it, and its back in front of
that again: on a longitude/latitude map the three share their texels, so the photo's ear would be painted on the
skin behind the ear and on the pinna's back. The pinna's triangles are therefore laid out apart, in a band at the
bottom of the texture, side on (their (z, y) coordinates): one chart for the outer face and one for the back of
each ear. Both ears use the same (z, y) box, so a texel's mirror image across the face's mid-plane lies in the
other ear's chart at the same place in it (:func:`mirror_coordinates`).

Coordinates: ``u`` left to right, ``v`` bottom to top (row 0 of the texture image is ``v = 1``).
"""

from __future__ import annotations

import numpy as np

UV_CENTRE = np.array([0.0, 0.0, -0.03])
"""Centre of the longitude/latitude map (inside the skull)."""
PINNA_ROWS = 0.125
"""Share of the texture's height, at its bottom, that holds the pinna charts; the longitude/latitude map takes the
rest."""
PINNA_CHARTS = 4
"""Charts in the band, left to right: the right ear's outer face and back, then the left ear's (the subject's
right is -x)."""
PINNA_MARGIN = 0.06
"""Share of a chart's width and height left empty around its box (room for the colours grown past its edges)."""
PINNA_VERTEX = 0.5
"""Pinna weight above which a vertex belongs to a pinna; a triangle whose three corners do goes to a chart."""


def sphere_uv(points: np.ndarray) -> np.ndarray:
    """Longitude/latitude UV of points around :data:`UV_CENTRE`, above the pinna band: (..., 3) -> (..., 2)."""
    rel = np.asarray(points, dtype=np.float64) - UV_CENTRE
    u = 0.5 + np.arctan2(rel[..., 0], rel[..., 2]) / (2 * np.pi)
    norm = np.maximum(np.linalg.norm(rel, axis=-1), 1e-12)
    latitude = 0.5 + np.arcsin(np.clip(rel[..., 1] / norm, -1, 1)) / np.pi
    return np.stack([u, PINNA_ROWS + (1.0 - PINNA_ROWS) * latitude], axis=-1)


def chart_uv(points: np.ndarray, chart: int, box: np.ndarray) -> np.ndarray:
    """UV of points in one pinna chart: (..., 3) -> (..., 2).

    Args:
        points: pinna points (world).
        chart: the chart's index (:data:`PINNA_CHARTS`: 0, 1 the right ear's outer face and back, 2, 3 the left's).
        box: (2, 2) ``[[z_min, y_min], [z_max, y_max]]``, the side-on box that both ears' charts map.
    """
    zy = np.asarray(points, dtype=np.float64)[..., [2, 1]]
    local = (zy - box[0]) / np.maximum(box[1] - box[0], 1e-9)
    inner = PINNA_MARGIN + (1.0 - 2.0 * PINNA_MARGIN) * local
    # The pinna's height runs along the chart's width (the band is four times wider than a chart is high).
    u = (chart + inner[..., 1]) / PINNA_CHARTS
    v = PINNA_ROWS * inner[..., 0]
    return np.stack([u, v], axis=-1)


def pinna_faces(faces: np.ndarray, pinna: np.ndarray) -> np.ndarray:
    """(F,) bool: the triangles (``faces`` (F, 3)) whose three corners are pinna (``pinna`` (V,) weights)."""
    return np.all(np.asarray(pinna)[np.asarray(faces)] > PINNA_VERTEX, axis=1)


def pinna_charts(vertices: np.ndarray, faces: np.ndarray, pinna: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Which chart each triangle goes to, and the side-on box the charts map.

    Args:
        vertices: (V, 3) positions; faces: (F, 3) triangles with outward normals; pinna: (V,) pinna weights.
    Returns:
        ``(chart, box)``: (F,) chart index (see :func:`chart_uv`; -1: the longitude/latitude map) and the
        (2, 2) ``[[z_min, y_min], [z_max, y_max]]`` box of the pinna triangles (None without any).
    """
    chart = np.full(len(faces), -1)
    on_pinna = pinna_faces(faces, pinna)
    if not on_pinna.any():
        return chart, None
    corner = vertices[faces[on_pinna]]
    zy = corner.reshape(-1, 3)[:, [2, 1]]
    box = np.stack([zy.min(0), zy.max(0)])
    centre = corner.mean(axis=1)
    side = np.sign(centre[:, 0] - vertices[:, 0].mean())
    # The outer face and the back are the two sides of the ear's mid-plane (the plane its triangles spread along),
    # not of the triangles' own normals: the concha's floor faces the head and is still the outer face.
    outer = np.zeros(len(centre), bool)
    for s in (-1.0, 1.0):
        mine = side == s
        if mine.sum() < 3:
            continue
        middle = centre[mine].mean(axis=0)
        normal = np.linalg.svd(centre[mine] - middle, full_matrices=False)[2][-1]
        normal *= np.sign(normal[0] * s) or 1.0
        outer[mine] = (centre[mine] - middle) @ normal > 0
    chart[on_pinna] = np.where(side < 0, 0, 2) + np.where(outer, 0, 1)
    return chart, box


def head_uv(
    vertices: np.ndarray, faces: np.ndarray, pinna: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The head's UV layout: the longitude/latitude map with its seam cut open, and the pinna charts.

    Args:
        vertices: (V, 3) positions (head frame: y up, face toward +z, mid-plane near x = 0).
        faces: (F, 3) triangles with outward normals.
        pinna: (V,) how much each vertex is a pinna (:attr:`portrait3d.proxy.shape.HeadShape.pinna`), or None:
            no pinna charts.
    Returns:
        ``(uv, faces, source)``: (V', 2) UVs, (F, 3) triangles into them and (V',) the original vertex of each
        UV vertex. The first V UV vertices are the original ones, in order (a vertex on a pinna alone has its
        chart's UV there); the copies where charts meet and across the map's seam come after.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    chart, box = (np.full(len(faces), -1), None) if pinna is None else pinna_charts(vertices, faces, pinna)
    uv, source, faces_uv = [sphere_uv(vertices)], [np.arange(len(vertices))], faces.copy()
    count = len(vertices)
    on_map = np.zeros(len(vertices), bool)
    on_map[faces[chart < 0].ravel()] = True
    for k in np.unique(chart[chart >= 0]):
        in_chart = chart == k
        ids = np.unique(faces[in_chart])
        coords = chart_uv(vertices[ids], int(k), box)
        # A vertex of this chart alone takes the chart's UV in place; one shared with the map or another chart
        # gets a copy.
        alone = ~on_map[ids] & (uv[0][ids, 1] >= PINNA_ROWS)
        uv[0][ids[alone]] = coords[alone]
        index = np.arange(len(vertices))
        index[ids[~alone]] = count + np.arange(int((~alone).sum()))
        uv.append(coords[~alone])
        source.append(ids[~alone])
        count += int((~alone).sum())
        faces_uv[in_chart] = index[faces[in_chart]]
    return _cut_seam(np.concatenate(uv), faces_uv, np.concatenate(source), chart < 0)


def _cut_seam(
    uv: np.ndarray, faces: np.ndarray, source: np.ndarray, on_map: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Give the map's triangles across its seam (u = 0 = 1) a copy of their low-u corners at u + 1 (clamped
    when sampled), so that no triangle spans the whole texture."""
    fu = uv[faces][..., 0]
    low = (on_map & (fu.max(axis=1) - fu.min(axis=1) > 0.5))[:, None] & (fu < 0.5)
    dup = np.unique(faces[low])
    new_index = np.full(len(uv), -1)
    new_index[dup] = len(uv) + np.arange(len(dup))
    faces = faces.copy()
    faces[low] = new_index[faces[low]]
    return np.concatenate([uv, uv[dup] + [1.0, 0.0]]), faces, np.concatenate([source, source[dup]])


def band_rows(height: int) -> np.ndarray:
    """Which rows of a texture ``height`` rows high hold the pinna charts: (height,) bool."""
    return np.arange(height) >= height - round(PINNA_ROWS * height)


def sphere_coordinates(points: np.ndarray, width: int) -> np.ndarray:
    """(column, row) texel coordinates of points on the longitude/latitude map, for ``cv2.remap``:
    (..., 3) -> (..., 2) float32 (the texture is ``width`` wide, half as high)."""
    uv = sphere_uv(points)
    height = width // 2
    return np.stack([uv[..., 0] * width - 0.5, (1.0 - uv[..., 1]) * height - 0.5], axis=-1).astype(np.float32)


def mirror_coordinates(points: np.ndarray, mid_x: float, width: int) -> np.ndarray:
    """Texel coordinates of the mirror image of every texel's surface point.

    On the longitude/latitude map the mirror is found from the reflected point's direction (so the mesh need not
    be exactly symmetric); in the pinna band it is the same place in the other ear's chart, half the texture's
    width away.

    Args:
        points: (Ht, Wt, 3) surface point of every texel (world).
        mid_x: x of the head's mid-plane.
        width: texture width Wt (the height is Wt / 2).
    Returns:
        (Ht, Wt, 2) float32 (column, row) texel coordinates for ``cv2.remap``.
    """
    mirrored = np.asarray(points, dtype=np.float64).copy()
    mirrored[..., 0] = 2.0 * mid_x - mirrored[..., 0]
    coords = sphere_coordinates(mirrored, width)
    height = width // 2
    rows = np.broadcast_to(np.arange(height, dtype=np.float32)[:, None], (height, width))
    cols = np.broadcast_to(np.arange(width, dtype=np.float32), (height, width))
    band = band_rows(height)[:, None]
    coords[..., 0] = np.where(band, (cols + width // 2) % width, coords[..., 0])
    coords[..., 1] = np.where(band, rows, coords[..., 1])
    return coords


def layered_share(mesh, camera, size: int = 256) -> float:
    """Share of the head's pixels seen through ``camera`` whose surface shares its texels with another part of it.

    The longitude/latitude map gives every direction from :data:`UV_CENTRE` one texel, so where the ray from it
    through a seen point crosses the surface again farther out (an overhang, a pocket between hair and cheek), the
    seen point shows that outer surface's colours. 0 for a head star-shaped about the centre.

    Args:
        mesh: the head (``trimesh.Trimesh``, world units).
        camera: the view (:class:`~portrait3d.cameras.Camera`).
        size: pixels across the view.
    """
    from portrait3d.render import MeshRenderer

    hits = MeshRenderer(mesh).cast(camera, size, size)
    points = hits.points[hits.triangle >= 0]
    if not len(points):
        return 0.0
    offset = points - UV_CENTRE
    reach = np.linalg.norm(offset, axis=1)
    directions = offset / np.maximum(reach, 1e-12)[:, None]
    crossings, ray, _ = mesh.ray.intersects_location(
        np.repeat(UV_CENTRE[None], len(points), axis=0), directions, multiple_hits=True
    )
    farthest = np.zeros(len(points))
    np.maximum.at(farthest, ray, np.linalg.norm(crossings - UV_CENTRE, axis=1))
    return float(np.mean(farthest > reach + 0.002))  # 2 mm: the seen point's own crossing, and rounding
