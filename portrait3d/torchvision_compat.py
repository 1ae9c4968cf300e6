"""torchvision where it cannot load: the one place in the project that deals with it.

The torchvision wheels on PyPI link CUDA builds of torch's libraries and fail to load
beside a CPU build of torch (``operator torchvision::nms does not exist``); there is
no CPU wheel. Two kinds of code care:

* transformers and diffusers import torchvision whenever ``importlib.util.find_spec``
  finds it installed, and then break. :func:`hide` makes them see it as absent (a
  ``None`` entry in ``sys.modules``).
* nerfstudio 1.1.5 imports ``torchvision.utils`` at the top of
  ``nerfstudio/pipelines/base_pipeline.py`` (``save_image`` of evaluation images), so
  every path to its configs, ``eval_setup`` and the viewer needs it; its viewer also
  calls ``torchvision.transforms.functional.resize`` lazily for the camera thumbnails
  (``Viewer.init_scene``, ``Cameras.to_json``). :func:`import_nerfstudio` imports
  nerfstudio's pipeline module with a stand-in registered, then hides torchvision
  again, so one process can hold nerfstudio and diffusers at once.
  :func:`install_standin` keeps the stand-in for good: for a process that runs
  nerfstudio's viewer (``portrait3d view``), which imports torchvision lazily.

The stand-in's ``resize`` is a real one (torch's interpolation, torchvision's size
rule); ``save_image``/``make_grid`` raise a clear error: nothing on the project's paths
calls them. Where the real torchvision loads (the normal state of a CUDA machine)
every function here does nothing, and ``ns-viewer``/``ns-render`` work as usual.
"""

from __future__ import annotations

import functools
import importlib
import sys
import types
from collections.abc import Sequence

STANDIN_FLAG = "__portrait3d_standin__"


def _drop_torchvision_modules() -> None:
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]


@functools.cache
def torchvision_loads() -> bool:
    """True when the installed torchvision imports (checked once; a failed import is cleaned up)."""
    if "torchvision" in sys.modules:
        module = sys.modules["torchvision"]
        if module is not None and not getattr(module, STANDIN_FLAG, False):
            return True
    saved = {n: m for n, m in sys.modules.items() if n == "torchvision" or n.startswith("torchvision.")}
    _drop_torchvision_modules()
    try:
        importlib.import_module("torchvision")
        importlib.import_module("torchvision.utils")
        importlib.import_module("torchvision.transforms.functional")
        return True
    except Exception:  # noqa: BLE001 - any failure to load means "not usable here"
        _drop_torchvision_modules()
        sys.modules.update(saved)
        return False


def is_standin() -> bool:
    """True when ``torchvision`` in ``sys.modules`` is this module's stand-in."""
    return bool(getattr(sys.modules.get("torchvision"), STANDIN_FLAG, False))


def hide() -> None:
    """Make transformers/diffusers treat an unloadable torchvision as absent (call before importing them)."""
    if not torchvision_loads() and not is_standin():
        _drop_torchvision_modules()
        sys.modules["torchvision"] = None


def install_standin() -> None:
    """Register the stand-in package for good (a no-op where the real torchvision loads)."""
    if torchvision_loads() or is_standin():
        return
    _drop_torchvision_modules()
    modules = _standin_modules()
    sys.modules.update(modules)


def import_nerfstudio() -> None:
    """Import nerfstudio's pipeline module (the one that imports torchvision) where torchvision cannot load.

    Afterwards the rest of nerfstudio imports normally, and torchvision stays hidden unless a
    stand-in was installed for good before.
    """
    if torchvision_loads() or "nerfstudio.pipelines.base_pipeline" in sys.modules:
        importlib.import_module("nerfstudio.pipelines.base_pipeline")
        return
    keep = is_standin()
    install_standin()
    try:
        importlib.import_module("nerfstudio.pipelines.base_pipeline")
    finally:
        if not keep:
            _drop_torchvision_modules()
            sys.modules["torchvision"] = None


def _unavailable(*_args, **_kwargs):
    raise RuntimeError(
        "torchvision does not load beside this build of torch (CPU torch with a CUDA torchvision wheel); "
        "portrait3d registered a stand-in that cannot write images"
    )


def resize(image, size: int | Sequence[int], interpolation=None, max_size: int | None = None, antialias=None):
    """``torchvision.transforms.functional.resize`` for tensors (..., C, H, W), any dtype.

    An int ``size`` sets the shorter edge (the aspect ratio is kept, the longer edge
    capped by ``max_size``); a pair sets (H, W). Bilinear, as torchvision's default.
    """
    import torch
    import torch.nn.functional as F

    height, width = image.shape[-2:]
    if isinstance(size, int) or len(size) == 1:
        short = size if isinstance(size, int) else size[0]
        long = int(short * max(height, width) / min(height, width))
        if max_size is not None and long > max_size:
            short, long = int(max_size * short / long), max_size
        out_size = (short, long) if height <= width else (long, short)
    else:
        out_size = (int(size[0]), int(size[1]))
    batch = image.reshape(-1, *image.shape[-3:]).float()
    out = F.interpolate(batch, size=out_size, mode="bilinear", align_corners=False, antialias=bool(antialias))
    if not image.dtype.is_floating_point:
        info = torch.iinfo(image.dtype)
        out = out.round().clamp(info.min, info.max)
    return out.to(image.dtype).reshape(*image.shape[:-2], *out_size)


def _standin_modules() -> dict[str, types.ModuleType]:
    def package(name: str) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__path__ = []  # a package, so that `import torchvision.x` looks in sys.modules
        setattr(module, STANDIN_FLAG, True)
        return module

    root, transforms = package("torchvision"), package("torchvision.transforms")
    utils = types.ModuleType("torchvision.utils")
    utils.save_image = _unavailable
    utils.make_grid = _unavailable
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.resize = resize
    root.utils, root.transforms, transforms.functional = utils, transforms, functional
    return {
        "torchvision": root,
        "torchvision.utils": utils,
        "torchvision.transforms": transforms,
        "torchvision.transforms.functional": functional,
    }
