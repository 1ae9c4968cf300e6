"""Importing nerfstudio where torchvision cannot load.

nerfstudio 1.1.5 imports ``torchvision.utils`` at the top of
``nerfstudio/pipelines/base_pipeline.py`` (for ``save_image`` of evaluation
images), so every path to ``TrainerConfig``, the plugin types and
``eval_setup`` needs ``import torchvision`` to work. The torchvision wheels on
PyPI link CUDA builds of torch's libraries and fail to load beside a CPU build
of torch (``operator torchvision::nms does not exist``); there is no CPU wheel.

:func:`prepare` is the one place that deals with it, and it is only called by
this project's own entry points into nerfstudio (writing ``config.yml``,
loading a checkpoint in the tests). If ``import torchvision`` works it does
nothing. Otherwise it removes the half-imported torchvision modules and
registers a stand-in package whose ``torchvision.utils.save_image`` and
``make_grid`` raise a clear error when called: nothing on the paths this
project uses calls them (they are only used when nerfstudio writes evaluation
images to disk). nerfstudio's own command-line tools (``ns-viewer``,
``ns-render``, ``ns-train``) do not go through this module: they need a
torchvision that matches torch, which is the normal state of a CUDA machine.
"""

from __future__ import annotations

import sys
import types

_STANDIN_FLAG = "__portrait3d_standin__"


def torchvision_is_standin() -> bool:
    """True when :func:`prepare` replaced torchvision."""
    return getattr(sys.modules.get("torchvision"), _STANDIN_FLAG, False)


def _unavailable(*_args, **_kwargs):
    raise RuntimeError(
        "torchvision does not load beside this build of torch (CPU torch with a CUDA torchvision wheel); "
        "portrait3d registered a stand-in that cannot write images"
    )


def prepare() -> None:
    """Make ``import nerfstudio.*`` work; see the module docstring. Safe to call many times."""
    if "torchvision" in sys.modules and (torchvision_is_standin() or hasattr(sys.modules["torchvision"], "utils")):
        return
    try:
        import torchvision  # noqa: F401
        import torchvision.utils  # noqa: F401

        return
    except (RuntimeError, ImportError, OSError):
        pass
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    package = types.ModuleType("torchvision")
    package.__path__ = []  # a package, so that `import torchvision.x` looks in sys.modules
    setattr(package, _STANDIN_FLAG, True)
    utils = types.ModuleType("torchvision.utils")
    utils.save_image = _unavailable
    utils.make_grid = _unavailable
    package.utils = utils
    sys.modules["torchvision"] = package
    sys.modules["torchvision.utils"] = utils
