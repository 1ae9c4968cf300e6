"""UV charts of the two halves in two processes (nerf.charts): the same atlas as charted here, one valid atlas."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from nerf import charts
from nerf.texture import rasterize_uv, unwrap

SIZE = 256


@pytest.fixture(scope="module")
def head_like():
    """An ellipsoid with a bump (a nose), over SPLIT_MIN_FACES triangles, so that it is charted in halves."""
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    vertices = mesh.vertices * [0.22, 0.28, 0.25]
    vertices[:, 2] += 0.05 * np.exp(-((vertices[:, 0] / 0.04) ** 2 + (vertices[:, 1] / 0.06) ** 2))
    mesh = trimesh.Trimesh(vertices, mesh.faces, process=False)
    assert len(mesh.faces) >= charts.SPLIT_MIN_FACES
    return mesh


@pytest.fixture(scope="module")
def unwrapped(head_like):
    return unwrap(head_like, SIZE, padding=2, workers=True), unwrap(head_like, SIZE, padding=2, workers=False)


def test_worker_process_gives_the_serial_atlas(unwrapped):
    parallel, serial = unwrapped
    for name in ("vertices", "faces", "uv", "normals", "source_vertex"):
        assert np.array_equal(getattr(parallel, name), getattr(serial, name)), name


def test_halves_pack_into_one_valid_atlas(head_like, unwrapped):
    uvmesh, _ = unwrapped
    # Every source triangle is there once, on its own vertices.
    assert len(uvmesh.faces) == len(head_like.faces)
    source = np.sort(np.sort(uvmesh.source_vertex[uvmesh.faces], axis=1), axis=0)
    assert np.array_equal(source, np.sort(np.sort(head_like.faces, axis=1), axis=0))
    assert np.allclose(uvmesh.vertices, head_like.vertices[uvmesh.source_vertex])
    assert uvmesh.uv.min() >= 0.0 and uvmesh.uv.max() <= 1.0
    # Charts do not overlap: the texels they cover add up to their UV area (overlaps would cover less).
    corners = uvmesh.uv[uvmesh.faces] * SIZE
    edges = corners[:, 1:] - corners[:, :1]
    uv_area = 0.5 * np.abs(edges[:, 0, 0] * edges[:, 1, 1] - edges[:, 0, 1] * edges[:, 1, 0]).sum()
    covered = rasterize_uv(uvmesh, SIZE).covered.sum()
    assert covered == pytest.approx(uv_area, rel=0.03)
    assert uv_area / SIZE**2 > 0.4  # a reasonably full atlas


def test_the_mid_plane_cut_is_a_seam(head_like):
    halves = charts.split_halves(np.asarray(head_like.vertices), np.asarray(head_like.faces))
    assert np.array_equal(np.sort(np.concatenate(halves)), np.arange(len(head_like.faces)))
    assert 0.4 < len(halves[0]) / len(head_like.faces) < 0.6
    vmapping, faces, _ = charts.unwrap_charts(head_like.vertices, head_like.faces, SIZE, 2, workers=False)
    # No split vertex is used by triangles of both halves: the halves are charted apart.
    centres = np.asarray(head_like.vertices)[vmapping[faces]].mean(axis=1)[:, 0]
    left = centres < np.median(centres)
    assert not np.intersect1d(faces[left].ravel(), faces[~left].ravel()).size


def test_one_half_is_charted_in_the_worker(head_like, monkeypatch):
    calls = []
    chart_here = charts.chart_mesh
    monkeypatch.setattr(charts, "chart_mesh", lambda *mesh: calls.append(len(mesh[1])) or chart_here(*mesh))
    charts.unwrap_charts(head_like.vertices, head_like.faces, SIZE, 2, workers=True)
    assert len(calls) == 1  # the other half came back from `python -m nerf.charts`
    calls.clear()
    charts.unwrap_charts(head_like.vertices, head_like.faces, SIZE, 2, workers=False)
    assert len(calls) == 2


def test_a_worker_that_cannot_start_is_charted_here(head_like, monkeypatch):
    serial = charts.unwrap_charts(head_like.vertices, head_like.faces, SIZE, 2, workers=False)
    monkeypatch.setattr(charts.sys, "executable", "/nonexistent/python")
    fallback = charts.unwrap_charts(head_like.vertices, head_like.faces, SIZE, 2, workers=True)
    assert all(np.array_equal(a, b) for a, b in zip(fallback, serial))


def test_charts_are_made_at_the_lower_chart_cost_and_keep_the_stretch(head_like, monkeypatch):
    """chart_mesh asks xatlas for CHART_MAX_COST (a quarter of its default: about 3.7x faster on the sample's LOD 0);
    the charts stay nearly isometric: each triangle's texel density within 15 % of the mesh's for 90 % of them."""
    import xatlas

    asked = []
    generate = xatlas.Atlas.generate

    class Recording(xatlas.Atlas):
        def generate(self, chart_options=None, **kwargs):
            asked.append(None if chart_options is None else chart_options.max_cost)
            return generate(self, chart_options=chart_options, **kwargs)

    monkeypatch.setattr(xatlas, "Atlas", Recording)
    vertices, faces = np.asarray(head_like.vertices), np.asarray(head_like.faces)
    vmapping, split_faces, uv = charts.chart_mesh(vertices, faces)
    assert asked == [pytest.approx(charts.CHART_MAX_COST)] and charts.CHART_MAX_COST < 2.0  # xatlas's default: 2
    corners, flat = vertices[vmapping][split_faces], uv[split_faces]
    area_3d = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    e1, e2 = flat[:, 1] - flat[:, 0], flat[:, 2] - flat[:, 0]
    area_uv = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    # chart_mesh's UVs are in world units: the density ratio is 1 where a triangle keeps its size.
    ratio = np.sqrt(area_uv / area_3d)
    assert np.percentile(ratio, 5) > 0.85 and np.percentile(ratio, 95) < 1.15
