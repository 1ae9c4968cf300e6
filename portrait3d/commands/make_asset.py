"""Subcommands make-asset: photo to GLB in one command (issue 6). Not built yet."""

from __future__ import annotations

import argparse

from portrait3d.errors import UserError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    for name in ("make-asset",):
        p = subparsers.add_parser(name, parents=[common], help="(not built yet)")
        p.set_defaults(func=_missing, stage_name=name)


def _missing(args: argparse.Namespace) -> None:
    raise UserError(f"the {args.stage_name} stage is not built yet")
