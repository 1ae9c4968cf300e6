"""``fetch-weights``: the released checkpoints from the Hugging Face Hub into a converted weights folder.

The only subcommand that reaches the network; the work is in :mod:`portrait3d.diffusion.fetch`.
"""

from __future__ import annotations

import argparse

from portrait3d.commands.diffusion import add_conversion_options


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from portrait3d.diffusion.fetch import BACK_VIEW_FILE, ORBIT_FILE, REPO_ID

    p = subparsers.add_parser(
        "fetch-weights",
        parents=[common],
        help="download the released DiffPortrait360 checkpoints, verify them and convert them (needs network)",
        description=f"Download {ORBIT_FILE} and {BACK_VIEW_FILE} from the Hugging Face Hub ({REPO_ID}) into the "
        "Hugging Face cache (resumable; a cached file is not downloaded again), check each file's size and SHA-256 "
        "against what the Hub publishes, and convert them into OUT as convert-weights does. A complete OUT is left "
        "alone. HF_ENDPOINT, HF_TOKEN, HF_HOME and HF_HUB_OFFLINE work as in huggingface_hub; offline, the cached "
        "files are used and checked against the cache's own record. This is the only command that downloads.",
    )
    p.add_argument("--out", required=True, help="weights folder to write (the --weights of make-asset)")
    p.add_argument("--revision", default="main", help="branch, tag or commit of the Hub repository (default: main)")
    p.add_argument("--cache-dir", help="Hugging Face cache folder (default: $HF_HUB_CACHE, else $HF_HOME/hub)")
    p.add_argument("--repo", default=REPO_ID, help=f"Hub repository holding the two files (default: {REPO_ID})")
    add_conversion_options(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="fetch and convert again even when OUT is complete (only a folder portrait3d wrote is replaced)",
    )
    p.set_defaults(func=_fetch_weights)


def _fetch_weights(args: argparse.Namespace) -> None:
    from portrait3d import progress
    from portrait3d.diffusion.convert import load_layout
    from portrait3d.diffusion.fetch import FetchOptions, fetch_weights

    if progress.verbosity() == progress.QUIET:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    options = FetchOptions(
        out=args.out,
        revision=args.revision,
        cache_dir=args.cache_dir,
        repo_id=args.repo,
        layout=load_layout(args.layout),
        dtype=args.dtype,
        force=args.force,
    )
    out = fetch_weights(options)
    progress.info(f"ready: portrait3d make-asset PHOTO --generator diffusion --weights {out}")
