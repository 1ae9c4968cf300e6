"""export-mesh's faster parts give what the slower formulations gave: the bake's look-ups and facing test,
the texture PNG encoded once."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy import ndimage

from nerf import texture
from nerf.surface import View
from portrait3d.cameras import orbit


def test_grid_sample_lookups_match_the_numpy_bilinear_inside_and_past_the_border():
    rng = np.random.default_rng(0)
    image = rng.random((37, 53, 4), dtype=np.float32)
    # Pixel positions over the whole image and a few pixels past each border (clamped to the edge pixels).
    xy = rng.uniform([-3.0, -3.0], [56.0, 40.0], size=(20_000, 2)).astype(np.float32)
    fast, slow = texture._bilinear(image, xy), texture._bilinear_numpy(image, xy)
    assert fast.shape == (20_000, 4) and fast.flags.c_contiguous
    np.testing.assert_allclose(fast, slow, atol=1e-5)  # float32 rounding; a colour level is 4e-3
    # At pixel centres the look-up is the pixel itself.
    centres = np.array([[0.5, 0.5], [52.5, 36.5], [10.5, 20.5]], dtype=np.float32)
    np.testing.assert_allclose(texture._bilinear(image, centres), image[[0, 36, 20], [0, 52, 10]], atol=1e-5)


def _reference_view_samples(view: View, points: np.ndarray, normals: np.ndarray, depth_map, tolerance: float):
    """The bake's facing, projection and depth test as they were written before (float64, (M, 3) temporaries)."""
    h, w = view.image.shape[:2]
    cam = view.camera
    to_camera = cam.position - points
    cos = np.sum(normals * to_camera, axis=1) / np.linalg.norm(to_camera, axis=1)
    idx = np.flatnonzero(cos > 0.05)
    uv, depth = cam.project(points[idx], w, h)
    keep = (depth > 0) & np.all((uv >= 0) & (uv < [w, h]), axis=1)
    idx, uv, depth = idx[keep], uv[keep], depth[keep]
    px = np.clip(uv.astype(np.int64), 0, [w - 1, h - 1])
    visible = np.abs(depth_map[px[:, 1], px[:, 0]] - depth) < tolerance
    return idx[visible], uv[visible], cos[idx[visible]]


def test_facing_test_from_matrix_vector_products_keeps_the_same_texels():
    from portrait3d.render import MeshRenderer

    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.25)
    rng = np.random.default_rng(1)
    face = rng.integers(0, len(sphere.faces), 50_000)
    bary = rng.dirichlet([1.0, 1.0, 1.0], 50_000)
    points = np.einsum("nk,nkd->nd", bary, sphere.vertices[sphere.faces[face]])
    normals = points / np.linalg.norm(points, axis=1, keepdims=True)
    renderer = MeshRenderer(sphere)
    frame = texture._TexelFrame.of(points, normals)
    for camera in orbit(4, radius=2.7):
        view = View(np.zeros((96, 128, 4), np.uint8), camera)
        depth_map = renderer.render_depth(camera, (128, 96))
        idx, uv, cos = texture._view_samples_of(view, frame, depth_map, 0.01)
        ref_idx, ref_uv, ref_cos = _reference_view_samples(view, points, normals, depth_map, 0.01)
        # A texel exactly at the facing cut or the depth tolerance may go either way in float32.
        assert len(np.setxor1d(idx, ref_idx)) <= 1e-3 * len(ref_idx)
        common, here, there = np.intersect1d(idx, ref_idx, return_indices=True)
        assert len(common) > 5_000
        np.testing.assert_allclose(uv[here], ref_uv[there], atol=2e-3)
        np.testing.assert_allclose(cos[here], ref_cos[there], atol=1e-5)


