"""make-asset's stages: one builder per stage and :func:`asset_stages`, make-asset's list.

The runner (:class:`Stage`, :func:`run_stage`, :func:`open_run`) lives in
:mod:`portrait3d.runner`; its names are re-exported here so that
``portrait3d.stages.Stage`` and ``portrait3d.stages.run_stage`` keep working.
make-asset walks :func:`asset_stages`; each CLI subcommand builds its one stage
with the builder below and runs it with :func:`run_stage`; the web app and the
batch runner walk the same list.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from portrait3d.run import Run, atomic_dir
from portrait3d.runner import Stage, StageFunction, open_run, run_settings, run_stage, stage_key

__all__ = ["Stage", "StageFunction", "open_run", "run_settings", "run_stage", "stage_key", "asset_stages"]


# --- the stages ---------------------------------------------------------------------------------
def preprocess_stage(photo: str | Path, options=None) -> Stage:
    """``preprocess``: the photo -> ``input/aligned.png``, ``input/mask.png``, ``input/camera.json``."""
    from portrait3d.preprocess.pipeline import OUTPUTS, STAGE, PreprocessOptions, analyse_photo, write_preprocessed

    photo = Path(photo)
    options = options or PreprocessOptions()
    analysed = {}

    def check(_run: Run) -> None:
        # The photo is decoded and analysed before the stage starts: a bad one is a single line.
        analysed["result"] = analyse_photo(photo, options)

    def write(run: Run, opts) -> dict:
        return write_preprocessed(run, analysed.pop("result", None) or analyse_photo(photo, opts))

    return Stage(STAGE, write, options, outputs=OUTPUTS, sources=(str(photo),), check=check)


def proxy_stage(options=None) -> Stage:
    """``proxy``: the template head fitted to the photo and its renders at the orbit cameras (``proxy/``)."""
    from portrait3d.proxy.stage import INPUTS, STAGE, ProxyOptions, build_proxy, check_options

    options = options or ProxyOptions()
    return Stage(
        STAGE,
        build_proxy,
        options,
        inputs=INPUTS,
        outputs=("proxy",),
        optional=("input/mask.png",),
        needs="run `portrait3d preprocess PHOTO --out {run}` first",
        check=lambda _run: check_options(options),
    )


def copy_proxy_views(run: Run, _options: object) -> dict:
    """The proxy generator: its textured renders are the run's views."""
    with atomic_dir(run.path("views")) as tmp:
        for src in sorted(run.path("proxy", "views").glob("*.png")):
            shutil.copy2(src, tmp / src.name)
        shutil.copy2(run.path("proxy", "cameras.json"), tmp / "cameras.json")
    return {"views": len(list(run.path("views").glob("[0-9]*.png")))}


def proxy_views_stage() -> Stage:
    """``views`` of the proxy generator: ``views/`` is a copy of the proxy renders and their cameras."""
    return Stage(
        "views",
        copy_proxy_views,
        {"generator": "proxy"},
        inputs=("proxy/views", "proxy/cameras.json"),
        outputs=("views",),
        needs="run `portrait3d proxy {run}` first",
    )


def back_view_stage(options) -> Stage:
    """``back_view`` (diffusion): ``views/back.png`` from the front photo and the back condition render."""
    from portrait3d.diffusion import stages as diffusion

    inputs = [diffusion.FRONT]
    if not options.conditions:
        inputs += [diffusion.PROXY_CONDITIONS, diffusion.PROXY_CAMERAS]
    return Stage(
        "back_view",
        diffusion._run_back_view,
        options,
        inputs=tuple(inputs),
        outputs=(diffusion.BACK,),
        sources=(options.conditions,) if options.conditions else (),
        needs="run `portrait3d preprocess PHOTO --out {run}` and `portrait3d proxy {run}` first",
        check=lambda _run: diffusion._check_options(options),
    )


def orbit_views_stage(options) -> Stage:
    """``orbit_views`` (diffusion): ``views/NNNN.png`` + ``views/cameras.json`` around the head."""
    from portrait3d.diffusion import stages as diffusion

    inputs = [diffusion.FRONT, diffusion.BACK]
    sources = []
    if options.conditions:
        sources.append(options.conditions)
    else:
        inputs += [diffusion.PROXY_CONDITIONS, diffusion.PROXY_CAMERAS]
    if options.initial == "auto" and not options.conditions:
        inputs.append(diffusion.PROXY_VIEWS)
    elif options.initial not in (None, "none", "auto"):
        sources.append(options.initial)
    return Stage(
        "orbit_views",
        diffusion._run_orbit_views,
        options,
        inputs=tuple(inputs),
        outputs=(f"{diffusion.VIEWS}/[0-9][0-9][0-9][0-9].png", f"{diffusion.VIEWS}/cameras.json"),
        optional=(diffusion.PROXY_VIEWS,),
        sources=tuple(sources),
        needs="run `portrait3d proxy {run}` and `portrait3d back-view {run}` first",
        check=lambda _run: diffusion._check_options(options),
    )


