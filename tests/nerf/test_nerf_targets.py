"""export-mesh targets: LODs, budgets, the neck cap and origin, normal maps, FBX; checked in Blender itself.

Blender (``bpy``, the ``blender`` extra) runs in a subprocess with a fresh scene per file
(``nerf/blender.py``); without it the Blender tests skip, except in CI where they fail.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import trimesh
from missing_tool import missing_tool
from scene_views import write_views

from nerf import blender
from nerf.analytic import MeshField, coloured_ellipsoid
from nerf.export import ExportConfig, export_mesh, output_files, read_glb_json
from nerf.mesh import BakeConfig, MeshConfig, cap_neck, neck_origin
from nerf.targets import TARGETS, budget_table, lod_texture_size
from portrait3d.errors import UserError
from portrait3d.run import Run

SCALE = 0.4
TRIANGLES, TEXTURE = 2000, 128


def _require_blender():
    if not blender.available():
        missing_tool(f"bpy is missing ({blender.EXTRA_HINT})")


def _config(target: str, **changes) -> ExportConfig:
    """The target's LODs and formats at test size (few triangles, a small texture)."""
    return ExportConfig(
        mesh=MeshConfig(resolution=48, threshold=50.0, triangles=TRIANGLES),
        bake=BakeConfig(texture_size=TEXTURE),
        metres_per_unit=SCALE,
        target=target,
        **changes,
    )


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Views and the field of the coloured ellipsoid (0.176 m wide at 0.4 m per unit)."""
    truth = coloured_ellipsoid(subdivisions=4)
    root = tmp_path_factory.mktemp("targets")
    views = Run(root / "views-only")
    write_views(views, truth)
    return root, views, MeshField(truth)


def _export(scene, name: str, config: ExportConfig) -> tuple[Run, dict]:
    import shutil

    root, views, field = scene
    run = Run(root / name)
    if not run.path("views").exists():
        shutil.copytree(views.path("views"), run.path("views"))
    return run, export_mesh(run, config, field_model=field)


@pytest.fixture(scope="module")
def exports(scene):
    """Every target exported (FBX only where bpy is installed)."""
    out = {}
    for name, target in TARGETS.items():
        formats = target.formats if blender.available() else tuple(f for f in target.formats if f != "fbx")
        out[name] = _export(scene, name, _config(name, formats=formats, normal_map=name != "generic"))
    return out


def test_budget_table_has_every_target_with_sources():
    table = budget_table()
    for name, target in TARGETS.items():
        assert f"`{name}`" in table
        assert target.sources and target.lods[0] == 1.0
        assert target.texture_size & (target.texture_size - 1) == 0
    assert TARGETS["avatar"].lods == (1.0, 0.5) and TARGETS["avatar"].max_file_mb == 10.0
    assert "readyplayerme" not in TARGETS and "readyplayerme" not in table
    assert [lod_texture_size(2048, f) for f in (1.0, 0.5, 0.25, 0.01)] == [2048, 1024, 1024, 256]


def test_every_target_writes_its_lods_within_budget(exports):
    for name, (run, info) in exports.items():
        target = TARGETS[name]
        assert [lod["fraction"] for lod in info["lods"]] == list(target.lods)
        counts = [lod["triangles"] for lod in info["lods"]]
        assert counts[0] <= TRIANGLES and all(b < a for a, b in zip(counts, counts[1:])), counts
        for lod, fraction in zip(info["lods"], target.lods):
            assert lod["triangles"] <= TRIANGLES * fraction * 1.02
            assert lod["watertight"], (name, lod)
        # The files are all there, and the report knows their sizes.
        for path, size in info["file_sizes"].items():
            assert run.path(path).stat().st_size == size > 0
        if target.max_file_mb is not None:
            assert max(info["file_sizes"].values()) < target.max_file_mb * 1e6


def test_glb_extras_origin_and_watertight_cap(exports):
    run, info = exports["avatar"]
    for i, lod in enumerate(info["lods"]):
        document = read_glb_json(run.path(lod["file"]))
        extras = document["asset"]["extras"]["portrait3d"]
        assert extras["lod"] == i and extras["units"] == "metres" and extras["target"] == "avatar"
        assert extras["metres_per_unit"] == SCALE and "portrait3d" in extras["generator"]
        assert document["nodes"][0]["name"] == document["meshes"][0]["name"] == f"head_LOD{i}"
        material = document["materials"][0]
        assert material["pbrMetallicRoughness"]["metallicFactor"] == 0.0 and "normalTexture" in material
        assert "extensionsUsed" not in document  # no custom extensions in the avatar layout
        mesh = trimesh.load(run.path(lod["file"]), force="mesh")
        mesh.merge_vertices(merge_tex=True, merge_norm=True)  # glTF splits vertices at UV seams
        assert mesh.is_watertight
        # Origin at the base of the neck: the cap is flat at y = 0, centred on x = 0.
        lo, hi = mesh.bounds
        assert lo[1] == pytest.approx(0.0, abs=1e-6)
        assert abs(lo[0] + hi[0]) < 0.01 and lo[2] < 0.0 < hi[2]
        base = mesh.vertices[np.abs(mesh.vertices[:, 1]) < 1e-6]
        assert np.ptp(base[:, 0]) > 0.03  # a real cap, not a point


def test_every_target_passes_the_khronos_validator(exports, gltf_validator):
    for name, (run, info) in exports.items():
        for lod in info["lods"]:
            report, returncode = gltf_validator(run.path(lod["file"]))
            assert report["issues"]["numErrors"] == 0, (name, report["issues"]["messages"])
            assert report["issues"]["numWarnings"] == 0, (name, report["issues"]["messages"])
            assert returncode == 0


def test_normal_map_is_flat_on_a_smooth_surface(exports):
    """The ellipsoid is smooth, so the normal map of its LODs stays near (0, 0, 1) but not exactly:
    a coarser LOD needs more correction than a finer one. Measured on the texels the mesh covers: the
    padding between charts repeats the nearest chart's edge and says nothing about the surface."""
    from nerf.texture import UVMesh, rasterize_uv

    run, info = exports["unreal"]
    tilts = []
    for lod in info["lods"]:
        document = read_glb_json(run.path(lod["file"]))
        assert document["images"][1]["name"].endswith("_normal")
        mesh = trimesh.load(run.path(lod["file"]), force="mesh", process=False)
        normal = np.asarray(mesh.visual.material.normalTexture.convert("RGB"), dtype=np.float64) / 127.5 - 1.0
        z = normal[..., 2]
        assert np.median(z) > 0.97 and z.min() > 0.0
        uv = np.asarray(mesh.visual.uv, dtype=np.float64)  # trimesh moves glTF's origin to the bottom-left, as UVMesh
        faces = np.asarray(mesh.faces)
        texels = rasterize_uv(UVMesh(mesh.vertices, faces, uv, mesh.vertex_normals, np.arange(len(uv))), len(z))
        covered = z[texels.rows, texels.cols]
        assert covered.size > 0.3 * z.size
        tilts.append(float(np.mean(np.arccos(np.clip(covered, -1, 1)))))
    assert tilts[-1] > tilts[0], tilts


