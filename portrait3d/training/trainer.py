"""The training loop of the back-view module F and the orbit model (R, C, V), on accelerate.

What trains (the rest, SD 1.5 UNet / VAE / text embedding, is frozen, as in the papers):

* ``back-view``: the reference UNet and the ControlNet;
* ``orbit``: the reference UNet, the ControlNet and the view modules of the MultiViewUNet.

One micro-step, per sample (a window of V views with R references; each sample has its own bank)::

    z0 = VAE(views) * 0.18215, eps ~ N(0, 1), t ~ U{0..999} (one per window), z_t = sqrt(abar_t) z0 + sqrt(1-abar_t) eps
    conditional (probability 1 - condition_dropout):
        bank = reference UNet(VAE(references), t)        clean reference latents, same timestep
        residuals = ControlNet(z_t, t, condition renders)
        pred = main UNet(z_t, t, bank, residuals)
    unconditional (inference's ``uc`` branch): pred = main UNet(z_t, t) with no bank and no residuals
        (orbit: ``unconditional_count`` = V, so the middle view module runs, as at inference)
    loss = mean((pred - eps)^2)

The DDPM schedule is SD 1.5's (the DDIM sampler's betas, :func:`~portrait3d.diffusion.pipelines.release_scheduler`).
Noise, timesteps, dropout and data order are drawn from generators seeded by (seed, micro-step, process), so a
resumed run repeats the uninterrupted one; ``accelerate``'s ``save_state`` / ``load_state`` carry the weights,
optimizer, learning-rate schedule, EMA and RNG states.

Run folder ``OUT/``::

    train.json                 the configuration (a resumed run must match it)
    log.jsonl                  one line per optimizer step: step, loss, lr
    checkpoints/step-NNNNNNN/  accelerate states (resume with --resume)
    weights/                   the weights folder the diffusion stages load (--weights OUT/weights)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from portrait3d import progress
from portrait3d.diffusion.reference import ReferenceBank, install_reference_processors
from portrait3d.errors import UserError
from portrait3d.training import data as training_data
from portrait3d.training.config import MODELS, TrainConfig, check

CHECKPOINTS = "checkpoints"
WEIGHTS = "weights"
LOG = "log.jsonl"
CONFIG = "train.json"
BACK_VIEW_SUBFOLDER = "back_view"
_NUM_TRAIN_TIMESTEPS = 1000


class TrainingBank(ReferenceBank):
    """A bank that stops recording once locked: gradient checkpointing re-runs the reference UNet in the backward
    pass, and those re-runs must not append a second copy of every entry."""

    def __init__(self) -> None:
        super().__init__()
        self.locked = False

    def record(self, block_index: int, hidden_states: torch.Tensor) -> None:
        if not self.locked:
            super().record(block_index, hidden_states)


class TrainingModel(nn.Module):
    """The modules one forward pass uses (the one module accelerate wraps for DDP); frozen ones have no grads."""

    def __init__(self, unet: nn.Module, reference_unet: nn.Module, controlnet: nn.Module, prompt_embeds: nn.Module):
        super().__init__()
        from portrait3d.diffusion.unet import MultiViewUNet

        self.unet, self.reference_unet, self.controlnet, self.prompt_embeds = (
            unet,
            reference_unet,
            controlnet,
            prompt_embeds,
        )
        self.multiview = isinstance(unet, MultiViewUNet)
        # The processors the pipelines install: the reference UNet writes the bank, the main UNet reads it.
        install_reference_processors(reference_unet, "write")
        install_reference_processors(unet.unet if self.multiview else unet, "read")

    def forward(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        reference_latents: torch.Tensor,
        conditions: torch.Tensor,
        conditional: torch.Tensor,
    ) -> torch.Tensor:
        """Noise predictions (B, V, 4, h, w).

        Args:
            noisy: (B, V, 4, h, w) noised latents of B samples of V views.
            timesteps: (B,) training timesteps (one per sample).
            reference_latents: (B, R, 4, h, w) clean reference latents.
            conditions: (B, V, 3, H, W) condition renders in [-1, 1].
            conditional: (B,) bool; False trains the unconditional branch (no bank, no ControlNet residuals).
        """
        predictions = []
        for b in range(noisy.shape[0]):
            latents, t = noisy[b], timesteps[b]
            views = latents.shape[0]
            bank, down, mid = None, None, None
            if bool(conditional[b]):
                refs = reference_latents[b]
                bank = TrainingBank()
                self.reference_unet(
                    refs,
                    t,
                    encoder_hidden_states=self.prompt_embeds(refs.shape[0]),
                    cross_attention_kwargs={"reference_bank": bank},
                    return_dict=False,
                )
                bank.locked = True
                down, mid = self.controlnet(
                    latents,
                    t,
                    encoder_hidden_states=self.prompt_embeds(views),
                    controlnet_cond=conditions[b],
                    return_dict=False,
                )
            context = self.prompt_embeds(views)
            if self.multiview:
                pred = self.unet(
                    latents,
                    t,
                    context,
                    num_views=views,
                    unconditional_count=0 if bank is not None else views,
                    reference_bank=bank,
                    down_block_additional_residuals=down,
                    mid_block_additional_residual=mid,
                )
            else:
                pred = self.unet(
                    latents,
                    t,
                    encoder_hidden_states=context,
                    down_block_additional_residuals=down,
                    mid_block_additional_residual=mid,
                    cross_attention_kwargs={"reference_bank": bank, "unconditional_count": 0},
                    return_dict=False,
                )[0]
            predictions.append(pred)
        return torch.stack(predictions)

    def trainable_modules(self) -> dict[str, nn.Module]:
        """The modules the papers train for this model (the view modules only, of the main UNet)."""
        modules = {"reference_unet": self.reference_unet, "controlnet": self.controlnet}
        if self.multiview:
            modules["view_modules"] = nn.ModuleList(
                [self.unet.down_view_modules, self.unet.mid_view_module, self.unet.up_view_modules]
            )
        return modules


# --- weights in and out -----------------------------------------------------------------------------------------
def pipeline_class(model: str):
    from portrait3d.diffusion.pipelines import BackViewPipeline, Portrait360Pipeline

    return BackViewPipeline if model == "back-view" else Portrait360Pipeline


def init_folder(model: str, init: Path) -> Path:
    """The pipeline folder of ``model`` inside a weights folder (``WEIGHTS/`` or ``WEIGHTS/back_view/``)."""
    if model == "back-view" and (init / BACK_VIEW_SUBFOLDER / "model_index.json").is_file():
        return init / BACK_VIEW_SUBFOLDER
    return init


def initial_components(model: str, config: TrainConfig, init: str | Path | None) -> dict[str, Any]:
    """The starting components, float32: from ``--init`` (a converted or exported weights folder), or random
    tiny ones."""
    if init is not None:
        from portrait3d.diffusion.stages import check_weights

        root = Path(init)
        folder = init_folder(model, root)
        check_weights(folder, root, pipeline_class(model).__name__)
        try:
            pipeline = pipeline_class(model).from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"--init {folder}: cannot load the weights ({first})") from exc
        return {k: v for k, v in pipeline.components.items()}
    if config.architecture != "tiny":
        raise UserError(
            f"--config {config.architecture}: needs --init WEIGHTS (a folder written by `portrait3d convert-weights` "
            "or by a previous training run); only the tiny architecture starts from random weights"
        )
    from portrait3d.diffusion.components import TINY, random_components

    return random_components(TINY, multiview=model == "orbit", seed=config.seed)


def _copy_tree(source: Path, target: Path, skip: str | None = None) -> None:
    for item in source.iterdir():
        if item.name == skip or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, target / item.name)
        else:
            shutil.copy2(item, target / item.name)


# --- the trainer --------------------------------------------------------------------------------------------------
class Trainer:
    """Train one model (``back-view`` or ``orbit``) into ``out``; ``train()`` runs it, ``export()`` writes weights.

    Args:
        model: ``back-view`` or ``orbit``.
        config: the configuration (:mod:`portrait3d.training.config`).
        data: the dataset folder (one subject or a folder of subjects), or a ready ``torch`` dataset.
        out: the training folder.
        init: weights folder to start from (fine-tuning); None: random tiny weights.
        resume: continue from the newest checkpoint in ``out`` (a fresh start when there is none).
        cpu: train on the CPU even when a GPU is there.
    """

    def __init__(
        self,
        model: str,
        config: TrainConfig,
        data: str | Path | torch.utils.data.Dataset,
        out: str | Path,
        init: str | Path | None = None,
        resume: bool = False,
        cpu: bool = False,
    ):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_scheduler

        from portrait3d.diffusion.pipelines import release_scheduler

        if model not in MODELS:
            raise UserError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
        check(config)
        self.model_name, self.config, self.out = model, config, Path(out)
        self.init = Path(init) if init is not None else None
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            cpu=cpu,
            # Unconditional samples leave the reference UNet and the ControlNet unused; the middle view module is
            # used only by them.
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        self.dataset = data if isinstance(data, torch.utils.data.Dataset) else self._dataset(Path(data))
        components = initial_components(model, config, self.init)
        self._check_out(resume)
        self.vae = components["vae"].requires_grad_(False).eval().float().to(self.accelerator.device)
        for frozen in (components["unet"], components["prompt_embeds"]):
            frozen.requires_grad_(False)
        network = TrainingModel(
            components["unet"], components["reference_unet"], components["controlnet"], components["prompt_embeds"]
        ).float()
        trainable = network.trainable_modules()
        for module in trainable.values():
            module.requires_grad_(True).train()
        if config.gradient_checkpointing:
            for module in (network.unet, network.reference_unet, network.controlnet):
                module.enable_gradient_checkpointing()
        self.parameters = [p for m in trainable.values() for p in m.parameters()]
        self.noise_scheduler = DDPMScheduler.from_config(release_scheduler().config)

        optimizer = torch.optim.AdamW(
            self.parameters,
            lr=config.lr,
            betas=(config.adam_beta1, config.adam_beta2),
            weight_decay=config.adam_weight_decay,
            eps=config.adam_epsilon,
        )
        try:
            self.lr_scheduler = get_scheduler(
                config.lr_scheduler,
                optimizer=optimizer,
                num_warmup_steps=config.lr_warmup_steps,
                num_training_steps=config.steps,
            )
        except ValueError as exc:
            raise UserError(f"lr scheduler: {exc}") from exc
        # The schedule is stepped here once per optimizer step (not prepared: accelerate would step it per process).
        self.network, self.optimizer = self.accelerator.prepare(network, optimizer)
        self.accelerator.register_for_checkpointing(self.lr_scheduler)
        self.ema = None
        if config.ema:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(self.parameters, decay=config.ema_decay)
            self.ema.to(self.accelerator.device)
            self.accelerator.register_for_checkpointing(self.ema)
        self.step = 0
        if resume:
            self._load_newest()

    # --- set-up -------------------------------------------------------------------------------------------------
    def _dataset(self, folder: Path) -> torch.utils.data.Dataset:
        subjects = training_data.find_subjects(folder)
        if self.model_name == "back-view":
            return training_data.BackViews(subjects, self.config.image_size)
        return training_data.OrbitWindows(subjects, self.config.window, self.config.image_size)

    def _config_document(self) -> dict:
        return {
            "model": self.model_name,
            "init": str(self.init) if self.init else None,
            **dataclasses.asdict(self.config),
        }

    def _check_out(self, resume: bool) -> None:
        """A new run needs an empty folder; a resumed one the same model and architecture as before."""
        record = self.out / CONFIG
        if record.is_file():
            before = json.loads(record.read_text())
            if not resume:
                raise UserError(f"--out {self.out}: holds a training run already; pass --resume or another --out")
            for key in ("model", "architecture", "image_size", "window", "batch_size", "gradient_accumulation_steps"):
                now = self._config_document()[key]
                if before.get(key) != now:
                    raise UserError(f"--resume: {key} was {before.get(key)!r} in {record}, now {now!r}")
        elif self.out.exists() and any(self.out.iterdir()) and not resume:
            raise UserError(f"--out {self.out}: not empty and not a training folder")
        self.accelerator.wait_for_everyone()  # every process has checked before the first one writes
        if self.accelerator.is_main_process:
            from portrait3d.run import atomic_write_json

            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(record, self._config_document())
        self.accelerator.wait_for_everyone()

    def checkpoints(self) -> list[Path]:
        """Saved checkpoints, oldest first."""
        return sorted((self.out / CHECKPOINTS).glob("step-[0-9]*"))

    def _load_newest(self) -> None:
        found = self.checkpoints()
        if not found:
            progress.info(f"{self.out}: no checkpoint yet, starting at step 0")
            return
        self.accelerator.load_state(str(found[-1]))
        self.step = int(found[-1].name.removeprefix("step-"))
        progress.info(f"resumed from {found[-1]} (step {self.step})")
        if self.accelerator.is_main_process:
            self._truncate_log()

    def _truncate_log(self) -> None:
        from portrait3d.run import atomic_write_text

        log = self.out / LOG
        if log.is_file():
            kept = [line for line in log.read_text().splitlines() if line and json.loads(line)["step"] <= self.step]
            atomic_write_text(log, "".join(f"{line}\n" for line in kept))

    def dataloader(self, start_micro_step: int) -> torch.utils.data.DataLoader:
        """Batches from micro-step ``start_micro_step`` on, this process's share (see StepBatchSampler)."""
        sampler = training_data.StepBatchSampler(
            len(self.dataset),
            self.config.batch_size,
            self.config.seed,
            rank=self.accelerator.process_index,
            world=self.accelerator.num_processes,
            start=start_micro_step,
        )
        return torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=self.config.num_workers,
            pin_memory=self.accelerator.device.type == "cuda",
        )

    # --- one step -------------------------------------------------------------------------------------------------
    def generator(self, micro_step: int) -> torch.Generator:
        """The generator of micro-step ``micro_step`` on this process (noise, timesteps, dropout, VAE samples)."""
        seed = (self.config.seed * 1_000_003 + micro_step) * 1009 + self.accelerator.process_index
        return torch.Generator().manual_seed(seed % (2**63))

    @torch.no_grad()
    def encode(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, 4, H/8, W/8) scaled latents (posterior samples, as the pipelines)."""
        images = images.to(self.accelerator.device, torch.float32)
        latents = []
        for chunk in images.split(8):
            posterior = self.vae.encode(chunk).latent_dist
            noise = torch.randn(posterior.mean.shape, generator=generator).to(chunk.device)
            latents.append(posterior.mean + posterior.std * noise)
        return torch.cat(latents) * self.vae.config.scaling_factor

    def loss(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator, timesteps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The epsilon-prediction MSE of one batch; ``timesteps`` (B,) fixes them and turns dropout off
        (evaluation)."""
        views, references = batch["views"], batch["references"]
        count, num_views = views.shape[:2]
        device = self.accelerator.device
        latents = self.encode(views.flatten(0, 1), generator)
        reference_latents = self.encode(references.flatten(0, 1), generator)
        latents = latents.view(count, num_views, *latents.shape[1:])
        reference_latents = reference_latents.view(count, references.shape[1], *reference_latents.shape[1:])
        noise = torch.randn(latents.shape, generator=generator).to(device)
        if timesteps is None:
            timesteps = torch.randint(0, _NUM_TRAIN_TIMESTEPS, (count,), generator=generator)
            conditional = torch.rand(count, generator=generator) >= self.config.condition_dropout
        else:
            conditional = torch.ones(count, dtype=torch.bool)
        timesteps = timesteps.to(device)
        per_view = timesteps.repeat_interleave(num_views)
        noisy = self.noise_scheduler.add_noise(latents.flatten(0, 1), noise.flatten(0, 1), per_view)
        noisy = noisy.view_as(latents)
        with self.accelerator.autocast():
            prediction = self.network(
                noisy, timesteps, reference_latents, batch["conditions"].to(device), conditional.to(device)
            )
        return F.mse_loss(prediction.float(), noise.float())

    @torch.no_grad()
    def evaluate(self, batch: dict[str, torch.Tensor], seed: int = 0, points: int = 4) -> float:
        """Conditional loss of ``batch`` at ``points`` evenly spaced timesteps with fixed noise (comparable across
        steps)."""
        self.network.eval()
        try:
            count = batch["views"].shape[0]
            total = 0.0
            for k in range(points):
                t = int((k + 0.5) * _NUM_TRAIN_TIMESTEPS / points)
                generator = torch.Generator().manual_seed(seed * 7919 + k)
                total += float(self.loss(batch, generator, torch.full((count,), t)))
            return total / points
        finally:
            self.network.train()

    # --- the loop --------------------------------------------------------------------------------------------------
    def train(self, stop_after: int | None = None) -> list[float]:
        """Train up to ``config.steps`` optimizer steps (or ``stop_after`` more); returns this call's step losses
        (mean over micro-steps and processes). Checkpoints and the final export happen as configured."""
        config, accelerator = self.config, self.accelerator
        accumulation = config.gradient_accumulation_steps
        end = config.steps if stop_after is None else min(config.steps, self.step + stop_after)
        batches = iter(self.dataloader(self.step * accumulation))
        losses: list[float] = []
        started = time.perf_counter()
        self.network.train()
        while self.step < end:
            progress.raise_if_interrupted()
            micro_losses = []
            for k in range(accumulation):
                micro_step = self.step * accumulation + k
                batch = next(batches)
                last = k == accumulation - 1
                sync = contextlib.nullcontext() if last else accelerator.no_sync(self.network)
                with sync:
                    loss = self.loss(batch, self.generator(micro_step))
                    accelerator.backward(loss / accumulation)
                micro_losses.append(loss.detach())
            if config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(self.parameters, config.max_grad_norm)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.step(self.parameters)
            self.step += 1
            value = float(accelerator.reduce(torch.stack(micro_losses).mean(), reduction="mean"))
            losses.append(value)
            self._log(value, started, len(losses))
            if self.step % config.checkpoint_every == 0 or self.step == config.steps:
                self.save_checkpoint()
            if config.export_every and self.step % config.export_every == 0 and self.step != config.steps:
                self.export()
        if self.step >= config.steps:
            self.export()
        return losses

    def _log(self, loss: float, started: float, done: int) -> None:
        if not self.accelerator.is_main_process:
            return
        lr = self.lr_scheduler.get_last_lr()[0]
        with open(self.out / LOG, "a") as fh:
            fh.write(json.dumps({"step": self.step, "loss": loss, "lr": lr}) + "\n")
        if self.step % self.config.log_every == 0 or self.step == self.config.steps:
            rate = done / max(time.perf_counter() - started, 1e-9)
            progress.info(f"step {self.step}/{self.config.steps}  loss {loss:.4f}  lr {lr:.2e}  {rate:.2f} steps/s")

    def save_checkpoint(self) -> Path:
        """Save the accelerate state as ``checkpoints/step-NNNNNNN`` (written beside, then renamed); keep the newest
        ``keep_checkpoints``."""
        accelerator = self.accelerator
        folder = self.out / CHECKPOINTS / f"step-{self.step:07d}"
        tmp = folder.with_name(f".tmp-{folder.name}")
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
            for old in self.checkpoints()[: -self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        return folder

    def export(self, folder: str | Path | None = None) -> Path:
        """Write the weights folder (default ``OUT/weights``) that ``--weights`` of the diffusion stages loads.

        The trained pipeline goes to its place (orbit: the folder itself; back view: ``back_view/``); the other
        half is copied from ``--init`` when that was a whole weights folder. EMA weights are exported when kept.
        """
        from portrait3d.diffusion.pipelines import release_scheduler
        from portrait3d.run import atomic_dir

        accelerator = self.accelerator
        target = Path(folder) if folder is not None else self.out / WEIGHTS
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            network = accelerator.unwrap_model(self.network)
            if self.ema is not None:
                self.ema.store(self.parameters)
                self.ema.copy_to(self.parameters)
            try:
                pipeline = pipeline_class(self.model_name)(
                    unet=network.unet,
                    reference_unet=network.reference_unet,
                    controlnet=network.controlnet,
                    vae=self.vae,
                    scheduler=release_scheduler(),
                    prompt_embeds=network.prompt_embeds,
                )
                with atomic_dir(target) as tmp:
                    if self.model_name == "back-view":
                        if self.init is not None and init_folder("back-view", self.init) != self.init:
                            _copy_tree(self.init, tmp, skip=BACK_VIEW_SUBFOLDER)
                        pipeline.save_pretrained(str(tmp / BACK_VIEW_SUBFOLDER), safe_serialization=True)
                    else:
                        pipeline.save_pretrained(str(tmp), safe_serialization=True)
                        if self.init is not None and (self.init / BACK_VIEW_SUBFOLDER).is_dir():
                            shutil.copytree(self.init / BACK_VIEW_SUBFOLDER, tmp / BACK_VIEW_SUBFOLDER)
            finally:
                if self.ema is not None:
                    self.ema.restore(self.parameters)
            progress.info(f"weights written to {target} (use --weights {target})")
        accelerator.wait_for_everyone()
        return target


def train(
    model: str,
    config: TrainConfig,
    data: str | Path,
    out: str | Path,
    init: str | Path | None = None,
    resume: bool = False,
    cpu: bool = False,
) -> Trainer:
    """Build a :class:`Trainer`, run it to ``config.steps`` and return it."""
    trainer = Trainer(model, config, data, out, init=init, resume=resume, cpu=cpu)
    trainer.train()
    return trainer