def dataset_stage(options=None) -> Stage:
    """``dataset``: ``transforms.json`` (nerfstudio format) from ``views/``."""
    from nerf.dataset import TRANSFORMS, DatasetOptions, write_transforms

    options = options or DatasetOptions()
    return Stage(
        "dataset",
        write_transforms,
        options,
        inputs=(f"{options.views_dir}/cameras.json", options.views_dir),
        outputs=(TRANSFORMS,),
        needs="generate the views first (`portrait3d proxy {run}`, or `portrait3d orbit-views {run}`)",
    )


def fit_stage(config, device: str = "auto") -> Stage:
    """``fit-nerf``: the NeRF fitted to ``transforms.json`` (``nerf/``)."""
    from nerf.dataset import TRANSFORMS
    from nerf.fit import NERF_DIR, fit, resolve_device

    device = resolve_device(device).type
    return Stage(
        "fit-nerf",
        lambda run, _opts: fit(run, config, device),
        {"device": device, "config": dataclasses.asdict(config)},
        inputs=(TRANSFORMS, "views"),
        outputs=(NERF_DIR,),
        needs="run `portrait3d dataset {run}` first",
    )


def mesh_stage(config, field_model=None) -> Stage:
    """``export-mesh``: GLB, OBJ and PLY of the head (``mesh/``); ``field_model`` replaces ``nerf/`` (tests)."""
    from nerf import export

    def check(run: Run) -> None:
        export.stage_inputs(run, config, needs_nerf=field_model is None)

    views = ("views/cameras.json", "views")
    return Stage(
        export.STAGE,
        export.stage_function(field_model),
        config,
        # The field's files, not nerf/config.yml: that holds the run's absolute path, not the field.
        inputs=(("nerf/volume.json", "nerf/nerfstudio_models") if field_model is None else ()) + views,
        outputs=tuple(export.output_files(config)),
        optional=views if config.texture_source != "views" else (),
        needs="run `portrait3d fit-nerf {run}` first (the views texture also needs the run's views)",
        check=check,
    )


def turntable_stage(config) -> Stage:
    """``render-turntable``: ``turntable.mp4`` (or ``.gif``) of the textured mesh."""
    from nerf import turntable

    return Stage(
        turntable.STAGE,
        turntable.turntable_stage,
        config,
        inputs=tuple(turntable.INPUTS),
        outputs=(turntable.output_name(),),
        needs="run `portrait3d export-mesh {run}` first",
        check=lambda run: turntable.check_inputs(run, config),
    )


def contact_sheet_stage() -> Stage:
    """``contact-sheet``: ``contact_sheet.png``, the input, the back view and every view."""
    from portrait3d.make_asset import write_contact_sheet

    return Stage(
        "contact-sheet",
        write_contact_sheet,
        {},
        inputs=("input/aligned.png", "views"),
        outputs=("contact_sheet.png",),
    )


def asset_stages(photo: str | Path, options) -> list[Stage]:
    """The stages of make-asset, in order, for :class:`portrait3d.make_asset.MakeAssetOptions`.

    preprocess -> proxy -> (views | back_view, orbit_views) -> dataset -> fit-nerf ->
    export-mesh -> export-splat -> render-turntable -> contact-sheet.
    """
    from portrait3d.preprocess import PreprocessOptions
    from portrait3d.presets import PRESETS
    from portrait3d.splat import stage as splat_stage

    options.validate()
    preset = PRESETS[options.preset]
    manual = options.yaw is not None
    stages = [
        preprocess_stage(photo, PreprocessOptions(yaw=options.yaw, pitch=options.pitch, centred_crop=manual)),
        proxy_stage(dataclasses.replace(preset.proxy, views=options.views)),
    ]
    if options.generator == "proxy":
        stages.append(proxy_views_stage())
    else:
        from portrait3d.diffusion.stages import DiffusionOptions, OrbitOptions

        common = {
            "weights": options.weights,
            "device": options.device,
            "seed": options.seed,
            "allow_cpu": options.allow_cpu,
            "conditions": options.conditions,
            **dataclasses.asdict(preset.diffusion),
        }
        stages += [back_view_stage(DiffusionOptions(**common)), orbit_views_stage(OrbitOptions(**common))]
    fit_config = dataclasses.replace(preset.fit, seed=options.seed, max_seconds=options.max_seconds or 0.0)
    stages += [
        dataset_stage(),
        fit_stage(fit_config, options.device),
        mesh_stage(preset.export),
        splat_stage(preset.splat),
        turntable_stage(preset.turntable),
        contact_sheet_stage(),
    ]
    return stages
