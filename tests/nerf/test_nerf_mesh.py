"""Mesh extraction, clean-up, texture baking and the geometry metrics against analytic answers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import trimesh

from nerf import mesh as meshing
from nerf.analytic import MeshField, coloured_ellipsoid
from nerf.metrics import chamfer_fscore, psnr, ssim
from portrait3d.cameras import orbit
from portrait3d.render import MeshRenderer


def _sphere_density(radius: float, centre=(0.0, 0.0, 0.0), peak: float = 100.0, softness: float = 0.01):
    def density(points: np.ndarray) -> np.ndarray:
        sdf = np.linalg.norm(points - np.asarray(centre), axis=1) - radius
        return peak / (1.0 + np.exp(np.clip(sdf / softness, -60, 60)))

    return density


# --- metrics ---------------------------------------------------------------------------
def test_chamfer_of_identical_meshes_is_zero():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.3)
    scores = chamfer_fscore(sphere, sphere, samples=20_000)
    assert scores["chamfer_pct_diag"] < 1e-4
    assert scores["fscore"] == 1.0


@pytest.mark.parametrize("gap_pct, fscore", [(0.5, 1.0), (2.0, 0.0)])
def test_chamfer_of_concentric_spheres_matches_the_gap(gap_pct, fscore):
    # Every point of one sphere is exactly `gap` from the other: Chamfer = gap / diagonal of the GT box.
    outer_radius = 0.3
    diagonal = 2.0 * outer_radius * math.sqrt(3.0)
    gap = gap_pct / 100.0 * diagonal
    inner = trimesh.creation.icosphere(subdivisions=6, radius=outer_radius - gap)
    outer = trimesh.creation.icosphere(subdivisions=6, radius=outer_radius)
    scores = chamfer_fscore(inner, outer, threshold=0.01, samples=20_000)
    assert scores["diagonal"] == pytest.approx(diagonal, rel=1e-6)
    assert scores["chamfer_pct_diag"] == pytest.approx(gap_pct, rel=0.02)
    assert scores["fscore"] == fscore


def test_psnr_and_ssim():
    rng = np.random.default_rng(0)
    a = rng.random((32, 32, 3))
    noisy = np.clip(a + 0.01 * rng.standard_normal(a.shape), 0, 1)
    assert psnr(a, a) == float("inf")
    assert psnr(noisy, a) == pytest.approx(40.0, abs=0.5)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(noisy, a) < 1.0


# --- geometry --------------------------------------------------------------------------
def test_extracted_sphere_lies_on_the_true_surface():
    radius = 0.25
    mesh = meshing.extract_mesh(_sphere_density(radius), (-0.4,) * 3 + (0.4,) * 3, resolution=64, threshold=50.0)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.02)  # positive: normals point out
    truth = trimesh.creation.icosphere(subdivisions=6, radius=radius)
    scores = chamfer_fscore(mesh, truth, samples=20_000)
    assert scores["chamfer_pct_diag"] < 0.1
    assert scores["fscore"] > 0.99


def test_surface_pipeline_keeps_the_head_and_meets_the_budget():
    head, floater = _sphere_density(0.25), _sphere_density(0.04, centre=(0.45, 0.45, 0.0))

    def density(points):
        return np.maximum(head(points), floater(points))

    config = meshing.MeshConfig(resolution=64, threshold=50.0, triangles=2000, bounds=(-0.55,) * 3 + (0.55,) * 3)
    mesh, threshold = meshing.surface_from_field(density, config)
    assert threshold == 50.0
    assert len(mesh.split(only_watertight=False)) == 1
    assert len(mesh.faces) <= 2000
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - 0.25).max() < 0.01
    assert mesh.is_watertight


def test_threshold_is_chosen_from_the_view_masks():
    # A density that falls off slowly: only the views say where the surface is (radius 0.25 at 1000 e^-5).
    def density(points):
        return 1000.0 * np.exp(-np.linalg.norm(points, axis=1) / 0.05)

    truth = trimesh.creation.icosphere(subdivisions=5, radius=0.25)
    truth.visual.vertex_colors = np.full((len(truth.vertices), 4), 200, dtype=np.uint8)
    renderer = MeshRenderer(truth)
    views = [meshing.View(renderer.render_rgba(cam, 128), cam) for cam in orbit(6, pitches=[-20.0, 40.0])]
    config = meshing.MeshConfig(resolution=64, triangles=5000, bounds=(-0.4,) * 3 + (0.4,) * 3)
    mesh, threshold = meshing.surface_from_field(density, config, views)
    assert threshold == pytest.approx(1000.0 * math.exp(-5.0), rel=0.25)
    assert chamfer_fscore(mesh, truth, samples=10_000)["chamfer_pct_diag"] < 0.5
    # Without views (or without masks) the fixed default applies.
    assert meshing.surface_from_field(density, config)[1] == meshing.DEFAULT_THRESHOLD


def test_depth_fusion_keeps_only_what_the_views_see():
    """Inner walls that no view sees (the inside of a fitted head) are gone with depth fusion, not with density."""
    radius = 0.25
    truth = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    truth.visual.vertex_colors = np.full((len(truth.vertices), 4), 200, dtype=np.uint8)
    renderer = MeshRenderer(truth)
    views = [meshing.View(renderer.render_rgba(cam, 96), cam) for cam in orbit(8, pitches=[-30.0, 30.0])]
    shell = _sphere_density(radius)

    def density(points):
        # Like a fitted head: a shell with a slit no view saw, a hollow core and a wall inside it.
        wall = np.where(np.abs(points[:, 1]) < 0.02, 100.0, 0.0)
        core = np.linalg.norm(points, axis=1) < radius - 0.05
        slit = (points[:, 0] > 0) & (np.abs(points[:, 2]) < 0.03)
        return np.where(core, wall, np.where(slit, 0.0, shell(points)))

    def depth(camera, width, height, pixels):
        out = renderer.render_depth(camera, (width, height)).astype(np.float32)
        out[~pixels] = np.inf
        return out

    config = meshing.MeshConfig(resolution=64, triangles=5000, bounds=(-0.4,) * 3 + (0.4,) * 3, depth_size=96)
    fused, threshold = meshing.surface_from_field(density, config, views, depth)
    assert threshold is None
    assert fused.is_watertight
    assert fused.area == pytest.approx(truth.area, rel=0.03)
    assert chamfer_fscore(fused, truth, samples=10_000)["chamfer_pct_diag"] < 0.5  # measured 0.33 (cell: 1.4 %)

    # A field transparent where the views show the head (an unconverged fit) falls back to the density.
    def no_depth(camera, width, height, pixels):
        return np.full((height, width), np.inf, dtype=np.float32)

    assert meshing.surface_from_field(shell, config, views, no_depth)[1] is not None
    # The density iso-surface of the same field keeps the inside of the shell (the slit stops the filling).
    iso, _ = meshing.surface_from_field(density, dataclasses.replace(config, surface="density", threshold=50.0), views)
    assert iso.area > 1.3 * truth.area


def test_fuse_depth_maps_signs():
    # One camera looking down -z at a plane at z = 0 covering the image: in front is outside, behind inside.
    camera = orbit(1)[0]
    depth = np.full((32, 32), float(np.linalg.norm(camera.position)), dtype=np.float32)
    grid = meshing.fuse_depth_maps([depth], [np.ones((32, 32), bool)], [camera], (-0.1,) * 3 + (0.1,) * 3, 4, 0.05)
    along_z = grid[2, 2, :]  # the points (0, 0, z) for z = -0.1 .. 0.1, toward the camera
    np.testing.assert_allclose(along_z, [1.0, 1.0, 0.0, -1.0, -1.0], atol=1e-5)
    # A background mask makes everything it covers outside; unseen points are outside too.
    empty = meshing.fuse_depth_maps([depth], [np.zeros((32, 32), bool)], [camera], (-0.1,) * 3 + (0.1,) * 3, 4, 0.05)
    assert (empty == -1.0).all()


def test_no_surface_raises():
    with pytest.raises(ValueError, match="no density above"):
        meshing.extract_mesh(lambda p: np.zeros(len(p)), resolution=16, threshold=1.0)


def test_close_small_holes_including_touching_ones():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    # Faces 0 and 1 share one vertex only: two holes that touch there.
    for removed in ([0], [0, 1], list(range(40))):
        keep = np.setdiff1d(np.arange(len(sphere.faces)), removed)
        holed = trimesh.Trimesh(sphere.vertices, sphere.faces[keep])
        assert not holed.is_watertight
        closed = meshing.close_small_holes(holed, max_edges=64)
        assert closed.is_watertight
        assert closed.volume == pytest.approx(sphere.volume, rel=0.01)
    big = trimesh.Trimesh(sphere.vertices, sphere.faces[np.setdiff1d(np.arange(len(sphere.faces)), range(40))])
    assert not meshing.close_small_holes(big, max_edges=8).is_watertight


# --- texture -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ellipsoid_bake():
    """The coloured ellipsoid, unwrapped, with views rendered around it."""
    truth = coloured_ellipsoid(subdivisions=4)
    renderer = MeshRenderer(truth)
    views = [meshing.View(renderer.render_rgba(cam, 128), cam) for cam in orbit(8, pitches=[-30.0, 30.0])]
    uvmesh = meshing.unwrap(truth, 256, padding=2)
    texels = meshing.rasterize_uv(uvmesh, 256)
    return truth, uvmesh, texels, views


def _expected_colour(points: np.ndarray) -> np.ndarray:
    """The ellipsoid's colour rule (red +x, green +y, blue +z) at points on it."""
    unit = points / np.asarray([0.22, 0.28, 0.25])
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    return 0.5 + 0.5 * unit


