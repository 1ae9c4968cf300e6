"""The export-mesh and render-turntable stages on a known scene: files, loaders, validator, accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scene_views import write_views

from nerf.analytic import MeshField, coloured_ellipsoid
from nerf.export import ExportConfig, export_mesh, read_glb_json
from nerf.mesh import BakeConfig, MeshConfig, cap_neck
from nerf.metrics import chamfer_fscore, psnr
from nerf.turntable import TurntableConfig, load_head_mesh, render_turntable
from portrait3d import cameras
from portrait3d.errors import UserError
from portrait3d.render import MeshRenderer
from portrait3d.run import Run

REPO = Path(__file__).resolve().parents[2]
SCALE = 0.5
CONFIG = ExportConfig(
    mesh=MeshConfig(resolution=48, threshold=50.0, triangles=3000),
    bake=BakeConfig(texture_size=256),
    metres_per_unit=SCALE,
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A run with views of the coloured ellipsoid, exported from the ellipsoid's own field."""
    truth = coloured_ellipsoid(subdivisions=4)
    run = Run(tmp_path_factory.mktemp("export") / "run")
    write_views(run, truth)
    field = MeshField(truth)
    info = export_mesh(run, CONFIG, field_model=field)
    return run, truth, field, info


def test_export_writes_the_files_with_the_scale(exported):
    run, _, _, info = exported
    for name in info["files"]:
        assert run.path(name).stat().st_size > 0
    assert info["metres_per_unit"] == SCALE and info["units"] == "metres"
    assert info["triangles"] <= 3000 and info["watertight"]
    # 0.44 units wide at 0.5 m per unit.
    assert info["size_m"][0] == pytest.approx(0.44 * SCALE, rel=0.03)
    extras = read_glb_json(run.path("mesh", "head.glb"))["asset"]["extras"]["portrait3d"]
    assert extras["metres_per_unit"] == SCALE and extras["up"] == "+Y"
    assert not list(run.path("mesh").glob(".tmp-*")) and not list(run.root.glob(".tmp-*"))


def test_export_is_skipped_when_up_to_date_and_redone_when_options_change(exported):
    run, _, field, _ = exported
    assert export_mesh(run, CONFIG, field_model=field)["skipped"]
    with pytest.raises(UserError, match="--triangles"):
        export_mesh(run, ExportConfig(mesh=MeshConfig(triangles=10)), field_model=field)


def test_trimesh_loads_all_three_files_in_metres(exported):
    run, truth, _, info = exported
    # The files' origin is the neck cap's centre (on the mid-plane), the cap is CONFIG.neck_cap above the bottom.
    origin = np.asarray(info["origin_source_units"])
    expected = np.array(truth.bounds)
    expected[0, 1] += CONFIG.neck_cap
    expected = (expected - origin) * SCALE
    assert origin[0] == 0.0 and origin[1] == pytest.approx(truth.bounds[0, 1] + CONFIG.neck_cap, abs=1e-3)
    for name, visual in (("head.glb", "texture"), ("head.obj", "texture"), ("head.ply", "vertex")):
        mesh = trimesh.load(run.path("mesh", name), force="mesh")
        np.testing.assert_allclose(mesh.bounds, expected, atol=0.01 * SCALE)
        assert mesh.visual.kind == visual
        assert mesh.bounds[0, 1] == pytest.approx(0.0, abs=1e-6)  # sits on its base
    obj = trimesh.load(run.path("mesh", "head.obj"), force="mesh")
    assert obj.visual.material.image.size == (256, 256)  # the MTL's texture path resolved


def test_open3d_loads_all_three_files(exported):
    o3d = pytest.importorskip("open3d")
    run, _, _, info = exported
    for name in ("head.glb", "head.obj"):
        mesh = o3d.io.read_triangle_mesh(str(run.path("mesh", name)), True)
        assert len(mesh.triangles) == info["triangles"]
        assert mesh.has_triangle_uvs() and mesh.has_textures()
    ply = o3d.io.read_triangle_mesh(str(run.path("mesh", "head.ply")))
    assert len(ply.triangles) == info["triangles"] and ply.has_vertex_colors()
    mtl = run.path("mesh", "head.mtl").read_text()
    texture = next(line.split(maxsplit=1)[1] for line in mtl.splitlines() if line.startswith("map_Kd"))
    assert (run.path("mesh") / texture).is_file()


