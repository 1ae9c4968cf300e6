"""The ``portrait3d`` command: one subcommand per stage, plus ``make-asset``.

Each subcommand lives in a module of :mod:`portrait3d.commands` that exposes
``register(subparsers)``; heavy libraries are imported inside the handlers so
that ``--help`` stays fast. Errors a user can act on (:class:`UserError`) are
printed on one line with a non-zero exit; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import argparse
import errno
import gc
import importlib
import signal
import sys
import traceback

from portrait3d import __version__, progress
from portrait3d.errors import UserError

COMMAND_MODULES = (
    "portrait3d.commands.cameras",
    "portrait3d.commands.preprocess",
    "portrait3d.commands.proxy",
    "portrait3d.commands.diffusion",
    "portrait3d.commands.fetch",
    "portrait3d.commands.nerf",
    "portrait3d.commands.splat",
    "portrait3d.commands.make_asset",
    "portrait3d.commands.train",
    "portrait3d.commands.view",
    "portrait3d.commands.serve",
    "portrait3d.commands.batch",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_mutually_exclusive_group()
    # SUPPRESS: a flag given before the subcommand must survive the subcommand's own copy of it.
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="print errors only")
    group.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="print more, and tracebacks on errors"
    )

    parser = argparse.ArgumentParser(
        prog="portrait3d",
        description="One portrait photo in, a 360-degree view set, a NeRF and a textured 3D head mesh out.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"portrait3d {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.quiet, args.verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    if args.quiet and args.verbose:
        parser.error("--quiet and --verbose exclude each other")
    progress.set_verbosity(progress.QUIET if args.quiet else progress.VERBOSE if args.verbose else progress.NORMAL)
    # A polite kill (SIGTERM) unwinds like Ctrl-C, so temporary files are removed; both are remembered
    # so that one a library swallows is raised again at the next stage or progress step.
    signal.signal(signal.SIGTERM, progress.interrupt)
    signal.signal(signal.SIGINT, progress.interrupt)
    try:
        result = args.func(args)
        return int(result or 0)
    except UserError as exc:
        _fail(args, f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _fail(args, "interrupted; run the same command again to resume")
        # The shell's convention: 128 + the signal (SIGINT 130, SIGTERM 143).
        return 128 + (progress.interrupt_signal() or signal.SIGINT)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            _fail(args, f"error: no space left on the device while writing {exc.filename or 'the run folder'}")
        else:
            where = f" ({exc.filename})" if exc.filename else ""
            _fail(args, f"error: {exc.strerror or exc}{where}")
        return 1
    except Exception as exc:  # noqa: BLE001 - last resort: one line, traceback only with --verbose
        _fail(args, f"internal error: {type(exc).__name__}: {exc} (rerun with --verbose for the traceback)")
        return 1


def _fail(args: argparse.Namespace, message: str) -> None:
    if getattr(args, "verbose", False):
        traceback.print_exc()
    first_line = message.splitlines()[0] if message else "error"
    print(f"portrait3d: {first_line}", file=sys.stderr, flush=True)


def entry_point() -> None:
    """Console-script entry point."""
    code = main()
    # The process ends here: the interpreter's last garbage collection over everything the stages left (a few
    # hundred thousand objects) took 0.5-1.2 s after make-asset had finished its work (docs/BENCHMARKS.md,
    # fifteenth session). Frozen objects are left to the exit; files are closed and atexit handlers still run.
    gc.freeze()
    sys.exit(code)
