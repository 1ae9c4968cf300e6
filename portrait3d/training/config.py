"""Training configurations: one dataclass (its field docstrings are the help) and named presets.

The figures of the ``sd15`` preset follow the DiffPortrait360 supplementary (A.2): SD 1.5 frozen, learning rate
1e-5, 60 000 iterations per stage, 512-pixel crops, windows of 8 consecutive views. Dropping the conditions of a
fraction of the samples (so that the model also learns the unconditional branch that classifier-free guidance
needs) is not described in the papers; 10 % is the usual figure for SD-based models and the default here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from portrait3d.errors import UserError

MODELS = ("back-view", "orbit")
"""``back-view``: module F (reference UNet + ControlNet); ``orbit``: R, C and V of the orbit model."""


@dataclass
class TrainConfig:
    """Everything a training run needs besides its data, output folder and ``--init`` weights."""

    architecture: str = "sd15"
    """Component sizes when there is no ``--init``: ``tiny`` (random weights, for tests and smoke runs) or
    ``sd15`` (needs ``--init``: the frozen backbone must come from real weights)."""
    image_size: int = 512
    """Side of the training images in pixels (a multiple of 8); every image is resized to it."""
    window: int = 8
    """Consecutive views per orbit window (8 as released; at most the view modules' 32)."""
    batch_size: int = 1
    """Samples (orbit: windows) per process and micro-step."""
    gradient_accumulation_steps: int = 1
    """Micro-steps summed into one optimizer step."""
    steps: int = 60_000
    """Optimizer steps of the run (60 000 per stage in the paper)."""
    lr: float = 1e-5
    """AdamW learning rate (1e-5 in the paper)."""
    lr_scheduler: str = "constant"
    """diffusers ``get_scheduler`` name: constant, constant_with_warmup, linear, cosine, ..."""
    lr_warmup_steps: int = 0
    """Warm-up optimizer steps of the learning-rate schedule."""
    adam_beta1: float = 0.9
    """AdamW beta 1."""
    adam_beta2: float = 0.999
    """AdamW beta 2."""
    adam_weight_decay: float = 1e-2
    """AdamW weight decay."""
    adam_epsilon: float = 1e-8
    """AdamW epsilon."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (0: none)."""
    condition_dropout: float = 0.1
    """Probability that a sample is trained as the unconditional guidance branch: no reference bank and no
    ControlNet residuals (and, for the orbit model, the middle view module on), as inference's ``uc`` branch."""
    mixed_precision: str = "no"
    """accelerate mixed precision: no, fp16 or bf16 (trainable weights stay float32)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, about a third more time)."""
    ema: bool = False
    """Keep an exponential moving average of the trained weights and export it."""
    ema_decay: float = 0.9999
    """EMA decay."""
    checkpoint_every: int = 1000
    """Optimizer steps between resumable checkpoints (``OUT/checkpoints/step-NNNNNNN``)."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept (older ones are deleted)."""
    export_every: int = 0
    """Optimizer steps between exports of the weights folder (0: only at the end)."""
    log_every: int = 10
    """Optimizer steps between progress lines (every step goes to ``OUT/log.jsonl``)."""
    seed: int = 0
    """Seed of the initial weights (tiny), the data order, the noise, the timesteps and the dropout."""
    num_workers: int = 0
    """DataLoader worker processes per training process."""


PRESETS: dict[str, TrainConfig] = {
    "sd15": TrainConfig(),
    "tiny": TrainConfig(
        architecture="tiny",
        image_size=32,
        steps=30,
        lr=1e-3,
        checkpoint_every=10,
        log_every=5,
    ),
}
"""Named presets for ``portrait3d train --config``."""


def preset(name: str, **overrides) -> TrainConfig:
    """The preset ``name`` with some fields replaced (None values are ignored)."""
    if name not in PRESETS:
        raise UserError(f"--config must be one of {', '.join(PRESETS)}, got {name!r}")
    return dataclasses.replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


def check(config: TrainConfig) -> None:
    """One-line errors for impossible settings."""
    if config.architecture not in ("tiny", "sd15"):
        raise UserError(f"architecture must be tiny or sd15, got {config.architecture!r}")
    if config.image_size < 8 or config.image_size % 8:
        raise UserError(f"image size must be a positive multiple of 8, got {config.image_size}")
    if not 1 <= config.window <= 32:
        raise UserError(f"window must lie in 1..32, got {config.window}")
    for name in ("batch_size", "gradient_accumulation_steps", "steps", "checkpoint_every", "keep_checkpoints"):
        if getattr(config, name) < 1:
            raise UserError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(config, name)}")
    if not config.lr > 0:
        raise UserError(f"--lr must be positive, got {config.lr}")
    if not 0 <= config.condition_dropout < 1:
        raise UserError(f"condition dropout must lie in [0, 1), got {config.condition_dropout}")
    if config.mixed_precision not in ("no", "fp16", "bf16"):
        raise UserError(f"--mixed-precision must be no, fp16 or bf16, got {config.mixed_precision!r}")
    if not 0 < config.ema_decay < 1:
        raise UserError(f"EMA decay must lie in (0, 1), got {config.ema_decay}")