def test_neck_cap_closes_an_open_neck():
    """A head whose neck the views cut off (an open tube at the bottom): cut flat above the ragged
    rim, capped, watertight; the origin sits on the cap."""
    solid = trimesh.creation.capsule(height=0.5, radius=0.15, count=[48, 48])
    solid.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    assert solid.is_watertight and np.ptp(solid.vertices[:, 1]) == pytest.approx(0.8)
    # Open the neck: drop the bottom faces and make the rim ragged.
    centres = solid.triangles_center
    ragged = -0.3 + 0.02 * np.sin(8 * np.arctan2(centres[:, 2], centres[:, 0]))
    opened = trimesh.Trimesh(solid.vertices, solid.faces[centres[:, 1] > ragged], process=True)
    assert not opened.is_watertight
    capped, cut = cap_neck(opened, 0.02)
    assert capped.is_watertight and cut > -0.28
    assert capped.bounds[0, 1] == pytest.approx(cut, abs=1e-9)
    origin = neck_origin(capped, cut)
    assert origin[0] == 0.0 and origin[1] == cut and abs(origin[2]) < 0.01


def test_bad_target_options_are_one_line_errors(scene, monkeypatch):
    with pytest.raises(UserError, match="--target"):
        _export(scene, "bad", _config("playstation"))
    with pytest.raises(UserError, match="--triangles: the avatar target allows at most 12000"):
        _export(scene, "bad", dataclasses.replace(_config("avatar"), mesh=MeshConfig(triangles=20_000)))
    # The retired target names its successor in one line.
    with pytest.raises(UserError, match=r"^--target readyplayerme is gone: .*2026-01-31; use --target avatar"):
        _export(scene, "bad", _config("readyplayerme"))
    with pytest.raises(UserError, match="power of two"):
        _export(scene, "bad", dataclasses.replace(_config("web"), bake=BakeConfig(texture_size=1000)))
    with pytest.raises(UserError, match="--lods"):
        _export(scene, "bad", _config("generic", lods=(1.0, 0.5, 0.7)))
    with pytest.raises(UserError, match="--formats: unknown usdz"):
        _export(scene, "bad", _config("generic", formats=("glb", "usdz")))
    monkeypatch.setattr(blender, "available", lambda: False)
    with pytest.raises(UserError, match=r"fbx needs Blender's Python module bpy: pip install 'portrait3d\[blender\]'"):
        _export(scene, "bad", _config("unity"))
    assert output_files(_config("unreal"))[-1] == "mesh/head.fbx"


