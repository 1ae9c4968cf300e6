"""Clean-up of an extracted surface: keep the head, close holes, cut and cap the neck.

Knows mesh topology only (connected components, boundary loops, a horizontal cut): drops floaters
(every component but the largest), fan-fills small boundary loops with the mesh's winding, cuts the
bottom of the neck flat and closes it with a cap, and says where the asset's origin goes (the base of
the neck on the mid-plane). Works on any ``trimesh.Trimesh`` in PanoHead world units, y up.
"""

from __future__ import annotations

import numpy as np
import trimesh


def keep_largest_component(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Drop floaters: every connected component except the one with the most faces."""
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return mesh
    return max(parts, key=lambda m: len(m.faces))


def close_small_holes(mesh: trimesh.Trimesh, max_edges: int) -> trimesh.Trimesh:
    """Fan-fill boundary loops of at most ``max_edges`` edges around their centroid."""
    if max_edges <= 0 or mesh.is_watertight:
        return mesh
    # Directed boundary edges (edges used by one face only), in face order, so fill triangles get the mesh's winding.
    directed = np.asarray(mesh.edges)[trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)]
    if len(directed) == 0:
        return mesh
    # Outgoing boundary edges per vertex; a vertex where two holes touch has several.
    outgoing: dict[int, list[int]] = {}
    for a, b in directed:
        outgoing.setdefault(int(a), []).append(int(b))
    vertices, new_faces = [np.asarray(mesh.vertices)], []
    next_index = len(mesh.vertices)
    for start in list(outgoing):
        while outgoing.get(start):
            loop, v = [start], outgoing[start].pop()
            while v != start and outgoing.get(v) and len(loop) <= max_edges:
                loop.append(v)
                v = outgoing[v].pop()
            if v != start or len(loop) > max_edges:
                continue
            for cycle in _simple_cycles(loop):
                centre = np.asarray(mesh.vertices)[cycle].mean(axis=0)
                vertices.append(centre[None])
                # A boundary edge a->b belongs to a face; the fill face must use it as b->a.
                new_faces.extend([b, a, next_index] for a, b in zip(cycle, cycle[1:] + cycle[:1]))
                next_index += 1
    if not new_faces:
        return mesh
    faces = np.concatenate([np.asarray(mesh.faces), np.asarray(new_faces, dtype=np.int64)])
    return trimesh.Trimesh(np.concatenate(vertices), faces, process=True)


def _simple_cycles(walk: list[int]) -> list[list[int]]:
    """Split a closed walk that passes a vertex twice (holes touching at a vertex) into simple cycles."""
    cycles, stack, position = [], [], {}
    for v in walk + walk[:1]:
        if v in position:
            start = position[v]
            cycle = stack[start:]
            for u in cycle:
                position.pop(u)
            del stack[start:]
            if len(cycle) >= 3:
                cycles.append(cycle)
        position[v] = len(stack)
        stack.append(v)
    return cycles


def cap_neck(mesh: trimesh.Trimesh, height: float) -> tuple[trimesh.Trimesh, float | None]:
    """Cut the bottom of the neck flat with a horizontal plane and close the cut with a flat cap.

    The plane lies ``height`` above the lowest point, and above every open boundary of the lower
    third of the mesh (a neck that the views cut off ragged), so the cut meets only whole rings of
    the surface and the cap closes the mesh.

    Args:
        mesh: the surface (world units, y up).
        height: world units above the lowest point; 0 or less: no cut.
    Returns:
        ``(mesh, y)``: the cut and capped mesh and the plane's height (None and the mesh unchanged when
        ``height <= 0``).
    """
    if height <= 0:
        return mesh, None
    vertices = np.asarray(mesh.vertices)
    lo, hi = float(vertices[:, 1].min()), float(vertices[:, 1].max())
    cut = lo + height
    boundary = np.unique(mesh.edges[trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)])
    low_boundary = vertices[boundary, 1][vertices[boundary, 1] < lo + (hi - lo) / 3.0]
    if len(low_boundary):
        cut = max(cut, float(low_boundary.max()) + 0.5 * height)
    kept = trimesh.intersections.slice_mesh_plane(mesh, [0.0, 1.0, 0.0], [0.0, cut, 0.0])
    kept.merge_vertices()
    kept = keep_largest_component(kept)
    # The cut's boundary rings lie in the plane: fan-fill them (a neck's cross-section is star-shaped).
    capped = close_small_holes(kept, max_edges=len(kept.faces))
    return capped, cut


def neck_origin(mesh: trimesh.Trimesh, cut: float | None) -> np.ndarray:
    """The point that becomes the asset's origin: on the mid-plane (x = 0), at the base of the neck (the
    cap's height, else the lowest point) and at the middle of the neck front to back (world units, (3,))."""
    vertices = np.asarray(mesh.vertices)
    y = float(vertices[:, 1].min()) if cut is None else cut
    base = vertices[vertices[:, 1] <= y + 1e-6]
    z = float(base[:, 2].mean()) if len(base) else float(vertices[:, 2].mean())
    return np.array([0.0, y, z])
