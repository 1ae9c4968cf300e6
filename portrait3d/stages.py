"""Deprecated: the old home of the runner, the stage builders and make-asset's list (kept for one release).

Every name still works and says where it lives now (a :class:`DeprecationWarning`):

- the runner (``Stage``, ``run_stage``, ``open_run``, ``run_settings``, ``stage_key``,
  ``StageFunction``): :mod:`portrait3d.runner`;
- make-asset's list (``asset_stages``) and the contact sheet: :mod:`portrait3d.pipeline`;
- each stage's builder: its own package (``preprocess_stage`` is
  :func:`portrait3d.preprocess.pipeline.stage`, ``mesh_stage`` is :func:`nerf.export.stage`, ...).
"""

from __future__ import annotations

import importlib
import warnings

MOVED = {
    "Stage": "portrait3d.runner:Stage",
    "StageFunction": "portrait3d.runner:StageFunction",
    "open_run": "portrait3d.runner:open_run",
    "run_settings": "portrait3d.runner:run_settings",
    "run_stage": "portrait3d.runner:run_stage",
    "stage_key": "portrait3d.runner:stage_key",
    "asset_stages": "portrait3d.pipeline:asset_stages",
    "contact_sheet_stage": "portrait3d.pipeline:contact_sheet_stage",
    "preprocess_stage": "portrait3d.preprocess.pipeline:stage",
    "proxy_stage": "portrait3d.proxy.stage:stage",
    "copy_proxy_views": "portrait3d.proxy.stage:copy_proxy_views",
    "proxy_views_stage": "portrait3d.proxy.stage:views_stage",
    "back_view_stage": "portrait3d.diffusion.stages:back_view_stage",
    "orbit_views_stage": "portrait3d.diffusion.stages:orbit_views_stage",
    "dataset_stage": "nerf.dataset:stage",
    "fit_stage": "nerf.fit:stage",
    "mesh_stage": "nerf.export:stage",
    "turntable_stage": "nerf.turntable:stage",
}
"""Old name -> ``module:name`` where it lives now."""

__all__ = list(MOVED)


def __getattr__(name: str):
    if name not in MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = MOVED[name].split(":")
    warnings.warn(
        f"portrait3d.stages.{name} moved to {module}.{attribute}; the old name goes in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(module), attribute)


def __dir__() -> list[str]:
    return sorted([*globals(), *MOVED])