def test_a_part_of_the_texel_frame_is_a_view_not_a_copy():
    """The bake walks millions of texels a chunk at a time; a copied chunk per view cost 1.3 s of a 2048² bake."""
    rng = np.random.default_rng(0)
    frame = texture._TexelFrame.of(rng.normal(size=(1000, 3)), rng.normal(size=(1000, 3)))
    part = frame.part(100, 300)
    assert len(part) == 200
    for name in ("points", "normals", "normal_dot_point", "point_sq"):
        whole, piece = getattr(frame, name), getattr(part, name)
        assert np.shares_memory(whole, piece) and np.array_equal(piece, whole[100:300])


def test_lod0_texture_is_encoded_once_for_the_glb_and_the_obj(tmp_path, monkeypatch):
    from PIL import Image
    from scene_views import write_views

    from nerf import export
    from nerf.analytic import MeshField, coloured_ellipsoid
    from nerf.mesh import BakeConfig, MeshConfig
    from portrait3d import glb
    from portrait3d.run import Run

    encoded = []
    save = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", lambda image, *a, **k: encoded.append(image.size) or save(image, *a, **k))
    truth = coloured_ellipsoid(subdivisions=3)
    run = Run(tmp_path / "run")
    write_views(run, truth, size=64)
    config = export.ExportConfig(
        mesh=MeshConfig(resolution=32, threshold=50.0, triangles=1500), bake=BakeConfig(texture_size=128)
    )
    encoded.clear()  # the views' PNGs
    export.export_mesh(run, config, field_model=MeshField(truth))
    assert encoded == [(128, 128)]  # one PNG encoding of the 128² texture
    document, binary = glb.unpack(run.path("mesh", "head.glb").read_bytes())
    view = document["bufferViews"][document["images"][0]["bufferView"]]
    png = binary[view["byteOffset"] : view["byteOffset"] + view["byteLength"]]
    assert png == run.path("mesh", "head_texture.png").read_bytes()
    assert png.startswith(b"\x89PNG")


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])


def _reference_rasterize_uv(uvmesh, size: int):
    """rasterize_uv as it was written before: float64 ray stack, (M, 3, C) products."""
    import open3d as o3d

    flat = np.concatenate([uvmesh.uv, np.zeros((len(uvmesh.uv), 1))], axis=1).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(flat), o3d.core.Tensor(uvmesh.faces.astype(np.uint32)))
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    u, v = (cols + 0.5) / size, 1.0 - (rows + 0.5) / size
    rays = np.stack([u, v, np.ones_like(u), np.zeros_like(u), np.zeros_like(u), -np.ones_like(u)], axis=-1)
    hit = scene.cast_rays(o3d.core.Tensor(rays.reshape(-1, 6).astype(np.float32)))
    covered = np.isfinite(hit["t_hit"].numpy())
    tri = hit["primitive_ids"].numpy().astype(np.int64)[covered]
    bary_uv = hit["primitive_uvs"].numpy()[covered].astype(np.float64)
    bary = np.stack([1.0 - bary_uv[:, 0] - bary_uv[:, 1], bary_uv[:, 0], bary_uv[:, 1]], axis=-1)[..., None]
    corners = uvmesh.faces[tri]
    points = (uvmesh.vertices[corners] * bary).sum(axis=1)
    normals = texture.unit_rows((uvmesh.normals[corners] * bary).sum(axis=1))
    return rows.ravel()[covered], cols.ravel()[covered], points, normals, covered.reshape(size, size), tri, bary[..., 0]


def test_uv_rasterisation_gives_the_same_bits_as_the_stacked_formulation():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.25)
    uvmesh = texture.unwrap(sphere, 256, 2, workers=False)
    texels = texture.rasterize_uv(uvmesh, 256)
    reference = _reference_rasterize_uv(uvmesh, 256)
    names = ("rows", "cols", "points", "normals", "covered", "faces", "barycentric")
    assert texels.covered.mean() > 0.3
    for name, expected in zip(names, reference):
        value = getattr(texels, name)
        assert value.dtype == expected.dtype and np.array_equal(value, expected), name