def test_bake_holds_against_inconsistent_views(ellipsoid_bake):
    """An exposure-shifted view and a plainly wrong one: the calibrated per-region bake stays close to the
    truth, and closer than an average of the views would."""
    _, uvmesh, texels, views = ellipsoid_bake
    bad = list(views)
    image = bad[3].image.astype(np.float64)
    image[..., :3] *= 1.35  # over-exposed
    bad[3] = meshing.View(np.clip(image, 0, 255).astype(np.uint8), bad[3].camera)
    wrong = bad[9].image.copy()
    wrong[..., :3] = 255 - wrong[..., :3]  # the wrong colours entirely
    bad[9] = meshing.View(wrong, bad[9].camera)
    config = meshing.BakeConfig(texture_size=256)
    colours, weight = meshing.bake_from_views(uvmesh, texels, bad, config)
    averaged, _ = meshing.bake_from_views(
        uvmesh, texels, bad, dataclasses.replace(config, selection_power=config.angle_power), calibrate=False
    )
    seen = weight > config.min_weight
    truth = _expected_colour(texels.points[seen])
    err, err_avg = np.abs(colours[seen] - truth), np.abs(averaged[seen] - truth)
    assert np.percentile(err, 95) < 0.1, np.percentile(err, 95)
    assert np.mean(err) < 0.5 * np.mean(err_avg), (np.mean(err), np.mean(err_avg))


