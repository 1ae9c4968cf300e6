"""Diffusion subcommands: ``back-view``, ``orbit-views`` (and ``convert-weights``, registered separately)."""

from __future__ import annotations

import argparse

from portrait3d.commands import add_stage_flags, open_existing


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    _register_back_view(subparsers, common)
    _register_orbit_views(subparsers, common)
    _register_convert_weights(subparsers, common)


def _add_generation_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder")
    p.add_argument("--weights", required=True, help="converted weights folder (portrait3d convert-weights --out)")
    p.add_argument("--device", default="auto", help="torch device (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps (default: 50, as released)")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance (default: 3)")
    p.add_argument("--eta", type=float, default=0.5, help="DDIM eta (default: 0.5)")
    p.add_argument("--size", type=int, default=512, help="output size in pixels (default: 512)")
    p.add_argument(
        "--scheduler",
        choices=("ddim", "dpm++"),
        default="ddim",
        help="sampler: ddim as released, or dpm++ (DPM-Solver++, use about --steps 20) (default: ddim)",
    )
    p.add_argument(
        "--conditions",
        help="folder of condition renders with a dataset.json of their cameras (default: the proxy renders)",
    )
    p.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no GPU (very slow)")
    add_stage_flags(p)


def _register_back_view(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "back-view",
        parents=[common],
        help="generate the back view (views/back.png) with the diffusion back-view module",
        description="Generate RUN/views/back.png from RUN/input/aligned.png and the condition render of the "
        "camera behind the head (BackViewPipeline).",
    )
    _add_generation_options(p)
    p.set_defaults(func=_back_view)


def _register_orbit_views(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "orbit-views",
        parents=[common],
        help="generate the orbit views (views/NNNN.png) with the diffusion model",
        description="Generate one view per condition render (RUN/views/NNNN.png and RUN/views/cameras.json) "
        "from the front photo and the back view (Portrait360Pipeline).",
    )
    _add_generation_options(p)
    p.add_argument("--window", type=int, default=8, help="views denoised together (default: 8)")
    p.add_argument(
        "--initial",
        default="auto",
        help="folder of initial images named like the condition renders, or 'none' for Gaussian noise "
        "(default: RUN/proxy/views with the proxy conditions)",
    )
    p.set_defaults(func=_orbit_views)


def _options(args: argparse.Namespace, cls):
    from portrait3d import limits

    limits.seed(args.seed)
    fields = dict(
        weights=args.weights,
        device=args.device,
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
        eta=args.eta,
        size=args.size,
        allow_cpu=args.allow_cpu,
        conditions=args.conditions,
        scheduler=args.scheduler,
    )
    if hasattr(args, "window"):
        fields.update(window=args.window, initial=args.initial)
    return cls(**fields)


def _run_diffusion_stage(args: argparse.Namespace, stage) -> None:
    """Run a diffusion stage; the run is then a diffusion run (``portrait3d proxy`` leaves its views alone)."""
    from portrait3d.runner import run_stage

    run = open_existing(args)
    with run.lock(args.wait):
        settings = run.settings()
        if settings.get("generator") != "diffusion":
            run.write_settings({**settings, "generator": "diffusion"})
        run_stage(run, stage, force=args.force)


def _back_view(args: argparse.Namespace) -> None:
    from portrait3d.diffusion.stages import DiffusionOptions, back_view_stage

    _run_diffusion_stage(args, back_view_stage(_options(args, DiffusionOptions)))


def _orbit_views(args: argparse.Namespace) -> None:
    from portrait3d.diffusion.stages import OrbitOptions, orbit_views_stage

    _run_diffusion_stage(args, orbit_views_stage(_options(args, OrbitOptions)))


def _register_convert_weights(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "convert-weights",
        parents=[common],
        help="convert the released DiffPortrait360 checkpoints into a local diffusers weights folder",
        description="Check the released LDM-style checkpoints against the reference layout and write one "
        "diffusers folder: the Portrait360Pipeline in OUT and the BackViewPipeline in OUT/back_view "
        "(safetensors, configs, model_index.json, the precomputed empty-prompt embedding). Nothing is downloaded.",
    )
    p.add_argument("--orbit", required=True, help="orbit-view model checkpoint (model_state-340000.th)")
    p.add_argument("--back-view", required=True, help="back-view model checkpoint (back_head-230000.th)")
    p.add_argument("--out", required=True, help="weights folder to write (replaced only when the conversion succeeds)")
    add_conversion_options(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an earlier convert-weights output in --out (no other folder is ever replaced)",
    )
    p.set_defaults(func=_convert_weights)


def add_conversion_options(p: argparse.ArgumentParser) -> None:
    """``--dtype`` and ``--layout``: the options of the conversion that convert-weights and fetch-weights run."""
    p.add_argument(
        "--dtype",
        choices=("keep", "float16", "float32"),
        default="keep",
        help="storage dtype of the converted weights (default: keep the checkpoint's)",
    )
    p.add_argument(
        "--layout",
        help="JSON file with the model sizes (a CheckpointLayout dump); default: the released SD 1.5 sizes",
    )


def _convert_weights(args: argparse.Namespace) -> None:
    from pathlib import Path

    from portrait3d.run import check_replaceable

    out = Path(args.out)
    check_replaceable(out, "convert-weights", force=args.force)  # --force replaces only weights it wrote

    from portrait3d.diffusion.convert import ConvertOptions, convert_weights, load_layout

    convert_weights(args.orbit, args.back_view, out, ConvertOptions(layout=load_layout(args.layout), dtype=args.dtype))