def test_exported_geometry_and_texture_match_the_truth(exported):
    run, truth, _, _ = exported
    mesh = load_head_mesh(run.path("mesh", "head.glb"))  # back in PanoHead units
    # The export cuts the bottom flat (the neck cap): compare with the truth cut the same way.
    cut_truth, _ = cap_neck(truth, CONFIG.neck_cap)
    scores = chamfer_fscore(mesh, cut_truth, samples=20_000)
    assert scores["chamfer_pct_diag"] < 0.3
    assert scores["fscore"] > 0.99
    # Cameras between the views: the GLB's texture (flipped v in glTF) must land where the truth's colours are.
    for cam in cameras.orbit(3, pitch=10.0):
        got = MeshRenderer(mesh).render_rgba(cam, 96).astype(np.float64) / 255
        want = MeshRenderer(truth).render_rgba(cam, 96).astype(np.float64) / 255
        both = (got[..., 3] > 0) & (want[..., 3] > 0)
        assert psnr(got[..., :3], want[..., :3], both) > 32.0


def test_glb_passes_the_khronos_validator(exported, gltf_validator):
    report, returncode = gltf_validator(exported[0].path("mesh", "head.glb"))
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
    assert report["issues"]["numWarnings"] == 0, report["issues"]["messages"]
    assert returncode == 0


def test_turntable_shows_the_front_first(exported):
    import imageio.v3 as iio

    run = exported[0]
    info = render_turntable(run, TurntableConfig(frames=4, size=64, pitch=0.0))
    frames = iio.imread(run.path(info["file"]))
    assert frames.shape[:3] == (4, 64, 64)
    # Frame 0 looks at the face (+z: blue), frame 1 at yaw 90 (+x: red).
    front, side = frames[0, 32, 32].astype(int), frames[1, 32, 32].astype(int)
    assert front[2] > 200 and front[2] > front[0] + 60
    assert side[0] > 200 and side[0] > side[2] + 60
    assert tuple(frames[0, 0, 0]) == pytest.approx((255, 255, 255), abs=12)  # background


def test_turntable_keeps_a_big_head_inside_every_frame():
    from nerf.turntable import render_frames

    # A head with a big hairdo, off the origin: wider than PanoHead's framing (about +-0.32 at the target).
    big = trimesh.creation.icosphere(subdivisions=3, radius=0.42)
    big.apply_translation([0.05, 0.1, -0.03])
    frames = list(render_frames(big, TurntableConfig(frames=4, size=64, pitch=10.0)))
    for frame in frames:
        covered = np.any(frame < 200, axis=-1)
        border = np.concatenate([covered[0], covered[-1], covered[:, 0], covered[:, -1]])
        assert covered.mean() > 0.3 and not border.any()
    # A head that fits keeps PanoHead's framing: the same pixels as the plain orbit.
    small = trimesh.creation.icosphere(subdivisions=3, radius=0.2)
    frame = next(render_frames(small, TurntableConfig(frames=1, size=64, pitch=0.0)))
    rgba = MeshRenderer(small).render_rgba(cameras.orbit(1)[0], 64)
    assert np.array_equal(np.any(frame < 200, axis=-1), rgba[..., 3] > 127)


def test_missing_inputs_are_one_line_errors(tmp_path):
    run = Run(tmp_path / "empty")
    with pytest.raises(UserError, match="missing nerf"):
        export_mesh(run, CONFIG)
    with pytest.raises(UserError, match="missing mesh/head.glb"):
        render_turntable(run, TurntableConfig())
    with pytest.raises(UserError, match="missing views/cameras.json"):
        export_mesh(run, CONFIG, field_model=MeshField(coloured_ellipsoid(subdivisions=2)))


def _parse(*argv: str):
    import argparse

    from portrait3d.commands.mesh_commands import register_mesh_commands

    parser = argparse.ArgumentParser()
    register_mesh_commands(parser.add_subparsers(), argparse.ArgumentParser(add_help=False))
    return parser.parse_args(argv)


def test_commands_report_bad_runs_and_options(tmp_path):
    run = Run(tmp_path / "run")
    args = _parse("export-mesh", str(run.root))
    # Unset budgets come from the preset (the run's own), a --target's from the target.
    assert (args.target, args.triangles, args.texture, args.texture_source) == (None, None, None, None)
    assert _parse("export-mesh", "r", "--lods", "1,0.5", "--formats", "GLB,fbx").lods == (1.0, 0.5)
    with pytest.raises(UserError, match="missing nerf"):
        args.func(args)
    run.path("nerf").mkdir()
    args = _parse("export-mesh", str(run.root), "--triangles", "5")
    with pytest.raises(UserError, match="--triangles"):
        args.func(args)
    args = _parse("render-turntable", str(run.root), "--frames", "0")
    with pytest.raises(UserError, match="--frames"):
        args.func(args)
    args = _parse("render-turntable", str(tmp_path / "not-a-run"))
    with pytest.raises(UserError, match="not a portrait3d run"):
        args.func(args)


