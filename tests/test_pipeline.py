"""The pipeline's list: every stage built by its own package; the old ``portrait3d.stages`` names still work."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from portrait3d import pipeline, runner, stages
from portrait3d.make_asset import MakeAssetOptions

BUILT_BY = {
    "preprocess": "portrait3d.preprocess",
    "proxy": "portrait3d.proxy",
    "views": "portrait3d.proxy",
    "back_view": "portrait3d.diffusion",
    "orbit_views": "portrait3d.diffusion",
    "dataset": "nerf",
    "fit-nerf": "nerf",
    "export-mesh": "nerf",
    "export-splat": "portrait3d.splat",
    "render-turntable": "nerf",
    "contact-sheet": "portrait3d.pipeline",
}
"""Stage name -> the package whose code the stage runs."""


@pytest.mark.parametrize("generator", ["proxy", "diffusion"])
def test_each_stage_is_built_by_its_own_package(tmp_path, generator):
    options = MakeAssetOptions(generator=generator, preset="tiny", weights=str(tmp_path))
    built = pipeline.asset_stages(tmp_path / "photo.jpg", options)
    names = [stage.name for stage in built]
    expected = ["preprocess", "proxy"]
    expected += ["views"] if generator == "proxy" else ["back_view", "orbit_views"]
    expected += ["dataset", "fit-nerf", "export-mesh", "render-turntable", "contact-sheet", "export-splat"]
    assert names == expected
    # The turntable and the contact sheet run beside the splat distillation (one core each).
    assert [stage.name for stage in built if stage.beside] == ["render-turntable", "contact-sheet"]
    for stage in built:
        assert isinstance(stage, runner.Stage)
        module = stage.function.__module__
        assert module == BUILT_BY[stage.name] or module.startswith(BUILT_BY[stage.name] + "."), (stage.name, module)


@pytest.mark.parametrize(
    ("preset", "generator", "steps", "anchor"),
    [("fast", "proxy", 800, 0.0), ("fast", "diffusion", 800, 1.0), ("tiny", "diffusion", 40, 1.0)],
)
def test_generated_views_get_the_fit_for_generated_views(tmp_path, preset, generator, steps, anchor):
    options = MakeAssetOptions(generator=generator, preset=preset, weights=str(tmp_path))
    (fit_stage,) = [s for s in pipeline.asset_stages(tmp_path / "photo.jpg", options) if s.name == "fit-nerf"]
    config = fit_stage.options["config"]
    assert config["iterations"] == steps
    assert config["view_shift"] == (generator == "diffusion")
    assert config["warm_start"]["anchor_weight"] == anchor


def test_old_names_warn_and_are_the_new_objects():
    for name, target in stages.MOVED.items():
        module, attribute = target.split(":")
        with pytest.warns(DeprecationWarning, match=f"portrait3d.stages.{name} moved to {module}.{attribute}"):
            old = getattr(stages, name)
        assert old is getattr(importlib.import_module(module), attribute)
    with pytest.warns(DeprecationWarning):
        from portrait3d.stages import Stage, run_stage
    assert (Stage, run_stage) == (runner.Stage, runner.run_stage)
    with pytest.raises(AttributeError):
        stages.no_such_name  # noqa: B018


def test_old_asset_stages_give_the_same_stages(tmp_path):
    options = MakeAssetOptions(preset="tiny")
    with pytest.warns(DeprecationWarning):
        old = stages.asset_stages(tmp_path / "photo.jpg", options)
    new = pipeline.asset_stages(tmp_path / "photo.jpg", options)
    fields = ("name", "inputs", "outputs", "optional", "sources", "needs")
    assert [[getattr(s, f) for f in fields] for s in old] == [[getattr(s, f) for f in fields] for s in new]
    as_data = [dataclasses.asdict(s.options) if dataclasses.is_dataclass(s.options) else s.options for s in new]
    assert as_data == [dataclasses.asdict(s.options) if dataclasses.is_dataclass(s.options) else s.options for s in old]


def test_make_asset_keeps_write_contact_sheet():
    import portrait3d.make_asset as make_asset

    assert make_asset.write_contact_sheet is pipeline.write_contact_sheet