def test_uv_rasterisation_covers_the_charts(ellipsoid_bake):
    truth, uvmesh, texels, _ = ellipsoid_bake
    assert 0.4 < texels.covered.mean() < 0.95
    assert np.abs(truth.nearest.signed_distance(texels.points[::50])).max() < 1e-3
    assert np.all(np.sum(texels.normals * texels.points, axis=1) > 0)  # outward on a convex body
    assert uvmesh.uv.min() >= 0.0 and uvmesh.uv.max() <= 1.0


def test_bake_from_views_reproduces_the_colours_where_expected(ellipsoid_bake):
    _, uvmesh, texels, views = ellipsoid_bake
    colours, weight = meshing.bake_from_views(uvmesh, texels, views, meshing.BakeConfig(texture_size=256))
    seen = weight > 0
    assert seen.mean() > 0.95
    err = np.abs(colours[seen] - _expected_colour(texels.points[seen]))
    assert np.median(err) < 0.02 and np.percentile(err, 95) < 0.08
    # The texture image puts each colour where the UVs point: sample it back at the texel centres.
    texture = meshing.assemble_texture(texels, colours, seen)
    from portrait3d.render import sample_texture

    u = (texels.cols + 0.5) / 256
    v = 1.0 - (texels.rows + 0.5) / 256
    back = sample_texture(texture, np.stack([u, v], axis=1))
    assert np.median(np.abs(back - _expected_colour(texels.points))) < 0.03


def test_bake_from_field_reproduces_the_colours(ellipsoid_bake):
    truth, _, texels, _ = ellipsoid_bake
    field = MeshField(truth)
    colours = meshing.bake_from_field(texels, field.rgb)
    assert np.median(np.abs(colours - _expected_colour(texels.points))) < 0.02


def test_vertex_colours_average_uv_copies(ellipsoid_bake):
    truth, uvmesh, texels, _ = ellipsoid_bake
    texture = meshing.assemble_texture(texels, _expected_colour(texels.points))
    rgba = meshing.vertex_colours(uvmesh, texture, len(truth.vertices))
    assert rgba.shape == (len(truth.vertices), 4) and rgba.dtype == np.uint8
    expected = _expected_colour(np.asarray(truth.vertices)) * 255
    assert np.median(np.abs(rgba[:, :3] - expected)) < 6


def test_fill_cavities_removes_inner_shells():
    from nerf.mesh import fill_cavities, mesh_from_grid

    axis = np.linspace(-1, 1, 48)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    grid = np.where(r < 0.8, 100.0, 0.0)
    grid[r < 0.4] = 0.0  # an empty pocket inside: marching cubes would find a second, inner shell
    bounds = (-1, -1, -1, 1, 1, 1)
    assert mesh_from_grid(grid, bounds, 50.0).split(only_watertight=False).__len__() == 2
    filled = fill_cavities(grid, 50.0)
    assert len(mesh_from_grid(filled, bounds, 50.0).split(only_watertight=False)) == 1
    np.testing.assert_array_equal(fill_cavities(filled, 50.0), filled)  # nothing left to fill


def test_fill_cavities_closes_a_hollow_head_open_at_the_neck():
    from nerf.mesh import fill_cavities, mesh_from_grid

    axis = np.linspace(-1, 1, 48)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    neck = (np.sqrt(x**2 + z**2) < 0.3) & (y < 0)
    grid = np.where((r < 0.8) | neck, 100.0, 0.0)
    hollow = (r < 0.6) | ((np.sqrt(x**2 + z**2) < 0.2) & (y < 0))  # an inner wall, open at the bottom
    grid[hollow] = 0.0
    bounds = (-1, -1, -1, 1, 1, 1)
    filled = fill_cavities(grid, 50.0)
    assert filled[24, 24, 24] > 50 and filled[24, 5, 24] > 50  # the centre and the neck's bore are solid
    outer = mesh_from_grid(filled, bounds, 50.0)
    assert np.linalg.norm(outer.vertices, axis=1).min() > 0.25  # no inner wall left