def test_cli_without_bpy_is_a_one_line_error(tmp_path):
    """``--formats fbx`` where bpy cannot be imported: exit 2 and one line naming the extra."""
    import subprocess
    import sys

    run = Run(tmp_path / "run")
    run.path("nerf").mkdir()
    # sys.modules["bpy"] = None: Python's own way of saying that a module is not there.
    script = (
        "import sys; sys.modules['bpy'] = None; from portrait3d.cli import entry_point; "
        f"sys.argv = ['portrait3d', 'export-mesh', {str(run.root)!r}, '--formats', 'glb,fbx']; entry_point()"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "portrait3d[blender]" in lines[0], lines


@pytest.mark.slow
def test_every_target_imports_cleanly_into_blender(exports):
    """Blender's own glTF and FBX importers, a fresh scene per file: LODs, triangles, material and
    texture, metres, origin at the neck base, no loose or non-manifold geometry."""
    _require_blender()
    for name, (run, info) in exports.items():
        target = TARGETS[name]
        files = [run.path(lod["file"]) for lod in info["lods"]]
        has_fbx = "fbx" in target.formats
        if has_fbx:
            files.append(run.path("mesh", "head.fbx"))
        scenes = blender.inspect(*files)
        for i, (lod, found) in enumerate(zip(info["lods"], scenes)):
            assert len(found["objects"]) == 1, (name, found)
            _check_blender_object(found["objects"][0], lod["triangles"], normal=name != "generic")
            assert found["objects"][0]["name"] == ("head" if len(info["lods"]) == 1 else f"head_LOD{i}")
        if has_fbx:
            fbx = scenes[-1]["objects"]
            assert sorted(o["name"] for o in fbx) == [f"head_LOD{i}" for i in range(len(info["lods"]))]
            for obj in sorted(fbx, key=lambda o: o["name"]):
                lod = info["lods"][int(obj["name"][-1])]
                _check_blender_object(obj, lod["triangles"], normal=True)


def _check_blender_object(obj: dict, triangles: int, normal: bool) -> None:
    assert obj["triangles"] == triangles
    # Blender is +Z up: the head's width is x, its height z; 0.44 units * 0.4 m = 0.176 m wide.
    width = obj["dimensions"][0]
    assert 0.15 < width < 0.25, obj["dimensions"]
    lo, hi = obj["bounds"]
    assert lo[2] == pytest.approx(0.0, abs=1e-4)  # sits on its neck cap at the origin
    assert abs(lo[0] + hi[0]) < 0.01 and lo[1] < 0.0 < hi[1]
    assert np.allclose(obj["origin"], 0.0, atol=1e-6)
    assert obj["loose_vertices"] == obj["loose_edges"] == 0
    assert obj["non_manifold_edges"] == obj["boundary_edges"] == 0
    assert obj["uv_layers"] >= 1
    (material,) = obj["materials"]
    links = material["image_links"]
    # Blender reads KHR_materials_unlit (the generic target) as an emission shader on the same texture.
    assert any(key.endswith("Base Color") or key == "EMISSION:Color" for key in links), links
    if normal:
        assert any(key.startswith("NORMAL_MAP") for key in links), links
