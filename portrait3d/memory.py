"""The process's resident memory, stage by stage: each stage's own peak, and freed memory handed back.

make-asset runs every stage in one process, so what one stage leaves in the heap is resident
memory under the next. Two Linux facilities make that visible and cheap to undo:

- ``/proc/self/clear_refs`` (``5``) resets the process's peak resident size (``VmHWM``), so the
  peak read after a stage is that stage's own (:func:`reset_peak`, :func:`peak_rss_mib`);
- glibc keeps freed blocks of its heaps for reuse (arrays under its dynamic mmap threshold, up to
  32 MiB): after the proxy stage 120-280 MiB of them, and inside export-mesh the depth maps' and
  fusion's, about 250 MiB more at its peak (the texture). ``malloc_trim`` hands free pages back to
  the system (:func:`release_freed`).

Elsewhere (macOS, musl) the functions do nothing and the peak is unknown (None).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

STATUS = "/proc/self/status"
CLEAR_REFS = "/proc/self/clear_refs"
RESET_PEAK = "5"
"""What ``clear_refs`` takes to reset the peak resident size (``VmHWM``; Linux 4.0 and later)."""


def _status_mib(field: str) -> float | None:
    """A ``/proc/self/status`` size field (``VmRSS``, ``VmHWM``) in MiB, or None where there is none."""
    try:
        with open(STATUS) as status:
            for line in status:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)  # the kernel writes kB
    except OSError:
        pass
    return None


def rss_mib() -> float | None:
    """The process's resident memory now, in MiB (None off Linux)."""
    return _status_mib("VmRSS")


def reset_peak() -> bool:
    """Start measuring the peak resident memory afresh; False where the system cannot."""
    try:
        with open(CLEAR_REFS, "w") as clear_refs:
            clear_refs.write(RESET_PEAK)
    except OSError:
        return False
    return True


def peak_rss_mib() -> float | None:
    """The peak resident memory since the last :func:`reset_peak` (or the start), in MiB (None off Linux)."""
    return _status_mib("VmHWM")


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None (another C library)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed() -> None:
    """Hand the heap's free pages back to the system (glibc); the live memory is untouched."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
