"""CLI subcommands, one module per stage; each exposes ``register(subparsers, common)``.

Every stage subcommand builds its one :class:`portrait3d.runner.Stage` with the builder of the
stage's own package and runs it with :func:`portrait3d.runner.run_stage`, as make-asset does
(:func:`portrait3d.pipeline.asset_stages`); the helpers here give them the
same ``--force``/``--wait`` flags and the run's own preset as their default.
"""

from __future__ import annotations

import argparse

PRESET_NAMES = ("fast", "standard", "tiny")


def add_stage_flags(p: argparse.ArgumentParser, preset: bool = False) -> None:
    """Add ``--force`` and ``--wait`` (and ``--preset`` where the stage has preset options)."""
    if preset:
        p.add_argument(
            "--preset",
            choices=PRESET_NAMES,
            default=None,
            help="stage options of this preset (configs/NAME.yaml; default: the run's own, as make-asset "
            "recorded it, else fast)",
        )
    p.add_argument("--force", action="store_true", help="run even if the stage is up to date")
    p.add_argument("--wait", action="store_true", help="wait for another process writing the run, instead of failing")


def run_default(args: argparse.Namespace, run_root: str, name: str, fallback):
    """``args.<name>`` when given, else what the run recorded (make-asset's settings), else ``fallback``."""
    from portrait3d.runner import run_settings

    value = getattr(args, name, None)
    if value is not None:
        return value
    return run_settings(run_root).get(name, fallback)


def preset_of(args: argparse.Namespace, run_root: str):
    """The :class:`portrait3d.presets.AssetPreset` a subcommand uses: ``--preset``, the run's own, or fast."""
    from portrait3d.presets import PRESETS

    return PRESETS[run_default(args, run_root, "preset", "fast")]


def open_existing(args: argparse.Namespace):
    """The run folder a stage subcommand works on (it must exist)."""
    from portrait3d.run import Run

    return Run(args.run, create=False)
