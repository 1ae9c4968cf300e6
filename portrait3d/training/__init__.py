"""Training of the back-view module F and the orbit model (R, C, V), which the release never published.

* :mod:`~portrait3d.training.config` — :class:`TrainConfig` and the ``tiny`` / ``sd15`` presets;
* :mod:`~portrait3d.training.data` — the dataset layout (subject folders), orbit windows, back-view samples, the
  deterministic step sampler and the nerfstudio ``transforms.json`` converter;
* :mod:`~portrait3d.training.trainer` — the accelerate loop (:class:`Trainer`), checkpoints, EMA, export to the
  weights folder that ``make-asset --generator diffusion --weights DIR`` loads.
"""

from portrait3d import torchvision_compat

torchvision_compat.hide()  # must run before diffusers is imported
