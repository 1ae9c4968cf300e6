"""Diffusion stages: the DiffPortrait360 modules and pipelines in diffusers terms.

Modules (each a diffusers ``ModelMixin``/``ConfigMixin`` saved and loaded with ``save_pretrained``/``from_pretrained``):

* :mod:`~portrait3d.diffusion.reference` — appearance reference (R): :class:`ReferenceBank` and the attention
  processors that write it (reference UNet) and read it (main UNet);
* :mod:`~portrait3d.diffusion.view_attention` — view-consistency module (V), :class:`ViewConsistencyModule`;
* :mod:`~portrait3d.diffusion.unet` — :class:`MultiViewUNet`, a diffusers SD UNet with the view modules placed as
  in the released checkpoint (its docstring holds the LDM -> diffusers index mapping);
* :mod:`~portrait3d.diffusion.prompt` — :class:`PromptEmbedding`, the precomputed empty-prompt CLIP embedding;
* :mod:`~portrait3d.diffusion.pipelines` — :class:`BackViewPipeline` (F) and :class:`Portrait360Pipeline`;
* :mod:`~portrait3d.diffusion.stages` — run-folder stages: builders ``back_view_stage``, ``orbit_views_stage``;
  ``back_view``, ``orbit_views`` run them.

Converted weights layout (written by ``portrait3d convert-weights``, read offline by both pipelines)::

    WEIGHTS/                    Portrait360Pipeline folder (model_index.json)
      unet/                     MultiViewUNet (SD UNet + view modules)
      reference_unet/           UNet2DConditionModel (appearance reference; only its transformer-block inputs are
                                used: the checkpoint's ``control_model`` has no output layer, so conv_norm_out /
                                conv_out are placeholders whatever the converter puts there)
      controlnet/               ControlNetModel (camera control, RGB condition image in [-1, 1])
      vae/                      AutoencoderKL (scaling_factor 0.18215)
      scheduler/                DDIMScheduler, SD 1.5 settings (see ``pipelines.release_scheduler``)
      prompt_embeds/            PromptEmbedding: empty-prompt CLIP embedding (1, 77, 768)
      back_view/                BackViewPipeline folder: same component names, ``unet`` a UNet2DConditionModel
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from portrait3d import torchvision_compat

torchvision_compat.hide()  # must run before diffusers is imported

if TYPE_CHECKING:
    from portrait3d.diffusion.reference import ReferenceBank, install_reference_processors
    from portrait3d.diffusion.unet import MultiViewUNet
    from portrait3d.diffusion.view_attention import ViewConsistencyModule

_EXPORTS = {
    "MultiViewUNet": "portrait3d.diffusion.unet",
    "ReferenceBank": "portrait3d.diffusion.reference",
    "ViewConsistencyModule": "portrait3d.diffusion.view_attention",
    "install_reference_processors": "portrait3d.diffusion.reference",
}
__all__ = ["MultiViewUNet", "ReferenceBank", "ViewConsistencyModule", "install_reference_processors"]


def __getattr__(name: str):
    # Lazy, so that the CLI and the stage checks do not pay for importing diffusers.
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