def test_turntable_gif_fallback_writes_frames(exported, tmp_path):
    import imageio.v3 as iio

    from nerf.turntable import write_turntable

    mesh = load_head_mesh(exported[0].path("mesh", "head.glb"))
    path = write_turntable(mesh, tmp_path / "turntable.gif", TurntableConfig(frames=3, size=32))
    assert iio.imread(path).shape[:3] == (3, 32, 32)


def test_cli_missing_nerf_is_a_one_line_error(cli, tmp_path):
    run = Run(tmp_path / "run")
    for command in (["export-mesh", str(run.root)], ["render-turntable", str(run.root)]):
        proc = cli(*command)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "missing" in lines[0] and "Traceback" not in proc.stderr
    assert "export-mesh" in cli("export-mesh", "--help").stdout


@pytest.mark.slow
def test_short_fit_through_the_cli_exports_a_valid_head(tmp_path, cli, gltf_validator):
    """dataset -> fit-nerf (a real, short CPU fit) -> export-mesh -> render-turntable on a small scene."""
    from nerf import synthetic

    size = 48
    truth = synthetic.head_mesh(subdivisions=4)
    root = tmp_path / "run"
    synthetic.write_scene(root, truth, synthetic.orbit_cameras(8, pitches=(-20.0, 25.0)), size=size)
    assert cli("dataset", str(root)).returncode == 0
    fitted = cli("fit-nerf", str(root), "--device", "cpu", "--iterations", "30", "--image-size", str(size))
    assert fitted.returncode == 0, fitted.stderr
    exported = cli("export-mesh", str(root), "--triangles", "4000", "--texture", "512", "--resolution", "96")
    assert exported.returncode == 0, exported.stderr
    turntable = cli("render-turntable", str(root), "--frames", "6", "--size", "64")
    assert turntable.returncode == 0, turntable.stderr
    assert any((root / name).is_file() for name in ("turntable.mp4", "turntable.gif"))

    info = json.loads((root / ".portrait3d" / "stages" / "export-mesh.json").read_text())["info"]
    extras = read_glb_json(root / "mesh" / "head.glb")["asset"]["extras"]["portrait3d"]
    assert info["scale_to_metres"] == extras["metres_per_unit"]
    mesh = load_head_mesh(root / "mesh" / "head.glb")
    assert len(mesh.faces) <= 4000
    # A short fit is coarse, but the surface must be the head: near the truth (cut flat at the bottom like the
    # export's neck cap) and about its size.
    scores = chamfer_fscore(mesh, cap_neck(truth, ExportConfig().neck_cap)[0], samples=20_000)
    assert scores["chamfer_pct_diag"] < 3.0, scores
    np.testing.assert_allclose(np.ptp(mesh.vertices, axis=0), np.ptp(truth.vertices, axis=0), rtol=0.3)
    for name in ("head.obj", "head.ply"):
        assert len(trimesh.load(root / "mesh" / name, force="mesh").faces) == len(mesh.faces)
    report, _ = gltf_validator(root / "mesh" / "head.glb")
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]


def test_a_texture_baked_at_half_size_is_resized_to_the_full_one(exported, tmp_path):
    """``BakeConfig.bake_size``: the colours are baked at half the texture's size and the texture resized up; the
    file has the full size, and the head's colours still land where the truth's are (the views at 128² hold no
    more detail than a 128² texture of this head)."""
    import dataclasses

    from PIL import Image

    _, truth, field, _ = exported
    run = Run(tmp_path / "run")
    write_views(run, truth)
    config = dataclasses.replace(CONFIG, bake=dataclasses.replace(CONFIG.bake, bake_size=128))
    info = export_mesh(run, config, field_model=field)
    assert info["texture_baked_at"] == 128 and info["texture_size"] == 256
    with Image.open(run.path("mesh", "head_texture.png")) as texture:
        assert texture.size == (256, 256)
    mesh = load_head_mesh(run.path("mesh", "head.glb"))
    for cam in cameras.orbit(3, pitch=10.0):
        got = MeshRenderer(mesh).render_rgba(cam, 96).astype(np.float64) / 255
        want = MeshRenderer(truth).render_rgba(cam, 96).astype(np.float64) / 255
        both = (got[..., 3] > 0) & (want[..., 3] > 0)
        assert psnr(got[..., :3], want[..., :3], both) > 32.0


def test_a_bake_size_below_sixteen_texels_is_refused(exported):
    import dataclasses

    run, _, field, _ = exported
    config = dataclasses.replace(CONFIG, bake=dataclasses.replace(CONFIG.bake, bake_size=0))
    with pytest.raises(UserError, match="bake_size"):
        export_mesh(run, config, field_model=field, force=True)
