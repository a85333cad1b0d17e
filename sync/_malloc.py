"""Large blocks straight from the operating system and back to it when freed (glibc; issue 12).

glibc's ``malloc`` serves a block of 128 kB or more with its own ``mmap``, unmapped when freed,
but it raises that threshold to the size of each such block freed (up to 32 MB): after a run
frees one large table, every later table up to that size comes from the heap instead, and a
freed table in the middle of the heap stays in the process's memory. A run builds and frees
many of them in turn (dict and set tables of 100,000s of entries: the string pool of the reads,
the classifier's indexes, the map's lookup), so the peak RSS held them all at once: a no-change
full read of 250,000 peaked at 307 MB with the threshold moving, 265 MB with it fixed, at the
same CPU. Python's own small objects are not affected (their arenas are mapped apart).

An operator's ``MALLOC_MMAP_THRESHOLD_`` wins: then nothing is set. Other C libraries (musl's
``mallopt`` does nothing) and other systems: nothing is done.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["fix_mmap_threshold"]

_M_MMAP_THRESHOLD = -3  # <malloc.h>
_THRESHOLD = 128 * 1024  # glibc's own starting value, kept fixed


def fix_mmap_threshold() -> bool:
    """Keep glibc's ``mmap`` threshold at 128 kB for this process; True when it was set."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD))
