"""Rays against a triangle mesh: each ray's first hit (distance, triangle, barycentric coordinates).

Two engines give the same hits, both Intel Embree in its robust mode (on the proxy head's views: the
same triangle for every pixel, distances within 5e-7):

- ``embree`` (the ``embreex`` package, x86-64): lets go of the GIL while it casts, so that frames
  rendered in threads cast side by side and a stage running beside another
  (:func:`portrait3d.runner.run_stages`) does not stall it; a large batch is cast in a few threads;
- ``open3d`` (``RaycastingScene``, every platform): casts on all cores but holds the GIL throughout, so
  every other Python thread of the process waits for it.

:func:`default_engine` picks the first one installed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ENGINES = ("embree", "open3d")
"""Values of :class:`RayCaster`'s ``engine``."""
PARALLEL_RAYS = 1 << 16
"""The embree engine casts batches of at least this many rays in several threads."""


@dataclass
class RayHits:
    """The first hit of each of N rays.

    Attributes:
        distance: (N,) float32 distance along the ray in units of its direction's length, inf where missed.
        triangle: (N,) int64 triangle index, -1 where missed.
        uv: (N, 2) float32 barycentric coordinates (u, v): the hit is (1 - u - v) v0 + u v1 + v v2.
    """

    distance: np.ndarray
    triangle: np.ndarray
    uv: np.ndarray


def default_engine() -> str:
    """``embree`` where ``embreex`` imports, else ``open3d``."""
    try:
        import embreex.rtcore_scene  # noqa: F401
    except ImportError:
        return "open3d"
    return "embree"


class RayCaster:
    """A triangle mesh built once for ray casting; :meth:`cast` may then be called from several threads.

    Args:
        vertices: (V, 3) float positions.
        faces: (F, 3) int triangle vertex indices.
        engine: one of :data:`ENGINES`; None: :func:`default_engine`.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, engine: str | None = None) -> None:
        self.engine = engine or default_engine()
        if self.engine not in ENGINES:
            raise ValueError(f"ray engine: choose one of {', '.join(ENGINES)}, got {self.engine!r}")
        vertices = np.ascontiguousarray(vertices, dtype=np.float32)
        if self.engine == "embree":
            from embreex import rtcore_scene
            from embreex.mesh_construction import TriangleMesh

            self._scene = rtcore_scene.EmbreeScene(robust=True)
            TriangleMesh(self._scene, vertices, np.ascontiguousarray(faces, dtype=np.int32))
        else:
            import open3d as o3d

            self._o3c = o3d.core
            self._scene = o3d.t.geometry.RaycastingScene()
            self._scene.add_triangles(
                o3d.core.Tensor(vertices), o3d.core.Tensor(np.ascontiguousarray(faces, dtype=np.uint32))
            )
        # Both engines build their tree at the first cast: build it now, before any thread casts.
        self.cast(np.array([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]], dtype=np.float32))

    def cast(self, rays: np.ndarray) -> RayHits:
        """The first hits of (N, 6) float32 rays (origin xyz, direction xyz).

        The embree engine casts a large batch in :func:`portrait3d.parallel.thread_count` threads (parts of
        the batch side by side, put back in order: the same hits as one thread)."""
        rays = np.asarray(rays, dtype=np.float32).reshape(-1, 6)
        if self.engine == "embree":
            from portrait3d.parallel import ordered_map, thread_count

            threads = thread_count() if len(rays) >= PARALLEL_RAYS else 1
            parts = list(ordered_map(self._cast_embree, np.array_split(rays, threads), threads))
            return RayHits(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("distance", "triangle", "uv")))
        out = self._scene.cast_rays(self._o3c.Tensor(rays))
        distance = out["t_hit"].numpy()
        hit = np.isfinite(distance)
        triangle = np.where(hit, out["primitive_ids"].numpy().astype(np.int64), -1)
        uv = out["primitive_uvs"].numpy()
        uv[~hit] = 0.0
        return RayHits(distance, triangle, uv)

    def _cast_embree(self, rays: np.ndarray) -> RayHits:
        out = self._scene.run(np.ascontiguousarray(rays[:, :3]), np.ascontiguousarray(rays[:, 3:]), output=1)
        triangle = out["primID"].astype(np.int64)
        hit = triangle >= 0
        uv = np.stack([out["u"], out["v"]], axis=1).astype(np.float32)
        uv[~hit] = 0.0
        return RayHits(np.where(hit, out["tfar"], np.inf).astype(np.float32), triangle, uv)


def closest_points(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The closest point of the triangle mesh (``vertices`` (V, 3), ``faces`` (F, 3)) to each of ``points`` (N, 3),
    and the triangle it lies on: (N, 3) float64, (N,) int64 (open3d's ``RaycastingScene``)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(vertices, dtype=np.float32)), o3d.core.Tensor(np.asarray(faces, dtype=np.uint32))
    )
    found = scene.compute_closest_points(o3d.core.Tensor(np.asarray(points, dtype=np.float32)))
    return found["points"].numpy().astype(np.float64), found["primitive_ids"].numpy().astype(np.int64)
