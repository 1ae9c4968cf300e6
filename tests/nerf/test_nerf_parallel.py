"""Per-view and per-frame work in threads (portrait3d.parallel, as the bake and the turntable use it): results in
order, the same as one thread's."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from nerf import mesh as meshing
from nerf.analytic import coloured_ellipsoid
from nerf.turntable import TurntableConfig, render_frames
from portrait3d import parallel
from portrait3d.cameras import orbit
from portrait3d.render import MeshRenderer


def test_ordered_map_keeps_the_order_and_uses_threads():
    seen_threads = set()

    def slow_square(x: int) -> int:
        seen_threads.add(threading.get_ident())
        time.sleep(0.01 * ((7 * x) % 5))  # later items often finish first
        return x * x

    assert list(parallel.ordered_map(slow_square, range(20), threads=3)) == [x * x for x in range(20)]
    assert len(seen_threads) > 1
    seen_threads.clear()
    assert list(parallel.ordered_map(slow_square, range(5), threads=1)) == [0, 1, 4, 9, 16]
    assert seen_threads == {threading.get_ident()}


def test_work_in_a_worker_or_beside_another_stage_gets_one_thread():
    assert parallel.thread_count() >= 1
    inside = list(parallel.ordered_map(lambda _: parallel.thread_count(), range(4), threads=2))
    assert inside == [1, 1, 1, 1]
    with parallel.limited_threads(1):
        assert parallel.thread_count() == 1
        with parallel.limited_threads(3):
            assert 1 <= parallel.thread_count() <= 3
        assert parallel.thread_count() == 1


def test_ordered_map_bounds_the_waiting_results():
    started = []

    def record(x: int) -> int:
        started.append(x)
        return x

    results = parallel.ordered_map(record, range(100), threads=2)
    assert next(results) == 0
    time.sleep(0.05)
    assert len(started) <= 2 + 1  # not all 100 submitted ahead of the consumer: one per thread
    assert list(results) == list(range(1, 100))


@pytest.fixture(scope="module")
def ellipsoid_views():
    truth = coloured_ellipsoid(subdivisions=4)
    renderer = MeshRenderer(truth)
    views = [meshing.View(renderer.render_rgba(cam, 96), cam) for cam in orbit(6, pitches=[-30.0, 30.0])]
    uvmesh = meshing.unwrap(truth, 128, padding=2)
    return truth, uvmesh, meshing.rasterize_uv(uvmesh, 128), views


def test_bake_in_threads_equals_the_serial_bake(ellipsoid_views, monkeypatch):
    _, uvmesh, texels, views = ellipsoid_views
    monkeypatch.setattr(parallel, "thread_count", lambda: 3)
    threaded = meshing.bake_from_views(uvmesh, texels, views, meshing.BakeConfig(texture_size=128, threads=0))
    serial = meshing.bake_from_views(uvmesh, texels, views, meshing.BakeConfig(texture_size=128, threads=1))
    assert np.array_equal(threaded[0], serial[0]) and np.array_equal(threaded[1], serial[1])
    assert (serial[1] > 0).mean() > 0.9  # the views did see the surface


def test_turntable_frames_in_threads_equal_the_serial_frames(ellipsoid_views):
    truth = ellipsoid_views[0]
    config = TurntableConfig(frames=6, size=64)
    threaded = list(render_frames(truth, config, threads=3))
    serial = list(render_frames(truth, config, threads=1))
    assert len(threaded) == 6
    for a, b in zip(threaded, serial):
        assert np.array_equal(a, b)
    assert not np.array_equal(serial[0], serial[3])  # frames differ: the head turns
    assert (serial[0] != 255).any()  # the head is in the frame
