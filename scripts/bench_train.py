"""Training speed: optimizer steps per second of the orbit (or back-view) trainer, and peak GPU memory.

    python scripts/bench_train.py                                  # tiny config, CPU, 32 px, window of 8
    python scripts/bench_train.py --config sd15 --device cuda      # SD 1.5 sizes, random weights, 512 px

The data is synthetic (random images in the training layout, one subject of 16 views); the weights are random
at the chosen architecture (for sd15 a random-weight folder is written first: no download), so the figure is the
cost of one step, not of a real run. Prints one line per setting.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_subject(root: Path, size: int, views: int = 16) -> None:
    import numpy as np
    from PIL import Image

    from portrait3d import cameras
    from portrait3d.training import data

    rng = np.random.default_rng(0)
    for folder in ("input", data.VIEWS, data.CONDITIONS):
        (root / folder).mkdir(parents=True, exist_ok=True)

    def save(path: Path) -> None:
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)

    save(root / data.FRONT)
    named = {f"{cameras.view_name(i)}.png": cam for i, cam in enumerate(cameras.orbit(views))}
    for name in named:
        save(root / data.VIEWS / name)
        save(root / data.CONDITIONS / name)
    cameras.write_labels(root / data.CAMERAS, named)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", choices=("tiny", "sd15"))
    parser.add_argument("--model", default="orbit", choices=("orbit", "back-view"))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--mixed-precision", default=None, help="no, fp16, bf16 (default: no on CPU, fp16 on CUDA)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()

    import torch

    import portrait3d.diffusion  # noqa: F401 - hides an unloadable torchvision before diffusers is imported
    from portrait3d.training.config import preset
    from portrait3d.training.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = args.device == "cpu"
    if not cpu and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available here")
    mixed = args.mixed_precision or ("no" if cpu else "fp16")
    config = preset(
        args.config,
        steps=args.steps + 2,
        checkpoint_every=10**9,
        condition_dropout=0.0,
        mixed_precision=mixed,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_subject(tmp / "data", config.image_size)
        init = None
        if args.config == "sd15":
            from portrait3d.diffusion.components import SD15, random_back_view, random_portrait360

            init = tmp / "weights"
            random_portrait360(SD15).save_pretrained(init)
            random_back_view(SD15).save_pretrained(init / "back_view")
        trainer = Trainer(args.model, config, tmp / "data", tmp / "out", init=init, cpu=cpu)
        trainer.export = lambda folder=None: None  # timing only: no weights folder
        trainer.train(stop_after=2)
        if not cpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        trainer.train(stop_after=args.steps)
        if not cpu:
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / args.steps
    memory = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if not cpu else ""
    window = 1 if args.model == "back-view" else config.window
    print(
        f"{args.model} {args.config} {config.image_size}px window {window} on {args.device} "
        f"(threads {torch.get_num_threads()}, mixed precision {mixed}, checkpointing {args.gradient_checkpointing}): "
        f"{1 / seconds:.2f} steps/s, {seconds:.3f} s/step{memory}"
    )


if __name__ == "__main__":
    main()
