"""The pipeline: make-asset's stages, in order, for given options.

:func:`asset_stages` is the one list that make-asset, the web app and the batch runner
walk (each stage run by :func:`portrait3d.runner.run_stage`). It knows the order of
the stages and which options each one takes from make-asset's options and the preset
(:mod:`portrait3d.presets`); every :class:`~portrait3d.runner.Stage` is built by its
own package:

====================  ====================================================
stage                 builder
====================  ====================================================
``preprocess``        :func:`portrait3d.preprocess.pipeline.stage`
``proxy``             :func:`portrait3d.proxy.stage.stage`
``views``             :func:`portrait3d.proxy.stage.views_stage` (proxy generator)
``back_view``         :func:`portrait3d.diffusion.stages.back_view_stage` (diffusion generator)
``orbit_views``       :func:`portrait3d.diffusion.stages.orbit_views_stage` (diffusion generator)
``dataset``           :func:`nerf.dataset.stage`
``fit-nerf``          :func:`nerf.fit.stage`
``export-mesh``       :func:`nerf.export.stage`
``render-turntable``  :func:`nerf.turntable.stage`
``rig``               :func:`portrait3d.rig.stage` (only for ``--target avatar``, after export-mesh)
``export-splat``      :func:`portrait3d.splat.stage.stage` (the real-time 3D Gaussians)
``contact-sheet``     :func:`contact_sheet_stage` (here: it reads the views of either generator)
====================  ====================================================

A new stage: its package builds its ``Stage``; one line here adds it to make-asset.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from portrait3d.run import Run, atomic_save_image
from portrait3d.runner import Stage


def write_contact_sheet(run: Run, _options: object) -> dict:
    """``contact_sheet.png``: the aligned input, the back view (if any) and every view with its yaw."""
    import numpy as np
    from PIL import Image

    from portrait3d.cameras import read_labels
    from portrait3d.proxy.sheet import contact_sheet

    images = [np.asarray(Image.open(run.path("input", "aligned.png")).convert("RGB"))]
    labels = ["input"]
    if run.path("views", "back.png").exists():
        images.append(np.asarray(Image.open(run.path("views", "back.png")).convert("RGB")))
        labels.append("back view")
    for name, camera in read_labels(run.path("views", "cameras.json")).items():
        images.append(np.asarray(Image.open(run.path("views", name))))
        labels.append(f"{Path(name).stem}  yaw {camera.angles().yaw % 360:.0f}")
    atomic_save_image(run.path("contact_sheet.png"), contact_sheet(images, labels))
    return {"tiles": len(images)}


def contact_sheet_stage() -> Stage:
    """``contact-sheet``: ``contact_sheet.png``, the input, the back view and every view."""
    return Stage(
        "contact-sheet",
        write_contact_sheet,
        {},
        inputs=("input/aligned.png", "views"),
        outputs=("contact_sheet.png",),
    )


def target_stages(export_config, target: str | None) -> list[Stage]:
    """export-mesh with ``target``'s budget (None: the preset's export as it is) and, for ``avatar``,
    the ``rig`` stage after it (``avatar/``: the rigged head)."""
    from nerf import export
    from nerf.targets import get_target

    if target is None:
        return [export.stage(export_config)]
    budget = get_target(target)
    export_config = dataclasses.replace(
        export_config,
        target=target,
        mesh=dataclasses.replace(export_config.mesh, triangles=budget.triangles),
        bake=dataclasses.replace(export_config.bake, texture_size=budget.texture_size),
    )
    if target != "avatar":
        return [export.stage(export_config)]
    from portrait3d import rig

    lods, _formats = export.resolved(export_config)
    return [export.stage(export_config), rig.stage(rig.RigOptions(lods=len(lods), max_file_mb=budget.max_file_mb))]


def asset_stages(photo: str | Path, options) -> list[Stage]:
    """The stages of make-asset, in order, for :class:`portrait3d.make_asset.MakeAssetOptions`.

    preprocess -> proxy -> (views | back_view, orbit_views) -> dataset -> fit-nerf ->
    export-mesh (-> rig, for the avatar target) -> render-turntable, contact-sheet (beside:
    :attr:`portrait3d.runner.Stage.beside`) -> export-splat.
    """
    # Imported here: the stage packages pull in torch, open3d and friends, which `--help` does not need.
    from nerf import dataset, fit, turntable
    from portrait3d import preprocess, splat
    from portrait3d.presets import PRESETS
    from portrait3d.proxy import stage as proxy

    options.validate()
    preset = PRESETS[options.preset]
    manual = options.yaw is not None
    stages = [
        preprocess.stage(
            photo, preprocess.PreprocessOptions(yaw=options.yaw, pitch=options.pitch, centred_crop=manual)
        ),
        proxy.stage(dataclasses.replace(preset.proxy, views=options.views)),
    ]
    if options.generator == "proxy":
        stages.append(proxy.views_stage())
    else:
        from portrait3d.diffusion import stages as diffusion

        common = {
            "weights": options.weights,
            "device": options.device,
            "seed": options.seed,
            "allow_cpu": options.allow_cpu,
            "conditions": options.conditions,
            **dataclasses.asdict(preset.diffusion),
        }
        stages += [
            diffusion.back_view_stage(diffusion.DiffusionOptions(**common)),
            diffusion.orbit_views_stage(diffusion.OrbitOptions(**common)),
        ]
    fit_config = dataclasses.replace(
        preset.fit.for_views(generated=options.generator == "diffusion"),
        seed=options.seed,
        max_seconds=options.max_seconds or 0.0,
    )
    stages += [
        dataset.stage(),
        fit.stage(fit_config, options.device),
        *target_stages(preset.export, options.target),
        # Beside the splat distillation, which keeps one core busy: the other renders the turntable.
        dataclasses.replace(turntable.stage(preset.turntable), beside=True),
        dataclasses.replace(contact_sheet_stage(), beside=True),
        splat.stage(preset.splat),
    ]
    return stages
