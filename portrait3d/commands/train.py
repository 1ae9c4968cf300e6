"""Training subcommands: ``train back-view|orbit`` and ``train convert-nerfstudio``.

Multi-GPU / multi-node: launch the same command with accelerate, e.g.
``accelerate launch --num_processes 8 -m portrait3d train orbit --data DATA --out OUT --init WEIGHTS``.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "train",
        parents=[common],
        help="train or fine-tune the back-view module or the orbit model (accelerate)",
        description="Train the DiffPortrait360 modules on multi-view heads. The SD 1.5 backbone stays frozen; "
        "back-view trains the reference UNet and the ControlNet, orbit also the view modules. "
        "Run under `accelerate launch` for several GPUs or machines.",
    )
    models = p.add_subparsers(dest="model", metavar="MODEL")
    models.required = True
    for name, text in (
        ("back-view", "the back-view module F (front photo -> 180-degree view)"),
        ("orbit", "the orbit model: reference UNet R, ControlNet C, view modules V"),
    ):
        m = models.add_parser(name, parents=[common], help=f"train {text}", description=f"Train {text}.")
        _add_training_options(m)
        m.set_defaults(func=_train)
    c = models.add_parser(
        "convert-nerfstudio",
        parents=[common],
        help="turn a nerfstudio transforms.json capture into a training subject folder",
        description="Write one subject folder of the training data layout (views/, views/cameras.json, "
        "input/aligned.png, proxy/conditions/) from a nerfstudio capture whose world is y up, face toward +z.",
    )
    c.add_argument("transforms", help="the capture's transforms.json")
    c.add_argument("--out", required=True, help="subject folder to write")
    c.add_argument("--size", type=int, default=512, help="image side in pixels (default: 512)")
    c.add_argument("--conditions", help="folder of condition renders named like the capture's image files")
    c.add_argument("--front", help="file_path of the front photo frame (default: the frame nearest +z)")
    c.set_defaults(func=_convert)


def _add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset: a subject folder or a folder of subject folders")
    p.add_argument("--out", required=True, help="training folder (checkpoints, log.jsonl, weights/)")
    p.add_argument("--init", help="weights folder to start from (portrait3d convert-weights or a training run)")
    p.add_argument("--config", default="sd15", help="preset: tiny or sd15 (default: sd15)")
    p.add_argument("--steps", type=int, help="optimizer steps (default: the preset's)")
    p.add_argument("--batch-size", type=int, help="samples (windows) per process and micro-step")
    p.add_argument("--gradient-accumulation", type=int, help="micro-steps per optimizer step")
    p.add_argument("--lr", type=float, help="learning rate (default: the preset's; 1e-5 for sd15)")
    p.add_argument("--image-size", type=int, help="training image side in pixels")
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), help="accelerate mixed precision")
    p.add_argument("--gradient-checkpointing", action="store_true", default=None, help="recompute activations")
    p.add_argument("--ema", action="store_true", default=None, help="keep and export an EMA of the weights")
    p.add_argument("--checkpoint-every", type=int, help="optimizer steps between checkpoints")
    p.add_argument("--condition-dropout", type=float, help="probability of an unconditional sample (0.1)")
    p.add_argument("--seed", type=int, help="seed of the data order, noise and dropout")
    p.add_argument("--num-workers", type=int, help="data loader workers per process")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is there")


def _train(args: argparse.Namespace) -> int:
    from portrait3d.training.config import preset
    from portrait3d.training.trainer import train

    config = preset(
        args.config,
        steps=args.steps,
        batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation,
        lr=args.lr,
        image_size=args.image_size,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing,
        ema=args.ema,
        checkpoint_every=args.checkpoint_every,
        condition_dropout=args.condition_dropout,
        seed=args.seed,
        num_workers=args.num_workers,
    )
    train(args.model, config, args.data, args.out, init=args.init, resume=args.resume, cpu=args.cpu)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from portrait3d import progress
    from portrait3d.training.data import convert_nerfstudio

    out = convert_nerfstudio(args.transforms, args.out, size=args.size, conditions=args.conditions, front=args.front)
    progress.info(f"subject written to {out}")
    return 0