@pytest.mark.parametrize("threads", [1, 3])
def test_depth_fusion_in_slabs_gives_the_grid_of_one_pass(threads, monkeypatch):
    """The fused grid, with its x slabs in ``threads`` threads, against every point fused in one pass."""
    from nerf import surface
    from portrait3d import parallel
    from portrait3d.render import MeshRenderer

    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.25)
    renderer = MeshRenderer(sphere)
    cameras = orbit(6, pitches=[-20.0, 20.0])
    depths = [renderer.render_depth(cam, 48).astype(np.float32) for cam in cameras]
    masks = [np.isfinite(d) for d in depths]
    bounds, resolution = (-0.4,) * 3 + (0.4,) * 3, 40
    monkeypatch.setattr(parallel, "thread_count", lambda: threads)
    grid = surface.fuse_depth_maps(depths, masks, cameras, bounds, resolution, 0.05)
    axes = [np.linspace(-0.4, 0.4, resolution + 1, dtype=np.float32)] * 3
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    gaps = [ndimage.distance_transform_edt(~m) for m in masks]
    one_pass = surface._fuse_points(points, list(zip(depths, masks, gaps, cameras)), 0.05)
    assert np.array_equal(grid.ravel(), one_pass)
    assert (grid > 0).any() and (grid < 0).any()


def test_two_exports_of_one_field_give_the_same_bytes(tmp_path):
    """Fusion slabs in threads, grid_sample look-ups, the shared PNG: still the same files every time."""
    from scene_views import write_views

    from nerf import export
    from nerf.analytic import MeshField, coloured_ellipsoid
    from nerf.mesh import BakeConfig, MeshConfig
    from portrait3d.run import Run

    truth = coloured_ellipsoid(subdivisions=3)
    field = MeshField(truth)
    depth_config = MeshConfig(resolution=32, triangles=1500, depth_size=48, depth_views=8)
    config = export.ExportConfig(mesh=depth_config, bake=BakeConfig(texture_size=128))
    runs = []
    for name in ("a", "b"):
        run = Run(tmp_path / name)
        write_views(run, truth, size=64)
        info = export.export_mesh(run, config, field_model=field)
        runs.append((run, info))
    assert runs[0][1]["surface"] == "depth"
    for rel in export.output_files(config):
        assert runs[0][0].path(rel).read_bytes() == runs[1][0].path(rel).read_bytes(), rel


def test_depth_maps_in_threads_are_those_of_one_thread(monkeypatch):
    """The field's depth maps are rendered a few views at a time, each on one torch thread: the same maps, in the
    views' order, and torch's thread count is given back."""
    import torch

    from nerf import surface
    from nerf.mesh import MeshConfig
    from portrait3d import parallel
    from portrait3d.render import MeshRenderer

    ellipsoid = trimesh.creation.icosphere(subdivisions=4, radius=0.25)
    ellipsoid.vertices *= [1.0, 1.3, 0.8]
    renderer = MeshRenderer(ellipsoid)
    views = [View(renderer.render_rgba(cam, 32), cam) for cam in orbit(6)]

    def depth_fn(camera, width, height, pixels):
        assert torch.get_num_threads() == (1 if parallel.thread_count() > 1 else before)
        return np.where(pixels, renderer.render_depth(camera, width), np.inf)

    before = torch.get_num_threads()
    config = MeshConfig(depth_size=32, depth_views=6)
    results = []
    for threads in (1, 3):
        monkeypatch.setattr(parallel, "thread_count", lambda threads=threads: threads)
        results.append(surface.depth_maps(depth_fn, views, config))
        assert torch.get_num_threads() == before
    (one, masks_one, cams_one), (three, masks_three, cams_three) = results
    assert len(one) == 6 and cams_one == cams_three
    for a, b, ma, mb in zip(one, three, masks_one, masks_three):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ma, mb)
    assert np.isfinite(one[0]).any() and not np.array_equal(one[0], one[1])
