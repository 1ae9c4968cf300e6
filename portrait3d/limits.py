"""The ranges of the values a user can type, and their one-line refusals.

Every number that reaches the pipeline from a command line or the web page goes through
:func:`integer` or :func:`number` first, so that a value out of range is refused before any
file is written, instead of failing stages later (or running for hours).
"""

from __future__ import annotations

import math
import operator

from portrait3d.errors import UserError

SEED_MAX = 2**64 - 1
"""torch's generators take seeds up to 2**64 - 1; numpy's need them non-negative."""
YAW_RANGE = (-180.0, 180.0)
PITCH_RANGE = (-89.0, 89.0)
"""Of a photo's camera and of an orbit (at +-90 the camera looks straight down and its yaw is lost)."""
PORT_RANGE = (1, 65535)
MAX_FRAMES = 3600
"""render-turntable: frames per revolution (a minute at 60 fps)."""
MAX_CAMERAS = 4096
"""cameras --views: cameras per ring."""


def integer(name: str, value, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``, or a one-line :class:`UserError` naming ``name``."""
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise UserError(f"{name} must be a whole number between {low} and {high}, got {value}")
        value = int(value)
    try:
        value = operator.index(value)  # ints and numpy's integers, not bools' cousins in strings
    except TypeError:
        raise UserError(f"{name} must be a whole number between {low} and {high}, got {value!r}") from None
    if isinstance(value, bool) or not low <= value <= high:
        raise UserError(f"{name} must be a whole number between {low} and {high}, got {value}")
    return value


def number(name: str, value, low: float, high: float, unit: str = "") -> float:
    """``value`` as a finite float in ``[low, high]``, or a one-line :class:`UserError` naming ``name``."""
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{name} must be a number between {low:g} and {high:g}{unit}, got {value!r}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise UserError(f"{name} must be a number between {low:g} and {high:g}{unit}, got {value:g}")
    return value


def seed(value, name: str = "--seed") -> int:
    """A random seed: 0 to 2**64 - 1."""
    return integer(name, value, 0, SEED_MAX)


def port(value, name: str = "--port") -> int:
    """A TCP port to listen on: 1 to 65535."""
    return integer(name, value, *PORT_RANGE)
