"""Ray casting: the two engines give the same hits, and casting from threads gives the same hits as one thread."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from portrait3d.cameras import orbit
from portrait3d.raycast import ENGINES, RayCaster, default_engine
from portrait3d.render import MeshRenderer

embreex = pytest.importorskip("embreex", reason="the embree engine needs embreex (x86-64)")


def _rays(count: int, seed: int = 0) -> np.ndarray:
    """(N, 6) rays from a shell around the unit sphere towards points near its centre, some missing it."""
    rng = np.random.default_rng(seed)
    origins = rng.normal(size=(count, 3))
    origins *= 3.0 / np.linalg.norm(origins, axis=1, keepdims=True)
    targets = rng.uniform(-1.3, 1.3, size=(count, 3))
    return np.concatenate([origins, targets - origins], axis=1).astype(np.float32)


def _bumpy_sphere() -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=4)
    rng = np.random.default_rng(1)
    mesh.vertices *= 1.0 + 0.05 * rng.uniform(-1, 1, size=(len(mesh.vertices), 1))
    return mesh


def test_the_engines_give_the_same_hits():
    mesh, rays = _bumpy_sphere(), _rays(20_000)
    embree, open3d = (RayCaster(mesh.vertices, mesh.faces, engine).cast(rays) for engine in ENGINES)
    hit = embree.triangle >= 0
    assert 0.3 < hit.mean() < 0.95  # both hits and misses
    np.testing.assert_array_equal(embree.triangle, open3d.triangle)
    assert np.all(np.isinf(embree.distance[~hit])) and np.all(np.isinf(open3d.distance[~hit]))
    np.testing.assert_allclose(embree.distance[hit], open3d.distance[hit], atol=1e-5)
    np.testing.assert_allclose(embree.uv[hit], open3d.uv[hit], atol=1e-5)
    # The hit point from the triangle and its barycentric coordinates lies on the ray.
    corners = mesh.vertices[mesh.faces[embree.triangle[hit]]]
    u, v = embree.uv[hit, :1], embree.uv[hit, 1:]
    on_triangle = (1 - u - v) * corners[:, 0] + u * corners[:, 1] + v * corners[:, 2]
    on_ray = rays[hit, :3] + embree.distance[hit, None] * rays[hit, 3:]
    np.testing.assert_allclose(on_triangle, on_ray, atol=1e-4)


def test_casts_from_threads_equal_one_thread():
    from concurrent.futures import ThreadPoolExecutor

    mesh = _bumpy_sphere()
    caster = RayCaster(mesh.vertices, mesh.faces, "embree")
    batches = [_rays(5_000, seed) for seed in range(8)]
    alone = [caster.cast(rays) for rays in batches]
    with ThreadPoolExecutor(4) as pool:
        side_by_side = list(pool.map(caster.cast, batches))
    for a, b in zip(alone, side_by_side):
        np.testing.assert_array_equal(a.triangle, b.triangle)
        np.testing.assert_array_equal(a.distance, b.distance)


def test_a_large_batch_cast_in_parts_equals_one_cast(monkeypatch):
    from portrait3d import parallel, raycast

    mesh, rays = _bumpy_sphere(), _rays(9_001)
    caster = RayCaster(mesh.vertices, mesh.faces, "embree")
    with parallel.limited_threads(1):
        whole = caster.cast(rays)
    monkeypatch.setattr(raycast, "PARALLEL_RAYS", 1000)
    monkeypatch.setattr(parallel, "thread_count", lambda: 3)
    parts = caster.cast(rays)
    for field in ("distance", "triangle", "uv"):
        np.testing.assert_array_equal(getattr(whole, field), getattr(parts, field))
    assert len(parts.triangle) == len(rays)


def test_renders_agree_across_engines():
    mesh = _bumpy_sphere()
    mesh.visual.vertex_colors = (np.abs(mesh.vertex_normals) * 255).astype(np.uint8)
    camera = orbit(4, radius=4.0)[1]
    embree, open3d = (MeshRenderer(mesh, engine) for engine in ENGINES)
    a, b = embree.render_rgba(camera, 96).astype(int), open3d.render_rgba(camera, 96).astype(int)
    assert (a[..., 3] > 0).mean() > 0.05
    np.testing.assert_array_equal(a[..., 3], b[..., 3])
    assert np.abs(a - b).max() <= 1
    shaded = [r.render_shaded(camera, 96).astype(int) for r in (embree, open3d)]
    assert np.abs(shaded[0] - shaded[1]).max() <= 1


def test_default_engine_and_a_wrong_name():
    assert default_engine() == "embree"  # embreex imported above
    mesh = _bumpy_sphere()
    with pytest.raises(ValueError, match="ray engine: choose one of embree, open3d"):
        RayCaster(mesh.vertices, mesh.faces, "optix")
