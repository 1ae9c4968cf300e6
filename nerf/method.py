"""portrait3d's instant-NGP as a nerfstudio method (``portrait3d-ngp``).

nerfstudio finds it through its plugin entry point::

    [project.entry-points."nerfstudio.method_configs"]
    portrait3d-ngp = "nerf.method:portrait3d_ngp"

(or, without installing, ``NERFSTUDIO_METHOD_CONFIGS=portrait3d-ngp=nerf.method:portrait3d_ngp``).
Then ``ns-train portrait3d-ngp --data RUN/transforms.json`` trains it and
``ns-viewer --load-config RUN/nerf/config.yml`` / ``ns-render`` load what
``portrait3d fit-nerf`` wrote. The model wraps :class:`nerf.volume.NGPVolume`
(hash grid field + occupancy grid; tinycudann and nerfacc on CUDA, pure torch
elsewhere). It builds no LPIPS metric (nerfstudio's downloads AlexNet weights):
its evaluation metrics are PSNR and SSIM only.

Importing this module imports nerfstudio, through
:func:`portrait3d.torchvision_compat.import_nerfstudio` so that it also imports where
torchvision cannot load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch.nn import Parameter

from portrait3d import torchvision_compat

torchvision_compat.import_nerfstudio()

from nerfstudio.cameras.rays import RayBundle  # noqa: E402
from nerfstudio.configs.base_config import ViewerConfig  # noqa: E402
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig  # noqa: E402
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig  # noqa: E402
from nerfstudio.engine.callbacks import (  # noqa: E402
    TrainingCallback,
    TrainingCallbackAttributes,
    TrainingCallbackLocation,
)
from nerfstudio.engine.optimizers import AdamOptimizerConfig  # noqa: E402
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig  # noqa: E402
from nerfstudio.engine.trainer import TrainerConfig  # noqa: E402
from nerfstudio.models.base_model import Model, ModelConfig  # noqa: E402
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig  # noqa: E402
from nerfstudio.plugins.types import MethodSpecification  # noqa: E402

from nerf.dataset import DATAPARSER_SETTINGS  # noqa: E402
from nerf.metrics import psnr, ssim  # noqa: E402
from nerf.volume import NGPVolume, VolumeConfig, photometric_loss  # noqa: E402

METHOD_NAME = "portrait3d-ngp"


@dataclass
class PortraitNGPModelConfig(ModelConfig):
    """Model settings of ``portrait3d-ngp``."""

    _target: type = field(default_factory=lambda: PortraitNGPModel)
    enable_collider: bool = False
    """The volume clips rays to its own cube; no collider."""
    collider_params: dict[str, float] | None = None
    """Unused (no collider)."""
    volume: VolumeConfig = field(default_factory=VolumeConfig)
    """Field, occupancy grid and ray marching."""
    background_color: Literal["random", "white", "black"] = "random"
    """Background behind the volume while training; renders use white."""
    mask_loss_weight: float = 0.1
    """Weight of the loss between accumulated opacity and the images' alpha."""
    occupancy_warmup_steps: int = 256
    """Steps before the occupancy grid starts following the density."""
    occupancy_update_every: int = 16
    """Steps between occupancy grid updates."""


class PortraitNGPModel(Model):
    """nerfstudio model around :class:`nerf.volume.NGPVolume`."""

    config: PortraitNGPModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
        self.volume = NGPVolume(self.config.volume, device_type)

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> list[TrainingCallback]:
        def update_occupancy(step: int) -> None:
            if step >= self.config.occupancy_warmup_steps:
                self.volume.grid.update(self.volume.density, self.config.volume.density_threshold)

        return [
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                update_every_num_iters=self.config.occupancy_update_every,
                func=update_occupancy,
            )
        ]

    def get_param_groups(self) -> dict[str, list[Parameter]]:
        return {"fields": list(self.volume.parameters())}

    def _background(self, num_rays: int, device: torch.device) -> torch.Tensor:
        if self.training and self.config.background_color == "random":
            return torch.rand(num_rays, 3, device=device)
        value = 0.0 if self.config.background_color == "black" else 1.0
        return torch.full((num_rays, 3), value, device=device)

    def get_outputs(self, ray_bundle: RayBundle) -> dict[str, torch.Tensor]:  # type: ignore[override]
        origins = ray_bundle.origins.reshape(-1, 3)
        directions = ray_bundle.directions.reshape(-1, 3)
        background = self._background(origins.shape[0], origins.device)
        out = self.volume.render_rays(origins, directions, background, jitter=self.training)
        return {
            "rgb": out["rgb"],
            "accumulation": out["accumulation"][:, None],
            "depth": out["depth"][:, None],
            "background": background,
        }

    def _target(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        image = batch["image"].to(outputs["rgb"].device).float()
        return image if image.shape[-1] == 4 else torch.cat([image, torch.ones_like(image[..., :1])], dim=-1)

    def get_metrics_dict(self, outputs, batch) -> dict[str, torch.Tensor]:
        target = self._target(outputs, batch)
        gt = target[..., :3] * target[..., 3:] + outputs["background"] * (1.0 - target[..., 3:])
        return {"psnr": torch.tensor(psnr(_numpy(outputs["rgb"]), _numpy(gt)))}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> dict[str, torch.Tensor]:
        target = self._target(outputs, batch)
        return photometric_loss(
            outputs["rgb"],
            outputs["accumulation"][..., 0],
            target,
            outputs["background"],
            self.config.mask_loss_weight,
        )

    def get_image_metrics_and_images(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        image = batch["image"].to(outputs["rgb"].device).float()
        if image.shape[-1] == 4:  # renders are over white
            image = image[..., :3] * image[..., 3:] + (1.0 - image[..., 3:])
        rgb = outputs["rgb"]
        metrics = {"psnr": psnr(_numpy(rgb), _numpy(image)), "ssim": ssim(_numpy(rgb), _numpy(image))}
        return metrics, {"img": torch.cat([image, rgb], dim=1), "accumulation": outputs["accumulation"]}

    def get_rgba_image(self, outputs: dict[str, torch.Tensor], output_name: str = "rgb") -> torch.Tensor:
        accumulation = outputs[output_name.replace("rgb", "accumulation")]
        return torch.cat([outputs[output_name], accumulation], dim=-1)


def trainer_config(max_iterations: int = 20000, volume: VolumeConfig | None = None) -> TrainerConfig:
    """The ``portrait3d-ngp`` TrainerConfig (what ``ns-train portrait3d-ngp`` runs)."""
    return TrainerConfig(
        method_name=METHOD_NAME,
        steps_per_eval_batch=500,
        steps_per_save=2000,
        max_num_iterations=max_iterations,
        mixed_precision=False,
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(**DATAPARSER_SETTINGS),
                train_num_rays_per_batch=4096,
                eval_num_rays_per_batch=4096,
            ),
            model=PortraitNGPModelConfig(eval_num_rays_per_chunk=8192, volume=volume or VolumeConfig()),
        ),
        optimizers={
            "fields": {
                "optimizer": AdamOptimizerConfig(lr=1e-2, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-3, max_steps=max_iterations),
            }
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 12),
        vis="viewer",
    )


portrait3d_ngp = MethodSpecification(
    config=trainer_config(),
    description="portrait3d instant-NGP for heads on transparent backgrounds (tcnn + nerfacc on CUDA, torch on CPU)",
)


def _numpy(image: torch.Tensor):
    """(H, W, 3) tensor -> float numpy array, for :mod:`nerf.metrics`."""
    return image.detach().float().cpu().numpy()
