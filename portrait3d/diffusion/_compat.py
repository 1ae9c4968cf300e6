"""Import-time environment fixes that must run before diffusers/transformers are imported."""

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
