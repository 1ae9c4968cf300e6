"""Diffusion stages: the DiffPortrait360 modules and pipelines in diffusers terms.

Modules (each a diffusers ``ModelMixin``/``ConfigMixin`` saved and loaded with ``save_pretrained``/``from_pretrained``):

* :mod:`~portrait3d.diffusion.reference` — appearance reference (R): :class:`ReferenceBank` and the attention
  processors that write it (reference UNet) and read it (main UNet);
* :mod:`~portrait3d.diffusion.view_attention` — view-consistency module (V), :class:`ViewConsistencyModule`;
* :mod:`~portrait3d.diffusion.unet` — :class:`MultiViewUNet`, a diffusers SD UNet with the view modules placed as
  in the released checkpoint (its docstring holds the LDM -> diffusers index mapping);
* :mod:`~portrait3d.diffusion.prompt` — :class:`PromptEmbedding`, the precomputed empty-prompt CLIP embedding;
* :mod:`~portrait3d.diffusion.pipelines` — :class:`BackViewPipeline` (F) and :class:`Portrait360Pipeline`;
* :mod:`~portrait3d.diffusion.stages` — run-folder stage functions ``back_view`` and ``orbit_views``.

Converted weights layout (written by ``portrait3d convert-weights``, read offline by both pipelines)::

    WEIGHTS/                    Portrait360Pipeline folder (model_index.json)
      unet/                     MultiViewUNet (SD UNet + view modules)
      reference_unet/           UNet2DConditionModel (appearance reference)
      controlnet/               ControlNetModel (camera control, RGB condition image in [-1, 1])
      vae/                      AutoencoderKL (scaling_factor 0.18215)
      scheduler/                DDIMScheduler, SD 1.5 settings (see ``pipelines.release_scheduler``)
      prompt_embeds/            PromptEmbedding: empty-prompt CLIP embedding (1, 77, 768)
      back_view/                BackViewPipeline folder: same component names, ``unet`` a UNet2DConditionModel
"""

import importlib
import sys


def _hide_broken_torchvision() -> None:
    """Make transformers/diffusers treat an unloadable torchvision as absent.

    The CPU torch wheel cannot load the PyPI torchvision (``operator torchvision::nms does not exist``), and
    transformers imports torchvision whenever it finds it installed, which breaks ``import diffusers`` models.
    A ``None`` entry in ``sys.modules`` makes ``importlib.util.find_spec`` report it missing.
    """
    if "torchvision" in sys.modules:
        return
    try:
        importlib.import_module("torchvision")
    except Exception:  # noqa: BLE001 - any failure to load means "not usable here"
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision"] = None


_hide_broken_torchvision()

from portrait3d.diffusion.reference import ReferenceBank, install_reference_processors
from portrait3d.diffusion.unet import MultiViewUNet
from portrait3d.diffusion.view_attention import ViewConsistencyModule

__all__ = ["MultiViewUNet", "ReferenceBank", "ViewConsistencyModule", "install_reference_processors"]
